"""Temporal-wise attention (METHOD.md section 11) against a NumPy computation of its equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax.functional import AttentionParams, temporal_attention, temporal_attention_scores
from snn_jax.nn import TemporalAttention

SHAPES = [(5, 3, 4), (6, 2, 3, 3, 2), (4, 7, 10), (8, 3, 2, 5)]  # T != B everywhere


def numpy_attention(x, w1, b1, w2, b2, threshold=None):
    """The three equations with plain NumPy loops over batch and time (float64)."""
    t_steps, batch = x.shape[:2]
    s = np.zeros((batch, t_steps))
    for b in range(batch):
        for t in range(t_steps):
            s[b, t] = x[t, b].mean()
    d = 1.0 / (1.0 + np.exp(-(np.maximum(s @ w1 + b1, 0.0) @ w2 + b2)))
    y = np.empty_like(x)
    for b in range(batch):
        for t in range(t_steps):
            keep = threshold is None or d[b, t] >= threshold
            y[t, b] = d[b, t] * x[t, b] if keep else 0.0
    return y, d


def numpy_backward(x, w1, b1, w2, b2, g):
    """Hand-derived gradients of ``sum(g * y)`` with respect to x and the four parameters."""
    t_steps, batch = x.shape[:2]
    n = x[0, 0].size
    s = x.reshape(t_steps, batch, -1).mean(-1).T
    h = s @ w1 + b1
    a = np.maximum(h, 0.0)
    d = 1.0 / (1.0 + np.exp(-(a @ w2 + b2)))
    grad_d = (g * x).reshape(t_steps, batch, -1).sum(-1).T  # dL/dd [B, T]
    dz = grad_d * d * (1.0 - d)
    dw2, db2 = a.T @ dz, dz.sum(0)
    dh = (dz @ w2.T) * (h > 0)
    dw1, db1 = s.T @ dh, dh.sum(0)
    ds = dh @ w1.T  # [B, T]
    scale = d.T.reshape(t_steps, batch, *([1] * (x.ndim - 2)))
    dx = g * scale + (ds.T / n).reshape(scale.shape)
    return dx, dw1, db1, dw2, db2


def random_case(shape, reduction, seed):
    rng = np.random.default_rng(seed)
    t = shape[0]
    hidden = t // reduction
    x = rng.normal(0.3, 1.0, shape)
    params = [
        rng.normal(0, 1, (t, hidden)),
        rng.normal(0, 0.5, hidden),
        rng.normal(0, 1, (hidden, t)),
        rng.normal(0, 0.5, t),
    ]
    return x, params


@pytest.mark.parametrize(("shape", "reduction"), zip(SHAPES, [1, 2, 4, 3], strict=True))
def test_values_and_gradients_match_numpy(shape, reduction):
    x, params = random_case(shape, reduction, seed=len(shape) * 10 + reduction)
    y_ref, d_ref = numpy_attention(x, *params)
    jparams = AttentionParams(*(jnp.asarray(p, jnp.float32) for p in params))
    y, d = temporal_attention(jnp.asarray(x, jnp.float32), jparams)
    np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)

    g = np.random.default_rng(1).normal(size=shape)

    def loss(x, p):
        return jnp.sum(temporal_attention(x, p)[0] * g)

    grads = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x, jnp.float32), jparams)
    expected = numpy_backward(x, *params, g)
    for got, want in zip([grads[0], *grads[1]], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gradient_matches_finite_differences():
    x, params = random_case((5, 3, 4), 2, seed=7)
    g = np.random.default_rng(2).normal(size=x.shape)

    def loss_np(x_):
        return float(np.sum(numpy_attention(x_, *params)[0] * g))

    with jax.enable_x64(True):
        jparams = AttentionParams(*(jnp.asarray(p, jnp.float64) for p in params))
        grad = jax.grad(lambda x_: jnp.sum(temporal_attention(x_, jparams)[0] * g))(
            jnp.asarray(x, jnp.float64)
        )
    eps = 1e-6
    for idx in [(0, 0, 0), (2, 1, 3), (4, 2, 1)]:
        step = np.zeros_like(x)
        step[idx] = eps
        fd = (loss_np(x + step) - loss_np(x - step)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=1e-5, atol=1e-7)


def test_pruning_zeroes_frames_below_threshold():
    x, params = random_case((6, 4, 3), 2, seed=3)
    y_ref, d_ref = numpy_attention(x, *params, threshold=0.5)
    jparams = AttentionParams(*(jnp.asarray(p, jnp.float32) for p in params))
    y, _ = temporal_attention(jnp.asarray(x, jnp.float32), jparams, discard_threshold=0.5)
    assert 0 < np.mean(d_ref < 0.5) < 1  # the case drops some frames, not all
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)


def test_module_under_jit_shapes_dtypes_bfloat16_and_sown_values():
    layer = TemporalAttention(reduction=2, discard_threshold=0.5)
    x = jax.random.normal(jax.random.key(0), (6, 3, 4, 4, 2))
    variables = layer.init(jax.random.key(1), x)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {"w1": (6, 3), "b1": (3,), "w2": (3, 6), "b2": (6,)}
    # PyTorch nn.Linear's default: uniform in +-1/sqrt(fan_in)
    assert np.abs(variables["params"]["w1"]).max() <= 1 / np.sqrt(6)
    assert np.abs(variables["params"]["w2"]).max() <= 1 / np.sqrt(3)

    @jax.jit(static_argnums=1)
    def run(x, train):
        return layer.apply(variables, x, train=train, mutable=["intermediates"])

    p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
    for dtype in (jnp.float32, jnp.bfloat16):
        xd = x.astype(dtype)
        for train in (True, False):
            y, state = run(xd, train)
            assert y.shape == x.shape
            assert y.dtype == dtype
            sown = state["intermediates"]
            (d,) = sown["attention_scores"]
            assert d.shape == (3, 6)
            assert d.dtype == jnp.float32
            x64 = np.asarray(xd.astype(jnp.float32), np.float64)
            threshold = None if train else 0.5
            y_ref, d_ref = numpy_attention(x64, p["w1"], p["b1"], p["w2"], p["b2"], threshold)
            tol = 1e-5 if dtype == jnp.float32 else 1e-2
            np.testing.assert_allclose(d, d_ref, rtol=tol, atol=tol)
            np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, rtol=tol, atol=tol)
            if train:
                assert "dropped_fraction" not in sown  # pruning only at evaluation
            else:
                (dropped,) = sown["dropped_fraction"]
                np.testing.assert_allclose(dropped, np.mean(d_ref < 0.5, axis=1), atol=1e-6)


@pytest.mark.parametrize("reduction", [0, 7, -1, 2.0])
def test_bad_reduction_is_an_error(reduction):
    with pytest.raises(ValueError, match=r"reduction must be an integer in \[1, T\] = \[1, 6\]"):
        TemporalAttention(reduction=reduction).init(jax.random.key(0), jnp.ones((6, 2, 3)))


def test_another_time_steps_than_at_init_is_an_error():
    layer = TemporalAttention(reduction=2)
    variables = layer.init(jax.random.key(0), jnp.ones((6, 2, 3)))
    with pytest.raises(ValueError, match="initialised for T = 6 time steps, got input with T = 4"):
        layer.apply(variables, jnp.ones((4, 2, 3)))
    params = AttentionParams(*(variables["params"][k] for k in ("w1", "b1", "w2", "b2")))
    with pytest.raises(ValueError, match="made for T = 6"):
        temporal_attention_scores(jnp.ones((4, 2, 3)), params)


# --- the model zoo --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("digits_cnn", {"hidden_features": 8}),
        ("plain", {"depth": 3, "num_stages": 1}),
        ("resnet19", {"stage_sizes": (1, 1, 1)}),
    ],
)
def test_every_unit_of_the_zoo_gets_attention(name, kwargs):
    from snn_jax import models

    model = models.get_model(
        name, width=4, time_steps=6, attention="temporal", attention_reduction=3, **kwargs
    )
    x = jnp.zeros((2, 8, 8, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    paths = ["/".join(k.key for k in path) for path, _ in flat]
    norms = {p.rsplit("/", 2)[0] for p in paths if p.endswith("/scale") and "norm" in p}
    units = {p.rsplit("/attention/", 1)[0] for p in paths if "/attention/" in p}
    assert len(units) >= 3
    assert units == norms  # one attention in each unit that holds norms
    w1 = [leaf for path, leaf in flat if path[-1].key == "w1"]
    assert {w.shape for w in w1} == {(6, 2)}


def test_unit_attention_sits_between_norm_and_neuron():
    """Scores forced to 1 give the plain unit; scores below the threshold silence it."""
    from snn_jax.nn import NeuronSpec, NormNeuron

    z = 3.0 * jax.random.normal(jax.random.key(0), (5, 4, 6))
    plain = NormNeuron(NeuronSpec())
    variables = {"params": {"norm": {"scale": jnp.ones(6), "bias": jnp.zeros(6)}}}
    variables["batch_stats"] = {"norm": {"mean": jnp.zeros(6), "var": jnp.ones(6)}}
    expected = jax.jit(plain.apply, static_argnames="train")(variables, z, train=False)
    assert 0 < float(expected.mean()) < 1
    unit = NormNeuron(
        NeuronSpec(), attention="temporal", attention_reduction=5, discard_threshold=0.5
    )
    apply = jax.jit(unit.apply, static_argnames="train")
    for bias, want in [(50.0, expected), (-50.0, jnp.zeros_like(expected))]:
        params = {"w1": jnp.zeros((5, 1)), "b1": jnp.zeros(1), "w2": jnp.zeros((1, 5))}
        params["b2"] = jnp.full(5, bias)
        both = {**variables, "params": {**variables["params"], "attention": params}}
        np.testing.assert_array_equal(apply(both, z, train=False), want)


def test_compact_memory_with_attention_is_an_error():
    from snn_jax import models

    with pytest.raises(ValueError, match="memory='compact' does not support attention"):
        models.get_model("digits_cnn", memory="compact", attention="temporal")
    with pytest.raises(ValueError, match="unknown attention 'spatial'"):
        models.get_model("digits_cnn", attention="spatial")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.attention", "channel", "must be one of ('none', 'temporal')"),
        ("model.attention_reduction", 0, "must be an integer in [1, T] = [1, 8]"),
        ("model.attention_reduction", 9, "must be an integer in [1, T] = [1, 8]"),
        ("model.discard_threshold", 1.5, "must be None (no pruning) or an attention score"),
        ("model.memory", "compact", "does not support attention"),
        ("model.attention_squeeze", "max", "must be one of ('current', 'input')"),
    ],
)
def test_config_check_names_bad_attention_values(key, value, message):
    import re

    import ml_collections

    from experiments.configs import event_digits
    from snn_jax.training.config_check import check_config
    from tests.test_config_check import _with

    config = event_digits.get_config()
    config.model.attention = "temporal"
    config.model.attention_reduction = 2
    config.model.discard_threshold = ml_collections.FieldReference(None, field_type=float)
    check_config(config)
    with pytest.raises(ValueError, match=re.escape(f"config.{key} = {value!r}: {message}")):
        check_config(_with(config, key, value))


def test_dropped_frames_save_synaptic_operations():
    """All frames dropped: the spike-driven layers after the first do no SOPs; MACs stay."""
    from snn_jax import analysis, models
    from snn_jax.training.steps import firing_rates

    kw = dict(width=4, hidden_features=8, time_steps=4, attention="temporal", attention_reduction=2)
    x = jax.random.uniform(jax.random.key(0), (4, 3, 8, 8, 2)) * 3
    model = models.get_model("digits_cnn", **kw)
    variables = model.init(jax.random.key(1), x)
    _, sown = model.apply(variables, x, train=False, mutable=["intermediates"])
    assert sum(firing_rates(sown["intermediates"]).values()) > 0  # without pruning: spikes
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.full_like(v, -50.0) if p[-1].key == "b2" else v, variables["params"]
    )
    low = {**variables, "params": params}  # every score ~ 0, below the threshold
    pruned_model = models.get_model("digits_cnn", discard_threshold=0.5, **kw)
    pruned = analysis.count_operations(pruned_model, low, x)
    first = pruned["conv1/conv"]
    assert first["kind"] == "mac"
    assert first["ops"] > 0  # MACs on the event frames, whatever their values
    later = [name for name in pruned if name != "conv1/conv"]
    assert later  # conv2, fc and the decoder: spike-driven
    for name in later:
        assert pruned[name]["kind"] == "ac"
        assert pruned[name]["ops"] == 0.0


def test_squeeze_from_another_array_matches_numpy():
    """``squeeze_from``: the scores come from that array's frame means, the scaling hits x."""
    x, params = random_case((6, 3, 5), 2, seed=11)
    other = np.random.default_rng(4).uniform(0, 2, (6, 3, 4, 4, 2))
    _, d_ref = numpy_attention(other, *params)
    jparams = AttentionParams(*(jnp.asarray(p, jnp.float32) for p in params))
    y, d = temporal_attention(
        jnp.asarray(x, jnp.float32), jparams, squeeze_from=jnp.asarray(other, jnp.float32)
    )
    np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, x * d_ref.T[:, :, None], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"squeeze_from must share x's \[T, B\]"):
        temporal_attention(jnp.asarray(x), jparams, squeeze_from=jnp.ones((6, 2, 5)))


def test_input_squeeze_needs_the_units_inputs():
    from snn_jax.nn import NeuronSpec, NormNeuron

    unit = NormNeuron(NeuronSpec(), attention="temporal", attention_squeeze="input")
    z = jnp.ones((4, 2, 3))
    with pytest.raises(ValueError, match="attention_squeeze='input' needs the unit's inputs"):
        unit.init(jax.random.key(0), z)
    variables = unit.init(jax.random.key(0), z, inputs=jnp.ones((4, 2, 7)))
    assert variables["params"]["attention"]["w1"].shape == (4, 4)
    with pytest.raises(ValueError, match="unknown attention squeeze 'max'"):
        NormNeuron(NeuronSpec(), attention_squeeze="max")
