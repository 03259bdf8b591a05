"""The configs that reproduce the paper: every variant passes the engine's checks, every smoke
variant trains end to end (tfds ``mock_data``, synthetic DVS recordings)."""

import contextlib
import importlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments.configs import paper
from snn_jax import data as data_lib
from snn_jax import training
from snn_jax.data.events import EVENT_DATASETS
from snn_jax.nn import NeuronSpec
from snn_jax.training import sharding
from tests.data.fakes import fake_prepared, install_fake_tonic, lay_out_tonic_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config module -> (T without an argument, the T variants its docstring lists)
CONFIGS = {
    "cifar10_resnet19": (4, (2, 4, 6)),
    "cifar10_resnet19_tet": (4, (2, 4, 6)),
    "cifar10_resnet19_tebn": (4, (2, 4, 6)),
    "cifar100_resnet19": (4, (4,)),
    "imagenet_resnet34": (6, (6,)),
    "imagenet_resnet50": (6, (6,)),
    "dvsgesture_resnet17": (40, (40,)),
    "cifar10dvs_resnet19": (10, (10,)),
    "dvsgesture_resnet17_ta": (30, (30,)),
    "cifar10dvs_resnet19_ta": (10, (10,)),
}
FULL = [(m, f"t{t}") for m, (_, ts) in CONFIGS.items() for t in ts]
# The attention variants add to CI only a short smoke run, at T = 4 (their smoke at the
# official T = 30 or 10 took as long again as the configs they extend).
SMOKE_AT_T4 = {"dvsgesture_resnet17_ta", "cifar10dvs_resnet19_ta"}
SMOKE = [(m, "t4,smoke" if m in SMOKE_AT_T4 else "smoke") for m in CONFIGS]
# Smoke runs compile three ResNets each (init, train, eval step); on one device XLA:CPU
# compiles them about a third faster than on four. tests/test_training.py covers four
# devices with static images; time-major event batches (sharded on axis 1) get them here.
SMOKE_ON_ALL_DEVICES = {"cifar10dvs_resnet19"}

# Parameter counts at full size with the paper's inputs (tests/test_models.py derives them).
PARAMETERS = {
    "cifar10_resnet19": 12_698_250,
    "imagenet_resnet34": 21_797_672,
    "imagenet_resnet50": 25_557_032,
}


def lif_layers(config):
    """Spiking layers of a config's ResNet: the stem, 2 per basic block or 3 per bottleneck,
    and the hidden FC unit if there is one."""
    per_block = 3 if config.model.name == "resnet50" else 2
    hidden = 1 if config.model.get("hidden_features") else 0
    return 1 + per_block * sum(config.model.stage_sizes) + hidden


def load(module, arg=None):
    return importlib.import_module(f"experiments.configs.{module}").get_config(arg)


def num_classes(config):
    return data_lib.describe(config.data).num_classes


def example_input(config):
    """One example in the layout the pipeline feeds the model (batch 1)."""
    return jax.ShapeDtypeStruct(data_lib.describe(config.data).batch_shape(1), jnp.float32)


@pytest.mark.parametrize(("module", "arg"), FULL + SMOKE)
def test_config_passes_the_engines_checks(module, arg):
    c = load(module, arg)
    variant = paper.Variant.parse(arg, CONFIGS[module][0])
    assert c.name == module + variant.suffix
    assert c.time_steps == variant.time_steps
    if c.data.name in EVENT_DATASETS:
        assert c.data.time_steps == c.time_steps  # frames per recording follow T
    data_lib.DataConfig.from_config(c.data)
    for key in ("batch_size", "eval_batch_size"):
        assert c[key] % 8 == 0, f"{key} = {c[key]} does not split over 1, 2, 4 or 8 devices"
    total = c.num_train_steps if c.num_train_steps > 0 else c.num_epochs * 1000  # any epoch size
    schedule = training.make_schedule(c.optimizer, total)
    assert float(schedule(c.optimizer.warmup_steps)) == pytest.approx(c.optimizer.learning_rate)
    training.make_optimizer(c.optimizer, total)

    model = training.build_model(c, num_classes(c))
    # the config's flat neuron keys are the model's one NeuronSpec (model.neuron is its kind)
    assert model.neuron == NeuronSpec.from_config(c.model)
    assert model.neuron.kind == c.model.neuron
    for key in NeuronSpec.config_keys() - {"neuron"}:
        if key in c.model:
            assert getattr(model.neuron, key) == c.model[key], key
    x = example_input(c)
    variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (1, num_classes(c))
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
    if not variant.smoke and module in PARAMETERS:
        assert count == PARAMETERS[module]
    if variant.smoke:
        assert count < 250_000  # ResNet-50: 129k of them in the 1000-class decoder
        assert c.num_train_steps == paper.SMOKE_STEPS


@pytest.mark.parametrize("module", list(CONFIGS))
def test_docstring_commands_parse_to_the_config(module, monkeypatch):
    """Each command in a config's docstring, parsed as ``experiments.main`` parses it."""
    monkeypatch.chdir(REPO)
    doc = importlib.import_module(f"experiments.configs.{module}").__doc__
    commands = [line.split() for line in doc.splitlines() if "python -m experiments.main" in line]
    assert commands, f"{module}'s docstring has no command"
    args = set()
    for words in commands:
        assert words[:3] == ["python", "-m", "experiments.main"]
        assert len(words) == 4, f"expected only --config=... in {' '.join(words)!r}"
        path, _, arg = words[3].removeprefix("--config=").partition(":")
        assert path == f"experiments/configs/{module}.py"
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv)
        fv(["main", *words[3:]])
        assert fv.config.to_dict() == load(module, arg or None).to_dict()
        args.add(arg)
    assert "smoke" in args
    for t in CONFIGS[module][1]:
        assert f"t{t}" in args or (t == CONFIGS[module][0] and "" in args)


def test_variant_arguments():
    assert paper.Variant.parse("t6,smoke", 4) == paper.Variant(6, True)
    assert paper.Variant.parse(" smoke , t2 ", 4) == paper.Variant(2, True)
    assert paper.Variant.parse("", 40) == paper.Variant(40, False)
    c = load("cifar10_resnet19", "t6,smoke")
    assert (c.name, c.time_steps, c.model.width) == ("cifar10_resnet19_t6_smoke", 6, 4)
    for bad in ("t0", "T4", "t", "fast", "t4;smoke"):
        with pytest.raises(ValueError, match="t<N>"):
            load("cifar10_resnet19", bad)


def _prepare_data(config, tmp_path, monkeypatch):
    """Fake data on disk for ``config``; returns the context that serves its records."""
    name = config.data.name
    if name in EVENT_DATASETS:
        install_fake_tonic(monkeypatch)
        config.data.data_dir = lay_out_tonic_files(tmp_path, name)
        return contextlib.nullcontext()
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("PIL")  # tfds decodes the mock images with it
    config.data.data_dir = fake_prepared(tmp_path, name)
    return tfds.testing.mock_data(num_examples=16)


@pytest.mark.parametrize(("module", "arg"), SMOKE)
def test_smoke_variant_trains_evaluates_and_checkpoints(module, arg, tmp_path, monkeypatch):
    c = load(module, arg)
    if module not in SMOKE_ON_ALL_DEVICES:
        make_mesh = sharding.make_mesh
        monkeypatch.setattr(sharding, "make_mesh", lambda: make_mesh(jax.devices()[:1]))
    workdir = tmp_path / "workdir"
    data_context = _prepare_data(c, tmp_path / "data", monkeypatch)
    with data_context:
        state, summary = training.train_and_evaluate(c, str(workdir))

    steps = paper.SMOKE_STEPS
    assert summary["steps"] == summary["total_steps"] == steps
    assert int(state.step) == steps  # the final state comes back with the summary
    assert not summary["interrupted"]
    assert summary["config_name"] == c.name
    assert summary["devices"] == (jax.device_count() if module in SMOKE_ON_ALL_DEVICES else 1)
    assert json.loads((workdir / "summary.json").read_text()) == summary
    assert os.listdir(workdir / "checkpoints") == [str(steps)]
    assert 0.0 <= summary["final_test_accuracy"] <= 1.0
    if c.data.get("validation_fraction", 0.0):  # one evaluation: it is the selected one
        assert summary["test_accuracy_at_best_validation"] == summary["final_test_accuracy"]
        assert summary["best_validation_step"] == steps
    else:
        assert summary["best_validation_accuracy"] is None
        assert summary["test_accuracy_at_best_validation"] is None
    assert np.isfinite(summary["final_test_loss"])
    assert summary["skipped_steps"] == 0
    assert len(summary["firing_rates"]) == lif_layers(c)
    assert all(0.0 <= r <= 1.0 for r in summary["firing_rates"].values())

    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    test = [x for x in lines if x["split"] == "test"]
    assert [x["step"] for x in train] == list(range(1, steps + 1))
    assert all(np.isfinite(x["loss"]) and np.isfinite(x["grad_norm"]) for x in train)
    assert [x["step"] for x in test] == [steps]
