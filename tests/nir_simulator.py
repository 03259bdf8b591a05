"""An independent NumPy simulator of NIR graphs, the reference of tests/test_nir.py.

Written from NIR's documented node equations (the ``nir`` package's node
docstrings; Pedersen et al. 2024), not from snn-jax: each time step visits
the nodes in an order where every input comes first, sums a node's incoming
edges, and integrates the neurons with forward Euler at ``dt`` in float64:

- ``LIF``: ``v += dt / tau * (v_leak - v + r * I)``; ``z = v > v_threshold``;
  ``v = v_reset`` where ``z``; output ``z``.
- ``IF``: ``v += dt * r * I``, then the same spike and reset.
- ``LI``: ``v += dt / tau * (v_leak - v + r * I)``; output ``v``.
- ``Conv2d``, ``Affine``, ``Linear``, ``Scale``, ``SumPool2d``, ``AvgPool2d``
  (zero padding counted in the average), ``Flatten``: stateless maps of one
  step's input ``[B, C, H, W]`` or ``[B, N]``.

Membranes start at 0. Everything is channels first, as NIR.
"""

from __future__ import annotations

import nir
import numpy as np


def _pair(v):
    v = np.asarray(v).ravel().astype(int)
    return (int(v[0]), int(v[0])) if v.size == 1 else (int(v[0]), int(v[1]))


def _windows(x, kernel, stride, padding, dilation=(1, 1)):
    """Yields ``(ki, kj, patch)``: the input under kernel tap ``(ki, kj)`` at every output place."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    for ki in range(kh):
        for kj in range(kw):
            rows = slice(ki * dh, ki * dh + sh * (out_h - 1) + 1, sh)
            cols = slice(kj * dw, kj * dw + sw * (out_w - 1) + 1, sw)
            yield ki, kj, xp[:, :, rows, cols]


def conv2d(node: nir.Conv2d, x: np.ndarray) -> np.ndarray:
    w = np.asarray(node.weight, np.float64)
    assert node.groups == 1, "the reference handles groups = 1"
    pad = node.padding
    if isinstance(pad, str):
        pad = (0, 0) if pad == "valid" else tuple((k - 1) // 2 for k in w.shape[2:])
    out = 0.0
    for ki, kj, patch in _windows(
        x, w.shape[2:], _pair(node.stride), _pair(pad), _pair(node.dilation)
    ):
        out = out + np.einsum("bchw,oc->bohw", patch, w[:, :, ki, kj])
    return out + np.asarray(node.bias, np.float64)[None, :, None, None]


def pool(node, x: np.ndarray, average: bool) -> np.ndarray:
    k = _pair(node.kernel_size)
    total = sum(patch for _, _, patch in _windows(x, k, _pair(node.stride), _pair(node.padding)))
    return total / (k[0] * k[1]) if average else total


def _order(graph: nir.NIRGraph) -> list[str]:
    preds = {n: {s for s, d in graph.edges if d == n} for n in graph.nodes}
    order: list[str] = []
    while len(order) < len(graph.nodes):
        order += [n for n in graph.nodes if n not in order and preds[n] <= set(order)]
    return order


def simulate(graph: nir.NIRGraph, inputs: np.ndarray, dt: float):
    """Runs ``graph`` on ``inputs`` ``[T, B, *input shape]`` (channels first).

    Returns:
      ``(outputs, records)``: the output node's values ``[T, B, ...]`` and each
      neuron node's output ``[T, B, ...]`` by name.
    """
    order = _order(graph)
    preds = {n: [s for s, d in graph.edges if d == n] for n in graph.nodes}
    (input_name,) = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    (output_name,) = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    state: dict[str, np.ndarray] = {}
    records: dict[str, list[np.ndarray]] = {}
    outputs = []
    for x_t in np.asarray(inputs, np.float64):
        values = {}
        for name in order:
            node = graph.nodes[name]
            if name == input_name:
                values[name] = x_t
                continue
            i = sum(values[p] for p in preds[name])
            if isinstance(node, nir.Output):
                y = i
            elif isinstance(node, nir.Conv2d):
                y = conv2d(node, i)
            elif isinstance(node, nir.Affine):
                y = i @ np.asarray(node.weight, np.float64).T + np.asarray(node.bias, np.float64)
            elif isinstance(node, nir.Linear):
                y = i @ np.asarray(node.weight, np.float64).T
            elif isinstance(node, nir.Scale):
                y = i * np.asarray(node.scale, np.float64)
            elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
                y = pool(node, i, average=isinstance(node, nir.AvgPool2d))
            elif isinstance(node, nir.Flatten):
                shape = i.shape[1:]
                start, end = node.start_dim % len(shape), node.end_dim % len(shape)
                y = i.reshape(i.shape[0], *shape[:start], -1, *shape[end + 1 :])
            elif isinstance(node, nir.LIF | nir.LI | nir.IF):
                v = state.get(name, np.zeros_like(i))
                if isinstance(node, nir.IF):
                    v = v + dt * node.r * i
                else:
                    v = v + dt / node.tau * (node.v_leak - v + node.r * i)
                if isinstance(node, nir.LI):
                    y = v
                else:
                    y = (v > node.v_threshold).astype(np.float64)
                    v = np.where(y > 0, node.v_reset, v)
                state[name] = v
                records.setdefault(name, []).append(y)
            else:
                raise NotImplementedError(type(node).__name__)
            values[name] = y
        outputs.append(values[output_name])
    return np.stack(outputs), {k: np.stack(v) for k, v in records.items()}
