"""Hybrid training (Rathi et al. 2020): start STBP fine-tuning from a converted network.

:func:`hand_over` gives a zoo SNN the weights and thresholds of a
:class:`~snn_jax.conversion.Conversion`, so that before any fine-tuning it
computes what the converted network computes. The SNN to fine-tune must have
the converted network's layers, per-channel thresholds
(``NeuronSpec.channel_threshold``) and, for an exact hand-over, its neuron:
``tau = 1`` and ``reset="subtract"`` (another leak or reset starts from the
converted weights under other dynamics).

- ``norm="none"``: the parameters are the converted ones, unchanged.
- ``norm="tdbn"`` (or ``"bn"``): the conv/dense kernels are the converted
  kernels (the SNN's convs have no bias), the thresholds the converted
  ``theta``, and each norm layer reproduces the converted layer's affine map.
  With ``y = W' s + b'`` the converted layer's output, measured on the
  calibration images at the SNN's ``T`` (per channel, over time, batch and
  space, as tdBN's statistics), the norm layer gets::

      running mean = mean(W' s) = mean(y) - b',   running var = var(y)
      scale (lambda) = sqrt(var + eps) / (alpha * V_th),   bias (beta) = mean(y)

  so that in evaluation ``tdBN(x) = lambda * alpha * V_th * (x - mean) /
  sqrt(var + eps) + beta = x + b'``: exactly the converted layer. tdBN's
  ``alpha * V_th`` no longer sets the scale of the pre-activations (the
  converted ``theta`` and ``lambda`` do); it only enters ``lambda``. In
  training mode tdBN normalises with the batch's own statistics, which
  differ from the calibration ones by their sampling noise, so the first
  training steps start from (almost) the converted network, and from then on
  the norm layers learn ``lambda`` and ``beta`` as usual.

The thresholds are parameters (``v_th`` ``[C]`` of each LIF) and fine-tuning
updates them with the weights; Rathi et al. 2020 kept them fixed (DIET-SNN,
Rathi and Roy 2021, trains them). Rathi et al. fine-tune with their
spike-timing-dependent surrogate (STDB); here it is STBP with the model's
surrogate, around each neuron's own threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.analysis import norm_pairs
from snn_jax.conversion.convert import Conversion
from snn_jax.inspect import capture_calls, is_linear

__all__ = ["hand_over", "layer_statistics"]


def _flat(tree) -> dict[tuple[str, ...], Any]:
    return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def layer_statistics(
    model: nn.Module, variables: Mapping[str, Any], images: np.ndarray, batch_size: int = 64
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and (biased) variance of every conv/dense output, in evaluation.

    Statistics are over all axes but the last (time, batch and space for a
    model that folds time into the batch), over all ``images``.

    Returns:
      ``{layer path: (mean [C], var [C])}`` (float64).
    """
    sums: dict[str, list[Any]] = {}
    for start in range(0, len(images), batch_size):
        calls, _ = capture_calls(
            model,
            variables,
            images[start : start + batch_size],
            is_linear,
            train=False,
            outermost=False,
            compiled=True,
        )
        for call in calls:
            y = np.asarray(call.output, np.float64).reshape(-1, call.output.shape[-1])
            s = sums.setdefault(call.name, [0.0, 0.0, 0])
            s[0] = s[0] + y.sum(0)
            s[1] = s[1] + (y * y).sum(0)
            s[2] += y.shape[0]
    stats = {}
    for name, (s1, s2, n) in sums.items():
        mean = s1 / n
        stats[name] = (mean, np.maximum(s2 / n - mean * mean, 0.0))
    return stats


def hand_over(
    conversion: Conversion,
    model: nn.Module,
    calibration: np.ndarray,
    *,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Variables for ``model`` that make it compute the converted network (see the module doc).

    Args:
      conversion: the converted network.
      model: the zoo SNN to fine-tune: the same architecture, LIF neurons
        with ``channel_threshold=True``, norm ``"none"``, ``"tdbn"`` or ``"bn"``.
      calibration: training images ``[N, H, W, C]`` for the norm statistics
        (unused for ``norm="none"``).
      batch_size: calibration batch size.

    Returns:
      ``{"params": ...}`` (and ``"batch_stats"`` for a model with norm layers).

    Raises:
      ValueError: if ``model`` does not have the converted network's layers or
        per-channel thresholds.

    >>> import jax, numpy as np
    >>> from snn_jax.models import get_model
    >>> from snn_jax.conversion import convert
    >>> from snn_jax.nn import NeuronSpec
    >>> ann = get_model("digits_cnn", width=2, hidden_features=4, neuron=NeuronSpec(kind="relu"),
    ...                 norm="bn", time_steps=1)
    >>> x = np.asarray(jax.random.uniform(jax.random.key(0), (16, 8, 8, 1)))
    >>> conv = convert(ann, ann.init(jax.random.key(1), x, train=False), x, time_steps=4)
    >>> snn = conv.model.clone(norm="tdbn")
    >>> variables = hand_over(conv, snn, x)
    >>> a = snn.apply(variables, x, train=False)
    >>> b = conv.model.apply(conv.variables, x)
    >>> bool(np.mean(np.argmax(a, -1) == np.argmax(b, -1)) >= 0.9)
    True
    """
    neuron = getattr(model, "neuron", None)
    if getattr(neuron, "kind", None) != "lif" or not neuron.channel_threshold:
        raise ValueError(
            "hand_over needs a zoo SNN with LIF neurons and channel_threshold=True, got "
            f"{type(model).__name__} with neuron={neuron!r}"
        )
    calibration = np.asarray(calibration, np.float32)
    example = calibration[:batch_size]
    converted = _flat(conversion.variables["params"])
    plain = model.clone(norm="none")
    target = _flat(
        jax.eval_shape(lambda x: plain.init(jax.random.key(0), x), example[:1])["params"]
    )
    if set(target) != set(converted) or any(target[k].shape != converted[k].shape for k in target):
        raise ValueError(
            f"{type(model).__name__} does not have the converted network's layers; build it "
            "from the same model (e.g. conversion.model.clone(norm=..., time_steps=...))"
        )
    if model.norm == "none":
        return {"params": conversion.variables["params"]}

    stats = layer_statistics(plain, conversion.variables, calibration, batch_size)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), example[:1])
    # the converted weights where they fit; norms start as the identity (scale 1, var 1)
    fill = {"scale": jnp.ones, "var": jnp.ones, "bias": jnp.zeros, "mean": jnp.zeros}
    params, batch_stats = (
        {
            k: converted[k] if k in converted else fill[k[-1]](v.shape, v.dtype)
            for k, v in _flat(shapes[collection]).items()
        }
        for collection in ("params", "batch_stats")
    )
    variables = {
        "params": flax.traverse_util.unflatten_dict(params),
        "batch_stats": flax.traverse_util.unflatten_dict(batch_stats),
    }
    for linear, norm in norm_pairs(model, variables, example[:1]):
        path = linear.path
        mean_y, var_y = stats[linear.name]
        bias = np.asarray(converted[(*path, "bias")], np.float64)
        gain = float(norm.module.alpha * norm.module.v_th)
        eps = float(norm.module.epsilon)
        params[(*path, "kernel")] = converted[(*path, "kernel")]
        params[(*norm.path, "scale")] = jnp.asarray(np.sqrt(var_y + eps) / gain, jnp.float32)
        params[(*norm.path, "bias")] = jnp.asarray(mean_y, jnp.float32)
        batch_stats[(*norm.path, "mean")] = jnp.asarray(mean_y - bias, jnp.float32)
        batch_stats[(*norm.path, "var")] = jnp.asarray(var_y, jnp.float32)
    return {
        "params": flax.traverse_util.unflatten_dict(params),
        "batch_stats": flax.traverse_util.unflatten_dict(batch_stats),
    }
