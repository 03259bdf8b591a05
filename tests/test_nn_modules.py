"""Flax modules: the neuron spec, LIF/IF layers, the norm-neuron unit, time folding, encoders
and the mean decoder."""

import dataclasses
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from snn_jax import lif_scan, surrogate
from snn_jax import nn as snn
from snn_jax.nn import NeuronSpec
from tests.reference import np_lif

T, B, N = 5, 3, 4  # T != B


def currents(shape=(T, B, N), seed=0, mean=0.4, std=0.5):
    return np.random.default_rng(seed).normal(mean, std, shape).astype(np.float32)


# ----------------------------------------------------------------------------- neurons


# a shape parameter other than each surrogate's default
OTHER_PARAM = {
    "rectangular": 0.5,
    "sigmoid": 10.0,
    "atan": 3.0,
    "triangle": 0.6,
    "fast_sigmoid": 5.0,
}


@pytest.mark.parametrize("with_param", [False, True])
@pytest.mark.parametrize("name", list(surrogate.NAMES))
def test_lif_module_equals_lif_scan(name, with_param):
    x = jnp.asarray(currents(seed=1))
    param = OTHER_PARAM[name] if with_param else None
    spec = NeuronSpec(tau=0.3, v_th=0.4, surrogate=name, surrogate_param=param, detach_reset=True)
    layer = snn.LIF(spec)
    key = surrogate.SHAPE_PARAMETER[name]
    spike = surrogate.get(name, **({key: param} if with_param else {}))
    w = jnp.asarray(currents(seed=2))
    kw = {"tau": 0.3, "v_th": 0.4, "surrogate": spike, "detach_reset": True}

    @jax.jit
    def run(x):
        # the module's output and gradient are the functional ones (same surrogate and flag)
        y = layer.apply({}, x)
        g_mod = jax.grad(lambda x: jnp.sum(layer.apply({}, x) * w))(x)
        g_fun = jax.grad(lambda x: jnp.sum(lif_scan(x, **kw) * w))(x)
        return y, g_mod, g_fun

    y, g_mod, g_fun = run(x)
    np.testing.assert_array_equal(y, np_lif(x, 0.3, 0.4)[0])
    np.testing.assert_allclose(g_mod, g_fun, rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(g_mod)).max() > 0


def test_lif_module_defaults_and_conv_shape():
    x = jnp.asarray(currents((T, B, 2, 2, 3), seed=3))
    y = snn.LIF().apply({}, x)
    chex.assert_shape(y, (T, B, 2, 2, 3))
    np.testing.assert_array_equal(y, np_lif(x, 0.25, 0.5)[0])
    assert snn.LIF().init(jax.random.key(0), x).get("params", {}) == {}


def test_if_is_lif_with_tau_one():
    assert snn.IF().spec == NeuronSpec(tau=1.0)
    assert snn.IF().spec.v_th == 0.5
    x = jnp.asarray(currents(seed=4, mean=0.15, std=0.2))
    y = snn.IF().apply({}, x)
    ref = np_lif(x, 1.0, 0.5)[0]
    np.testing.assert_array_equal(y, ref)
    assert not np.array_equal(ref, np_lif(x, 0.25, 0.5)[0])  # the leak matters for this input


def test_learn_tau_parameter_and_gradient():
    tau0 = 0.3
    x = jnp.asarray(currents(seed=5, mean=0.5, std=0.5))
    w = jnp.asarray(currents(seed=6, mean=0.0, std=1.0))
    layer = snn.LIF(NeuronSpec(tau=tau0, v_th=0.4, learn_tau="layer"))
    variables = layer.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"tau_logit"}
    logit = variables["params"]["tau_logit"]
    assert jnp.shape(logit) == ()  # one leak per layer
    np.testing.assert_allclose(jax.nn.sigmoid(logit), tau0, rtol=1e-6)
    np.testing.assert_allclose(logit, np.log(tau0 / (1 - tau0)), rtol=1e-6)

    y = layer.apply(variables, x)
    np.testing.assert_array_equal(y, np_lif(x, tau0, 0.4)[0])
    assert 0 < float(jnp.mean(y)) < 1

    grads = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply(v, x) * w)))(variables)
    g = grads["params"]["tau_logit"]
    assert np.isfinite(g)
    assert abs(float(g)) > 1e-4
    # chain rule: dL/dlogit = dL/dtau * tau * (1 - tau), with dL/dtau from the functional scan
    g_tau = jax.jit(jax.grad(lambda tau: jnp.sum(lif_scan(x, tau=tau, v_th=0.4) * w)))(
        jnp.float32(tau0)
    )
    np.testing.assert_allclose(g, g_tau * tau0 * (1 - tau0), rtol=1e-4, atol=1e-6)


def test_firing_rate_is_sown():
    x = jnp.asarray(currents(seed=7))
    y, state = snn.LIF().apply({}, x, mutable=["intermediates"])
    rate = state["intermediates"]["firing_rate"]
    assert isinstance(rate, tuple)
    assert len(rate) == 1
    # one rate per example: its spikes' mean over time and neurons
    np.testing.assert_allclose(rate[0], np.asarray(y).mean(axis=(0, 2)), rtol=1e-6)
    assert 0 < float(jnp.mean(rate[0])) < 1
    assert len(set(np.asarray(rate[0]).tolist())) > 1  # the examples differ
    # and nothing is sown without asking for the collection
    assert snn.LIF().apply({}, x).shape == x.shape


@pytest.mark.parametrize(
    "kwargs", [{"tau": 0.0}, {"tau": 1.5}, {"tau": -0.2}, {"v_th": 0.0}, {"v_th": -0.5}]
)
def test_lif_rejects_bad_parameters(kwargs):
    """A bad leak or threshold fails when the spec is made, before any layer exists."""
    with pytest.raises(ValueError, match="tau" if "tau" in kwargs else "v_th"):
        snn.LIF(NeuronSpec(**kwargs)).apply({}, jnp.ones((T, B)))


def test_lif_rejects_input_without_batch_axis():
    with pytest.raises(ValueError, match=r"\[T, B"):
        snn.LIF().apply({}, jnp.ones((T,)))


def test_lif_rejects_a_relu_spec():
    with pytest.raises(ValueError, match=r"LIF needs a NeuronSpec of kind 'lif', got 'relu'"):
        snn.LIF(NeuronSpec(kind="relu")).apply({}, jnp.ones((T, B)))


# ----------------------------------------------------------------------------- the neuron spec


@pytest.mark.parametrize(
    ("field", "bad", "match"),
    [
        ("kind", "tanh", r"NeuronSpec\.kind = 'tanh': must be one of \('lif', 'relu'\)"),
        ("tau", 0.0, r"NeuronSpec\.tau = 0\.0: must be in \(0, 1\]"),
        ("tau", 1.5, r"NeuronSpec\.tau = 1\.5: must be in \(0, 1\]"),
        ("tau", float("nan"), r"NeuronSpec\.tau = nan: must be in \(0, 1\]"),
        ("v_th", 0.0, r"NeuronSpec\.v_th = 0\.0: must be > 0"),
        ("v_th", -0.5, r"NeuronSpec\.v_th = -0\.5: must be > 0"),
        ("reset", "soft", r"NeuronSpec\.reset = 'soft': must be one of .*'subtract'"),
        ("surrogate", "erf", r"NeuronSpec\.surrogate = 'erf': must be one of .*'rectangular'"),
        ("surrogate_param", 0.0, r"NeuronSpec\.surrogate_param = 0\.0: must be None .* or > 0"),
        ("surrogate_param", -1.0, r"NeuronSpec\.surrogate_param = -1\.0: must be None"),
        (
            "gradient",
            "lee",
            r"NeuronSpec\.gradient = 'lee': must be one of \('stbp', 'aggregate'\)",
        ),
        ("unroll", 0, r"NeuronSpec\.unroll = 0: must be True or an integer >= 1"),
        ("unroll", 1.5, r"NeuronSpec\.unroll = 1\.5: must be True or an integer >= 1"),
        ("unroll", "2", r"NeuronSpec\.unroll = '2': must be True or an integer >= 1"),
    ],
)
def test_neuron_spec_rejects_each_bad_field(field, bad, match):
    with pytest.raises(ValueError, match=match):
        NeuronSpec(**{field: bad})
    with pytest.raises(ValueError, match=match):  # replace validates again
        NeuronSpec().replace(**{field: bad})


def test_neuron_spec_learn_tau_needs_a_leak():
    with pytest.raises(
        ValueError, match=r"NeuronSpec\.learn_tau = 'layer': needs an initial NeuronSpec\.tau < 1"
    ):
        NeuronSpec(tau=1.0, learn_tau="layer")
    assert NeuronSpec(tau=0.9, learn_tau="channel").learn_tau == "channel"
    with pytest.raises(ValueError, match=r"NeuronSpec\.learn_tau = True: must be one of"):
        NeuronSpec(learn_tau=True)  # the former boolean: a clear error, not a silent cast
    with pytest.raises(ValueError, match=r"NeuronSpec\.learn_v_th = 'neuron': must be one of"):
        NeuronSpec(learn_v_th="neuron")
    with pytest.raises(ValueError, match=r"learn_v_th = 'layer': conflicts with .*channel_thr"):
        NeuronSpec(learn_v_th="layer", channel_threshold=True)
    with pytest.raises(ValueError, match=r"config\.model\.learn_v_th = 'x'"):
        NeuronSpec.from_config({"learn_v_th": "x"})


def test_neuron_spec_defaults_and_good_values():
    spec = NeuronSpec()
    assert dataclasses.asdict(spec) == {
        "kind": "lif",
        "tau": 0.25,
        "v_th": 0.5,
        "reset": "zero",
        "surrogate": "rectangular",
        "surrogate_param": None,
        "detach_reset": False,
        "gradient": "stbp",
        "learn_tau": "none",
        "learn_v_th": "none",
        "channel_threshold": False,
        "unroll": 1,
    }
    for kwargs in [
        dict(tau=1.0),
        dict(kind="relu"),
        dict(reset="subtract", gradient="aggregate", channel_threshold=True),
        dict(unroll=True),
        dict(unroll=8),
        dict(surrogate="atan", surrogate_param=3.0),
    ]:
        assert dataclasses.asdict(NeuronSpec(**kwargs)).items() >= kwargs.items()


def test_neuron_spec_is_a_frozen_hashable_value():
    spec = NeuronSpec(tau=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.tau = 0.3
    assert spec == NeuronSpec(tau=0.5)
    assert hash(spec) == hash(NeuronSpec(tau=0.5))
    assert spec != NeuronSpec(tau=0.6)


def test_neuron_spec_replace():
    spec = NeuronSpec(tau=0.5, surrogate="atan")
    other = spec.replace(reset="subtract", v_th=0.3)
    assert other == NeuronSpec(tau=0.5, surrogate="atan", reset="subtract", v_th=0.3)
    assert spec == NeuronSpec(tau=0.5, surrogate="atan")  # unchanged
    assert spec.replace() == spec
    with pytest.raises(TypeError):
        spec.replace(leak=0.5)


@pytest.mark.parametrize("name", list(surrogate.NAMES))
def test_spike_function_takes_the_shape_parameter(name):
    key = surrogate.SHAPE_PARAMETER[name]
    value = OTHER_PARAM[name]
    spec = NeuronSpec(surrogate=name, surrogate_param=value)
    expected = surrogate.get(name, **{key: value})
    f = spec.spike_function
    assert f is expected  # the cached function: jitted code is not retraced
    assert (f.name, f.params) == (name, {key: value})
    default = NeuronSpec(surrogate=name).spike_function
    assert default is surrogate.get(name)
    assert default.params != f.params
    # the backward pass is the set parameter's surrogate
    v = jnp.linspace(-1.0, 1.0, 41)
    grad = jax.grad(lambda v: jnp.sum(f(v)))(v)
    np.testing.assert_allclose(grad, expected.derivative(v), rtol=1e-6)
    assert not np.allclose(grad, default.derivative(v))


def test_neuron_spec_from_config():
    model = {"name": "digits_cnn", "width": 16, "neuron": "relu", "tau": 0.5, "unroll": 2}
    assert NeuronSpec.from_config(model) == NeuronSpec(kind="relu", tau=0.5, unroll=2)
    assert NeuronSpec.from_config({"name": "plain"}) == NeuronSpec()
    every = dict(
        neuron="lif",
        tau=0.9,
        v_th=0.3,
        reset="subtract",
        surrogate="triangle",
        surrogate_param=0.7,
        detach_reset=True,
        gradient="aggregate",
        learn_tau="channel",
        learn_v_th="none",
        channel_threshold=True,
        unroll=True,
    )
    spec = NeuronSpec.from_config(every)
    assert {**dataclasses.asdict(spec), "neuron": spec.kind} == {**every, "kind": "lif"}
    assert NeuronSpec.config_keys() == frozenset(every)
    # an ml_collections section, as the training loop passes it (the configs' unset
    # surrogate_param is a typed FieldReference to None)
    config = ml_collections.ConfigDict(
        {
            "name": "digits_cnn",
            "neuron": "lif",
            "v_th": 0.4,
            "surrogate_param": ml_collections.FieldReference(None, field_type=float),
        }
    )
    assert NeuronSpec.from_config(config) == NeuronSpec(v_th=0.4)
    config.surrogate_param = 2.0
    assert NeuronSpec.from_config(config) == NeuronSpec(v_th=0.4, surrogate_param=2.0)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"neuron": "tanh"}, r"^config\.model\.neuron = 'tanh': must be one of"),
        ({"tau": 2.0}, r"^config\.model\.tau = 2\.0: must be in \(0, 1\]"),
        ({"surrogate": "erf"}, r"^config\.model\.surrogate = 'erf': must be one of"),
    ],
)
def test_neuron_spec_from_config_errors_name_the_config(model, match):
    with pytest.raises(ValueError, match=match):
        NeuronSpec.from_config({"name": "digits_cnn", **model})


# ----------------------------------------------------------------------------- norm and neuron

SHAPE = (T, B, 2, 2, 3)  # [T, B, H, W, C]


def norm_neuron_inputs(n, spikes, seed=20):
    """``n`` currents of different scales and offsets, and identity spikes (or ``None``)."""
    rng = np.random.default_rng(seed)
    zs = [
        jnp.asarray(rng.normal(0.5 * i, 1.0 + i, SHAPE) + np.linspace(-1, 1, 3), jnp.float32)
        for i in range(n)
    ]
    s = jnp.asarray(rng.uniform(size=SHAPE) < 0.3, jnp.float32) if spikes else None
    return zs, s


def two_ways(n, spec=NeuronSpec()):
    names = ("norm", "shortcut_norm")[:n]
    alphas = (1.0,) if n == 1 else (2**-0.5,) * n
    plain = snn.NormNeuron(spec, "tdbn", alphas, names)
    return plain, plain.clone(compact=True)


@pytest.mark.parametrize("spikes", [False, True], ids=["no_spikes", "spikes"])
@pytest.mark.parametrize("n", [1, 2])
def test_norm_neuron_compact_equals_plain(n, spikes):
    """The compact kernel gives the plain unit's spikes, gradients (inputs and parameters),
    running statistics and firing rates, in training and in evaluation."""
    plain, compact = two_ways(n)
    zs, s = norm_neuron_inputs(n, spikes)
    variables = plain.init(jax.random.key(0), *zs, spikes=s)
    rng = np.random.default_rng(21)
    # non-trivial parameters and running statistics
    variables = jax.tree.map(
        lambda a: a + jnp.asarray(rng.uniform(0.1, 0.5, a.shape), a.dtype), variables
    )
    w = jnp.asarray(rng.normal(size=SHAPE), jnp.float32)

    def run(unit):
        def loss(params, zs, s):
            out, state = unit.apply(
                {**variables, "params": params},
                *zs,
                spikes=s,
                train=True,
                mutable=["batch_stats", "intermediates"],
            )
            return jnp.sum(out * w), (out, state)

        grad = jax.grad(loss, argnums=(0, 1, 2) if spikes else (0, 1), has_aux=True)
        grads, (out, state) = grad(variables["params"], zs, s)
        evaluated = unit.apply(variables, *zs, spikes=s, train=False)
        return out, state, grads, evaluated

    out, state, grads, evaluated = jax.jit(lambda: run(plain))()
    c_out, c_state, c_grads, c_evaluated = jax.jit(lambda: run(compact))()
    chex.assert_shape([out, c_out, evaluated, c_evaluated], SHAPE)
    assert 0 < float(out.mean()) < 1
    np.testing.assert_array_equal(c_out, out)
    np.testing.assert_array_equal(c_evaluated, evaluated)
    assert not np.array_equal(evaluated, out)  # not vacuous: the running statistics differ
    chex.assert_trees_all_close(c_state["batch_stats"], state["batch_stats"], rtol=1e-6, atol=1e-7)
    assert set(state["batch_stats"]) == set(("norm", "shortcut_norm")[:n])
    chex.assert_trees_all_close(c_grads, grads, rtol=1e-5, atol=1e-6)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    assert len(jax.tree.leaves(grads[1])) == n
    # both units' LIF layers sow the rate at lif/firing_rate
    rate = state["intermediates"]["lif"]["firing_rate"][0]
    np.testing.assert_allclose(c_state["intermediates"]["lif"]["firing_rate"][0], rate, rtol=1e-6)
    np.testing.assert_allclose(rate, np.asarray(out).mean(axis=(0, 2, 3, 4)), rtol=1e-6)


def test_norm_neuron_is_norms_sum_spikes_then_lif():
    """The plain unit against its definition: tdBN of each input, summed with the spikes, LIF."""
    zs, s = norm_neuron_inputs(2, True)
    unit = snn.NormNeuron(NeuronSpec(v_th=0.4), "tdbn", (0.7, 0.7), ("norm", "shortcut_norm"))
    out, variables = unit.init_with_output(jax.random.key(0), *zs, spikes=s)
    bn = snn.TdBatchNorm(alpha=0.7, v_th=0.4)
    x = sum(
        bn.apply(
            {c: variables[c][k] for c in ("params", "batch_stats")},
            z,
            use_running_average=False,
            mutable=["batch_stats"],
        )[0]
        for k, z in zip(("norm", "shortcut_norm"), zs, strict=True)
    )
    x = np.asarray(x + s)
    np.testing.assert_array_equal(out, np_lif(x.reshape(T, B, -1), 0.25, 0.4)[0].reshape(SHAPE))
    relu = snn.NormNeuron(NeuronSpec(kind="relu"), "bn")
    y = relu.apply(relu.init(jax.random.key(0), zs[0]), zs[0], mutable=["batch_stats"])[0]
    z = np.asarray(zs[0], np.float64)
    mean, var = z.mean((0, 1, 2, 3)), z.var((0, 1, 2, 3))
    np.testing.assert_allclose(y, np.maximum((z - mean) / np.sqrt(var + 1e-5), 0), atol=1e-5)


def test_norm_neuron_errors():
    zs, _ = norm_neuron_inputs(2, False)
    plain, compact = two_ways(2)
    for unit in (plain, compact):
        with pytest.raises(ValueError, match=r"made for 2 inputs, got 1"):
            unit.init(jax.random.key(0), zs[0])
        with pytest.raises(ValueError, match=r"made for 2 inputs, got 3"):
            unit.init(jax.random.key(0), *zs, zs[0])
    with pytest.raises(ValueError, match=r"one alpha per norm name, got 2 alphas and 1 names"):
        snn.NormNeuron(alphas=(1.0, 1.0), norm_names=("norm",))
    with pytest.raises(ValueError, match=r"unknown norm 'layer'"):
        snn.NormNeuron(norm="layer")
    conflicting = [
        (NeuronSpec(reset="subtract"), "tdbn", "reset='subtract'"),
        (NeuronSpec(channel_threshold=True), "tdbn", "channel_threshold"),
        (NeuronSpec(gradient="aggregate"), "tdbn", "gradient='aggregate'"),
        (NeuronSpec(learn_tau="layer"), "tdbn", "learn_tau='layer'"),
        (NeuronSpec(learn_v_th="channel"), "tdbn", "learn_v_th='channel'"),
        (NeuronSpec(kind="relu"), "bn", "neuron kind 'relu'"),
        (NeuronSpec(), "none", "norm='none'"),
    ]
    for spec, norm, name in conflicting:
        assert snn.compact_conflicts(spec, norm) == [name]
        snn.NormNeuron(spec, norm)  # fine without compact
        with pytest.raises(ValueError, match=r"memory='compact' needs .*got " + re.escape(name)):
            snn.NormNeuron(spec, norm, compact=True)
    assert snn.compact_conflicts(NeuronSpec(), "tdbn") == []
    assert snn.compact_conflicts(NeuronSpec(), "bn") == []
    assert snn.compact_conflicts(NeuronSpec(reset="subtract"), "none") == [
        "norm='none'",
        "reset='subtract'",
    ]


# ----------------------------------------------------------------------------- folding


def test_time_folded_conv_equals_per_step_loop():
    x = jnp.asarray(currents((T, B, 5, 5, 2), seed=8))
    layer = snn.TimeFolded(nn.Conv(4, (3, 3)))
    y, variables = jax.jit(layer.init_with_output)(jax.random.key(1), x)
    chex.assert_shape(y, (T, B, 5, 5, 4))
    (inner,) = variables["params"].values()  # the wrapped conv's own params
    conv = jax.jit(nn.Conv(4, (3, 3)).apply)
    per_step = jnp.stack([conv({"params": inner}, x[t]) for t in range(T)])
    np.testing.assert_allclose(y, per_step, rtol=1e-5, atol=1e-5)


def test_time_folded_dense_equals_numpy():
    x = currents((T, B, N), seed=9)
    layer = snn.TimeFolded(nn.Dense(2))
    y, variables = layer.init_with_output(jax.random.key(2), jnp.asarray(x))
    (inner,) = variables["params"].values()
    ref = x @ np.asarray(inner["kernel"]) + np.asarray(inner["bias"])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_fold_unfold_round_trip():
    x = currents((T, B, 2, 3), seed=10)
    folded, t = snn.fold_time(jnp.asarray(x))
    assert t == T
    chex.assert_shape(folded, (T * B, 2, 3))
    folded_np = np.asarray(folded)
    for ti in range(T):
        for bi in range(B):  # time-major: row t * B + b holds x[t, b]
            np.testing.assert_array_equal(folded_np[ti * B + bi], x[ti, bi])
    np.testing.assert_array_equal(snn.unfold_time(folded, T), x)


@pytest.mark.parametrize("shards", [2, 3, 6])
def test_fold_per_shard_keeps_each_shards_examples_together(shards):
    b = 6
    x = currents((T, b, 2), seed=12)
    folded, t = snn.fold_time(jnp.asarray(x), shards)
    folded_np, per = np.asarray(folded), b // shards
    for d in range(shards):  # rows [d*T*per, (d+1)*T*per): shard d's examples, time-major
        for ti in range(T):
            for j in range(per):
                np.testing.assert_array_equal(folded_np[(d * T + ti) * per + j], x[ti, d * per + j])
    np.testing.assert_array_equal(snn.unfold_time(folded, t, shards), x)


def test_fold_ignores_shards_that_do_not_divide_the_batch():
    x = jnp.arange(2 * 4).reshape(2, 4)
    np.testing.assert_array_equal(snn.fold_time(x, 3)[0], x.reshape(-1))  # 3 does not divide 4
    np.testing.assert_array_equal(snn.unfold_time(x.reshape(-1), 2, 3), x)
    np.testing.assert_array_equal(snn.fold_time(x, 1)[0], x.reshape(-1))
    for bad in (0, -2):
        with pytest.raises(ValueError, match=f"shards must be >= 1, got {bad}"):
            snn.fold_time(x, bad)
        with pytest.raises(ValueError, match=f"shards must be >= 1, got {bad}"):
            snn.unfold_time(x.reshape(-1), 2, bad)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 simulated CPU devices")
def test_fold_takes_shards_explicitly_not_from_the_current_mesh():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]), ("data",))
    x = jnp.arange(2 * 4).reshape(2, 4)
    with jax.set_mesh(mesh):
        np.testing.assert_array_equal(snn.fold_time(x)[0], x.reshape(-1))  # the plain order
        np.testing.assert_array_equal(snn.fold_time(x, 4)[0], [0, 4, 1, 5, 2, 6, 3, 7])
    np.testing.assert_array_equal(snn.fold_time(x, 4)[0], [0, 4, 1, 5, 2, 6, 3, 7])
    assert not hasattr(snn.folding, "batch_shards")


def test_time_folded_with_shards_gives_the_same_output():
    x = jnp.asarray(currents((T, 4, 3, 3, 2), seed=14))
    layer = snn.TimeFolded(nn.Conv(3, (3, 3)))
    y, variables = jax.jit(layer.init_with_output)(jax.random.key(5), x)
    sharded = snn.TimeFolded(nn.Conv(3, (3, 3)), shards=2)
    np.testing.assert_allclose(jax.jit(sharded.apply)(variables, x), y, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- coding


def test_direct_encode_repeats():
    x = jnp.asarray(currents((B, 2, 2, 3), seed=11))
    s = snn.direct_encode(x, T)
    chex.assert_shape(s, (T, B, 2, 2, 3))
    s, x = np.asarray(s), np.asarray(x)
    for t in range(T):
        np.testing.assert_array_equal(s[t], x)


def test_rate_encode_is_bernoulli():
    p = jnp.asarray(np.linspace(0.0, 1.0, 6, dtype=np.float32).reshape(2, 3))  # [B=2, 3]
    steps = 4000
    s = snn.rate_encode(jax.random.key(0), p, steps)
    chex.assert_shape(s, (steps, 2, 3))
    assert s.dtype == p.dtype
    s = np.asarray(s)
    assert set(np.unique(s)) <= {0.0, 1.0}
    # mean over time -> p; 5 standard errors of a Bernoulli mean at most 0.04
    np.testing.assert_allclose(s.mean(0), p, atol=0.04)
    assert float(s[:, 0, 0].max()) == 0.0
    assert float(s[:, 1, 2].min()) == 1.0
    # deterministic for a key, different across keys and across time steps
    np.testing.assert_array_equal(snn.rate_encode(jax.random.key(0), p, steps), s)
    assert not np.array_equal(snn.rate_encode(jax.random.key(1), p, steps), s)
    assert not np.array_equal(s[0], s[1]) or not np.array_equal(s[1], s[2])


@pytest.mark.parametrize("value", [255.0, -0.1])
def test_rate_encode_rejects_intensities_outside_0_1(value):
    x = jnp.full((B, N), 0.5).at[0, 0].set(value)
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\]"):
        snn.rate_encode(jax.random.key(0), x, T)
    # Under jit the values are not known: no check, the same code path otherwise.
    encode = jax.jit(snn.rate_encode, static_argnums=2)
    assert encode(jax.random.key(0), jnp.full((B, N), 0.5), T).shape == (T, B, N)


def test_rate_encode_keeps_bfloat16():
    p = jnp.full((B, N), 0.5, jnp.bfloat16)
    s = snn.rate_encode(jax.random.key(3), p, T)
    assert s.dtype == jnp.bfloat16
    chex.assert_shape(s, (T, B, N))


def _kernel_and_bias(params, features, in_features):
    flat = traverse_util.flatten_dict(params["params"])
    kernels = [v for k, v in flat.items() if k[-1] == "kernel"]
    biases = [v for k, v in flat.items() if k[-1] == "bias"]
    assert len(kernels) == 1
    assert kernels[0].shape == (in_features, features)
    return np.asarray(kernels[0]), (np.asarray(biases[0]) if biases else None)


@pytest.mark.parametrize("use_bias", [True, False])
def test_mean_decoder_equals_numpy(use_bias):
    f_in, features = 6, 3
    o = (np.random.default_rng(12).uniform(size=(T, B, f_in)) < 0.4).astype(np.float32)
    dec = snn.MeanDecoder(features, use_bias=use_bias)
    q, variables = dec.init_with_output(jax.random.key(4), jnp.asarray(o))
    chex.assert_shape(q, (B, features))
    w, b = _kernel_and_bias(variables, features, f_in)
    if use_bias:
        assert b is not None
        assert b.shape == (features,)
        # a nonzero bias so that the test sees where it is added
        b = np.random.default_rng(13).normal(size=features).astype(np.float32)
        flat = traverse_util.flatten_dict(variables["params"])
        flat = {k: (jnp.asarray(b) if k[-1] == "bias" else v) for k, v in flat.items()}
        variables = {"params": traverse_util.unflatten_dict(flat)}
        q = dec.apply(variables, jnp.asarray(o))
    else:
        assert b is None
        b = 0.0
    ref = np.mean([o[t] @ w + b for t in range(T)], axis=0)
    np.testing.assert_allclose(q, ref, rtol=1e-5, atol=1e-6)
