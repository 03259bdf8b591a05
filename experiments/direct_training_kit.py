r"""The direct-training kit on the digits: tdBN, TEBN, BNTT x (CE, TET) x (fixed, learned leak).

    python -m experiments.direct_training_kit --workdir=kit_out          # 12 runs
    python -m experiments.direct_training_kit --workdir=/tmp/kit --smoke  # seconds, for tests

Each run is the default digits job (``experiments/configs/digits.py``: the
digits CNN, T = 4, its optimiser and epochs) with ``model.norm`` in {tdbn,
tebn, bntt}, ``loss`` in {ce, tet} (TET with the authors' lambda = 1e-3, phi =
1) and ``model.learn_tau`` in {none, layer} (a parametric LIF, one leak per
layer, from tau = 0.25); one seed. A run's results are its summary's final
test accuracy, the test accuracy at the step of best validation accuracy
(``data.validation_fraction`` of the training images), the mean over layers
of the test firing rates and the training time per step (the median over the
logged windows after the first, which holds the compilation). Every run
keeps its own work directory under ``--workdir``: rerunning the command
resumes an interrupted run and skips finished ones. The table goes to
``--workdir/results.md`` (and ``results.json``). METHOD.md section 10
defines the methods; README.md ("Direct-training kit") has the
measured table.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import ml_collections
import numpy as np
from absl import app, flags

from experiments.configs import digits
from snn_jax.training import LOSSES, train_and_evaluate
from snn_jax.training.writers import write_json_atomic

NORMS = ("tdbn", "tebn", "bntt")
LEAKS = ("none", "layer")  # NeuronSpec.learn_tau


def run_config(norm: str, loss: str, learn_tau: str, smoke: bool = False):
    """The digits job of one row (module docstring); ``smoke``: a few steps of a tiny model."""
    c = digits.get_config()
    c.name = f"kit_{norm}_{loss}_{'plif' if learn_tau != 'none' else 'lif'}"
    c.time_steps = 4
    c.model.norm = norm
    c.model.learn_tau = learn_tau
    c.loss = loss
    c.tet_lambda = 1e-3
    c.tet_phi = 1.0
    c.progress = False
    if smoke:
        c.model.width = 4
        c.num_train_steps = 2
        c.batch_size = c.eval_batch_size = 16
        c.optimizer.warmup_steps = 0
        c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 2
    return c


def seconds_per_step(config: ml_collections.ConfigDict, run_dir: str) -> float:
    """The median training time per step over the logged windows after the first (which
    holds the compilation; the only one of a run logged once)."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    speeds = [m["images_per_second"] for m in lines if m["split"] == "train"]
    return config.batch_size / float(np.median(speeds[1:] or speeds))


def row(config: ml_collections.ConfigDict, summary: dict, run_dir: str) -> dict:
    """A table row from a run's config, summary and logs."""
    rates = list(summary["firing_rates"].values())
    return {
        "norm": config.model.norm,
        "loss": config.loss,
        "leak": "learned" if config.model.learn_tau != "none" else "fixed",
        "final_test_accuracy": summary["final_test_accuracy"],
        "best_validation_accuracy": summary["best_validation_accuracy"],
        "test_accuracy_at_best_validation": summary["test_accuracy_at_best_validation"],
        "firing_rate": sum(rates) / len(rates),
        "seconds_per_step": seconds_per_step(config, run_dir),
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
    }


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| norm | loss | leak | final test acc. | test at best val. | firing rate | ms / step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['norm']} | {r['loss']} | {r['leak']} | {100 * r['final_test_accuracy']:.2f} % "
            f"| {100 * r['test_accuracy_at_best_validation']:.2f} % | {r['firing_rate']:.3f} "
            f"| {1000 * r['seconds_per_step']:.0f} |"
        )
    return "\n".join(lines)


def run(workdir: str, smoke: bool = False) -> list[dict]:
    """Runs (or resumes, or skips) every row; writes ``results.json`` and ``results.md``."""
    rows = []
    start = time.time()
    for norm, loss, leak in itertools.product(NORMS, LOSSES, LEAKS):
        config = run_config(norm, loss, leak, smoke)
        run_dir = os.path.join(workdir, config.name)
        done = os.path.join(run_dir, "summary.json")
        summary = None
        if os.path.exists(done):
            with open(done) as f:
                summary = json.load(f)
        if summary is None or summary["interrupted"]:
            summary = train_and_evaluate(config, run_dir).summary
            if summary["interrupted"]:
                raise SystemExit(f"{config.name} was interrupted; rerun to resume")
        rows.append(row(config, summary, run_dir))
        write_json_atomic(os.path.join(workdir, "results.json"), rows)
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown(rows) + f"\n\n{len(rows)} runs, {time.time() - start:.0f} s this call\n")
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    rows = run(flags.FLAGS.workdir, flags.FLAGS.smoke)
    print(markdown(rows))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", "kit_out", "Where each run keeps its work directory.")
    flags.DEFINE_bool("smoke", False, "Two steps of a tiny model per row (for tests).")
    app.run(main)
