"""Flax (linen) layers of snn-jax over time-major ``[T, B, ...]`` arrays."""

from snn_jax.nn.coding import MeanDecoder, direct_encode, rate_encode
from snn_jax.nn.folding import TimeFolded, fold_time, unfold_time
from snn_jax.nn.neurons import IF, LIF
from snn_jax.nn.norm import TdBatchNorm

__all__ = [
    "IF",
    "LIF",
    "MeanDecoder",
    "TdBatchNorm",
    "TimeFolded",
    "direct_encode",
    "fold_time",
    "rate_encode",
    "unfold_time",
]
