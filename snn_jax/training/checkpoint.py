"""Atomic, resumable checkpoints of the train state with orbax-checkpoint."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from snn_jax.training.state import TrainState

__all__ = ["Checkpointer"]


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints of a run under ``directory``.

    Each checkpoint holds the whole ``TrainState`` (params, batch statistics,
    optimizer state, step, RNG, non-finite counters) and a small JSON of run
    metadata (e.g. the model selection so far). orbax writes to a temporary
    directory and renames it when complete, so a killed process never leaves a
    half-written checkpoint that ``restore`` would read. Use as a context
    manager, or call ``close()``: it waits for pending asynchronous saves.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        """The newest fully written checkpoint's step, or ``None``."""
        self._manager.wait_until_finished()
        return self._manager.latest_step()

    def save(self, state: TrainState, metadata: dict[str, Any] | None = None) -> int:
        """Starts an asynchronous save of ``state`` at ``state.step``; returns that step."""
        step = int(jax.device_get(state.step))
        if self._manager.latest_step() == step:
            return step
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                metadata=ocp.args.JsonSave(metadata or {}),
            ),
        )
        return step

    def restore(self, target: TrainState, step: int | None = None):
        """Restores into the structure, dtypes and shardings of ``target``.

        Returns:
          ``(state, metadata)`` from ``step`` (default: the latest), or
          ``(target, {})`` when the directory holds no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return target, {}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                metadata=ocp.args.JsonRestore(),
            ),
        )
        return restored["state"], dict(restored["metadata"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
