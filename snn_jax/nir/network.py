"""A NIR graph as a Flax module: ``from_nir`` (METHOD.md section 12).

The module runs a feed-forward NIR graph over time-major input, layer by
layer: every stateless node (``Conv2d``, ``Affine``, ``Linear``, ``Scale``,
``AvgPool2d``, ``SumPool2d``, ``Flatten``) once over ``T*B`` examples, every
neuron node (``LIF``, ``IF``, ``LI``) over the ``T`` steps, the spiking ones
with :func:`snn_jax.lif_scan` (so the network trains with STBP and a
surrogate gradient). A node with several incoming edges receives their sum.

Neurons are integrated with forward Euler at ``dt``. For ``nir.LIF``
(``tau dv/dt = v_leak - v + r I``, spike when ``v > v_threshold``, then
``v = v_reset``; ``v`` starts at 0), with ``beta = 1 - dt / tau`` and
``w = v - v_reset``, one step is

    w[t] = beta * w[t-1] * (1 - o[t-1]) + (dt r / tau) I[t] + (dt / tau) (v_leak - v_reset)
    o[t] = H(w[t] - (v_threshold - v_reset))

which is :func:`snn_jax.lif_scan` with leak ``beta``, threshold
``v_threshold - v_reset`` and initial membrane ``-v_reset``. ``nir.IF`` is the
same with ``beta = 1`` and gain ``dt r``; ``nir.LI`` outputs ``v`` itself. A
node with ``beta = 0`` (``tau = dt``) has no memory: its spikes are
``H(input - threshold)``. ``lif_scan`` fires at ``w >= threshold`` where NIR
says ``>``: the two differ only for a membrane exactly on the threshold.

Layout: the module takes ``[T, B, *shape]`` in NIR's order (``[T, B, C, H, W]``
for an image input, ``[T, B, N]`` for a vector), or ``[T, B, H, W, C]`` with
``channels_last=True``; inside, a tensor of NIR shape ``(C, H, W)`` is kept
channels last, ``[T, B, H, W, C]``, as the rest of snn-jax, and every other
tensor in NIR's order. Outputs come back in the input's convention.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import nir
import numpy as np

from snn_jax.functional import surrogate as surrogate_lib
from snn_jax.functional.lif import LIFState, lif_scan
from snn_jax.nn import NeuronSpec

__all__ = ["GraphNode", "NIRNetwork", "from_nir"]

Array = jax.Array

SUPPORTED = (
    "Input",
    "Output",
    "Conv2d",
    "Affine",
    "Linear",
    "Scale",
    "AvgPool2d",
    "SumPool2d",
    "Flatten",
    "LIF",
    "IF",
    "LI",
)
_NEURONS = ("LIF", "IF", "LI")


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One node of the graph, as the module runs it.

    Attributes:
      name: the NIR node's name (its variables' key).
      kind: the NIR node type's name (one of ``SUPPORTED``).
      inputs: the names of the nodes whose outputs it sums.
      shape: its output shape in NIR's order (without time and batch).
      attrs: static settings (stride, padding, ...) as ``(key, value)`` pairs.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: tuple[tuple[str, Any], ...] = ()

    def attr(self, key: str) -> Any:
        return dict(self.attrs)[key]


def _pair(value) -> tuple[int, int]:
    flat = np.asarray(value).ravel().astype(int).tolist()
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


def _to_internal(x: Array, nir_rank: int) -> Array:
    return jnp.moveaxis(x, 2, -1) if nir_rank == 3 else x


def _to_nir_order(x: Array, nir_rank: int) -> Array:
    return jnp.moveaxis(x, -1, 2) if nir_rank == 3 else x


class NIRNetwork(nn.Module):
    """Runs a feed-forward NIR graph over ``[T, B, ...]`` (module docstring).

    Made by :func:`from_nir`, which also returns its variables: ``params`` (the
    weights of each conv, affine, linear and scale node, under the node's
    name; they train) and ``neurons`` (each neuron node's discretised
    constants, channels last: ``beta``, ``gain``, ``offset``, ``threshold``,
    ``u0``; fixed). Each spiking node sows its spikes ``[T, B, ...]`` as
    ``intermediates/<node name>``.

    Attributes:
      nodes: the graph's nodes in an order where every input comes first.
      input_name: the ``nir.Input`` node.
      output_names: the ``nir.Output`` nodes.
      channels_last: take and return image tensors as ``[T, B, H, W, C]``.
      surrogate: the spike's surrogate gradient (``snn_jax.surrogate.NAMES``).
      surrogate_param: its shape parameter (``None``: its default).
      unroll: unroll factor of the LIF time loops.
    """

    nodes: tuple[GraphNode, ...]
    input_name: str
    output_names: tuple[str, ...]
    channels_last: bool = False
    surrogate: str = "rectangular"
    surrogate_param: float | None = None
    unroll: int | bool = 1

    @nn.compact
    def __call__(self, x: Array) -> Array | dict[str, Array]:
        """Per-step outputs ``[T, B, *shape]`` (a dict by name if the graph has several)."""
        by_name = {n.name: n for n in self.nodes}
        in_shape = by_name[self.input_name].shape
        expected = (
            (*in_shape[1:], in_shape[0]) if self.channels_last and len(in_shape) == 3 else in_shape
        )
        if x.ndim != len(in_shape) + 2 or tuple(x.shape[2:]) != tuple(expected):
            raise ValueError(
                f"the graph's input node {self.input_name!r} takes "
                f"[T, B, {', '.join(map(str, expected))}]"
                f" (time-major, {'channels last' if self.channels_last else 'NIR order'}), got "
                f"shape {x.shape}"
            )
        x = jnp.asarray(x, jnp.float32)
        values: dict[str, Array] = {}
        for node in self.nodes:
            if node.kind == "Input":
                values[node.name] = x if self.channels_last else _to_internal(x, len(in_shape))
                continue
            total = values[node.inputs[0]]
            for source in node.inputs[1:]:
                total = total + values[source]
            values[node.name] = self._node(node, total)
        outputs = {}
        for name in self.output_names:
            rank = len(by_name[name].shape)
            y = values[name]
            outputs[name] = y if self.channels_last else _to_nir_order(y, rank)
        return outputs[self.output_names[0]] if len(outputs) == 1 else outputs

    def _node(self, node: GraphNode, x: Array) -> Array:
        kind = node.kind
        if kind == "Output":
            return x
        if kind in _NEURONS:
            return self._neuron(node, x)
        t, b = x.shape[:2]
        y = x.reshape(t * b, *x.shape[2:])
        if kind == "Conv2d":
            p = self._params(node)
            pad = node.attr("padding")
            y = jax.lax.conv_general_dilated(
                y,
                p["kernel"],
                window_strides=node.attr("stride"),
                padding=pad if isinstance(pad, str) else tuple((q, q) for q in pad),
                rhs_dilation=node.attr("dilation"),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=node.attr("groups"),
            )
            y = y + p["bias"]
        elif kind in ("Affine", "Linear"):
            p = self._params(node)
            y = y @ p["kernel"]
            if kind == "Affine":
                y = y + p["bias"]
        elif kind == "Scale":
            y = y * self._params(node)["scale"]
        elif kind in ("AvgPool2d", "SumPool2d"):
            kh, kw = node.attr("kernel_size")
            sh, sw = node.attr("stride")
            ph, pw = node.attr("padding")
            y = jax.lax.reduce_window(
                y,
                0.0,
                jax.lax.add,
                (1, kh, kw, 1),
                (1, sh, sw, 1),
                ((0, 0), (ph, ph), (pw, pw), (0, 0)),
            )
            if kind == "AvgPool2d":
                y = y / (kh * kw)  # zero padding counted, as torch's AvgPool2d
        elif kind == "Flatten":
            in_shape = node.attr("in_shape")
            y = _to_nir_order(y[None], len(in_shape))[0]
            y = _to_internal(y.reshape(t * b, *node.shape)[None], len(node.shape))[0]
        return y.reshape(t, b, *y.shape[1:])

    def _params(self, node: GraphNode) -> dict[str, Array]:
        return self.param(node.name, lambda _: _zeros(node))

    def _neuron(self, node: GraphNode, x: Array) -> Array:
        c = self.variable("neurons", node.name, _zeros, node).value
        current = c["gain"] * x + c["offset"]
        if node.kind == "LI":

            def step(v, i):
                v = c["beta"] * v + i
                return v, v

            _, v = jax.lax.scan(step, jnp.zeros(x.shape[1:], x.dtype), current, unroll=self.unroll)
            return v
        spike = NeuronSpec(
            surrogate=self.surrogate, surrogate_param=self.surrogate_param
        ).spike_function
        if node.attr("stateless"):
            spikes = spike(current - c["threshold"])
        else:
            u0 = jnp.broadcast_to(c["u0"], x.shape[1:]).astype(x.dtype)
            spikes = lif_scan(
                current,
                tau=c["beta"],
                v_th=c["threshold"],
                surrogate=spike,
                init_state=LIFState(u0, jnp.zeros_like(u0)),
                unroll=self.unroll,
            )
        self.sow("intermediates", node.name, spikes)
        return spikes


def _zeros(node: GraphNode) -> dict[str, Array]:
    """A node's variables with their shapes, zero (``from_nir`` gives the values)."""
    return {k: jnp.zeros(s, jnp.float32) for k, s in dict(node.attr("param_shapes")).items()}


def _order(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[str]]]:
    """The node names with every node after its inputs, and each node's inputs.

    Raises ``ValueError`` on a cycle or an edge to a node the graph lacks.
    """
    preds = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise ValueError(f"edge ({src!r}, {dst!r}) names a node {end!r} the graph lacks")
        preds[dst].append(src)
    order, done = [], set()
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(p in done for p in preds[n])]
        if not ready:
            raise ValueError(
                f"the graph has a cycle through nodes {sorted(pending)}; from_nir runs "
                "feed-forward graphs only (no recurrent edges)"
            )
        for n in ready:
            order.append(n)
            done.add(n)
        pending = [n for n in pending if n not in done]
    return order, preds


def _neuron_constants(name: str, node: nir.NIRNode, shape, dt: float) -> dict[str, np.ndarray]:
    """The discretised constants of a neuron node (module docstring), channels last."""

    def arr(value):
        a = np.broadcast_to(np.asarray(value, np.float64), shape)
        return a.transpose(1, 2, 0) if len(shape) == 3 else a

    kind = type(node).__name__
    r = arr(node.r)
    if kind == "IF":
        beta, gain, offset = np.ones_like(r), dt * r, np.zeros_like(r)
    else:
        tau = arr(node.tau)
        if np.any(tau <= 0):
            raise ValueError(f"node {name!r} ({kind}) has a time constant tau <= 0: {tau.min()}")
        beta, gain = 1 - dt / tau, dt * r / tau
        v_reset = arr(node.v_reset) if kind == "LIF" else 0.0
        offset = dt / tau * (arr(node.v_leak) - v_reset)
        if np.any(beta < 0):
            raise ValueError(
                f"node {name!r} ({kind}) has tau = {tau.min()} < dt = {dt}: forward Euler at this "
                "dt is unstable; pass the dt the graph was made for"
            )
    out = {"beta": beta, "gain": gain, "offset": offset}
    if kind != "LI":
        v_reset = arr(node.v_reset)
        out["threshold"] = arr(node.v_threshold) - v_reset
        out["u0"] = -v_reset
        if np.any(out["threshold"] <= 0):
            raise ValueError(
                f"node {name!r} ({kind}) has v_threshold <= v_reset; from_nir needs "
                "v_threshold > v_reset"
            )
        if np.any(beta == 0) and not np.all(beta == 0):
            raise ValueError(
                f"node {name!r} ({kind}) mixes tau = dt (no memory) and tau > dt neurons"
            )
    # one value for the whole layer stays a scalar (the LIF loop then broadcasts it)
    return {k: _scalar_if_uniform(v) for k, v in out.items()}


def _scalar_if_uniform(value) -> np.ndarray:
    v = np.asarray(value, np.float32)
    return np.asarray(v.ravel()[0]) if v.size and np.all(v == v.ravel()[0]) else v


def _conv_shape(n_in, k, s, p, d):
    return (n_in + 2 * p - d * (k - 1) - 1) // s + 1


def from_nir(
    graph: nir.NIRGraph,
    *,
    dt: float = 1e-4,
    channels_last: bool = False,
    surrogate: str = "rectangular",
    surrogate_param: float | None = None,
    unroll: int | bool = 1,
) -> tuple[NIRNetwork, dict[str, Any]]:
    """A Flax module that runs ``graph`` and its variables: ``(module, variables)``.

    Args:
      graph: a feed-forward ``nir.NIRGraph`` of the node types in ``SUPPORTED``
        with one ``nir.Input``.
      dt: the Euler step its neurons are integrated at.
      channels_last: the module takes images as ``[T, B, H, W, C]`` (default
        ``[T, B, C, H, W]``, NIR's order).
      surrogate, surrogate_param: the surrogate gradient of the spikes, for
        fine-tuning (``snn_jax.surrogate.NAMES``).
      unroll: unroll factor of the LIF time loops.

    Returns:
      ``(module, variables)``: ``module.apply(variables, x)`` gives the graph's
      output at each step, ``[T, B, ...]``.

    Raises:
      ValueError: a node type it does not run (naming the node and the types
        it runs), a subgraph, a cycle, several inputs, or neuron constants
        that forward Euler at ``dt`` cannot run (``tau < dt``).

    >>> import nir, numpy as np, jax.numpy as jnp
    >>> graph = nir.NIRGraph.from_list(
    ...     nir.Affine(np.eye(2), np.zeros(2)),
    ...     nir.LIF(tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2),
    ...             v_threshold=np.full(2, 0.5)))
    >>> module, variables = from_nir(graph)                      # beta = 1 - dt / tau = 0.5
    >>> x = jnp.array([0.3, 0.3, 0.3])[:, None, None] * jnp.array([1.0, 2.0])  # [T=3, B=1, 2]
    >>> module.apply(variables, x)[:, 0]                         # u = 0.3, 0.45, 0.525 | 0.6
    Array([[0., 1.],
           [0., 0.],
           [1., 1.]], dtype=float32)
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (the Euler step of the NIR graph), got {dt}")
    if surrogate not in surrogate_lib.NAMES:
        raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {surrogate_lib.NAMES}")
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise ValueError(
                f"from_nir cannot run node {name!r} of type nir.{kind}; it runs "
                f"{', '.join(SUPPORTED)}"
            )
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = tuple(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    if len(inputs) != 1 or not outputs:
        raise ValueError(
            f"from_nir needs one nir.Input node and at least one nir.Output, got inputs "
            f"{inputs} and outputs {list(outputs)}"
        )
    order, preds = _order(graph)
    shapes: dict[str, tuple[int, ...]] = {}
    specs, params, neurons = [], {}, {}
    for name in order:
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind == "Input":
            shapes[name] = tuple(int(v) for v in np.asarray(node.input_type["input"]).ravel())
            specs.append(GraphNode(name, kind, (), shapes[name]))
            continue
        if not preds[name]:
            raise ValueError(f"node {name!r} ({kind}) has no incoming edge")
        in_shapes = {shapes[p] for p in preds[name]}
        if len(in_shapes) != 1:
            raise ValueError(
                f"node {name!r} sums inputs of different shapes {sorted(in_shapes)} from "
                f"{preds[name]}"
            )
        (in_shape,) = in_shapes
        shape, attrs = in_shape, []
        if kind == "Conv2d":
            weight = np.asarray(node.weight, np.float32)
            if weight.ndim != 4 or len(in_shape) != 3:
                raise ValueError(f"Conv2d node {name!r} needs a (C, H, W) input, got {in_shape}")
            stride, dilation = _pair(node.stride), _pair(node.dilation)
            if isinstance(node.padding, str):
                padding = node.padding.upper()
                pads = (
                    (0, 0)
                    if padding == "VALID"
                    else tuple(
                        d * (k - 1) // 2 for d, k in zip(dilation, weight.shape[2:], strict=True)
                    )
                )
            else:
                padding = pads = _pair(node.padding)
            hw = tuple(
                _conv_shape(n, k, s, p, d)
                for n, k, s, p, d in zip(
                    in_shape[1:], weight.shape[2:], stride, pads, dilation, strict=True
                )
            )
            shape = (weight.shape[0], *hw)
            bias = np.zeros(weight.shape[0], np.float32) if node.bias is None else node.bias
            params[name] = {
                "kernel": weight.transpose(2, 3, 1, 0),
                "bias": np.broadcast_to(np.asarray(bias, np.float32), (weight.shape[0],)).copy(),
            }
            attrs = [("stride", stride), ("padding", padding), ("dilation", dilation)]
            attrs.append(("groups", int(node.groups)))
        elif kind in ("Affine", "Linear"):
            weight = np.asarray(node.weight, np.float32)
            if weight.ndim != 2 or in_shape != (weight.shape[1],):
                raise ValueError(
                    f"{kind} node {name!r} has weight {weight.shape} but its input has shape "
                    f"{in_shape}; it needs a flat input of {weight.shape[-1]}"
                )
            shape = (weight.shape[0],)
            params[name] = {"kernel": weight.T.copy()}
            if kind == "Affine":
                params[name]["bias"] = np.asarray(node.bias, np.float32).reshape(-1)
        elif kind == "Scale":
            scale = np.broadcast_to(np.asarray(node.scale, np.float32), in_shape)
            params[name] = {"scale": scale.transpose(1, 2, 0) if len(in_shape) == 3 else scale}
        elif kind in ("AvgPool2d", "SumPool2d"):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            hw = tuple(
                _conv_shape(n, *a, 1)
                for n, a in zip(in_shape[1:], zip(k, s, p, strict=True), strict=True)
            )
            shape = (in_shape[0], *hw)
            attrs = [("kernel_size", k), ("stride", s), ("padding", p)]
        elif kind == "Flatten":
            rank = len(in_shape)
            start, end = node.start_dim % rank, node.end_dim % rank
            flat = int(np.prod(in_shape[start : end + 1]))
            shape = (*in_shape[:start], flat, *in_shape[end + 1 :])
            attrs = [("in_shape", in_shape)]
        elif kind in _NEURONS:
            constants = _neuron_constants(name, node, in_shape, dt)
            neurons[name] = constants
            attrs = [("stateless", bool(kind != "LI" and np.all(constants["beta"] == 0)))]
            attrs.append(("param_shapes", tuple((k, np.shape(v)) for k, v in constants.items())))
        if name in params:
            attrs.append(("param_shapes", tuple((k, v.shape) for k, v in params[name].items())))
        shapes[name] = shape
        specs.append(GraphNode(name, kind, tuple(preds[name]), shape, tuple(attrs)))
    module = NIRNetwork(
        tuple(specs),
        inputs[0],
        outputs,
        channels_last=channels_last,
        surrogate=surrogate,
        surrogate_param=surrogate_param,
        unroll=unroll,
    )
    to_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    variables = {"params": to_jax(params)}
    if neurons:
        variables["neurons"] = to_jax(neurons)
    return module, variables
