"""Folding trained tdBN / BN statistics into the preceding conv or dense layer.

In evaluation a norm layer is an affine map per output channel ``k`` with
the running estimates (METHOD.md section 4)::

    y_k = lambda_k * alpha * V_th * (x_k - mean_k) / sqrt(var_k + eps) + beta_k

and ``x = W * o + b`` is linear, so the two collapse into one layer with

    W'_k = lambda_k * alpha * V_th * W_k / sqrt(var_k + eps)
    b'_k = lambda_k * alpha * V_th * (b_k - mean_k) / sqrt(var_k + eps) + beta_k

(``alpha * V_th = 1`` for an ordinary BN). The folded network has no norm
layers and biased convs: the model's ``norm="none"`` variant. Its outputs
equal the unfolded evaluation-mode outputs up to float rounding; a membrane
potential that lands exactly on the threshold may round to the other side and
flip one spike.

TEBN and BNTT (METHOD.md section 10) are, in evaluation, an affine map per
time step, ``y[t] = x[t] * factor[t] + shift[t]``: they fold into one kernel
and bias per time step (:func:`fold_norms_per_step`), ``W'_t = factor[t] * W``,
``b'_t = factor[t] * b + shift[t]``. They cannot fold into the one shared
kernel of a norm-free model (:func:`fold_norms` refuses them): a network that
runs folded needs ``T`` kernels per layer, one convolution per step.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.inspect import Call, capture_calls, is_linear, is_norm, path_name, subtree
from snn_jax.nn import BNTT, TEBN, TdBatchNorm

__all__ = ["fold_affine", "fold_norms", "fold_norms_per_step", "norm_pairs"]

Array = jax.Array


def fold_affine(
    kernel: Array,
    bias: Array | None,
    mean: Array,
    var: Array,
    *,
    scale: Array | None = None,
    beta: Array | None = None,
    gain: float = 1.0,
    epsilon: float = 1e-5,
) -> tuple[Array, Array]:
    """``(W', b')`` of a linear layer followed by a norm in evaluation mode.

    Args:
      kernel: ``W``, ``[..., C]`` (conv ``[kh, kw, C_in, C]``, dense ``[N_in, C]``).
      bias: ``b`` ``[C]`` or ``None`` (no bias: 0).
      mean, var: running mean and variance ``[C]``.
      scale: ``lambda`` ``[C]`` (``None``: 1).
      beta: ``beta`` ``[C]`` (``None``: 0).
      gain: ``alpha * V_th`` for tdBN, 1 for BN.
      epsilon: the norm's epsilon.

    Returns:
      ``W' = s * W`` and ``b' = s * (b - mean) + beta`` with
      ``s = gain * lambda / sqrt(var + eps)`` per output channel.

    >>> import jax.numpy as jnp
    >>> w, b = fold_affine(jnp.ones((2, 1)), None, jnp.array([1.0]), jnp.array([4.0]),
    ...                    gain=0.5, epsilon=0.0)
    >>> w.tolist(), b.tolist()      # s = 0.5 / 2
    ([[0.25], [0.25]], [-0.25])
    """
    s = gain / jnp.sqrt(jnp.asarray(var, jnp.float32) + epsilon)
    if scale is not None:
        s = s * scale
    b = jnp.zeros_like(s) if bias is None else bias
    new_bias = s * (b - mean) + (0.0 if beta is None else beta)
    return (kernel * s).astype(kernel.dtype), new_bias.astype(jnp.float32)


def _is_linear_or_norm(module: nn.Module) -> bool:
    return is_linear(module) or is_norm(module)


def _gain(norm: nn.Module) -> float:
    if isinstance(norm, TdBatchNorm):
        return float(norm.alpha * norm.v_th)
    if norm.axis not in (-1, None):
        raise ValueError(f"only BatchNorm over the last (channel) axis folds, got axis={norm.axis}")
    return 1.0


def _marker_value(name: str) -> float:
    """A float32-exact number for a linear layer's name, 1 .. 2**20."""
    return float(zlib.crc32(name.encode()) % (1 << 20) + 1)


def _marked(call: Call) -> Any:
    """A linear layer's output replaced by a constant that names it (see :func:`norm_pairs`)."""
    if not is_linear(call.module):
        return call.output
    return jnp.full(call.output.shape, _marker_value(call.name), jnp.float32)


def norm_pairs(model: nn.Module, variables: Mapping[str, Any], x: Array) -> list[tuple[Call, Call]]:
    """Each norm layer with the conv/dense layer that feeds it, in call order.

    The model runs once in evaluation mode with each conv/dense output replaced
    by a constant that names the layer; a norm's producer is the layer whose
    constant it receives. (Comparing the real values would be ambiguous where
    two layers give the same output, e.g. the convs of a residual block whose
    inputs are silent: both output zeros.)

    Raises:
      ValueError: if a norm is not fed directly by a conv or dense layer.
    """
    calls, _ = capture_calls(
        model,
        variables,
        x,
        _is_linear_or_norm,
        train=False,
        compiled=True,
        replace_output=_marked,
    )
    linears = {_marker_value(c.name): c for c in calls if is_linear(c.module)}
    if len(linears) != sum(is_linear(c.module) for c in calls):
        raise ValueError("two conv/dense layers of the model have the same marker; rename one")
    pairs = []
    for call in calls:
        if not is_norm(call.module):
            continue
        seen = np.unique(np.asarray(call.args[0]))
        producer = linears.get(float(seen[0])) if seen.size == 1 else None
        if producer is None:
            raise ValueError(
                f"norm layer {call.name} is not fed directly by a conv or dense layer; "
                "it cannot be folded"
            )
        pairs.append((producer, call))
    return pairs


def fold_norms(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    *,
    folded_model: nn.Module | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Folds every norm layer into its conv/dense: a norm-free model for inference.

    Args:
      model: a model of ``snn_jax.models`` with ``norm`` "tdbn" or "bn" (any
        model whose norm layers directly follow a conv or dense layer).
      variables: its trained variables (``params``, ``batch_stats``).
      x: an example input (its values only serve to trace the layers).
      folded_model: the norm-free twin whose convs and dense layers carry a
        bias; default ``model.clone(norm="none")`` (and ``memory="none"`` for
        a compact model). Its layers must have the
        same paths as the original's.

    Returns:
      ``(folded_model, {"params": ...})``; in evaluation mode (``train=False``)
      its outputs equal those of ``model`` with ``variables``.

    Raises:
      ValueError: if the folded model has no place for a folded bias, or its
        parameters do not match the original's.
    """
    if folded_model is None:
        if not hasattr(model, "norm"):
            raise ValueError(
                f"{type(model).__name__} has no `norm` attribute; pass folded_model=, the same "
                "network without norm layers and with biased convs"
            )
        fields = {"norm": "none"}
        if getattr(model, "memory", None) == "compact":  # it needs norms; same values without
            fields["memory"] = "none"
        folded_model = model.clone(**fields)
    params = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
    folded_shapes = jax.eval_shape(folded_model.init, jax.random.key(0), x)
    target = flax.traverse_util.flatten_dict(flax.core.unfreeze(folded_shapes["params"]))
    new: dict[tuple[str, ...], Any] = {}
    pairs = norm_pairs(model, variables, x)
    folded_norms = {norm.path for _, norm in pairs}
    all_stats = flax.traverse_util.flatten_dict(
        flax.core.unfreeze(variables.get("batch_stats", {}))
    )
    for key in all_stats:
        if key[:-1] not in folded_norms:
            raise ValueError(
                f"running statistics at {path_name(key)} belong to a layer that is not a "
                "TdBatchNorm or flax BatchNorm fed by a conv/dense layer; it cannot be folded"
            )
    for _, norm in pairs:
        if isinstance(norm.module, TEBN | BNTT):
            raise ValueError(
                f"norm layer {norm.name} is a {type(norm.module).__name__}, whose map differs "
                "between time steps: it folds only into one kernel per step; use "
                "fold_norms_per_step"
            )
    for linear, norm in pairs:
        lin = subtree(variables, linear.path)["params"]
        nvars = subtree(variables, norm.path)
        stats, nparams = nvars["batch_stats"], nvars.get("params", {})
        kernel, bias = fold_affine(
            lin["kernel"],
            lin.get("bias"),
            stats["mean"],
            stats["var"],
            scale=nparams.get("scale"),
            beta=nparams.get("bias"),
            gain=_gain(norm.module),
            epsilon=norm.module.epsilon,
        )
        bias_key = (*linear.path, "bias")
        if bias_key not in target:
            raise ValueError(
                f"the folded model has no bias at {path_name(bias_key)} to take the folded "
                f"norm {norm.name}; its convs/dense layers need use_bias=True when norm='none'"
            )
        new[(*linear.path, "kernel")] = kernel
        new[bias_key] = bias
    for key, shape in target.items():
        if key in new:
            value = new[key]
        elif key in params:
            value = params[key]
        else:
            raise ValueError(
                f"the folded model has a parameter {path_name(key)} that the original lacks; "
                "the two models must name their layers alike"
            )
        if value.shape != shape.shape:
            raise ValueError(
                f"parameter {path_name(key)} has shape {value.shape} in the original model and "
                f"{shape.shape} in the folded one"
            )
        new[key] = value
    folded = {"params": flax.traverse_util.unflatten_dict({k: new[k] for k in target})}
    return folded_model, folded


def fold_norms_per_step(
    model: nn.Module, variables: Mapping[str, Any], x: Array
) -> dict[str, tuple[Array, Array]]:
    """Each norm folded into its conv/dense layer, one kernel and bias per time step.

    For TEBN and BNTT (module docstring), and tdBN, whose steps share one map.

    Args:
      model: a model whose norm layers are :class:`snn_jax.nn.TEBN`,
        :class:`snn_jax.nn.BNTT` or :class:`snn_jax.nn.TdBatchNorm`, each
        directly after a conv or dense layer.
      variables: its trained variables (``params``, ``batch_stats``).
      x: an example input (its values only serve to trace the layers).

    Returns:
      ``{linear layer path: (kernels [T, *kernel.shape], biases [T, C])}``:
      at step ``t`` the layer with ``kernels[t]`` and ``biases[t]`` gives the
      norm's evaluation-mode output.

    Raises:
      ValueError: a norm of another type (e.g. flax ``BatchNorm``).
    """
    folded = {}
    for linear, norm in norm_pairs(model, variables, x):
        if not isinstance(norm.module, TEBN | BNTT | TdBatchNorm):
            raise ValueError(
                f"norm layer {norm.name} is a {type(norm.module).__name__}; fold_norms_per_step "
                "folds TEBN, BNTT and TdBatchNorm"
            )
        z = norm.args[0]
        factor, shift = norm.module.apply(
            dict(subtree(variables, norm.path)), z, use_running_average=True, method="affine"
        )
        steps = z.shape[0]
        factor = jnp.broadcast_to(factor, (steps, factor.shape[-1]))
        shift = jnp.broadcast_to(shift, (steps, shift.shape[-1]))
        lin = subtree(variables, linear.path)["params"]
        kernel = lin["kernel"]
        bias = lin.get("bias", jnp.zeros(kernel.shape[-1], jnp.float32))
        kernels = (
            kernel[None] * factor.reshape((steps,) + (1,) * (kernel.ndim - 1) + (-1,))
        ).astype(kernel.dtype)
        folded[linear.name] = (kernels, (factor * bias + shift).astype(jnp.float32))
    return folded
