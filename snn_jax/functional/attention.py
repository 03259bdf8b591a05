"""Temporal-wise attention (TA-SNN, Yao et al., ICCV 2021) as pure functions.

For time-major ``x`` ``[T, B, ...]`` (METHOD.md section 11):

- squeeze: ``s[b, t] = mean(x[t, b, ...])`` over every axis but time and batch;
- excitation: ``d[b] = sigmoid(W2 relu(W1 s[b] + b1) + b2)``, with
  ``W1: T -> T // r`` and ``W2: T // r -> T`` (``r``: the reduction), biases
  included, as the official code's ``Tlayer`` (``nn.Linear`` has biases);
- scaling: ``y[t, b, ...] = d[b, t] * x[t, b, ...]``.

Weights are stored as ``x @ W`` (``w1 [T, T // r]``, ``w2 [T // r, T]``),
the transpose of PyTorch's ``nn.Linear.weight``. The squeeze and the
excitation run in float32 whatever the input's dtype; the output has the
input's dtype.

Attention pruning (the paper's inference rule; the official code has none):
a frame whose score is below a threshold ``d_th`` is discarded, that is,
``y[t, b] = d[b, t] x[t, b]`` if ``d[b, t] >= d_th`` and ``0`` otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "AttentionParams",
    "check_reduction",
    "temporal_attention",
    "temporal_attention_scores",
]

Array = jax.Array


class AttentionParams(NamedTuple):
    """The excitation's weights for ``T`` time steps and reduction ``r``.

    Attributes:
      w1: ``[T, T // r]``.
      b1: ``[T // r]``.
      w2: ``[T // r, T]``.
      b2: ``[T]``.
    """

    w1: Array
    b1: Array
    w2: Array
    b2: Array


def check_reduction(reduction: int, time_steps: int) -> None:
    """Raises ``ValueError`` unless ``1 <= reduction <= time_steps`` (``T // r >= 1``).

    >>> check_reduction(2, 8)          # a hidden layer of 4 units
    >>> check_reduction(9, 8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: attention reduction must be an integer in [1, T] = [1, 8] ..., got 9
    """
    if (
        isinstance(reduction, bool)
        or not isinstance(reduction, int)
        or not 1 <= reduction <= time_steps
    ):
        raise ValueError(
            f"attention reduction must be an integer in [1, T] = [1, {time_steps}] (the hidden "
            f"layer has T // reduction units), got {reduction!r}"
        )


def _check_shapes(x: Array, params: AttentionParams) -> None:
    if x.ndim < 2:
        raise ValueError(f"temporal attention needs time-major x [T, B, ...], got shape {x.shape}")
    t = x.shape[0]
    w1, b1, w2, b2 = params
    hidden = w1.shape[-1]
    if w1.shape != (t, hidden) or w2.shape != (hidden, t) or b1.shape != (hidden,):
        raise ValueError(
            f"the attention parameters were made for T = {w1.shape[0]} time steps (w1 "
            f"{w1.shape}, w2 {w2.shape}), got input with T = {t} (shape {x.shape}); use the "
            f"same T as at initialisation"
        )
    if b2.shape != (t,):
        raise ValueError(f"b2 must have shape ({t},), got {b2.shape}")


def temporal_attention_scores(x: Array, params: AttentionParams) -> Array:
    """The attention scores ``d`` ``[B, T]`` (float32) of time-major ``x`` ``[T, B, ...]``.

    >>> import numpy as np
    >>> t, b, c = 4, 3, 5
    >>> p = AttentionParams(jnp.zeros((t, 2)), jnp.zeros(2), jnp.zeros((2, t)), jnp.zeros(t))
    >>> temporal_attention_scores(jnp.ones((t, b, c)), p)     # sigmoid(0) everywhere
    Array([[0.5, 0.5, 0.5, 0.5],
           [0.5, 0.5, 0.5, 0.5],
           [0.5, 0.5, 0.5, 0.5]], dtype=float32)
    """
    _check_shapes(x, params)
    w1, b1, w2, b2 = (jnp.asarray(p, jnp.float32) for p in params)
    s = jnp.mean(x.astype(jnp.float32), axis=tuple(range(2, x.ndim))).T  # [B, T]
    return jax.nn.sigmoid(jax.nn.relu(s @ w1 + b1) @ w2 + b2)


def temporal_attention(
    x: Array,
    params: AttentionParams,
    discard_threshold: float | None = None,
    *,
    squeeze_from: Array | None = None,
) -> tuple[Array, Array]:
    """``(y, d)``: ``x`` ``[T, B, ...]`` scaled by its scores ``d`` ``[B, T]``.

    Args:
      x: time-major input, any float dtype.
      params: the excitation's weights (:class:`AttentionParams`) for ``x``'s ``T``.
      discard_threshold: ``None``: no pruning. Otherwise the frames with
        ``d[b, t] < discard_threshold`` are set to zero (the paper's attention
        pruning at inference).
      squeeze_from: ``None`` (the official rule): the squeeze averages ``x``.
        Otherwise a time-major array ``[T, B, ...]`` (any trailing shape) whose
        frame means are the squeeze instead, e.g. the spikes entering the
        layer (METHOD.md section 11, "squeeze on the input").

    Returns:
      ``y`` (``x``'s shape and dtype) and ``d`` (float32 ``[B, T]``).

    >>> p = AttentionParams(jnp.zeros((2, 1)), jnp.zeros(1), jnp.zeros((1, 2)),
    ...                     jnp.array([-1.0, 1.0]))
    >>> y, d = temporal_attention(jnp.ones((2, 1, 3)), p, discard_threshold=0.5)
    >>> y[:, 0, 0], d[0]                  # sigmoid(-1) = 0.27 < 0.5: frame 0 dropped
    (Array([0.       , 0.7310586], dtype=float32), Array([0.26894143, 0.7310586 ], dtype=float32))
    """
    if squeeze_from is not None and squeeze_from.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"squeeze_from must share x's [T, B] = {x.shape[:2]}, got shape {squeeze_from.shape}"
        )
    d = temporal_attention_scores(x if squeeze_from is None else squeeze_from, params)
    scale = d.T  # [T, B]
    if discard_threshold is not None:
        scale = jnp.where(scale >= discard_threshold, scale, 0.0)
    scale = scale.reshape(scale.shape + (1,) * (x.ndim - 2))
    return (x.astype(jnp.float32) * scale).astype(x.dtype), d
