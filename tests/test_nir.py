"""snn_jax.nir: export to NIR and import back (METHOD.md section 12).

References: a plain NumPy loop of the iterative LIF (METHOD.md section 1) for
the LIF mapping, and an independent NumPy simulator of NIR's node equations
(tests/nir_simulator.py) for whole exported and hand-built graphs.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from snn_jax.analysis import fold_norms
from snn_jax.inspect import capture_calls, is_neuron
from snn_jax.models import (
    Block,
    DigitsCNN,
    PlainCNN,
    ResNet17,
    ResNet18,
    ResNet19,
    ResNet34,
    ResNet50,
)
from snn_jax.nir import from_nir, lif_parameters, to_nir
from snn_jax.nn import NeuronSpec
from tests.nir_simulator import simulate

T = 3
DT = 1e-4


def iterative_lif(x, tau, v_th):
    """METHOD.md section 1, a plain loop: u = tau u (1 - o) + x, o = H(u - V_th)."""
    u, o, out = np.zeros_like(x[0]), np.zeros_like(x[0]), []
    for x_t in x:
        u = tau * u * (1 - o) + x_t
        o = (u >= v_th).astype(x.dtype)
        out.append(o)
    return np.stack(out)


@pytest.mark.parametrize("tau", [0.25, 0.5, 0.9, 1.0])
def test_lif_parameters_make_forward_euler_the_iterative_lif(tau):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 0.6, size=(40, 50))
    p = lif_parameters(tau, 0.5, dt=DT)
    v, spikes = np.zeros(50), []
    for x_t in x:  # NIR's equations, forward Euler
        if "tau" in p:
            v = v + DT / p["tau"] * (p["v_leak"] - v + p["r"] * x_t)
        else:
            v = v + DT * p["r"] * x_t
        z = v > p["v_threshold"]
        v = np.where(z, p["v_reset"], v)
        spikes.append(z)
    np.testing.assert_array_equal(np.stack(spikes), iterative_lif(x, tau, 0.5) > 0)
    assert 0 < np.mean(spikes) < 1


def _variables(model, x, seed):
    """Variables drawn at random, with non-trivial norm statistics and affine parameters (so
    folding matters), made without compiling the model's initialisation."""
    rng = np.random.default_rng(seed)
    ranges = {"mean": (-0.3, 0.3), "var": (0.2, 1.0), "scale": (0.7, 1.6), "bias": (0.1, 0.7)}
    # learned leaks and thresholds: tau = sigmoid(tau_logit), V_th = exp(v_th_log) or v_th
    ranges |= {"tau_logit": (-1.5, 0.0), "v_th_log": (-1.2, -0.2), "v_th": (0.3, 0.8)}

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":  # He normal, fan in
            std = np.sqrt(2 / np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, std, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.uniform(*ranges[name], leaf.shape), leaf.dtype)

    shapes = flax.core.unfreeze(jax.eval_shape(model.init, jax.random.key(0), x))
    shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
    return jax.tree_util.tree_map_with_path(draw, shapes)


MODELS = {
    "digits_cnn": (  # a learned leak and a learned threshold per channel
        functools.partial(
            DigitsCNN,
            width=2,
            hidden_features=8,
            neuron=NeuronSpec(learn_tau="channel", learn_v_th="channel"),
        ),
        8,
    ),
    "plain_no_norm": (functools.partial(PlainCNN, depth=3, width=2, norm="none"), 8),
    "resnet19_bn": (
        functools.partial(ResNet19, width=2, stage_sizes=(2, 1), hidden_features=6, norm="bn"),
        8,
    ),
    # the named layouts (stages, stems) at width 2: ResNet-17 reads event frames (two
    # polarity channels, time-major); ResNet-18/34 have the ImageNet stem and basic blocks
    "resnet17_events": (functools.partial(ResNet17, width=2, hidden_features=6), (8, 2)),
    "resnet18": (functools.partial(ResNet18, width=2), 32),
    "resnet34": (functools.partial(ResNet34, width=2), 32),
    "resnet50": (  # conversion's per-channel thresholds
        functools.partial(
            ResNet50, width=2, stage_sizes=(1, 1), neuron=NeuronSpec(channel_threshold=True)
        ),
        16,
    ),
}


def _input(size):
    """A static image ``[B, H, W, 1]``, or for ``(size, channels)`` event-like frames
    ``[T, B, H, W, channels]`` that differ per step."""
    if isinstance(size, tuple):
        size, channels = size
        shape = (T, 2, size, size, channels)
    else:
        shape = (2, size, size, 1)
    return jax.random.uniform(jax.random.key(1), shape, minval=0.0, maxval=2.0)


def _frames(x):
    """The graph's input: time-major and channels first, ``[T, B, C, H, W]``."""
    x = jnp.moveaxis(x, -1, -3)
    return x if x.ndim == 5 else jnp.broadcast_to(x, (T, *x.shape))


@functools.cache
def _exported(name):
    make, size = MODELS[name]
    model = make(num_classes=5, time_steps=T)
    x = _input(size)
    variables = _variables(model, x, seed=2)
    calls, logits = capture_calls(model, variables, x, is_neuron, train=False, compiled=True)
    graph = to_nir(model, variables, x, dt=DT)
    return model, variables, x, calls, logits, graph


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_and_simulator_equal_the_model(name, tmp_path):
    _, _, x, calls, logits, graph = _exported(name)
    nir.write(tmp_path / "model.nir", graph)
    read = nir.read(tmp_path / "model.nir")
    assert sorted(read.nodes) == sorted(graph.nodes)
    assert sorted(map(tuple, read.edges)) == sorted(graph.edges)
    module, variables = from_nir(read, dt=DT)
    frames = _frames(x)
    out, state = jax.jit(lambda v, f: module.apply(v, f, mutable=["intermediates"]))(
        variables, frames
    )
    np.testing.assert_allclose(out.mean(axis=0), logits, rtol=1e-5, atol=1e-5)
    sim_out, sim_spikes = simulate(graph, np.asarray(frames), DT)
    np.testing.assert_allclose(sim_out.mean(axis=0), logits, rtol=1e-4, atol=1e-4)
    layers = [c.name.replace("/", ".") for c in calls]
    assert len(layers) >= 3
    for call, layer in zip(calls, layers, strict=True):
        spikes = np.asarray(call.output)  # [T, B, H, W, C] or [T, B, N]
        assert 0 < spikes.mean() < 1, f"{layer} is silent or saturated: a vacuous check"
        ours = np.asarray(state["intermediates"][layer][0])
        np.testing.assert_array_equal(ours, spikes, err_msg=layer)
        sim = sim_spikes[layer]
        sim = np.moveaxis(sim, 2, -1) if sim.ndim == 5 else sim
        np.testing.assert_array_equal(sim, spikes, err_msg=layer)


def test_export_folds_and_shapes():
    _, variables, _, _, _, graph = _exported("resnet19_bn")
    conv = graph.nodes["stage2_block1.shortcut_conv"]
    assert conv.weight.shape == (4, 2, 1, 1)  # (C_out, C_in, kH, kW)
    assert tuple(conv.stride) == (2, 2)
    assert "stage1_block1.neuron2.lif" in {d for s, d in graph.edges if s == "stem.neuron.lif"}
    lif = graph.nodes["stem.neuron.lif"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(1 - DT / lif.tau, 0.25)
    np.testing.assert_allclose(lif.r * DT / lif.tau, 1.0)
    assert lif.tau.shape == (2, 8, 8)  # the neurons of a (C, H, W) map
    kernel = np.asarray(variables["params"]["stem"]["conv"]["kernel"])
    assert not np.allclose(graph.nodes["stem.conv"].weight, kernel.transpose(3, 2, 0, 1))


def test_digits_flatten_reorders_dense_columns_to_channels_first():
    model, variables, x, _, _, graph = _exported("digits_cnn")
    _, folded = fold_norms(model, variables, x)
    kernel = np.asarray(folded["params"]["fc"]["dense"]["kernel"])  # rows in (H, W, C) order
    weight = graph.nodes["fc.dense"].weight  # columns in (C, H, W) order
    c, h, w = 4, 4, 4
    for ci, hi, wi in [(0, 0, 0), (1, 2, 3), (3, 1, 0)]:
        np.testing.assert_array_equal(
            weight[:, ci * h * w + hi * w + wi], kernel[(hi * w + wi) * c + ci]
        )


def test_from_nir_runs_other_node_types_as_the_simulator():
    rng = np.random.default_rng(3)
    c, n = 2, 6
    f = lambda *s: rng.uniform(-1, 1, s)  # noqa: E731
    one = np.ones((c, n, n))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([c, n, n])}),
        "conv": nir.Conv2d(
            input_shape=(n, n),
            weight=f(c, c, 3, 3),
            stride=1,
            padding=1,
            dilation=1,
            groups=1,
            bias=f(c),
        ),
        "scale": nir.Scale(rng.uniform(0.5, 1.5, (c, n, n))),
        "lif": nir.LIF(
            tau=rng.uniform(2e-4, 5e-4, (c, n, n)),
            r=rng.uniform(1, 3, (c, n, n)),
            v_leak=0.1 * one,
            v_threshold=0.4 * one,
            v_reset=-0.2 * one,
        ),
        "pool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([c, 3, 3])}, start_dim=0),
        "linear": nir.Linear(f(7, c * 9)),
        "if": nir.IF(r=np.full(7, 1 / DT), v_threshold=np.full(7, 0.8), v_reset=np.zeros(7)),
        "affine": nir.Affine(f(4, 7), f(4)),
        "li": nir.LI(tau=np.full(4, 3e-4), r=np.full(4, 2.0), v_leak=np.full(4, 0.05)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "conv"), ("conv", "scale"), ("scale", "lif"), ("input", "lif")]
    edges += [("lif", "pool"), ("pool", "flat"), ("flat", "linear"), ("linear", "if")]
    edges += [("if", "affine"), ("affine", "li"), ("li", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    x = rng.uniform(0, 1, (12, 3, c, n, n))
    module, variables = from_nir(graph, dt=DT)
    run = jax.jit(lambda v, x: module.apply(v, x, mutable=["intermediates"]))
    out, state = run(variables, jnp.asarray(x, jnp.float32))
    ref, spikes = simulate(graph, x, DT)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    for name in ("lif", "if"):
        ours = np.asarray(state["intermediates"][name][0])
        ours = np.moveaxis(ours, -1, 2) if ours.ndim == 5 else ours
        np.testing.assert_array_equal(ours, spikes[name], err_msg=name)
        assert 0 < spikes[name].mean() < 1
    # the same graph channels last, and gradients reach the weights (fine-tuning)
    last, _ = from_nir(graph, dt=DT, channels_last=True)
    x_last = jnp.asarray(np.moveaxis(x, 2, -1), jnp.float32)
    np.testing.assert_allclose(jax.jit(last.apply)(variables, x_last), out, rtol=1e-6)
    grads = jax.jit(jax.grad(lambda p: module.apply({**variables, "params": p}, x).sum()))(
        variables["params"]
    )
    assert float(jnp.abs(grads["conv"]["kernel"]).sum()) > 0


def test_to_nir_refuses_what_nir_cannot_express():
    x = jnp.ones((1, 8, 8, 1))
    with pytest.raises(ValueError, match="reset='subtract'"):
        to_nir(DigitsCNN(width=2, neuron=NeuronSpec(reset="subtract")), {}, x)
    with pytest.raises(ValueError, match="memory='compact'"):
        to_nir(DigitsCNN(width=2, memory="compact"), {}, x)
    with pytest.raises(ValueError, match="neuron kind 'relu'"):
        to_nir(DigitsCNN(width=2, neuron=NeuronSpec(kind="relu")), {}, x)
    with pytest.raises(ValueError, match="norm='tebn'"):
        to_nir(DigitsCNN(width=2, norm="tebn"), {}, x)

    class MyCNN(DigitsCNN):  # a user's model: the library's layers in its own layout
        def __call__(self, x, train=True):
            return super().__call__(jnp.flip(x, axis=-2), train)

    with pytest.raises(ValueError, match=r"writes the zoo models .*; got MyCNN"):
        to_nir(MyCNN(width=2), {}, x)
    model = DigitsCNN(width=2, attention="temporal", time_steps=2)
    with pytest.raises(ValueError, match=r"layer conv1/neuron/attention \(TemporalAttention\)"):
        to_nir(model, jax.eval_shape(model.init, jax.random.key(0), x), x)

    class Gate(Block):  # a block NIR has no node for (say, attention)
        @flax.linen.compact
        def __call__(self, x, train=True):
            del train
            return x * self.param("gate", flax.linen.initializers.ones, (x.shape[-1],))

    class GatedBlock(Block):
        layers: object
        features: int
        strides: int = 1

        @flax.linen.compact
        def __call__(self, x, train=True):
            return Gate(name="attention")(x, train)

    model = ResNet19(width=2, stage_sizes=(1,), hidden_features=None, time_steps=2)
    model = model.clone(block_cls=GatedBlock)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"layer stage1_block1 \(GatedBlock\)"):
        to_nir(model, variables, x)


def test_from_nir_refuses_unknown_nodes_cycles_and_unstable_steps():
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    delay = nir.Delay(np.ones(2))
    graph = nir.NIRGraph.from_list(nir.Linear(np.eye(2)), delay, lif)
    with pytest.raises(ValueError, match=r"node 'delay' of type nir.Delay"):
        from_nir(graph)
    with pytest.raises(ValueError, match="unstable"):
        from_nir(nir.NIRGraph.from_list(nir.Linear(np.eye(2)), lif), dt=1e-3)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2])}),
        "a": nir.Linear(np.eye(2)),
        "lif": lif,
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "a"), ("a", "lif"), ("lif", "a"), ("lif", "output")]
    with pytest.raises(ValueError, match="cycle"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def test_missing_nir_package_says_how_to_install_it():
    code = "import sys; sys.modules['nir'] = None; import snn_jax.nir"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install 'snn-jax[nir]'" in result.stderr


def test_fold_and_export_a_resnet_with_silent_blocks():
    """A silent stem: every conv of the next block outputs zeros, yet each norm folds into
    its own conv (a search by output values could not tell them apart)."""
    model = ResNet19(width=2, stage_sizes=(1, 1), hidden_features=None, num_classes=3, time_steps=2)
    x = jnp.ones((1, 8, 8, 1))
    variables = _variables(model, x, seed=4)
    variables["params"]["stem"]["neuron"]["norm"]["bias"] = jnp.full((2,), -10.0)
    calls, logits = capture_calls(model, variables, x, is_neuron, train=False, compiled=True)
    assert float(calls[0].output.sum()) == 0
    folded_model, folded = fold_norms(model, variables, x)
    folded_logits = jax.jit(lambda v, x: folded_model.apply(v, x, train=False))(folded, x)
    np.testing.assert_allclose(folded_logits, logits, rtol=1e-5, atol=1e-6)
    block = folded["params"]["stage2_block1"]
    norms = variables["params"]["stage2_block1"]["neuron2"]
    stats = variables["batch_stats"]["stage2_block1"]["neuron2"]
    for conv, norm in (("conv2", "norm"), ("shortcut_conv", "shortcut_norm")):
        gain = norms[norm]["scale"] * 0.5 / np.sqrt(2) / np.sqrt(stats[norm]["var"] + 1e-5)
        want = norms[norm]["bias"] - gain * stats[norm]["mean"]
        np.testing.assert_allclose(block[conv]["bias"], want, rtol=1e-5, err_msg=conv)
    module, nvars = from_nir(to_nir(model, variables, x))
    frames = jnp.broadcast_to(jnp.moveaxis(x, -1, 1), (2, 1, 1, 8, 8))
    out = jax.jit(module.apply)(nvars, frames)
    np.testing.assert_allclose(out.mean(0), logits, rtol=1e-5, atol=1e-6)
