"""Batch norms that treat time steps apart: TEBN and BNTT as pure functions (METHOD.md section 10).

For a pre-activation ``x`` ``[T, B, ..., C]``:

- **TEBN** (temporal effective batch normalization, Duan et al., NeurIPS
  2022): the statistics of tdBN, per channel over (T, B, H, W), then the
  usual affine map and a learned scale per time step ``p_t``::

      y[t] = p_t * (gamma * (x[t] - mean) / sqrt(var + eps) + beta)

- **BNTT** (batch normalization through time, Kim & Panda 2021): statistics
  and scale of each time step apart, per channel over (B, H, W), no bias::

      y[t] = gamma[t] * (x[t] - mean[t]) / sqrt(var[t] + eps)

Both are, in evaluation, an affine map per time step and channel,
``y[t] = x[t] * factor[t] + shift[t]`` (``[T, C]`` each), which is what
inference folding uses (:func:`snn_jax.analysis.fold_norms_per_step`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from snn_jax.functional.tdbn import tdbn_affine

Array = jax.Array

__all__ = ["bntt_affine", "step_apply", "step_statistics", "tebn_affine"]


def step_statistics(x: Array, axis_name: str | None = None) -> tuple[Array, Array]:
    """Per time step and channel mean and (biased) variance of ``x`` ``[T, B, ..., C]``.

    Returns:
      ``(mean, var)``, each ``[T, C]``, in float32 (or ``x``'s dtype if wider).

    >>> x = jnp.arange(8.0).reshape(2, 2, 2)   # T=2, B=2, C=2
    >>> step_statistics(x)[0]
    Array([[1., 2.],
           [5., 6.]], dtype=float32)
    """
    if x.ndim < 3:
        raise ValueError(f"step_statistics expects [T, B, ..., C], got shape {x.shape}")
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(x, axes)
    mean_sq = jnp.mean(jnp.square(x), axes)
    if axis_name is not None:
        mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
    return mean, jnp.maximum(mean_sq - jnp.square(mean), 0.0)


def tebn_affine(mean, var, scale, bias, step_scale, *, epsilon=1e-5) -> tuple[Array, Array]:
    """TEBN's ``(factor, shift)`` ``[T, C]`` from statistics ``[C]`` and ``p`` ``[T]``.

    >>> f, s = tebn_affine(jnp.array([1.0]), jnp.array([4.0]), None, None,
    ...                    jnp.array([1.0, 2.0]), epsilon=0.0)
    >>> f[:, 0].tolist(), s[:, 0].tolist()
    ([0.5, 1.0], [-0.5, -1.0])
    """
    factor, shift = tdbn_affine(mean, var, scale, bias, alpha=1.0, v_th=1.0, epsilon=epsilon)
    p = jnp.asarray(step_scale)[:, None]
    return p * factor, p * shift


def bntt_affine(mean, var, scale, *, epsilon=1e-5) -> tuple[Array, Array]:
    """BNTT's ``(factor, shift)`` ``[T, C]`` from per-step statistics and scales ``[T, C]``.

    >>> f, s = bntt_affine(jnp.array([[1.0]]), jnp.array([[4.0]]), jnp.array([[3.0]]), epsilon=0)
    >>> f.tolist(), s.tolist()
    ([[1.5]], [[-1.5]])
    """
    factor = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        factor = factor * scale
    return factor, -mean * factor


def step_apply(x: Array, factor: Array, shift: Array) -> Array:
    """``x[t] * factor[t] + shift[t]`` for ``x`` ``[T, B, ..., C]`` and ``[T, C]`` maps.

    >>> step_apply(jnp.ones((2, 3, 1)), jnp.array([[2.0], [3.0]]), jnp.array([[0.0], [1.0]]))[:, 0]
    Array([[2.],
           [4.]], dtype=float32)
    """
    compute = jnp.promote_types(x.dtype, jnp.float32)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return x.astype(compute) * factor.reshape(shape).astype(compute) + shift.reshape(shape).astype(
        compute
    )
