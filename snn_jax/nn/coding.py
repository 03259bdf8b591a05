"""Encoding static inputs into spike trains, and the decoding (readout) layer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MeanDecoder", "direct_encode", "rate_encode"]


def direct_encode(x: jax.Array, time_steps: int) -> jax.Array:
    """Direct encoding: repeat a static input over time, ``[B, ...] -> [T, B, ...]``.

    The first conv -> tdBN -> LIF layer then acts as the encoder (METHOD.md section 5).

    >>> direct_encode(jnp.ones((2, 3)), 4).shape
    (4, 2, 3)
    """
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    return jnp.broadcast_to(x, (time_steps, *x.shape))


def rate_encode(key: jax.Array, x: jax.Array, time_steps: int) -> jax.Array:
    """Bernoulli rate coding: ``o[t] ~ Bernoulli(x)`` independently per step and element.

    This is the discrete-time Poisson spike train with rate ``x`` per step.

    Args:
      key: PRNG key.
      x: intensities in [0, 1], ``[B, ...]``.
      time_steps: ``T``.

    Returns:
      Spikes ``[T, B, ...]`` of 0 and 1 in ``x.dtype``.

    Raises:
      ValueError: ``time_steps < 1``, or a concrete ``x`` outside [0, 1] (a
        traced ``x``, under ``jax.jit``, cannot be checked).

    >>> s = rate_encode(jax.random.key(0), jnp.array([0.0, 1.0]), 5)
    >>> s[:, 0].sum(), s[:, 1].sum()
    (Array(0., dtype=float32), Array(5., dtype=float32))
    """
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    if not isinstance(x, jax.core.Tracer) and x.size:
        low, high = float(jnp.min(x)), float(jnp.max(x))
        if low < 0 or high > 1:
            raise ValueError(
                f"rate_encode needs intensities in [0, 1] (spike probabilities), got values "
                f"in [{low}, {high}]; scale them first, e.g. pixels / 255"
            )
    u = jax.random.uniform(key, (time_steps, *x.shape))
    return (u < x).astype(x.dtype)


class MeanDecoder(nn.Module):
    """Decoding layer ``Q = (1/T) * sum_t (M o[t] + b)``: ``[T, B, F] -> [B, features]``.

    Computed as ``M mean_t(o[t]) + b``, which is equal by linearity and costs
    one matrix product instead of ``T``. When the caller makes the collection
    ``"step_outputs"`` mutable (the TET loss, :func:`snn_jax.training.tet_loss`),
    it computes every step's output ``O_t = M o[t] + b`` ``[T, B, features]``,
    records it there as ``step_logits`` and returns their mean (not in
    ``init``, whose variables then hold only parameters).

    >>> import jax
    >>> o = (jax.random.uniform(jax.random.key(0), (4, 2, 3)) < 0.5).astype(jnp.float32)
    >>> dec = MeanDecoder(5)
    >>> v = dec.init(jax.random.key(1), o)
    >>> q, steps = dec.apply(v, o, mutable=["step_outputs"])
    >>> steps["step_outputs"]["step_logits"][0].shape
    (4, 2, 5)
    >>> bool(jnp.allclose(q, dec.apply(v, o), atol=1e-6))
    True

    Attributes:
      features: number of outputs (classes).
      use_bias: learn ``b``.
      dtype: compute dtype.
    """

    features: int
    use_bias: bool = True
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, spikes: jax.Array) -> jax.Array:
        if spikes.ndim != 3:
            raise ValueError(
                f"MeanDecoder expects time-major features [T, B, F], got shape {spikes.shape}"
            )
        dense = nn.Dense(self.features, use_bias=self.use_bias, dtype=self.dtype, name="readout")
        if self.is_mutable_collection("step_outputs") and not self.is_initializing():
            per_step = dense(spikes)
            self.sow("step_outputs", "step_logits", per_step)
            return jnp.mean(per_step, axis=0)
        return dense(jnp.mean(spikes, axis=0))
