"""Threshold-dependent batch normalization (tdBN) as a Flax linen module."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional.tdbn import tdbn_affine, tdbn_apply, tdbn_statistics

__all__ = ["TdBatchNorm"]


class TdBatchNorm(nn.Module):
    """tdBN (Zheng et al. 2021): per-channel statistics over (T, B, H, W), scaled to ``alpha*V_th``.

    ``y = scale * alpha * v_th * (x - mean) / sqrt(var + epsilon) + bias``
    with ``scale = 1``, ``bias = 0`` at init, on inputs ``[T, B, ..., C]``. In
    training the batch statistics are used and running estimates are updated,
    ``ra = momentum * ra + (1 - momentum) * batch`` (biased variance, as in
    ``flax.linen.BatchNorm``), in the ``batch_stats`` collection (``mean``,
    ``var``); in evaluation the running estimates are used. Under ``jax.jit``
    with the batch sharded over devices, the statistics are those of the global
    batch; ``axis_name`` is only for ``shard_map``/``pmap`` code.

    Attributes:
      alpha: 1 in serial structures; ``1/sqrt(n)`` for each of ``n`` summed branches.
      v_th: threshold of the neurons fed by this layer.
      momentum: decay of the running statistics.
      epsilon: added to the variance.
      use_running_average: evaluation mode (may also be given at call time).
      axis_name: mapped axis to average statistics over (``shard_map``/``pmap``).
      use_scale, use_bias: learn ``lambda`` and ``beta``.
      dtype: output dtype (``None``: the input's). Statistics and the affine
        step are float32 (or the input's dtype if wider).
      param_dtype: dtype of ``scale`` and ``bias``.

    >>> import jax
    >>> x = jax.random.normal(jax.random.key(0), (4, 3, 5, 5, 2)) * 3 + 1
    >>> bn = TdBatchNorm(v_th=0.5)
    >>> y, state = bn.init_with_output(jax.random.key(1), x, use_running_average=False)
    >>> round(float(y[..., 0].std()), 3)
    0.5
    """

    alpha: float = 1.0
    v_th: float = 0.5
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_running_average: bool | None = None
    axis_name: str | None = None
    use_scale: bool = True
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """The normalized ``x``, ``[T, B, ..., C]``, in ``dtype`` (``None``: ``x``'s)."""
        factor, shift = self.affine(x, use_running_average)
        return tdbn_apply(x, factor, shift).astype(self.dtype or x.dtype)

    @nn.compact
    def affine(
        self, x: jax.Array, use_running_average: bool | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Per-channel ``(factor, shift)`` ``[C]`` with ``self(x) == x * factor + shift``.

        Takes the statistics of ``x`` (or the running ones) and updates the
        running estimates exactly as a call does; the caller applies the
        affine map itself (:func:`snn_jax.functional.tdbn_apply`), as the
        compact norm-and-neuron unit does (:class:`snn_jax.nn.NormNeuron`).
        """
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        if x.ndim < 3:
            raise ValueError(
                "TdBatchNorm expects [T, B, ..., C] (ndim >= 3: time, batch, channels), "
                f"got shape {x.shape}"
            )
        channels = x.shape[-1]
        if self.has_variable("batch_stats", "mean"):
            stored = self.get_variable("batch_stats", "mean").shape[-1]
            if stored != channels:
                raise ValueError(
                    f"TdBatchNorm was initialised for {stored} channels, got input with "
                    f"{channels} (shape {x.shape}); use a new layer for a new width"
                )
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        scale = bias = None
        if self.use_scale:
            scale = self.param("scale", nn.initializers.ones, (channels,), self.param_dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (channels,), self.param_dtype)

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            mean, var = tdbn_statistics(x, self.axis_name)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var

        return tdbn_affine(
            mean, var, scale, bias, alpha=self.alpha, v_th=self.v_th, epsilon=self.epsilon
        )
