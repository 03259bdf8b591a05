"""TEBN and BNTT as Flax modules: batch norms with a part per time step (METHOD.md section 10).

Both take ``[T, B, ..., C]`` and keep their running estimates in
``batch_stats`` (``mean``, ``var``), updated as :class:`snn_jax.nn.TdBatchNorm`
does (``ra = momentum * ra + (1 - momentum) * batch``, biased variance). Their
``affine`` gives the per-step ``(factor, shift)`` ``[T, C]``
(:mod:`snn_jax.functional.temporal_norm`). They are trained for one ``T``: an
input with another number of steps is an error.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional.tdbn import tdbn_statistics
from snn_jax.functional.temporal_norm import (
    bntt_affine,
    step_apply,
    step_statistics,
    tebn_affine,
)

__all__ = ["BNTT", "TEBN"]


class _StepNorm(nn.Module):
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = None

    def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
        """The normalized ``x``, ``[T, B, ..., C]``, in ``dtype`` (``None``: ``x``'s)."""
        factor, shift = self.affine(x, use_running_average)
        return step_apply(x, factor, shift).astype(self.dtype or x.dtype)

    def _check(self, x: jax.Array, name: str) -> None:
        """Raises for a non-time-major ``x`` or one that does not fit parameter ``name``."""
        stored = None
        if self.has_variable("params", name):
            stored = self.get_variable("params", name).shape
        if x.ndim < 3:
            raise ValueError(
                f"{type(self).__name__} expects [T, B, ..., C] (ndim >= 3), got shape {x.shape}"
            )
        if stored is not None and stored != self._shape(x):
            raise ValueError(
                f"{type(self).__name__} was initialised for {name} of shape {stored}, got an "
                f"input of shape {x.shape} (T = {x.shape[0]}, C = {x.shape[-1]}); it is "
                "trained for one number of time steps and channels"
            )

    def _update(self, ra_mean, ra_var, mean, var) -> None:
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var


class TEBN(_StepNorm):
    """TEBN (Duan et al. 2022): tdBN's statistics over (T, B, H, W), then ``p_t`` per step.

    ``y[t] = p_t * (scale * (x[t] - mean) / sqrt(var + eps) + bias)``: parameters
    ``scale``, ``bias`` ``[C]`` and ``step_scale`` ``p`` ``[T]`` (one per time
    step, as the authors' code; 1 at init, when TEBN is a plain BN over
    (T, B, H, W)); running statistics ``[C]``.

    >>> x = jax.random.normal(jax.random.key(0), (4, 3, 2)) * 3 + 1   # T=4, B=3, C=2
    >>> y, v = TEBN().init_with_output(jax.random.key(1), x)
    >>> v["params"]["step_scale"].shape, v["batch_stats"]["mean"].shape
    ((4,), (2,))
    """

    def _shape(self, x):
        return (x.shape[0],)

    @nn.compact
    def affine(self, x: jax.Array, use_running_average: bool = False):
        """Per-step ``(factor, shift)`` ``[T, C]``: ``self(x)[t] = x[t] * factor[t] + shift[t]``."""
        self._check(x, "step_scale")
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        p = self.param("step_scale", nn.initializers.ones, (x.shape[0],), jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = tdbn_statistics(x, self.axis_name)
            self._update(ra_mean, ra_var, mean, var)
        return tebn_affine(mean, var, scale, bias, p, epsilon=self.epsilon)


class BNTT(_StepNorm):
    """BNTT (Kim & Panda 2021): statistics and scale per time step, over (B, H, W); no bias.

    ``y[t] = scale[t] * (x[t] - mean[t]) / sqrt(var[t] + eps)``: parameter
    ``scale`` ``[T, C]`` (1 at init); running statistics ``mean``, ``var``
    ``[T, C]``, one per time step.

    >>> x = jax.random.normal(jax.random.key(0), (4, 3, 2))   # T=4, B=3, C=2
    >>> y, v = BNTT().init_with_output(jax.random.key(1), x)
    >>> v["params"]["scale"].shape, v["batch_stats"]["var"].shape
    ((4, 2), (4, 2))
    """

    def _shape(self, x):
        return (x.shape[0], x.shape[-1])

    @nn.compact
    def affine(self, x: jax.Array, use_running_average: bool = False):
        """Per-step ``(factor, shift)`` ``[T, C]``: ``self(x)[t] = x[t] * factor[t] + shift[t]``."""
        self._check(x, "scale")
        shape = self._shape(x)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, shape, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, shape, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = step_statistics(x, self.axis_name)
            self._update(ra_mean, ra_var, mean, var)
        return bntt_affine(mean, var, scale, epsilon=self.epsilon)
