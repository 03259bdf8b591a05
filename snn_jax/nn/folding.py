"""Apply stateless layers (conv, dense, pooling) to time-major ``[T, B, ...]`` arrays.

Time is folded into the batch so that a convolution runs once over ``T*B``
images, not ``T`` times.

Data parallelism splits the batch axis ``B`` over the devices of a mesh axis
named :data:`DATA_AXIS`. A plain ``[T, B] -> [T*B]`` reshape would mix every
device's examples into each block of rows, and XLA then gathers the whole
batch on every device (each one computing the full step). With ``shards=n``
(the number of devices the batch is split over; a zoo model's
``batch_shards`` field, which the training loop sets from its mesh) the fold
orders the rows ``(shard, t, b)`` instead, so that each device folds only its
own examples; ``shards=1`` is the plain ``t * B + b`` order. The result does
not depend on ``shards``, only where it is computed: layers between a fold
and its unfold must not depend on the row order (convs, dense layers,
pooling and batch statistics do not).
"""

from __future__ import annotations

import flax.linen as nn
import jax

__all__ = ["DATA_AXIS", "TimeFolded", "fold_time", "unfold_time"]

DATA_AXIS = "data"  # the mesh axis the batch is split over


def _groups(batch: int, shards: int) -> int:
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return shards if shards > 1 and batch % shards == 0 else 1


def fold_time(x: jax.Array, shards: int = 1) -> tuple[jax.Array, int]:
    """``[T, B, ...] -> ([T*B, ...], T)``, rows ordered ``(shard, t, b)`` (module docstring).

    Args:
      x: ``[T, B, ...]``.
      shards: parts of the batch axis (devices it is split over); a ``B``
        it does not divide is folded in the plain order.

    >>> import jax.numpy as jnp
    >>> y, t = fold_time(jnp.zeros((4, 3, 5)))
    >>> y.shape, t
    ((12, 5), 4)
    >>> x = jnp.arange(8).reshape(2, 4)              # T=2, B=4: x[t, b] = 4t + b
    >>> fold_time(x)[0], fold_time(x, shards=2)[0]   # shard 0 holds b = 0, 1
    (Array([0, 1, 2, 3, 4, 5, 6, 7], dtype=int32), Array([0, 1, 4, 5, 2, 3, 6, 7], dtype=int32))
    """
    if x.ndim < 2:
        raise ValueError(f"expected a time-major array [T, B, ...], got shape {x.shape}")
    t, b, rest = x.shape[0], x.shape[1], x.shape[2:]
    n = _groups(b, shards)
    if n > 1:
        x = x.reshape(t, n, b // n, *rest).swapaxes(0, 1)
    return x.reshape(t * b, *rest), t


def unfold_time(y: jax.Array, time_steps: int, shards: int = 1) -> jax.Array:
    """``[T*B, ...] -> [T, B, ...]``, the inverse of :func:`fold_time` (same ``shards``).

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(24).reshape(2, 4, 3)
    >>> bool((unfold_time(fold_time(x, 2)[0], 2, 2) == x).all())
    True
    """
    if y.shape[0] % time_steps:
        raise ValueError(f"leading axis {y.shape[0]} is not a multiple of T = {time_steps}")
    b, rest = y.shape[0] // time_steps, y.shape[1:]
    n = _groups(b, shards)
    if n > 1:
        return y.reshape(n, time_steps, b // n, *rest).swapaxes(0, 1).reshape(time_steps, b, *rest)
    return y.reshape(time_steps, b, *rest)


class TimeFolded(nn.Module):
    """Wraps a stateless layer so it maps ``[T, B, ...]`` to ``[T, B, ...]``.

    ``y = unfold(layer(fold(x)))``: one call over ``T*B`` examples, rows
    ordered by ``shards`` (module docstring).

    >>> import jax, jax.numpy as jnp
    >>> conv = TimeFolded(nn.Conv(8, (3, 3)))
    >>> x = jnp.ones((4, 2, 6, 6, 3))      # T=4, B=2, H=W=6, C=3
    >>> conv.init_with_output(jax.random.key(0), x)[0].shape
    (4, 2, 6, 6, 8)
    """

    layer: nn.Module
    shards: int = 1

    def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
        folded, time_steps = fold_time(x, self.shards)
        return unfold_time(self.layer(folded, *args, **kwargs), time_steps, self.shards)
