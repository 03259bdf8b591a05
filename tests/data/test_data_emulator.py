"""The DVS emulator against a plain per-pixel loop of its rule, and the event_digits data set."""

import collections
import math

import numpy as np
import pytest

from snn_jax.data import create_pipeline, describe, event_digits, load_digits_split
from snn_jax.data.emulator import EVENT_DTYPE, background_events, emulate_events, merge_events
from snn_jax.data.events import events_to_frames

T = 8  # frames; batches use B = 4 so that T != B


def reference_events(frames, times, c_on, c_off, refractory, eps):
    """METHOD.md section 9's rule, one pixel and one candidate at a time (no numpy vectors)."""
    k_frames, height, width = frames.shape
    out, suppressed = [], 0
    for y in range(height):
        for x in range(width):
            ref = math.log(float(frames[0, y, x]) + eps)
            last = None
            for k in range(1, k_frames):
                d = math.log(float(frames[k, y, x]) + eps) - ref
                on = d > 0
                c = c_on if on else c_off
                n = math.floor(abs(d) / c)
                for j in range(1, n + 1):
                    tau = int(times[k - 1]) + (j * (int(times[k]) - int(times[k - 1]))) // n
                    if last is not None and tau - last < refractory:
                        suppressed += 1
                        continue
                    last = tau
                    ref = ref + c if on else ref - c
                    out.append((x, y, on, tau))
    events = np.array(out, EVENT_DTYPE) if out else np.zeros(0, EVENT_DTYPE)
    return merge_events(events), suppressed


def hand_made_frames():
    """5x4 pixels, 7 frames at uneven times: ramps, a flash, a reversal, static and black pixels."""
    rng = np.random.default_rng(7)
    frames = rng.uniform(0.05, 1.0, size=(7, 5, 4))
    frames[:, 0, 0] = 0.4  # static
    frames[:, 0, 1] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]  # steady brightening
    frames[:, 0, 2] = [1.0, 1.0, 20.0, 1.0, 1.0, 0.05, 1.0]  # flash, then dark, then back
    frames[:, 0, 3] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # from black
    times = np.array([0, 100, 130, 400, 401, 1000, 1300])
    return frames, times


@pytest.mark.parametrize(
    ("c_on", "c_off", "refractory"), [(0.2, 0.2, 0), (0.3, 0.15, 40), (0.25, 0.5, 150)]
)
def test_emulator_equals_the_rule_pixel_by_pixel(c_on, c_off, refractory):
    frames, times = hand_made_frames()
    ev = emulate_events(
        frames, times, contrast_on=c_on, contrast_off=c_off, refractory=refractory, log_eps=1e-3
    )
    expected, suppressed = reference_events(frames, times, c_on, c_off, refractory, 1e-3)
    assert len(expected) > 50
    assert expected["p"].any()
    assert not expected["p"].all()
    if refractory:
        assert suppressed > 0  # the refractory period is exercised
    np.testing.assert_array_equal(ev, expected)
    assert ev.dtype == EVENT_DTYPE


def test_static_scene_gives_no_events_and_noise_only_adds():
    frames = np.broadcast_to(np.random.default_rng(0).uniform(0, 1, (1, 6, 5)), (9, 6, 5))
    times = np.arange(9) * 1000
    assert len(emulate_events(frames, times, refractory=100)) == 0
    noise = background_events(
        np.random.default_rng(1), sensor_size=(5, 6), t_start=1, t_end=8001, rate=500.0
    )
    assert len(noise) > 0
    assert noise["x"].max() < 5
    assert noise["y"].max() < 6
    assert noise["t"].min() >= 1
    assert noise["t"].max() < 8001
    again = background_events(
        np.random.default_rng(1), sensor_size=(5, 6), t_start=1, t_end=8001, rate=500.0
    )
    np.testing.assert_array_equal(noise, again)
    # expected count: 30 pixels * 500 Hz * 8 ms = 120
    assert 80 < len(noise) < 160


def test_polarity_and_time_order():
    times = np.array([0, 50, 100, 200])
    up = np.stack([np.full((2, 3), v) for v in (0.1, 0.3, 0.9, 2.7)])
    on = emulate_events(up, times, contrast_on=0.2)
    off = emulate_events(up[::-1].copy(), times, contrast_off=0.2)
    assert len(on) > 0
    assert on["p"].all()
    assert len(off) > 0
    assert not off["p"].any()
    for ev in (on, off):
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() > times[0]
        assert ev["t"].max() <= times[-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contrast_on": 0.0}, "contrast_on"),
        ({"refractory": -1}, "refractory"),
        ({"log_eps": 0.0}, "log_eps"),
    ],
)
def test_emulator_errors(kwargs, match):
    frames, times = np.ones((3, 2, 2)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match=match):
        emulate_events(frames, times, **kwargs)
    with pytest.raises(ValueError, match="increasing"):
        emulate_events(frames, np.array([0, 2, 2]))
    with pytest.raises(ValueError, match="integers"):
        emulate_events(frames, np.array([0.0, 1.0, 2.0]))


def test_split_is_the_static_digits_split_stratified_disjoint_and_fixed():
    _, labels, splits = event_digits._digits()
    train, test = splits["train"], splits["test"]
    assert (len(train), len(test)) == (1437, 360)
    assert not set(train) & set(test)
    assert len(set(train) | set(test)) == 1797
    counts_train = np.bincount(labels[train], minlength=10)
    counts_test = np.bincount(labels[test], minlength=10)
    np.testing.assert_allclose(counts_test / counts_train, 0.25, atol=0.02)  # 80/20 per class
    static = load_digits_split()
    np.testing.assert_array_equal(event_digits.EventDigits("test").targets, static.test_labels)
    np.testing.assert_array_equal(event_digits.EventDigits("train").targets, static.train_labels)


def test_recordings_are_fixed_by_the_seed_and_idle_segments_carry_only_noise():
    spec = event_digits.EVENT_DIGITS
    a, b = event_digits.generate(5), event_digits.generate(5)
    np.testing.assert_array_equal(a.events, b.events)
    other = event_digits.generate(5, event_digits.EventDigitsSpec(seed=1))
    assert not np.array_equal(a.idle, other.idle) or len(a.events) != len(other.events)
    seg = spec.duration // spec.segments
    for i in range(6):
        rec = event_digits.generate(i)
        assert spec.min_idle <= rec.idle.sum() <= spec.max_idle
        left = collections.Counter(rec.events.tolist())
        left.subtract(rec.noise.tolist())  # the events are the signal plus the noise
        assert min(left.values()) >= 0
        signal_t = np.array([t for (_, _, _, t), n in left.items() for _ in range(n)])
        signal_segments = (signal_t - 1) // seg
        assert not np.any(rec.idle[signal_segments])  # idle segments: noise only
        assert set(np.flatnonzero(~rec.idle)) <= set(signal_segments)  # saccades: signal
        assert rec.events["t"].min() >= 1
        assert rec.events["t"].max() <= spec.duration


def test_bin_statistics_follow_the_schedule(few_digits):
    stats = event_digits.bin_statistics("test", time_steps=T)
    assert stats.signal.shape == stats.noise.shape == stats.idle.shape == (10, T)
    # T = segments: each bin is one segment, wholly idle or wholly saccade
    assert set(np.unique(stats.idle)) == {0.0, 1.0}
    assert np.all(stats.signal[stats.idle == 1.0] == 0)
    assert np.all(stats.signal[stats.idle == 0.0] > 0)
    assert np.all(stats.noise_fraction[stats.idle == 1.0] == 1.0)
    assert np.all(stats.noise_fraction[stats.idle == 0.0] < 0.5)
    for i, index in enumerate(few_digits["test"]):
        np.testing.assert_array_equal(stats.idle[i], event_digits.generate(index).idle)
    half = event_digits.bin_statistics("test", time_steps=16)  # two bins per segment
    np.testing.assert_array_equal(half.idle[:, ::2], stats.idle)
    np.testing.assert_array_equal(half.signal[:, ::2] + half.signal[:, 1::2], stats.signal)


def test_through_the_dvs_pipeline_with_cache_and_resume(few_digits, tmp_path):
    cfg = {"name": "event_digits", "time_steps": T, "cache_dir": str(tmp_path), "augment": True}
    assert describe(cfg).example_shape == (T, 34, 34, 2)
    p = create_pipeline(cfg, global_batch_size=4, eval_batch_size=4, seed=3)
    (folder,) = list(tmp_path.iterdir())
    assert folder.name == f"event_digits-{event_digits.EVENT_DIGITS.fingerprint()}"
    batches = [b for b, _ in zip(p.train_batches(), range(3), strict=False)]
    assert batches[0]["image"].shape == (T, 4, 34, 34, 2)
    resumed = next(create_pipeline(cfg, global_batch_size=4, seed=3).train_batches(2))
    np.testing.assert_array_equal(resumed["image"], batches[2]["image"])  # read from the cache
    test = list(p.eval_batches())
    images = np.concatenate([b["image"] for b in test], axis=1)[:, : len(few_digits["test"])]
    spec = event_digits.EVENT_DIGITS
    for i, index in enumerate(few_digits["test"]):
        expected = events_to_frames(
            event_digits.generate(index).events,
            time_steps=T,
            sensor_size=(34, 34),
            t_range=spec.time_window,
        )
        np.testing.assert_array_equal(images[:, i], expected)


def test_smoke_config_trains_on_generated_data(few_digits, tmp_path, monkeypatch):
    import jax

    from experiments.configs import event_digits as config_module
    from snn_jax import training
    from snn_jax.training import sharding

    make_mesh = sharding.make_mesh
    monkeypatch.setattr(sharding, "make_mesh", lambda: make_mesh(jax.devices()[:1]))
    c = config_module.get_config("smoke")
    assert (c.name, c.time_steps, c.data.time_steps) == ("event_digits_t8_smoke", 8, 8)
    c.data.cache_dir = str(tmp_path / "cache")
    state, summary = training.train_and_evaluate(c, str(tmp_path / "workdir"))
    assert summary["steps"] == config_module.SMOKE_STEPS == int(state.step)
    assert 0.0 <= summary["final_test_accuracy"] <= 1.0
    assert np.isfinite(summary["final_test_loss"])
    assert len(summary["firing_rates"]) == 3  # conv1, conv2, fc
    full = config_module.get_config("t16")
    assert (full.name, full.time_steps, full.data.time_steps) == ("event_digits_t16", 16, 16)


def test_binning_over_a_fixed_time_range():
    ev = np.array([(0, 0, True, 30), (1, 0, False, 55)], EVENT_DTYPE)
    frames = events_to_frames(ev, time_steps=4, sensor_size=(2, 1), t_range=(1, 81))
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)), [0, 1, 1, 0])  # bins of 20
    with pytest.raises(ValueError, match="outside t_range"):
        events_to_frames(ev, time_steps=4, sensor_size=(2, 1), t_range=(31, 81))


def test_idle_noise_rate_adds_noise_to_idle_segments_only():
    spec = event_digits.EventDigitsSpec(idle_noise_rate=400.0)
    rec, base = event_digits.generate(7, spec), event_digits.generate(7)
    length = spec.frames_per_segment * spec.frame_interval
    segment = (rec.noise["t"] - 1) // length
    per_segment = np.bincount(segment, minlength=spec.segments)
    expected_extra = 400.0 * spec.sensor**2 * length * 1e-6  # Poisson mean, about 2,300
    base_rate = spec.noise_rate * spec.sensor**2 * length * 1e-6  # about 115
    np.testing.assert_array_equal(rec.idle, base.idle)  # the schedule is drawn first
    for s in range(spec.segments):
        want = base_rate + (expected_extra if rec.idle[s] else 0.0)
        assert abs(per_segment[s] - want) < 5 * np.sqrt(want), (s, per_segment[s], want)
    signal = np.setdiff1d(rec.events, rec.noise)
    assert len(signal) == len(rec.events) - len(rec.noise)
