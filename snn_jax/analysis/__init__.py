"""Looking inside models without training them: isometry, activity, energy, folding.

- :mod:`~snn_jax.analysis.isometry`: per-block ``phi(J J^T)`` with random probes,
  second-moment ratios, per-layer gradient norms (METHOD.md section 8).
- :mod:`~snn_jax.analysis.activity`: spike trains, firing rates per layer and
  step, silent and saturated neurons.
- :mod:`~snn_jax.analysis.energy`: synaptic operations (SOPs), MACs of
  real-valued layers, energy per example.
- :mod:`~snn_jax.analysis.folding`: tdBN/BN folded into the preceding conv;
  TEBN/BNTT into one kernel per time step.

All of them run a model as ``model.apply(variables, x, train=...)`` and find its
layers with :func:`snn_jax.inspect.capture_calls`; the model is not changed.
"""

from snn_jax.analysis.activity import firing_statistics, is_spiking, layer_activity, spike_trains
from snn_jax.analysis.energy import EnergyModel, count_operations, energy_estimate, fan_out_map
from snn_jax.analysis.folding import fold_affine, fold_norms, fold_norms_per_step, norm_pairs
from snn_jax.analysis.isometry import (
    block_isometry,
    block_names,
    blocks_of_type,
    default_is_block,
    gradient_norms,
    kernel_names,
    kernel_norms,
    probe_phi,
)

__all__ = [
    "EnergyModel",
    "block_isometry",
    "block_names",
    "blocks_of_type",
    "count_operations",
    "default_is_block",
    "energy_estimate",
    "fan_out_map",
    "firing_statistics",
    "fold_affine",
    "fold_norms",
    "fold_norms_per_step",
    "gradient_norms",
    "is_spiking",
    "kernel_names",
    "kernel_norms",
    "layer_activity",
    "norm_pairs",
    "probe_phi",
    "spike_trains",
]
