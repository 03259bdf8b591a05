"""The training loop: config -> data -> model -> sharded jitted steps -> checkpoints and logs."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from snn_jax import data as data_lib
from snn_jax import models
from snn_jax.nn import NeuronSpec
from snn_jax.training import checkpoint, evaluation, optim, sharding, steps, writers
from snn_jax.training.config_check import check_config, check_run
from snn_jax.training.state import TrainState, create_train_state
from snn_jax.training.stop import StopRequested, any_process, stop_agreed

__all__ = [
    "RUN_CONTROL_KEYS",
    "StopRequested",
    "TrainResult",
    "build_model",
    "device_batches",
    "train_and_evaluate",
]

log = logging.getLogger(__name__)

LOSS_KEYS = ("loss", "tet_lambda", "tet_phi")  # train_step's keyword arguments in a config


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


def device_batches(
    batches: Iterable[dict[str, np.ndarray]], mesh: Mesh, time_major_keys=(), size: int = 2
) -> Iterator[dict[str, jax.Array]]:
    """``batches`` assembled on the devices of ``mesh`` (``sharding.put_batch``), ``size`` ahead.

    A thread (``snn_jax.data.prefetch``) prepares and transfers the next
    batches while the devices compute on the current one. Close the returned
    generator to stop the thread; an error in preparing a batch is raised
    where that batch would have been returned.
    """
    # the module attribute is looked up for every batch (tests replace it)
    placed = (sharding.put_batch(b, mesh, time_major_keys) for b in batches)
    return data_lib.prefetch(placed, size)


def _summarize(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    """The mean of each metric over the logged steps; for ``nonfinite_streak`` the largest.

    A run of ``k`` non-finite steps peaks at ``k`` inside the window, whatever
    its length; its mean would be about ``k**2 / (2 * window)``.
    """
    fetched = jax.device_get(history)
    summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    summary["nonfinite_streak"] = float(max(m["nonfinite_streak"] for m in fetched))
    return summary


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
    saved config (a workdir whose run wrote none) nothing is checked.
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


@dataclasses.dataclass
class _Selection:
    """Model selection on the validation split: the best evaluation so far.

    Best means the highest validation accuracy, ties broken by the lower
    validation loss (then the earlier step). The test split plays no part;
    its accuracy at that step is only recorded.
    """

    accuracy: float | None = None
    loss: float | None = None
    step: int | None = None
    test_accuracy: float | None = None

    def update(self, step: int, validation: dict, test: dict) -> None:
        acc, loss = float(validation["accuracy"]), float(validation["loss"])
        if self.accuracy is None or (acc, -loss) > (self.accuracy, -self.loss):
            self.accuracy, self.loss, self.step = acc, loss, step
            self.test_accuracy = float(test["accuracy"])


class _TrainClock:
    """Wall time spent training, without evaluations and checkpoints.

    The host does not wait for each step, so the clock is read only where it
    waits anyway (a log step fetches metrics; evaluation and checkpoints read
    the state): ``wait(metrics)`` waits for the devices to finish the steps
    dispatched so far and stops the clock, ``resume`` restarts it. ``window``
    is the training time since it was last reset (at each log).
    """

    def __init__(self, total: float):
        self.total, self.window = total, 0.0
        self._since: float | None = time.perf_counter()

    def wait(self, metrics) -> None:
        if self._since is None:
            return
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - self._since
        self.total += elapsed
        self.window += elapsed
        self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()


class TrainResult(NamedTuple):
    """What :func:`train_and_evaluate` returns; unpack it as ``state, summary = ...``.

    Attributes:
      state: the final ``TrainState`` (the one the last checkpoint holds),
        replicated over the devices.
      summary: what ``summary.json`` holds: ``final_test_accuracy``,
        ``best_validation_accuracy``, ``best_validation_step``,
        ``test_accuracy_at_best_validation`` (None without a validation
        split), ``train_seconds``, ``steps``, ``interrupted``,
        ``firing_rates`` and more.
    """

    state: TrainState
    summary: dict[str, Any]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains and evaluates the model described by ``config``; resumes from ``workdir``.

    Writes to ``workdir``: ``checkpoints/`` (orbax), ``tensorboard/``,
    ``metrics.jsonl``, ``config.json`` and ``summary.json``. Rerunning the same
    command after an interruption continues from the last checkpoint and gives
    the same result as an uninterrupted run; a changed config (other than
    :data:`RUN_CONTROL_KEYS`) is a ``ValueError`` instead, and so is a value
    out of range (:func:`~snn_jax.training.config_check.check_config`), before
    anything is compiled.

    The batches are prepared and put on the devices two steps ahead, and the
    host waits for the devices only to log (the metrics of the steps since the
    last log are fetched together), evaluate or checkpoint. SIGTERM/SIGINT
    save a checkpoint and return early: a single process after the current
    step; the processes of a multi-process run all at the same step, the next
    log or checkpoint step after the signal reached any of them
    (:func:`~snn_jax.training.stop.stop_agreed`).

    Returns:
      ``TrainResult(state, summary)``: the final train state and the summary.
    """
    check_config(config)
    if config.distributed:
        jax.distributed.initialize()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh()
    n_devices = mesh.devices.size
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
    check_run(config, total_steps=total, num_devices=n_devices)
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
        # the loss keys a config sets (absent ones: train_step's defaults, the CE loss)
        functools.partial(steps.train_step, **{k: config[k] for k in LOSS_KEYS if k in config}),
        donate_argnums=0,
        out_shardings=(state_sharding, sharding.replicated(mesh)),
    )
    time_major = ("image",) if pipeline.time_major else ()
    is_main = jax.process_index() == 0

    with (
        jax.set_mesh(mesh),
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
        selection = _Selection(**meta.get("selection", {}))
        test = meta.get("last_test", {})

        def run_meta() -> dict:  # what a checkpoint keeps besides the state
            return dict(
                selection=dataclasses.asdict(selection), train_seconds=clock.total, last_test=test
            )

        batches = stack.enter_context(
            contextlib.closing(device_batches(pipeline.train_batches(start), mesh, time_major))
        )
        history: list[dict[str, jax.Array]] = []
        in_flight: collections.deque[jax.Array] = collections.deque()
        bar = stack.enter_context(
            tqdm(
                total=total,
                initial=start,
                desc="train",
                disable=not (config.progress and is_main),
                dynamic_ncols=True,
            )
        )
        clock, images = _TrainClock(meta.get("train_seconds", 0.0)), 0
        step = start
        stopping = any_process(bool(stop))
        while step < total and not stopping:
            state, metrics = train_fn(state, next(batches))
            history.append(metrics)
            step += 1
            images += config.batch_size
            bar.update(1)
            # Two steps in flight at most: the host runs ahead of the devices by no
            # more than the prefetch does, whatever the log interval.
            in_flight.append(metrics["loss"])
            if len(in_flight) > 2:
                in_flight.popleft().block_until_ready()
            logs, evals = every.due(step, every.log_every), every.due(step, every.eval_every)
            saves = every.due(step, every.checkpoint_every)
            if logs or evals or saves:
                clock.wait(metrics)
            if logs:
                train = _summarize(history)
                window = f"{step - len(history) + 1}-{step}"
                history = []
                train["images_per_second"] = images / clock.window
                clock.window, images = 0.0, 0
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
            if evals:
                test = evaluation.evaluate(
                    model,
                    {"params": state.params, "batch_stats": state.batch_stats},
                    pipeline.eval_batches(),
                    mesh=mesh,
                    time_major=pipeline.time_major,
                )
                writer.write(step, "test", test)
                shown = f"test loss {test['loss']:.4f} accuracy {test['accuracy']:.4f}"
                if pipeline.validation_size:
                    validation = evaluation.evaluate(
                        model,
                        {"params": state.params, "batch_stats": state.batch_stats},
                        pipeline.eval_batches("validation"),
                        mesh=mesh,
                        time_major=pipeline.time_major,
                    )
                    writer.write(step, "validation", validation)
                    selection.update(step, validation, test)
                    shown += f", validation accuracy {validation['accuracy']:.4f}"
                bar.write(f"step {step}: {shown}")
            stopping = stop_agreed(stop, sync_point=logs or saves)
            if saves or stopping:
                clock.wait(metrics)
                ckpt.save(state, run_meta())
            clock.resume()
        interrupted = stopping
        if interrupted:
            ckpt.save(state, run_meta())
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
        "best_validation_accuracy": selection.accuracy,
        "best_validation_step": selection.step,
        "test_accuracy_at_best_validation": selection.test_accuracy,
        "validation_examples": pipeline.validation_size,
        "train_seconds": clock.total,
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
    return TrainResult(state, summary)
