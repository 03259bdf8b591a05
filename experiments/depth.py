r"""Depth, trained: plain spiking CNNs of growing depth and a ResNet-19, for every norm.

    python -m experiments.depth --workdir=/tmp/depth_run                # the full table
    python -m experiments.depth --norms=tdbn,none --depths=4,20 --seeds=0,1
    python -m experiments.depth --smoke --workdir=/tmp/depth_smoke      # seconds (CI)

The tdBN paper's claim (Zheng et al. 2021; METHOD.md section 8) is that
threshold-dependent batch normalisation lets directly-trained SNNs get deep.
``experiments/gradient_norm.py`` shows it at initialisation; this script shows
it by training. Each *cell* is one (network, norm, seed): the plain CNN of
``experiments/configs/digits_plain.py`` at each depth of ``--depths`` and,
unless ``--resnet_width=0``, a ResNet-19 of that width, each with every norm of
``--norms`` (default: every norm of :data:`snn_jax.nn.norm_neuron.NORMS`),
trained by :func:`snn_jax.training.train_and_evaluate` on the bundled digits
with the same data, T, optimiser and epochs.

Per cell it records the training curves (``metrics.jsonl``), the final test
accuracy and the test accuracy at the best validation step, the firing rate
of every spiking layer on the test split at the end, and ``phi(J J^T)`` of
every block (``snn_jax.analysis.block_isometry``) at initialisation and after
training, on the same training images. Under ``--workdir`` it writes
``cells/<cell>/`` (the run, resumable, and ``cell.json``), ``results.json``,
``results.md`` (the tables), ``accuracy_vs_depth.png`` and ``curves.png``.

Rerunning the command resumes: a cell with its ``cell.json`` is not rerun, and
an interrupted cell resumes from its last checkpoint. A progress bar runs over
the cells. The measured table is in the README ("Depth: where tdBN matters").
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from tqdm import tqdm

from experiments import finite, require_matplotlib
from experiments.configs import digits_plain
from snn_jax import analysis
from snn_jax.data import load_digits_split
from snn_jax.nn.norm_neuron import NORMS
from snn_jax.training import build_model, create_train_state, train_and_evaluate
from snn_jax.training.writers import write_json_atomic

__all__ = ["SMOKE", "Cell", "Settings", "cell_config", "cells", "main", "run", "run_cell"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the experiment depends on; every cell shares it.

    Attributes:
      depths: conv units of the plain CNN, one column of cells per depth.
      norms: the norms compared (each one of ``NORMS``).
      seeds: run seeds; each cell is trained once per seed.
      plain_width: channels of the plain CNN's first stage.
      num_stages: stages of the plain CNN.
      resnet_width: base width of the ResNet-19 cells (0: no ResNet).
      time_steps: T.
      num_epochs: epochs of every cell.
      num_train_steps: > 0 overrides ``num_epochs`` (smoke runs).
      batch_size: training batch.
      num_probes: random probes per block for ``phi``.
      probe_batch: training images the Jacobians are taken at.
    """

    depths: tuple[int, ...] = (4, 8, 12, 16, 20)
    norms: tuple[str, ...] = NORMS
    seeds: tuple[int, ...] = (0,)
    plain_width: int = 16
    num_stages: int = 3
    resnet_width: int = 8
    time_steps: int = 4
    num_epochs: int = 20
    num_train_steps: int = -1
    batch_size: int = 32
    num_probes: int = 4
    probe_batch: int = 32

    def __post_init__(self):
        unknown = [n for n in self.norms if n not in NORMS]
        if unknown:
            raise ValueError(f"unknown norms {unknown} in --norms; valid: {list(NORMS)}")
        if not self.depths and not self.resnet_width:
            raise ValueError("no cells: give --depths or a --resnet_width > 0")
        if any(d < 1 for d in self.depths):
            raise ValueError(f"--depths must be >= 1, got {list(self.depths)}")
        if not self.norms or not self.seeds:
            raise ValueError("--norms and --seeds need at least one value each")


# The CI size: one tiny plain depth, no ResNet (it compiles for about 15 s), two steps.
SMOKE = Settings(
    depths=(2,),
    norms=("tdbn", "none"),
    plain_width=4,
    num_stages=2,
    resnet_width=0,
    time_steps=2,
    num_train_steps=2,
    batch_size=8,
    num_probes=2,
    probe_batch=8,
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One trained network: ``arch`` ``plain`` (``depth`` units) or ``resnet19``."""

    arch: str
    depth: int
    norm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arch}{self.depth if self.arch == 'plain' else ''}_{self.norm}_s{self.seed}"


def cells(settings: Settings) -> list[Cell]:
    """The cells in run order: by seed, then network (shallow first), then norm.

    >>> [c.name for c in cells(SMOKE)]
    ['plain2_tdbn_s0', 'plain2_none_s0']
    """
    nets = [("plain", d) for d in settings.depths]
    if settings.resnet_width:
        nets.append(("resnet19", 19))
    return [
        Cell(arch, depth, norm, seed)
        for seed in settings.seeds
        for arch, depth in nets
        for norm in settings.norms
    ]


def cell_config(settings: Settings, cell: Cell) -> ml_collections.ConfigDict:
    """``digits_plain.py`` with the cell's network, norm and seed and the shared schedule."""
    c = digits_plain.get_config()
    c.name = f"depth_{cell.name}"
    c.seed = cell.seed
    c.time_steps = settings.time_steps
    c.model.unroll = settings.time_steps
    c.model.norm = cell.norm
    if cell.arch == "plain":
        c.model.depth = cell.depth
        c.model.width = settings.plain_width
        c.model.num_stages = settings.num_stages
    else:
        del c.model["depth"]
        del c.model["num_stages"]
        c.model.name = cell.arch
        c.model.width = settings.resnet_width
    c.batch_size = settings.batch_size
    c.num_epochs = settings.num_epochs
    c.num_train_steps = settings.num_train_steps
    if settings.num_train_steps > 0:  # smoke: one evaluation and checkpoint, at the end
        c.optimizer.warmup_steps = 0
        c.log_every_steps = 1
        c.eval_every_steps = c.checkpoint_every_steps = settings.num_train_steps
    c.progress = False
    return c


def _initial_variables(model, seed: int, x: jax.Array) -> dict[str, Any]:
    """The variables the training run started from (``create_train_state``'s draw)."""
    state = create_train_state(jax.random.PRNGKey(seed), model, optax.identity(), x)
    return jax.device_get({"params": state.params, "batch_stats": state.batch_stats})


def _layer_order(name: str) -> list:
    """Sort key putting ``unit10`` after ``unit2`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _curves(workdir: str) -> dict[str, list]:
    """Test and validation accuracy and training loss against step, from ``metrics.jsonl``."""
    out: dict[str, list] = {"test": [], "validation": [], "train_loss": []}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] in ("test", "validation"):
                out[r["split"]].append([r["step"], r["accuracy"]])
            elif r["split"] == "train":
                out["train_loss"].append([r["step"], r["loss"]])
    return out


def run_cell(settings: Settings, cell: Cell, workdir: str) -> dict[str, Any] | None:
    """Trains one cell (or resumes it) and measures it; ``None`` if training was interrupted.

    Returns the cell's record (also written to ``<workdir>/cells/<name>/cell.json``):
    accuracies, curves, firing rates per spiking layer (depth order), ``phi``
    per block at initialisation and at the end, and the seconds it took.
    """
    cell_dir = os.path.join(workdir, "cells", cell.name)
    record_path = os.path.join(cell_dir, "cell.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    t0 = time.perf_counter()
    config = cell_config(settings, cell)
    state, summary = train_and_evaluate(config, cell_dir)
    if summary["interrupted"]:
        return None
    model = build_model(config, 10)
    x = jnp.asarray(load_digits_split().train_images[: settings.probe_batch])
    measure = jax.jit(
        lambda v, x, k: analysis.block_isometry(model, v, x, k, num_probes=settings.num_probes)
    )
    key = jax.random.key(cell.seed + 1)
    final = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    phi = {}
    for tag, variables in (("init", _initial_variables(model, cell.seed, x)), ("final", final)):
        iso = jax.device_get(measure(variables, x, key))
        phi[tag] = [float(iso[b]["phi"]) for b in analysis.block_names(model, variables, x)]
    rates = summary["firing_rates"]
    record = {
        **dataclasses.asdict(cell),
        "name": cell.name,
        "final_test_accuracy": summary["final_test_accuracy"],
        "test_accuracy_at_best_validation": summary["test_accuracy_at_best_validation"],
        "best_validation_accuracy": summary["best_validation_accuracy"],
        "steps": summary["steps"],
        "train_seconds": summary["train_seconds"],
        "firing_rates": {k: rates[k] for k in sorted(rates, key=_layer_order)},
        "phi_init": phi["init"],
        "phi_final": phi["final"],
        "curves": _curves(cell_dir),
        "seconds": time.perf_counter() - t0,
    }
    write_json_atomic(record_path, finite(record))  # its presence marks the cell done
    return record


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _geomean(values: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    return float(np.exp(np.mean(np.log(v)))) if len(v) and np.all(v > 0) else 0.0


def _silent_from(rates: dict[str, float]) -> int | None:
    """1-based index of the first spiking layer after which every layer is silent, or None."""
    values = list(rates.values())
    for i in range(len(values)):
        if all(r == 0 for r in values[i:]):
            return i + 1
    return None


def _networks(records: list[dict]) -> list[tuple[str, int]]:
    return sorted({(r["arch"], r["depth"]) for r in records}, key=lambda n: (n[0] != "plain", n))


def _label(arch: str, depth: int) -> str:
    return f"plain {depth}" if arch == "plain" else arch


def table(records: list[dict], settings: Settings) -> str:
    """The markdown tables: accuracy (final, at best validation), phi, firing, silence.

    Percentages are means over the seeds present; ``phi`` is the geometric
    mean over blocks, at initialisation -> after training.
    """
    norms = [n for n in settings.norms if any(r["norm"] == n for r in records)]
    by = {}
    for r in records:
        by.setdefault((r["arch"], r["depth"], r["norm"]), []).append(r)

    def pct(v):
        return "" if v is None else f"{100 * v:.2f}"

    head = "| network | " + " | ".join(norms) + " |\n|---|" + "---|" * len(norms) + "\n"
    blocks = []
    for title, fmt in (
        ("Final test accuracy (%)", lambda rs: pct(_mean([r["final_test_accuracy"] for r in rs]))),
        (
            "Test accuracy (%) at the best validation step",
            lambda rs: pct(_mean([r["test_accuracy_at_best_validation"] for r in rs])),
        ),
        (
            "phi(J J^T), geometric mean over blocks: at initialisation -> after training",
            lambda rs: f"{_geomean(rs[0]['phi_init']):.3g} -> {_geomean(rs[0]['phi_final']):.3g}",
        ),
        (
            "Firing rate (spikes per neuron and step) of the last three spiking layers, test split",
            lambda rs: " / ".join(f"{v:.3f}" for v in list(rs[0]["firing_rates"].values())[-3:]),
        ),
        (
            "Silent from spiking layer (every layer from there on fires no spike; - : none)",
            lambda rs: str(_silent_from(rs[0]["firing_rates"]) or "-"),
        ),
    ):
        rows = [
            f"| {_label(a, d)} | "
            + " | ".join(fmt(by[(a, d, n)]) if (a, d, n) in by else "" for n in norms)
            + " |"
            for a, d in _networks(records)
        ]
        blocks.append(f"{title}:\n\n{head}" + "\n".join(rows) + "\n")
    seeds = sorted({r["seed"] for r in records})
    seconds = sum(r["seconds"] for r in records)
    footer = (
        f"Seeds {seeds}; T = {settings.time_steps}, {settings.num_epochs} epochs "
        f"(steps per cell: {records[0]['steps']}), batch {settings.batch_size}; plain width "
        f"{settings.plain_width} in {settings.num_stages} stages, ResNet-19 width "
        f"{settings.resnet_width}. Phi and firing rates: first seed. Cells took {seconds:.0f} s "
        "in all (training, evaluation and measurement).\n"
    )
    return "\n".join(blocks) + "\n" + footer


def plot(records: list[dict], settings: Settings, out: str) -> None:
    """``accuracy_vs_depth.png`` and ``curves.png`` (test accuracy against step) in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = [n for n in settings.norms if any(r["norm"] == n for r in records)]
    colors = dict(zip(norms, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in norms:
        rs = [r for r in records if r["norm"] == n and r["arch"] == "plain"]
        depths = sorted({r["depth"] for r in rs})
        acc = [
            100 * _mean([r["final_test_accuracy"] for r in rs if r["depth"] == d]) for d in depths
        ]
        ax.plot(depths, acc, "o-", color=colors[n], label=f"plain, {n}")
        res = [r["final_test_accuracy"] for r in records if r["norm"] == n and r["arch"] != "plain"]
        if res:
            ax.plot([19], [100 * _mean(res)], "s", ms=9, mfc="none", color=colors[n])
    ax.plot([], [], "ks", mfc="none", label="ResNet-19 (at 19)")
    ax.axhline(10, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="depth (conv units)", ylabel="final test accuracy (%)", ylim=(0, 102))
    ax.set_title(f"digits, T = {settings.time_steps}, {settings.num_epochs} epochs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_vs_depth.png"), dpi=80)
    plt.close(fig)

    nets = _networks(records)
    fig, axes = plt.subplots(1, len(nets), figsize=(2.6 * len(nets), 2.8), squeeze=False)
    for ax, (a, d) in zip(axes[0], nets, strict=True):
        for r in records:
            if (r["arch"], r["depth"]) == (a, d) and r["seed"] == records[0]["seed"]:
                steps, acc = zip(*r["curves"]["test"], strict=True)
                ax.plot(steps, 100 * np.asarray(acc), color=colors[r["norm"]], label=r["norm"])
        ax.set(title=_label(a, d), xlabel="step", ylim=(0, 102))
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=70)
    plt.close(fig)


def run(settings: Settings, workdir: str, plots: bool = True) -> dict[str, Any]:
    """Every cell (resuming), then ``results.json``, ``results.md`` and the plots in ``workdir``.

    Returns:
      ``{"settings", "cells": [record, ...], "interrupted": bool}``; on an
      interruption, the finished cells only and no tables.
    """
    if plots:
        require_matplotlib("experiments.depth")
    os.makedirs(workdir, exist_ok=True)
    records = []
    for cell in tqdm(cells(settings), desc="cells", dynamic_ncols=True):
        record = run_cell(settings, cell, workdir)
        if record is None:
            return {"settings": dataclasses.asdict(settings), "cells": records, "interrupted": True}
        records.append(record)
    results = {"settings": dataclasses.asdict(settings), "cells": records, "interrupted": False}
    write_json_atomic(os.path.join(workdir, "results.json"), finite(results))
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table(records, settings))
    if plots:
        plot(records, settings, workdir)
    return results


def define_flags() -> None:
    """The command-line flags; defined when run as a script, so that importing defines none."""
    flags.DEFINE_string("workdir", "workdirs/depth", "Cells, tables and plots go here.")
    flags.DEFINE_bool("smoke", False, "Tiny depths and widths, two steps per cell (tests).")
    flags.DEFINE_list("norms", None, f"Norms (default: every norm of NORMS, {list(NORMS)}).")
    flags.DEFINE_list("depths", None, "Plain CNN depths (default: 4,8,12,16,20; empty: none).")
    flags.DEFINE_list("seeds", None, "Run seeds, one training per cell each (default: 0).")
    flags.DEFINE_integer("resnet_width", None, "ResNet-19 width (0: no ResNet; default: 8).")
    flags.DEFINE_integer("num_epochs", None, "Epochs of every cell (default: 20).")


def settings_from_flags(f=None) -> Settings:
    """:class:`Settings` (or :data:`SMOKE` with ``--smoke``) with the flags' overrides."""
    f = flags.FLAGS if f is None else f
    settings = SMOKE if f.smoke else Settings()
    overrides: dict[str, Any] = {}
    if f.norms:
        overrides["norms"] = tuple(f.norms)
    for key in ("depths", "seeds"):
        values = getattr(f, key)
        if values is not None:  # --depths= (empty): the ResNet-19 cells only
            try:
                overrides[key] = tuple(int(v) for v in values)
            except ValueError:
                raise ValueError(f"--{key} takes integers, got {values}") from None
    for key in ("resnet_width", "num_epochs"):
        if getattr(f, key) is not None:
            overrides[key] = getattr(f, key)
    return dataclasses.replace(settings, **overrides)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    t0 = time.perf_counter()
    results = run(settings_from_flags(), flags.FLAGS.workdir)
    where = os.path.abspath(flags.FLAGS.workdir)
    if results["interrupted"]:
        print(f"interrupted; rerun the same command to resume ({where})")
        return
    print(table(results["cells"], Settings(**results["settings"])))
    print(f"results.md, results.json and plots in {where} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
