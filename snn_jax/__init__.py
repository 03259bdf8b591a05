"""snn-jax: deep spiking neural networks in JAX/Flax, trained with STBP and tdBN.

Layout: every array is time-major, ``[T, B, ...]``, channels last. Static images
enter as ``[B, H, W, C]`` and are repeated over ``T`` by a model's encoder;
event frames enter as ``[T, B, H, W, 2]``.
"""

from snn_jax import inspect, nn, surrogate
from snn_jax.functional import LIFState, lif_scan, lif_step, tdbn_normalize, tdbn_statistics

__version__ = "0.1.0"

__all__ = [
    "LIFState",
    "inspect",
    "lif_scan",
    "lif_step",
    "nn",
    "surrogate",
    "tdbn_normalize",
    "tdbn_statistics",
]
