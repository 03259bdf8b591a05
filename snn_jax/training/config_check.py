"""Checks a training config's values before anything is built or compiled.

A value out of range would otherwise fail late and obscurely, or not at all: a
negative learning rate trains to chance accuracy without a word. Each problem
is reported with its key, its value, the valid range and a fix, e.g.
``config.optimizer.learning_rate = -0.1: must be > 0 (the peak learning rate,
e.g. 5e-3)``; all problems of a config are reported together.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

from snn_jax.data.datasets import DATASET_NAMES, DataConfig
from snn_jax.training.losses import LOSSES
from snn_jax.training.optim import OPTIMIZERS, SCHEDULES

__all__ = ["DTYPES", "check_config", "check_run"]

DTYPES = ("float32", "bfloat16", "float16")  # compute dtypes of convs and dense layers

# Keys of a training config (experiments/configs/digits.py lays them out). Other top-level
# keys may record what a run started from (compare_methods' ``hand_over``): only those close
# to a known key, likely typos, are flagged.
_TOP_KEYS = frozenset(
    {
        "name",
        "seed",
        "time_steps",
        "dtype",
        "data",
        "model",
        "optimizer",
        "batch_size",
        "eval_batch_size",
        "num_epochs",
        "num_train_steps",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "max_nonfinite_steps",
        "progress",
        "distributed",
        "loss",
        "tet_lambda",
        "tet_phi",
    }
)
_OPTIMIZER_KEYS = frozenset(
    {
        "name",
        "learning_rate",
        "schedule",
        "warmup_steps",
        "weight_decay",
        "momentum",
        "nesterov",
        "grad_clip_norm",
        "decay_boundaries",
        "decay_factor",
    }
)
_DATA_KEYS = frozenset(f.name for f in dataclasses.fields(DataConfig))


class _Problems:
    """Collects ``config.<key> = <value>: <what is wrong and the fix>`` lines."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.lines: list[str] = []

    def value(self, key: str) -> tuple[bool, Any]:
        node: Any = self.config
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node:
                return False, None
            node = node[part]
        return True, node

    def add(self, key: str, value: Any, message: str) -> None:
        self.lines.append(f"config.{key} = {value!r}: {message}")

    def check(self, key: str, ok: Callable[[Any], bool], message: str, *, optional=True):
        """Adds ``message`` if ``key`` is present and ``ok(value)`` is false (or raises)."""
        present, value = self.value(key)
        if not present:
            if not optional:
                self.lines.append(f"config.{key} is missing: {message}")
            return
        try:
            good = ok(value)
        except (TypeError, ValueError):
            good = False
        if not good:
            self.add(key, value, message)

    def unknown(self, section: str, known: frozenset[str], typos_only: bool = False) -> None:
        """Flags keys of ``config.<section>`` (``""``: the top level) outside ``known``
        (with ``typos_only``, only those close to a known key)."""
        node = self.config if not section else self.value(section)[1]
        if not hasattr(node, "keys"):
            return
        prefix = f"{section}." if section else ""
        for key in sorted(set(node.keys()) - known):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            if typos_only and not close:
                continue
            hint = f"did you mean config.{prefix}{close[0]}? " if close else ""
            self.lines.append(
                f"config.{prefix}{key}: unknown key; {hint}the keys are {sorted(known)}"
            )


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _every(v) -> bool:
    return _int(v) and (v == -1 or v >= 1)


def _raise(problems: _Problems) -> None:
    if problems.lines:
        n = len(problems.lines)
        raise ValueError(
            f"{n} bad config value{'s' if n > 1 else ''}:\n  " + "\n  ".join(problems.lines)
        )


def check_config(config: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` listing every out-of-range value or unknown key of ``config``.

    Checks what can be checked from the config alone; :func:`check_run` adds
    what depends on the data and the devices. Unknown keys of the optimizer and
    data sections are flagged, and top-level keys close to a known one. Absent
    optional keys take the
    defaults of the code that reads them and are not reported. Model keys that
    only a model has (``width``, ``stage_sizes``, ...) are checked by the model
    when it is built.

    Args:
      config: a training config (an ``ml_collections.ConfigDict`` laid out as
        ``experiments/configs/digits.py``).

    Raises:
      ValueError: one line per problem, each naming the key, its value, the
        valid range and a fix.

    >>> from experiments.configs import digits
    >>> c = digits.get_config()
    >>> c.optimizer.learning_rate = -0.1
    >>> check_config(c)
    Traceback (most recent call last):
    ...
    ValueError: 1 bad config value:
      config.optimizer.learning_rate = -0.1: must be > 0 (the peak learning rate, e.g. 5e-3)
    """
    # imported here: the model zoo is not needed to check the rest, nor at import time
    from snn_jax import models
    from snn_jax.nn import ATTENTIONS, NORMS, NeuronSpec
    from snn_jax.nn.norm_neuron import SQUEEZES

    p = _Problems(config)
    p.unknown("", _TOP_KEYS, typos_only=True)
    p.unknown("optimizer", _OPTIMIZER_KEYS)
    p.unknown("data", _DATA_KEYS)

    # the run
    p.check("seed", lambda v: _int(v) and v >= 0, "must be an integer >= 0", optional=False)
    p.check("time_steps", lambda v: _int(v) and v >= 1, "must be an integer >= 1 (T, e.g. 4)")
    p.check("dtype", lambda v: v in DTYPES, f"must be one of {DTYPES}")
    for key in ("batch_size", "eval_batch_size"):
        p.check(key, lambda v: _int(v) and v > 0, "must be an integer > 0, e.g. 64")
    p.check(
        "num_train_steps",
        lambda v: _int(v) and (v == -1 or v >= 1),
        "must be -1 (train for num_epochs) or an integer >= 1",
    )
    if not (_int(p.value("num_train_steps")[1]) and p.value("num_train_steps")[1] >= 1):
        p.check(
            "num_epochs",
            lambda v: _int(v) and v >= 1,
            "must be an integer >= 1 (or set num_train_steps >= 1)",
            optional=False,
        )
    p.check(
        "log_every_steps",
        lambda v: _int(v) and v >= 1,
        "must be an integer >= 1 (steps between training logs; a stop signal to a "
        "multi-process run takes effect at the next log or checkpoint step)",
    )
    for key in ("eval_every_steps", "checkpoint_every_steps"):
        p.check(key, _every, "must be -1 (once per epoch) or an integer >= 1")
    p.check("keep_checkpoints", lambda v: _int(v) and v >= 1, "must be an integer >= 1, e.g. 2")
    p.check(
        "max_nonfinite_steps",
        lambda v: _int(v) and v >= 1,
        "must be an integer >= 1 (non-finite steps in a row before the run stops, e.g. 10)",
    )
    for key in ("progress", "distributed"):
        p.check(key, _bool, "must be True or False")
    # the loss (snn_jax.training.losses)
    p.check("loss", lambda v: v in LOSSES, f"must be one of {LOSSES}")
    p.check(
        "tet_lambda",
        lambda v: _number(v) and 0 <= v <= 1,
        "must be in [0, 1] (TET's weight of the squared-error term, e.g. 1e-3)",
    )
    p.check("tet_phi", _number, "must be a finite number (TET's target output, e.g. 1.0)")

    # the optimizer
    o = "optimizer."
    p.check(o + "name", lambda v: v in OPTIMIZERS, f"must be one of {OPTIMIZERS}", optional=False)
    p.check(
        o + "learning_rate",
        lambda v: _number(v) and v > 0,
        "must be > 0 (the peak learning rate, e.g. 5e-3)",
        optional=False,
    )
    p.check(o + "schedule", lambda v: v in SCHEDULES, f"must be one of {SCHEDULES}")
    p.check(o + "warmup_steps", lambda v: _int(v) and v >= 0, "must be an integer >= 0")
    p.check(o + "weight_decay", lambda v: _number(v) and v >= 0, "must be >= 0 (0: none)")
    p.check(
        o + "momentum",
        lambda v: _number(v) and 0 <= v < 1,
        "must be in [0, 1) (SGD's momentum, e.g. 0.9)",
    )
    p.check(o + "nesterov", _bool, "must be True or False")
    p.check(o + "grad_clip_norm", lambda v: _number(v) and v >= 0, "must be >= 0 (0: no clipping)")
    p.check(
        o + "decay_boundaries",
        lambda v: (
            all(_number(b) and 0 < b < 1 for b in v)
            and all(a < b for a, b in itertools.pairwise(v))
        ),
        "must be increasing fractions of the training in (0, 1), e.g. (0.5, 0.75)",
    )
    p.check(
        o + "decay_factor",
        lambda v: _number(v) and 0 < v <= 1,
        "must be in (0, 1] (the step schedule's multiplier at each boundary, e.g. 0.1)",
    )

    # the data
    p.check("data.name", lambda v: v in DATASET_NAMES, f"must be one of {DATASET_NAMES}")
    p.check("data.augment", _bool, "must be True or False")
    p.check("data.cutout", lambda v: _int(v) and v >= 0, "must be an integer >= 0 (0: off)")
    p.check(
        "data.validation_fraction",
        lambda v: _number(v) and 0 <= v < 1,
        "must be in [0, 1) (the share of training images held out for validation; 0: none)",
    )
    for key in ("time_steps", "image_size", "num_workers"):
        p.check(
            "data." + key,
            lambda v: v is None or (_int(v) and v >= 1),
            "must be None or an integer >= 1",
        )

    # the model
    m = "model."
    p.check(m + "name", lambda v: v in models.MODEL_NAMES, f"must be one of {models.MODEL_NAMES}")
    p.check(m + "norm", lambda v: v in NORMS, f"must be one of {NORMS}")
    p.check(
        m + "memory",
        lambda v: v in models.MEMORY_OPTIONS,
        f"must be one of {models.MEMORY_OPTIONS}",
    )
    p.check(m + "attention", lambda v: v in ATTENTIONS, f"must be one of {ATTENTIONS}")
    p.check(m + "attention_squeeze", lambda v: v in SQUEEZES, f"must be one of {SQUEEZES}")
    _, time_steps = p.value("time_steps")
    _, attention = p.value(m + "attention")
    most = time_steps if _int(time_steps) and attention == "temporal" else None
    p.check(
        m + "attention_reduction",
        lambda v: _int(v) and v >= 1 and (most is None or v <= most),
        "must be an integer in [1, T]"
        + (f" = [1, {most}]" if most else "")
        + " (the attention's hidden layer has T // reduction units; the official code uses "
        "5 at T = 10 and 16 at T = 30)",
    )
    p.check(
        m + "discard_threshold",
        lambda v: v is None or (_number(v) and 0 <= v <= 1),
        "must be None (no pruning) or an attention score in [0, 1], e.g. 0.5",
    )
    if attention == "temporal" and p.value(m + "memory")[1] == "compact":
        p.add(
            m + "memory",
            "compact",
            "does not support attention (model.attention = 'temporal'); use 'none' or 'remat'",
        )
    present, model = p.value("model")
    if present and hasattr(model, "keys"):  # the neuron's values: NeuronSpec's own rules
        p.lines += NeuronSpec.config_problems(model)
    _raise(p)


def check_run(config: Mapping[str, Any], *, total_steps: int, num_devices: int) -> None:
    """Raises ``ValueError`` for values that do not fit this run's length or devices.

    Args:
      config: a config that passed :func:`check_config`.
      total_steps: the run's training steps (``num_train_steps``, or
        ``num_epochs`` times the data set's steps per epoch).
      num_devices: devices over which each batch is split.
    """
    p = _Problems(config)
    for key in ("batch_size", "eval_batch_size"):
        p.check(
            key,
            lambda v: v % num_devices == 0,
            f"is not divisible by the {num_devices} devices; use a multiple of {num_devices}",
        )
    p.check(
        "optimizer.warmup_steps",
        lambda v: v < total_steps,
        f"must be < the {total_steps} training steps (the warm-up would not end); lower it, "
        "e.g. to 0 for a short run",
    )
    _raise(p)
