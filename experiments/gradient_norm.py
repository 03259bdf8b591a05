r"""Gradient norms and block dynamical isometry through depth, with and without tdBN.

    python -m experiments.gradient_norm --out=gradient_norm_out         # ~2 min on 2 CPU cores
    python -m experiments.gradient_norm --smoke --out=/tmp/gn           # seconds, for tests

Reproduces the shape of the tdBN paper's argument (Zheng et al. 2021; METHOD.md
section 8) on the bundled 8x8 digits: a plain spiking CNN of 20 conv -> norm ->
LIF units (all of width 16 at 8x8, so that every layer has the same shape and
the per-layer gradient norms compare directly) and a ResNet-19 of width 8,
each with ``norm`` in {none, bn, tdbn, tebn, bntt}; T = 4, batch 32, LIF defaults (V_th 0.5,
tau 0.25, rectangular surrogate). For every model it measures, at
initialisation and after each of the first few SGD steps (same batches for
all models):

- the gradient norm ``||dL/dW||`` of every conv/dense kernel, in depth order;
- per block ``phi(J J^T)`` with random probes, its spread over probes, and the
  second-moment ratio ``mean(y^2) / mean(x^2)`` (``snn_jax.analysis``);
  blocks are the conv -> norm -> LIF units of the plain CNN and the stem,
  residual blocks and hidden FC unit of the ResNet;
- the firing rate of every spiking layer and the loss.

Writes ``gradient_norm.json`` (all numbers, and a ``summary`` per model) and
``gradient_norm.png`` (gradient norm against depth, ``phi`` against block,
firing rate against layer) under ``--out``, and prints one line per model.

Expected: with tdBN, ``phi`` near 1 in every block and gradient norms flat over
depth. Measured with the defaults (seed 0; about 2 minutes on 2 CPU cores, most
of it compilation), at initialisation:

- plain/tdbn: ``phi`` 0.80 to 0.91 in every block (geometric mean 0.87); the
  hidden-layer gradient norms go from 0.021 (layer 1) to 0.031 (layer 20), a
  spread of 1.6x; every layer fires at 0.14 to 0.19 spikes per step.
- plain/bn: ``phi`` about 1.5 per block (2.4 for the first); the gradient norm
  grows steadily towards the input, 107x from layer 20 to layer 1 (explosion).
  Firing rate about 0.29.
- plain/none: the activity dies out with depth: 0.006 spikes per step in layer
  1, 0.0007 in layer 4, none at all from layer 14 on; with a silent last layer
  the gradient of every kernel is exactly 0, and ``phi`` decays from 0.45
  (block 2) to 0.002 (block 14) and 0 after.
- resnet19: tdbn ``phi`` 0.50 to 0.94 in the residual blocks, gradient norms
  within 0.04 to 0.25 (spread 10^0.74); bn ``phi`` 2.1 to 2.4 per residual block and
  gradients growing 63x towards the input; none stays alive through the
  shortcuts but ``phi`` drops to 0.1 in the stem and the gradients shrink
  towards the input (first/last 0.12).
- tebn, bntt (METHOD.md section 10; ``--norms=tdbn,tebn,bntt``, 2026-12-05):
  at initialisation both are a batch norm to unit spread (``p_t = 1``,
  ``gamma_t = 1``), without tdBN's ``alpha * V_th``, and behave as bn: plain
  ``phi`` 1.55 geometric mean (1.46 to 2.39), gradients growing 107x (tebn)
  and 110x (bntt) towards the input, firing rate about 0.29 in the last layer;
  resnet19 ``phi`` 2.5 geometric mean, gradients 63x (tebn) and 51x (bntt).
  Neither paper claims an isometry at initialisation; they train ResNets.

The three SGD steps change none of this much (the numbers per step are in the
JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments import finite, require_matplotlib
from snn_jax import analysis, models
from snn_jax.data import load_digits_split
from snn_jax.training import cross_entropy, make_optimizer
from snn_jax.training.steps import firing_rates

__all__ = ["SMOKE", "Settings", "build_model", "main", "plot", "run", "run_model", "summarize"]

ARCHS = ("plain", "resnet19")
NORMS = ("none", "bn", "tdbn", "tebn", "bntt")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run depends on.

    Attributes:
      archs: which networks (``plain``, ``resnet19``).
      norms: which normalisations (``none``, ``bn``, ``tdbn``, and the
        direct-training kit's ``tebn``, ``bntt``: METHOD.md section 10).
      depth: conv layers of the plain CNN (the paper's figure: 20).
      plain_width: channels of the plain CNN's first stage.
      plain_stages: stages of the plain CNN (width doubles and resolution halves
        at each); 1 keeps every layer alike.
      resnet_width: base width of ResNet-19 (the paper's: 128).
      time_steps: T.
      batch_size: examples per step (and per measurement).
      train_steps: SGD steps; measurements at steps 0..train_steps.
      num_probes: random probes per block for ``phi``.
      learning_rate: SGD (momentum 0.9) learning rate.
      seed: parameters, data order and probes.
    """

    archs: tuple[str, ...] = ARCHS
    norms: tuple[str, ...] = NORMS
    depth: int = 20
    plain_width: int = 16
    plain_stages: int = 1
    resnet_width: int = 8
    time_steps: int = 4
    batch_size: int = 32
    train_steps: int = 3
    num_probes: int = 8
    learning_rate: float = 0.05
    seed: int = 0


# Test sizes: the plain CNN only (a ResNet-19 takes about 15 s to compile on a CPU).
SMOKE = Settings(
    archs=("plain",),
    depth=4,
    plain_width=4,
    resnet_width=2,
    time_steps=2,
    batch_size=8,
    train_steps=1,
    num_probes=2,
)


def build_model(arch: str, norm: str, settings: Settings):
    """The model of one run (10 classes, LIF neurons, project defaults otherwise)."""
    common = dict(num_classes=10, time_steps=settings.time_steps, norm=norm)
    if arch == "plain":
        return models.get_model(
            "plain",
            depth=settings.depth,
            width=settings.plain_width,
            num_stages=settings.plain_stages,
            **common,
        )
    if arch == "resnet19":
        return models.get_model("resnet19", width=settings.resnet_width, **common)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def _batches(settings: Settings) -> list[dict[str, np.ndarray]]:
    """``train_steps + 1`` digits batches, the same for every model."""
    split = load_digits_split()
    order = np.random.default_rng(settings.seed).permutation(len(split.train_labels))
    out = []
    for step in range(settings.train_steps + 1):
        idx = order[
            np.arange(step * settings.batch_size, (step + 1) * settings.batch_size) % len(order)
        ]
        out.append({"image": split.train_images[idx], "label": split.train_labels[idx]})
    return out


def run_model(arch: str, norm: str, settings: Settings, batches=None) -> dict[str, Any]:
    """Measurements for one (arch, norm): lists over steps 0..train_steps.

    Returns:
      ``layers`` (kernel paths in depth order), ``blocks``, ``spiking_layers``,
      ``grad_norms`` ``[steps+1][layers]``, ``phi``, ``phi_std``,
      ``moment_ratio`` ``[steps+1][blocks]``, ``firing_rates``
      ``[steps+1][spiking layers]``, ``loss`` (train loss at steps
      0..train_steps-1) and ``seconds``.
    """
    t0 = time.perf_counter()
    batches = _batches(settings) if batches is None else batches
    model = build_model(arch, norm, settings)
    tx = make_optimizer(
        {"name": "sgd", "learning_rate": settings.learning_rate, "momentum": 0.9},
        max(settings.train_steps, 1),
    )
    x0 = jnp.asarray(batches[0]["image"])
    # An RBG key: the same initialisers, and an init program that compiles several times
    # faster on a CPU than with the default threefry key (compilation dominates this run).
    init_key = jax.random.key(settings.seed, impl="rbg")
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(init_key, x0)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    opt_state = tx.init(params)
    layers = analysis.kernel_names(model, variables, x0)
    blocks = analysis.block_names(model, variables, x0)
    spiking = analysis.block_names(model, variables, x0, is_block=analysis.is_spiking)

    @jax.jit
    def step(params, batch_stats, opt_state, batch, key):
        """Measures at the current parameters, then one SGD step (one compiled program)."""
        stats = {"batch_stats": batch_stats} if batch_stats else {}

        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, **stats},
                batch["image"],
                train=True,
                mutable=["batch_stats", "intermediates"],
            )
            return jnp.mean(cross_entropy(logits, batch["label"])), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        iso = analysis.block_isometry(
            model, {"params": params, **stats}, batch["image"], key, num_probes=settings.num_probes
        )
        measured = (loss, analysis.kernel_norms(grads), iso, firing_rates(updates["intermediates"]))
        deltas, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, deltas)
        return params, updates.get("batch_stats", {}), opt_state, measured

    probe_key = jax.random.key(settings.seed + 1)
    record: dict[str, list] = {
        k: [] for k in ("grad_norms", "phi", "phi_std", "moment_ratio", "firing_rates", "loss")
    }
    for i, batch in enumerate(batches):
        key = jax.random.fold_in(probe_key, i)
        params, batch_stats, opt_state, measured = step(params, batch_stats, opt_state, batch, key)
        loss, norms, iso, rates = jax.device_get(measured)
        record["grad_norms"].append([float(norms[k]) for k in layers])
        for name in ("phi", "phi_std", "moment_ratio"):
            record[name].append([float(iso[b][name]) for b in blocks])
        record["firing_rates"].append([float(rates["firing_rate/" + s]) for s in spiking])
        if i < settings.train_steps:  # the loss of the batch the step trained on
            record["loss"].append(float(loss))
    return {
        "arch": arch,
        "norm": norm,
        "layers": layers,
        "blocks": blocks,
        "spiking_layers": spiking,
        **record,
        "seconds": time.perf_counter() - t0,
    }


def _ratio_log10(values: Sequence[float]) -> float | None:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if len(positive) < len(values) or not positive:
        return None
    return math.log10(max(positive) / min(positive))


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of one run, at initialisation (step 0) and at the last step.

    ``grad_first_over_last``: gradient norm of the first kernel over that of the
    last hidden one (the readout excluded); ``grad_log10_spread``: log10 of
    max/min over the hidden kernels (``None`` when a gradient is exactly 0);
    ``phi_geomean``, ``phi_min``, ``phi_max`` over blocks; ``phi_product``:
    the product over blocks (``phi`` of the whole chain, if blocks compose);
    ``last_rate``: firing rate of the last spiking layer; ``dead_layers``:
    spiking layers with no spike at all.
    """
    out = {}
    for tag, i in (("init", 0), ("final", -1)):
        hidden = result["grad_norms"][i][:-1] or result["grad_norms"][i]
        phi = np.asarray(result["phi"][i], np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_phi = np.log(phi)
        out[tag] = {
            "grad_first_over_last": hidden[0] / hidden[-1] if hidden[-1] > 0 else None,
            "grad_log10_spread": _ratio_log10(hidden),
            "grad_min": min(hidden),
            "grad_max": max(hidden),
            "phi_geomean": float(np.exp(np.mean(log_phi))) if np.all(phi > 0) else 0.0,
            "phi_min": float(phi.min()),
            "phi_max": float(phi.max()),
            "phi_product": float(np.prod(phi)),
            "moment_ratio_mean": float(np.mean(result["moment_ratio"][i])),
            "last_rate": result["firing_rates"][i][-1],
            "dead_layers": int(sum(r == 0 for r in result["firing_rates"][i])),
        }
    out["loss_first"] = result["loss"][0] if result["loss"] else None
    out["loss_last"] = result["loss"][-1] if result["loss"] else None
    return out


def plot(results: dict[str, Any], path: str) -> None:
    """Gradient norm per layer, phi per block and firing rate per layer; one row per arch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    archs = list(dict.fromkeys(r["arch"] for r in runs.values()))
    colors = {"none": "tab:red", "bn": "tab:orange", "tdbn": "tab:blue"}
    fig, axes = plt.subplots(len(archs), 3, figsize=(15, 4 * len(archs)), squeeze=False)
    for row, arch in zip(axes, archs, strict=True):
        for run in (r for r in runs.values() if r["arch"] == arch):
            c = colors.get(run["norm"])
            for i, ls, tag in ((0, "-", "init"), (-1, "--", f"step {len(run['loss'])}")):
                g = _log_safe(run["grad_norms"][i])
                label = f"{run['norm']} ({tag})" + (" all 0" if np.all(np.isnan(g)) else "")
                row[0].semilogy(np.arange(1, len(g) + 1), g, ls, color=c, marker=".", label=label)
                phi = _log_safe(run["phi"][i])
                row[1].semilogy(np.arange(1, len(phi) + 1), phi, ls, color=c, marker=".")
                rate = run["firing_rates"][i]
                row[2].plot(np.arange(1, len(rate) + 1), rate, ls, color=c, marker=".")
        row[0].set(
            title=f"{arch}: ||dL/dW|| per layer", xlabel="layer (depth order)", ylabel="norm"
        )
        row[1].axhline(1.0, color="k", lw=0.8)
        row[1].set(title=f"{arch}: phi(J J^T) per block", xlabel="block", ylabel="phi")
        row[2].set(title=f"{arch}: firing rate", xlabel="spiking layer", ylabel="spikes / step")
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_safe(values) -> np.ndarray:
    """Zeros and missing values become NaN: gaps on a log axis (an exactly-zero gradient)."""
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    return np.where(v > 0, v, np.nan)


def run(settings: Settings, out: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """All (arch, norm) runs; writes ``gradient_norm.json`` and ``.png`` under ``out``.

    Args:
      settings: what to run.
      out: output directory (``None``: write nothing).
      verbose: print one line per model.

    Returns:
      ``{"settings", "runs": {"<arch>/<norm>": run_model(...)}, "summary":
      {"<arch>/<norm>": summarize(...)}, "seconds"}``.
    """
    if out is not None:
        require_matplotlib("experiments.gradient_norm")
    t0 = time.perf_counter()
    batches = _batches(settings)
    keys = [(arch, norm) for arch in settings.archs for norm in settings.norms]
    runs = _collect(keys, (run_model(a, n, settings, batches) for a, n in keys), verbose)
    summary = {key: summarize(r) for key, r in runs.items()}
    results = finite(
        {
            "settings": dataclasses.asdict(settings),
            "runs": runs,
            "summary": summary,
            "seconds": time.perf_counter() - t0,
        }
    )
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gradient_norm.json"), "w") as f:
            json.dump(results, f, indent=1)
        plot(results, os.path.join(out, "gradient_norm.png"))
    return results


def _collect(keys, results, verbose: bool) -> dict[str, dict[str, Any]]:
    """``{"arch/norm": run}`` from runs in the order of ``keys``; one line each if verbose."""
    runs = {}
    for (arch, norm), result in zip(keys, results, strict=True):
        key = f"{arch}/{norm}"
        runs[key] = result
        if verbose:
            s = summarize(result)["init"]
            print(
                f"{key:15s} init: grad first/last {_fmt(s['grad_first_over_last'])}, "
                f"log10 spread {_fmt(s['grad_log10_spread'])}, phi geomean "
                f"{_fmt(s['phi_geomean'])} [{_fmt(s['phi_min'])}, {_fmt(s['phi_max'])}], "
                f"last rate {s['last_rate']:.3f}, dead layers {s['dead_layers']} "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
    return runs


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def define_flags() -> None:
    """The command-line flags; defined when run as a script, so that importing defines none."""
    flags.DEFINE_string("out", "gradient_norm_out", "Output directory (JSON and PNG).")
    flags.DEFINE_bool("smoke", False, "Tiny sizes for tests (seconds).")
    flags.DEFINE_list("archs", None, f"Networks, of {ARCHS} (default: the settings').")
    flags.DEFINE_list("norms", None, f"Normalisations, of {NORMS} (default: all).")
    flags.DEFINE_integer("train_steps", None, "SGD steps (default: the settings').")
    flags.DEFINE_integer("seed", 0, "Seed of parameters, data order and probes.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    settings = SMOKE if f.smoke else Settings()
    overrides = dict(seed=f.seed)
    if f.archs:
        overrides["archs"] = tuple(f.archs)
    if f.norms:
        overrides["norms"] = tuple(f.norms)
    if f.train_steps is not None:
        overrides["train_steps"] = f.train_steps
    settings = dataclasses.replace(settings, **overrides)
    results = run(settings, f.out)
    print(
        f"wrote {os.path.join(os.path.abspath(f.out), 'gradient_norm.json')} and .png "
        f"in {results['seconds']:.0f} s"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
