"""Flax (linen) layers of snn-jax over time-major ``[T, B, ...]`` arrays."""

from snn_jax.nn.attention import TemporalAttention
from snn_jax.nn.coding import MeanDecoder, direct_encode, rate_encode
from snn_jax.nn.folding import TimeFolded, fold_time, unfold_time
from snn_jax.nn.neurons import IF, LIF, NeuronSpec
from snn_jax.nn.norm import TdBatchNorm
from snn_jax.nn.norm_neuron import ATTENTIONS, NORMS, STEP_NORMS, NormNeuron, compact_conflicts
from snn_jax.nn.temporal_norm import BNTT, TEBN

__all__ = [
    "ATTENTIONS",
    "BNTT",
    "IF",
    "LIF",
    "NORMS",
    "STEP_NORMS",
    "TEBN",
    "MeanDecoder",
    "NeuronSpec",
    "NormNeuron",
    "TdBatchNorm",
    "TemporalAttention",
    "TimeFolded",
    "compact_conflicts",
    "direct_encode",
    "fold_time",
    "rate_encode",
    "unfold_time",
]
