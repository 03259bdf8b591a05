"""Pure JAX mathematics of snn-jax: surrogate spikes, the LIF neuron, tdBN statistics.

Nothing here knows of Flax. Arrays are time-major ``[T, B, ...]``, channels last.
"""

from snn_jax.functional import surrogate
from snn_jax.functional.lif import (
    RESETS,
    LIFState,
    aggregate_gradient,
    check_lif_params,
    lif_scan,
    lif_step,
)
from snn_jax.functional.tdbn import tdbn_normalize, tdbn_statistics

__all__ = [
    "RESETS",
    "LIFState",
    "aggregate_gradient",
    "check_lif_params",
    "lif_scan",
    "lif_step",
    "surrogate",
    "tdbn_normalize",
    "tdbn_statistics",
]
