"""experiments/gradient_norm.py: the smoke run writes its JSON and PNG with the expected keys."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import gradient_norm as gn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``python -m experiments.gradient_norm --smoke``, run once for the module (~20 s)."""
    out = tmp_path_factory.mktemp("gradient_norm")
    cmd = [sys.executable, "-m", "experiments.gradient_norm", "--smoke", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out


def test_smoke_run_writes_json_and_png(smoke):
    stdout, out = smoke
    with open(out / "gradient_norm.json") as f:
        saved = json.load(f)
    with open(out / "gradient_norm.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(saved) == {"settings", "runs", "summary", "seconds"}
    assert saved["settings"] == json.loads(json.dumps(dataclasses.asdict(gn.SMOKE)))
    keys = [f"{a}/{n}" for a in gn.SMOKE.archs for n in gn.SMOKE.norms]
    assert list(saved["runs"]) == keys
    assert list(saved["summary"]) == keys
    steps = gn.SMOKE.train_steps + 1
    for key in keys:
        run = saved["runs"][key]
        assert {"layers", "blocks", "spiking_layers", "grad_norms", "phi", "phi_std"} <= set(run)
        assert {"moment_ratio", "firing_rates", "loss", "seconds"} <= set(run)
        assert run["layers"][-1].endswith("kernel")
        assert len(run["layers"]) >= gn.SMOKE.depth
        assert len(run["blocks"]) >= 1
        for name, width in [
            ("grad_norms", "layers"),
            ("phi", "blocks"),
            ("phi_std", "blocks"),
            ("moment_ratio", "blocks"),
            ("firing_rates", "spiking_layers"),
        ]:
            assert len(run[name]) == steps, name
            assert all(len(row) == len(run[width]) for row in run[name]), name
        assert len(run["loss"]) == gn.SMOKE.train_steps
        summary = saved["summary"][key]
        assert {"init", "final", "loss_first", "loss_last"} <= set(summary)
        assert {"phi_geomean", "grad_first_over_last", "dead_layers"} <= set(summary["init"])
    # with tdBN the network is alive at initialisation and phi is a finite positive number
    tdbn = saved["runs"][f"{gn.SMOKE.archs[0]}/tdbn"]
    assert all(r > 0 for r in tdbn["firing_rates"][0])
    assert all(math.isfinite(p) and p > 0 for p in tdbn["phi"][0])
    for key in keys:  # one line per model on stdout
        assert key in stdout


def test_summarize_on_a_hand_made_run():
    run = {
        "grad_norms": [[1.0, 10.0, 100.0, 5.0], [0.0, 1.0, 1.0, 1.0]],
        "phi": [[1.0, 4.0], [0.0, 1.0]],
        "moment_ratio": [[1.0, 3.0], [1.0, 1.0]],
        "firing_rates": [[0.2, 0.1], [0.2, 0.0]],
        "loss": [2.3],
    }
    s = gn.summarize(run)
    assert s["init"]["grad_first_over_last"] == pytest.approx(0.01)  # readout left out
    assert s["init"]["grad_log10_spread"] == pytest.approx(2.0)
    assert s["init"]["phi_geomean"] == pytest.approx(2.0)
    assert s["init"]["phi_product"] == pytest.approx(4.0)
    assert s["final"]["grad_log10_spread"] is None  # a gradient exactly 0
    assert s["final"]["phi_geomean"] == 0.0
    assert s["final"]["dead_layers"] == 1
    assert s["loss_first"] == s["loss_last"] == 2.3
