"""snn_jax.analysis: isometry against closed forms, exact operation counts, folding."""

import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from snn_jax import analysis, models
from snn_jax import nn as snn
from snn_jax.inspect import capture_calls

T, B = 3, 4  # T != B


# ----------------------------------------------------------------------------- isometry


class FixedLinear(nn.Module):
    """A block ``y = x @ A`` (last axis) with a fixed matrix ``A`` (a param initialised to it)."""

    matrix: np.ndarray

    @nn.compact
    def __call__(self, x):
        a = self.param("a", lambda _: jnp.asarray(self.matrix))
        return x @ a


class Chain(nn.Module):
    matrices: tuple

    @nn.compact
    def __call__(self, x, train=True):
        for m in self.matrices:
            x = FixedLinear(m)(x)
        return x


def _orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q.astype(np.float32)


def test_probe_phi_is_the_estimator_on_its_probes():
    # exact check of the estimator: mean and std over the same probes, computed in NumPy
    a = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    x = jnp.ones((B, 6))
    _, vjp = jax.vjp(lambda x: x @ a, x)
    key, k = jax.random.key(3), 7
    phi, std = analysis.probe_phi(vjp, (B, 5), key, k)
    v = np.asarray(jax.random.normal(key, (k, B, 5)), np.float64)
    per = np.array([np.sum((vi @ a.T) ** 2) for vi in v]) / (B * 5)
    np.testing.assert_allclose([phi, std], [per.mean(), per.std()], rtol=1e-5)


def test_phi_of_known_linear_maps_against_closed_form():
    n, c = 64, 1.7
    general = np.random.default_rng(2).normal(0, 0.3, (n, n)).astype(np.float32)
    mats = (_orthogonal(n, 1), (c * np.eye(n)).astype(np.float32), general)
    model = Chain(mats)
    x = jax.random.normal(jax.random.key(0), (B, n))
    variables = model.init(jax.random.key(1), x)
    k = 64
    out = analysis.block_isometry(
        model,
        variables,
        x,
        jax.random.key(2),
        is_block=analysis.blocks_of_type(FixedLinear),
        num_probes=k,
    )
    names = analysis.block_names(model, variables, x, is_block=analysis.blocks_of_type(FixedLinear))
    assert names == ["FixedLinear_0", "FixedLinear_1", "FixedLinear_2"]
    n_out = B * n
    # per probe ||J^T v||^2 / N = ||v||^2 / N * (closed form) for orthogonal and c*I maps,
    # whose relative spread is sqrt(2 / N); the mean over K probes is within 5 sigma
    closed = [1.0, c**2, np.trace(general @ general.T) / n]
    sigma = math.sqrt(2 / n_out / k)
    for name, expected in zip(names, closed, strict=True):
        assert abs(float(out[name]["phi"]) / expected - 1) < 5 * sigma + 0.02 * (name == names[2])
    assert float(out[names[0]]["phi_std"]) == pytest.approx(math.sqrt(2 / n_out), rel=0.3)
    # second-moment ratio against NumPy on the block inputs
    x1 = np.asarray(x) @ mats[0]
    x2 = x1 @ mats[1]
    x3 = x2 @ mats[2]
    for name, (xin, y) in zip(names, [(np.asarray(x), x1), (x1, x2), (x2, x3)], strict=True):
        np.testing.assert_allclose(
            out[name]["moment_ratio"], np.mean(y**2) / np.mean(xin**2), rtol=1e-5
        )
        np.testing.assert_allclose(out[name]["in_moment"], np.mean(xin**2), rtol=1e-5)
    # c*I: the moment ratio is c^2 exactly
    np.testing.assert_allclose(out[names[1]]["moment_ratio"], c**2, rtol=1e-5)


class SpikingUnit(models.Block):
    features: int
    norm: str = "tdbn"

    @nn.compact
    def __call__(self, x, train=True):
        x = snn.TimeFolded(nn.Conv(self.features, (3, 3), use_bias=self.norm == "none"))(x)
        if self.norm == "tdbn":
            x = snn.TdBatchNorm()(x, use_running_average=not train)
        elif self.norm == "bn":
            x = snn.TimeFolded(nn.BatchNorm(use_running_average=not train, momentum=0.9))(x)
        return snn.LIF()(x)


class TinySNN(nn.Module):
    """encoder conv unit -> conv unit -> dense -> LIF -> mean decoder."""

    norm: str = "tdbn"
    time_steps: int = T

    @nn.compact
    def __call__(self, x, train=True):
        x = snn.direct_encode(x, self.time_steps)
        x = SpikingUnit(6, self.norm)(x, train)
        x = SpikingUnit(6, self.norm)(x, train)
        x = x.reshape(*x.shape[:2], -1)
        x = snn.TimeFolded(nn.Dense(12, use_bias=self.norm == "none"))(x)
        if self.norm == "tdbn":
            x = snn.TdBatchNorm()(x, use_running_average=not train)
        elif self.norm == "bn":
            x = snn.TimeFolded(nn.BatchNorm(use_running_average=not train, momentum=0.9))(x)
        x = snn.LIF()(x)
        return snn.MeanDecoder(10)(x)


_TINY = {}


def _init_key(seed):
    """An RBG key for initialisation: its XLA program compiles several times faster on a CPU
    than the default threefry's (the init values do not matter here)."""
    return jax.random.key(seed, impl="rbg")


def _tiny(norm="tdbn", seed=0):
    """A TinySNN, its (jit-initialised, cached) variables and an input batch."""
    if (norm, seed) not in _TINY:
        x = jax.random.uniform(jax.random.key(seed), (B, 6, 6, 1))
        model = TinySNN(norm)
        init = jax.jit(lambda k, x: model.init(k, x, train=False))
        _TINY[norm, seed] = model, init(_init_key(seed + 1), x), x
    return _TINY[norm, seed]


def test_block_isometry_on_spiking_units_equals_one_vjp_per_block():
    model, variables, x = _tiny()
    k = 3
    out = jax.jit(lambda v, x, r: analysis.block_isometry(model, v, x, r, num_probes=k))(
        variables, x, jax.random.key(5)
    )
    assert sorted(out) == ["SpikingUnit_0", "SpikingUnit_1"]
    for stats in out.values():
        assert np.isfinite(float(stats["phi"]))
        assert float(stats["phi"]) > 0
    # the taps of block_isometry against each block applied alone, with the same probes
    calls, _ = capture_calls(
        model, variables, x, analysis.default_is_block, train=True, compiled=True
    )
    assert [c.name for c in calls] == analysis.block_names(model, variables, x)

    def per_block(variables, x_in, probes, call):
        y, vjp = jax.vjp(lambda z: call.apply(variables, z), x_in)
        return jax.vmap(lambda v: jnp.sum(jnp.square(vjp(v)[0])))(probes) / y.size, y

    sizes = [c.output.size for c in calls]  # the probes: one draw, split in block order
    draw = jax.random.normal(jax.random.key(5), (k, sum(sizes)))
    offsets = np.cumsum([0, *sizes])
    for j, call in enumerate(calls):
        fn = jax.jit(functools.partial(per_block, call=call))
        probes = draw[:, offsets[j] : offsets[j + 1]].reshape(k, *call.output.shape)
        per, y = fn(variables, call.args[0], probes)
        np.testing.assert_allclose(out[call.name]["phi"], np.mean(per), rtol=1e-4)
        np.testing.assert_allclose(out[call.name]["phi_std"], np.std(per), rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(out[call.name]["out_moment"], np.mean(np.square(y)), rtol=1e-5)
    # the second unit's input is spikes: its second moment is the first unit's firing rate
    np.testing.assert_allclose(
        out["SpikingUnit_1"]["in_moment"], np.mean(calls[0].output), rtol=1e-6
    )


def test_block_isometry_needs_a_matching_block():
    model, variables, x = _tiny()
    with pytest.raises(ValueError, match="matched"):
        jax.eval_shape(
            lambda v, x: analysis.block_isometry(
                model, v, x, jax.random.key(0), is_block=analysis.blocks_of_type(FixedLinear)
            ),
            variables,
            x,
        )


def test_gradient_norms_equal_autodiff_and_are_in_depth_order():
    model, variables, x = _tiny()
    labels = jnp.arange(B) % 10
    norms = jax.jit(lambda v, b: analysis.gradient_norms(model, v, b))(
        variables, {"image": x, "label": labels}
    )
    names = analysis.kernel_names(model, variables, x)
    assert names == [
        "SpikingUnit_0/Conv_0/kernel",
        "SpikingUnit_1/Conv_0/kernel",
        "Dense_0/kernel",
        "MeanDecoder_0/readout/kernel",
    ]
    assert sorted(norms) == sorted(names)

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    g = jax.jit(jax.grad(loss))(variables["params"])
    np.testing.assert_allclose(
        norms["SpikingUnit_1/Conv_0/kernel"],
        np.linalg.norm(np.asarray(g["SpikingUnit_1"]["Conv_0"]["kernel"])),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        norms["Dense_0/kernel"], np.linalg.norm(np.asarray(g["Dense_0"]["kernel"])), rtol=1e-5
    )


# ----------------------------------------------------------------------------- activity


def test_firing_statistics_against_numpy():
    rng = np.random.default_rng(0)
    s = (rng.random((T, B, 5, 2)) < 0.4).astype(np.float32)
    s[:, :, 0, 0] = 0.0  # silent neuron
    s[:, :, 1, 1] = 1.0  # saturated neuron
    st = analysis.firing_statistics(jnp.asarray(s))
    per_neuron = s.mean(axis=(0, 1))
    np.testing.assert_allclose(st["rate"], s.mean(), rtol=1e-6)
    np.testing.assert_allclose(st["rate_per_step"], s.reshape(T, -1).mean(1), rtol=1e-6)
    np.testing.assert_allclose(st["silent"], np.mean(per_neuron == 0))
    np.testing.assert_allclose(st["saturated"], np.mean(per_neuron == 1))
    assert float(st["silent"]) >= 0.1
    assert float(st["saturated"]) >= 0.1


def test_layer_activity_matches_sown_firing_rates():
    model, variables, x = _tiny()
    activity = analysis.layer_activity(model, variables, x)
    assert list(activity) == ["SpikingUnit_0/LIF_0", "SpikingUnit_1/LIF_0", "LIF_0"]
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, x
    )
    sown = jnp.mean(state["intermediates"]["SpikingUnit_1"]["LIF_0"]["firing_rate"][0])
    np.testing.assert_allclose(activity["SpikingUnit_1/LIF_0"]["rate"], sown, rtol=1e-6)
    trains = analysis.spike_trains(model, variables, x)
    chex.assert_shape(trains["LIF_0"], (T, B, 12))


# ----------------------------------------------------------------------------- operations


class Single(nn.Module):
    layer: nn.Module

    @nn.compact
    def __call__(self, x, train=False):
        return self.layer(x)


def _ops(layer, x):
    model = Single(layer)
    variables = model.init(jax.random.key(0), x)
    return analysis.count_operations(model, variables, x)


def test_dense_fed_by_spikes_counts_spikes_times_out_features():
    spikes = (np.random.default_rng(0).random((B, 9)) < 0.3).astype(np.float32)
    ops = _ops(nn.Dense(5), jnp.asarray(spikes))
    (entry,) = ops.values()
    assert entry["kind"] == "ac"
    assert entry["ops"] == spikes.sum() * 5 / B
    np.testing.assert_allclose(entry["input_rate"], spikes.mean(), rtol=1e-6)


_TRACES = []  # the input shapes CountedTraces was traced with


class CountedTraces(nn.Module):
    """A dense layer that records its traces (its Python runs only when traced)."""

    @nn.compact
    def __call__(self, x, train=False):
        _TRACES.append(x.shape)
        return nn.Dense(5, name="fc")(x)


def test_count_operations_compiles_once_per_input_shape_with_fresh_values():
    traces = _TRACES
    model = CountedTraces()
    rng = np.random.default_rng(1)
    batches = [(rng.random((B, 9)) < p).astype(np.float32) for p in (0.2, 0.6, 0.4)]
    variables = model.init(jax.random.key(0), batches[0])
    traces.clear()
    for spikes in batches:  # one shape: one trace, each batch's own counts
        ops = analysis.count_operations(model, variables, jnp.asarray(spikes))
        assert ops["fc"]["ops"] == spikes.sum() * 5 / B
    assert len(traces) == 1
    wider = (rng.random((2 * B, 9)) < 0.5).astype(np.float32)
    assert analysis.count_operations(model, variables, wider)["fc"]["ops"] == wider.sum() * 5 / (
        2 * B
    )
    assert len(traces) == 2


def _np_conv_connections(h, w, k, stride, pad, c_out):
    """Per input pixel, how many (output position, kernel tap) pairs read it, times C_out."""
    out_h = (h + pad[0][0] + pad[0][1] - k) // stride + 1
    out_w = (w + pad[1][0] + pad[1][1] - k) // stride + 1
    count = np.zeros((h, w))
    for oi in range(out_h):
        for oj in range(out_w):
            for di in range(k):
                for dj in range(k):
                    i, j = oi * stride + di - pad[0][0], oj * stride + dj - pad[1][0]
                    if 0 <= i < h and 0 <= j < w:
                        count[i, j] += 1
    return count * c_out


@pytest.mark.parametrize(
    ("padding", "stride", "pad"),
    [("SAME", 1, ((1, 1), (1, 1))), ("VALID", 1, ((0, 0), (0, 0))), ("SAME", 2, ((0, 1), (0, 1)))],
)
def test_conv_sops_and_macs_against_numpy_loop(padding, stride, pad):
    h, w, c_in, c_out, k = 7, 6, 3, 4, 3
    if stride == 2:  # flax SAME with stride 2 on odd/even sizes pads (lo, hi) as computed by XLA
        pad = (((max((h - 1) // 2 * 2 + k - h, 0)) // 2, 0), (0, 0))
        total_h = max((math.ceil(h / 2) - 1) * 2 + k - h, 0)
        total_w = max((math.ceil(w / 2) - 1) * 2 + k - w, 0)
        pad = ((total_h // 2, total_h - total_h // 2), (total_w // 2, total_w - total_w // 2))
    layer = nn.Conv(c_out, (k, k), strides=stride, padding=padding)
    connections = _np_conv_connections(h, w, k, stride, pad, c_out)[..., None]  # [h, w, 1]
    spikes = (np.random.default_rng(1).random((B, h, w, c_in)) < 0.35).astype(np.float32)
    (entry,) = _ops(layer, jnp.asarray(spikes)).values()
    assert entry["kind"] == "ac"
    assert entry["ops"] == pytest.approx(np.sum(spikes * connections) / B, rel=1e-12)
    # the same layer fed by real values: MACs, every input element counted
    real = np.random.default_rng(2).random((B, h, w, c_in)).astype(np.float32)
    (entry,) = _ops(layer, jnp.asarray(real)).values()
    assert entry["kind"] == "mac"
    assert entry["ops"] == pytest.approx(c_in * connections.sum(), rel=1e-12)
    if padding == "VALID":  # the textbook count: outputs x k*k*C_in
        assert entry["ops"] == (h - k + 1) * (w - k + 1) * c_out * k * k * c_in


def test_grouped_conv_fan_out():
    fan = analysis.fan_out_map(nn.Conv(6, (1, 1), feature_group_count=3), (1, 1, 2, 6), (4, 4, 6))
    np.testing.assert_array_equal(fan, np.full((4, 4, 6), 2.0))  # each input feeds 6/3 outputs


def test_count_operations_on_a_spiking_network():
    model, variables, x = _tiny()
    ops = analysis.count_operations(model, variables, x)
    assert list(ops) == [
        "SpikingUnit_0/Conv_0",
        "SpikingUnit_1/Conv_0",
        "Dense_0",
        "MeanDecoder_0",
    ]
    assert [v["kind"] for v in ops.values()] == ["mac", "ac", "ac", "ac"]
    trains = analysis.spike_trains(model, variables, x)
    # the encoder conv: SAME 3x3 on 6x6x1 -> 6, over T*B images, per example
    enc = _np_conv_connections(6, 6, 3, 1, ((1, 1), (1, 1)), 6).sum() * T
    assert ops["SpikingUnit_0/Conv_0"]["ops"] == pytest.approx(enc)
    last = np.asarray(trains["LIF_0"])
    assert ops["MeanDecoder_0"]["ops"] == pytest.approx(last.sum() * 10 / B)
    dense_in = np.asarray(trains["SpikingUnit_1/LIF_0"])
    assert ops["Dense_0"]["ops"] == pytest.approx(dense_in.sum() * 12 / B)
    energy = analysis.energy_estimate(ops, analysis.EnergyModel(e_ac=1.0, e_mac=10.0))
    sops = sum(v["ops"] for v in ops.values() if v["kind"] == "ac")
    assert energy["sops"] == pytest.approx(sops)
    assert energy["energy_j"] == pytest.approx(sops + 10 * enc)
    default = analysis.energy_estimate(ops)
    assert default["energy_j"] == pytest.approx(0.9e-12 * sops + 4.6e-12 * enc)


# ----------------------------------------------------------------------------- folding


def _trained_statistics(model, variables, x, steps=3):
    """Running statistics after a few training-mode passes, and non-trivial scale/bias."""
    rng = np.random.default_rng(0)
    update = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1])
    for i in range(steps):
        xi = jax.random.uniform(jax.random.key(10 + i), x.shape)
        variables = {**variables, "batch_stats": update(variables, xi)["batch_stats"]}

    def perturb(path, p):
        name = path[-1].key
        if name == "scale":
            return p * jnp.asarray(rng.uniform(0.7, 1.4, p.shape), p.dtype)
        if name == "bias":
            return p + jnp.asarray(rng.normal(0, 0.1, p.shape), p.dtype)
        return p

    params = jax.tree_util.tree_map_with_path(perturb, variables["params"])
    return {**variables, "params": params}


def assert_folded_equal(model, variables, x, folded_model, folded):
    ref = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    out = jax.jit(lambda v, x: folded_model.apply(v, x, train=False))(folded, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    s_ref = analysis.spike_trains(model, variables, x)
    s_out = analysis.spike_trains(folded_model, folded, x)
    assert len(s_ref) == len(s_out) > 0
    for a, b in zip(s_ref.values(), s_out.values(), strict=True):
        assert np.mean(np.asarray(a) != np.asarray(b)) < 1e-3  # identical up to threshold ties


@pytest.mark.parametrize("norm", ["tdbn", "bn"])
def test_fold_norms_on_a_hand_built_snn(norm):
    model, variables, x = _tiny(norm)
    variables = _trained_statistics(model, variables, x)
    folded_model, folded = analysis.fold_norms(model, variables, x)
    assert folded_model.norm == "none"
    assert "batch_stats" not in folded
    assert_folded_equal(model, variables, x, folded_model, folded)
    pairs = analysis.norm_pairs(model, variables, x)
    assert len(pairs) == 3


def test_fold_affine_formula():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    lam, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    gain, eps = 0.5 / math.sqrt(2), 1e-5
    w2, b2 = analysis.fold_affine(
        jnp.asarray(w, jnp.float32),
        jnp.asarray(b, jnp.float32),
        jnp.asarray(mean, jnp.float32),
        jnp.asarray(var, jnp.float32),
        scale=jnp.asarray(lam, jnp.float32),
        beta=jnp.asarray(beta, jnp.float32),
        gain=gain,
        epsilon=eps,
    )
    s = lam * gain / np.sqrt(var + eps)
    np.testing.assert_allclose(w2, w * s, rtol=1e-5)
    np.testing.assert_allclose(b2, s * (b - mean) + beta, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the model zoo

ZOO = {
    "digits_cnn": (dict(width=4, hidden_features=8), (B, 8, 8, 1)),
    "resnet19": (dict(width=2, stage_sizes=(1, 1), hidden_features=8), (B, 8, 8, 3)),
    "plain": (dict(width=2, depth=3, num_stages=1), (B, 8, 8, 1)),
}


_ZOO_CACHE = {}


def _zoo(name, norm="tdbn"):
    """A small zoo model, its (cached) variables and an input batch."""
    if (name, norm) not in _ZOO_CACHE:
        kwargs, shape = ZOO[name]
        model = models.get_model(name, num_classes=10, time_steps=T, norm=norm, **kwargs)
        x = jax.random.uniform(jax.random.key(0), shape)
        variables = jax.jit(lambda k, x: model.init(k, x, train=False))(_init_key(1), x)
        _ZOO_CACHE[name, norm] = model, variables, x
    return _ZOO_CACHE[name, norm]


def test_default_blocks_of_the_zoo():
    expected = {
        "digits_cnn": ["conv1", "conv2", "fc"],
        "resnet19": ["stem", "stage1_block1", "stage2_block1", "fc"],
        "plain": ["unit1", "unit2", "unit3"],
    }
    for name, (kwargs, shape) in ZOO.items():
        model = models.get_model(name, num_classes=10, time_steps=T, **kwargs)
        x = jnp.zeros(shape)
        variables = jax.eval_shape(
            lambda k, x, m=model: m.init(k, x, train=False), jax.random.key(0), x
        )
        assert analysis.block_names(model, variables, x) == expected[name]


def test_zoo_spiking_layers_are_named_by_their_sown_rates():
    """A zoo model's spiking layers are its units' ``neuron/lif``; each one's rate is the mean
    of the firing rates it sows at ``<unit>/neuron/lif/firing_rate``."""
    model, variables, x = _zoo("digits_cnn")
    activity = analysis.layer_activity(model, variables, x)
    assert list(activity) == ["conv1/neuron/lif", "conv2/neuron/lif", "fc/neuron/lif"]
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, x
    )
    sown = {"/".join(k): v for k, v in traverse_util.flatten_dict(state["intermediates"]).items()}
    assert set(sown) == {f"{name}/firing_rate" for name in activity}
    for name, stats in activity.items():
        np.testing.assert_allclose(
            stats["rate"], jnp.mean(sown[f"{name}/firing_rate"][0]), rtol=1e-6
        )


def _eval_spikes_and_logits(model, variables, x):
    calls, logits = capture_calls(
        model, variables, x, analysis.is_spiking, train=False, compiled=True
    )
    return [np.asarray(c.output) for c in calls], np.asarray(logits)


@pytest.mark.parametrize(("name", "norm"), [("digits_cnn", "tdbn"), ("resnet19", "bn")])
def test_fold_norms_on_zoo_models(name, norm):
    model, variables, x = _zoo(name, norm)
    variables = _trained_statistics(model, variables, x)
    folded_model, folded = analysis.fold_norms(model, variables, x)
    assert folded_model.norm == "none"
    assert list(folded) == ["params"]
    spikes, logits = _eval_spikes_and_logits(model, variables, x)
    f_spikes, f_logits = _eval_spikes_and_logits(folded_model, folded, x)
    np.testing.assert_allclose(f_logits, logits, rtol=1e-4, atol=1e-5)
    assert len(spikes) == len(f_spikes) > 0
    for a, b in zip(spikes, f_spikes, strict=True):
        assert np.mean(a != b) < 1e-3  # identical up to ties at the threshold
    assert sum(a.sum() for a in spikes) > 0


def test_operation_kinds_on_digits_cnn():
    model, variables, x = _zoo("digits_cnn")
    # train=True: batch statistics, so that the untrained network fires
    ops = analysis.count_operations(model, variables, x, train=True)
    assert {k: v["kind"] for k, v in ops.items()} == {
        "conv1/conv": "mac",  # the encoder sees the real-valued image
        "conv2/conv": "ac",
        "fc/dense": "mac",  # fed by a 2x2 average pool of spikes: rates, not spikes
        "decoder": "ac",
    }
    # the encoder: a 3x3 conv with padding 1 on 8x8x1, width 4, over T steps
    enc = _np_conv_connections(8, 8, 3, 1, ((1, 1), (1, 1)), 4).sum() * T
    assert ops["conv1/conv"]["ops"] == pytest.approx(enc)
    assert ops["fc/dense"]["ops"] == pytest.approx(T * 4 * 4 * 8 * 8)  # T x inputs x outputs
    # the pool folded into the weights: every conv2 spike does hidden_features ACs
    pooled = analysis.count_operations(model, variables, x, train=True, pooled={"fc/dense": 4})
    assert pooled["fc/dense"]["kind"] == "ac"
    conv2_spikes = np.asarray(
        analysis.spike_trains(model, variables, x, train=True)["conv2/neuron/lif"]
    ).sum()
    assert conv2_spikes > 0
    assert pooled["fc/dense"]["ops"] == pytest.approx(conv2_spikes * 8 / B)
    with pytest.raises(ValueError, match="whole number"):
        analysis.count_operations(model, variables, x, train=True, pooled={"fc/dense": 3})
    with pytest.raises(ValueError, match="not conv/dense"):
        analysis.count_operations(model, variables, x, train=True, pooled={"fc/neuron/lif": 4})


@pytest.mark.parametrize("memory", ["remat", "compact"])
def test_analyses_of_a_model_with_a_memory_option(memory):
    """A memory option changes no values, so no analysis: the same counts, spikes,
    isometry and folded model as ``memory="none"`` (recomputed layers are
    inspected without their ``nn.remat``)."""
    model, variables, x = _zoo("digits_cnn")
    variables = _trained_statistics(model, variables, x)
    other = model.clone(memory=memory)
    ops = analysis.count_operations(model, variables, x)
    assert analysis.count_operations(other, variables, x) == ops
    trains = analysis.spike_trains(model, variables, x)
    other_trains = analysis.spike_trains(other, variables, x)
    assert list(other_trains) == list(trains)
    for name in trains:
        np.testing.assert_array_equal(other_trains[name], trains[name])
    isometry = functools.partial(analysis.block_isometry, rng=jax.random.key(3), num_probes=2)
    chex.assert_trees_all_close(
        isometry(other, variables, x), isometry(model, variables, x), rtol=1e-5
    )
    folded_model, folded = analysis.fold_norms(other, variables, x)
    kept = "none" if memory == "compact" else memory  # compact needs norms
    assert (folded_model.norm, folded_model.memory) == ("none", kept)
    _, f_logits = _eval_spikes_and_logits(folded_model, folded, x)
    _, logits = _eval_spikes_and_logits(model, variables, x)
    np.testing.assert_allclose(f_logits, logits, rtol=1e-4, atol=1e-5)


def test_an_ann_does_macs_even_on_binary_input():
    """``spiking=False``: binarized images or a silent layer still cost every MAC."""
    model, _, x = _zoo("digits_cnn")
    ann = model.clone(neuron=snn.NeuronSpec(kind="relu"), norm="bn")
    binary = (x > 0.5).astype(jnp.float32)
    ann_variables = jax.jit(lambda x: ann.init(jax.random.key(1), x, train=False))(binary)
    as_snn = analysis.count_operations(ann, ann_variables, binary)
    assert as_snn["conv1/conv"]["kind"] == "ac"  # what spiking=True reads into binary input
    ops = analysis.count_operations(ann, ann_variables, binary, spiking=False)
    assert {v["kind"] for v in ops.values()} == {"mac"}
    enc = _np_conv_connections(8, 8, 3, 1, ((1, 1), (1, 1)), 4).sum() * T
    assert ops["conv1/conv"]["ops"] == pytest.approx(enc)
    with pytest.raises(ValueError, match="spiking=False"):
        analysis.count_operations(ann, ann_variables, binary, spiking=False, pooled={"fc/dense": 4})
