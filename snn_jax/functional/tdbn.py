"""Threshold-dependent batch normalization (Zheng et al. 2021) as pure functions.

For a pre-activation ``x`` of shape ``[T, B, ..., C]`` the statistics of channel
``k`` are taken jointly over time, batch and space (METHOD.md section 4)::

    mean_k = E[x_k],   var_k = Var[x_k]            over (T, B, H, W)
    y_k = lambda_k * alpha * V_th * (x_k - mean_k) / sqrt(var_k + eps) + beta_k

so that at initialisation (``lambda = 1``, ``beta = 0``) pre-activations are
distributed as N(0, (alpha * V_th)^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["tdbn_affine", "tdbn_apply", "tdbn_normalize", "tdbn_statistics"]


def tdbn_statistics(x: Array, axis_name: str | None = None) -> tuple[Array, Array]:
    """Per-channel mean and (biased) variance over all axes but the last.

    Computed in float32 at least. Under ``jax.jit`` with ``x`` sharded over
    devices these are the statistics of the global batch; inside ``shard_map``
    or ``pmap`` pass the mapped ``axis_name`` to average across it.

    Args:
      x: ``[T, B, ..., C]``.
      axis_name: a mapped axis to average the moments over, or ``None``.

    Returns:
      ``(mean, var)``, each of shape ``[C]``.

    Raises:
      ValueError: ``x`` with fewer than two axes (no examples to average over).

    >>> x = jnp.arange(8.0).reshape(2, 2, 2)  # T=2, B=2, C=2
    >>> tdbn_statistics(x)
    (Array([3., 4.], dtype=float32), Array([5., 5.], dtype=float32))
    """
    if x.ndim < 2:
        raise ValueError(
            f"tdbn_statistics expects [T, B, ..., C] (or time folded into the batch, "
            f"[T*B, ..., C]), got shape {x.shape}"
        )
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    mean_sq = jnp.mean(jnp.square(x), axes)
    if axis_name is not None:
        mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
    # var = E[x^2] - E[x]^2 can round below zero; clamp as flax.linen.BatchNorm does.
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    return mean, var


def tdbn_affine(
    mean: Array,
    var: Array,
    scale: Array | None = None,
    bias: Array | None = None,
    *,
    alpha: float = 1.0,
    v_th: float = 0.5,
    epsilon: float = 1e-5,
) -> tuple[Array, Array]:
    """Per-channel ``(factor, shift)`` with ``tdbn_normalize(x, ...) == x * factor + shift``.

    ``factor = scale * alpha * v_th / sqrt(var + epsilon)``, ``shift = bias - mean * factor``.

    >>> tdbn_affine(jnp.array([1.0]), jnp.array([4.0]), epsilon=0.0)
    (Array([0.25], dtype=float32), Array([-0.25], dtype=float32))
    """
    factor = alpha * v_th * jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        factor = factor * scale
    shift = -mean * factor
    if bias is not None:
        shift = shift + bias
    return factor, shift


def tdbn_apply(x: Array, factor: Array, shift: Array) -> Array:
    """``x * factor + shift`` in float32 (or ``x.dtype`` if wider), with ``(factor, shift)``
    from :func:`tdbn_affine`.

    A bfloat16 ``x`` (mixed-precision convs) is widened first: ``x * factor``
    and ``shift`` are each large against their sum for a channel whose mean is
    large against its spread, and would be rounded before they cancel.

    Raises:
      TypeError: an integer ``x`` (the normalized values would be rounded).

    >>> x = jnp.array([[100.0], [102.0]], jnp.bfloat16)
    >>> tdbn_apply(x, jnp.array([0.5]), jnp.array([-50.5]))[:, 0]
    Array([-0.5,  0.5], dtype=float32)
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"tdBN needs a floating-point input, got {x.dtype}; cast it first, e.g. "
            "x.astype(jnp.float32) (an integer output would round the normalized values)"
        )
    compute = jnp.promote_types(x.dtype, jnp.float32)
    return x.astype(compute) * factor.astype(compute) + shift.astype(compute)


def tdbn_normalize(
    x: Array,
    mean: Array,
    var: Array,
    scale: Array | None = None,
    bias: Array | None = None,
    *,
    alpha: float = 1.0,
    v_th: float = 0.5,
    epsilon: float = 1e-5,
) -> Array:
    """``scale * alpha * v_th * (x - mean) / sqrt(var + epsilon) + bias``, in ``x.dtype``.

    Computed in float32 (or ``x.dtype`` if wider), then cast to ``x.dtype``.

    Args:
      x: ``[..., C]``.
      mean, var: per-channel statistics ``[C]``.
      scale, bias: the learned ``lambda`` and ``beta`` ``[C]`` (``None``: 1 and 0).
      alpha: 1 in serial structures, ``1/sqrt(n)`` for each of ``n`` summed branches.
      v_th: the firing threshold of the neurons this layer feeds.
      epsilon: added to the variance.

    >>> tdbn_normalize(jnp.array([[0.0], [2.0]]), jnp.array([1.0]), jnp.array([1.0]),
    ...                epsilon=0.0)
    Array([[-0.5],
           [ 0.5]], dtype=float32)
    """
    factor, shift = tdbn_affine(mean, var, scale, bias, alpha=alpha, v_th=v_th, epsilon=epsilon)
    return tdbn_apply(x, factor, shift).astype(x.dtype)
