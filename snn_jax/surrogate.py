"""Surrogate spike functions (``snn_jax.surrogate.rectangular`` etc.).

The implementation lives in :mod:`snn_jax.functional.surrogate`; this module is
its public name.
"""

from snn_jax.functional.surrogate import (
    NAMES,
    SHAPE_PARAMETER,
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
    "SHAPE_PARAMETER",
    "SpikeFunction",
    "atan",
    "fast_sigmoid",
    "get",
    "heaviside",
    "rectangular",
    "sigmoid",
    "triangle",
]
