r"""One prepared GPU check: correctness on the device, then the ResNet-19 step, its memory and the
LIF at GPU sizes, and SpikingJelly's ResNet-19 timed in the same run.

    python -m experiments.benchmarks.gpu_check --out=gpu_check_out     # one H200: under 8 min
    python -m experiments.benchmarks.gpu_check --smoke --out=/tmp/gc   # CPU, tiny sizes, for tests

On the lent GPU machine ``experiments/benchmarks/gpu_check.sh`` installs the
carried wheels (``gpu_wheels.txt``) and runs the first command; the
benchmarks README's "GPU check" gives the device tool's call.

What it runs (each case records its error, and the script goes on):

- ``checks``: ``lif_scan`` against a NumPy loop (spikes, membrane, and the
  STBP gradient, for a looped and an unrolled scan); tdBN against NumPy;
  ``memory="compact"`` equal to ``"none"`` on a small ResNet (logits, running
  statistics, gradients); two train steps of each memory option on it, equal
  to each other; two train steps of each paper config's smoke variant
  (``experiments/configs/*.py`` that take an argument) on random batches of
  its input shape. Comparisons between models run at
  ``jax.default_matmul_precision("highest")`` (no TF32), so that they compare
  the algorithms, not the rounding of two convolution kernels.
- ``step``: the ResNet-19 SNN train step (T, B) against its ANN twin (B*T), in
  float32 and bfloat16, built and timed with ``run.py``'s helpers (interleaved).
- ``memory``: each case (the ANN twin, each memory option; T up to 16) in a
  fresh process: XLA's compiled temporary memory, the device's
  ``peak_bytes_in_use`` (which only grows within a process), step time.
- ``lif``: ``lif_scan`` forward + backward against one elementwise pass over
  the same array (the bandwidth floor), for several ``unroll`` values.
- ``spikingjelly``: SpikingJelly 2.0's ResNet-19 tdBN step
  (``spikingjelly_resnet.py``) in its own process; without PyTorch or
  SpikingJelly it records ``"skipped: not installed"``.

The cases run in order of importance while ``--budget_s`` lasts; a case that
would start later is recorded as skipped. ``results.json`` and ``results.md``
are rewritten after every case, so a killed run leaves what it measured.
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is set unless given: the child
processes (memory cases, SpikingJelly) need the GPU memory that JAX would
otherwise reserve for this one.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import os
import pkgutil
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata

# Before JAX starts its backend (the import of run.py imports JAX).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import snn_jax
from experiments import configs as configs_pkg
from experiments.benchmarks import run
from snn_jax import models, training
from snn_jax.data import describe
from snn_jax.nn import NeuronSpec
from snn_jax.training import sharding

# run.py's flags serve here too: --out, --smoke, --allocator (and --dtype, which
# run.step_case reads; this script sets it per case).
_BATCH = flags.DEFINE_integer(
    "check_batch",
    64,
    "SNN batch B of the step, memory and SpikingJelly cases (the ANN twin gets B*T). 64: the "
    "ANN twin then trains on 128 to 384 CIFAR images per step, enough to keep an H200 busy, "
    "while the largest case (T = 16, plain BPTT, 1024 image-steps) needs an estimated 20 GB and "
    "every case compiles and runs inside the budget.",
)
_REPEATS = flags.DEFINE_integer("check_repeats", 20, "Timed steps per case, after a warm-up.")
_BUDGET = flags.DEFINE_float(
    "budget_s", 420.0, "Start no case after this many seconds (the run then ends and writes)."
)
_STEP_T = flags.DEFINE_list(
    "check_time_steps", ["4", "2", "6"], "T of the step cases, by priority."
)
_MEMORY_T = flags.DEFINE_list(
    "check_memory_time_steps", ["4", "16", "8"], "T of the memory cases, by priority."
)
_SJ_PYTHON = flags.DEFINE_string(
    "spikingjelly_python",
    None,
    "Python for the SpikingJelly case (needs torch and spikingjelly, not JAX); default: this one.",
)
_CHILD = flags.DEFINE_string("child", None, "Internal: run one memory case KIND:T:B, print JSON.")

MEMORY_KINDS = ("snn_none", "snn_compact", "ann", "snn_remat")  # by priority
DTYPES = ("float32", "bfloat16")
TARGETS_TEXT = {
    "step_ratio": "SNN / ANN step at T = 4 <= 1.15",
    "compact_vs_ann": "compact memory <= 0.75x the ANN's at T = 4",
    "t16_compact": "T = 16: compact <= 0.5x plain BPTT's memory at <= 1.3x its time",
    "lif_floor": "LIF fwd + bwd <= 3x the elementwise floor",
    "spikingjelly": "faster than SpikingJelly at equal or lower peak memory (T = 4)",
}


# ----------------------------------------------------------------------------- plumbing


class Budget:
    """Seconds left of ``--budget_s`` since the start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def guarded(fn: Callable[[], dict], budget: Budget, need_s: float) -> dict:
    """``fn()`` with its seconds, or ``{"error": ...}`` if it raised, or ``{"skipped": ...}``
    if fewer than ``need_s`` seconds of the budget are left. Never raises."""
    if budget.left() < need_s:
        return {"skipped": f"time budget: {budget.left():.0f} s left, about {need_s:.0f} s needed"}
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        return {"error": f"{type(e).__name__}: {e}"[:3000], "seconds": time.perf_counter() - t0}
    return {**out, "seconds": time.perf_counter() - t0}


@contextlib.contextmanager
def compute_dtype(dtype: str):
    """Sets run.py's ``--dtype`` (read by ``run.step_case``) for the cases built inside."""
    old = flags.FLAGS.dtype
    flags.FLAGS.dtype = dtype
    try:
        yield
    finally:
        flags.FLAGS.dtype = old


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    info = {**run.machine(), "jaxlib": _version("jaxlib")}
    for name in ("flax", "optax", "numpy", "jax-cuda13-plugin", "jax-cuda12-plugin"):
        info[name] = _version(name)
    info["xla_python_client_preallocate"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    stats = jax.devices()[0].memory_stats() or {}
    info["device_bytes_limit"] = stats.get("bytes_limit")
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu"
        try:
            res = subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info["nvidia_smi"] = res.stdout.strip() or res.stderr.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi"] = f"failed: {e}"
    else:
        info["nvidia_smi"] = "not found"
    return info


def _mesh():
    return sharding.make_mesh(jax.devices()[:1])


# ----------------------------------------------------------------------------- checks


def small_resnet(memory: str, time_steps: int):
    """The one model this script builds itself: a width-8 spiking ResNet with an identity and a
    projection shortcut and a hidden FC unit (ResNet-19's layer kinds), LIF loops unrolled."""
    return models.SpikingResNet(
        num_classes=5,
        time_steps=time_steps,
        width=8,
        stage_sizes=(1, 1),
        hidden_features=6,
        memory=memory,
        neuron=NeuronSpec(unroll=time_steps),
    )


def _np_lif(x, tau, v_th):
    """``u[t] = tau u[t-1] (1 - o[t-1]) + x[t]``, ``o[t] = H(u[t] - v_th)``, in float32."""
    u_prev = np.zeros(x.shape[1:], np.float32)
    o_prev = np.zeros(x.shape[1:], np.float32)
    us, os_ = [], []
    for t in range(x.shape[0]):
        u = np.float32(tau) * u_prev * (np.float32(1) - o_prev) + x[t]
        o = (u >= np.float32(v_th)).astype(np.float32)
        us.append(u)
        os_.append(o)
        u_prev, o_prev = u, o
    return np.stack(os_), np.stack(us)


def _np_stbp(u, o, g_o, tau, v_th, width=1.0):
    """dL/dx of ``L`` with ``dL/do[t] = g_o[t]``: the STBP recursion (METHOD.md section 3) with
    the rectangular surrogate ``s(v) = (|v| < width/2) / width``, in float64."""
    u, o, g_o = (np.asarray(a, np.float64) for a in (u, o, g_o))
    grad = np.zeros_like(u)
    du_next = np.zeros(u.shape[1:])
    for t in reversed(range(u.shape[0])):
        d_o = g_o[t] + du_next * (-tau * u[t])
        surrogate = (np.abs(u[t] - v_th) < width / 2) / width
        grad[t] = d_o * surrogate + du_next * tau * (1 - o[t])
        du_next = grad[t]
    return grad


def check_lif() -> dict:
    """``lif_scan`` on the device against NumPy: spikes exactly, membrane, STBP gradient."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.6, size=(8, 4, 64)).astype(np.float32)  # T != B
    w = rng.normal(size=x.shape).astype(np.float32)
    tau, v_th = 0.25, 0.5
    ref_o, ref_u = _np_lif(x, tau, v_th)
    ref_g = _np_stbp(ref_u, ref_o, w, tau, v_th)
    spike = snn_jax.surrogate.rectangular(1.0)
    detail = {"spike_rate": float(ref_o.mean())}
    for unroll in (1, x.shape[0]):
        kw = dict(tau=tau, v_th=v_th, surrogate=spike, unroll=unroll)
        o, u = jax.jit(lambda x, kw=kw: snn_jax.lif_scan(x, return_membrane=True, **kw))(x)
        g = jax.jit(jax.grad(lambda x, kw=kw: jnp.sum(w * snn_jax.lif_scan(x, **kw))))(x)
        o, u, g = np.asarray(o), np.asarray(u), np.asarray(g)
        flips = int(np.sum(o != ref_o))
        if flips:
            raise AssertionError(f"unroll={unroll}: {flips} of {o.size} spikes differ from NumPy")
        np.testing.assert_allclose(u, ref_u, rtol=1e-5, atol=1e-6, err_msg=f"u, unroll={unroll}")
        np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-5, err_msg=f"grad, unroll={unroll}")
        name = "looped" if unroll == 1 else "unrolled"
        detail[f"{name}_max_grad_err"] = float(np.max(np.abs(g - ref_g)))
    return detail


def check_tdbn() -> dict:
    """``tdbn_statistics`` and ``tdbn_normalize`` on the device against NumPy (float64)."""
    rng = np.random.default_rng(1)
    c = 6
    x = rng.normal(size=(4, 3, 5, 5, c)) * np.linspace(0.5, 3, c) + np.linspace(-1, 2, c)
    x = x.astype(np.float32)
    scale = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bias = rng.normal(size=c).astype(np.float32)
    alpha, v_th, eps = 1 / np.sqrt(2), 0.5, 1e-5

    def f(x):
        mean, var = snn_jax.tdbn_statistics(x)
        y = snn_jax.tdbn_normalize(x, mean, var, scale, bias, alpha=alpha, v_th=v_th, epsilon=eps)
        return mean, var, y

    mean, var, y = (np.asarray(a) for a in jax.jit(f)(x))
    x64 = x.astype(np.float64)
    ref_mean, ref_var = x64.mean((0, 1, 2, 3)), x64.var((0, 1, 2, 3))
    ref_y = scale * alpha * v_th * (x64 - ref_mean) / np.sqrt(ref_var + eps) + bias
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-5, err_msg="mean")
    np.testing.assert_allclose(var, ref_var, rtol=1e-4, atol=1e-5, err_msg="var")
    np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-5, err_msg="normalized")
    return {"max_err": float(np.max(np.abs(y - ref_y)))}


def _max_rel(a, b) -> float:
    """Largest ``|a - b| / (|b| + 1e-6)`` over two trees."""
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b) / (jnp.abs(b) + 1e-6))), a, b)
    return max(jax.tree.leaves(diffs), default=0.0)


SMALL_T, SMALL_B = 2, 3  # T != B


@functools.cache
def _small_setup() -> tuple[np.ndarray, np.ndarray, dict]:
    """Images ``[B, 16, 16, 3]``, labels and the variables of :func:`small_resnet` (the same
    parameter tree for every memory option), initialised once."""
    rng = np.random.default_rng(2)
    images = rng.normal(0.5, 1.0, size=(SMALL_B, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 5, SMALL_B).astype(np.int32)
    variables = jax.jit(small_resnet("none", SMALL_T).init)(jax.random.key(1), images)
    return images, labels, variables


def check_compact_equals_plain() -> dict:
    """``memory="compact"`` against ``"none"``: logits, running statistics, gradients."""
    x, labels, variables = _small_setup()

    def loss(params, model):
        logits, updates = model.apply(
            {**variables, "params": params}, x, mutable=["batch_stats", "intermediates"]
        )
        ce = -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(labels, 5), -1))
        return ce, (logits, updates["batch_stats"], updates["intermediates"])

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    with jax.default_matmul_precision("highest"):
        plain, compact = small_resnet("none", SMALL_T), small_resnet("compact", SMALL_T)
        (_, (ref_logits, ref_stats, rates)), ref_g = fn(variables["params"], plain)
        (_, (logits, stats, _)), g = fn(variables["params"], compact)
    rate = [float(jnp.mean(r)) for r in jax.tree.leaves(rates)]
    if not any(0 < r < 1 for r in rate):
        raise AssertionError(f"no layer fires between never and always: {rate}")
    detail = {
        "logits_max_rel": _max_rel(logits, ref_logits),
        "batch_stats_max_rel": _max_rel(stats, ref_stats),
        "grads_max_rel": _max_rel(g, ref_g),
    }
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5, err_msg="logits")
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg="batch_stats")
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5, err_msg="gradients")
    return detail


def _train(model, example, batch, optimizer=None, variables=None, steps: int = 2):
    """``steps`` jitted train steps of ``model`` on ``batch``; the losses and the final state."""
    tx = training.make_optimizer(
        optimizer or {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, 100
    )
    mesh = _mesh()
    key = jax.random.PRNGKey(0)
    state = training.create_train_state(key, model, tx, example, mesh, variables=variables)
    time_major = ("image",) if len(batch["image"].shape) == 5 else ()
    data = sharding.put_batch(batch, mesh, time_major_keys=time_major)
    step = jax.jit(training.train_step, donate_argnums=0)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, data)
        losses.append(float(metrics["loss"]))
    if not np.all(np.isfinite(losses)):
        raise AssertionError(f"non-finite loss: {losses}")
    if int(state.skipped_steps):
        raise AssertionError(f"{int(state.skipped_steps)} steps skipped (non-finite gradients)")
    return losses, state


def check_memory_options() -> dict:
    """Two train steps of each memory option; the parameters after them equal ``"none"``'s."""
    images, labels, variables = _small_setup()
    example = jax.ShapeDtypeStruct((1, *images.shape[1:]), jnp.float32)
    batch = {"image": images, "label": labels}
    detail, params = {}, {}
    with jax.default_matmul_precision("highest"):
        for memory in models.MEMORY_OPTIONS:
            model = small_resnet(memory, SMALL_T)
            losses, state = _train(model, example, batch, variables=variables)
            detail[f"{memory}_losses"] = losses
            params[memory] = jax.device_get(state.params)
    for memory in params:
        detail[f"{memory}_params_max_rel"] = _max_rel(params[memory], params["none"])
        for a, b in zip(
            jax.tree.leaves(params[memory]), jax.tree.leaves(params["none"]), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5, err_msg=f"{memory} params")
    return detail


def paper_configs() -> list[str]:
    """The configs whose ``get_config`` takes an argument (``t<N>``, ``smoke``): the paper's."""
    names = []
    for info in pkgutil.iter_modules(configs_pkg.__path__):
        module = importlib.import_module(f"experiments.configs.{info.name}")
        get_config = getattr(module, "get_config", None)
        if get_config is not None and inspect.signature(get_config).parameters:
            names.append(info.name)
    return sorted(names)


def check_config_smoke(name: str) -> dict:
    """Two train steps of ``name``'s smoke variant (its model, optimizer and batch size) on a
    random batch of its input shape: frames of counts for event data, else normal images."""
    c = importlib.import_module(f"experiments.configs.{name}").get_config("smoke")
    shape = describe(c.data)
    rng = np.random.default_rng(3)
    image_shape = shape.batch_shape(c.batch_size)
    if shape.time_major:
        image = rng.poisson(0.5, size=image_shape).astype(np.float32)
    else:
        image = rng.normal(size=image_shape).astype(np.float32)
    batch = {"image": image, "label": rng.integers(0, shape.num_classes, c.batch_size)}
    batch["label"] = batch["label"].astype(np.int32)
    example = jax.ShapeDtypeStruct(shape.batch_shape(1), jnp.float32)
    model = training.build_model(c, shape.num_classes)
    losses, _ = _train(model, example, batch, optimizer=c.optimizer)
    return {"T": c.time_steps, "batch": c.batch_size, "image": list(image_shape), "losses": losses}


# ----------------------------------------------------------------------------- benchmarks


def step_pair(t: int, batch: int, dtype: str, repeats: int, smoke: bool) -> dict:
    """The SNN (T, B) and ANN (B*T) steps of run.py, compiled, then timed interleaved."""
    with compute_dtype(dtype):
        snn_stats, snn = run.prepared_step(t, batch, ann=False, smoke=smoke)
        ann_stats, ann = run.prepared_step(t, batch, ann=True, smoke=smoke)
    times = run.timed_together({"snn": snn, "ann": ann}, repeats=repeats)
    s, a = times["snn"], times["ann"]
    return {
        "snn_step_s": s["median_s"],
        "snn_spread_s": [s["min_s"], s["max_s"]],
        "ann_step_s": a["median_s"],
        "ann_spread_s": [a["min_s"], a["max_s"]],
        "ratio_snn_over_ann": s["median_s"] / a["median_s"],
        "snn_compile_s": snn_stats["compile_s"],
        "ann_compile_s": ann_stats["compile_s"],
        "snn_temp_bytes": snn_stats["temp_bytes"],
        "ann_temp_bytes": ann_stats["temp_bytes"],
    }


def _peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats["peak_bytes_in_use"])


def memory_case(kind: str, t: int, batch: int, repeats: int, smoke: bool) -> dict:
    """One memory case in this (fresh) process: compiled temporary memory, peak device memory
    (state, batch and compile-time scratch included), median step time."""
    ann = kind == "ann"
    memory = "none" if ann else kind.removeprefix("snn_")
    stats, one = run.prepared_step(t, batch, ann=ann, smoke=smoke, memory=memory)
    after_compile = _peak_bytes()
    timing = run.timed(one, repeats=repeats)
    return {
        **stats,
        "step_s": timing["median_s"],
        "spread_s": [timing["min_s"], timing["max_s"]],
        "peak_bytes": _peak_bytes(),
        "peak_after_compile_bytes": after_compile,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError("the child printed no JSON line")
    return json.loads(lines[-1])


def memory_child(kind: str, t: int, batch: int, repeats: int, smoke: bool, timeout: float) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "experiments.benchmarks.gpu_check",
        f"--child={kind}:{t}:{batch}",
        f"--smoke={smoke}",
        f"--check_repeats={repeats}",
        f"--allocator={flags.FLAGS.allocator}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 30))
    if res.returncode != 0:
        raise RuntimeError(f"exit {res.returncode}: {res.stderr[-2000:]}")
    return _last_json(res.stdout)


def lif_floor(shape: tuple[int, ...], unrolls: tuple, repeats: int) -> dict:
    """``grad(sum(lif_scan(x)))`` per unroll against ``x * 2 + 1`` on the same array, timed
    interleaved; each one's compile time."""
    x = jax.random.normal(jax.random.key(2), shape) + 0.3
    floor = jax.jit(lambda x: x * 2.0 + 1.0)
    fns, row = {"floor": lambda: floor(x)}, {}
    for unroll in unrolls:
        name = "unroll_full" if unroll is True else f"unroll{unroll}"
        grad = jax.jit(jax.grad(lambda x, u=unroll: jnp.sum(snn_jax.lif_scan(x, unroll=u))))
        t0 = time.perf_counter()
        compiled = grad.lower(x).compile()
        row[f"{name}_compile_s"] = time.perf_counter() - t0
        fns[name] = lambda c=compiled: c(x)
    times = run.timed_together(fns, repeats=repeats)
    f = times.pop("floor")
    row["floor_s"], row["floor_min_s"] = f["median_s"], f["min_s"]
    row["floor_gb_per_s"] = 2 * x.size * x.dtype.itemsize / f["min_s"] / 1e9
    for name, t in times.items():
        row[f"{name}_s"], row[f"{name}_min_s"] = t["median_s"], t["min_s"]
        row[f"{name}_over_floor"] = t["median_s"] / f["median_s"]
    return row


def spikingjelly_child(ts, dtypes, batch, repeats, smoke, timeout, python) -> dict:
    cmd = [
        python or sys.executable,
        "-m",
        "experiments.benchmarks.spikingjelly_resnet",
        f"--time_steps={','.join(str(t) for t in ts)}",
        f"--dtypes={','.join(dtypes)}",
        f"--batch={batch}",
        f"--repeats={repeats}",
        f"--budget_s={max(timeout - 60, 10):.0f}",
    ] + (["--smoke"] if smoke else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 60))
    if res.returncode != 0:
        return {"status": f"failed: exit {res.returncode}: {res.stderr[-2000:]}"}
    return _last_json(res.stdout)


# ----------------------------------------------------------------------------- the run


def run_all(
    out: str,
    *,
    smoke: bool = False,
    batch: int = 64,
    repeats: int = 20,
    budget_s: float = 420.0,
    step_ts: Sequence[int] = (4, 2, 6),
    memory_ts: Sequence[int] = (4, 16, 8),
    spikingjelly_python: str | None = None,
    allocator: str = "system",
) -> dict:
    """Every case in order of importance while the budget lasts; writes and returns the results.

    ``smoke``: tiny sizes on any machine (run.py's 2-unit CNN, B = 2, T = 2, 2
    repeats, float32 steps only, one paper config, two memory cases), whatever
    the other arguments say. run.py's flags must be parsed (``app.run``, or
    ``flags.FLAGS.mark_as_parsed()``).
    """
    dtypes = DTYPES
    if smoke:
        batch, repeats, step_ts, memory_ts, dtypes = 2, 2, [2], [2], ("float32",)
    step_ts, memory_ts = list(step_ts), list(memory_ts)
    budget = Budget(budget_s)
    os.makedirs(out, exist_ok=True)
    results = {
        "machine": {**_without_seconds(guarded(machine_info, budget, 0)), "allocator": allocator},
        "settings": {
            "smoke": smoke,
            "batch": batch,
            "repeats": repeats,
            "budget_s": budget_s,
            "step_time_steps": step_ts,
            "memory_time_steps": memory_ts,
            "network": run.network(smoke)[0],
        },
        "checks": [],
        "step": [],
        "memory": [],
        "lif": [],
        "spikingjelly": {"status": "not run yet"},
    }

    def save():
        results["elapsed_s"] = budget.elapsed()
        results["targets"] = targets(results)
        write(results, out)

    def check(name, fn, need_s=10.0):
        r = guarded(fn, budget, need_s)
        passed = None if "skipped" in r else "error" not in r
        results["checks"].append({"check": name, "passed": passed, **r})
        print(f"[{budget.elapsed():6.1f} s] check {name}: {passed}", flush=True)
        save()

    def case(section, keys, fn, need_s):
        r = guarded(fn, budget, need_s)
        results[section].append({**keys, **r})
        print(f"[{budget.elapsed():6.1f} s] {section} {keys}: {_brief(r)}", flush=True)
        save()

    check("lif_scan_vs_numpy", check_lif, 0)
    check("tdbn_vs_numpy", check_tdbn, 0)
    check("compact_equals_plain", check_compact_equals_plain)
    check("memory_options_train", check_memory_options)

    lif_shapes = [(8, 4, 256)] if smoke else [(64, 32, 4096), (64, 128, 65536)]
    unrolls = (1, True) if smoke else (1, 8, True)
    for shape in lif_shapes:
        case("lif", {"shape": list(shape)}, lambda s=shape: lif_floor(s, unrolls, repeats), 15)

    def steps(pairs):
        for t, dtype in pairs:
            keys = {"T": t, "B": batch, "dtype": dtype}
            case("step", keys, lambda t=t, d=dtype: step_pair(t, batch, d, repeats, smoke), 40)

    def memory(ts):
        for t in ts:
            for kind in ("snn_none", "snn_compact") if smoke else MEMORY_KINDS:
                keys = {"T": t, "B": batch, "case": kind}
                child = lambda k=kind, t=t: memory_child(  # noqa: E731
                    k, t, batch, repeats, smoke, budget.left() + 60
                )
                case("memory", keys, child, 30)

    pairs = [(t, d) for t in step_ts for d in dtypes]
    steps([p for p in pairs if p[0] == step_ts[0]])
    r = guarded(
        lambda: spikingjelly_child(
            step_ts, dtypes, batch, repeats, smoke, min(budget.left(), 240), spikingjelly_python
        ),
        budget,
        45,
    )
    results["spikingjelly"] = r if "status" in r else {"status": r.get("skipped") or r["error"]}
    print(f"[{budget.elapsed():6.1f} s] spikingjelly: {results['spikingjelly']['status']}")
    save()
    memory(memory_ts[:2])
    steps([p for p in pairs if p[0] != step_ts[0]])
    for name in paper_configs()[:1] if smoke else paper_configs():
        check(f"config_smoke:{name}", lambda n=name: check_config_smoke(n), 20)
    memory(memory_ts[2:])
    save()
    return results


def _without_seconds(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "seconds"}


def _brief(r: dict) -> str:
    if "skipped" in r or "error" in r:
        return (r.get("skipped") or r["error"]).splitlines()[0][:200]
    keys = [k for k in r if k.endswith(("_s", "ratio_snn_over_ann", "bytes"))][:6]
    return ", ".join(f"{k}={r[k]:.4g}" for k in keys if isinstance(r[k], int | float))


# ----------------------------------------------------------------------------- targets


def _find(rows, **keys):
    for r in rows:
        if all(r.get(k) == v for k, v in keys.items()) and "error" not in r and "skipped" not in r:
            return r
    return None


def targets(results: dict) -> list[dict]:
    """Each target of the benchmarks README with what this run measured (``met``: ``None`` if
    not measured)."""
    rows = []

    def add(key, measured, met):
        rows.append({"target": TARGETS_TEXT[key], "measured": measured, "met": met})

    b = results["settings"]["batch"]
    step = _find(results["step"], T=4, dtype="float32")
    bf16 = _find(results["step"], T=4, dtype="bfloat16")
    if step:
        text = f"float32 {step['ratio_snn_over_ann']:.3f}"
        if bf16:
            text += f", bfloat16 {bf16['ratio_snn_over_ann']:.3f}"
        add("step_ratio", text, step["ratio_snn_over_ann"] <= 1.15)
    else:
        add("step_ratio", "not measured", None)

    mem = {(r["T"], r["case"]): r for r in results["memory"] if "temp_bytes" in r}
    ann, compact = mem.get((4, "ann")), mem.get((4, "snn_compact"))
    if ann and compact:
        temp = compact["temp_bytes"] / ann["temp_bytes"]
        text = f"temp {temp:.2f}x"
        if ann.get("peak_bytes") and compact.get("peak_bytes"):
            text += f", peak {compact['peak_bytes'] / ann['peak_bytes']:.2f}x"
        add("compact_vs_ann", text, temp <= 0.75)
    else:
        add("compact_vs_ann", "not measured", None)

    plain, compact = mem.get((16, "snn_none")), mem.get((16, "snn_compact"))
    if plain and compact:
        temp = compact["temp_bytes"] / plain["temp_bytes"]
        slower = compact["step_s"] / plain["step_s"]
        text = f"temp {temp:.2f}x, time {slower:.2f}x"
        if plain.get("peak_bytes") and compact.get("peak_bytes"):
            text += f", peak {compact['peak_bytes'] / plain['peak_bytes']:.2f}x"
        add("t16_compact", text, temp <= 0.5 and slower <= 1.3)
    else:
        add("t16_compact", "not measured", None)

    lif = [r for r in results["lif"] if "floor_s" in r]
    if lif:
        r = lif[-1]  # the largest shape
        ratios = {
            k.removesuffix("_over_floor"): v for k, v in r.items() if k.endswith("_over_floor")
        }
        best = min(ratios, key=ratios.get)
        add("lif_floor", f"{r['shape']}: {best} {ratios[best]:.2f}x", ratios[best] <= 3.0)
    else:
        add("lif_floor", "not measured", None)

    sj = _find(results["spikingjelly"].get("rows", []), T=4, dtype="float32")
    ours = _find(results["step"], T=4, dtype="float32")
    if sj and ours and sj.get("B") == b:
        faster = ours["snn_step_s"] < sj["step_s"]
        options = []
        for kind in ("snn_none", "snn_compact"):
            m = mem.get((4, kind))
            if m and m.get("peak_bytes") and sj.get("peak_bytes"):
                options.append((kind, m["peak_bytes"] / sj["peak_bytes"]))
        text = f"time {ours['snn_step_s'] / sj['step_s']:.2f}x SpikingJelly's; " + (
            ", ".join(f"{k} peak {x:.2f}x" for k, x in options) or "peak not measured"
        )
        met = (faster and any(x <= 1.0 for _, x in options)) if options else None
        add("spikingjelly", text, met)
    else:
        status = results["spikingjelly"].get("status", "not run")
        add("spikingjelly", f"not measured at T = 4, B = {b} (SpikingJelly: {status})", None)
    return rows


# ----------------------------------------------------------------------------- output


def _mib(n) -> str:
    return "" if n is None else f"{n / 2**20:.0f}"


def _ms(s) -> str:
    return "" if s is None else f"{s * 1e3:.2f}"


def _status(r: dict) -> str | None:
    if "skipped" in r:
        return f"skipped ({r['skipped']})"
    if "error" in r:
        return f"error: {r['error'].splitlines()[0][:150]}"
    return None


def markdown(results: dict) -> str:
    lines = ["## Machine", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["machine"].items()]
    s = results["settings"]
    lines += [f"| settings | {json.dumps(s)} |", f"| elapsed s | {results['elapsed_s']:.0f} |"]

    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "**yes**", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")

    lines += ["", "## Checks", "", "| check | passed | s | detail |", "|---|---|---|---|"]
    for c in results["checks"]:
        detail = _status(c) or json.dumps(
            {k: v for k, v in c.items() if k not in ("check", "passed", "seconds")}
        )
        lines.append(f"| {c['check']} | {c['passed']} | {c.get('seconds', 0):.1f} | {detail} |")

    lines += [
        "",
        f"## {s['network']} train step: SNN (T, B) vs ANN twin (B*T)",
        "",
        "| T | B | dtype | SNN ms (min-max) | ANN ms (min-max) | SNN/ANN | compile SNN s | "
        "compile ANN s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["step"], key=lambda r: (r["dtype"], r["T"])):
        head = f"| {r['T']} | {r['B']} | {r['dtype']} |"
        if _status(r):
            lines.append(f"{head} {_status(r)} | | | | |")
            continue
        sn, an = r["snn_spread_s"], r["ann_spread_s"]
        lines.append(
            f"{head} {_ms(r['snn_step_s'])} ({_ms(sn[0])}-{_ms(sn[1])}) | "
            f"{_ms(r['ann_step_s'])} ({_ms(an[0])}-{_ms(an[1])}) | "
            f"**{r['ratio_snn_over_ann']:.3f}** | {r['snn_compile_s']:.1f} | "
            f"{r['ann_compile_s']:.1f} |"
        )

    lines += [
        "",
        f"## Memory of the {s['network']} train step (float32; each case a fresh process)",
        "",
        "| T | B | case | temp MiB | x ANN | x snn_none | peak MiB | peak after compile MiB | "
        "step ms | time x snn_none | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = {(r["T"], r["case"]): r for r in results["memory"] if "temp_bytes" in r}
    for r in sorted(results["memory"], key=lambda r: (r["T"], MEMORY_KINDS.index(r["case"]))):
        head = f"| {r['T']} | {r['B']} | {r['case']} |"
        if _status(r):
            lines.append(f"{head} {_status(r)} | | | | | | | |")
            continue
        ann, plain = ok.get((r["T"], "ann")), ok.get((r["T"], "snn_none"))
        x_ann = f"{r['temp_bytes'] / ann['temp_bytes']:.2f}" if ann else ""
        x_plain = f"{r['temp_bytes'] / plain['temp_bytes']:.2f}" if plain else ""
        t_plain = f"{r['step_s'] / plain['step_s']:.2f}" if plain else ""
        lines.append(
            f"{head} {_mib(r['temp_bytes'])} | {x_ann} | {x_plain} | {_mib(r['peak_bytes'])} | "
            f"{_mib(r['peak_after_compile_bytes'])} | {_ms(r['step_s'])} | {t_plain} | "
            f"{r['compile_s']:.1f} |"
        )

    lines += [
        "",
        "## LIF fwd + bwd against the elementwise floor (`x * 2 + 1`)",
        "",
        "| shape | floor ms (GB/s) | case | ms | x floor | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["lif"]:
        if _status(r):
            lines.append(f"| {r['shape']} | {_status(r)} | | | | |")
            continue
        floor = f"{_ms(r['floor_s'])} ({r['floor_gb_per_s']:.0f})"
        for key in (k.removesuffix("_over_floor") for k in r if k.endswith("_over_floor")):
            lines.append(
                f"| {r['shape']} | {floor} | {key} | {_ms(r[f'{key}_s'])} | "
                f"{r[f'{key}_over_floor']:.2f} | {r[f'{key}_compile_s']:.1f} |"
            )

    sj = results["spikingjelly"]
    lines += ["", "## SpikingJelly ResNet-19 tdBN train step (PyTorch)", "", f"{sj['status']}"]
    if sj.get("versions"):
        lines += ["", f"versions {json.dumps(sj['versions'])}; device {sj.get('device')}"]
        lines += [f"LIF implementation: {'; '.join(sj.get('lif_implementation', []))}"]
    if sj.get("rows"):
        lines += [
            "",
            "| T | B | dtype | step ms (min-max) | peak MiB | first step s |",
            "|---|---|---|---|---|---|",
        ]
        for r in sj["rows"]:
            head = f"| {r['T']} | {r['B']} | {r['dtype']} |"
            if _status(r):
                lines.append(f"{head} {_status(r)} | | |")
                continue
            lo, hi = r["spread_s"]
            lines.append(
                f"{head} {_ms(r['step_s'])} ({_ms(lo)}-{_ms(hi)}) | {_mib(r['peak_bytes'])} | "
                f"{r['first_step_s']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def write(results: dict, out: str) -> None:
    """``results.json`` and ``results.md`` under ``out``, each replaced whole."""
    for name, text in (
        ("results.json", json.dumps(results, indent=2)),
        ("results.md", markdown(results)),
    ):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def main(argv):
    del argv
    smoke = flags.FLAGS.smoke
    allocator = run.use_allocator(flags.FLAGS.allocator)
    if _CHILD.value:
        kind, t, b = _CHILD.value.split(":")
        print(json.dumps(memory_case(kind, int(t), int(b), _REPEATS.value, smoke)))
        return
    results = run_all(
        flags.FLAGS.out,
        smoke=smoke,
        batch=_BATCH.value,
        repeats=_REPEATS.value,
        budget_s=_BUDGET.value,
        step_ts=[int(t) for t in _STEP_T.value],
        memory_ts=[int(t) for t in _MEMORY_T.value],
        spikingjelly_python=_SJ_PYTHON.value,
        allocator=allocator,
    )
    print(markdown(results))
    failed = [c["check"] for c in results["checks"] if c["passed"] is False]
    if failed:
        raise SystemExit(f"failed checks: {', '.join(failed)} (results written to the output)")


if __name__ == "__main__":
    app.run(main)
