"""experiments/compare_methods.py: a smoke run of every kind of row, its outputs, the configs."""

import copy
import doctest
import importlib
import json
import os

import jax
import jax.numpy as jnp
import pytest

from experiments import compare_methods
from experiments.configs import compare_base, compare_digits
from snn_jax import conversion
from snn_jax.training import TrainResult, build_model

COMPARE_CONFIGS = ["compare_digits", "compare_cifar10_resnet19", "compare_imagenet_resnet34"]
INPUTS = {"digits": (8, 8, 1), "cifar10": (32, 32, 3), "imagenet2012": (224, 224, 3)}
CLASSES = {"digits": 10, "cifar10": 10, "imagenet2012": 1000}


def test_docstring_examples():
    result = doctest.testmod(compare_methods, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_smoke_run_has_every_kind_of_row_and_resumes(tmp_path):
    config = compare_digits.get_config()
    # a directly trained SNN ("stbp") runs the ANN's code path (train_or_load, measure)
    config.compare.smoke.methods = ("ann", "conversion_p999", "hybrid")
    rows = compare_methods.run(config, str(tmp_path), smoke=True)
    assert [(r["key"], r["time_steps"]) for r in rows] == [
        ("ann", 1),
        ("conversion_p999", 2),
        ("hybrid", 2),
    ]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["test_examples"] == 360
        assert row["energy_uj"] > 0
    ann, conv, hybrid = rows
    assert (ann["spikes_per_image"], ann["sops"]) == (0, 0)
    assert ann["macs"] > 0
    assert hybrid["spikes_per_image"] > 0
    assert hybrid["sops"] > 0
    # the hand-over without norm is the converted network itself
    assert hybrid["step0_accuracy"] == conv["accuracy"]
    assert 0.0 <= conv["ann_agreement"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    table = (tmp_path / "results.md").read_text()
    assert table.startswith("| method | T | test acc. (%)")
    assert len(table.splitlines()) >= 2 + len(rows)
    assert (tmp_path / "accuracy_vs_time_steps.png").stat().st_size > 0
    # a second run loads the trained ANN instead of training it again
    config.compare.smoke.methods = ("ann",)
    again = compare_methods.run(config, str(tmp_path), smoke=True)
    assert again[0]["accuracy"] == ann["accuracy"]
    assert os.listdir(tmp_path / "ann" / "checkpoints") == ["2"]
    # the fine-tuned row came from the 99.9th-percentile conversion: not to be reused for another
    config.compare.smoke.methods = ("ann", "conversion_p999", "hybrid")
    config.compare.methods.conversion_p999.percentile = 50.0
    with pytest.raises(ValueError, match=r"hand_over\.percentile: 99\.9 -> 50\.0"):
        compare_methods.run(config, str(tmp_path), smoke=True)


def test_a_stopped_training_ends_the_comparison(tmp_path, monkeypatch):
    """A row whose training was stopped (SIGTERM) is not measured as if it had finished."""

    workdirs = []

    def stopped(config, workdir):
        workdirs.append(workdir)
        return TrainResult(None, {"interrupted": True, "steps": 1, "total_steps": 2})

    monkeypatch.setattr(compare_methods, "train_and_evaluate", stopped)
    config = compare_digits.get_config()
    # a second ANN method (another seed) trains in a folder of its own name
    config.compare.methods.ann_seed1 = copy.deepcopy(config.compare.methods.ann)
    config.compare.methods.ann_seed1.overrides.seed = 1
    config.compare.smoke.methods = ("ann_seed1",)
    with pytest.raises(SystemExit, match="stopped at step 1 of 2; rerun"):
        compare_methods.run(config, str(tmp_path), smoke=True)
    assert workdirs == [str(tmp_path / "ann_seed1")]


def _example(config):
    shape = INPUTS[config.data.name]
    if config.data.get("image_size") and config.data.name == "imagenet2012":
        shape = (config.data.image_size, config.data.image_size, 3)
    return jnp.zeros((1, *shape), jnp.float32)


@pytest.mark.parametrize("module", COMPARE_CONFIGS)
def test_comparison_configs_are_consistent(module):
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    compare_methods.check_methods(config)
    methods = config.compare.methods
    assert {m.kind for m in methods.values()} == set(compare_base.KINDS)
    assert set(config.compare.smoke.methods) <= set(methods)
    key, steps = config.compare.reference
    assert steps in methods[key].time_steps
    x = _example(config)
    num_classes = CLASSES[config.data.name]
    ann_cfg = compare_methods.method_config(config, methods.ann, 1)
    assert (ann_cfg.model.neuron, ann_cfg.model.norm, ann_cfg.time_steps) == ("relu", "bn", 1)
    assert "compare" not in ann_cfg
    ann = build_model(ann_cfg, num_classes)
    snn = conversion.snn_twin(ann, 4)
    twin = jax.tree.map(lambda a: a.shape, jax.eval_shape(snn.init, jax.random.key(0), x))
    for name, m in methods.items():
        cfg = compare_methods.method_config(config, m, m.time_steps[0])
        assert cfg.time_steps == m.time_steps[0]
        if m.kind == "hybrid":  # the hand-over needs the converted network's layers
            model = build_model(cfg, num_classes).clone(norm="none")
            shapes = jax.eval_shape(model.init, jax.random.key(0), x)
            assert jax.tree.map(lambda a: a.shape, shapes) == twin, name
            assert (cfg.model.tau, cfg.model.reset, cfg.model.channel_threshold) == (
                1.0,
                "subtract",
                True,
            )
    assert methods.lee2020.overrides.model.gradient == "aggregate"
    assert methods.wu2019.overrides.model.norm == "none"
    smoke = compare_methods.apply_smoke(config)
    assert all(m.time_steps in ((1,), (2,)) for m in smoke.compare.methods.values())


@pytest.mark.parametrize(
    ("module", "v_th", "tau"), [("wu2019_digits", 0.5, 0.2), ("wu2019_cifar10", 0.75, 0.25)]
)
def test_wu2019_configs(module, v_th, tau):
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    assert (config.time_steps, config.data.time_steps) == (12, 12)
    assert (config.model.norm, config.model.v_th, config.model.tau) == ("none", v_th, tau)
    assert (config.model.surrogate, config.model.surrogate_param) == ("rectangular", 1.0)
    model = build_model(config, CLASSES[config.data.name])
    shapes = jax.eval_shape(model.init, jax.random.key(0), _example(config))
    assert "batch_stats" not in shapes  # no norm layer


def test_bad_methods_are_rejected():
    config = compare_digits.get_config()
    config.compare.methods.hybrid.source = "ann"
    with pytest.raises(ValueError, match="not a conversion"):
        compare_methods.check_methods(config)
    config = compare_digits.get_config()
    config.compare.methods.ann.kind = "svm"
    with pytest.raises(ValueError, match="unknown kind"):
        compare_methods.check_methods(config)
    config = compare_digits.get_config()
    config.compare.smoke.methods = ("nope",)
    with pytest.raises(ValueError, match="unknown methods"):
        compare_methods.apply_smoke(config)


def test_reference_sentence_when_conversion_never_matches():
    rows = [
        {"key": "ref", "method": "R", "time_steps": 4, "accuracy": 0.99},
        {"key": "c", "kind": "conversion", "method": "C", "time_steps": 4, "accuracy": 0.2},
        {"key": "c", "kind": "conversion", "method": "C", "time_steps": 64, "accuracy": 0.98},
    ]
    (sentence,) = compare_methods.compare_with_reference(rows, ("ref", 4))
    assert sentence == (
        "R at T = 4 (99.00 %) beats C at T = 4 (20.00 %); C does not reach 99.00 % up to "
        "T = 64 (best 98.00 %)."
    )
    assert compare_methods.compare_with_reference(rows, ("missing", 4)) == []


def test_experiment_scripts_import_together():
    # absl flags are process-global: scripts imported by tests define theirs only when run
    for name in (
        "experiments.compare_methods",
        "experiments.gradient_norm",
        "experiments.main",
        "experiments.benchmarks.run",
    ):
        importlib.import_module(name)


def test_scripts_say_how_to_install_matplotlib(monkeypatch, tmp_path):
    import importlib.util

    from experiments import require_matplotlib

    require_matplotlib("x")  # installed here: no error
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a),
    )
    with pytest.raises(ImportError, match=r"pip install -e '\.\[notebooks\]'"):
        compare_methods.run(compare_digits.get_config(), str(tmp_path), smoke=True)
    assert not list(tmp_path.iterdir())  # nothing trained before the error
