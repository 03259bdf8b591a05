"""The direct-training kit (METHOD.md section 10): learnable leak and threshold, TET, TEBN, BNTT.

Each equation against an independent reference: a NumPy loop, the STBP recursion
by hand (tests/reference.py) and autodiff of the plain ``lax.scan``.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import nn as snn
from snn_jax import surrogate
from snn_jax.nn import NeuronSpec
from tests.reference import inputs, lif_scan_autodiff, np_lif, np_stbp, np_surrogate, reduce_to

T, B, C = 5, 3, 4  # T != B


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize(("learn_tau", "learn_v_th"), [("channel", "channel"), ("layer", "layer")])
def test_plif_forward_and_gradients(reset, learn_tau, learn_v_th):
    """Leak sigmoid(a), threshold exp(b): forward against a NumPy loop, the gradients of
    a and b against the STBP recursion by hand (chain rule) and autodiff of the plain scan."""
    spec = NeuronSpec(
        tau=0.6, v_th=0.4, reset=reset, surrogate="atan", learn_tau=learn_tau, learn_v_th=learn_v_th
    )
    layer = snn.LIF(spec)
    x = jnp.asarray(inputs((T, B, C), seed=41, mean=0.35, std=0.5))
    variables = layer.init(jax.random.key(0), x)
    shape = (C,) if learn_tau == "channel" else ()
    params = variables["params"]
    assert params["tau_logit"].shape == shape
    assert params["v_th_log"].shape == shape
    np.testing.assert_allclose(jax.nn.sigmoid(params["tau_logit"]), 0.6, rtol=1e-6)
    np.testing.assert_allclose(jnp.exp(params["v_th_log"]), 0.4, rtol=1e-6)
    # move them off their initial values, one per channel where there are channels
    a = jnp.linspace(-0.5, 1.0, C)[: C if shape else 1].reshape(shape).astype(jnp.float32)
    b = jnp.linspace(-1.2, -0.7, C)[: C if shape else 1].reshape(shape).astype(jnp.float32)
    params = {"tau_logit": a, "v_th_log": b}
    tau = np.asarray(jax.nn.sigmoid(a))
    v_th = np.asarray(jnp.exp(b))

    o, u = np_lif(x, tau, v_th, reset=reset)
    assert 0.1 < o.mean() < 0.9
    np.testing.assert_array_equal(layer.apply({"params": params}, x), o)

    w = inputs((T, B, C), seed=42, mean=0.0, std=1.0)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) * w)))(params)
    surr = functools.partial(np_surrogate, "atan")
    ref = np_stbp(u, o, w, np.zeros_like(w), tau, v_th, surr, False, reset)
    tau64, v64 = _sigmoid(a), np.exp(np.asarray(b, np.float64))
    want_a = reduce_to(ref["tau"], shape) * tau64 * (1 - tau64)  # dtau/da = tau (1 - tau)
    want_b = reduce_to(ref["v_th"], shape) * v64  # dV/db = V
    np.testing.assert_allclose(grads["tau_logit"], want_a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["v_th_log"], want_b, rtol=1e-4, atol=1e-5)
    assert np.abs(want_a).max() > 1e-2
    assert np.abs(want_b).max() > 1e-2

    def oracle(p):
        out = lif_scan_autodiff(
            x,
            tau=jax.nn.sigmoid(p["tau_logit"]),
            v_th=jnp.exp(p["v_th_log"]),
            surrogate=surrogate.atan(),
            reset=reset,
        )
        return jnp.sum(out * w)

    auto = jax.jit(jax.grad(oracle))(params)
    for name in params:
        np.testing.assert_allclose(grads[name], auto[name], rtol=1e-4, atol=1e-5)


def test_plif_in_a_model_has_its_parameters():
    """A digits CNN with a learned leak per channel and threshold per layer."""
    from snn_jax import models

    spec = NeuronSpec(learn_tau="channel", learn_v_th="layer", tau=0.5)
    model = models.get_model("digits_cnn", num_classes=10, time_steps=2, width=4, neuron=spec)
    x = jnp.asarray(inputs((B, 8, 8, 1), seed=3, mean=0.5, std=0.5))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    lif = variables["params"]["conv1"]["neuron"]["lif"]
    assert lif["tau_logit"].shape == (4,)
    assert lif["v_th_log"].shape == ()


# ---------------------------------------------------------------------------- TET


def _np_tet(o, y, lam, phi):
    """TET's value and gradient by hand, float64: CE per step and example, softmax - onehot."""
    o = np.asarray(o, np.float64)
    t, b, k = o.shape
    z = o - o.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    ce = -np.log(p[:, np.arange(b), y])  # [T, B]
    value = (1 - lam) * ce.mean() + lam * np.mean((o - phi) ** 2)
    onehot = np.eye(k)[y]
    grad = (1 - lam) * (p - onehot) / (t * b) + lam * 2 * (o - phi) / (t * b * k)
    return value, grad


@pytest.mark.parametrize(("lam", "phi"), [(1e-3, 1.0), (0.3, -0.5), (0.0, 1.0)])
def test_tet_loss_value_and_gradient_against_numpy(lam, phi):
    from snn_jax.training import tet_loss

    rng = np.random.default_rng(7)
    o = rng.normal(0.0, 2.0, (T, B, 6)).astype(np.float32)
    y = rng.integers(0, 6, B)
    value, grad = jax.value_and_grad(lambda o: tet_loss(o, jnp.asarray(y), lam=lam, phi=phi))(
        jnp.asarray(o)
    )
    want_value, want_grad = _np_tet(o, y, lam, phi)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match=r"step_logits \[T, B, K\].*got shape \(3, 6\)"):
        tet_loss(jnp.zeros((B, 6)), jnp.asarray(y))
    with pytest.raises(ValueError, match=r"labels \[B\] = \[3\], got shape \(5,\)"):
        tet_loss(jnp.asarray(o), jnp.zeros(T, jnp.int32))


def test_train_step_with_tet_uses_the_per_step_outputs():
    """The step's loss is tet_loss of the decoder's O_t; the prediction is their time mean.
    The digits CNN with BNTT."""
    from snn_jax.training import check_config, losses, sharding, steps, tet_loss
    from tests.test_training import make_state, tiny_config

    config = tiny_config(
        loss="tet",
        tet_lambda=0.2,
        tet_phi=0.5,
        batch_size=8,
        time_steps=2,
        **{"model.width": 4, "model.norm": "bntt"},
    )
    check_config(config)
    mesh = sharding.make_mesh()
    state, pipeline = make_state(config, mesh)
    batch = sharding.put_batch(next(pipeline.train_batches()), mesh)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    collections = ["batch_stats", losses.STEP_OUTPUTS, "intermediates"]
    q, out = jax.jit(functools.partial(state.apply_fn, mutable=collections))(
        variables, batch["image"]
    )
    o = losses.step_logits(out)
    assert o.shape == (config.time_steps, config.batch_size, 10)
    np.testing.assert_allclose(jnp.mean(o, 0), q, rtol=1e-5, atol=1e-5)
    step = jax.jit(functools.partial(steps.train_step, loss="tet", tet_lambda=0.2, tet_phi=0.5))
    _, metrics = step(state, batch)
    want = tet_loss(o, batch["label"], lam=0.2, phi=0.5)
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    ce = jnp.mean(steps.cross_entropy(q, batch["label"]))
    assert abs(float(ce) - float(want)) > 1e-4  # not the cross-entropy of the mean


def test_mean_decoder_step_outputs_against_numpy():
    """O_t = M o_t + b at every step, and the returned Q their mean."""
    o = (inputs((T, B, 7), seed=9) > 0.4).astype(np.float32)
    dec = snn.MeanDecoder(5)
    v = dec.init(jax.random.key(2), jnp.asarray(o))
    q, out = dec.apply(v, jnp.asarray(o), mutable=["step_outputs"])
    m, b = (np.asarray(v["params"]["readout"][k], np.float64) for k in ("kernel", "bias"))
    want = np.stack([o[t] @ m + b for t in range(T)])
    np.testing.assert_allclose(out["step_outputs"]["step_logits"][0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q, want.mean(0), rtol=1e-5, atol=1e-5)


def test_config_loss_keys_are_checked():
    from snn_jax.training import check_config
    from tests.test_training import tiny_config

    bad = tiny_config(loss="mse", tet_lambda=2.0, tet_phi="one")
    with pytest.raises(ValueError, match=r"3 bad config values") as info:
        check_config(bad)
    text = str(info.value)
    assert "config.loss = 'mse': must be one of ('ce', 'tet')" in text
    assert "config.tet_lambda = 2.0: must be in [0, 1]" in text
    assert "config.tet_phi = 'one'" in text


# ---------------------------------------------------------------------------- TEBN, BNTT


def _np_norm(x, kind, params, stats=None, eps=1e-5):
    """TEBN or BNTT in float64 by their equations; training mode when ``stats`` is None."""
    x = np.asarray(x, np.float64)
    t = x.shape[0]
    if kind == "tebn":
        flat = x.reshape(-1, x.shape[-1])
        mean, var = (flat.mean(0), flat.var(0)) if stats is None else stats
        out = [
            params["step_scale"][s]
            * (params["scale"] * (x[s] - mean) / np.sqrt(var + eps) + params["bias"])
            for s in range(t)
        ]
        return np.stack(out), (mean, var)
    means, vars_, out = [], [], []
    for s in range(t):
        flat = x[s].reshape(-1, x.shape[-1])
        mean, var = (flat.mean(0), flat.var(0)) if stats is None else (stats[0][s], stats[1][s])
        out.append(params["scale"][s] * (x[s] - mean) / np.sqrt(var + eps))
        means.append(mean)
        vars_.append(var)
    return np.stack(out), (np.stack(means), np.stack(vars_))


@pytest.mark.parametrize("kind", ["tebn", "bntt"])
def test_step_norms_train_and_eval_against_numpy(kind):
    rng = np.random.default_rng(11)
    # T=5, B=3, H=W=2, C=4; each step with its own offset and spread
    x = rng.normal(size=(T, B, 2, 2, C)) * np.arange(1, T + 1)[:, None, None, None, None] + 2.0
    x = jnp.asarray(x, jnp.float32)
    layer = snn.TEBN() if kind == "tebn" else snn.BNTT()
    variables = layer.init(jax.random.key(0), x)
    shapes = {k: v.shape for k, v in variables["params"].items()}
    if kind == "tebn":
        assert shapes == {"scale": (C,), "bias": (C,), "step_scale": (T,)}
        assert variables["batch_stats"]["mean"].shape == (C,)
    else:
        assert shapes == {"scale": (T, C)}  # no bias
        assert variables["batch_stats"]["mean"].shape == (T, C)  # statistics per step
    params = {k: np.asarray(rng.normal(1.0, 0.3, s), np.float32) for k, s in shapes.items()}
    if kind == "tebn":
        params["bias"] = np.asarray(rng.normal(0.0, 0.3, (C,)), np.float32)
    v = {"params": params, "batch_stats": variables["batch_stats"]}
    y, new = layer.apply(v, x, mutable=["batch_stats"])
    want, (mean, var) = _np_norm(x, kind, params)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    ra = new["batch_stats"]
    np.testing.assert_allclose(ra["mean"], 0.1 * mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ra["var"], 0.9 + 0.1 * var, rtol=1e-5, atol=1e-5)
    # evaluation: the running statistics (per step for BNTT)
    x2 = x * 0.5 - 1.0
    y2 = layer.apply({"params": params, "batch_stats": ra}, x2, use_running_average=True)
    stats = (np.asarray(ra["mean"], np.float64), np.asarray(ra["var"], np.float64))
    np.testing.assert_allclose(y2, _np_norm(x2, kind, params, stats)[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"initialised for .* of shape .*T = 3"):
        layer.apply({"params": params, "batch_stats": ra}, x[:3], use_running_average=True)


# the digits CNN with TEBN: test_train_step_with_tet_uses_the_per_step_outputs
@pytest.mark.parametrize(
    ("norm", "name", "kwargs"),
    [
        ("bntt", "plain", {"depth": 2}),
        ("tebn", "resnet19", {"stage_sizes": (1, 1), "hidden_features": None}),
    ],
)
def test_step_norms_in_the_model_zoo(norm, name, kwargs):
    from snn_jax import models

    model = models.get_model(name, num_classes=10, time_steps=T, width=4, norm=norm, **kwargs)
    x = jnp.asarray(inputs((B, 8, 8, 3), seed=5))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    stats = jax.tree.leaves(variables["batch_stats"])
    assert stats
    # BNTT keeps statistics per step and channel [T, C], TEBN per channel [C] and p_t [T]
    want_ndim = 2 if norm == "bntt" else 1
    assert all(s.ndim == want_ndim and (norm != "bntt" or s.shape[0] == T) for s in stats)
    if norm == "tebn":
        flat = flax.traverse_util.flatten_dict(variables["params"])
        p = [v for k, v in flat.items() if k[-1] == "step_scale"]
        assert p
        assert all(v.shape == (T,) for v in p)
    out = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert out.shape == (B, 10)
    assert np.isfinite(np.asarray(out)).all()
    with pytest.raises(ValueError, match=rf"norm='{norm}' \(a map per time step\)"):
        models.get_model(name, num_classes=10, norm=norm, memory="compact", **kwargs)


# ---------------------------------------------------------------------------- analysis, folding


@pytest.mark.parametrize("norm", ["tebn", "bntt"])
def test_step_norms_fold_per_step(norm):
    """The network with each conv/dense and its TEBN/BNTT folded into one kernel and bias
    per step, and no norms, gives the model's evaluation output; fold_norms refuses them."""
    from snn_jax import analysis, models
    from snn_jax.inspect import capture_calls, is_linear, is_norm

    model = models.get_model(
        "digits_cnn", num_classes=10, time_steps=T, width=4, hidden_features=8, norm=norm
    )
    x = jnp.asarray(inputs((B, 8, 8, 1), seed=12, mean=0.5, std=0.6))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    # trained-looking values: running statistics of a batch, scales away from 1
    update = jax.jit(functools.partial(model.apply, mutable=["batch_stats"]))
    _, stats = update(variables, x * 1.5 + 0.2)
    leaves, tree = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(
        tree,
        [
            p * jax.random.uniform(k, p.shape, p.dtype, 0.5, 1.5)
            for p, k in zip(leaves, keys, strict=True)
        ],
    )
    variables = {"params": params, "batch_stats": stats["batch_stats"]}

    folded = analysis.fold_norms_per_step(model, variables, x)
    assert sorted(folded) == ["conv1/conv", "conv2/conv", "fc/dense"]
    for kernels, biases in folded.values():
        assert kernels.shape[0] == T
        assert biases.shape == (T, kernels.shape[-1])

    def folded_network(call):
        """Each folded layer with its kernel and bias of each step; the norms removed."""
        if is_norm(call.module):
            return call.args[0]
        if call.name not in folded:
            return call.output  # the decoder
        kernels, biases = folded[call.name]
        rows = call.args[0].reshape(T, B, *call.args[0].shape[1:])  # time folded: t * B + b
        layer = call.module.clone(use_bias=True, parent=None)
        out = [
            layer.apply({"params": {"kernel": kernels[t], "bias": biases[t]}}, rows[t])
            for t in range(T)
        ]
        return jnp.concatenate(out)

    want = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    _, got = capture_calls(
        model,
        variables,
        x,
        lambda m: is_linear(m) or is_norm(m),
        train=False,
        compiled=True,
        replace_output=folded_network,
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert float(jnp.std(want)) > 0
    with pytest.raises(ValueError, match=r"fold_norms_per_step"):
        analysis.fold_norms(model, variables, x)


def test_direct_training_kit_skips_finished_runs_and_writes_the_table(tmp_path):
    """Finished runs (a summary, not interrupted) are read, not trained again."""
    import json

    from experiments import direct_training_kit as kit

    for i, (norm, loss, leak) in enumerate(
        (n, lo, le) for n in kit.NORMS for lo in kit.LOSSES for le in kit.LEAKS
    ):
        config = kit.run_config(norm, loss, leak)
        run_dir = tmp_path / config.name
        run_dir.mkdir()
        summary = {
            "interrupted": False,
            "final_test_accuracy": 0.9 + i / 1000,
            "best_validation_accuracy": 0.97,
            "test_accuracy_at_best_validation": 0.95,
            "firing_rates": {"a": 0.1, "b": 0.3},
            "train_seconds": 10.0,
            "steps": 100,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        logs = [{"split": "train", "images_per_second": v} for v in (1.0, 640.0, 320.0, 6400)]
        (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in logs))
    rows = kit.run(str(tmp_path))
    assert [(r["norm"], r["loss"], r["leak"]) for r in rows][:3] == [
        ("tdbn", "ce", "fixed"),
        ("tdbn", "ce", "learned"),
        ("tdbn", "tet", "fixed"),
    ]
    assert len(rows) == 12
    assert rows[0]["firing_rate"] == pytest.approx(0.2)
    # the median after the first (compiling) window: 640 images/s
    batch = kit.run_config("tdbn", "ce", "none").batch_size
    assert rows[0]["seconds_per_step"] == pytest.approx(batch / 640)
    table = (tmp_path / "results.md").read_text()
    ms = round(1000 * batch / 640)
    assert f"| bntt | tet | learned | 91.10 % | 95.00 % | 0.200 | {ms} |" in table
