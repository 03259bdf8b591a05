r"""Temporal-wise attention on ``event_digits``: with and without, scores per bin, pruning.

    python -m experiments.compare_attention [--workdir=workdirs/compare_attention] \
        [--time_steps=8,16] [--num_epochs=N] [--smoke]

For each ``T`` it trains ``experiments/configs/event_digits.py`` (no
attention) and ``event_digits_ta.py`` (attention) in
``<workdir>/{plain,attention}_t<T>`` (rerunning resumes and skips what is
done), then, on the test split:

- accuracy, spikes per image and synaptic operations per image of both arms;
- the attention model's scores ``d[b, t]`` of every layer, set against each
  bin's share of noise events (``snn_jax.data.event_digits.bin_statistics``):
  per layer, the mean +- std over test recordings of each recording's mean
  score on its noise-only bins (wholly inside idle segments) and on its
  saccade bins (wholly inside saccades);
- accuracy, fraction of frames dropped and SOPs as the discard threshold
  rises (the paper's attention pruning at inference, METHOD.md section 11).

Writes ``results.json``, ``results.md`` (the tables) and
``attention_scores.png`` / ``attention_pruning.png`` to the workdir.
``--smoke`` runs everything for two training steps on a tiny model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from experiments import require_matplotlib
from experiments.configs import event_digits, event_digits_ta
from snn_jax import analysis
from snn_jax import data as data_lib
from snn_jax.data.event_digits import EVENT_DIGITS, bin_statistics
from snn_jax.training import build_model, evaluate, train_and_evaluate
from snn_jax.training.evaluation import forward_with_spikes
from snn_jax.training.writers import write_json_atomic

ARMS = ("plain", "attention", "attention_input")
THRESHOLDS = (0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)


def arm_config(arm: str, time_steps: int, smoke: bool, epochs: int | None):
    """The config of one arm at ``T``: ``plain`` is ``event_digits.py``, ``attention``
    ``event_digits_ta.py``, ``attention_input`` the latter with the squeeze on the units'
    inputs (``model.attention_squeeze = "input"``)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    arg = f"t{time_steps}" + (",smoke" if smoke else "")
    config = (event_digits if arm == "plain" else event_digits_ta).get_config(arg)
    if arm == "attention_input":
        config.model.attention_squeeze = "input"
    if epochs is not None:
        config.num_epochs = epochs
    return config


def _variables(state) -> dict[str, Any]:
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return jax.device_get(variables)


def attention_scores(model, variables, pipeline) -> dict[str, np.ndarray]:
    """``{layer path: scores [N, T]}`` over the test split, in its order (real examples)."""
    run = jax.jit(lambda v, x: forward_with_spikes(model, v, x)[2])
    found: dict[str, list[np.ndarray]] = {}
    for batch in pipeline.eval_batches():
        sown = jax.device_get(run(variables, batch["image"]))
        flat = {
            "/".join(str(getattr(k, "key", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(sown)[0]
        }
        for path, leaf in flat.items():
            if "/attention/attention_scores" in path:
                layer = path.split("/attention/")[0]
                found.setdefault(layer, []).append(np.asarray(leaf)[batch["mask"]])
    return {layer: np.concatenate(parts) for layer, parts in found.items()}


def _mean_std(values) -> dict[str, float]:
    if not len(values):
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def score_separation(scores: dict[str, np.ndarray], idle: np.ndarray) -> dict[str, dict]:
    """Per layer: mean +- std over recordings of the mean score on noise-only and saccade bins.

    ``idle [N, T]``: each bin's idle share (1: noise only, 0: wholly in saccades).
    Recordings without a bin of one kind are left out of that kind's figures.
    """
    out = {}
    for layer, d in scores.items():
        row = {}
        for kind, mask in (("noise_only", idle == 1.0), ("saccade", idle == 0.0)):
            has = mask.any(axis=1)
            per_rec = [d[i][mask[i]].mean() for i in np.flatnonzero(has)]
            row[kind] = {**_mean_std(per_rec), "recordings": int(has.sum())}
        both = (idle == 1.0).any(axis=1) & (idle == 0.0).any(axis=1)
        gap = [
            d[i][idle[i] == 0.0].mean() - d[i][idle[i] == 1.0].mean() for i in np.flatnonzero(both)
        ]
        row["saccade_minus_noise"] = _mean_std(gap)
        row["lower_on_noise_in"] = float(np.mean(np.asarray(gap) > 0)) if gap else float("nan")
        out[layer] = row
    return out


def operations(model, variables, pipeline) -> dict[str, float]:
    """SOPs and MACs per image over one test batch (``snn_jax.analysis``)."""
    batch = next(iter(pipeline.eval_batches()))
    x = batch["image"][:, batch["mask"]]
    ops = analysis.count_operations(model, variables, x)
    return analysis.energy_estimate(ops)


def pruning_curve(config, variables, pipeline, thresholds=THRESHOLDS) -> list[dict[str, float]]:
    """Accuracy, dropped frames and SOPs at each discard threshold (evaluation only)."""
    rows = []
    for threshold in thresholds:
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.model.discard_threshold = float(threshold)
        model = build_model(cfg, pipeline.num_classes)
        result = evaluate(model, variables, pipeline.eval_batches(), time_major=True)
        dropped = _dropped_fraction(model, variables, pipeline)
        rows.append(
            {
                "threshold": float(threshold),
                "accuracy": result["accuracy"],
                "spikes_per_image": result["spikes_per_image"],
                "dropped_fraction": dropped,
                "sops": operations(model, variables, pipeline)["sops"],
            }
        )
    return rows


def _dropped_fraction(model, variables, pipeline) -> float:
    """The fraction of (layer, frame) pairs dropped over the test split."""
    run = jax.jit(lambda v, x: forward_with_spikes(model, v, x)[2])
    total, count = 0.0, 0
    for batch in pipeline.eval_batches():
        sown = jax.device_get(run(variables, batch["image"]))
        leaves = [
            np.asarray(leaf)[batch["mask"]]
            for path, leaf in jax.tree_util.tree_flatten_with_path(sown)[0]
            if "dropped_fraction" in str(path)
        ]
        for leaf in leaves:
            total += float(leaf.sum())
            count += leaf.size
    return total / count if count else 0.0


def run_arm(config, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) one arm; returns its summary, model, variables and pipeline."""
    start = time.time()
    state, summary = train_and_evaluate(config, workdir)
    logging.info("%s done in %.0f s", workdir, time.time() - start)
    pipeline = data_lib.create_pipeline(
        config.data, global_batch_size=config.batch_size, eval_batch_size=config.eval_batch_size
    )
    model = build_model(config, pipeline.num_classes)
    return {
        "summary": summary,
        "model": model,
        "variables": _variables(state),
        "pipeline": pipeline,
    }


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(h for _, h in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for key, _ in columns:
            v = row[key]
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(figures: dict[str, float]) -> str:
    return f"{figures['mean']:.3f} +- {figures['std']:.3f}"


def plot(results: dict[str, Any], stats_by_t: dict[int, Any], workdir: str) -> None:
    """The two figures: scores against noise share per bin, accuracy against frames dropped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {(arm, t): run for arm in ARMS[1:] for t, run in results.get(arm, {}).items()}
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, ((arm, t), run) in zip(axes[0], sorted(runs.items()), strict=True):
        noise = stats_by_t[t].noise_fraction.ravel()
        for layer, d in run["scores"].items():
            d = np.asarray(d).ravel()
            edges = np.linspace(0, 1, 11)
            which = np.clip(np.digitize(noise, edges) - 1, 0, 9)
            centers, means = [], []
            for k in range(10):
                if np.any(which == k):
                    centers.append((edges[k] + edges[k + 1]) / 2)
                    means.append(d[which == k].mean())
            ax.scatter(noise, d, s=2, alpha=0.15)
            ax.plot(centers, means, marker="o", label=layer)
        ax.set_xlabel("noise events / all events in the bin")
        ax.set_ylabel("attention score d[b, t]")
        ax.set_title(f"{arm}, T = {t}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "attention_scores.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for (arm, t), run in sorted(runs.items()):
        curve = run["pruning"]
        ax.plot(
            [r["dropped_fraction"] for r in curve],
            [100 * r["accuracy"] for r in curve],
            marker="o",
            label=f"{arm}, T = {t}",
        )
    ax.set_xlabel("fraction of frames dropped (all layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "attention_pruning.png"), dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    require_matplotlib("experiments.compare_attention")
    f = flags.FLAGS
    time_steps = [int(v) for v in f.time_steps]
    run(
        f.workdir,
        time_steps,
        arms=f.arms,
        smoke=f.smoke,
        epochs=f.num_epochs,
        cache_dir=f.cache_dir,
    )


def run(
    workdir: str,
    time_steps: list[int],
    *,
    arms: Sequence[str] = ("plain", "attention"),
    smoke: bool = False,
    epochs: int | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The whole comparison (module docstring); returns what ``results.json`` holds."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    results: dict[str, Any] = {arm: {} for arm in arms}
    results["spec"] = repr(EVENT_DIGITS)
    stats_by_t = {}
    rows = []
    for t in time_steps:
        limit = 40 if smoke else None
        stats = bin_statistics("test", t, limit=limit)
        stats_by_t[t] = stats
        for arm in arms:
            config = arm_config(arm, t, smoke, epochs)
            if cache_dir is not None:
                config.data.cache_dir = cache_dir
            out = run_arm(config, os.path.join(workdir, f"{arm}_t{t}"))
            summary = out["summary"]
            ops = operations(out["model"], out["variables"], out["pipeline"])
            test = evaluate(
                out["model"], out["variables"], out["pipeline"].eval_batches(), time_major=True
            )
            entry = {
                "final_test_accuracy": summary["final_test_accuracy"],
                "train_seconds": summary["train_seconds"],
                "spikes_per_image": test["spikes_per_image"],
                "sops": ops["sops"],
                "macs": ops["macs"],
            }
            if arm != "plain":
                scores = attention_scores(out["model"], out["variables"], out["pipeline"])
                n = stats.idle.shape[0]
                scores = {k: v[:n] for k, v in scores.items()}
                entry["separation"] = score_separation(scores, stats.idle)
                entry["scores"] = {k: v.tolist() for k, v in scores.items()}
                thresholds = (0.5,) if smoke else THRESHOLDS
                entry["pruning"] = pruning_curve(
                    config, out["variables"], out["pipeline"], thresholds
                )
            results[arm][t] = entry
            rows.append(
                {
                    "arm": arm,
                    "T": t,
                    **{
                        k: v
                        for k, v in entry.items()
                        if k
                        in (
                            "final_test_accuracy",
                            "train_seconds",
                            "sops",
                            "spikes_per_image",
                        )
                    },
                }
            )
            write_json_atomic(os.path.join(workdir, "results.json"), results)
    plot(results, stats_by_t, workdir)
    md = [
        _table(
            rows,
            [
                ("arm", "arm"),
                ("T", "T"),
                ("final_test_accuracy", "final acc."),
                ("spikes_per_image", "spikes / image"),
                ("sops", "SOPs / image"),
                ("train_seconds", "train s"),
            ],
        )
    ]
    attention_runs = [(a, t, r) for a in arms if a != "plain" for t, r in results[a].items()]
    for arm, t, run in attention_runs:
        sep = [
            {
                "layer": layer,
                "noise-only": _pm(r["noise_only"]),
                "saccade": _pm(r["saccade"]),
                "gap": _pm(r["saccade_minus_noise"]),
                "lower": f"{100 * r['lower_on_noise_in']:.1f} %",
            }
            for layer, r in run["separation"].items()
        ]
        md.append(
            f"\n{arm}, T = {t}: attention scores per bin kind (mean +- std over recordings)\n"
        )
        md.append(
            _table(
                sep,
                [
                    ("layer", "layer"),
                    ("noise-only", "noise-only bins"),
                    ("saccade", "saccade bins"),
                    ("gap", "saccade - noise"),
                    ("lower", "recordings with lower noise score"),
                ],
            )
        )
        md.append(f"\n{arm}, T = {t}: pruning\n")
        md.append(
            _table(
                run["pruning"],
                [
                    ("threshold", "d_th"),
                    ("dropped_fraction", "dropped"),
                    ("accuracy", "accuracy"),
                    ("sops", "SOPs / image"),
                ],
            )
        )
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return results


def define_flags() -> None:
    """The command line (defined only when run as a script, so the module imports anywhere)."""
    flags.DEFINE_string("workdir", "workdirs/compare_attention", "Output folder.")
    flags.DEFINE_list("time_steps", ["8", "16"], "Values of T.")
    flags.DEFINE_integer("num_epochs", None, "Override the configs' epochs.")
    flags.DEFINE_list("arms", ["plain", "attention"], f"Arms, of {ARMS}.")
    flags.DEFINE_bool("smoke", False, "Two training steps on a tiny model.")
    flags.DEFINE_string("cache_dir", None, "Frame cache folder (default: the configs').")


if __name__ == "__main__":
    define_flags()
    app.run(main)
