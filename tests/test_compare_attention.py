"""``python -m experiments.compare_attention --smoke`` end to end on 40 generated recordings.

The attention arm is ``experiments/configs/event_digits_ta.py:smoke``, so this is also
that config's smoke run in CI.
"""

import json

import jax
import numpy as np
import pytest

from experiments import compare_attention
from snn_jax.training import sharding


@pytest.fixture
def one_device_digits(few_digits, monkeypatch):
    """``few_digits`` (conftest) on one device."""
    make_mesh = sharding.make_mesh
    monkeypatch.setattr(sharding, "make_mesh", lambda: make_mesh(jax.devices()[:1]))
    return few_digits


def test_score_separation_by_hand():
    scores = {"fc": np.array([[0.2, 0.8, 0.6, 0.4], [0.5, 0.5, 0.9, 0.1]])}
    idle = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])  # recording 2: no idle bin
    sep = compare_attention.score_separation(scores, idle)["fc"]
    assert sep["noise_only"] == {"mean": 0.2, "std": 0.0, "recordings": 1}
    assert sep["saccade"]["mean"] == pytest.approx((0.7 + 0.5) / 2)
    assert sep["saccade"]["std"] == pytest.approx(0.1)
    assert sep["saccade_minus_noise"]["mean"] == pytest.approx(0.5)
    assert sep["lower_on_noise_in"] == 1.0


def test_smoke_run_writes_tables_and_plots(one_device_digits, tmp_path):
    results = compare_attention.run(
        str(tmp_path / "work"),
        [4],
        arms=["attention"],  # the plain arm is event_digits.py:smoke, tested with the data
        smoke=True,
        cache_dir=str(tmp_path / "cache"),
    )
    arm = results["attention"][4]
    assert set(arm["separation"]) == {"conv1/neuron", "conv2/neuron", "fc/neuron"}
    assert np.asarray(arm["scores"]["fc/neuron"]).shape == (10, 4)
    (row,) = arm["pruning"]
    assert row["threshold"] == 0.5
    assert 0.0 <= row["dropped_fraction"] <= 1.0
    assert 0.0 <= row["accuracy"] <= 1.0
    assert 0.0 <= arm["final_test_accuracy"] <= 1.0
    saved = json.loads((tmp_path / "work" / "results.json").read_text())
    assert saved["attention"]["4"]["pruning"] == arm["pruning"]
    for name in ("results.md", "attention_scores.png", "attention_pruning.png"):
        assert (tmp_path / "work" / name).stat().st_size > 0
