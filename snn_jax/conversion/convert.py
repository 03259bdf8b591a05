"""ANN-to-SNN conversion of a zoo model's ANN twin (ReLU + BN) into an integrate-and-fire SNN.

The steps (Diehl et al. 2015, Rueckauer et al. 2017, Sengupta et al. 2019):

1. **Fold BN** into the conv/dense layers (:func:`snn_jax.analysis.fold_norms`):
   the ANN becomes ``a_l = relu(z_l)`` with biased linear layers.
2. **Balance**: on calibration data, each ReLU layer ``l`` gets a scale
   ``lambda_l`` ``[C]``, a percentile of its positive activations
   (:func:`~snn_jax.conversion.balance.activation_scale`).
3. **Convert**: each ReLU becomes an integrate-and-fire neuron (``tau = 1``)
   with reset by subtraction and per-channel thresholds ``theta_l``. A spike
   of layer ``l`` stands for ``lambda_l`` units of activation, so its rate
   ``r_l`` approximates ``min(a_l, lambda_l) / lambda_l``. The input image is a
   constant current (direct encoding) and the decoder averages the readout of
   the last spikes over time (the model's ``MeanDecoder``: the accumulated
   output divided by ``T``).

The weights are rescaled so that every spike is a plain 0/1 event. A neuron
``l`` receives ``c_l`` times its ANN pre-activation and has threshold
``theta_l = c_l * lambda_l``, so that ``r_l = clip(c_l z_l / theta_l, 0, 1)``:

- a linear layer ``L`` feeding neuron ``l`` gets
  ``W'_L = c_l[out] * W_L * A_L[in]`` and ``b'_L = c_l * b_L``, where ``A_L``
  is the activation one input spike stands for (``lambda`` of the neuron layer
  it comes from, through any pooling or flattening; 1 for the image);
- plain layers take ``c_l = V / lambda_l``, so ``theta_l = V`` (the
  ``threshold`` argument, 1 by default: Rueckauer's weight normalisation);
- a neuron that also receives an identity shortcut (a residual block) adds
  the raw spikes ``s_in`` of the block input, which stand for
  ``lambda_in * s_in``; it takes ``c_l = 1 / lambda_in`` so that the identity
  needs no weight, and ``theta_l = lambda_l / lambda_in`` (per channel).

Which linear layer feeds which neuron is read from the call order (a linear
layer feeds the next neuron called after it; the readout feeds the output),
``A_L`` and the identity terms from one pass with every neuron replaced by its
``lambda`` map and every linear output by 0. The result is then checked: in the
rate limit (each neuron replaced by ``clip(I / theta, 0, 1)``) the SNN must
compute exactly the ANN with its activations clipped at ``lambda``
(:func:`rate_limit_logits`); an architecture that breaks the assumptions
raises ``ValueError``.

Average pooling passes rates through unchanged and converts exactly. Max
pooling (the ImageNet stem) over spikes is the OR of the spikes in the
window, which over-estimates the maximum rate: an approximation, as in the
literature. Not implemented: Sengupta's Spike-Norm (thresholds from the SNN's
own input currents) and a non-zero initial membrane potential.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.analysis import fold_norms
from snn_jax.conversion.balance import activation_scale
from snn_jax.inspect import Call, capture_calls, is_linear, is_neuron

__all__ = ["Conversion", "convert", "rate_limit_logits", "snn_twin"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A converted network.

    Attributes:
      model: the SNN, :func:`snn_twin` of the ANN (integrate-and-fire
        neurons, reset by subtraction, per-channel thresholds, no norm); run
        it at another ``T`` with ``model.clone(time_steps=T)``.
      variables: its ``{"params": ...}`` (biased convs, thresholds ``v_th``).
      ann: the BN-folded ANN (``norm="none"``, ReLU neurons, ``T = 1``).
      ann_variables: its ``{"params": ...}``.
      scales: ``lambda`` ``[C]`` per neuron layer (path joined by ``/``).
      thresholds: ``theta`` ``[C]`` per neuron layer.
      gains: ``c`` ``[C]`` per neuron layer (current = ``c`` times the ANN pre-activation).
      percentile, channelwise: the balancing settings used.
    """

    model: nn.Module
    variables: dict[str, Any]
    ann: nn.Module
    ann_variables: dict[str, Any]
    scales: dict[str, np.ndarray]
    thresholds: dict[str, np.ndarray]
    gains: dict[str, np.ndarray]
    percentile: float
    channelwise: bool


def snn_twin(ann: nn.Module, time_steps: int) -> nn.Module:
    """The converted SNN of a zoo ANN (same layers): IF neurons, reset by subtraction, no norm.

    The neurons keep the ANN's other settings (surrogate, unroll) for fine-tuning.
    """
    neuron = ann.neuron.replace(kind="lif", tau=1.0, reset="subtract", channel_threshold=True)
    return ann.clone(norm="none", neuron=neuron, time_steps=time_steps)


def _spiking(model: nn.Module) -> nn.Module:
    """``model`` with LIF layers in place of its ReLUs (same parameters), to intercept them."""
    return model.clone(neuron=model.neuron.replace(kind="lif"))


def _batches(images: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def _per_channel(x: np.ndarray, what: str) -> np.ndarray:
    """The per-channel value of ``x`` ``[..., C]`` that must not vary over the other axes."""
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    if not np.allclose(x, x[:1], rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"{what} varies within a channel; conversion needs channel-preserving layers "
            "(conv, dense, pooling, flatten) between neurons"
        )
    return x[0]


def _neuron_or_linear(module: nn.Module) -> bool:
    return is_neuron(module) or is_linear(module)


def _eval_pass(
    model: nn.Module, variables: Mapping[str, Any], x: Any, predicate, replace=None
) -> tuple[list[Call], Any]:
    """``capture_calls`` in evaluation mode, jitted; each layer must be called once."""
    calls, out = capture_calls(
        model,
        variables,
        x,
        predicate,
        train=False,
        outermost=False,
        compiled=True,
        replace_output=replace,
    )
    repeated = [c.name for c in calls if "#" in c.name]
    if repeated:
        raise ValueError(f"layers {repeated} are called twice; conversion needs one call each")
    return calls, out


def _relu(call: Call) -> Array:
    return jax.nn.relu(call.args[0])


def _lambda_map(scales):
    """Each neuron's output replaced by its ``lambda`` map, each linear output by 0."""

    def replace(call):
        if is_neuron(call.module):
            z = call.args[0]
            return jnp.broadcast_to(jnp.asarray(scales[call.name], z.dtype), z.shape)
        return jnp.zeros_like(call.output)

    return replace


def convert(
    ann: nn.Module,
    variables: Mapping[str, Any],
    calibration: np.ndarray,
    *,
    percentile: float = 99.9,
    channelwise: bool = False,
    threshold: float = 1.0,
    time_steps: int = 32,
    batch_size: int = 256,
    check: bool = True,
) -> Conversion:
    """Converts a trained ANN twin of a zoo model into an integrate-and-fire SNN.

    Args:
      ann: a model of ``snn_jax.models`` with ReLU neurons (norm ``"bn"``,
        ``"tdbn"`` or ``"none"``), e.g. ``get_model(name, norm="bn", time_steps=1,
        neuron=NeuronSpec(kind="relu"))``.
      variables: its trained variables (``params``, ``batch_stats``).
      calibration: training images ``[N, H, W, C]`` for the activation scales.
      percentile: of the positive activations per layer (100: the maximum).
      channelwise: one scale per channel instead of per layer.
      threshold: ``V``, the threshold of the neurons without identity input.
      time_steps: ``T`` of the returned model.
      batch_size: calibration batch size.
      check: verify the rate-limit identity (see the module docstring).

    Returns:
      A :class:`Conversion`.

    Raises:
      ValueError: if the model is not a ReLU network, or the converted network
        does not reproduce the clipped ANN in the rate limit.

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from snn_jax.models import get_model
    >>> from snn_jax.nn import NeuronSpec
    >>> ann = get_model("digits_cnn", width=2, hidden_features=4, neuron=NeuronSpec(kind="relu"),
    ...                 norm="bn", time_steps=1)
    >>> x = np.asarray(jax.random.uniform(jax.random.key(0), (16, 8, 8, 1)))
    >>> variables = ann.init(jax.random.key(1), x, train=False)
    >>> conv = convert(ann, variables, x, time_steps=8)
    >>> sorted(conv.thresholds)
    ['conv1/neuron/lif', 'conv2/neuron/lif', 'fc/neuron/lif']
    >>> conv.model.apply(conv.variables, x).shape
    (16, 10)
    """
    kind = getattr(getattr(ann, "neuron", None), "kind", None)
    if kind != "relu":
        raise ValueError(
            f"convert expects the ANN twin of a zoo model (ReLU neurons), got "
            f"{type(ann).__name__} with neuron kind {kind!r}; build it with "
            "get_model(name, neuron=NeuronSpec(kind='relu'), norm='bn', time_steps=1)"
        )
    calibration = np.asarray(calibration, np.float32)
    example = calibration[:batch_size]
    ann = ann.clone(time_steps=1)
    if ann.norm == "none":
        folded, folded_vars = ann, {"params": variables["params"]}
    else:
        folded, folded_vars = fold_norms(ann, variables, example)
    structure = _spiking(folded)  # LIF layers (no parameters) to intercept

    # 2. balance: lambda per neuron layer from the ANN's activations
    acts: dict[str, list[np.ndarray]] = {}
    for x in _batches(calibration, batch_size):
        calls, _ = _eval_pass(structure, folded_vars, x, is_neuron, _relu)
        for call in calls:
            z = np.asarray(call.args[0])
            acts.setdefault(call.name, []).append(np.maximum(z, 0).reshape(-1, z.shape[-1]))
    if not acts:
        raise ValueError(f"{type(ann).__name__} has no neuron layers to convert")
    scales = {
        name: activation_scale(np.concatenate(a), percentile, channelwise)
        for name, a in acts.items()
    }

    # 3. amplitudes: what one input spike of each linear layer stands for, and identity inputs
    calls, _ = _eval_pass(
        structure, folded_vars, np.ones_like(example[:1]), _neuron_or_linear, _lambda_map(scales)
    )
    order = [("neuron" if is_neuron(c.module) else "linear", c.name) for c in calls]
    amp_inputs = {c.name: c.args[0] for c in calls}
    gains, thresholds = {}, {}
    for kind, name in order:
        if kind != "neuron":
            continue
        identity = _per_channel(amp_inputs[name], f"the identity input of {name}")
        if np.all(identity == 0):
            gains[name] = threshold / scales[name].astype(np.float64)
        elif np.all(identity > 0):
            gains[name] = 1.0 / identity
        else:
            raise ValueError(f"only some channels of {name} receive an identity shortcut")
        thresholds[name] = (gains[name] * scales[name]).astype(np.float32)

    params = flax.traverse_util.flatten_dict(flax.core.unfreeze(folded_vars["params"]))
    new = dict(params)
    for i, (kind, name) in enumerate(order):
        if kind != "linear":
            continue
        feeds = next((n for k, n in order[i + 1 :] if k == "neuron"), None)
        path = tuple(name.split("/"))
        kernel = np.asarray(params[(*path, "kernel")], np.float64)
        a_in = np.asarray(amp_inputs[name], np.float64)
        if kernel.ndim == 2:  # dense: one amplitude per input feature
            a_in = _per_channel(a_in.reshape(-1, a_in.shape[-1]), f"the input of {name}")
            scale_in = a_in[:, None]
        else:  # conv: one per input channel
            scale_in = _per_channel(a_in, f"the input of {name}")[:, None]
        c_out = np.ones(kernel.shape[-1]) if feeds is None else gains[feeds]
        if c_out.shape[0] != kernel.shape[-1]:
            raise ValueError(
                f"{name} has {kernel.shape[-1]} outputs but feeds {feeds} with "
                f"{c_out.shape[0]} channels"
            )
        new[(*path, "kernel")] = jnp.asarray(kernel * scale_in * c_out, jnp.float32)
        if (*path, "bias") in params:
            bias = np.asarray(params[(*path, "bias")], np.float64)
            new[(*path, "bias")] = jnp.asarray(bias * c_out, jnp.float32)
    for name, theta in thresholds.items():
        new[(*name.split("/"), "v_th")] = jnp.asarray(theta)

    model = snn_twin(folded, time_steps)
    target = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), example[:1])["params"]
    target = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
    if set(target) != set(new):
        raise ValueError(
            f"the converted parameters do not match the SNN's: missing "
            f"{sorted(set(target) - set(new))}, unexpected {sorted(set(new) - set(target))}"
        )
    snn_vars = {"params": flax.traverse_util.unflatten_dict(new)}
    result = Conversion(
        model=model,
        variables=snn_vars,
        ann=folded,
        ann_variables=folded_vars,
        scales=scales,
        thresholds=thresholds,
        gains=gains,
        percentile=percentile,
        channelwise=channelwise,
    )
    if check:
        snn_logits, ann_logits = rate_limit_logits(result, example)
        err = float(np.max(np.abs(snn_logits - ann_logits)))
        tol = 1e-4 * (1.0 + float(np.max(np.abs(ann_logits))))
        if err > tol:
            raise ValueError(
                f"the converted {type(ann).__name__} does not compute the clipped ANN in the "
                f"rate limit (max logit error {err:.3g} > {tol:.3g}); its layers are not in the "
                "order conversion assumes (each linear layer feeds the next neuron called)"
            )
    return result


def rate_limit_logits(conversion: Conversion, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the SNN in the rate limit and of the ANN with activations clipped at ``lambda``.

    The rate limit replaces each IF neuron by its firing rate for a constant
    input current ``I`` as ``T`` grows, ``clip(I / theta, 0, 1)``; the clipped
    ANN replaces each ReLU by ``clip(z, 0, lambda)``. By construction the two
    are equal (up to float rounding).

    Returns:
      ``(snn_logits, ann_logits)``, float32 ``[N, classes]``.
    """
    thresholds, scales = conversion.thresholds, conversion.scales

    def rate(call):
        current = call.args[0]
        return jnp.clip(current / jnp.asarray(thresholds[call.name], current.dtype), 0.0, 1.0)

    def clipped(call):
        z = call.args[0]
        return jnp.clip(z, 0.0, jnp.asarray(scales[call.name], z.dtype))

    snn_model = conversion.model.clone(time_steps=1)
    _, snn = _eval_pass(snn_model, conversion.variables, images, is_neuron, rate)
    _, ann = _eval_pass(
        _spiking(conversion.ann), conversion.ann_variables, images, is_neuron, clipped
    )
    return np.asarray(snn), np.asarray(ann)
