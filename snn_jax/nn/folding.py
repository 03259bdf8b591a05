"""Apply stateless layers (conv, dense, pooling) to time-major ``[T, B, ...]`` arrays.

Time is folded into the batch so that a convolution runs once over ``T*B``
images, not ``T`` times.
"""

from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["TimeFolded", "fold_time", "unfold_time"]


def fold_time(x: jax.Array) -> tuple[jax.Array, int]:
    """``[T, B, ...] -> ([T*B, ...], T)``.

    >>> import jax.numpy as jnp
    >>> y, t = fold_time(jnp.zeros((4, 3, 5)))
    >>> y.shape, t
    ((12, 5), 4)
    """
    if x.ndim < 2:
        raise ValueError(f"expected a time-major array [T, B, ...], got shape {x.shape}")
    return x.reshape((x.shape[0] * x.shape[1], *x.shape[2:])), x.shape[0]


def unfold_time(y: jax.Array, time_steps: int) -> jax.Array:
    """``[T*B, ...] -> [T, B, ...]``, the inverse of :func:`fold_time`."""
    if y.shape[0] % time_steps:
        raise ValueError(f"leading axis {y.shape[0]} is not a multiple of T = {time_steps}")
    return y.reshape((time_steps, y.shape[0] // time_steps, *y.shape[1:]))


class TimeFolded(nn.Module):
    """Wraps a stateless layer so it maps ``[T, B, ...]`` to ``[T, B, ...]``.

    ``y = unfold(layer(fold(x)))``: one call over ``T*B`` examples.

    >>> import jax, jax.numpy as jnp
    >>> conv = TimeFolded(nn.Conv(8, (3, 3)))
    >>> x = jnp.ones((4, 2, 6, 6, 3))      # T=4, B=2, H=W=6, C=3
    >>> conv.init_with_output(jax.random.key(0), x)[0].shape
    (4, 2, 6, 6, 8)
    """

    layer: nn.Module

    def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
        folded, time_steps = fold_time(x)
        return unfold_time(self.layer(folded, *args, **kwargs), time_steps)
