"""Pure JAX mathematics of snn-jax: surrogate spikes, the LIF neuron, tdBN statistics,
TEBN and BNTT maps, compact residuals.

Nothing here knows of Flax. Arrays are time-major ``[T, B, ...]``, channels last.
"""

from snn_jax.functional import surrogate
from snn_jax.functional.attention import (
    AttentionParams,
    check_reduction,
    temporal_attention,
    temporal_attention_scores,
)
from snn_jax.functional.compact import (
    Currents,
    lif_from_currents,
    pack_spikes,
    spike_conv_general_dilated,
    unpack_spikes,
)
from snn_jax.functional.lif import (
    RESETS,
    LIFState,
    aggregate_gradient,
    check_lif_params,
    lif_scan,
    lif_step,
)
from snn_jax.functional.tdbn import tdbn_affine, tdbn_apply, tdbn_normalize, tdbn_statistics
from snn_jax.functional.temporal_norm import bntt_affine, step_apply, step_statistics, tebn_affine

__all__ = [
    "RESETS",
    "AttentionParams",
    "Currents",
    "LIFState",
    "aggregate_gradient",
    "bntt_affine",
    "check_lif_params",
    "check_reduction",
    "lif_from_currents",
    "lif_scan",
    "lif_step",
    "pack_spikes",
    "spike_conv_general_dilated",
    "step_apply",
    "step_statistics",
    "surrogate",
    "tdbn_affine",
    "tdbn_apply",
    "tdbn_normalize",
    "tdbn_statistics",
    "tebn_affine",
    "temporal_attention",
    "temporal_attention_scores",
    "unpack_spikes",
]
