r"""Every row of the seed's table on one model: accuracy against time steps, spikes and energy.

    python -m experiments.compare_methods [--config=experiments/configs/compare_digits.py] \
        [--config.key=value ...] [--workdir=workdirs/<config name>] [--smoke]

Trains the ANN twin once (or loads it from ``<workdir>/ann``, the folder of
its method's name), converts it to an SNN and simulates it at every ``T`` of
the config, fine-tunes the conversion (hybrid training), and trains the
directly trained SNNs (spike-based BP, STBP without normalization,
STBP-tdBN), each in ``<workdir>/<method>_T<T>`` (rerunning resumes and skips
what is done; a row resumed with another config, or a hybrid with another
conversion, is an error; a stopped training ends the comparison). Every row is evaluated on the test
split: accuracy, spikes per image, synaptic operations and MACs per image, and
the energy estimate of ``snn_jax.analysis`` (0.9 pJ per accumulate, 4.6 pJ
per multiply-accumulate). Writes ``results.json``, ``results.md`` (the
table) and ``accuracy_vs_time_steps.png`` to the workdir. ``--smoke`` runs
every kind of row for a couple of steps (see ``config.compare.smoke``).

The rows are described in ``experiments/configs/compare_base.py``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import require_matplotlib
from experiments.configs.compare_base import KINDS
from snn_jax import analysis, conversion
from snn_jax import data as data_lib
from snn_jax.training import (
    Checkpointer,
    TrainState,
    build_model,
    create_train_state,
    evaluate,
    make_mesh,
    make_optimizer,
    train_and_evaluate,
)
from snn_jax.training.writers import write_json_atomic

COLUMNS = (
    ("method", "method"),
    ("time_steps", "T"),
    ("accuracy", "test acc. (%)"),
    ("test_accuracy_at_best_validation", "at best val. (%)"),
    ("spikes_per_image", "spikes / image"),
    ("sops", "SOPs / image"),
    ("macs", "MACs / image"),
    ("energy_uj", "energy / image (µJ)"),
    ("note", "note"),
)


def apply_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config shrunk to ``config.compare.smoke``: few methods, one ``T``, two steps each."""
    config = copy.deepcopy(config)
    smoke = config.compare.smoke
    keep = tuple(smoke.methods)
    unknown = set(keep) - set(config.compare.methods)
    if unknown:
        raise ValueError(f"compare.smoke.methods names unknown methods {sorted(unknown)}")
    methods = ml_collections.ConfigDict()
    for name in keep:
        m = config.compare.methods[name]
        m.time_steps = (1,) if m.kind == "ann" else (int(smoke.time_steps),)
        m.overrides.num_train_steps = int(smoke.num_train_steps)
        methods[name] = m
    config.compare.methods = methods
    config.compare.calibration_examples = int(smoke.calibration_examples)
    config.compare.energy_examples = int(smoke.energy_examples)
    config.update(smoke.overrides.to_dict())
    config.num_train_steps = int(smoke.num_train_steps)
    config.optimizer.warmup_steps = 0  # train_and_evaluate refuses a warm-up longer than the run
    config.progress = False
    return config


def check_methods(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` for a malformed ``config.compare.methods``."""
    methods = config.compare.methods
    anns = [n for n, m in methods.items() if m.kind == "ann"]
    for name, m in methods.items():
        if m.kind not in KINDS:
            raise ValueError(f"method {name}: unknown kind {m.kind!r}; expected one of {KINDS}")
        if m.kind in ("conversion", "hybrid") and len(anns) != 1:
            raise ValueError(f"method {name} ({m.kind}) needs exactly one 'ann' method, got {anns}")
        if m.kind == "hybrid" and methods.get(m.source, None) is None:
            raise ValueError(f"hybrid method {name}: unknown source conversion {m.source!r}")
        if m.kind == "hybrid" and methods[m.source].kind != "conversion":
            raise ValueError(f"hybrid method {name}: source {m.source!r} is not a conversion")
        if not m.time_steps or min(m.time_steps) < 1:
            raise ValueError(f"method {name}: time_steps must be >= 1, got {m.time_steps}")


def method_config(
    config: ml_collections.ConfigDict, method: ml_collections.ConfigDict, time_steps: int
) -> ml_collections.ConfigDict:
    """The training config of one row: the base, the method's overrides, its ``T``."""
    c = copy.deepcopy(config)
    del c["compare"]
    c.update(method.overrides.to_dict())
    c.time_steps = time_steps
    return c


def _pipeline(config: ml_collections.ConfigDict) -> data_lib.Pipeline:
    pipeline = data_lib.create_pipeline(
        config.data,
        global_batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        seed=config.seed,
    )
    if pipeline.time_major:
        raise ValueError(
            f"the comparison needs static images (conversion feeds them as a constant current); "
            f"{pipeline.name} gives event frames"
        )
    return pipeline


def _images(batches, count: int) -> np.ndarray:
    """The first ``count`` real images of ``batches``."""
    out, have = [], 0
    for batch in batches:
        images = np.asarray(batch["image"], np.float32)
        if "mask" in batch:
            images = images[np.asarray(batch["mask"], bool)]
        out.append(images[: count - have])
        have += len(out[-1])
        if have >= count:
            break
    return np.concatenate(out)


def _state(config, model, example_shape, variables=None) -> TrainState:
    """The step-0 train state of a comparison row (from ``variables`` when given)."""
    return create_train_state(
        jax.random.PRNGKey(config.seed),
        model,
        make_optimizer(config.optimizer, 1),  # the optimizer state does not depend on the length
        jax.ShapeDtypeStruct((1, *example_shape), jnp.float32),
        make_mesh(),
        variables=variables,
    )


def _variables(state) -> dict[str, Any]:
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return jax.device_get(variables)


def train_or_load(config, workdir: str, pipeline, initial: dict | None = None):
    """Trains ``config`` in ``workdir`` (resuming), then returns ``(model, variables, summary)``.

    ``initial``: variables to start from (a step-0 checkpoint is written
    first if the workdir has none): the hybrid hand-over.
    """
    model = build_model(config, pipeline.num_classes)
    checkpoints = os.path.join(workdir, "checkpoints")
    if initial is not None:
        with Checkpointer(checkpoints) as ckpt:
            if ckpt.latest_step() is None:
                ckpt.save(_state(config, model, pipeline.example_shape, initial))
    state, summary = train_and_evaluate(config, workdir)
    if summary["interrupted"]:  # measuring a half-trained row would report it as done
        raise SystemExit(
            f"{workdir} stopped at step {summary['steps']} of {summary['total_steps']}; "
            "rerun the same command to resume the comparison"
        )
    return model, _variables(state), summary


def _selection(summary: dict) -> dict:
    """The validation-selected test accuracy of a trained row (None without a validation split)."""
    return {
        "test_accuracy_at_best_validation": summary["test_accuracy_at_best_validation"],
        "best_validation_accuracy": summary["best_validation_accuracy"],
        "best_validation_step": summary["best_validation_step"],
    }


def energy(model, variables, images: np.ndarray, pooled, budget: int) -> dict[str, float]:
    """Per-image SOPs, MACs and energy (``analysis.energy_estimate``) over ``images``.

    ``pooled`` (``{layer: n}``) is used for spiking models only.
    """
    spiking = model.neuron.kind == "lif"
    chunk = max(1, budget // (getattr(model, "time_steps", None) or 1))
    totals: dict[str, float] = {}
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        ops = analysis.count_operations(
            model, variables, part, pooled=dict(pooled) if spiking else None, spiking=spiking
        )
        for key, value in analysis.energy_estimate(ops).items():
            totals[key] = totals.get(key, 0.0) + value * len(part)
    return {key: value / len(images) for key, value in totals.items()}


def measure(model, variables, pipeline, energy_images, config) -> dict[str, Any]:
    """Accuracy and spikes per image on the test split, SOPs/MACs/energy on ``energy_images``."""
    budget = int(config.compare.max_steps_times_batch)
    t0 = time.perf_counter()
    result = evaluate(
        model, variables, pipeline.eval_batches(), max_steps_times_batch=budget, predictions=True
    )
    e = energy(model, variables, energy_images, config.compare.pooled.to_dict(), budget)
    return {
        "accuracy": result["accuracy"],
        "spikes_per_image": result["spikes_per_image"],
        "test_examples": result["count"],
        "sops": e["sops"],
        "macs": e["macs"],
        "energy_uj": e["energy_j"] * 1e6,
        "eval_seconds": time.perf_counter() - t0,
        "predictions": result["predictions"],
    }


def run(config: ml_collections.ConfigDict, workdir: str, smoke: bool = False) -> list[dict]:
    """Runs every method of ``config.compare`` and writes the results; returns the rows."""
    if smoke:
        config = apply_smoke(config)
    check_methods(config)
    require_matplotlib("experiments.compare_methods")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    pipeline = _pipeline(config)
    energy_images = _images(pipeline.eval_batches(), int(config.compare.energy_examples))
    calibration = _images(pipeline.train_batches(0), int(config.compare.calibration_examples))
    methods = config.compare.methods
    rows: list[dict] = []
    conversions: dict[str, conversion.Conversion] = {}
    ann = None  # (model, variables, test predictions)

    def add(name, method, steps, measured, **extra):
        row = {"key": name, "kind": method.kind, "method": method.label, "time_steps": steps}
        row.update({k: v for k, v in measured.items() if k != "predictions"}, **extra)
        rows.append(row)
        print(f"{name} T={steps}: test accuracy {100 * row['accuracy']:.2f} %", flush=True)
        write_json_atomic(os.path.join(workdir, "results.json"), rows)

    # conversions need the ANN and hybrids their conversion: run kind by kind, then by rank
    order = sorted(methods, key=lambda n: (KINDS.index(methods[n].kind), methods[n].rank))
    for name in order:
        method = methods[name]
        if method.kind == "ann":
            cfg = method_config(config, method, 1)
            model, variables, summary = train_or_load(cfg, os.path.join(workdir, name), pipeline)
            measured = measure(model, variables, pipeline, energy_images, config)
            ann = (model, variables, measured["predictions"])
            selection = _selection(summary)
            add(name, method, 1, measured, train_seconds=summary["train_seconds"], **selection)
        elif method.kind == "conversion":
            t0 = time.perf_counter()
            conv = conversion.convert(
                ann[0],
                ann[1],
                calibration,
                percentile=float(method.percentile),
                channelwise=bool(method.channelwise),
            )
            conversions[name] = conv
            convert_seconds = time.perf_counter() - t0
            for steps in method.time_steps:
                model = conv.model.clone(time_steps=steps)
                measured = measure(model, conv.variables, pipeline, energy_images, config)
                agreement = float(np.mean(measured["predictions"] == ann[2]))
                add(
                    name,
                    method,
                    steps,
                    measured,
                    ann_agreement=agreement,
                    convert_seconds=convert_seconds,
                    note=f"same class as the ANN: {100 * agreement:.2f} %",
                )
        elif method.kind == "hybrid":
            conv = conversions.get(method.source)
            if conv is None:
                raise ValueError(f"hybrid {name}: its source {method.source} did not run")
            source = methods[method.source]
            for steps in method.time_steps:
                cfg = method_config(config, method, steps)
                # what the row starts from, so that resuming it with another conversion fails
                cfg.hand_over = ml_collections.ConfigDict(
                    {
                        "source": method.source,
                        "percentile": float(source.percentile),
                        "channelwise": bool(source.channelwise),
                        "calibration_examples": int(config.compare.calibration_examples),
                    }
                )
                snn = build_model(cfg, pipeline.num_classes)
                initial = conversion.hand_over(conv, snn, calibration)
                start = evaluate(
                    snn,
                    initial,
                    pipeline.eval_batches(),
                    max_steps_times_batch=int(config.compare.max_steps_times_batch),
                )
                model, variables, summary = train_or_load(
                    cfg, os.path.join(workdir, f"{name}_T{steps}"), pipeline, initial
                )
                measured = measure(model, variables, pipeline, energy_images, config)
                add(
                    name,
                    method,
                    steps,
                    measured,
                    step0_accuracy=start["accuracy"],
                    train_seconds=summary["train_seconds"],
                    **_selection(summary),
                    note=f"step 0: {100 * start['accuracy']:.2f} %",
                )
        else:
            for steps in method.time_steps:
                cfg = method_config(config, method, steps)
                model, variables, summary = train_or_load(
                    cfg, os.path.join(workdir, f"{name}_T{steps}"), pipeline
                )
                measured = measure(model, variables, pipeline, energy_images, config)
                add(
                    name,
                    method,
                    steps,
                    measured,
                    train_seconds=summary["train_seconds"],
                    **_selection(summary),
                )

    findings = compare_with_reference(rows, tuple(config.compare.reference))
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n\n".join([markdown_table(rows), accuracy_by_time_steps(rows), *findings]))
        f.write("\n")
    plot(rows, os.path.join(workdir, "accuracy_vs_time_steps.png"), config.name)
    return rows


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key in ("accuracy", "test_accuracy_at_best_validation"):
        return f"{100 * value:.2f}"
    if key in ("spikes_per_image", "sops", "macs"):
        return f"{value:,.0f}"
    if key == "energy_uj":
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table (method x T x accuracy, spikes, operations, energy).

    >>> print(markdown_table([{"method": "m", "time_steps": 4, "accuracy": 0.5,
    ...                        "spikes_per_image": 10.0, "sops": 20.0, "macs": 0.0,
    ...                        "energy_uj": 0.018}]))
    | method | T | test acc. (%) | at best val. (%) | spikes / image | SOPs / image | MACs / image | energy / image (µJ) | note |
    |---|---|---|---|---|---|---|---|---|
    | m | 4 | 50.00 |  | 10 | 20 | 0 | 0.018 |  |
    """  # noqa: E501
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(k, row.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def accuracy_by_time_steps(rows: list[dict]) -> str:
    """Test accuracy (%) as a markdown table: one row per method, one column per ``T``.

    >>> print(accuracy_by_time_steps([
    ...     {"method": "a", "time_steps": 1, "accuracy": 0.5},
    ...     {"method": "b", "time_steps": 4, "accuracy": 0.25}]))
    | method | T = 1 | T = 4 |
    |---|---|---|
    | a | 50.00 |  |
    | b |  | 25.00 |
    """
    steps = sorted({r["time_steps"] for r in rows})
    cells: dict[str, dict[int, float]] = {}
    for r in rows:
        cells.setdefault(r["method"], {})[r["time_steps"]] = r["accuracy"]
    lines = [
        "| method | " + " | ".join(f"T = {t}" for t in steps) + " |",
        "|" + "---|" * (len(steps) + 1),
    ]
    for method, acc in cells.items():
        values = [_fmt("accuracy", acc.get(t)) for t in steps]
        lines.append(f"| {method} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def compare_with_reference(rows: list[dict], reference: tuple[str, int]) -> list[str]:
    """Sentences: does the reference row beat each conversion at its ``T``, and when do they match.

    >>> rows = [{"key": "ref", "method": "R", "time_steps": 4, "accuracy": 0.9},
    ...         {"key": "c", "kind": "conversion", "method": "C", "time_steps": 4, "accuracy": 0.5},
    ...         {"key": "c", "kind": "conversion", "method": "C", "time_steps": 32, "accuracy": 0.95}]
    >>> compare_with_reference(rows, ("ref", 4))  # doctest: +NORMALIZE_WHITESPACE
    ['R at T = 4 (90.00 %) beats C at T = 4 (50.00 %); C first reaches 90.00 % at T = 32 (95.00 %).']
    """  # noqa: E501
    key, steps = reference
    ref = next((r for r in rows if r["key"] == key and r["time_steps"] == steps), None)
    if ref is None:
        return []
    out = []
    for conv_key in dict.fromkeys(r["key"] for r in rows if r.get("kind") == "conversion"):
        conv = sorted((r for r in rows if r["key"] == conv_key), key=lambda r: r["time_steps"])
        same = next((r for r in conv if r["time_steps"] == steps), None)
        label = conv[0]["method"]
        head = f"{ref['method']} at T = {steps} ({100 * ref['accuracy']:.2f} %)"
        if same is not None:
            verb = "beats" if ref["accuracy"] > same["accuracy"] else "does not beat"
            head += f" {verb} {label} at T = {steps} ({100 * same['accuracy']:.2f} %)"
        else:
            head += f" vs {label}"
        match = next((r for r in conv if r["accuracy"] >= ref["accuracy"]), None)
        if match is None:
            best = max(r["accuracy"] for r in conv)
            tail = (
                f"{label} does not reach {100 * ref['accuracy']:.2f} % up to "
                f"T = {conv[-1]['time_steps']} (best {100 * best:.2f} %)."
            )
        else:
            tail = (
                f"{label} first reaches {100 * ref['accuracy']:.2f} % at "
                f"T = {match['time_steps']} ({100 * match['accuracy']:.2f} %)."
            )
        out.append(f"{head}; {tail}")
    return out


def plot(rows: list[dict], path: str, title: str) -> None:
    """Test accuracy against ``T`` (log scale), one line per method; the ANN as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in dict.fromkeys(r["key"] for r in rows):
        sel = sorted((r for r in rows if r["key"] == key), key=lambda r: r["time_steps"])
        acc = [100 * r["accuracy"] for r in sel]
        if sel[0]["kind"] == "ann":
            ax.axhline(acc[0], color="k", linestyle="--", linewidth=1, label=sel[0]["method"])
            continue
        ax.plot([r["time_steps"] for r in sel], acc, marker="o", label=sel[0]["method"])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def define_flags() -> None:
    """The command-line flags; defined when run as a script, so that importing defines none."""
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(os.path.dirname(__file__), "configs", "compare_digits.py"),
        "Comparison config (get_config() with a `compare` field).",
        lock_config=False,
    )
    flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<name>).")
    flags.DEFINE_bool("smoke", False, "Run every kind of row for a few steps only.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # progress is printed; orbax logs every restore
    f = flags.FLAGS
    config = f.config
    name = config.name + ("_smoke" if f.smoke else "")
    workdir = f.workdir or os.path.join("workdirs", name)
    run(config, workdir, smoke=f.smoke)
    with open(os.path.join(workdir, "results.md")) as out:
        print(out.read())
    print(f"results in {os.path.abspath(workdir)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
