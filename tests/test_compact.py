"""memory="compact" (spikes as bits, membranes recomputed): the plain values and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from snn_jax import surrogate
from snn_jax.functional import (
    Currents,
    lif_from_currents,
    pack_spikes,
    spike_conv_general_dilated,
    unpack_spikes,
)
from snn_jax.models import BottleneckBlock, SpikingResNet, get_model
from snn_jax.models.layers import LayerFactory
from snn_jax.nn import NeuronSpec, NormNeuron
from tests.reference import lif_scan_autodiff

T, B, H, C = 3, 2, 5, 11


def _spikes(key, shape, rate=0.4):
    return (jax.random.uniform(jax.random.key(key), shape) < rate).astype(jnp.float32)


@pytest.mark.parametrize("channels", [1, 8, 11, 16])
def test_pack_spikes_matches_a_numpy_bit_loop(channels):
    s = np.asarray(_spikes(0, (4, 3, channels)))
    packed = np.asarray(pack_spikes(jnp.asarray(s)))
    expected = np.zeros((4, 3, -(-channels // 8)), np.uint8)
    for index in np.ndindex(4, 3):
        for c in range(channels):
            expected[index][c // 8] |= int(s[index][c]) << (c % 8)
    np.testing.assert_array_equal(packed, expected)
    np.testing.assert_array_equal(unpack_spikes(jnp.asarray(packed), channels), s)


@pytest.mark.parametrize(
    ("strides", "padding", "groups"),
    [((1, 1), "SAME", 1), ((2, 2), ((1, 1), (1, 1)), 1), ((1, 1), "VALID", 3)],
)
def test_spike_conv_equals_the_plain_conv(strides, padding, groups):
    s = _spikes(0, (T * B, 7, 7, 6))
    k = jax.random.normal(jax.random.key(1), (3, 3, 6 // groups, 9))
    w = jax.random.normal(
        jax.random.key(2),
        jax.eval_shape(
            lambda: jax.lax.conv_general_dilated(
                s,
                k,
                strides,
                padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=groups,
            )
        ).shape,
    )

    def loss(conv, s, k):
        y = conv(
            s,
            k,
            strides,
            padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )
        return jnp.sum(y * w), y

    (_, ref_y), ref_g = jax.value_and_grad(loss, (1, 2), has_aux=True)(
        jax.lax.conv_general_dilated, s, k
    )
    (_, got_y), got_g = jax.value_and_grad(loss, (1, 2), has_aux=True)(
        spike_conv_general_dilated, s, k
    )
    np.testing.assert_array_equal(got_y, ref_y)
    chex.assert_trees_all_close(got_g, ref_g, rtol=1e-5, atol=1e-5)


def test_spike_conv_stores_bits_not_floats(capsys):
    s = _spikes(0, (T * B, H, H, 16))
    k = jax.random.normal(jax.random.key(1), (3, 3, 16, 4))
    print_saved_residuals(
        lambda k: jnp.sum(
            spike_conv_general_dilated(
                s, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        ),
        k,
    )
    out = capsys.readouterr().out
    assert f"u8[{T * B},{H},{H},2]" in out
    assert f"f32[{T * B},{H},{H},16]" not in out


def test_spike_conv_needs_channels_last():
    s, k = jnp.ones((2, 4, 5, 5)), jnp.ones((3, 4, 3, 3))
    with pytest.raises(ValueError, match="channels"):
        spike_conv_general_dilated(s, k, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _currents(with_second, with_spikes, dtype=jnp.float32):
    shape = (T, B, H, C)
    z1 = (jax.random.normal(jax.random.key(3), shape) * 2 + 0.5).astype(dtype)
    z2 = (jax.random.normal(jax.random.key(4), shape) * 3 - 0.2).astype(dtype)
    a1, b1 = jnp.linspace(0.1, 0.4, C), jnp.linspace(-0.2, 0.3, C)
    a2, b2 = jnp.linspace(0.3, -0.1, C), jnp.linspace(0.1, 0.0, C)
    terms = [(z1, a1, b1)] + ([(z2, a2, b2)] if with_second else [])
    spikes = _spikes(5, shape) if with_spikes else None
    return terms, spikes


CASES = [(name, detach, True, True) for name in surrogate.NAMES for detach in (False, True)] + [
    ("rectangular", detach, second, spikes)
    for detach in (False, True)
    for second, spikes in ((False, False), (True, False), (False, True))
]


@pytest.mark.parametrize(("name", "detach_reset", "second", "with_spikes"), CASES)
def test_lif_from_currents_equals_autodiff_of_the_plain_layer(
    name, detach_reset, second, with_spikes
):
    terms, spikes = _currents(second, with_spikes)
    w = jax.random.normal(jax.random.key(6), (T, B, H, C))
    spike = surrogate.get(name)
    kw = dict(tau=0.3, v_th=0.5, surrogate=spike, detach_reset=detach_reset)

    def plain(terms, spikes):
        # What the model computes without "compact": each tdBN output, summed, then the LIF.
        x = sum(z * a + b for z, a, b in terms)
        x = x if spikes is None else x + spikes
        out = lif_scan_autodiff(x, **kw)
        return jnp.sum(out * w), out

    def compact(terms, spikes):
        c = Currents(tuple(terms), spikes)
        out = lif_from_currents(c, unroll=2, **kw)
        return jnp.sum(out * w), out

    argnums = (0, 1) if with_spikes else 0
    (_, ref_out), ref_g = jax.value_and_grad(plain, argnums, has_aux=True)(terms, spikes)
    (_, got_out), got_g = jax.jit(jax.value_and_grad(compact, argnums, has_aux=True))(terms, spikes)
    np.testing.assert_array_equal(got_out, ref_out)
    assert float(jnp.abs(jax.tree.leaves(ref_g)[0]).sum()) > 0
    chex.assert_trees_all_close(got_g, ref_g, rtol=1e-5, atol=1e-5)


def test_lif_from_currents_keeps_no_float_time_series_but_the_inputs(capsys):
    """Saved: the z's (already tdBN's residuals) and the spikes' bits; no membrane, no sum."""
    terms, spikes = _currents(True, True)
    series = f"f32[{T},{B},{H},{C}]"

    def loss(terms, spikes):
        out = lif_from_currents(
            Currents(tuple(terms), spikes), tau=0.3, v_th=0.5, surrogate=surrogate.rectangular()
        )
        return jnp.sum(out)

    print_saved_residuals(loss, terms, spikes)
    out = capsys.readouterr().out
    assert out.count(series) == 2  # z1 and z2, both arguments
    assert out.count("from the argument") >= 2
    assert f"u8[{T},{B},{H},2]" in out


def test_currents_accept_one_spike_term():
    terms, spikes = _currents(False, True)
    c = Currents(tuple(terms), spikes)
    with pytest.raises(ValueError, match="one spike term"):
        c + c
    with pytest.raises(ValueError, match="already carry"):
        c.add_spikes(spikes)


def _resnet(memory, **kw):
    return SpikingResNet(
        num_classes=5,
        time_steps=T,
        width=8,
        stage_sizes=(2, 1),
        hidden_features=6,
        memory=memory,
        neuron=NeuronSpec(unroll=T),
        **kw,
    )


MODELS = [
    ("resnet_basic", lambda memory: _resnet(memory)),
    (
        "resnet_bottleneck",
        lambda memory: _resnet(memory, block_cls=BottleneckBlock, stem="imagenet"),
    ),
    (
        "plain",
        lambda memory: get_model(
            "plain", depth=3, width=8, num_classes=5, time_steps=T, memory=memory
        ),
    ),
    (
        "digits_cnn",
        lambda memory: get_model(
            "digits_cnn", width=8, hidden_features=16, num_classes=5, time_steps=T, memory=memory
        ),
    ),
]


@pytest.mark.parametrize(("name", "make"), MODELS)
def test_compact_model_equals_the_plain_model(name, make):
    """Same logits, gradients, running statistics and firing rates as memory="none"."""
    size = 16 if name.startswith("resnet") else 8
    x = jax.random.normal(jax.random.key(0), (B, size, size, 3)) + 0.5
    labels = jnp.array([1, 3])
    plain, compact = make("none"), make("compact")
    variables = plain.init(jax.random.key(1), x)

    def loss(params, model):
        logits, updates = model.apply(
            {**variables, "params": params}, x, mutable=["batch_stats", "intermediates"]
        )
        onehot = jax.nn.one_hot(labels, 5)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1)), (logits, updates)

    results = [
        jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
            variables["params"], model
        )
        for model in (plain, compact)
    ]
    (_, (ref_logits, ref_upd)), ref_g = results[0]
    (_, (got_logits, got_upd)), got_g = results[1]
    chex.assert_trees_all_close(got_logits, ref_logits, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(got_upd, ref_upd, rtol=1e-5, atol=1e-6)
    rates = jax.tree.leaves(ref_upd["intermediates"])
    assert any(0 < float(jnp.mean(r)) < 1 for r in rates)
    chex.assert_trees_all_close(got_g, ref_g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        (dict(neuron=NeuronSpec(kind="relu"), norm="bn"), "neuron kind 'relu'"),
        (dict(norm="none"), "norm='none'"),
        (dict(neuron=NeuronSpec(reset="subtract")), "reset='subtract'"),
        (dict(neuron=NeuronSpec(channel_threshold=True)), "channel_threshold"),
        (dict(neuron=NeuronSpec(gradient="aggregate")), "gradient='aggregate'"),
        (dict(neuron=NeuronSpec(learn_tau="layer")), "learn_tau='layer'"),
        (dict(neuron=NeuronSpec(learn_v_th="channel")), "learn_v_th='channel'"),
    ],
)
def test_compact_rejects_settings_it_cannot_store_compactly(setting, match):
    with pytest.raises(ValueError, match=match):
        LayerFactory(memory="compact", **setting)
    with pytest.raises(ValueError, match=match):
        get_model("plain", depth=2, width=4, memory="compact", **setting)
    norm = setting.get("norm", "tdbn")
    with pytest.raises(ValueError, match=match):
        NormNeuron(setting.get("neuron", NeuronSpec()), norm, compact=True)


def test_compact_uses_the_plain_parameter_tree():
    x = jnp.ones((1, 16, 16, 3))
    shapes = [
        jax.tree.map(jnp.shape, jax.eval_shape(_resnet(m).init, jax.random.key(0), x))
        for m in ("none", "compact")
    ]
    assert shapes[0] == shapes[1]


def test_spike_conv_is_used_only_for_spike_inputs():
    layers = LayerFactory(memory="compact")
    assert layers.conv(4, 3, spike_input=True, name="c").conv_general_dilated is (
        spike_conv_general_dilated
    )
    assert layers.conv(4, 3, name="c").conv_general_dilated is None
    assert LayerFactory().conv(4, 3, spike_input=True, name="c").conv_general_dilated is None
    assert isinstance(layers.conv(4, 3, name="c"), nn.Conv)


@pytest.mark.parametrize("unroll", [4, 1])
def test_compact_needs_less_compiled_memory_than_plain_bptt(unroll):
    """XLA's temporary memory of the gradient: the point of the option (loops or straight-line)."""
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
    temp = {}
    for memory in ("none", "compact"):
        model = SpikingResNet(
            num_classes=5,
            time_steps=4,
            width=16,
            stage_sizes=(2, 1),
            memory=memory,
            neuron=NeuronSpec(unroll=unroll),
        )
        variables = model.init(jax.random.key(1), x)

        def loss(params, model=model, variables=variables):
            out, _ = model.apply(
                {**variables, "params": params}, x, mutable=["batch_stats", "intermediates"]
            )
            return jnp.sum(out)

        compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
        temp[memory] = compiled.memory_analysis().temp_size_in_bytes
    assert temp["compact"] < 0.8 * temp["none"], temp


@pytest.mark.parametrize("unroll", [1, 2, True])
def test_lif_from_currents_loop_forms_equal_autodiff_of_the_plain_layer(unroll):
    """Loops (unroll 1 or 2) and straight-line code (unroll T), each against the plain layer."""
    terms, spikes = _currents(True, True)
    w = jax.random.normal(jax.random.key(7), (T, B, H, C))
    kw = dict(tau=0.3, v_th=0.5, surrogate=surrogate.sigmoid())

    def plain(terms, spikes):
        x = sum(z * a + b for z, a, b in terms) + spikes
        return jnp.sum(lif_scan_autodiff(x, **kw) * w)

    def compact(terms, spikes):
        return jnp.sum(lif_from_currents(Currents(tuple(terms), spikes), unroll=unroll, **kw) * w)

    ref = jax.value_and_grad(plain, (0, 1))(terms, spikes)
    got = jax.jit(jax.value_and_grad(compact, (0, 1)))(terms, spikes)
    assert float(jnp.abs(ref[1][1]).sum()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


def test_compact_gradients_inside_shard_map_sum_the_shared_ones():
    """Batch split over 4 devices by ``shard_map``: the LIF from currents and the spike
    conv give the unsplit batch's gradients; the shared scales, shifts and kernel
    get the sums over the devices."""
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    shape = (T, 8, H, C)
    z = jax.random.normal(jax.random.key(3), shape) * 2 + 0.5
    scale, shift = jnp.linspace(0.1, 0.4, C), jnp.linspace(-0.2, 0.3, C)
    spikes = _spikes(5, shape)
    kernel = jax.random.normal(jax.random.key(7), (3, 3, C, 4))
    w = jax.random.normal(jax.random.key(6), (T, 8, H, H, 4))
    kw = dict(tau=0.3, v_th=0.5, surrogate=surrogate.rectangular())

    def loss(z, scale, shift, spikes, kernel, w, compact):
        if compact:
            out = lif_from_currents(Currents(((z, scale, shift),), spikes), **kw)
            conv = spike_conv_general_dilated
        else:
            out = lif_scan_autodiff(z * scale + shift + spikes, **kw)
            conv = jax.lax.conv_general_dilated
        # Each step's and example's spikes as an [H, H, C] image, through a 3x3 conv.
        images = jnp.broadcast_to(out[:, :, None], (*out.shape[:2], H, H, C)).reshape(-1, H, H, C)
        y = conv(images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y.reshape(w.shape) * w)

    args = (z, scale, shift, spikes, kernel, w)
    ref = jax.grad(loss, (0, 1, 2, 3, 4))(*args, False)
    mesh = jax.make_mesh((4,), ("data",))
    batch, shared = P(None, "data"), P()
    specs = (batch, shared, shared, batch, shared, batch)
    split = jax.shard_map(
        lambda *a: jax.grad(loss, (0, 1, 2, 3, 4))(*a, True),
        mesh=mesh,
        in_specs=specs,
        out_specs=specs[:5],
    )
    placed = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs, strict=True)]
    got = jax.jit(split)(*placed)
    assert float(jnp.abs(ref[1]).max()) > 0  # a shared scale's gradient
    assert float(jnp.abs(ref[4]).max()) > 0  # the shared kernel's
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)
