"""The model zoo: shapes, parameter counts, residual alpha, the ANN twin, errors.

Structural checks trace the models abstractly (``jax.eval_shape``: nothing is
allocated or compiled), so every named model is covered in seconds; numerical
checks compile only small pieces (a residual block, the digits CNN).
"""

import functools
import math
import re

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from snn_jax import analysis, models
from snn_jax import nn as snn

DIMS = chex.Dimensions(T=3, B=2, H=8, W=8, C=2, K=5)  # T != B
T, B, K = DIMS.T, DIMS.B, DIMS.K
TINY = dict(width=4, num_classes=K)
ALPHA = 1 / math.sqrt(2)
MUTABLE = ["batch_stats", "intermediates"]


def static_input(dims=DIMS):
    return jax.ShapeDtypeStruct(dims["BHWC"], jnp.float32)


def frames_input(dims=DIMS):
    return jax.ShapeDtypeStruct(dims["TBHWC"], jnp.float32)


def abstract_init(model, x):
    return jax.eval_shape(model.init, jax.random.key(0), x)


def abstract_apply(model, variables, x, train):
    return jax.eval_shape(
        lambda v, x: model.apply(v, x, train=train, mutable=MUTABLE), variables, x
    )


def shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), flax.core.unfreeze(tree))


def num_params(variables):
    return sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))


def flat(tree, sep="/"):
    return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep=sep)


def filled(abstract, seed=0):
    """Concrete variables for abstract ones, drawn with NumPy.

    Kernels ``N(0, 2 / fan_in)``, scales and variances 1, the rest 0. (Compiling
    ``model.init`` costs seconds per random initialiser on XLA:CPU; the
    numerical tests here do not depend on the kernels' exact distribution.)
    """
    rng = np.random.default_rng(seed)

    def fill(path, a):
        name = path[-1].key
        if name == "kernel":
            fan_in = math.prod(a.shape[:-1])
            return jnp.asarray(rng.normal(0, math.sqrt(2 / fan_in), a.shape), a.dtype)
        return (jnp.ones if name in ("scale", "var") else jnp.zeros)(a.shape, a.dtype)

    return jax.tree_util.tree_map_with_path(fill, flax.core.unfreeze(abstract))


def modules_of_type(model, x, cls, **kwargs):
    """``{path: bound module}`` of every ``cls`` the model calls (traced abstractly)."""
    found = {}

    def interceptor(next_fun, args, kw, context):
        if context.method_name == "__call__" and isinstance(context.module, cls):
            found["/".join(context.module.path)] = context.module
        return next_fun(*args, **kw)

    def run(x):
        with nn.intercept_methods(interceptor):
            return model.init(jax.random.key(0), x, **kwargs)

    jax.eval_shape(run, x)
    return found


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_name():
    assert models.MODEL_NAMES == (
        "resnet17",
        "resnet18",
        "resnet19",
        "resnet34",
        "resnet50",
        "plain",
        "digits_cnn",
    )
    with pytest.raises(ValueError, match=r"unknown model 'resnet1000'.*digits_cnn"):
        models.get_model("resnet1000")
    with pytest.raises(TypeError):
        models.get_model("resnet19", no_such_field=1)


# ----------------------------------------------------------------------------- forward shapes


# TEBN and BNTT (tests/test_kit.py runs them in the digits CNN, plain CNN and ResNet-19)
# here with bottleneck blocks and the ImageNet stem only: each case costs seconds.
SHAPE_CASES = [
    (name, norm)
    for norm in snn.NORMS
    for name in models.MODEL_NAMES
    if norm not in snn.STEP_NORMS or name == "resnet50"
]


@pytest.mark.parametrize(("name", "norm"), SHAPE_CASES)
def test_forward_shapes_static_and_time_major(name, norm):
    model = models.get_model(name, norm=norm, time_steps=T, **TINY)
    variables = abstract_init(model, static_input())
    assert ("batch_stats" in variables) == (norm != "none")
    for x, m, train in [
        (static_input(), model, True),
        (static_input(), model, False),
        (frames_input(), model, True),  # time_steps == T
        (frames_input(), model.clone(time_steps=None), False),
    ]:
        logits, state = abstract_apply(m, variables, x, train)
        chex.assert_shape(logits, DIMS["BK"])
        rates = flat(state.get("intermediates", {}))
        assert rates, "the LIF layers sow their firing rates"
        assert all(k.endswith("firing_rate") for k in rates)
        if norm != "none":
            assert shapes(state["batch_stats"]) == shapes(variables["batch_stats"])


@pytest.mark.parametrize("memory", ["none", "compact"])
def test_firing_rate_paths_are_readable(memory):
    """Each unit sows one rate at ``<unit>/lif/firing_rate``, compact or not (a compact unit
    runs the neurons itself and has its LIF layer record the rate)."""
    leaf = "lif/firing_rate"
    model = models.get_model("resnet19", time_steps=T, memory=memory, **TINY)
    variables = abstract_init(model, static_input())
    _, state = abstract_apply(model, variables, static_input(), True)
    paths = set(flat(state["intermediates"]))
    for unit in [
        "stem/neuron",
        "stage1_block1/neuron1",
        "stage1_block1/neuron2",
        "stage3_block2/neuron2",
        "fc/neuron",
    ]:
        assert f"{unit}/{leaf}" in paths, sorted(paths)
    assert all(re.fullmatch(r"\w+/neuron\d?/" + leaf, p) for p in paths), sorted(paths)
    assert len(paths) == 1 + 2 * 8 + 1


def test_norm_none_gives_biased_convs_and_no_norm_layers():
    for norm, biased in [("tdbn", False), ("none", True)]:
        model = models.get_model("resnet18", norm=norm, time_steps=T, **TINY)
        params = flat(abstract_init(model, static_input())["params"])
        convs = [k for k in params if k.endswith("kernel") and "decoder" not in k]
        assert convs
        assert all((k.removesuffix("kernel") + "bias" in params) == biased for k in convs)
        assert any("norm" in k for k in params) != biased


# ----------------------------------------------------------------------------- parameter counts


def resnet19_count_by_hand(in_channels=3, classes=10):
    """ResNet-19 of METHOD.md section 6, layer by layer (conv kernels, norms, FC, decoder)."""
    conv = lambda k, c_in, c_out: k * k * c_in * c_out  # noqa: E731
    norm = lambda c: 2 * c  # scale and bias  # noqa: E731
    total = conv(3, in_channels, 128) + norm(128)  # stem
    c_in = 128
    for stage, (blocks, c) in enumerate(zip((3, 3, 2), (128, 256, 512), strict=True)):
        for j in range(blocks):
            total += conv(3, c_in, c) + norm(c) + conv(3, c, c) + norm(c)
            if stage > 0 and j == 0:  # projection shortcut
                total += conv(1, c_in, c) + norm(c)
            c_in = c
    total += 512 * 256 + norm(256)  # hidden FC (no bias: it feeds a norm) + its tdBN
    total += 256 * classes + classes  # decoding layer M (with bias)
    return total


def test_resnet19_parameter_count():
    model = models.ResNet19(num_classes=10)
    variables = abstract_init(model, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    assert resnet19_count_by_hand() == 12_698_250
    assert num_params(variables) == 12_698_250


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)],
)
def test_imagenet_resnets_match_torchvision_counts(name, expected):
    model = models.get_model(name, num_classes=1000)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    assert num_params(abstract_init(model, x)) == expected


# ----------------------------------------------------------------------------- residual alpha


@pytest.mark.parametrize(
    ("name", "last_unit"),
    [("resnet19", "neuron2"), ("resnet18", "neuron2"), ("resnet50", "neuron3")],
)
def test_residual_alpha_on_last_norm_and_projection_only(name, last_unit):
    model = models.get_model(name, time_steps=T, **TINY)
    norms = modules_of_type(model, static_input(), snn.TdBatchNorm)
    assert norms
    for path, module in norms.items():
        *_, unit, leaf = path.split("/")
        assert leaf in ("norm", "shortcut_norm"), path
        assert leaf == "norm" or unit == last_unit, path  # the shortcut enters the last unit
        in_block = path.startswith("stage")
        expected = ALPHA if in_block and unit == last_unit else 1.0
        assert module.alpha == pytest.approx(expected), path
        assert module.v_th == model.neuron.v_th
    params = abstract_init(model, static_input())["params"]
    for block, p in params.items():
        if not block.startswith("stage"):
            continue
        first = block.endswith("_block1")
        projection = first and (name == "resnet50" or not block.startswith("stage1"))
        assert ("shortcut_conv" in p) == projection, block
        assert ("shortcut_norm" in p[last_unit]) == projection, block
        assert "norm" in p[last_unit], block


@pytest.mark.parametrize("norm", ["tdbn", "bn"])
def test_block_norm_outputs_have_the_residual_scale_at_init(norm):
    """In training mode a norm output has std ``scale * alpha * V_th`` (tdBN) or 1 (BN)."""
    layers = models.LayerFactory(neuron=snn.NeuronSpec(v_th=0.5), norm=norm)
    block = models.BasicBlock(layers, features=8, strides=2)
    x = jax.random.bernoulli(jax.random.key(0), 0.3, (T, 4, 8, 8, 4)).astype(jnp.float32)

    variables = filled(abstract_init(block, x))

    @jax.jit
    def run(x):
        return block.apply(
            variables,
            x,
            capture_intermediates=lambda m, _: isinstance(m, snn.TdBatchNorm),
            mutable=MUTABLE,
        )[1]["intermediates"]

    captured = flat(run(x))
    out = {
        k.removesuffix("/__call__"): float(jnp.std(v[0]))
        for k, v in captured.items()
        if k.endswith("/__call__")
    }
    gain = 0.5 if norm == "tdbn" else 1.0
    alpha = ALPHA if norm == "tdbn" else 1.0
    assert set(out) == {"neuron1/norm", "neuron2/norm", "neuron2/shortcut_norm"}
    np.testing.assert_allclose(out["neuron1/norm"], gain, rtol=1e-3)
    np.testing.assert_allclose(out["neuron2/norm"], gain * alpha, rtol=1e-3)
    np.testing.assert_allclose(out["neuron2/shortcut_norm"], gain * alpha, rtol=1e-3)


# ----------------------------------------------------------------------------- ANN twin


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_ann_twin_has_the_snn_parameters(name):
    snn_model = models.get_model(name, norm="tdbn", neuron=snn.NeuronSpec(), time_steps=T, **TINY)
    ann_model = models.get_model(
        name, norm="bn", neuron=snn.NeuronSpec(kind="relu"), time_steps=1, **TINY
    )
    x_snn = static_input()
    x_ann = jax.ShapeDtypeStruct((B * T, *DIMS["HWC"]), jnp.float32)  # batch B*T
    v_snn, v_ann = abstract_init(snn_model, x_snn), abstract_init(ann_model, x_ann)
    assert shapes(v_ann) == shapes(v_snn)
    logits, state = abstract_apply(ann_model, v_ann, x_ann, True)
    assert logits.shape == (B * T, K)
    assert not flat(state.get("intermediates", {})), "no spiking layer, no firing rates"
    norms = modules_of_type(ann_model, x_ann, snn.TdBatchNorm)
    assert all(m.alpha * m.v_th == 1.0 for m in norms.values()), "plain BN: no alpha*V_th"


# ----------------------------------------------------------------------------- options


def test_surrogate_and_neuron_settings_reach_every_lif():
    spec = snn.NeuronSpec(
        tau=0.5, v_th=0.4, surrogate="atan", surrogate_param=3.0, detach_reset=True, unroll=3
    )
    model = models.get_model("resnet19", time_steps=T, neuron=spec, **TINY)
    lifs = modules_of_type(model, static_input(), snn.LIF)
    assert len(lifs) == 1 + 2 * 8 + 1
    for m in lifs.values():
        assert m.spec == spec
        assert (m.spec.tau, m.spec.v_th, m.spec.detach_reset, m.spec.unroll) == (0.5, 0.4, True, 3)
        assert m.spec.spike_function.name == "atan"
        assert m.spec.spike_function.params == {"alpha": 3.0}
    norms = modules_of_type(model, static_input(), snn.TdBatchNorm)
    assert norms
    assert all(n.v_th == 0.4 for n in norms.values())  # tdBN's V_th is the neurons'
    default = modules_of_type(models.ResNet19(time_steps=T, **TINY), static_input(), snn.LIF)
    assert all(m.spec.spike_function.params == {"width": 1.0} for m in default.values())
    # compact: the units run the neurons themselves, with the same spec
    units = modules_of_type(model.clone(memory="compact"), static_input(), snn.NormNeuron)
    assert len(units) == 1 + 2 * 8 + 1
    assert all(u.neuron == spec and u.compact for u in units.values())


def test_plain_cnn_depth_and_stages():
    assert models.plain.plain_stage_sizes(20) == (7, 7, 6)
    model = models.get_model("plain", depth=20, time_steps=T, **TINY)
    params = abstract_init(model, static_input())["params"]
    kernels = [k for k in flat(params) if k.endswith("conv/kernel")]
    assert len(kernels) == 20
    assert params["unit8"]["conv"]["kernel"].shape == (3, 3, 4, 8)  # stage 2 starts, 2x width
    assert params["unit20"]["conv"]["kernel"].shape == (3, 3, 16, 16)
    blocks = analysis.block_names(model, abstract_init(model, static_input()), static_input())
    assert len(blocks) == 20


def test_bfloat16_compute_keeps_membranes_float32():
    model = models.get_model("digits_cnn", time_steps=T, dtype=jnp.bfloat16, **TINY)
    x = jax.ShapeDtypeStruct((B, 8, 8, 1), jnp.float32)
    variables = abstract_init(model, x)
    logits, _ = abstract_apply(model, variables, x, True)
    assert logits.dtype == jnp.bfloat16
    lifs = modules_of_type(model, x, snn.LIF)
    assert set(lifs) == {"conv1/neuron/lif", "conv2/neuron/lif", "fc/neuron/lif"}


# ----------------------------------------------------------------------------- numerics


@pytest.fixture(scope="module")
def digits():
    model = models.get_model("digits_cnn", time_steps=T, **TINY)
    x = jax.random.uniform(jax.random.key(0), (B, 8, 8, 1)) * 16
    variables = filled(abstract_init(model, x))
    return model, variables, x


def test_digits_cnn_forward_backward(digits):
    model, variables, x = digits
    labels = jnp.arange(B) % K

    def loss(params, x):
        logits, state = model.apply({**variables, "params": params}, x, train=True, mutable=MUTABLE)
        ce = jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(B), labels])
        return ce, state

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, state), grads = step(variables["params"], x)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(optax.tree.norm(grads)) > 0
    rates = [float(jnp.mean(r)) for r in jax.tree.leaves(state["intermediates"])]
    assert all(0 < r < 1 for r in rates), rates
    # a static batch equals its direct encoding given as time-major frames
    frames = jnp.broadcast_to(x, (T, *x.shape))
    (value_tm, _), _ = step(variables["params"], frames)
    np.testing.assert_allclose(value_tm, value, rtol=1e-6)
    # recomputation in the backward pass changes nothing
    remat = model.clone(memory="remat")
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    logits_remat = jax.jit(lambda v, x: remat.apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(logits_remat, logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "fast",
    [dict(memory="remat"), dict(neuron=snn.NeuronSpec(unroll=T)), dict(batch_shards=B)],
    ids=["remat", "unroll", "batch_shards"],
)
def test_fast_paths_give_the_same_loss_gradients_and_statistics(fast):
    """Recomputing blocks in the backward pass, unrolling the LIF scans, or folding time per
    batch shard is a speed knob only."""
    plain = models.get_model(
        "resnet19", width=4, stage_sizes=(1, 1), hidden_features=8, time_steps=T, num_classes=K
    )
    x = jax.random.uniform(jax.random.key(0), (B, 8, 8, 3)) * 4
    labels = jnp.arange(B) % K
    variables = jax.jit(lambda x: plain.init(jax.random.key(1), x, train=False))(x)

    def loss_and_grads(model):
        def loss(params):
            logits, state = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            ce = jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(B), labels])
            return ce, state["batch_stats"]

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    (value, stats), grads = loss_and_grads(plain)
    (value_fast, stats_fast), grads_fast = loss_and_grads(plain.clone(**fast))
    assert float(optax.tree.norm(grads)) > 0
    np.testing.assert_allclose(value_fast, value, rtol=1e-6)
    chex.assert_trees_all_close(grads_fast, grads, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(stats_fast, stats, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 devices (tests/conftest.py)")
@pytest.mark.parametrize("memory", ["none", "compact"])
def test_axis_name_gives_global_statistics_inside_shard_map(memory):
    """A zoo model in hand-written ``shard_map`` over a split batch equals the unsplit model.

    With ``axis_name`` every norm takes the global batch's statistics: the same
    logits, running statistics and parameter gradients (shared parameters'
    summed over devices) as one device on the whole batch. Without it each
    device normalizes its own quarter, which gives other statistics.
    """
    model = models.get_model(
        "resnet19", width=4, stage_sizes=(1, 1), hidden_features=8, time_steps=T, num_classes=K
    ).clone(memory=memory)
    rng = np.random.default_rng(0)
    # batch rows of different scales, so per-device statistics differ from global ones
    x = jnp.asarray(rng.uniform(0, 4, (8, 8, 8, 3)) * np.arange(1, 9)[:, None, None, None])
    w = jnp.asarray(rng.normal(size=(8, K)))
    variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)

    def loss(params, x, w, model):
        logits, state = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits * w), (logits, state["batch_stats"])

    grad = jax.grad(loss, has_aux=True)
    grads, (logits, stats) = jax.jit(functools.partial(grad, model=model))(
        variables["params"], x, w
    )
    mesh = jax.make_mesh((4,), ("data",))
    split, shared = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()

    per_device = jax.shard_map(
        functools.partial(grad, model=model.clone(axis_name="data")),
        mesh=mesh,
        in_specs=(shared, split, split),
        out_specs=(shared, (split, shared)),
    )
    on = functools.partial(jax.sharding.NamedSharding, mesh)
    params_r, x_s, w_s = jax.device_put(
        (variables["params"], x, w), (on(shared), on(split), on(split))
    )
    got_grads, (got_logits, got_stats) = jax.jit(per_device)(params_r, x_s, w_s)
    assert float(optax.tree.norm(grads)) > 0
    np.testing.assert_allclose(got_logits, logits, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(got_stats, stats, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_grads, grads, rtol=1e-4, atol=1e-5)
    # not vacuous: per-device statistics give other running estimates
    local = jax.shard_map(
        lambda x: model.apply(variables, x, train=True, mutable=["batch_stats"])[1],
        mesh=mesh,
        in_specs=split,
        out_specs=split,
    )
    device0 = np.asarray(jax.jit(local)(x_s)["batch_stats"]["stem"]["neuron"]["norm"]["mean"])[:4]
    assert np.abs(device0 - np.asarray(stats["stem"]["neuron"]["norm"]["mean"])).max() > 1e-2


def test_batch_shards_change_the_row_order_only():
    """``batch_shards=2`` folds time into the batch per half of the batch (each device its own
    examples): other rows in the convs, the same logits, statistics and gradients."""
    model = models.get_model("digits_cnn", time_steps=T, **TINY)
    sharded = model.clone(batch_shards=2)
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1)) * 16  # B = 4, T = 3
    variables = filled(abstract_init(model, x))
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4, K)), jnp.float32)

    def run(m):
        def loss(params):
            logits, state = m.apply(
                {**variables, "params": params},
                x,
                train=True,
                mutable=["batch_stats", "intermediates"],
                capture_intermediates=lambda mdl, _: isinstance(mdl, nn.Conv),
            )
            return jnp.sum(logits * w), (logits, state)

        (_, (logits, state)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        evaluated = m.apply(variables, x, train=False)
        return logits, evaluated, state, grads

    logits, evaluated, state, grads = jax.jit(lambda: run(model))()
    logits2, evaluated2, state2, grads2 = jax.jit(lambda: run(sharded))()
    assert float(optax.tree.norm(grads)) > 0
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(evaluated2, evaluated, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(state2["batch_stats"], state["batch_stats"], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads2, grads, rtol=1e-4, atol=1e-6)
    # not vacuous: the conv saw its T*B rows in the per-shard order (shard, t, b)
    rows = state["intermediates"]["conv1"]["conv"]["__call__"][0]
    rows2 = state2["intermediates"]["conv1"]["conv"]["__call__"][0]
    expected = snn.fold_time(snn.unfold_time(rows, T), 2)[0]
    assert np.abs(np.asarray(rows2) - np.asarray(rows)).max() > 1e-3
    np.testing.assert_allclose(rows2, expected, rtol=1e-5, atol=1e-5)


def test_digits_cnn_norms_fold_into_convs(digits):
    model, variables, x = digits
    update = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1])
    variables = {**variables, **update(variables, x)}  # non-trivial running statistics
    folded_model, folded = analysis.fold_norms(model, variables, x)
    assert folded_model.norm == "none"
    ref = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    out = jax.jit(lambda v, x: folded_model.apply(v, x, train=False))(folded, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(norm="layer"),
            r"unknown norm 'layer'; expected one of \('tdbn', 'bn', 'none', 'tebn', 'bntt'\)",
        ),
        (dict(memory="offload"), r"unknown memory option 'offload'"),
        (dict(stem="vit"), r"unknown stem 'vit'"),
    ],
)
def test_bad_settings_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get_model("resnet18", **kwargs)


def test_neuron_settings_are_one_spec():
    """The neuron is one ``NeuronSpec`` field: a bad one fails when the spec is made, a string
    or a loose neuron field is an error naming it (tests/test_nn_modules.py checks each field)."""
    with pytest.raises(
        ValueError, match=r"NeuronSpec\.kind = 'tanh': must be one of \('lif', 'relu'\)"
    ):
        models.get_model("resnet18", neuron=snn.NeuronSpec(kind="tanh"))
    with pytest.raises(ValueError, match=r"NeuronSpec\.surrogate = 'erf': must be one of"):
        models.get_model("resnet18", neuron=snn.NeuronSpec(surrogate="erf"))
    with pytest.raises(TypeError, match=r"neuron must be a snn_jax.nn.NeuronSpec, got 'relu'"):
        models.get_model("resnet18", neuron="relu")
    for field in ("tau", "v_th", "surrogate", "unroll", "reset", "channel_threshold", "gradient"):
        with pytest.raises(TypeError, match=field):
            models.get_model("resnet18", **{field: getattr(snn.NeuronSpec(), field)})
    with pytest.raises(ValueError, match=r"memory='compact' needs .*reset='subtract'"):
        models.get_model("resnet18", memory="compact", neuron=snn.NeuronSpec(reset="subtract"))


@pytest.mark.parametrize("name", ["resnet19", "plain", "digits_cnn"])
def test_bad_input_raises_value_error(name):
    model = models.get_model(name, time_steps=T, **TINY)
    variables = abstract_init(model, static_input())
    bad_rank = jax.ShapeDtypeStruct((B, 8, 8), jnp.float32)
    with pytest.raises(ValueError, match=r"ndim 4 .*ndim 5 .*got shape \(2, 8, 8\)"):
        abstract_apply(model, variables, bad_rank, True)
    frames = jax.ShapeDtypeStruct((T + 1, *DIMS["BHWC"]), jnp.float32)
    with pytest.raises(ValueError, match=r"T = 4 steps but the model has time_steps = 3"):
        abstract_apply(model, variables, frames, True)
    with pytest.raises(ValueError, match=r"time_steps, which is None"):
        abstract_apply(model.clone(time_steps=None), variables, static_input(), True)
