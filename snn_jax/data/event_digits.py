"""``event_digits``: scikit-learn's digits seen by an emulated DVS during saccades.

Each of the 1797 bundled 8x8 digits is scaled up bilinearly to 24x24 and
placed on a 34x34 sensor (N-MNIST's size) on a uniform grey background. The
recording lasts :attr:`EventDigitsSpec.segments` segments of equal duration.
In a *saccade* segment the digit moves in a straight line, at constant speed,
to a new random position at least ``min_jump`` pixels away; in an *idle*
segment it stays where it is, so the DVS pixels see a static scene and emit
nothing, and only background-noise events occur. Each recording has between
``min_idle`` and ``max_idle`` idle segments at random places. The frames go
through :func:`snn_jax.data.emulator.emulate_events`, the noise comes from
:func:`~snn_jax.data.emulator.background_events`.

Everything is a pure function of the spec's ``seed`` and the digit's index in
scikit-learn's order, and the train/test split is the static digits' split
(stratified 80/20, ``random_state=0``): 1437 training and 360 test
recordings. :func:`snn_jax.data.events.event_parts` bins them into frames and
caches them like the tonic data sets; :func:`bin_statistics` tells, per time
bin, how much of it is idle and how many of its events are noise, so that a
model's per-bin behaviour (e.g. temporal attention scores) can be set against
the schedule. METHOD.md section 9 ("DVS emulator and the offline event_digits
task") gives the emulator's rule.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from snn_jax.data.emulator import background_events, emulate_events, merge_events

__all__ = [
    "EVENT_DIGITS",
    "BinStatistics",
    "EventDigits",
    "EventDigitsSpec",
    "Recording",
    "bin_statistics",
    "generate",
    "render",
]

_NUM_DIGITS = 1797
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0  # the static digits' split
_MAX_PIXEL = 16.0


@dataclasses.dataclass(frozen=True)
class EventDigitsSpec:
    """Every constant of the generator; the frame cache's folder name carries its hash.

    Attributes:
      sensor: side of the square sensor in pixels.
      scale: magnification of the 8x8 digit (24x24 on the sensor).
      segments: segments per recording.
      frames_per_segment: intensity frames rendered per segment.
      frame_interval: time between frames, microseconds.
      min_idle: fewest idle segments per recording.
      max_idle: most idle segments per recording.
      min_jump: shortest saccade, pixels.
      background: intensity of the background (the digit adds up to 1).
      contrast: ON and OFF contrast threshold (log units).
      refractory: refractory period, microseconds.
      noise_rate: background events per pixel and second, over the whole recording.
      idle_noise_rate: additional background events per pixel and second in
        the idle segments only (0: none).
      seed: the generator's seed.
    """

    sensor: int = 34
    scale: float = 3.0
    segments: int = 8
    frames_per_segment: int = 5
    frame_interval: int = 1000
    min_idle: int = 2
    max_idle: int = 4
    min_jump: float = 3.0
    background: float = 0.25
    contrast: float = 0.3
    refractory: int = 200
    noise_rate: float = 20.0
    idle_noise_rate: float = 0.0
    seed: int = 0

    @property
    def duration(self) -> int:
        """Length of a recording, microseconds."""
        return self.segments * self.frames_per_segment * self.frame_interval

    @property
    def time_window(self) -> tuple[int, int]:
        """``[start, end)`` of every recording: events lie in ``(0, duration]``."""
        return (1, self.duration + 1)

    @property
    def num_frames(self) -> int:
        """Intensity frames per recording, the one at time 0 included."""
        return self.segments * self.frames_per_segment + 1

    def fingerprint(self) -> str:
        """A short hash of the fields, for cache folder names."""
        import hashlib

        text = repr(dataclasses.astuple(self))
        return hashlib.sha256(text.encode()).hexdigest()[:10]


EVENT_DIGITS = EventDigitsSpec()


class Recording(NamedTuple):
    """One generated recording.

    Attributes:
      events: all events, :data:`~snn_jax.data.emulator.EVENT_DTYPE`, sorted by time.
      noise: the background-noise events among them.
      idle: bool ``[segments]``, True where the digit stands still.
      label: the digit, 0..9.
    """

    events: np.ndarray
    noise: np.ndarray
    idle: np.ndarray
    label: int


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Images float64 ``[1797, 8, 8]`` in [0, 1], labels, and the split's original indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    labels = data.target.astype(np.int32)
    train, test = train_test_split(
        np.arange(len(labels)),
        test_size=_TEST_FRACTION,
        stratify=labels,
        random_state=_SPLIT_SEED,
    )
    images = data.images.astype(np.float64) / _MAX_PIXEL
    return images, labels, {"train": np.asarray(train), "test": np.asarray(test)}


def _interpolation_weights(offset: np.ndarray, scale: float, sensor: int, n: int) -> np.ndarray:
    """``[K, sensor, n]``: bilinear weights of digit rows (or columns) at each sensor row.

    Sensor pixel ``y`` (centre ``y + 0.5``) samples the digit at the continuous
    index ``u = (y + 0.5 - offset) / scale - 0.5``; outside the digit is zero.
    """
    u = (np.arange(sensor) + 0.5 - offset[:, None]) / scale - 0.5  # [K, sensor]
    lower = np.floor(u)
    frac = u - lower
    weights = np.zeros((len(offset), sensor, n))
    for shift, w in ((0, 1.0 - frac), (1, frac)):
        index = lower.astype(np.int64) + shift
        inside = (index >= 0) & (index < n)
        k, y = np.nonzero(inside)
        weights[k, y, index[inside]] = w[inside]
    return weights


def _positions(rng: np.random.Generator, spec: EventDigitsSpec) -> tuple[np.ndarray, np.ndarray]:
    """The idle schedule ``[segments]`` and the digit's top-left corner per frame ``[K, 2]``."""
    idle = np.zeros(spec.segments, bool)
    num_idle = int(rng.integers(spec.min_idle, spec.max_idle + 1))
    idle[rng.choice(spec.segments, num_idle, replace=False)] = True
    room = spec.sensor - 8 * spec.scale
    corners = [rng.uniform(0.0, room, size=2)]
    for still in idle:
        if still:
            corners.append(corners[-1])
            continue
        while True:  # a saccade: a new place at least min_jump away
            target = rng.uniform(0.0, room, size=2)
            if np.hypot(*(target - corners[-1])) >= spec.min_jump:
                break
        corners.append(target)
    corners = np.asarray(corners)
    f = spec.frames_per_segment
    alpha = np.arange(f) / f  # frame j of a segment lies alpha_j of the way
    path = corners[:-1, None] + alpha[None, :, None] * (corners[1:] - corners[:-1])[:, None]
    return idle, np.concatenate([path.reshape(-1, 2), corners[-1:]])


def render(image: np.ndarray, corners: np.ndarray, spec: EventDigitsSpec) -> np.ndarray:
    """Intensity frames ``[K, S, S]``: ``background + digit`` with its top-left at ``corners``.

    Args:
      image: one digit ``[8, 8]`` in [0, 1].
      corners: ``[K, 2]`` (row, column) of the digit's top-left corner, in sensor pixels.
      spec: the generator's constants (sensor side, scale, background).

    Example:
      >>> frames = render(np.ones((8, 8)), np.array([[5.0, 5.0]]), EVENT_DIGITS)
      >>> frames.shape, float(frames[0, 0, 0]), float(frames[0, 17, 17])
      ((1, 34, 34), 0.25, 1.25)
    """
    rows = _interpolation_weights(corners[:, 0], spec.scale, spec.sensor, image.shape[0])
    cols = _interpolation_weights(corners[:, 1], spec.scale, spec.sensor, image.shape[1])
    return spec.background + (rows @ image) @ cols.transpose(0, 2, 1)


def generate(index: int, spec: EventDigitsSpec = EVENT_DIGITS) -> Recording:
    """The recording of digit ``index`` (scikit-learn's order): a pure function of the two.

    Example:
      >>> rec = generate(0)
      >>> rec.label, int(rec.idle.sum()) in (2, 3, 4), bool(np.all(np.diff(rec.events["t"]) >= 0))
      (0, True, True)
    """
    images, labels, _ = _digits()
    if not 0 <= index < len(labels):
        raise ValueError(f"index must be in [0, {len(labels)}), got {index}")
    rng = np.random.default_rng((spec.seed, int(index)))
    idle, corners = _positions(rng, spec)
    times = np.arange(spec.num_frames, dtype=np.int64) * spec.frame_interval
    signal = emulate_events(
        render(images[index], corners, spec),
        times,
        contrast_on=spec.contrast,
        contrast_off=spec.contrast,
        refractory=spec.refractory,
    )
    start, end = spec.time_window
    sensor = (spec.sensor, spec.sensor)
    noise = background_events(
        rng, sensor_size=sensor, t_start=start, t_end=end, rate=spec.noise_rate
    )
    if spec.idle_noise_rate > 0:
        length = spec.frames_per_segment * spec.frame_interval
        bursts = [
            background_events(
                rng,
                sensor_size=sensor,
                t_start=start + s * length,
                t_end=start + (s + 1) * length,
                rate=spec.idle_noise_rate,
            )
            for s in np.flatnonzero(idle)
        ]
        noise = merge_events(noise, *bursts)
    return Recording(merge_events(signal, noise), noise, idle, int(labels[index]))


class EventDigits:
    """One split as a tonic-like data set: ``ds[i] -> (events, label)``, generated on access.

    Attributes:
      split: ``"train"`` (1437 recordings) or ``"test"`` (360).
      spec: the generator's constants.
      indices: each recording's digit index in scikit-learn's order.
      targets: labels, int32.

    Example:
      >>> ds = EventDigits("test")
      >>> events, label = ds[0]
      >>> len(ds), events.dtype.names, bool(label == ds.targets[0])
      (360, ('x', 'y', 'p', 't'), True)
    """

    def __init__(self, split: str, spec: EventDigitsSpec = EVENT_DIGITS):
        _, labels, splits = _digits()
        if split not in splits:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.spec = spec
        self.indices = splits[split]
        self.targets = labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        rec = self.recording(i)
        return rec.events, rec.label

    def recording(self, i: int) -> Recording:
        """The full :class:`Recording` of example ``i`` of the split."""
        return generate(int(self.indices[i]), self.spec)


class BinStatistics(NamedTuple):
    """Per example and time bin, in the order of the split (the eval order).

    Attributes:
      signal: int64 ``[N, T]``, events of the moving digit.
      noise: int64 ``[N, T]``, background-noise events.
      idle: float ``[N, T]``, the fraction of the bin's time in idle segments
        (1.0: the digit stands still for the whole bin).
      labels: int32 ``[N]``.
    """

    signal: np.ndarray
    noise: np.ndarray
    idle: np.ndarray
    labels: np.ndarray

    @property
    def noise_fraction(self) -> np.ndarray:
        """``noise / (signal + noise)`` per bin; 1.0 where a bin has no signal event."""
        total = self.signal + self.noise
        return np.where(total > 0, self.noise / np.maximum(total, 1), 1.0)


def bin_statistics(
    split: str,
    time_steps: int,
    spec: EventDigitsSpec = EVENT_DIGITS,
    limit: int | None = None,
) -> BinStatistics:
    """Signal and noise events per time bin of each recording, and the idle schedule.

    The bins are those of the frame cache: ``T`` equal bins over
    :attr:`EventDigitsSpec.time_window`. Generates the recordings again
    (about 6 ms each).

    Args:
      split: ``"train"`` or ``"test"``.
      time_steps: ``T`` bins.
      spec: the generator's constants.
      limit: only the first ``limit`` recordings of the split (None: all).

    Example:
      >>> stats = bin_statistics("test", time_steps=8, limit=20)
      >>> stats.signal.shape, bool(np.all(stats.signal[stats.idle == 1.0] == 0))
      ((20, 8), True)
      >>> bool(np.all(stats.noise_fraction[stats.idle == 1.0] == 1.0))
      True
    """
    from snn_jax.data.events import events_to_frames

    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    ds = EventDigits(split, spec)
    n = len(ds) if limit is None else min(int(limit), len(ds))
    sensor = (spec.sensor, spec.sensor)
    signal = np.zeros((n, time_steps), np.int64)
    noise = np.zeros((n, time_steps), np.int64)
    idle = np.zeros((n, time_steps))
    start, end = spec.time_window
    edges = start + (end - start) * np.arange(time_steps + 1) / time_steps
    seg_edges = start + (end - start) * np.arange(spec.segments + 1) / spec.segments
    for i in range(n):
        rec = ds.recording(i)
        kw = dict(time_steps=time_steps, sensor_size=sensor, t_range=spec.time_window)
        total = events_to_frames(rec.events, **kw).sum(axis=(1, 2, 3))
        noise[i] = events_to_frames(rec.noise, **kw).sum(axis=(1, 2, 3))
        signal[i] = total - noise[i]
        for s in np.flatnonzero(rec.idle):  # overlap of each bin with idle segment s
            lo = np.maximum(edges[:-1], seg_edges[s])
            hi = np.minimum(edges[1:], seg_edges[s + 1])
            idle[i] += np.maximum(hi - lo, 0.0)
    idle /= (end - start) / time_steps
    return BinStatistics(signal, noise, idle, ds.targets[:n].copy())
