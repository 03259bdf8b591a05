"""experiments/benchmarks/run.py --smoke: every section runs and writes JSON and markdown."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_run_writes_every_section(tmp_path):
    cmd = [sys.executable, "-m", "experiments.benchmarks.run", "--smoke", f"--out={tmp_path}"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as users run it
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["smoke"] is True
    assert results["machine"]["devices"] == 1
    assert {"cpu", "cores", "jax", "backend", "device_kind"} <= set(results["machine"])
    assert results["machine"]["xla_flags"] == ""
    assert results["dtype"] == "float32"
    assert results["machine"]["allocator"] == "reuse"

    (step,) = results["step"]
    assert step["T"] == 2
    for key in ("snn_step_s", "ann_step_s", "snn_compile_s", "ann_compile_s"):
        assert step[key] > 0, key
    assert step["ratio_snn_over_ann"] > 0
    for case in ("snn", "ann"):
        low, high = step[f"{case}_spread_s"]
        assert low <= step[f"{case}_step_s"] <= high

    lif = results["lif"]
    assert lif["dense_lif_s"] > 0
    for row in lif["scan"]:
        assert 0 < row["floor_min_s"] <= row["floor_s"]
        for case in ("scalar_zero", "channel_subtract"):
            for unroll in (1, 8):
                key = f"{case}_unroll{unroll}"
                assert 0 < row[f"{key}_min_s"] <= row[f"{key}_s"]

    cases = {r["case"] for r in results["memory"]}
    assert cases == {"ann", "snn_none", "snn_remat", "snn_compact"}
    assert all(r["temp_bytes"] > 0 and r["step_s"] > 0 for r in results["memory"])

    with open(tmp_path / "results.md") as f:
        table = f.read()
    assert table in proc.stdout
    assert "train step: SNN (T, B) vs ANN twin (B*T)" in table
    assert "| 2 | snn_remat |" in table
    assert "| 2 | snn_compact |" in table
    assert "| compute dtype | float32 |" in table


def test_bfloat16_peak_memory_cases_run_in_their_own_processes(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.benchmarks.run",
        "--smoke",
        "--sections=memory",
        "--peak_rss",
        "--memory_options=none",
        "--dtype=bfloat16",
        f"--out={tmp_path}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["dtype"] == "bfloat16"
    assert {r["case"] for r in results["memory"]} == {"ann", "snn_none"}
    assert all(r["peak_rss_bytes"] > 0 and r["temp_bytes"] > 0 for r in results["memory"])


ALLOCATOR_PROBE = """
import resource, sys, threading
import numpy as np
from experiments.benchmarks.run import use_allocator

mode = use_allocator(sys.argv[1])
np.ones(1 << 24)  # 128 MiB, freed at once


def work():  # as XLA's threads do
    for _ in range(4):
        np.ones(1 << 22)  # 32 MiB


before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    np.ones(1 << 24)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
print(mode, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_reuse_allocator_serves_large_arrays_without_page_faults():
    faults = {}
    for mode in ("system", "reuse"):
        cmd = [sys.executable, "-c", ALLOCATOR_PROBE, mode]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got, count = proc.stdout.split()
        assert got == mode
        faults[mode] = int(count)
    # 1 GiB of fresh pages: at least 512 faults even with 2 MiB huge pages;
    # heap memory that was touched before faults no more.
    assert faults["system"] >= 512
    assert faults["reuse"] * 10 < faults["system"]


def test_config_step_memory_of_static_and_event_configs():
    from experiments.benchmarks import run

    rows = run.bench_configs(smoke=True)
    assert [(r["config"], r["variant"], r["memory"]) for r in rows] == [
        ("cifar10_resnet19", "smoke", "none"),
        ("cifar10_resnet19", "smoke", "compact"),
        ("dvsgesture_resnet17", "smoke", "none"),
        ("dvsgesture_resnet17", "smoke", "compact"),
    ]
    for row in rows:
        assert row["temp_bytes"] > 0
        assert row["compile_s"] > 0
        assert row["batch"] == 2
    assert [r["T"] for r in rows] == [4, 4, 40, 40]
    # Twice the batch needs more working memory (activations scale with it).
    bigger = run.config_step_memory("cifar10_resnet19", "smoke", 4)
    assert bigger["memory"] == "none"
    assert bigger["temp_bytes"] > rows[0]["temp_bytes"]
    table = run.markdown({"machine": {}, "dtype": "float32", "network": "plain", "configs": rows})
    assert "| dvsgesture_resnet17 | smoke | compact | 40 | 2 |" in table
