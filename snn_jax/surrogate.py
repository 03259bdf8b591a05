"""Surrogate spike functions (``snn_jax.surrogate.rectangular`` etc.).

The implementation lives in :mod:`snn_jax.functional.surrogate`; this module is
its public name.
"""

from snn_jax.functional.surrogate import (
    NAMES,
    SpikeFunction,
    atan,
    fast_sigmoid,
    get,
    heaviside,
    rectangular,
    sigmoid,
    triangle,
)

__all__ = [
    "NAMES",
    "SpikeFunction",
    "atan",
    "fast_sigmoid",
    "get",
    "heaviside",
    "rectangular",
    "sigmoid",
    "triangle",
]
