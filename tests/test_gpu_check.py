"""experiments/benchmarks/gpu_check.py: the smoke run on CPU (every section, the checks pass),
the targets and tables from GPU-shaped results, and the SpikingJelly case without PyTorch."""

import importlib.util
import json

import pytest
from absl import flags

from experiments.benchmarks import gpu_check, spikingjelly_resnet

CHECKS = ["lif_scan_vs_numpy", "tdbn_vs_numpy", "compact_equals_plain", "memory_options_train"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # run.py's flags (--dtype) at their defaults
    out = tmp_path_factory.mktemp("gpu_check")
    return out, gpu_check.run_all(str(out), smoke=True)


def test_smoke_run_passes_every_check_and_runs_every_section(smoke):
    out, results = smoke
    assert json.loads((out / "results.json").read_text()) == results
    assert results["machine"]["backend"] == "cpu"
    assert {"jax", "jaxlib", "device_kind", "nvidia_smi"} <= set(results["machine"])
    assert results["settings"]["smoke"] is True

    checks = {c["check"]: c for c in results["checks"]}
    first_config = gpu_check.paper_configs()[0]
    assert list(checks) == [*CHECKS, f"config_smoke:{first_config}"]
    for name, c in checks.items():
        assert c["passed"] is True, (name, c.get("error"))
    assert checks["compact_equals_plain"]["grads_max_rel"] < 1e-3
    losses = checks["memory_options_train"]
    assert losses["none_losses"] == pytest.approx(losses["compact_losses"], rel=1e-4)

    (step,) = results["step"]
    assert (step["T"], step["B"], step["dtype"]) == (2, 2, "float32")
    assert step["ratio_snn_over_ann"] == step["snn_step_s"] / step["ann_step_s"]
    assert step["snn_temp_bytes"] > 0
    assert step["ann_compile_s"] > 0

    assert [r["case"] for r in results["memory"]] == ["snn_none", "snn_compact"]
    for r in results["memory"]:
        assert "error" not in r, r.get("error")
        assert r["temp_bytes"] > 0
        assert r["step_s"] > 0
        assert r["peak_bytes"] is None  # CPU devices have no memory_stats()

    (lif,) = results["lif"]
    assert lif["floor_s"] > 0
    for key in ("unroll1", "unroll_full"):
        assert lif[f"{key}_over_floor"] == lif[f"{key}_s"] / lif["floor_s"]

    status = results["spikingjelly"]["status"]
    if importlib.util.find_spec("torch") and importlib.util.find_spec("spikingjelly"):
        assert status == "ok"
    else:
        assert status.startswith("skipped: not installed")

    assert [t["target"] for t in results["targets"]] == list(gpu_check.TARGETS_TEXT.values())
    table = (out / "results.md").read_text()
    for heading in ("## Targets", "## Checks", "train step: SNN (T, B)", "## LIF", "SpikingJelly"):
        assert heading in table


def gpu_like_results():
    """Results shaped as a GPU run writes them (peak memory, SpikingJelly rows)."""
    mem = []
    for t, plain, compact, ann in ((4, 1000, 700, 1000), (16, 4000, 1900, 3000)):
        for case, temp, step_s in (("snn_none", plain, 1.0), ("snn_compact", compact, 1.2)):
            mem.append({"T": t, "B": 64, "case": case, "temp_bytes": temp, "step_s": step_s})
        mem.append({"T": t, "B": 64, "case": "ann", "temp_bytes": ann, "step_s": 0.9})
    for r in mem:
        r.update(
            peak_bytes=2 * r["temp_bytes"],
            peak_after_compile_bytes=r["temp_bytes"],
            compile_s=10.0,
            spread_s=[r["step_s"], r["step_s"]],
        )
    mem.append({"T": 8, "B": 64, "case": "snn_remat", "skipped": "time budget"})
    step = {
        "T": 4,
        "B": 64,
        "dtype": "float32",
        "snn_step_s": 0.011,
        "snn_spread_s": [0.01, 0.012],
        "ann_step_s": 0.01,
        "ann_spread_s": [0.01, 0.01],
        "ratio_snn_over_ann": 1.1,
        "snn_compile_s": 20.0,
        "ann_compile_s": 10.0,
    }
    lif = {"shape": [64, 128, 65536], "floor_s": 1e-3, "floor_gb_per_s": 4000.0}
    for key, ratio in (("unroll1", 3.5), ("unroll_full", 2.5)):
        lif.update({f"{key}_s": ratio * 1e-3, f"{key}_over_floor": ratio, f"{key}_compile_s": 1})
    sj_row = {
        "T": 4,
        "B": 64,
        "dtype": "float32",
        "step_s": 0.02,
        "spread_s": [0.02, 0.03],
        "first_step_s": 3.0,
        "peak_bytes": 1500,
    }
    return {
        "machine": {"backend": "gpu"},
        "settings": {"batch": 64, "network": "resnet19"},
        "elapsed_s": 400.0,
        "checks": [{"check": "lif_scan_vs_numpy", "passed": False, "error": "AssertionError: x"}],
        "step": [step, {"T": 6, "B": 64, "dtype": "bfloat16", "error": "XlaRuntimeError: oom"}],
        "memory": mem,
        "lif": [lif],
        "spikingjelly": {"status": "ok", "versions": {"torch": "2"}, "rows": [sj_row]},
    }


def test_targets_and_tables_of_a_gpu_run():
    results = gpu_like_results()
    results["targets"] = gpu_check.targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    text = gpu_check.TARGETS_TEXT
    assert met[text["step_ratio"]] is True  # 1.1 <= 1.15
    assert met[text["compact_vs_ann"]] is True  # 700 / 1000
    assert met[text["t16_compact"]] is True  # 1900 / 4000 = 0.475, time 1.2x
    assert met[text["lif_floor"]] is True  # the best unroll, 2.5x
    # faster (11 vs 20 ms); compact's peak 1400 <= 1500, plain's 2000 is not
    assert met[text["spikingjelly"]] is True
    measured = {t["target"]: t["measured"] for t in results["targets"]}
    assert "unroll_full 2.50x" in measured[text["lif_floor"]]
    assert "snn_compact peak 0.93x" in measured[text["spikingjelly"]]

    table = gpu_check.markdown(results)
    assert "| 4 | 64 | snn_compact | 0 | 0.70 | 0.70 | 0 | 0 | 1200.00 | 1.20 | 10.0 |" in table
    assert "| 8 | 64 | snn_remat | skipped (time budget) |" in table
    assert "| 6 | 64 | bfloat16 | error: XlaRuntimeError: oom |" in table
    assert "| lif_scan_vs_numpy | False |" in table


def test_targets_without_measurements_are_not_met_or_missed():
    results = gpu_like_results()
    results.update(step=[], memory=[], lif=[], spikingjelly={"status": "skipped: not installed"})
    assert all(t["met"] is None for t in gpu_check.targets(results))


def test_a_failing_case_is_recorded_and_a_late_one_skipped():
    budget = gpu_check.Budget(100.0)
    failed = gpu_check.guarded(lambda: {"x": 1 / 0}, budget, need_s=0)
    assert failed["error"].startswith("ZeroDivisionError")
    assert gpu_check.guarded(lambda: {"x": 1}, budget, need_s=0)["x"] == 1
    assert "time budget" in gpu_check.guarded(lambda: {"x": 1}, budget, need_s=1000)["skipped"]


def test_spikingjelly_case_without_pytorch_is_skipped_not_failed():
    if importlib.util.find_spec("torch") and importlib.util.find_spec("spikingjelly"):
        pytest.skip("PyTorch and SpikingJelly are installed here")
    result = spikingjelly_resnet.run([4], ["float32"], 2, 2, 60.0, smoke=True)
    assert result["status"].startswith("skipped: not installed")
