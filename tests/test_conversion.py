"""ANN-to-SNN conversion, the hybrid hand-over and the neuron options they use, against NumPy.

References are plain NumPy loops: the integrate-and-fire neuron with reset by
subtraction and its STBP gradient, spike-based BP's aggregate gradient, the
percentile, and the weight normalisation written out layer by layer.
"""

import functools
import math

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from snn_jax import conversion, lif_scan, models, surrogate
from snn_jax import nn as snn
from snn_jax.data import load_digits_split
from snn_jax.functional import aggregate_gradient
from snn_jax.models.layers import conv_init
from snn_jax.training import create_train_state, train_step
from tests.reference import np_lif, np_stbp

T, B, C = 5, 3, 4  # T != B != C


# ----------------------------------------------------------------------------- neuron options


@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("per_channel", [False, True])
def test_subtract_reset_equals_numpy_loop(tau, per_channel):
    x = np.asarray(jax.random.uniform(jax.random.key(0), (T, B, C), minval=-0.3, maxval=1.2))
    v_th = np.array([0.3, 0.5, 0.8, 1.1], np.float32) if per_channel else 0.6
    o, u = lif_scan(jnp.asarray(x), tau=tau, v_th=v_th, reset="subtract", return_membrane=True)
    ref_o, ref_u = np_lif(x, tau, v_th, "subtract")
    np.testing.assert_array_equal(o, ref_o)
    np.testing.assert_allclose(u, ref_u, rtol=1e-6, atol=1e-6)
    # per-channel thresholds with the hard reset, the same loop
    o, u = lif_scan(jnp.asarray(x), tau=tau, v_th=v_th, return_membrane=True)
    ref_o, ref_u = np_lif(x, tau, v_th, "zero")
    np.testing.assert_array_equal(o, ref_o)
    np.testing.assert_allclose(u, ref_u, rtol=1e-6, atol=1e-6)


def test_integrate_and_fire_with_subtraction_counts_charge():
    # constant input I for T steps: floor(T * I / theta) spikes (the rate code of conversion)
    current = np.array([0.0, 0.13, 0.5, 0.77, 1.0], np.float32)
    theta, steps = 1.0, 64
    o = lif_scan(jnp.broadcast_to(current, (steps, 5)), tau=1.0, v_th=theta, reset="subtract")
    np.testing.assert_array_equal(np.sum(o, 0), np.floor(steps * current / theta + 1e-6))


@pytest.mark.parametrize("detach", [False, True])
def test_subtract_reset_stbp_gradient_equals_numpy_recursion(detach):
    x = np.asarray(jax.random.uniform(jax.random.key(1), (T, B, C), minval=-0.2, maxval=1.0))
    g = np.asarray(jax.random.normal(jax.random.key(2), (T, B, C)), np.float64)
    v_th = np.array([0.3, 0.5, 0.8, 1.1], np.float32)
    width = 1.0

    def loss(x):
        o = lif_scan(
            x,
            tau=0.7,
            v_th=v_th,
            reset="subtract",
            detach_reset=detach,
            surrogate=surrogate.rectangular(width),
        )
        return jnp.sum(o * g)

    grad = jax.grad(loss)(jnp.asarray(x))
    o, u = np_lif(x, 0.7, v_th, "subtract")
    rectangular = lambda v: (np.abs(v) < width / 2) / width  # noqa: E731
    ref = np_stbp(u, o, g, np.zeros_like(g), 0.7, v_th, rectangular, detach, reset="subtract")["x"]
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-6)


def test_aggregate_gradient_equals_formula():
    # dL/dx[t] = 1[0 < count < T] / V_th * mean_t' dL/do[t'], the same for every t
    x = np.array(jax.random.uniform(jax.random.key(3), (T, B, C), minval=-0.5, maxval=0.8))
    x[:, 0, 0] = -1.0  # a neuron that never fires
    x[:, 1, 0] = 1.0  # one that fires at every step (threshold 0.4)
    g = np.asarray(jax.random.normal(jax.random.key(4), (T, B, C)), np.float32)
    v_th = np.array([0.4, 0.5, 0.6, 0.7], np.float32)
    o = lif_scan(jnp.asarray(x), tau=1.0, v_th=v_th, reset="subtract")
    out, vjp = jax.vjp(lambda x: aggregate_gradient(x, o, v_th), jnp.asarray(x))
    np.testing.assert_array_equal(out, o)
    (grad,) = vjp(jnp.asarray(g))
    count = np.asarray(o).sum(0)
    assert count[0, 0] == 0
    assert count[1, 0] == T
    assert np.any((count > 0) & (count < T))
    ref = np.zeros_like(x)
    for b in range(B):
        for c in range(C):
            if 0 < count[b, c] < T:
                ref[:, b, c] = g[:, b, c].mean() / v_th[c]
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)


def test_lif_module_options():
    x = jax.random.uniform(jax.random.key(5), (T, B, 6, 6, C), minval=-0.5, maxval=2.0)
    layer = snn.LIF(snn.NeuronSpec(tau=1.0, v_th=0.7, reset="subtract", channel_threshold=True))
    variables = layer.init(jax.random.key(0), x)
    chex.assert_trees_all_equal(variables["params"]["v_th"], jnp.full((C,), 0.7))
    theta = jnp.array([0.3, 0.7, 1.0, 1.5])
    out = jax.jit(layer.apply)({"params": {"v_th": theta}}, x)
    ref, _ = np_lif(x, 1.0, np.asarray(theta), "subtract")
    np.testing.assert_array_equal(out, ref)
    # the aggregate gradient reaches the input and stops at the threshold
    agg = snn.LIF(layer.spec.replace(gradient="aggregate"))
    grads = jax.jit(jax.grad(lambda p, x: jnp.sum(agg.apply({"params": p}, x)), argnums=(0, 1)))(
        {"v_th": theta}, x
    )
    assert float(jnp.abs(grads[0]["v_th"]).sum()) == 0.0
    assert float(jnp.abs(grads[1]).sum()) > 0.0
    with pytest.raises(ValueError, match=r"reset = 'soft': must be one of"):
        snn.LIF(snn.NeuronSpec(reset="soft")).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"gradient = 'lee': must be one of"):
        snn.LIF(snn.NeuronSpec(gradient="lee")).init(jax.random.key(0), x)


def test_zoo_models_take_the_neuron_options():
    x = jnp.zeros((2, 8, 8, 1))
    default = jax.eval_shape(
        lambda: models.get_model("digits_cnn", width=4, hidden_features=8).init(
            jax.random.key(0), x
        )
    )
    assert "v_th" not in default["params"]["conv1"]["neuron"].get("lif", {})
    neuron = snn.NeuronSpec(reset="subtract", channel_threshold=True, gradient="aggregate")
    model = models.get_model("digits_cnn", width=4, hidden_features=8, neuron=neuron)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    assert [shapes[k]["neuron"]["lif"]["v_th"].shape for k in ("conv1", "conv2", "fc")] == [
        (4,),
        (8,),
        (8,),
    ]
    # the config's flat keys reach the same spec; a bad one names the config
    config = {"name": "digits_cnn", "reset": "subtract", "channel_threshold": True}
    assert snn.NeuronSpec.from_config({**config, "gradient": "aggregate"}) == neuron
    with pytest.raises(ValueError, match=r"config\.model\.reset = 'soft': must be one of"):
        snn.NeuronSpec.from_config({**config, "reset": "soft"})
    with pytest.raises(ValueError, match=r"config\.model\.gradient = 'lee': must be one of"):
        snn.NeuronSpec.from_config({**config, "gradient": "lee"})


@pytest.mark.parametrize("partitionable", [True, False])
def test_conv_init_is_kaiming_normal_bit_for_bit(partitionable):
    reference = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    with jax.threefry_partitionable(partitionable):
        for shape in [(2, 2, 2, 2), (3, 3, 1, 2)]:  # small: larger 4-D shapes compile slowly
            key = jax.random.key(shape[-1])
            np.testing.assert_array_equal(conv_init(key, shape), reference(key, shape))


# ----------------------------------------------------------------------------- balancing


def np_percentile(values, p):
    """Linear interpolation between order statistics (NumPy's default), by hand."""
    v = sorted(float(a) for a in values)
    rank = p / 100 * (len(v) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (rank - lo) * (v[hi] - v[lo])


@pytest.mark.parametrize("p", [100.0, 99.9, 90.0, 50.0])
def test_activation_scale_is_the_stated_percentile(p):
    a = np.maximum(np.random.default_rng(0).normal(size=(40, 5, 3)), 0).astype(np.float32)
    a[..., 2] = 0.0  # a channel that never activates
    layer = conversion.activation_scale(a, p)
    ref = np_percentile([v for v in a.ravel() if v > 0], p)
    np.testing.assert_allclose(layer, np.full(3, ref), rtol=1e-6)
    channel = conversion.activation_scale(a, p, channelwise=True)
    for c in range(2):
        ref_c = np_percentile([v for v in a[..., c].ravel() if v > 0], p)
        np.testing.assert_allclose(channel[c], ref_c, rtol=1e-6)
    np.testing.assert_allclose(channel[2], ref, rtol=1e-6)  # the dead channel: the layer's
    np.testing.assert_array_equal(conversion.activation_scale(np.zeros((4, 2)), p), [1.0, 1.0])
    with pytest.raises(ValueError, match="percentile"):
        conversion.activation_scale(a, 0.0)


# ----------------------------------------------------------------------------- a trained ANN


@functools.cache
def digits():
    return load_digits_split()


@functools.cache
def trained_ann():
    """A small DigitsCNN ANN twin (ReLU + BN, T = 1) trained for 4 epochs on the digits."""
    split = digits()
    model = models.get_model(
        "digits_cnn",
        width=8,
        hidden_features=32,
        neuron=snn.NeuronSpec(kind="relu"),
        norm="bn",
        time_steps=1,
    )
    state = create_train_state(
        jax.random.PRNGKey(0),
        model,
        optax.adam(3e-3),
        jax.ShapeDtypeStruct((1, 8, 8, 1), np.float32),
    )
    step = jax.jit(train_step)
    order = np.random.default_rng(0).permutation(len(split.train_labels))
    for _ in range(4):  # epochs
        for i in range(0, len(order) - 63, 64):
            idx = order[i : i + 64]
            batch = {"image": split.train_images[idx], "label": split.train_labels[idx]}
            state, _ = step(state, batch)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return model, jax.device_get(variables)


def _test_batches():
    split = digits()
    return [{"image": split.test_images, "label": split.test_labels}]


@functools.cache
def converted(channelwise=False):
    model, variables = trained_ann()
    return conversion.convert(
        model, variables, digits().train_images[:512], channelwise=channelwise, time_steps=4
    )


def test_bn_folding_is_exact():
    model, variables = trained_ann()
    conv = converted()
    x = digits().test_images
    ref = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    folded = jax.jit(functools.partial(conv.ann.apply, train=False))(conv.ann_variables, x)
    np.testing.assert_allclose(folded, ref, rtol=1e-5, atol=1e-5)
    assert "batch_stats" not in conv.ann_variables


@pytest.mark.parametrize("channelwise", [False, True])
def test_weights_follow_the_normalisation(channelwise):
    """W' = c_out * W * A_in, b' = c_out * b, theta = c * lambda, with c = V / lambda (V = 1)."""
    conv = converted(channelwise)
    w = flax.traverse_util.flatten_dict(conv.ann_variables["params"])
    new = flax.traverse_util.flatten_dict(conv.variables["params"])
    lam = {k: np.asarray(v, np.float64) for k, v in conv.scales.items()}
    c = {k: 1.0 / v for k, v in lam.items()}  # V = 1 and no identity shortcut
    # conv1: fed by the image (amplitude 1)
    k1 = np.asarray(w["conv1", "conv", "kernel"], np.float64)
    ref = k1 * c["conv1/neuron/lif"]
    # conv2: each input channel i carries lambda_conv1[i]
    k2 = np.asarray(w["conv2", "conv", "kernel"], np.float64)
    ref2 = np.empty_like(k2)
    for i in range(k2.shape[2]):
        for o in range(k2.shape[3]):
            ref2[:, :, i, o] = (
                k2[:, :, i, o] * lam["conv1/neuron/lif"][i] * c["conv2/neuron/lif"][o]
            )
    # fc: input feature (h, w, ch) of the pooled conv2 map carries lambda_conv2[ch]
    kf = np.asarray(w["fc", "dense", "kernel"], np.float64)
    channels = lam["conv2/neuron/lif"].shape[0]
    ref_f = np.empty_like(kf)
    for row in range(kf.shape[0]):
        for o in range(kf.shape[1]):
            ref_f[row, o] = (
                kf[row, o] * lam["conv2/neuron/lif"][row % channels] * c["fc/neuron/lif"][o]
            )
    # the readout: spikes of fc carry lambda_fc; the logits keep their scale
    kr = np.asarray(w["decoder", "readout", "kernel"], np.float64)
    ref_r = kr * lam["fc/neuron/lif"][:, None]
    for key, expected in [
        (("conv1", "conv", "kernel"), ref),
        (("conv2", "conv", "kernel"), ref2),
        (("fc", "dense", "kernel"), ref_f),
        (("decoder", "readout", "kernel"), ref_r),
    ]:
        np.testing.assert_allclose(new[key], expected, rtol=1e-5, atol=1e-7)
    for unit, layer in [("conv1", "conv"), ("conv2", "conv"), ("fc", "dense")]:
        bias = np.asarray(w[unit, layer, "bias"], np.float64) * c[f"{unit}/neuron/lif"]
        np.testing.assert_allclose(new[unit, layer, "bias"], bias, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(new[unit, "neuron", "lif", "v_th"], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(
        new["decoder", "readout", "bias"], w["decoder", "readout", "bias"]
    )
    neuron = conv.model.neuron
    assert (neuron.kind, neuron.reset, neuron.tau, conv.model.norm) == (
        "lif",
        "subtract",
        1.0,
        "none",
    )
    assert neuron.channel_threshold


def test_converted_snn_matches_the_ann_as_time_steps_grow():
    model, variables = trained_ann()
    ann = conversion.evaluate_classifier(model, variables, _test_batches())
    assert ann["accuracy"] > 0.95
    conv = converted()
    agreement = {}
    for steps in (8, 64, 256):
        snn_result = conversion.evaluate_classifier(
            conv.model.clone(time_steps=steps), conv.variables, _test_batches()
        )
        agreement[steps] = np.mean(snn_result["predictions"] == ann["predictions"])
    # more steps, closer to the ANN (a single digit may flip between 64 and 256 steps)
    assert agreement[8] < min(agreement[64], agreement[256])
    assert agreement[256] >= 0.99  # the stated tolerance: 99 % of the 360 test digits
    assert abs(snn_result["accuracy"] - ann["accuracy"]) <= 0.01
    snn_logits, ann_logits = conversion.rate_limit_logits(conv, digits().test_images[:64])
    np.testing.assert_allclose(snn_logits, ann_logits, rtol=1e-4, atol=1e-4)


def test_convert_rejects_a_spiking_model():
    model = models.get_model("digits_cnn", width=2, hidden_features=4)
    with pytest.raises(ValueError, match=r"neuron kind 'lif'.*NeuronSpec\(kind='relu'\)"):
        conversion.convert(model, {}, np.zeros((4, 8, 8, 1), np.float32))


# ----------------------------------------------------------------------------- residual blocks


def test_residual_network_and_average_pool_convert():
    """ResNet with an identity block and a projection block, global average pool, hidden FC."""
    model = models.get_model(
        "resnet19",
        width=4,
        stage_sizes=(1, 1),
        hidden_features=8,
        neuron=snn.NeuronSpec(kind="relu"),
        norm="bn",
        time_steps=1,
    )
    x = np.asarray(jax.random.uniform(jax.random.key(0), (16, 8, 8, 3)))
    variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
    stats = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1])
    variables = {"params": variables["params"], "batch_stats": stats(variables, x)["batch_stats"]}
    conv = conversion.convert(model, variables, x, percentile=100.0, time_steps=4, check=False)
    lam = conv.scales
    identity = "stage1_block1/neuron2/lif"  # stage 1 keeps the shape: identity shortcut
    np.testing.assert_allclose(conv.gains[identity], 1 / lam["stem/neuron/lif"], rtol=1e-6)
    np.testing.assert_allclose(
        conv.thresholds[identity], lam[identity] / lam["stem/neuron/lif"], rtol=1e-5
    )
    for name in (
        "stem/neuron/lif",
        "stage1_block1/neuron1/lif",
        "stage2_block1/neuron2/lif",
        "fc/neuron/lif",
    ):
        np.testing.assert_allclose(conv.thresholds[name], 1.0, rtol=1e-6)  # no identity input
    rate, clipped = conversion.rate_limit_logits(conv, x)
    np.testing.assert_allclose(rate, clipped, rtol=1e-4, atol=1e-5)  # convert's own check
    scale = np.max(np.abs(clipped))
    errors = []
    for steps in (16, 256):
        snn_model = conv.model.clone(time_steps=steps)
        logits = jax.jit(snn_model.apply)(conv.variables, x)
        errors.append(np.max(np.abs(np.asarray(logits) - clipped)) / scale)
    assert errors[1] < errors[0]
    assert errors[1] < 0.05


# ----------------------------------------------------------------------------- hybrid hand-over


def np_conv3x3(images, kernel, bias):
    """SAME 3x3 convolution (padding 1, stride 1) as a loop: [N, H, W, I] -> [N, H, W, O]."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            window = padded[:, i : i + 3, j : j + 3, :]
            out[:, i, j, :] = np.einsum("nabi,abio->no", window, kernel)
    return out + bias


def test_hand_over_without_norm_is_the_conversion():
    conv = converted()
    snn = conv.model.clone(time_steps=2, neuron=conv.model.neuron.replace(surrogate="atan"))
    variables = conversion.hand_over(conv, snn, digits().train_images[:64])
    chex.assert_trees_all_equal(variables, conv.variables)


def test_hand_over_into_tdbn_computes_the_conversion():
    conv = converted()
    calibration = digits().train_images[:256]
    snn = conv.model.clone(norm="tdbn", time_steps=4)
    variables = conversion.hand_over(conv, snn, calibration)
    # step 0 of fine-tuning (evaluation mode) is the converted network, up to threshold ties
    ref = conversion.evaluate_classifier(
        conv.model.clone(time_steps=4), conv.variables, _test_batches()
    )
    out = conversion.evaluate_classifier(snn, variables, _test_batches())
    assert np.mean(out["predictions"] == ref["predictions"]) >= 0.99
    assert abs(out["accuracy"] - ref["accuracy"]) <= 0.01
    # the statistics of conv1 (its input is the constant image): a NumPy convolution
    params = conv.variables["params"]["conv1"]["conv"]
    y = np_conv3x3(
        calibration.astype(np.float64),
        np.asarray(params["kernel"], np.float64),
        np.asarray(params["bias"], np.float64),
    ).reshape(-1, params["bias"].shape[0])
    stats = variables["batch_stats"]["conv1"]["neuron"]["norm"]
    np.testing.assert_allclose(stats["mean"], y.mean(0) - params["bias"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], y.var(0), rtol=1e-4, atol=1e-6)
    # every norm layer maps x to x + b' (the converted bias): lambda, beta and the statistics
    folded_bias = {"conv1": ("conv", 1.0), "conv2": ("conv", 1.0), "fc": ("dense", 1.0)}
    x = np.random.default_rng(0).normal(size=(7, 1))
    for unit, (layer, alpha) in folded_bias.items():
        p = variables["params"][unit]["neuron"]["norm"]
        s = variables["batch_stats"][unit]["neuron"]["norm"]
        b = np.asarray(conv.variables["params"][unit][layer]["bias"], np.float64)
        y = p["scale"] * alpha * 0.5 * (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) + p["bias"]
        np.testing.assert_allclose(y, x + b, rtol=1e-4, atol=1e-4)
    # in training mode on the calibration images the batch statistics are the running ones
    evaluated, trained = jax.jit(
        lambda v, x: (
            snn.apply(v, x, train=False),
            snn.apply(v, x, train=True, mutable=["batch_stats"])[0],
        )
    )(variables, calibration)
    assert np.mean(np.argmax(evaluated, -1) == np.argmax(trained, -1)) >= 0.99


def test_hand_over_needs_a_matching_snn():
    conv = converted()
    x = digits().train_images[:8]
    neuron = conv.model.neuron.replace(channel_threshold=False)
    with pytest.raises(ValueError, match="channel_threshold=True"):
        conversion.hand_over(conv, conv.model.clone(neuron=neuron), x)
    with pytest.raises(ValueError, match="converted network's layers"):
        conversion.hand_over(conv, conv.model.clone(width=4), x)


# ----------------------------------------------------------------------------- evaluation


def test_models_with_recomputation_convert_and_evaluate_the_same():
    """``memory="remat"`` (blocks recomputed in the backward pass) changes no values,
    so conversion and the spike-counting evaluation give the same results."""
    model, variables = trained_ann()
    images = digits().train_images[:512]
    remat = conversion.convert(model.clone(memory="remat"), variables, images, time_steps=4)
    reference = converted()
    chex.assert_trees_all_close(remat.variables, reference.variables)
    x = digits().test_images[:16]
    forward = jax.jit(conversion.forward_with_spikes, static_argnums=0)
    logits, spikes = forward(reference.model, reference.variables, x)
    remat_logits, remat_spikes = forward(remat.model.clone(memory="remat"), remat.variables, x)
    np.testing.assert_allclose(remat_logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(remat_spikes, spikes)
    assert float(np.sum(spikes)) > 0


def test_evaluation_counts_spikes_and_skips_padding():
    model = models.get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    x = np.asarray(jax.random.uniform(jax.random.key(0), (10, 8, 8, 1)))
    variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
    variables = {**variables, "params": jax.tree.map(lambda p: 3 * p, variables["params"])}
    logits, spikes = jax.jit(lambda v, x: conversion.forward_with_spikes(model, v, x))(variables, x)
    # reference: each example alone, from the firing rates its LIF layers sow (mean over
    # [T, 1, ...]) times their number of neuron-steps
    neuron_steps = {  # conv1: 8x8x2, conv2: 8x8x4, fc: 4 neurons, T = 3
        "conv1": 3 * 8 * 8 * 2,
        "conv2": 3 * 8 * 8 * 4,
        "fc": 3 * 4,
    }
    apply_one = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"])[1])
    per_example = []
    for i in range(10):
        rates = apply_one(variables, x[i : i + 1])["intermediates"]
        per_example.append(
            sum(
                float(rates[u]["neuron"]["lif"]["firing_rate"][0][0]) * n
                for u, n in neuron_steps.items()
            )
        )
    per_example = np.asarray(per_example)
    np.testing.assert_allclose(spikes, per_example, rtol=1e-6)
    assert per_example.sum() > 0
    labels = np.arange(10) % 3
    mask = np.arange(10) < 7  # the last three are padding
    batches = [{"image": x, "label": labels, "mask": mask}]
    result = conversion.evaluate_classifier(model, variables, batches, max_steps_times_batch=9)
    predictions = np.argmax(np.asarray(logits), -1)  # chunks of 3 examples, the last padded
    np.testing.assert_array_equal(result["predictions"], predictions[:7])
    assert result["count"] == 7
    assert result["accuracy"] == np.mean(predictions[:7] == labels[:7])
    assert result["spikes_per_image"] == pytest.approx(per_example[:7].mean())
