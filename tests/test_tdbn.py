"""Threshold-dependent batch normalization (METHOD.md section 4) against NumPy.

Statistics per channel over (T, B, H, W), biased variance; output scaled to
``alpha * V_th``; running estimates ``ra = m * ra + (1 - m) * batch``; the global
batch when the batch axis is sharded over 4 (simulated CPU) devices.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from snn_jax import nn as snn
from snn_jax import tdbn_normalize, tdbn_statistics

EPS = 1e-5
CONV = (4, 3, 2, 2, 3)  # [T, B, H, W, C], T != B
DENSE = (5, 3, 4)  # [T, B, C]


def data(shape, seed=0):
    """Channels with different means and scales, so per-channel statistics matter."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    loc = np.linspace(-1.0, 2.0, c)
    scale = np.linspace(0.5, 3.0, c)
    return (rng.normal(size=shape) * scale + loc).astype(np.float32)


def np_stats(x):
    x = np.asarray(x, np.float64)
    axes = tuple(range(x.ndim - 1))
    return x.mean(axes), x.var(axes)  # biased variance (ddof = 0)


def np_tdbn(x, mean, var, scale=1.0, bias=0.0, alpha=1.0, v_th=0.5, eps=EPS):
    x = np.asarray(x, np.float64)
    return scale * alpha * v_th * (x - mean) / np.sqrt(var + eps) + bias


ALPHAS = [1.0, 1 / math.sqrt(2)]
V_THS = [0.5, 0.2, 1.0]


# ----------------------------------------------------------------------------- functional


@pytest.mark.parametrize("shape", [CONV, DENSE])
def test_statistics_equal_numpy(shape):
    x = data(shape, seed=1)
    mean, var = tdbn_statistics(jnp.asarray(x))
    chex.assert_shape([mean, var], (shape[-1],))
    m_ref, v_ref = np_stats(x)
    np.testing.assert_allclose(mean, m_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, v_ref, rtol=1e-5, atol=1e-6)


def test_statistics_are_joint_over_time():
    """Channel statistics pool time too: a per-time-step BN would give different numbers."""
    x = data(CONV, seed=2)
    x[0] += 5.0  # time step 0 shifted
    mean, var = tdbn_statistics(jnp.asarray(x))
    np.testing.assert_allclose(mean, np_stats(x)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, np_stats(x)[1], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(var) > 4.0)  # the shift between time steps is in the variance


@pytest.mark.parametrize(("alpha", "v_th"), [(ALPHAS[0], V_THS[0]), (ALPHAS[1], V_THS[1])])
def test_normalize_equals_numpy(alpha, v_th):
    x = data(CONV, seed=3)
    rng = np.random.default_rng(4)
    mean = rng.normal(size=3).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    y = tdbn_normalize(
        jnp.asarray(x),
        jnp.asarray(mean),
        jnp.asarray(var),
        jnp.asarray(scale),
        jnp.asarray(bias),
        alpha=alpha,
        v_th=v_th,
        epsilon=EPS,
    )
    assert y.dtype == jnp.float32
    ref = np_tdbn(x, mean, var, scale, bias, alpha, v_th)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # scale and bias default to 1 and 0
    y0 = tdbn_normalize(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(var), alpha=alpha, v_th=v_th)
    np.testing.assert_allclose(
        y0, np_tdbn(x, mean, var, alpha=alpha, v_th=v_th), rtol=1e-5, atol=1e-5
    )


# ----------------------------------------------------------------------------- module


def init_train(module, x, seed=0):
    return module.init_with_output(jax.random.key(seed), jnp.asarray(x), use_running_average=False)


# every alpha with every v_th on [T, B, H, W, C]; the dense layout [T, B, C] with two of them
INIT_CASES = [(a, v, CONV) for a in ALPHAS for v in V_THS] + [
    (ALPHAS[0], V_THS[0], DENSE),
    (ALPHAS[1], V_THS[2], DENSE),
]


@pytest.mark.parametrize(("alpha", "v_th", "shape"), INIT_CASES)
def test_output_is_n0_alpha_vth_at_init(alpha, v_th, shape):
    x = data(shape, seed=5)
    y, _variables = init_train(snn.TdBatchNorm(alpha=alpha, v_th=v_th), x)
    chex.assert_shape(y, shape)
    axes = tuple(range(len(shape) - 1))
    y = np.asarray(y, np.float64)
    np.testing.assert_allclose(y.mean(axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axes), alpha * v_th, rtol=1e-4)
    m, v = np_stats(x)
    np.testing.assert_allclose(y, np_tdbn(x, m, v, alpha=alpha, v_th=v_th), rtol=1e-4, atol=1e-5)


def test_params_and_batch_stats_init():
    x = data(CONV, seed=6)
    _, variables = init_train(snn.TdBatchNorm(), x)
    assert set(variables) == {"params", "batch_stats"}
    chex.assert_trees_all_equal(variables["params"], {"scale": jnp.ones(3), "bias": jnp.zeros(3)})
    chex.assert_trees_all_equal(
        variables["batch_stats"], {"mean": jnp.zeros(3), "var": jnp.ones(3)}
    )
    assert variables["params"]["scale"].dtype == jnp.float32
    _, no_affine = init_train(snn.TdBatchNorm(use_scale=False, use_bias=False), x)
    assert not no_affine.get("params")


@pytest.mark.parametrize("momentum", [0.9, 0.6])
def test_running_statistics_update(momentum):
    x1, x2 = data(CONV, seed=7), data(CONV, seed=8) * 2 + 1
    bn = snn.TdBatchNorm(momentum=momentum)
    _, variables = init_train(bn, x1)

    y1, upd1 = bn.apply(
        variables, jnp.asarray(x1), use_running_average=False, mutable=["batch_stats"]
    )
    m1, v1 = np_stats(x1)
    ra_m = momentum * 0.0 + (1 - momentum) * m1
    ra_v = momentum * 1.0 + (1 - momentum) * v1
    np.testing.assert_allclose(upd1["batch_stats"]["mean"], ra_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upd1["batch_stats"]["var"], ra_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y1, np_tdbn(x1, m1, v1), rtol=1e-4, atol=1e-5)  # batch stats used

    variables = {**variables, **upd1}
    _, upd2 = bn.apply(
        variables, jnp.asarray(x2), use_running_average=False, mutable=["batch_stats"]
    )
    m2, v2 = np_stats(x2)
    np.testing.assert_allclose(
        upd2["batch_stats"]["mean"], momentum * ra_m + (1 - momentum) * m2, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        upd2["batch_stats"]["var"], momentum * ra_v + (1 - momentum) * v2, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("at_construction", [False, True])
def test_eval_mode_uses_running_statistics(at_construction):
    x = data(CONV, seed=9)
    rng = np.random.default_rng(10)
    ra_m = rng.normal(size=3).astype(np.float32)
    ra_v = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    variables = {
        "params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)},
        "batch_stats": {"mean": jnp.asarray(ra_m), "var": jnp.asarray(ra_v)},
    }
    if at_construction:
        bn = snn.TdBatchNorm(alpha=0.5, v_th=0.4, use_running_average=True)
        y = bn.apply(variables, jnp.asarray(x))  # no mutable collection needed in eval
    else:
        bn = snn.TdBatchNorm(alpha=0.5, v_th=0.4)
        y = bn.apply(variables, jnp.asarray(x), use_running_average=True)
    ref = np_tdbn(x, ra_m, ra_v, scale, bias, alpha=0.5, v_th=0.4)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # and it is not the batch-statistics result
    m, v = np_stats(x)
    assert np.abs(ref - np_tdbn(x, m, v, scale, bias, alpha=0.5, v_th=0.4)).max() > 0.1


def test_eval_mode_leaves_statistics_alone():
    x = data(CONV, seed=11)
    bn = snn.TdBatchNorm()
    _, variables = init_train(bn, x)
    _, upd = bn.apply(variables, jnp.asarray(x), use_running_average=True, mutable=["batch_stats"])
    chex.assert_trees_all_equal(upd["batch_stats"], variables["batch_stats"])


def test_gradient_flows_to_input_scale_and_bias():
    x = data(DENSE, seed=12)
    bn = snn.TdBatchNorm()
    _, variables = init_train(bn, x)
    w = np.random.default_rng(13).normal(size=DENSE).astype(np.float32)

    def loss(params, x):
        y, _ = bn.apply(
            {**variables, "params": params}, x, use_running_average=False, mutable=["batch_stats"]
        )
        return jnp.sum(y * w)

    g_params, g_x = jax.jit(jax.grad(loss, (0, 1)))(variables["params"], jnp.asarray(x))
    m, v = np_stats(x)
    xhat = np_tdbn(x, m, v)  # alpha * v_th * normalized
    np.testing.assert_allclose(g_params["bias"], w.sum((0, 1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_params["scale"], (w * xhat).sum((0, 1)), rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(g_x))
    assert np.abs(np.asarray(g_x)).max() > 0


def np_affine(mean, var, scale, bias, alpha, v_th, eps=EPS):
    """``(factor, shift)`` with ``np_tdbn(x, ...) == x * factor + shift``."""
    factor = scale * alpha * v_th / np.sqrt(np.asarray(var, np.float64) + eps)
    return factor, bias - mean * factor


@pytest.mark.parametrize("use_running_average", [False, True])
def test_affine_is_the_call_as_factor_and_shift(use_running_average):
    """``affine`` gives the per-channel map of a call and updates the running statistics as
    the call does (the compact norm-and-neuron unit applies the map itself)."""
    x = data(CONV, seed=18)
    rng = np.random.default_rng(19)
    variables = {
        "params": {
            "scale": jnp.asarray(rng.uniform(0.5, 1.5, 3), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=3), jnp.float32),
        },
        "batch_stats": {
            "mean": jnp.asarray(rng.normal(size=3), jnp.float32),
            "var": jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float32),
        },
    }
    bn = snn.TdBatchNorm(alpha=1 / math.sqrt(2), v_th=0.4, momentum=0.8)
    kw = dict(use_running_average=use_running_average, mutable=["batch_stats"])
    y, upd = bn.apply(variables, jnp.asarray(x), **kw)
    (factor, shift), upd_affine = bn.apply(
        variables, jnp.asarray(x), method=snn.TdBatchNorm.affine, **kw
    )
    chex.assert_shape([factor, shift], (3,))
    assert factor.dtype == shift.dtype == jnp.float32
    np.testing.assert_allclose(jnp.asarray(x) * factor + shift, y, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_equal(upd_affine, upd)
    # against NumPy: the batch's statistics in training, the running ones in evaluation
    p, st = variables["params"], variables["batch_stats"]
    m, v = (st["mean"], st["var"]) if use_running_average else np_stats(x)
    ref = np_affine(m, v, p["scale"], p["bias"], 1 / math.sqrt(2), 0.4)
    np.testing.assert_allclose(factor, ref[0], rtol=1e-5)
    np.testing.assert_allclose(shift, ref[1], rtol=1e-5, atol=1e-6)
    if use_running_average:
        chex.assert_trees_all_equal(upd["batch_stats"], st)
    else:
        np.testing.assert_allclose(
            upd["batch_stats"]["mean"], 0.8 * st["mean"] + 0.2 * m, rtol=1e-5
        )


def test_affine_initialises_the_same_variables_and_keeps_float32():
    """``init`` through ``affine`` makes the call's variables; bfloat16 input: a float32 map."""
    x = jnp.asarray(data(DENSE, seed=20), jnp.bfloat16)
    bn = snn.TdBatchNorm()
    (factor, shift), variables = bn.init_with_output(
        jax.random.key(0), x, use_running_average=False, method=snn.TdBatchNorm.affine
    )
    _, ref = init_train(bn, x)
    chex.assert_trees_all_equal(variables, ref)
    assert factor.dtype == shift.dtype == jnp.float32
    y, _ = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(y, np.float32), np.asarray(x, np.float32) * factor + shift, rtol=1e-2, atol=1e-2
    )


@pytest.mark.parametrize("shape", [(4, 3), (5,)])
def test_rejects_fewer_than_three_axes(shape):
    bn = snn.TdBatchNorm()
    with pytest.raises(ValueError, match=r"\[T, B"):
        bn.init(jax.random.key(0), jnp.ones(shape), use_running_average=False)


def test_statistics_reject_a_single_axis():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\., C\]"):
        tdbn_statistics(jnp.ones((5,)))


def test_rejects_changed_channel_count():
    bn = snn.TdBatchNorm()
    _, variables = init_train(bn, data((4, 3, 3), seed=14))
    with pytest.raises(ValueError, match="3"):
        bn.apply(variables, jnp.ones((4, 3, 4)), use_running_average=False, mutable=["batch_stats"])
    with pytest.raises(ValueError, match="channels"):
        bn.apply(variables, jnp.ones((4, 3, 4)), use_running_average=True)


def test_bfloat16_input_keeps_dtype():
    x = jnp.asarray(data(CONV, seed=15), jnp.bfloat16)
    y, variables = init_train(snn.TdBatchNorm(), x)
    assert y.dtype == jnp.bfloat16
    assert variables["batch_stats"]["mean"].dtype == jnp.float32
    m, v = np_stats(np.asarray(x, np.float32))
    np.testing.assert_allclose(
        np.asarray(y, np.float32), np_tdbn(np.asarray(x, np.float32), m, v), rtol=5e-2, atol=3e-2
    )


def test_bfloat16_input_with_float32_output_is_normalized_in_float32():
    """As the models use it (bfloat16 convs, ``dtype=float32``): only the input is rounded.

    Channels with a large mean against their spread: an affine step in
    bfloat16 would round ``x * factor`` and ``shift`` (each about 100 times the
    output's spread) before they cancel.
    """
    rng = np.random.default_rng(16)
    x = jnp.asarray(rng.normal(size=CONV) + np.array([50.0, -80.0, 120.0]), jnp.bfloat16)
    y, _ = init_train(snn.TdBatchNorm(dtype=jnp.float32), x)
    assert y.dtype == jnp.float32
    x32 = np.asarray(x, np.float32)
    np.testing.assert_allclose(y, np_tdbn(x32, *np_stats(x32)), rtol=1e-4, atol=1e-4)
    mean, var = np_stats(x32)
    np.testing.assert_allclose(
        tdbn_normalize(x, jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32)),
        np_tdbn(x32, mean, var),
        rtol=1e-2,  # the output is bfloat16, rounded once at the end
        atol=1e-2,
    )


def test_integer_input_is_a_type_error():
    """An integer output would round the normalized values (most to 0)."""
    x = jnp.arange(24, dtype=jnp.int32).reshape(2, 3, 4)
    with pytest.raises(TypeError, match="floating-point"):
        snn.TdBatchNorm().init(jax.random.key(0), x, use_running_average=False)
    with pytest.raises(TypeError, match="floating-point"):
        tdbn_normalize(x, jnp.zeros(4), jnp.ones(4))


# ----------------------------------------------------------------------------- multi-device

needs_4_devices = pytest.mark.skipif(
    len(jax.devices()) < 4,
    reason="needs 4 devices (tests/conftest.py asks for 4 simulated CPU devices before JAX starts)",
)
SHARDED = (3, 8, 2, 2, 3)  # [T, B, H, W, C], B = 8 divisible by 4 devices


def skewed_batch(seed=16):
    """Each device's quarter of the batch has its own offset: per-shard statistics would differ."""
    x = data(SHARDED, seed=seed)
    x += np.arange(SHARDED[1], dtype=np.float32)[None, :, None, None, None] * 0.7
    return x


def mesh4():
    return Mesh(np.array(jax.devices()[:4]), ("data",))


@needs_4_devices
def test_sharded_batch_gives_global_statistics():
    x = skewed_batch()
    mesh = mesh4()
    x_sharded = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(None, "data")))
    assert len(x_sharded.sharding.device_set) == 4
    assert x_sharded.addressable_shards[0].data.shape == (3, 2, 2, 2, 3)

    bn = snn.TdBatchNorm(alpha=1 / math.sqrt(2), v_th=0.4)
    _, variables = init_train(bn, x)

    @jax.jit
    def train_apply(variables, x):
        return bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])

    y_1, st_1 = train_apply(variables, jnp.asarray(x))
    y_4, st_4 = train_apply(variables, x_sharded)
    chex.assert_trees_all_close((y_4, st_4), (y_1, st_1), rtol=1e-5, atol=1e-5)

    m, v = np_stats(x)
    ref = np_tdbn(x, m, v, alpha=1 / math.sqrt(2), v_th=0.4)
    np.testing.assert_allclose(y_4, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(st_4["batch_stats"]["mean"], 0.1 * m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st_4["batch_stats"]["var"], 0.9 + 0.1 * v, rtol=1e-5, atol=1e-6)
    # not vacuous: normalizing each device's quarter on its own gives something else
    local = np.concatenate(
        [
            np_tdbn(q, *np_stats(q), alpha=1 / math.sqrt(2), v_th=0.4)
            for q in np.split(x, 4, axis=1)
        ],
        axis=1,
    )
    assert np.abs(local - ref).max() > 0.1


@needs_4_devices
def test_axis_name_under_shard_map():
    """Inside shard_map, axis_name averages the moments over devices: global statistics again."""
    x = skewed_batch(seed=17)
    mesh = mesh4()
    x_sharded = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(None, "data")))

    stats = jax.jit(
        jax.shard_map(
            lambda xs: tdbn_statistics(xs, axis_name="data"),
            mesh=mesh,
            in_specs=P(None, "data"),
            out_specs=P(),
        )
    )(x_sharded)
    m, v = np_stats(x)
    np.testing.assert_allclose(stats[0], m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats[1], v, rtol=1e-5, atol=1e-5)

    bn = snn.TdBatchNorm(axis_name="data")
    variables = snn.TdBatchNorm().init(jax.random.key(0), jnp.asarray(x), use_running_average=False)

    def per_device(variables, xs):
        return bn.apply(variables, xs, use_running_average=False, mutable=["batch_stats"])

    y, upd = jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), P(None, "data")),
            out_specs=(P(None, "data"), P()),
        )
    )(variables, x_sharded)
    np.testing.assert_allclose(y, np_tdbn(x, m, v), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * m, rtol=1e-5, atol=1e-6)
