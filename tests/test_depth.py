"""experiments/depth.py: the smoke run trains every cell, measures it, writes the tables and
plots, and resumes cell by cell; digits_plain.py takes its model fields from the command line."""

import dataclasses
import json

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import depth
from snn_jax.training import check_config


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run for the module: 2 cells of 2 steps (about 20 s, most of it compiling)."""
    workdir = tmp_path_factory.mktemp("depth")
    return depth.run(depth.SMOKE, str(workdir)), workdir


def test_smoke_run_writes_cells_tables_and_plots(smoke):
    results, workdir = smoke
    s = depth.SMOKE
    assert not results["interrupted"]
    assert [r["name"] for r in results["cells"]] == [c.name for c in depth.cells(s)]
    for name in ("accuracy_vs_depth.png", "curves.png"):
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["settings"] == json.loads(json.dumps(dataclasses.asdict(s)))
    for record in saved["cells"]:
        assert record["steps"] == s.num_train_steps
        assert 0.0 <= record["final_test_accuracy"] <= 1.0
        # one evaluation, at the end: it is the one selected on the validation split
        assert record["test_accuracy_at_best_validation"] == record["final_test_accuracy"]
        # a plain CNN of depth d: d spiking units, each a block with phi before and after
        assert len(record["firing_rates"]) == record["depth"]
        assert len(record["phi_init"]) == len(record["phi_final"]) == record["depth"]
        assert all(p >= 0 for p in record["phi_init"] + record["phi_final"])
        assert [step for step, _ in record["curves"]["test"]] == [s.num_train_steps]
        assert (workdir / "cells" / record["name"] / "cell.json").exists()
    md = (workdir / "results.md").read_text()
    assert "| network | tdbn | none |" in md
    tdbn = next(r for r in saved["cells"] if r["norm"] == "tdbn")
    assert f"| plain 2 | {100 * tdbn['final_test_accuracy']:.2f} |" in md


def test_finished_cells_are_not_rerun(smoke, monkeypatch):
    results, workdir = smoke

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(depth, "train_and_evaluate", fail)
    again = depth.run(depth.SMOKE, str(workdir), plots=False)
    assert again["cells"] == json.loads(json.dumps(results["cells"]))


def test_summaries_against_hand_values():
    rates = {"unit1": 0.2, "unit2": 0.0, "unit3": 0.1, "unit4": 0.0, "unit5": 0.0}
    assert depth._silent_from(rates) == 4
    assert depth._silent_from({"unit1": 0.1}) is None
    assert depth._geomean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert depth._geomean([0.5, 0.0]) == 0.0
    names = ["unit10/neuron", "unit2/neuron", "unit1/neuron"]
    assert sorted(names, key=depth._layer_order) == [
        "unit1/neuron",
        "unit2/neuron",
        "unit10/neuron",
    ]


def test_cell_configs_pass_the_engines_checks():
    s = depth.Settings()
    assert len(depth.cells(s)) == (len(s.depths) + 1) * len(s.norms)
    plain = depth.cell_config(s, depth.Cell("plain", 20, "bn", 3))
    check_config(plain)
    assert (plain.model.name, plain.model.depth, plain.model.norm, plain.seed) == (
        "plain",
        20,
        "bn",
        3,
    )
    resnet = depth.cell_config(s, depth.Cell("resnet19", 19, "tdbn", 0))
    check_config(resnet)
    assert (resnet.model.name, resnet.model.width) == ("resnet19", s.resnet_width)
    assert "depth" not in resnet.model


def test_settings_errors_name_the_flag():
    with pytest.raises(ValueError, match="--norms"):
        depth.Settings(norms=("tdbn", "tdnb"))
    with pytest.raises(ValueError, match="--depths"):
        depth.Settings(depths=(0,))


def test_digits_plain_model_fields_from_the_command_line():
    fv = flags.FlagValues()
    argv = ["prog", "--config.model.depth=12", "--config.model.width=8", "--config.model.norm=none"]
    config_flags.DEFINE_config_file(
        "config", "experiments/configs/digits_plain.py", flag_values=fv, sys_argv=argv
    )
    fv(argv)
    c = fv.config
    assert (c.model.name, c.model.depth, c.model.width, c.model.norm) == ("plain", 12, 8, "none")
    check_config(c)
    assert np.isclose(c.data.validation_fraction, 0.1)


def test_flags_override_the_settings():
    from types import SimpleNamespace

    f = SimpleNamespace(
        smoke=False, norms=["none"], depths=[], seeds=["1", "2"], resnet_width=None, num_epochs=3
    )
    s = depth.settings_from_flags(f)
    assert (s.norms, s.depths, s.seeds, s.resnet_width, s.num_epochs) == (
        ("none",),
        (),
        (1, 2),
        8,
        3,
    )
    assert [c.name for c in depth.cells(s)] == ["resnet19_none_s1", "resnet19_none_s2"]
    with pytest.raises(ValueError, match="--seeds takes integers"):
        depth.settings_from_flags(SimpleNamespace(**{**vars(f), "seeds": ["a"]}))
