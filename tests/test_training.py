"""The training engine: steps, sharding, optimisers, checkpoints, resume, signals, the loop."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import digits
from snn_jax import data as data_lib
from snn_jax import training
from snn_jax.training import sharding, steps, writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    c = digits.get_config()
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_train_steps = 8
    c.log_every_steps = 1
    c.checkpoint_every_steps = 4
    c.eval_every_steps = 8
    c.progress = False
    c.optimizer.warmup_steps = 2
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def make_state(config, mesh):
    pipeline = data_lib.create_pipeline(
        config.data, global_batch_size=config.batch_size, seed=config.seed
    )
    model = training.build_model(config, pipeline.num_classes, mesh.devices.size)
    tx = training.make_optimizer(config.optimizer, 100)
    example = jax.ShapeDtypeStruct((1, *pipeline.example_shape), jnp.float32)
    state = training.create_train_state(jax.random.PRNGKey(0), model, tx, example, mesh)
    return state, pipeline


@pytest.fixture(scope="module")
def setup():
    config = tiny_config()
    mesh = sharding.make_mesh()
    state, pipeline = make_state(config, mesh)
    batch = next(pipeline.train_batches())
    return config, mesh, state, batch


def test_train_step_lowers_loss_on_a_fixed_batch(setup):
    _config, mesh, state, batch = setup
    step = jax.jit(chex.assert_max_traces(steps.train_step, n=1))
    sharded = sharding.put_batch(batch, mesh)
    losses = []
    for _ in range(5):
        state, metrics = step(state, sharded)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 0.1, losses
    assert int(state.step) == 5
    rates = [k for k in metrics if k.startswith("firing_rate/")]
    assert len(rates) >= 2
    for k in rates:
        assert 0.0 <= float(metrics[k]) <= 1.0
    assert float(metrics["grad_norm"]) > 0


def test_create_train_state_from_given_variables(setup):
    config, mesh, state, _ = setup
    given = {
        "params": jax.tree.map(lambda p: np.full(p.shape, 0.5, p.dtype), state.params),
        "batch_stats": jax.tree.map(lambda s: np.full(s.shape, 2.0, s.dtype), state.batch_stats),
    }
    tx = training.make_optimizer(config.optimizer, 100)
    example = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
    model = training.build_model(config, 10)
    started = training.create_train_state(
        jax.random.PRNGKey(0), model, tx, example, mesh, variables=given
    )
    chex.assert_trees_all_equal(started.params, given["params"])
    chex.assert_trees_all_equal(started.batch_stats, given["batch_stats"])
    chex.assert_trees_all_equal(started.rng, state.rng)  # the same split of the key
    chex.assert_trees_all_equal_structs(started.opt_state, state.opt_state)
    assert int(started.step) == 0
    leaf = jax.tree.leaves(started.params)[0]
    assert leaf.sharding.is_fully_replicated


def test_evaluate_batch_counts_only_real_examples(setup):
    config, mesh, state, batch = setup
    masked = dict(batch, mask=np.arange(len(batch["label"])) < 5)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    model = training.build_model(config, 10)
    out = jax.jit(training.evaluate_batch, static_argnums=0)(
        model, variables, sharding.put_batch(masked, mesh)
    )
    assert float(out["count"]) == 5
    assert 0 <= float(out["correct"]) <= 5


def test_evaluation_means_do_not_depend_on_the_padding(setup):
    """The 360 test digits in batches of 120 (no padding), 128 and 352 (the last
    batch mostly zero images): the same loss, accuracy and firing rates."""
    config, mesh, state, batch = setup
    train_fn = jax.jit(steps.train_step)
    for _ in range(40):  # running statistics of the data, so that every layer fires
        state, _ = train_fn(state, sharding.put_batch(batch, mesh))
    model = training.build_model(config, 10)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    results = []
    for eval_batch_size in (120, 128, 352):
        pipeline = data_lib.create_pipeline(
            config.data,
            global_batch_size=config.batch_size,
            eval_batch_size=eval_batch_size,
            seed=config.seed,
        )
        results.append(training.evaluate(model, variables, pipeline.eval_batches(), mesh=mesh))
    rates = [k for k in results[0] if k.startswith("firing_rate/")]
    assert rates
    assert all(results[0][k] > 0 for k in rates)
    for other in results[1:]:
        assert set(other) == set(results[0])
        for k in results[0]:
            assert other[k] == pytest.approx(results[0][k], rel=1e-5), k


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 simulated CPU devices")
def test_four_devices_equal_one_device_on_the_same_global_batch():
    config = tiny_config()
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:4]):
        mesh = sharding.make_mesh(devices)
        state, pipeline = make_state(config, mesh)
        batches = pipeline.train_batches()
        fn = jax.jit(steps.train_step)
        with jax.set_mesh(mesh):  # as the training loop
            for _ in range(2):
                state, _ = fn(state, sharding.put_batch(next(batches), mesh))
        leaf = jax.tree.leaves(state.params)[0]
        assert len(leaf.sharding.device_set) == len(devices)
        results.append(jax.device_get((state.params, state.batch_stats)))
    chex.assert_trees_all_close(results[0], results[1], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 simulated CPU devices")
@pytest.mark.parametrize("memory", ["none", "compact"])
def test_four_devices_each_compute_a_quarter_of_the_step(memory):
    """Time folded per device: no device gathers the batch (it did with a plain T*B fold)."""
    config = tiny_config(**{"model.memory": memory})
    flops = {}
    for n in (1, 4):
        mesh = sharding.make_mesh(jax.devices()[:n])
        state, pipeline = make_state(config, mesh)
        batch = sharding.put_batch(next(pipeline.train_batches()), mesh)
        with jax.set_mesh(mesh):
            compiled = jax.jit(steps.train_step).lower(state, batch).compile()
        cost = compiled.cost_analysis()
        flops[n] = (cost[0] if isinstance(cost, list) else cost)["flops"]
        if n == 4:
            assert " all-gather(" not in compiled.as_text()
    assert flops[4] < 0.3 * flops[1], flops


def test_nonfinite_batch_is_skipped_not_applied(setup):
    _, mesh, state, batch = setup
    fn = jax.jit(steps.train_step)
    bad = dict(batch, image=np.full_like(batch["image"], np.nan))
    before = jax.device_get((state.params, state.batch_stats, state.opt_state))
    new, metrics = fn(state, sharding.put_batch(bad, mesh))
    chex.assert_trees_all_equal(
        before, jax.device_get((new.params, new.batch_stats, new.opt_state))
    )
    assert float(metrics["skipped"]) == 1.0
    assert int(new.nonfinite_streak) == 1
    assert int(new.skipped_steps) == 1
    assert int(new.step) == int(state.step) + 1
    good, metrics = fn(new, sharding.put_batch(batch, mesh))
    assert float(metrics["skipped"]) == 0.0
    assert int(good.nonfinite_streak) == 0
    assert int(good.skipped_steps) == 1


def test_weight_decay_skips_norm_and_bias_parameters():
    params = {
        "conv": {"kernel": jnp.ones((3, 3, 2, 4))},
        "tdbn": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
        "dense": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
    }
    tx = training.make_optimizer(
        {"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "weight_decay": 0.5}, 10
    )
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    assert float(updates["conv"]["kernel"][0, 0, 0, 0]) == pytest.approx(-0.5)
    assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(-0.5)
    for leaf in (updates["tdbn"]["scale"], updates["tdbn"]["bias"], updates["dense"]["bias"]):
        assert float(jnp.abs(leaf).max()) == 0.0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_optimizers_and_schedules(name, schedule):
    cfg = {"name": name, "learning_rate": 0.1, "schedule": schedule, "warmup_steps": 4}
    sched = training.make_schedule(cfg, 20)
    assert float(sched(0)) == 0.0
    assert float(sched(4)) == pytest.approx(0.1)
    assert float(sched(2)) == pytest.approx(0.05)
    end = {"constant": 0.1, "cosine": 0.0, "step": 0.001}[schedule]
    assert float(sched(20)) == pytest.approx(end, abs=1e-7)
    tx = training.make_optimizer(cfg, 20)
    p = {"w": jnp.ones((2, 2))}
    tx.update(p, tx.init(p), p)


def test_bad_optimizer_and_schedule_names():
    with pytest.raises(ValueError, match="unknown optimizer"):
        training.make_optimizer({"name": "lamb", "learning_rate": 0.1}, 10)
    with pytest.raises(ValueError, match="unknown schedule"):
        training.make_schedule({"learning_rate": 0.1, "schedule": "poly"}, 10)


def _params(workdir):
    config = tiny_config()
    state, _ = make_state(config, sharding.make_mesh())
    with training.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
        restored, meta = ckpt.restore(state)
    return _trained(restored), meta


def _trained(state):
    """What training changes in a state: parameters, statistics, optimizer state."""
    return jax.device_get((state.params, state.batch_stats, state.opt_state))


def test_sigterm_checkpoints_and_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    config = tiny_config()
    full_state, full = training.train_and_evaluate(config, str(tmp_path / "full"))
    assert full["steps"] == 8
    assert not full["interrupted"]
    assert int(full_state.step) == 8

    write = writers.MetricWriter.write

    def write_and_signal(self, step, split, scalars):  # on the loop's thread, after step 5
        write(self, step, split, scalars)
        if step == 5 and split == "train":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writers.MetricWriter, "write", write_and_signal)
    part_state, part = training.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert part["interrupted"]
    assert part["steps"] == 5
    assert int(part_state.step) == 5
    assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints"))[-1] == "5"
    monkeypatch.setattr(writers.MetricWriter, "write", write)

    resumed_state, resumed = training.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["steps"] == 8
    assert not resumed["interrupted"]
    a, _ = _params(str(tmp_path / "full"))
    b, meta = _params(str(tmp_path / "resumed"))
    chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)
    # the returned states are the checkpointed ones
    chex.assert_trees_all_equal(a, _trained(full_state))
    chex.assert_trees_all_equal(b, _trained(resumed_state))
    assert resumed["final_test_accuracy"] == pytest.approx(full["final_test_accuracy"])
    assert meta["selection"]["accuracy"] == pytest.approx(full["best_validation_accuracy"])
    assert resumed["best_validation_step"] == full["best_validation_step"]
    assert resumed["test_accuracy_at_best_validation"] == pytest.approx(
        full["test_accuracy_at_best_validation"]
    )
    # a finished run returns its final state without training again
    again_state, again = training.train_and_evaluate(config, str(tmp_path / "full"))
    assert again["steps"] == 8
    chex.assert_trees_all_equal(a, _trained(again_state))


def test_a_signal_while_a_batch_is_prepared_stops_at_a_checkpoint(tmp_path, monkeypatch):
    """The signal reaches the process while the data thread prepares batch 3 (steps
    ahead of the devices): the run stops after the step it is in, at most step 3, with
    a checkpoint of that step, and exits cleanly; the batches already prepared are
    dropped and the resumed run reaches the end."""
    config = tiny_config()
    put, calls = sharding.put_batch, {"n": 0}

    def put_and_signal(batch, mesh, time_major=()):
        if "mask" not in batch:
            calls["n"] += 1
            if calls["n"] == 3:
                assert threading.current_thread() is not threading.main_thread()
                os.kill(os.getpid(), signal.SIGTERM)
        return put(batch, mesh, time_major)

    monkeypatch.setattr(sharding, "put_batch", put_and_signal)
    state, summary = training.train_and_evaluate(config, str(tmp_path))
    assert summary["interrupted"]
    assert 1 <= summary["steps"] <= 3
    assert int(state.step) == summary["steps"]
    assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == str(summary["steps"])
    monkeypatch.setattr(sharding, "put_batch", put)
    assert training.train_and_evaluate(config, str(tmp_path)).summary["steps"] == 8


def _logged(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(x["step"], x["split"]) for x in map(json.loads, lines)]


def _tensorboard_events(directory):
    """Every event in the TFRecord files under ``directory`` (length, CRC, data, CRC)."""
    from tensorboardX.proto import event_pb2

    events = []
    for name in sorted(os.listdir(directory)):
        data, i = (directory / name).read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + length])
            events.append(event)
            i += 12 + length + 4
    return events


def test_resume_after_a_crash_logs_each_step_once(tmp_path, monkeypatch):
    """A crash after step 6 (last checkpoint: step 4; the log's last line cut
    short), then a resume: the log is the uninterrupted run's, without steps 5
    and 6 twice; TensorBoard hides the crashed run's events from step 5 on."""
    config = tiny_config(eval_every_steps=2)
    training.train_and_evaluate(config, str(tmp_path / "full"))
    put, calls = sharding.put_batch, {"n": 0}

    def crash_at_step_7(batch, mesh, time_major=()):
        if "mask" not in batch:
            calls["n"] += 1
            if calls["n"] == 7:
                raise RuntimeError("lost the machine")
        return put(batch, mesh, time_major)

    monkeypatch.setattr(sharding, "put_batch", crash_at_step_7)
    with pytest.raises(RuntimeError, match="lost the machine"):
        training.train_and_evaluate(config, str(tmp_path / "crashed"))
    assert max(step for step, _ in _logged(tmp_path / "crashed")) == 6
    with open(tmp_path / "crashed" / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "split": "tra')  # a record the crash cut short
    monkeypatch.setattr(sharding, "put_batch", put)
    training.train_and_evaluate(config, str(tmp_path / "crashed"))
    assert _logged(tmp_path / "crashed") == _logged(tmp_path / "full")
    starts = [
        e.step
        for e in _tensorboard_events(tmp_path / "crashed" / "tensorboard")
        if e.HasField("session_log")
    ]
    assert 5 in starts  # the purge marker: events from step 5 on before it are hidden


def test_resume_with_another_config_is_a_clear_error(tmp_path):
    """A resumed run continues its own experiment: another learning rate is an error,
    a run-control setting (logging, the memory option) may change."""
    training.train_and_evaluate(tiny_config(num_train_steps=4), str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["optimizer.learning_rate"] == tiny_config().optimizer.learning_rate
    other = tiny_config(num_train_steps=4, **{"optimizer.learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"step 4 .*optimizer\.learning_rate: 0\.005 -> 0\.001"):
        training.train_and_evaluate(other, str(tmp_path))
    # checked before the restore, where a changed model would fail less clearly
    no_norm = tiny_config(num_train_steps=4, **{"model.norm": "none"})
    with pytest.raises(ValueError, match=r"model\.norm: 'tdbn' -> 'none'"):
        training.train_and_evaluate(no_norm, str(tmp_path))
    steered = tiny_config(num_train_steps=4, log_every_steps=2, **{"model.memory": "compact"})
    assert training.train_and_evaluate(steered, str(tmp_path)).summary["steps"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["log_every_steps"] == 2


def test_a_step_0_checkpoint_is_checked_too(tmp_path, monkeypatch):
    """The hybrid hand-over saves a step-0 checkpoint to start from; a run that crashed
    before its first checkpoint of its own resumes from it, with the same config only."""
    config = tiny_config(num_train_steps=4)
    state, _ = make_state(config, sharding.make_mesh())
    with training.Checkpointer(os.path.join(tmp_path, "checkpoints")) as ckpt:
        ckpt.save(state)

    def crash(batch, mesh, time_major=()):
        raise RuntimeError("lost the machine")

    monkeypatch.setattr(sharding, "put_batch", crash)
    with pytest.raises(RuntimeError, match="lost the machine"):
        training.train_and_evaluate(config, str(tmp_path))
    monkeypatch.undo()
    other = tiny_config(num_train_steps=4, **{"optimizer.learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"step 0 .*optimizer\.learning_rate"):
        training.train_and_evaluate(other, str(tmp_path))


def test_loop_compiles_the_train_step_once(tmp_path, monkeypatch):
    traces = {"n": 0}
    original = steps.train_step

    def counted(state, batch):
        traces["n"] += 1
        return original(state, batch)

    monkeypatch.setattr(steps, "train_step", counted)
    training.train_and_evaluate(tiny_config(eval_every_steps=3), str(tmp_path))
    assert traces["n"] == 1


def test_loop_stops_after_k_nonfinite_steps(tmp_path, monkeypatch):
    put = sharding.put_batch

    def poisoned(batch, mesh, time_major=()):
        if "mask" not in batch:
            batch = dict(batch, image=np.full_like(batch["image"], np.inf))
        return put(batch, mesh, time_major)

    monkeypatch.setattr(sharding, "put_batch", poisoned)
    with pytest.raises(FloatingPointError, match="3 steps in a row"):
        training.train_and_evaluate(tiny_config(max_nonfinite_steps=3), str(tmp_path / "a"))
    # logged every 8 steps: the streak's peak in the window (8), not its mean (4.5), is checked
    config = tiny_config(max_nonfinite_steps=5, log_every_steps=8, num_train_steps=16)
    with pytest.raises(FloatingPointError, match=r"8 steps in a row .* within steps 1-8"):
        training.train_and_evaluate(config, str(tmp_path / "b"))


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 simulated CPU devices")
def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not divisible by the 4 devices"):
        training.train_and_evaluate(tiny_config(batch_size=30), str(tmp_path))


def test_bad_model_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"config\.model\.name = 'resnet1000': must be one of"):
        training.train_and_evaluate(tiny_config(**{"model.name": "resnet1000"}), str(tmp_path))
    # a key the model does not take: reported by the model when it is built
    config = tiny_config()
    config.model.tua = 0.3
    with pytest.raises(ValueError, match=r"bad model config .*tua"):
        training.train_and_evaluate(config, str(tmp_path))


def _main(tmp_path, *flags, timeout=300):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", f"--workdir={tmp_path}", *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_main_smoke_run_writes_metrics_checkpoint_and_summary(tmp_path):
    r = _main(
        tmp_path,
        "--config.num_train_steps=4",
        "--config.optimizer.warmup_steps=2",
        "--config.batch_size=32",
        "--config.eval_every_steps=4",
        "--config.progress=False",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "final_test_accuracy",
        "best_validation_accuracy",
        "best_validation_step",
        "test_accuracy_at_best_validation",
        "train_seconds",
        "steps",
        "firing_rates",
    ):
        assert key in summary
    assert summary["steps"] == 4
    assert summary["firing_rates"]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {x["split"] for x in lines} == {"train", "test", "validation"}
    assert summary["best_validation_step"] == 4  # the one evaluation
    assert summary["test_accuracy_at_best_validation"] == summary["final_test_accuracy"]
    assert os.listdir(tmp_path / "tensorboard")
    assert "4" in os.listdir(tmp_path / "checkpoints")


def _parse_main_flags(argv):
    """``experiments.main``'s flags parsed from ``argv`` in this process."""
    from absl import flags

    from experiments import main

    values = flags.FlagValues()
    main.define_flags(values, sys_argv=argv)
    values(argv)
    return values


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--config.no_such_key=1", "no_such_key"),
        ("--config.model.tua=0.3", "tua"),  # a typo in a section
        ("--config.batch_size=abc", "batch_size"),
        ("--config.seed=1.5", "seed"),
    ],
)
def test_main_rejects_bad_config_flags(flag, message):
    """The flags of ``experiments.main``, parsed in this process."""
    from absl import flags

    with pytest.raises((AttributeError, flags.Error)) as error:
        _parse_main_flags(["main", flag])
    assert message in str(error.value)


def test_main_flags_reach_the_config_check():
    """A value that parses but is out of range is reported before anything is built."""
    values = _parse_main_flags(
        ["main", "--config.optimizer.learning_rate=-0.1", "--config.num_epochs=2"]
    )
    assert values.config.num_epochs == 2
    with pytest.raises(ValueError, match=r"config\.optimizer\.learning_rate = -0\.1: must be > 0"):
        training.check_config(values.config)


_TWO_PROCESS_RUN = """
import os, signal, sys
import jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from snn_jax import training
from snn_jax.training import loop, sharding, stop
from tests.test_training import tiny_config

put, any_process, train_batches, exchanges = sharding.put_batch, stop.any_process, [0], [0]

def put_and_signal(batch, mesh, time_major=()):
    if "mask" not in batch:
        train_batches[0] += 1
        if train_batches[0] == 2 and jax.process_index() == 1:  # this process only
            os.kill(os.getpid(), signal.SIGTERM)
    return put(batch, mesh, time_major)

def counted(flag):
    exchanges[0] += 1
    return any_process(flag)

sharding.put_batch = put_and_signal
stop.any_process = loop.any_process = counted
config = tiny_config(log_every_steps=4, checkpoint_every_steps=4)
state, summary = training.train_and_evaluate(config, sys.argv[3])
print("RESULT", summary["steps"], summary["interrupted"], int(state.step), flush=True)
print("EXCHANGES", exchanges[0], flush=True)
"""


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    """Two processes (``jax.distributed``), SIGTERM to one of them before step 2:
    both stop after step 4, the first log and checkpoint step, and save one
    checkpoint together (acting alone, the signalled process would wait in the
    checkpoint's collective while the other waited in the next step's). They
    exchange their stop flags twice, before step 1 and after step 4, not after
    every step."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        address = f"localhost:{sock.getsockname()[1]}"
    script = tmp_path / "run.py"
    script.write_text(_TWO_PROCESS_RUN)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=REPO)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), address, str(i), str(tmp_path / "run")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "RESULT 4 True 4" in out, out[-3000:]
        assert "EXCHANGES 2" in out, out[-3000:]
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints"))[-1] == "4"


def test_importing_the_package_starts_no_jax_backend():
    """``jax.distributed.initialize()`` must come first: no import may start a backend."""
    code = (
        "import snn_jax, snn_jax.functional, experiments.main, experiments.benchmarks.run\n"
        "from jax._src import xla_bridge\n"
        "print(xla_bridge.backends_are_initialized())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "False"


def test_model_selection_uses_validation_only_and_breaks_ties_by_loss():
    from snn_jax.training.loop import _Selection

    s = _Selection()
    evaluations = [  # step, validation (accuracy, loss), test accuracy
        (10, (0.90, 0.30), 0.50),
        (20, (0.95, 0.20), 0.60),
        (30, (0.95, 0.10), 0.70),  # same accuracy, lower loss: selected
        (40, (0.95, 0.15), 0.99),  # the best test accuracy plays no part
        (50, (0.93, 0.01), 0.80),
    ]
    for step, (acc, loss), test in evaluations:
        s.update(step, {"accuracy": acc, "loss": loss}, {"accuracy": test})
    assert (s.step, s.accuracy, s.loss, s.test_accuracy) == (30, 0.95, 0.10, 0.70)
