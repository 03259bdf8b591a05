"""The training loop: config -> data -> model -> sharded jitted steps -> checkpoints and logs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from snn_jax import data as data_lib
from snn_jax import models
from snn_jax.nn import NeuronSpec
from snn_jax.training import checkpoint, optim, sharding, steps, writers
from snn_jax.training.state import create_train_state

__all__ = ["RUN_CONTROL_KEYS", "StopRequested", "build_model", "evaluate", "train_and_evaluate"]

log = logging.getLogger(__name__)


class StopRequested:
    """Records SIGTERM/SIGINT instead of dying, so the loop can checkpoint and exit.

    A second signal while the first is pending restores the default behaviour.
    """

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequested:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def build_model(config: ml_collections.ConfigDict, num_classes: int, batch_shards: int = 1):
    """The model named by ``config.model.name`` with the config's other model fields.

    The neuron's keys (``model.neuron``, ``model.tau``, ...) become one
    :class:`snn_jax.nn.NeuronSpec` (:meth:`~snn_jax.nn.NeuronSpec.from_config`);
    ``batch_shards`` is the number of devices the batch is split over.
    """
    kwargs = {k: v for k, v in config.model.items() if k not in NeuronSpec.config_keys()}
    name = kwargs.pop("name")
    try:
        return models.get_model(
            name,
            num_classes=num_classes,
            time_steps=config.time_steps,
            dtype=jnp.dtype(config.dtype),
            neuron=NeuronSpec.from_config(config.model),
            batch_shards=batch_shards,
            **kwargs,
        )
    except TypeError as e:
        raise ValueError(f"bad model config {dict(config.model)}: {e}") from None


def evaluate(eval_fn, state, pipeline, mesh) -> dict[str, float]:
    """One pass over the test split: ``loss``, ``accuracy`` and firing rates.

    Each is a mean over the real test examples: the padding of the last batch
    counts for none of them (``eval_fn`` returns sums over the masked batch).
    """
    time_major = ("image",) if pipeline.time_major else ()
    sums: dict[str, float] = {}
    for batch in pipeline.eval_batches():
        out = jax.device_get(eval_fn(state, sharding.put_batch(batch, mesh, time_major)))
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    count = max(sums.pop("count", 0.0), 1.0)
    result = {"loss": sums.pop("loss_sum") / count, "accuracy": sums.pop("correct") / count}
    result.update({k: v / count for k, v in sums.items()})
    return result


def _summarize(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    """The mean of each metric over the logged steps; for ``nonfinite_streak`` the largest.

    A run of ``k`` non-finite steps peaks at ``k`` inside the window, whatever
    its length; its mean would be about ``k**2 / (2 * window)``.
    """
    fetched = jax.device_get(history)
    summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    summary["nonfinite_streak"] = float(max(m["nonfinite_streak"] for m in fetched))
    return summary


def _any_process(flag: bool) -> bool:
    """Whether ``flag`` is set on any process; every process gets the same answer.

    A stop signal may reach the hosts of a multi-process run at different
    steps; they must stop (and save their checkpoint, a collective) together.
    """
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


# Config keys that steer a run without changing what it computes: a resumed run may change them.
RUN_CONTROL_KEYS = frozenset(
    {
        "name",
        "progress",
        "distributed",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "max_nonfinite_steps",
        "eval_batch_size",
        "data.data_dir",
        "data.cache_dir",
        "data.num_workers",
        "model.memory",  # the same values and gradients with any option
        "model.unroll",
    }
)


def _flat_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``{"a.b": value}`` of ``config``, as JSON gives it back (tuples become lists)."""
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    walk("", config.to_dict())
    return json.loads(json.dumps(flat, default=str))


def _check_resumed_config(path: str, current: dict[str, Any], step: int | None) -> None:
    """Raises ``ValueError`` if a run resumed from a checkpoint at ``step`` has another
    config, ``current`` (:func:`_flat_config`), than the one saved at ``path`` (outside
    :data:`RUN_CONTROL_KEYS`).

    A resumed run with, e.g., another learning rate or data set would silently
    continue a different experiment. Without a checkpoint (``step`` None) or a
    saved config (a run from before this check) nothing is checked.
    """
    if step is None or not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)

    def shown(values, key):
        return repr(values[key]) if key in values else "(absent)"

    changed = [
        f"{key}: {shown(saved, key)} -> {shown(current, key)}"
        for key in sorted(saved.keys() | current.keys())
        if key not in RUN_CONTROL_KEYS and saved.get(key) != current.get(key)
    ]
    if changed:
        raise ValueError(
            f"{os.path.dirname(path)} holds a run at step {step} that was started with another "
            f"config ({'; '.join(changed)}). Resume it with the same config, or train in a new "
            f"--workdir (these may change on resume: {', '.join(sorted(RUN_CONTROL_KEYS))})"
        )


@dataclasses.dataclass
class _Schedule:
    total: int
    log_every: int
    eval_every: int
    checkpoint_every: int

    def due(self, step: int, every: int) -> bool:
        return step == self.total or (every > 0 and step % every == 0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates the model described by ``config``; resumes from ``workdir``.

    Writes to ``workdir``: ``checkpoints/`` (orbax), ``tensorboard/``,
    ``metrics.jsonl``, ``config.json`` and ``summary.json``. Rerunning the same
    command after an interruption continues from the last checkpoint and gives
    the same result as an uninterrupted run; a changed config (other than
    :data:`RUN_CONTROL_KEYS`) is a ``ValueError`` instead. SIGTERM/SIGINT save a
    checkpoint and return early; in a multi-process run, a signal to any
    process stops all of them at the same step.

    Returns:
      The summary: ``final_test_accuracy``, ``best_test_accuracy``,
      ``train_seconds``, ``steps``, ``firing_rates`` and more.
    """
    if config.distributed:
        jax.distributed.initialize()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh()
    n_devices = mesh.devices.size
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % n_devices:
            raise ValueError(
                f"config.{key} = {config[key]} is not divisible by the {n_devices} devices; "
                f"use a multiple of {n_devices}"
            )
    pipeline = data_lib.create_pipeline(
        config.data,
        global_batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    total = config.num_train_steps
    if total <= 0:
        total = config.num_epochs * pipeline.steps_per_epoch
    every = _Schedule(
        total,
        config.log_every_steps,
        config.eval_every_steps if config.eval_every_steps > 0 else pipeline.steps_per_epoch,
        config.checkpoint_every_steps
        if config.checkpoint_every_steps > 0
        else pipeline.steps_per_epoch,
    )
    model = build_model(config, pipeline.num_classes, n_devices)
    tx = optim.make_optimizer(config.optimizer, total)
    state = create_train_state(
        jax.random.PRNGKey(config.seed),
        model,
        tx,
        jax.ShapeDtypeStruct(pipeline.shape.batch_shape(1), jnp.float32),
        mesh,
    )
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    train_fn = jax.jit(
        steps.train_step,
        donate_argnums=0,
        out_shardings=(state_sharding, sharding.replicated(mesh)),
    )
    eval_fn = jax.jit(steps.eval_step, out_shardings=sharding.replicated(mesh))
    time_major = ("image",) if pipeline.time_major else ()
    is_main = jax.process_index() == 0

    with (
        jax.set_mesh(mesh),  # the model folds time per device (snn_jax.nn.folding)
        checkpoint.Checkpointer(
            os.path.join(workdir, "checkpoints"), config.keep_checkpoints
        ) as ckpt,
        StopRequested() as stop,
        contextlib.ExitStack() as stack,
    ):
        config_path, flat_config = os.path.join(workdir, "config.json"), _flat_config(config)
        # before the restore: a changed model or optimizer would fail in it, less clearly
        _check_resumed_config(config_path, flat_config, ckpt.latest_step())
        state, meta = ckpt.restore(state)
        start = int(jax.device_get(state.step))
        if is_main:
            writers.write_json_atomic(config_path, flat_config)
        writer = stack.enter_context(
            writers.MetricWriter(workdir, enabled=is_main, resume_step=start)
        )
        if start:
            log.info("resumed from step %d in %s", start, workdir)
        best = meta.get("best_test_accuracy", 0.0)
        train_seconds = meta.get("train_seconds", 0.0)
        test = meta.get("last_test", {})
        batches = pipeline.train_batches(start)
        history: list[dict[str, jax.Array]] = []
        bar = tqdm(
            total=total,
            initial=start,
            desc="train",
            disable=not (config.progress and is_main),
            dynamic_ncols=True,
        )
        t_last, images = time.perf_counter(), 0
        step = start
        stopping = _any_process(bool(stop))
        while step < total and not stopping:
            t0 = time.perf_counter()
            state, metrics = train_fn(state, sharding.put_batch(next(batches), mesh, time_major))
            history.append(metrics)
            step += 1
            images += config.batch_size
            if every.due(step, every.log_every):
                train = _summarize(history)
                window = f"{step - len(history) + 1}-{step}"
                history = []
                now = time.perf_counter()
                train["images_per_second"] = images / (now - t_last)
                t_last, images = now, 0
                writer.write(step, "train", train)
                bar.set_postfix(
                    loss=f"{train['loss']:.3f}",
                    acc=f"{train['accuracy']:.3f}",
                    img_s=f"{train['images_per_second']:.0f}",
                )
                if train["nonfinite_streak"] >= config.max_nonfinite_steps:
                    raise FloatingPointError(
                        f"{int(train['nonfinite_streak'])} steps in a row had a non-finite loss "
                        f"or gradient (the count reached it within steps {window}; all were "
                        "skipped); lower the learning rate or check the data. Last good "
                        f"checkpoint: {ckpt.directory}"
                    )
            jax.block_until_ready(state.step)
            train_seconds += time.perf_counter() - t0
            bar.update(1)
            if every.due(step, every.eval_every):
                test = evaluate(eval_fn, state, pipeline, mesh)
                best = max(best, test["accuracy"])
                writer.write(step, "test", test)
                bar.write(
                    f"step {step}: test loss {test['loss']:.4f} accuracy {test['accuracy']:.4f}"
                )
            stopping = _any_process(bool(stop))
            if every.due(step, every.checkpoint_every) or stopping:
                ckpt.save(
                    state,
                    dict(best_test_accuracy=best, train_seconds=train_seconds, last_test=test),
                )
        bar.close()
        interrupted = stopping
        if interrupted:
            ckpt.save(
                state, dict(best_test_accuracy=best, train_seconds=train_seconds, last_test=test)
            )
            log.warning(
                "stopped by %s at step %d; checkpoint saved in %s, rerun to resume",
                f"signal {stop.signal}" if stop else "a signal to another process",
                step,
                ckpt.directory,
            )

    summary = {
        "config_name": config.get("name", ""),
        "steps": step,
        "total_steps": total,
        "interrupted": interrupted,
        "final_test_accuracy": test.get("accuracy"),
        "final_test_loss": test.get("loss"),
        "best_test_accuracy": best,
        "train_seconds": train_seconds,
        "skipped_steps": int(jax.device_get(state.skipped_steps)),
        "firing_rates": {
            k.removeprefix("firing_rate/"): v
            for k, v in test.items()
            if k.startswith("firing_rate/")
        },
        "devices": n_devices,
        "device_kind": jax.devices()[0].device_kind,
        "parameters": int(sum(np.prod(p.shape) for p in jax.tree.leaves(state.params))),
    }
    if is_main:
        writers.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    return summary
