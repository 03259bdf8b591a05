"""A zoo model as a NIR graph: ``to_nir`` (METHOD.md section 12).

The graph is the model in evaluation mode, one time step at a time:

- tdBN/BN folded into the preceding conv or dense layer
  (:func:`snn_jax.analysis.folding.fold_norms`), so every conv is a biased
  ``nir.Conv2d`` (weights ``(C_out, C_in, kH, kW)``) and every dense layer a
  ``nir.Affine`` (``(N_out, N_in)``; after a flatten its columns are
  reordered from our ``H, W, C`` to NIR's ``C, H, W``);
- each iterative LIF layer ``u[t] = tau u[t-1] (1 - o[t-1]) + x[t]``,
  ``o[t] = H(u[t] - V_th)`` a ``nir.LIF`` with ``tau_nir = dt / (1 - tau)``,
  ``r = tau_nir / dt``, ``v_leak = v_reset = 0``, ``v_threshold = V_th``,
  whose forward-Euler step at ``dt`` is that update exactly; ``tau = 1`` a
  ``nir.IF`` with ``r = 1 / dt`` (``v += dt r I = I``);
- average pools as ``nir.AvgPool2d``, the global average pool as an
  ``AvgPool2d`` over the whole map and a ``nir.Flatten``; the ImageNet stem's
  3x3/2 max pool of spikes (0 or 1) as a ``nir.SumPool2d`` and a stateless
  ``nir.LIF`` (``tau_nir = dt``, ``r = 1``, threshold 0.5): a window's maximum
  of spikes is 1 exactly when their sum exceeds 0.5;
- residual blocks as edges: the shortcut (the block's input spikes, or its
  projection conv) and the block's last conv both enter the block's last
  neuron node, and NIR sums the inputs of a node;
- the decoder ``Q = mean_t(M o_t + b)`` as the last ``nir.Affine``: the
  graph's output at step ``t`` is ``M o_t + b``, and the model's logits are
  its mean over the ``T`` steps.

The graph's input node takes one time step of the model's input, channels
first: ``(C, H, W)``. Node names are the model's layer paths joined by dots
(``conv1.conv``, ``conv1.neuron.lif``, ``stage2_block1.shortcut_conv``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import nir
import numpy as np

from snn_jax.analysis.folding import fold_norms
from snn_jax.inspect import recording
from snn_jax.models.layers import ConvUnit, DenseUnit, encode_input
from snn_jax.models.plain import PlainCNN, plain_stage_sizes
from snn_jax.models.resnet import BasicBlock, BottleneckBlock, SpikingResNet
from snn_jax.models.small import DigitsCNN
from snn_jax.nn import LIF, MeanDecoder, NormNeuron, TdBatchNorm

__all__ = ["lif_parameters", "to_nir"]

# The modules a zoo model may call for to_nir to write it; any other is refused by name.
_KNOWN_MODULES = (
    ConvUnit,
    DenseUnit,
    BasicBlock,
    BottleneckBlock,
    NormNeuron,
    TdBatchNorm,
    LIF,
    MeanDecoder,
    nn.Conv,
    nn.Dense,
)
_KNOWN_NORMS = ("tdbn", "bn", "none")
_KNOWN_LIF_PARAMS = {"tau_logit", "v_th_log", "v_th"}


def lif_parameters(tau: Any, v_th: Any, dt: float = 1e-4) -> dict[str, np.ndarray]:
    """The ``nir.LIF`` (or ``nir.IF``) parameters of the iterative LIF with leak ``tau``.

    Forward Euler of ``tau_nir dv/dt = v_leak - v + r I`` at step ``dt`` is
    ``v[t] = (1 - dt / tau_nir) v[t-1] + (dt r / tau_nir) I[t]`` (with
    ``v_leak = 0``); ``tau_nir = dt / (1 - tau)`` and ``r = tau_nir / dt``
    make it ``v[t] = tau v[t-1] + I[t]`` (METHOD.md section 12).

    Args:
      tau: the leak in (0, 1], a number or an array (one per neuron).
      v_th: the threshold, broadcast to ``tau``'s shape.
      dt: the time step the graph is integrated at.

    Returns:
      ``{"tau", "r", "v_leak", "v_threshold", "v_reset"}`` as float64 arrays for
      ``tau < 1``; ``{"r", "v_threshold", "v_reset"}`` (``r = 1 / dt``, an
      ``nir.IF``) when every ``tau`` is 1.

    Raises:
      ValueError: ``dt <= 0``, a ``tau`` outside (0, 1], or a mix of 1 and < 1.

    >>> p = lif_parameters(0.25, 0.5, dt=1e-3)
    >>> float(p["tau"]), float(p["r"]), float(1 - 1e-3 / p["tau"])  # beta = 1 - dt / tau_nir
    (0.0013333333333333333, 1.3333333333333333, 0.25)
    >>> sorted(lif_parameters(1.0, 0.5))
    ['r', 'v_reset', 'v_threshold']
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (the Euler step of the NIR graph), got {dt}")
    tau = np.asarray(tau, np.float64)
    v_th = np.broadcast_to(
        np.asarray(v_th, np.float64), np.broadcast_shapes(tau.shape, np.shape(v_th))
    )
    tau = np.broadcast_to(tau, v_th.shape)
    if not np.all((tau > 0) & (tau <= 1)):
        raise ValueError(f"the leak tau must be in (0, 1], got {tau}")
    zero = np.zeros(v_th.shape)
    if np.all(tau == 1):
        return {"r": np.full(v_th.shape, 1 / dt), "v_threshold": v_th.copy(), "v_reset": zero}
    if np.any(tau == 1):
        raise ValueError("a layer mixes tau = 1 (IF) and tau < 1 (LIF) neurons; NIR nodes cannot")
    tau_nir = dt / (1 - tau)
    return {
        "tau": tau_nir,
        "r": tau_nir / dt,
        "v_leak": zero,
        "v_threshold": v_th.copy(),
        "v_reset": zero.copy(),
    }


class _Graph:
    """Nodes and edges under construction; shapes are NIR's, channels first."""

    def __init__(self, params: Mapping[str, Any], model: nn.Module, dt: float):
        self.params, self.model, self.dt = params, model, dt
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: nir.NIRNode, *sources: str) -> str:
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return name

    def layer(self, path: tuple[str, ...]) -> dict[str, Any]:
        node = self.params
        for key in path:
            if key not in node:
                raise ValueError(f"to_nir: no parameters at {'/'.join(path)}")
            node = node[key]
        return {k: np.asarray(v, np.float32) for k, v in node.items()}

    def conv(self, path, source, shape, kernel_size, strides):
        """A ``nir.Conv2d`` of the flax conv at ``path``; returns ``(name, out_shape)``."""
        p = self.layer(path)
        kernel = p["kernel"]  # [kh, kw, C_in, C_out]
        _, h, w = shape
        pad = (kernel_size - 1) // 2
        bias = p.get("bias", np.zeros(kernel.shape[-1], np.float32))
        node = nir.Conv2d(
            input_shape=(h, w),
            weight=np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)),
            stride=strides,
            padding=pad,
            dilation=1,
            groups=1,
            bias=bias,
        )
        out = (kernel.shape[-1], *((n + 2 * pad - kernel_size) // strides + 1 for n in (h, w)))
        return self.add(".".join(path), node, source), out

    def dense(self, path, source, in_features, chw=None):
        """A ``nir.Affine`` of the flax dense layer at ``path`` (columns from HWC to CHW order)."""
        p = self.layer(path)
        kernel = p["kernel"]  # [N_in, N_out] in our H, W, C order
        if chw is not None:
            c, h, w = chw
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(in_features, -1)
        weight = np.ascontiguousarray(kernel.T)
        node = nir.Affine(weight, p["bias"]) if "bias" in p else nir.Linear(weight)
        return self.add(".".join(path), node, source), kernel.shape[-1]

    def neuron(self, path, shape, *sources):
        """A ``nir.LIF``/``nir.IF`` for the LIF layer at ``path`` with ``shape`` (NIR's)."""
        spec = self.model.neuron
        p = self.params
        for key in path:
            p = p.get(key, {})
        unknown = set(p) - _KNOWN_LIF_PARAMS
        if unknown:
            raise ValueError(
                f"to_nir cannot export layer {'/'.join(path)}: it has parameters "
                f"{sorted(unknown)} that no NIR neuron node holds"
            )
        # as snn_jax.nn.LIF: a learned leak sigmoid(tau_logit), a learned threshold
        # exp(v_th_log), and conversion's per-channel thresholds v_th over both
        tau = jax.nn.sigmoid(np.asarray(p["tau_logit"])) if "tau_logit" in p else spec.tau
        v_th = np.exp(np.asarray(p["v_th_log"], np.float64)) if "v_th_log" in p else spec.v_th
        v_th = p.get("v_th", v_th)
        last = shape[0]  # our channels-last arrays broadcast to [..., C]
        hwc = (*shape[1:], last)
        tau = np.broadcast_to(np.asarray(tau, np.float64), hwc)
        v_th = np.broadcast_to(np.asarray(v_th, np.float64), hwc)
        if len(shape) == 3:
            tau, v_th = tau.transpose(2, 0, 1), v_th.transpose(2, 0, 1)
        params = lif_parameters(tau, v_th, self.dt)
        node = nir.LIF(**params) if "tau" in params else nir.IF(**params)
        return self.add(".".join(path), node, *sources)

    def unit(self, path, source, shape, kernel_size=3, strides=1):
        """A ConvUnit: conv, then its neuron."""
        conv, out = self.conv((*path, "conv"), source, shape, kernel_size, strides)
        return self.neuron((*path, "neuron", "lif"), out, conv), out

    def global_pool(self, source, shape):
        c, h, w = shape
        k = np.array([h, w])
        pool = self.add("pool", nir.AvgPool2d(k, k, np.array([0, 0])), source)
        flat = nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1)
        return self.add("flatten", flat, pool), c

    def head(self, source, features, hidden):
        if hidden:
            fc, features = self.dense(("fc", "dense"), source, features)
            source = self.neuron(("fc", "neuron", "lif"), (features,), fc)
        out, classes = self.dense(("decoder", "readout"), source, features)
        self.add("output", nir.Output(output_type={"output": np.array([classes])}), out)


def _check_model(model: nn.Module, variables: Mapping[str, Any], x: jax.Array) -> None:
    """Raises ``ValueError`` naming what of ``model`` NIR cannot express."""
    if type(model) not in (DigitsCNN, PlainCNN, SpikingResNet):
        raise ValueError(
            f"to_nir writes the zoo models DigitsCNN, PlainCNN and SpikingResNet (ResNet-17 to "
            f"50); got {type(model).__name__}"
        )
    spec = model.neuron
    problems = []
    if spec.kind != "lif":
        problems.append(f"neuron kind {spec.kind!r} (NIR holds spiking LIF/IF neurons)")
    if spec.reset != "zero":
        problems.append(f"reset={spec.reset!r} (NIR's LIF resets to v_reset, not by subtraction)")
    if model.memory == "compact":
        problems.append(
            "memory='compact' (its units run a fused kernel the exporter does not walk; "
            "export the same variables with model.clone(memory='none'))"
        )
    if model.norm not in _KNOWN_NORMS:
        problems.append(f"norm={model.norm!r} (only tdbn, bn and none fold into a conv)")
    if problems:
        raise ValueError(
            f"to_nir cannot export this {type(model).__name__}: " + "; ".join(problems)
        )
    with recording(lambda m: True, outermost=False) as calls:  # traced only, not computed
        jax.eval_shape(
            lambda v, x: model.apply(v, x, train=False, mutable=["batch_stats", "intermediates"]),
            variables,
            x,
        )
    for call in calls:
        if not isinstance(call.module, _KNOWN_MODULES):
            raise ValueError(
                f"to_nir cannot export layer {call.name} ({type(call.module).__name__}): NIR "
                "has no node for it and the exporter does not know it"
            )


def to_nir(
    model: nn.Module, variables: Mapping[str, Any], sample_input: Any, *, dt: float = 1e-4
) -> nir.NIRGraph:
    """The NIR graph of a zoo model in evaluation mode (the module docstring says how).

    Args:
      model: a :class:`~snn_jax.models.DigitsCNN`, :class:`~snn_jax.models.PlainCNN`
        or :class:`~snn_jax.models.SpikingResNet` (ResNet-17/18/19/34/50) with
        LIF neurons (hard reset) and norm ``tdbn``, ``bn`` or ``none``.
      variables: its trained variables (``params``, ``batch_stats``).
      sample_input: an input the model takes (``[B, H, W, C]`` or
        ``[T, B, H, W, C]``); it fixes the graph's input shape ``(C, H, W)``
        and traces the layers for folding.
      dt: the Euler step the graph's neurons are integrated at (snnTorch's
        importer assumes ``1e-4``).

    Returns:
      A ``nir.NIRGraph`` whose output at each step is ``M o_t + b``; the mean
      of the outputs over the ``T`` steps is the model's logits.

    Raises:
      ValueError: a model or layer NIR cannot express (another module, reset
        by subtraction, ``memory="compact"``, a ReLU twin), naming it.

    >>> import jax, jax.numpy as jnp
    >>> from snn_jax.models import DigitsCNN
    >>> model = DigitsCNN(width=2, hidden_features=4, time_steps=2)
    >>> x = jnp.ones((1, 8, 8, 1))
    >>> graph = to_nir(model, jax.jit(model.init)(jax.random.key(0), x), x)
    >>> [type(graph.nodes[n]).__name__ for n in ("conv1.conv", "conv1.neuron.lif", "pool")]
    ['Conv2d', 'LIF', 'AvgPool2d']
    >>> graph.nodes["fc.dense"].weight.shape                  # (hidden, C * H * W)
    (4, 64)
    """
    x = jnp.asarray(sample_input)
    _check_model(model, variables, x)
    if model.norm == "none":
        params = variables["params"]
    else:
        _, folded = fold_norms(model, variables, x)
        params = folded["params"]
    params = flax.core.unfreeze(params)
    h, w, c = encode_input(x, model.time_steps or 1, 3).shape[2:]
    g = _Graph(params, model, dt)
    g.add("input", nir.Input(input_type={"input": np.array([c, h, w])}))
    shape = (c, h, w)
    if isinstance(model, DigitsCNN):
        src, shape = g.unit(("conv1",), "input", shape)
        src, shape = g.unit(("conv2",), src, shape)
        k = np.array([2, 2])
        src = g.add("pool", nir.AvgPool2d(k, k, np.array([0, 0])), src)
        shape = (shape[0], shape[1] // 2, shape[2] // 2)
        flat = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        src = g.add("flatten", flat, src)
        fc, hidden = g.dense(("fc", "dense"), src, math.prod(shape), chw=shape)
        src = g.neuron(("fc", "neuron", "lif"), (hidden,), fc)
        g.head(src, hidden, hidden=False)
    elif isinstance(model, PlainCNN):
        src, k = "input", 0
        for i, size in enumerate(plain_stage_sizes(model.depth, model.num_stages)):
            for j in range(size):
                k += 1
                src, shape = g.unit((f"unit{k}",), src, shape, 3, 2 if i > 0 and j == 0 else 1)
        src, features = g.global_pool(src, shape)
        g.head(src, features, hidden=False)
    else:
        src, shape = _resnet_body(g, model, shape)
        src, features = g.global_pool(src, shape)
        g.head(src, features, hidden=model.hidden_features is not None)
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={"source": "snn-jax", "dt": dt})


def _resnet_body(g: _Graph, model: SpikingResNet, shape):
    if model.stem == "cifar":
        src, shape = g.unit(("stem",), "input", shape, 3, 1)
    else:
        src, shape = g.unit(("stem",), "input", shape, 7, 2)
        pool = nir.SumPool2d(np.array([3, 3]), np.array([2, 2]), np.array([1, 1]))
        src = g.add("stem.maxpool", pool, src)
        shape = (shape[0], *((n + 2 - 3) // 2 + 1 for n in shape[1:]))
        # max of spikes = H(sum - 0.5): a LIF with beta = 1 - dt / tau_nir = 0 and gain 1
        ones = np.ones(shape)
        spike = nir.LIF(
            tau=ones * g.dt, r=ones, v_leak=0 * ones, v_threshold=0.5 * ones, v_reset=0 * ones
        )
        src = g.add("stem.maxpool.spike", spike, src)
    bottleneck = model.block_cls is BottleneckBlock
    for i, num_blocks in enumerate(model.stage_sizes):
        for j in range(num_blocks):
            strides = 2 if i > 0 and j == 0 else 1
            name = f"stage{i + 1}_block{j + 1}"
            block_in, in_shape = src, shape
            if bottleneck:
                y, shape = g.conv((name, "conv1"), src, shape, 1, 1)
                y = g.neuron((name, "neuron1", "lif"), shape, y)
                y, shape = g.conv((name, "conv2"), y, shape, 3, strides)
                y = g.neuron((name, "neuron2", "lif"), shape, y)
                y, shape = g.conv((name, "conv3"), y, shape, 1, 1)
                last = "neuron3"
            else:
                y, shape = g.conv((name, "conv1"), src, shape, 3, strides)
                y = g.neuron((name, "neuron1", "lif"), shape, y)
                y, shape = g.conv((name, "conv2"), y, shape, 3, 1)
                last = "neuron2"
            if strides == 1 and in_shape[0] == shape[0]:
                shortcut = block_in
            else:
                shortcut, _ = g.conv((name, "shortcut_conv"), block_in, in_shape, 1, strides)
            src = g.neuron((name, last, "lif"), shape, y, shortcut)
    return src, shape
