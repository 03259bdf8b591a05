"""Flax modules: LIF/IF layers, time folding, encoders and the mean decoder."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from snn_jax import lif_scan, surrogate
from snn_jax import nn as snn

T, B, N = 5, 3, 4  # T != B


def np_lif(x, tau, v_th):
    x = np.asarray(x, np.float32)
    tau, v_th = np.float32(tau), np.float32(v_th)
    u = np.zeros(x.shape[1:], np.float32)
    o = np.zeros(x.shape[1:], np.float32)
    out = []
    for t in range(x.shape[0]):
        u = tau * u * (np.float32(1) - o) + x[t]
        o = ((u - v_th) >= 0).astype(np.float32)
        out.append(o)
    return np.stack(out)


def currents(shape=(T, B, N), seed=0, mean=0.4, std=0.5):
    return np.random.default_rng(seed).normal(mean, std, shape).astype(np.float32)


# ----------------------------------------------------------------------------- neurons


@pytest.mark.parametrize("name", list(surrogate.NAMES))
def test_lif_module_equals_lif_scan(name):
    x = jnp.asarray(currents(seed=1))
    spike = surrogate.get(name)
    layer = snn.LIF(tau=0.3, v_th=0.4, surrogate=spike, detach_reset=True)
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
    np.testing.assert_array_equal(y, np_lif(x, 0.3, 0.4))
    np.testing.assert_allclose(g_mod, g_fun, rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(g_mod)).max() > 0


def test_lif_module_defaults_and_conv_shape():
    x = jnp.asarray(currents((T, B, 2, 2, 3), seed=3))
    y = snn.LIF().apply({}, x)
    chex.assert_shape(y, (T, B, 2, 2, 3))
    np.testing.assert_array_equal(y, np_lif(x, 0.25, 0.5))
    assert snn.LIF().init(jax.random.key(0), x).get("params", {}) == {}


def test_if_is_lif_with_tau_one():
    assert snn.IF().tau == 1.0
    x = jnp.asarray(currents(seed=4, mean=0.15, std=0.2))
    y = snn.IF(v_th=0.5).apply({}, x)
    ref = np_lif(x, 1.0, 0.5)
    np.testing.assert_array_equal(y, ref)
    assert not np.array_equal(ref, np_lif(x, 0.25, 0.5))  # the leak matters for this input


def test_learn_tau_parameter_and_gradient():
    tau0 = 0.3
    x = jnp.asarray(currents(seed=5, mean=0.5, std=0.5))
    w = jnp.asarray(currents(seed=6, mean=0.0, std=1.0))
    layer = snn.LIF(tau=tau0, v_th=0.4, learn_tau=True)
    variables = layer.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"tau_logit"}
    logit = variables["params"]["tau_logit"]
    assert jnp.shape(logit) == ()  # one leak per layer
    np.testing.assert_allclose(jax.nn.sigmoid(logit), tau0, rtol=1e-6)
    np.testing.assert_allclose(logit, np.log(tau0 / (1 - tau0)), rtol=1e-6)

    y = layer.apply(variables, x)
    np.testing.assert_array_equal(y, np_lif(x, tau0, 0.4))
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
    with pytest.raises(ValueError, match="tau" if "tau" in kwargs else "v_th"):
        snn.LIF(**kwargs).apply({}, jnp.ones((T, B)))


def test_lif_rejects_input_without_batch_axis():
    with pytest.raises(ValueError, match=r"\[T, B"):
        snn.LIF().apply({}, jnp.ones((T,)))


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


def test_fold_follows_the_mesh_and_ignores_shards_that_do_not_divide_the_batch():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    x = jnp.arange(2 * 4).reshape(2, 4)
    with jax.set_mesh(mesh):
        assert snn.folding.batch_shards() == 1
    np.testing.assert_array_equal(snn.fold_time(x, 3)[0], x.reshape(-1))  # 3 does not divide 4
    np.testing.assert_array_equal(snn.fold_time(x, 1)[0], x.reshape(-1))


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 simulated CPU devices")
def test_fold_reads_the_data_axis_of_the_current_mesh():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]), ("data",))
    x = jnp.arange(2 * 4).reshape(2, 4)
    with jax.set_mesh(mesh):
        assert snn.folding.batch_shards() == 4
        np.testing.assert_array_equal(snn.fold_time(x)[0], [0, 4, 1, 5, 2, 6, 3, 7])
    assert snn.folding.batch_shards() == 1


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
