r"""Benchmarks: the SNN train step against its ANN twin, the LIF scan against a bandwidth floor.

    python -m experiments.benchmarks.run --out=benchmarks_out     # full, ~12 min on 2 CPU cores
    python -m experiments.benchmarks.run --smoke --out=/tmp/bench     # 2-layer net, for tests

Sections (``--sections``, comma separated):
- ``step``: ResNet-19 train step (tdBN + LIF, T steps, batch B) against the same
  architecture with ReLU + BN at batch B*T; one SGD-momentum step each, compile
  time excluded (reported under ``compile``); ratio SNN / ANN (the limit is 1).
- ``lif``: Dense(1024 -> 1024) + LIF over [64, 32, 1024], forward + backward of
  ``sum(spikes)``, and the LIF scan alone on [T, B, N] against an elementwise
  pass over the same array (a memory-bandwidth floor).
- ``memory``: XLA's compiled temporary memory of the ResNet-19 train step against
  T, for each memory option, and the ANN twin at batch B*T; with
  ``--peak_rss`` also the peak resident memory of a fresh process per case.
- ``configs`` (not in the default sections): XLA's compiled temporary memory of
  the train step of each paper config (``experiments/configs``) at its batch
  per device, compiled for this machine's backend; the configs' docstrings
  quote these as the working memory a GPU needs.

Times are medians over ``--repeats`` runs after a warm-up, with
``block_until_ready``; the spread is (min, max). The SNN and ANN steps of a
ratio are timed interleaved, so both see the same load. Writes ``results.json`` and
``results.md`` under ``--out`` and prints the table.

``--allocator=reuse`` (the default) keeps freed memory in one glibc heap for
reuse (see :func:`use_allocator`). With glibc's defaults, large arrays are
fresh ``mmap`` regions or land in per-thread heaps that are returned to the
system, and their pages fault in on first touch: on this project's CPU machine
the elementwise floor on [64, 32, 4096] then took 20 ms instead of 4.5 ms in
some runs, and the LIF ratios depended on which arrays glibc happened to reuse.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import snn_jax
from snn_jax import models
from snn_jax.data import describe
from snn_jax.nn import NeuronSpec
from snn_jax.training import create_train_state, make_optimizer, sharding, train_step
from snn_jax.training.loop import build_model

_OUT = flags.DEFINE_string("out", "benchmarks_out", "Output directory.")
_SMOKE = flags.DEFINE_bool(
    "smoke", False, "Tiny sizes and a 2-unit plain CNN: checks the script, measures nothing."
)
_SECTIONS = flags.DEFINE_list(
    "sections", ["step", "lif", "memory"], "Which benchmarks: step, lif, memory, configs."
)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per case (after one warm-up).")
_BATCH = flags.DEFINE_integer("batch", 4, "SNN batch size B of the step benchmark (ANN: B*T).")
_STEP_T = flags.DEFINE_list("time_steps", ["2", "4", "6"], "T for the step benchmark.")
_MEMORY_T = flags.DEFINE_list("memory_time_steps", ["4", "16"], "T for memory.")
_MEMORY_BATCH = flags.DEFINE_integer("memory_batch", 2, "SNN batch size B of the memory cases.")
_MEMORY_OPTIONS = flags.DEFINE_list(
    "memory_options",
    ["none", "remat", "compact"],
    "Memory options of the SNN (see models.MEMORY_OPTIONS).",
)
_DTYPE = flags.DEFINE_enum(
    "dtype",
    "float32",
    ["float32", "bfloat16"],
    "Compute dtype of convs and dense layers, SNN and ANN alike (norm statistics and "
    "membranes stay float32).",
)
_PEAK_RSS = flags.DEFINE_bool("peak_rss", False, "Also measure peak RSS (one process per case).")
_CASE = flags.DEFINE_string("case", None, "Internal: run one memory case, print JSON.")
_ALLOCATOR = flags.DEFINE_enum(
    "allocator",
    "reuse",
    ["reuse", "system"],
    "reuse: glibc keeps freed memory for reuse (no mmap per large array, no trimming); "
    "system: glibc's defaults.",
)

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def use_allocator(mode: str) -> str:
    """Sets how glibc's malloc serves this process's large arrays; returns the mode in effect.

    ``"reuse"``: one heap for all threads, no ``mmap`` for large blocks and no
    returning of freed heap memory to the system, so a buffer freed by one
    step is reused by the next, whichever XLA thread allocates it, without
    page faults (the same as starting Python with ``MALLOC_ARENA_MAX=1
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824``). Call it before
    JAX starts its backend (its threads). ``"system"`` leaves glibc as it is.
    Without glibc the mode is ``"system"``.
    """
    if mode == "system":
        return "system"
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "system"
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30))
    ok = all(libc.mallopt(param, value) == 1 for param, value in settings)
    return "reuse" if ok else "system"


def machine() -> dict:
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # they change speed and memory
    }


def timed(fn, *args, repeats: int) -> dict:
    """Median and spread of ``fn(*args)`` wall time after one warm-up call."""
    return timed_together({"fn": lambda: fn(*args)}, repeats=repeats)["fn"]


def timed_together(fns: dict, repeats: int) -> dict:
    """:func:`timed` for several functions, interleaved (a, b, a, b, ...).

    Cases compared in a ratio share whatever else the machine is doing at the
    time, instead of one case taking the quiet minutes and the other the busy ones.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"median_s": float(np.median(t)), "min_s": min(t), "max_s": max(t)}
        for name, t in times.items()
    }


def network(smoke: bool) -> tuple[str, dict, int]:
    """``(model name, model fields, image side)`` of the benchmarked network."""
    if smoke:
        return "plain", {"depth": 2, "width": 4}, 8
    return "resnet19", {}, 32


def step_case(time_steps: int, batch: int, *, ann: bool, memory: str = "none", smoke: bool):
    """A jitted donated SGD step, its state and a batch: the SNN (T, B) or the ANN twin (B*T)."""
    name, fields, size = network(smoke)
    kwargs = dict(num_classes=10, dtype=jnp.dtype(_DTYPE.value), **fields)
    if ann:
        relu = NeuronSpec(kind="relu")
        model = models.get_model(name, neuron=relu, norm="bn", time_steps=1, **kwargs)
        b = batch * time_steps
    else:
        neuron = NeuronSpec(unroll=time_steps)
        model = models.get_model(
            name, time_steps=time_steps, memory=memory, neuron=neuron, **kwargs
        )
        b = batch
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, 100)
    mesh = sharding.make_mesh(jax.devices()[:1])
    example = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    state = create_train_state(jax.random.PRNGKey(0), model, tx, example, mesh)
    rng = np.random.default_rng(0)
    batch_np = {
        "image": rng.normal(size=(b, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 10, b).astype(np.int32),
    }
    return jax.jit(train_step, donate_argnums=0), state, sharding.put_batch(batch_np, mesh)


def compile_stats(step, state, batch) -> dict:
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    return {"compile_s": seconds, "temp_bytes": int(mem.temp_size_in_bytes)}


def prepared_step(time_steps, batch, *, ann, smoke, memory="none") -> tuple[dict, object]:
    """``(compile stats, a function that runs one step)`` of a step case."""
    step, state, data = step_case(time_steps, batch, ann=ann, memory=memory, smoke=smoke)
    stats = compile_stats(step, state, data)
    holder = {"state": state}

    def one():
        holder["state"], metrics = step(holder["state"], data)
        return metrics["loss"]

    return stats, one


def run_step_case(time_steps, batch, *, ann, repeats, smoke, memory="none") -> dict:
    stats, one = prepared_step(time_steps, batch, ann=ann, smoke=smoke, memory=memory)
    return {**stats, **timed(one, repeats=repeats)}


def bench_step(ts, batch, repeats, smoke) -> list[dict]:
    """SNN and ANN steps compiled, then timed interleaved (see :func:`timed_together`)."""
    rows = []
    for t in ts:
        snn_stats, snn_step = prepared_step(t, batch, ann=False, smoke=smoke)
        ann_stats, ann_step = prepared_step(t, batch, ann=True, smoke=smoke)
        times = timed_together({"snn": snn_step, "ann": ann_step}, repeats=repeats)
        snn, ann = times["snn"], times["ann"]
        rows.append(
            {
                "T": t,
                "B": batch,
                "snn_step_s": snn["median_s"],
                "snn_spread_s": [snn["min_s"], snn["max_s"]],
                "ann_step_s": ann["median_s"],
                "ann_spread_s": [ann["min_s"], ann["max_s"]],
                "ratio_snn_over_ann": snn["median_s"] / ann["median_s"],
                "snn_compile_s": snn_stats["compile_s"],
                "ann_compile_s": ann_stats["compile_s"],
            }
        )
    return rows


# The LIF settings timed (the leak 0.25 and threshold 0.5 are lif_scan's defaults):
# (a) Python-number leak and threshold, hard reset; (b) one learnable threshold per
# channel (an array, whose gradient is computed too) and reset by subtraction.
LIF_CASES = ("scalar_zero", "channel_subtract")


def lif_case_grad(case: str, shape, unroll: int):
    """A jitted ``x -> gradient`` of ``sum(lif_scan(x) * w)`` for a :data:`LIF_CASES` entry."""
    w = jax.random.normal(jax.random.key(3), shape)
    if case == "scalar_zero":
        return jax.jit(jax.grad(lambda x: jnp.sum(snn_jax.lif_scan(x, unroll=unroll) * w)))
    v_th = jnp.linspace(0.4, 0.6, shape[-1])

    def loss(x, v_th):
        return jnp.sum(snn_jax.lif_scan(x, v_th=v_th, reset="subtract", unroll=unroll) * w)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda x: grad(x, v_th)


def bench_lif(repeats, smoke) -> dict:
    t, b, n = (8, 4, 64) if smoke else (64, 32, 1024)
    x = jax.random.normal(jax.random.key(0), (t, b, n))
    dense = snn_jax.nn.TimeFolded(nn.Dense(n))
    params = dense.init(jax.random.key(1), x)
    fn = jax.jit(jax.grad(lambda p, x: jnp.sum(snn_jax.lif_scan(dense.apply(p, x))), (0, 1)))
    dense_lif = timed(fn, params, x, repeats=repeats)
    out = {"dense_lif_shape": [t, b, n], "dense_lif_s": dense_lif["median_s"]}

    scans = []
    sizes = [(8, 4, 256)] if smoke else [(64, 32, 1024), (64, 32, 4096), (16, 64, 16384)]
    floor_fn = jax.jit(lambda x: x * 2.0 + 1.0)
    for shape in sizes:
        x = jax.random.normal(jax.random.key(2), shape) + 0.3
        fns = {"floor": lambda x=x: floor_fn(x)}
        for case in LIF_CASES:
            for unroll in (1, 8):
                fns[f"{case}_unroll{unroll}"] = functools.partial(
                    lif_case_grad(case, shape, unroll), x
                )
        times = timed_together(fns, repeats=repeats)  # the floor under the same load
        floor = times.pop("floor")
        row = {"shape": list(shape), "floor_s": floor["median_s"], "floor_min_s": floor["min_s"]}
        for key, t in times.items():
            row[f"{key}_s"], row[f"{key}_min_s"] = t["median_s"], t["min_s"]
        scans.append(row)
    out["scan"] = scans
    return out


# (config module, variants, batch per device): the batch each config's docstring assumes.
PAPER_CONFIGS = (
    ("cifar10_resnet19", ("t2", "t4", "t6"), 128),
    ("cifar100_resnet19", ("t4",), 128),
    ("cifar10dvs_resnet19", (None,), 32),
    ("dvsgesture_resnet17", (None,), 16),
    ("imagenet_resnet34", (None,), 32),  # global batch 256 on 8 devices
    ("imagenet_resnet50", (None,), 32),
)
SMOKE_CONFIGS = (("cifar10_resnet19", ("smoke",), 2), ("dvsgesture_resnet17", ("smoke",), 2))


def config_step_memory(
    module: str, variant: str | None, batch: int, memory: str | None = None
) -> dict:
    """Compiled temporary memory of a paper config's train step at ``batch`` on one device.

    ``memory``: the model's memory option (``None``: the config's own). Nothing
    is initialised or run: the state and the batch are shapes only.
    """
    config = importlib.import_module(f"experiments.configs.{module}").get_config(variant)
    if memory is not None:
        config.model.memory = memory
    shape = describe(config.data)
    model = build_model(config, shape.num_classes)
    tx = make_optimizer(config.optimizer, 1000)
    mesh = sharding.make_mesh(jax.devices()[:1])
    abstract_example = jax.ShapeDtypeStruct(shape.batch_shape(1), jnp.float32)
    state = jax.eval_shape(
        lambda: create_train_state(jax.random.PRNGKey(0), model, tx, abstract_example, mesh)
    )
    data = {
        "image": jax.ShapeDtypeStruct(shape.batch_shape(batch), jnp.float32),
        "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
    }
    stats = compile_stats(jax.jit(train_step, donate_argnums=0), state, data)
    return {
        "config": module,
        "variant": variant,
        "memory": config.model.memory,
        "T": config.time_steps,
        "batch": batch,
        **stats,
    }


def bench_configs(smoke: bool) -> list[dict]:
    """Each paper config as it is (``memory="none"``) and with ``memory="compact"``."""
    return [
        config_step_memory(module, variant, batch, memory)
        for module, variants, batch in (SMOKE_CONFIGS if smoke else PAPER_CONFIGS)
        for variant in variants
        for memory in ("none", "compact")
    ]


def memory_case(kind: str, time_steps: int, batch: int, smoke: bool) -> dict:
    ann = kind == "ann"
    memory = "none" if ann else kind.removeprefix("snn_")
    step, state, data = step_case(time_steps, batch, ann=ann, memory=memory, smoke=smoke)
    stats = compile_stats(step, state, data)
    jax.block_until_ready(step(state, data))
    stats["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return stats


def bench_memory(ts, batch, options, repeats, smoke, peak_rss) -> list[dict]:
    rows = []
    for t in ts:
        for kind in ["ann"] + [f"snn_{o}" for o in options]:
            if peak_rss:
                cmd = [
                    sys.executable,
                    "-m",
                    "experiments.benchmarks.run",
                    f"--case={kind}:{t}:{batch}",
                    f"--smoke={smoke}",
                    f"--dtype={_DTYPE.value}",
                    f"--allocator={_ALLOCATOR.value}",
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                stats = json.loads(res.stdout.strip().splitlines()[-1])
            else:
                ann = kind == "ann"
                memory = "none" if ann else kind.removeprefix("snn_")
                case = run_step_case(t, batch, ann=ann, repeats=repeats, smoke=smoke, memory=memory)
                stats = {"step_s": case.pop("median_s"), **case}
            rows.append({"T": t, "B": batch, "case": kind, **stats})
    return rows


def markdown(results: dict) -> str:
    lines = ["## Machine", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["machine"].items()]
    lines += [f"| compute dtype | {results['dtype']} |"]
    if "step" in results:
        lines += [
            "",
            f"## {results['network']} train step: SNN (T, B) vs ANN twin (B*T)",
            "",
            "| T | B | SNN s (min-max) | ANN s (min-max) | SNN/ANN | compile SNN s | "
            "compile ANN s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["step"]:
            lines.append(
                f"| {r['T']} | {r['B']} | {r['snn_step_s']:.3f} ({r['snn_spread_s'][0]:.3f}-"
                f"{r['snn_spread_s'][1]:.3f}) | {r['ann_step_s']:.3f} ({r['ann_spread_s'][0]:.3f}"
                f"-{r['ann_spread_s'][1]:.3f}) | **{r['ratio_snn_over_ann']:.3f}** | "
                f"{r['snn_compile_s']:.1f} | {r['ann_compile_s']:.1f} |"
            )
    if "lif" in results:
        lif = results["lif"]
        n = lif["dense_lif_shape"][-1]
        lines += [
            "",
            "## LIF",
            "",
            f"Dense({n}->{n})+LIF {lif['dense_lif_shape']} fwd+bwd: "
            f"{lif['dense_lif_s'] * 1e3:.1f} ms",
            "",
            "(a) scalar tau and v_th, zero reset; (b) per-channel v_th array (with its "
            "gradient), subtract reset. ms (x floor), medians; u1, u8: unroll.",
            "",
            "| shape | floor ms | (a) u1 | (a) u8 | (b) u1 | (b) u8 | (b) / (a), u1 | "
            "(a) u1 min / floor min |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in lif["scan"]:
            keys = [f"{case}_unroll{u}" for case in LIF_CASES for u in (1, 8)]
            cells = [f"{r[f'{k}_s'] * 1e3:.1f} ({r[f'{k}_s'] / r['floor_s']:.1f}x)" for k in keys]
            ratio = r["channel_subtract_unroll1_s"] / r["scalar_zero_unroll1_s"]
            best = r["scalar_zero_unroll1_min_s"] / r["floor_min_s"]
            lines.append(
                f"| {r['shape']} | {r['floor_s'] * 1e3:.2f} | "
                + " | ".join(cells)
                + f" | **{ratio:.2f}** | {best:.1f}x |"
            )
    if "memory" in results:
        lines += [
            "",
            f"## Memory of the {results['network']} train step",
            "",
            "| T | case | temp MB | x ANN | x snn_none | step s | time x snn_none | "
            "peak RSS MB | compile s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        rows = results["memory"]
        ann = {r["T"]: r["temp_bytes"] for r in rows if r["case"] == "ann"}
        plain = {r["T"]: r for r in rows if r["case"] == "snn_none"}
        for r in rows:
            rss, step, base = r.get("peak_rss_bytes"), r.get("step_s"), plain.get(r["T"])
            mem_x = f"{r['temp_bytes'] / base['temp_bytes']:.2f}" if base else ""
            time_x = f"{step / base['step_s']:.2f}" if base and step else ""
            lines.append(
                f"| {r['T']} | {r['case']} | {r['temp_bytes'] / 2**20:.0f} | "
                f"{r['temp_bytes'] / ann[r['T']]:.2f} | {mem_x} | "
                f"{'' if step is None else f'{step:.3f}'} | {time_x} | "
                f"{'' if rss is None else f'{rss / 2**20:.0f}'} | {r['compile_s']:.1f} |"
            )
    if "configs" in results:
        lines += [
            "",
            "## Train-step memory of the paper configs (one device)",
            "",
            "| config | variant | memory | T | batch | temp GiB | compile s |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['variant'] or ''} | {r['memory']} | {r['T']} | {r['batch']} | "
            f"{r['temp_bytes'] / 2**30:.1f} | {r['compile_s']:.1f} |"
            for r in results["configs"]
        ]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    smoke = _SMOKE.value
    allocator = use_allocator(_ALLOCATOR.value)
    if _CASE.value:
        kind, t, b = _CASE.value.split(":")
        print(json.dumps(memory_case(kind, int(t), int(b), smoke)))
        return
    repeats = 2 if smoke else _REPEATS.value
    results = {
        "machine": {**machine(), "allocator": allocator},
        "smoke": smoke,
        "network": network(smoke)[0],
        "dtype": _DTYPE.value,
    }
    sections = set(_SECTIONS.value)
    unknown = sections - {"step", "lif", "memory", "configs"}
    if unknown:
        raise app.UsageError(f"unknown sections {sorted(unknown)}; use step, lif, memory, configs")
    batch = 2 if smoke else _BATCH.value
    if "step" in sections:
        ts = [2] if smoke else [int(t) for t in _STEP_T.value]
        results["step"] = bench_step(ts, batch, repeats, smoke)
    if "lif" in sections:
        results["lif"] = bench_lif(repeats, smoke)
    if "memory" in sections:
        ts = [2] if smoke else [int(t) for t in _MEMORY_T.value]
        memory_batch = batch if smoke else _MEMORY_BATCH.value
        results["memory"] = bench_memory(
            ts, memory_batch, _MEMORY_OPTIONS.value, repeats, smoke, _PEAK_RSS.value
        )
    if "configs" in sections:
        results["configs"] = bench_configs(smoke)
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = markdown(results)
    with open(os.path.join(_OUT.value, "results.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
