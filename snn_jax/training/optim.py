"""Optimisers and learning-rate schedules from a config, built with optax."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "decay_mask", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(config: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Learning-rate schedule: linear warm-up, then constant, cosine or step decay.

    Config keys: ``learning_rate``, ``schedule`` (one of ``SCHEDULES``),
    ``warmup_steps``, and for ``step``: ``decay_boundaries`` (fractions of
    ``total_steps``) and ``decay_factor``.

    >>> s = make_schedule({"learning_rate": 1.0, "schedule": "cosine", "warmup_steps": 2}, 10)
    >>> [round(float(s(i)), 3) for i in (0, 1, 2, 10)]
    [0.0, 0.5, 1.0, 0.0]
    """
    lr = config["learning_rate"]
    name = config.get("schedule", "constant")
    warmup = int(config.get("warmup_steps", 0))
    decay_steps = max(total_steps - warmup, 1)
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps)
    elif name == "step":
        boundaries = {
            int(f * total_steps) - warmup: config.get("decay_factor", 0.1)
            for f in config.get("decay_boundaries", (0.5, 0.75))
        }
        main = optax.piecewise_constant_schedule(lr, boundaries)
    else:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def decay_mask(params) -> Any:
    """True for weights that take weight decay: conv and dense kernels only.

    Norm scales and biases (tdBN's ``lambda`` and ``beta``), biases and a learned
    leak are skipped; they are exactly the parameters with fewer than 2 dimensions.
    """
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """SGD with momentum, Adam or AdamW with a schedule and masked weight decay.

    Config keys: ``name`` (one of ``OPTIMIZERS``), ``momentum`` (sgd),
    ``nesterov`` (sgd), ``weight_decay``, ``grad_clip_norm`` (0 = off), plus the
    schedule keys of :func:`make_schedule`. For ``sgd`` and ``adam`` the weight
    decay is L2 added to the gradient; for ``adamw`` it is decoupled.
    """
    name = config["name"]
    schedule = make_schedule(config, total_steps)
    wd = float(config.get("weight_decay", 0.0))
    chain = []
    if config.get("grad_clip_norm", 0.0):
        chain.append(optax.clip_by_global_norm(config["grad_clip_norm"]))
    if name == "adamw":
        chain.append(optax.adamw(schedule, weight_decay=wd, mask=decay_mask))
    elif name in ("sgd", "adam"):
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask=decay_mask))
        if name == "sgd":
            chain.append(
                optax.sgd(schedule, config.get("momentum", 0.9), config.get("nesterov", False))
            )
        else:
            chain.append(optax.adam(schedule))
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    return optax.chain(*chain)
