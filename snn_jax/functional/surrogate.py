"""Surrogate spike functions: exact Heaviside forward, smooth derivative backward.

Every factory here returns a spike function ``f(v)`` of ``v = u - V_th``. The
forward pass is the exact Heaviside step ``H(v) = 1 if v >= 0 else 0`` in the
dtype of ``v``, so spikes are exactly 0 or 1. The backward pass (a
``jax.custom_vjp``) replaces the zero derivative of ``H`` by a surrogate
``dH/dv ~= s(v)``; the shape parameter (width, alpha, slope) is a
non-differentiable argument, so a fresh function is built per setting and no
default instance is shared between layers.

Each spike function carries ``.derivative`` (the surrogate ``s(v)`` as a plain
function), ``.primitive`` (a smooth step whose ``jax.grad`` is ``s``),
``.name`` and ``.params``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

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


def heaviside(v: Array) -> Array:
    """Exact spike ``H(v) = 1[v >= 0]`` in the dtype of ``v`` (no gradient rule)."""
    return (v >= 0).astype(v.dtype)


class SpikeFunction:
    """A Heaviside spike ``f(v)`` whose backward pass is a surrogate derivative.

    Built by the factories of this module; call it like a function.

    Attributes:
      name: the surrogate's name (a key of ``get``).
      params: its shape parameter, e.g. ``{"width": 1.0}``.
      derivative: ``s(v)``, the surrogate derivative used in the backward pass.
      primitive: a smooth step whose derivative is ``s`` (for tests and plots).
    """

    def __init__(
        self,
        name: str,
        params: dict[str, float],
        derivative: Callable[[Array], Array],
        primitive: Callable[[Array], Array],
    ):
        self.name = name
        self.params = params
        self.derivative = derivative
        self.primitive = primitive

        @jax.custom_vjp
        def spike(v):
            return heaviside(v)

        def fwd(v):
            return heaviside(v), v

        def bwd(v, g):
            return (g * derivative(v).astype(g.dtype),)

        spike.defvjp(fwd, bwd)
        self._spike = spike

    def __call__(self, v: Array) -> Array:
        return self._spike(v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"surrogate.{self.name}({args})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SpikeFunction) and (self.name, self.params) == (
            other.name,
            other.params,
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"surrogate parameter {name} must be > 0, got {value}")
    return value


def rectangular(width: float = 1.0) -> SpikeFunction:
    """STBP's rectangular surrogate: ``s(v) = (1/width) * 1[|v| < width/2]``.

    Args:
      width: the window width ``a`` of METHOD.md section 2 (> 0).

    Returns:
      A spike function of ``v = u - V_th``.

    >>> import jax, jax.numpy as jnp
    >>> f = rectangular(1.0)
    >>> f(jnp.array([-0.7, 0.0, 0.3]))
    Array([0., 1., 1.], dtype=float32)
    >>> jax.grad(lambda v: f(v).sum())(jnp.array([-0.7, 0.0, 0.3]))
    Array([0., 1., 1.], dtype=float32)
    """
    a = _positive("width", width)
    return SpikeFunction(
        "rectangular",
        {"width": a},
        lambda v: (jnp.abs(v) < a / 2).astype(v.dtype) / a,
        lambda v: jnp.clip(v / a + 0.5, 0.0, 1.0),
    )


def sigmoid(alpha: float = 4.0) -> SpikeFunction:
    """Sigmoid surrogate: ``s(v) = alpha * sig(alpha v) * (1 - sig(alpha v))``.

    >>> sigmoid(4.0).derivative(jnp.zeros(()))
    Array(1., dtype=float32)
    """
    k = _positive("alpha", alpha)

    def derivative(v):
        s = jax.nn.sigmoid(k * v)
        return k * s * (1 - s)

    return SpikeFunction("sigmoid", {"alpha": k}, derivative, lambda v: jax.nn.sigmoid(k * v))


def atan(alpha: float = 2.0) -> SpikeFunction:
    """Arctan surrogate: ``s(v) = alpha / (2 * (1 + (pi/2 * alpha * v)^2))``.

    >>> atan(2.0).derivative(jnp.zeros(()))
    Array(1., dtype=float32)
    """
    k = _positive("alpha", alpha)
    return SpikeFunction(
        "atan",
        {"alpha": k},
        lambda v: k / (2 * (1 + (math.pi / 2 * k * v) ** 2)),
        lambda v: jnp.arctan(math.pi / 2 * k * v) / math.pi + 0.5,
    )


def triangle(width: float = 1.0) -> SpikeFunction:
    """Triangular surrogate: ``s(v) = max(0, 1 - |v|/width) / width``.

    >>> triangle(1.0).derivative(jnp.array([0.0, 0.5, 2.0]))
    Array([1. , 0.5, 0. ], dtype=float32)
    """
    w = _positive("width", width)

    def primitive(v):
        r = jnp.clip(v / w, -1.0, 1.0)
        return 0.5 + r - 0.5 * r * jnp.abs(r)

    return SpikeFunction(
        "triangle",
        {"width": w},
        lambda v: jnp.maximum(0, 1 - jnp.abs(v) / w) / w,
        primitive,
    )


def fast_sigmoid(slope: float = 25.0) -> SpikeFunction:
    """Fast-sigmoid (SuperSpike) surrogate: ``s(v) = 1 / (1 + slope*|v|)^2``.

    >>> fast_sigmoid(25.0).derivative(jnp.zeros(()))
    Array(1., dtype=float32)
    """
    k = _positive("slope", slope)
    return SpikeFunction(
        "fast_sigmoid",
        {"slope": k},
        lambda v: 1 / (1 + k * jnp.abs(v)) ** 2,
        lambda v: v / (1 + k * jnp.abs(v)),
    )


_FACTORIES: dict[str, Callable[..., SpikeFunction]] = {
    "rectangular": rectangular,
    "sigmoid": sigmoid,
    "atan": atan,
    "triangle": triangle,
    "fast_sigmoid": fast_sigmoid,
}
NAMES: tuple[str, ...] = tuple(_FACTORIES)
# The name of each surrogate's one shape parameter (the argument of its factory).
SHAPE_PARAMETER: dict[str, str] = {
    "rectangular": "width",
    "sigmoid": "alpha",
    "atan": "alpha",
    "triangle": "width",
    "fast_sigmoid": "slope",
}


@functools.cache
def get(name: str, **params: float) -> SpikeFunction:
    """Builds a surrogate spike function by name, e.g. ``get("atan", alpha=2.0)``.

    Equal arguments give the same function object, so a jitted function that
    closes over it is not retraced.

    >>> get("triangle", width=0.5)
    surrogate.triangle(width=0.5)
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {NAMES}")
    try:
        return _FACTORIES[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters {params} for surrogate {name!r}: {e}") from None
