"""Metric outputs of a run: TensorBoard event files, a JSON-lines log, ``summary.json``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["MetricWriter", "write_json_atomic"]


def write_json_atomic(path: str, obj) -> None:
    """Writes JSON to ``path`` through a temporary file and a rename."""
    _write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def _write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _scalar(value) -> float | None:
    value = float(np.asarray(value))
    return value if math.isfinite(value) else None


class MetricWriter:
    """Writes scalars to ``<workdir>/tensorboard`` (tensorboardX, no TensorFlow) and
    ``<workdir>/metrics.jsonl`` (one JSON object per write: ``step``, ``split``, values).

    ``resume_step``: the step a run resumes from (its checkpoint's). What an
    earlier run logged after it (before it crashed) is dropped from
    ``metrics.jsonl`` and hidden from TensorBoard (``purge_step``), so each
    step is logged once. Only enabled on process 0 of a multi-process run;
    otherwise all calls do nothing.
    """

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        os.makedirs(workdir, exist_ok=True)
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
        path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(path):
            _drop_lines_after(path, resume_step)
        self._jsonl = open(path, "a")  # noqa: SIM115

    def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: _scalar(v) for k, v in scalars.items()}
        for key, value in values.items():
            if value is not None:
                self._tb.add_scalar(f"{split}/{key}", value, step)
        self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _drop_lines_after(path: str, step: int) -> None:
    """Rewrites the JSON-lines log ``path`` (atomically) without its records after ``step``.

    Lines that are not whole records (a crash can cut the last one short) are dropped too.
    """
    lines = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", step + 1) <= step:
                lines.append(line if line.endswith("\n") else line + "\n")
    _write_atomic(path, "".join(lines))
