"""Temporal-wise attention (TA-SNN) as a Flax layer over time-major ``[T, B, ...]``.

The layer owns the excitation's weights and calls
:func:`snn_jax.functional.temporal_attention` (METHOD.md section 11).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional.attention import AttentionParams, check_reduction, temporal_attention

__all__ = ["TemporalAttention"]


def _torch_linear_init(fan_in: int):
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: PyTorch's ``nn.Linear`` default, weights and bias."""

    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, dtype))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TemporalAttention(nn.Module):
    """``y[t, b] = d[b, t] x[t, b]``, ``d = sigmoid(W2 relu(W1 mean(x) + b1) + b2)``.

    Yao et al., "Temporal-wise Attention Spiking Neural Networks for Event
    Streams Classification", ICCV 2021 (official code: BICLab/TA-SNN,
    ``module/TA.py``). The squeeze averages each frame over every axis but
    time and batch (all channels and positions, as the official code's
    adaptive average pool over ``[C, H, W]``). SpikingJelly's
    ``layer.TemporalWiseAttention`` differs: its two layers have no biases, and
    it passes both the average and the maximum of each frame through the shared
    MLP and sums the two before the sigmoid; we follow the official code.

    The weights are made for the ``T`` of the first input (initialisation as
    PyTorch's ``nn.Linear``: uniform in ``+-1/sqrt(fan_in)``); another ``T``
    later is an error.

    Attributes:
      reduction: ``r``, the hidden layer has ``T // r`` units; ``1 <= r <= T``.
      discard_threshold: ``None`` or ``d_th``: in evaluation (``train=False``)
        the frames with ``d[b, t] < d_th`` are zeroed (the paper's attention
        pruning; not applied in training, where every frame is scaled).

    Sows ``attention_scores`` (``[B, T]``) and, when pruning,
    ``dropped_fraction`` (``[B]``, the fraction of each example's frames
    dropped) into ``intermediates``.

    >>> import jax, jax.numpy as jnp
    >>> layer = TemporalAttention(reduction=2)
    >>> x = jnp.ones((4, 3, 5, 5, 2))                          # T=4, B=3
    >>> y, variables = layer.init_with_output(jax.random.key(0), x)
    >>> y.shape, jax.tree.map(jnp.shape, variables["params"])["w1"]
    ((4, 3, 5, 5, 2), (4, 2))
    """

    reduction: int = 1
    discard_threshold: float | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = True, squeeze_from: jax.Array | None = None
    ) -> jax.Array:
        """``x`` scaled by its scores (``squeeze_from``: as ``temporal_attention``'s)."""
        if x.ndim < 2:
            raise ValueError(f"TemporalAttention needs time-major x [T, B, ...], got {x.shape}")
        t = x.shape[0]
        if self.has_variable("params", "w1"):
            made_for = self.get_variable("params", "w1").shape[0]
            if made_for != t:
                raise ValueError(
                    f"TemporalAttention {self.name!r} was initialised for T = {made_for} time "
                    f"steps, got input with T = {t} (shape {x.shape}); its weights depend on T, "
                    f"so use the same T as at initialisation"
                )
        check_reduction(self.reduction, t)
        hidden = t // self.reduction
        params = AttentionParams(
            self.param("w1", _torch_linear_init(t), (t, hidden)),
            self.param("b1", _torch_linear_init(t), (hidden,)),
            self.param("w2", _torch_linear_init(hidden), (hidden, t)),
            self.param("b2", _torch_linear_init(hidden), (t,)),
        )
        prune = self.discard_threshold is not None and not train
        threshold = self.discard_threshold if prune else None
        y, d = temporal_attention(x, params, threshold, squeeze_from=squeeze_from)
        self.sow("intermediates", "attention_scores", d)
        if prune:
            dropped = jnp.mean((d < self.discard_threshold).astype(jnp.float32), axis=1)
            self.sow("intermediates", "dropped_fraction", dropped)
        return y
