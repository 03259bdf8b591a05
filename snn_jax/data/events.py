"""Event-camera data sets (DVS128 Gesture, CIFAR10-DVS, event_digits) as cached time-major frames.

Each recording (a structured array with fields ``x, y, t, p``, as tonic gives
it, or as :mod:`snn_jax.data.emulator` makes it for the offline
``event_digits``) is binned into ``T`` frames of equal duration with two polarity channels and
spatially pooled to ``image_size`` by :func:`events_to_frames`. The frames of a
split are computed once and cached as ``.npy`` (uint16 counts, read
memory-mapped) under ``<cache_dir>/<name>/v1_T<T>_S<image_size>/``; later runs,
and machines that only have the cache, need neither tonic nor the raw files.

tonic is optional (``pip install 'snn-jax[dvs]'``) and imported only to build a
cache. We bin events ourselves rather than with ``tonic.transforms.ToFrame``:
its ``n_time_bins`` slicing drops the events after the last whole bin, while
:func:`events_to_frames` keeps every event.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import logging
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from snn_jax.data import augment
from snn_jax.data.event_digits import EVENT_DIGITS, EventDigits
from snn_jax.data.pipeline import DatasetNotFoundError
from snn_jax.data.sources import ArraySource, DatasetParts

__all__ = ["EVENT_DATASETS", "EventTransform", "event_parts", "events_to_frames", "frame_shape"]

log = logging.getLogger(__name__)

_CACHE_VERSION = "v1"  # bump when the frame format changes
_MAX_COUNT = np.iinfo(np.uint16).max


@dataclasses.dataclass(frozen=True)
class _TonicFiles:
    tonic_class: str
    folder: str  # tonic's folder: <data_dir>/<folder>
    archives: dict[str, str]  # split -> archive tonic expects next to the extracted files
    subdirs: dict[str, str]  # split -> folder holding the extracted files
    extension: str
    min_files: int  # tonic's own "extracted" test


@dataclasses.dataclass(frozen=True)
class _Spec:
    num_classes: int
    sensor_size: tuple[int, int]  # (width, height), tonic's order
    flip: bool  # is a left-right flip label-preserving?
    tonic: _TonicFiles | None  # None: generated here (event_digits), nothing to download
    time_window: tuple[int, int] | None = None  # every recording's [start, end); None: its span


EVENT_DATASETS: dict[str, _Spec] = {
    # Hand gestures: left and right are different classes, so no flip.
    "dvs_gesture": _Spec(
        11,
        (128, 128),
        False,
        _TonicFiles(
            "DVSGesture",
            "DVSGesture",
            {"train": "ibmGestureTrain.tar.gz", "test": "ibmGestureTest.tar.gz"},
            {"train": "ibmGestureTrain", "test": "ibmGestureTest"},
            ".npy",
            100,
        ),
    ),
    # One recording set; the train/test split (9:1 per class) is ours, fixed.
    "cifar10_dvs": _Spec(
        10,
        (128, 128),
        True,
        _TonicFiles(
            "CIFAR10DVS",
            "CIFAR10DVS",
            {"train": "CIFAR10DVS.zip", "test": "CIFAR10DVS.zip"},
            {"train": "", "test": ""},
            ".aedat4",
            1000,
        ),
    ),
    # Emulated offline from scikit-learn's digits (snn_jax.data.event_digits); digits are
    # not mirror-symmetric, so no flip.
    "event_digits": _Spec(
        10,
        (EVENT_DIGITS.sensor, EVENT_DIGITS.sensor),
        False,
        None,
        EVENT_DIGITS.time_window,
    ),
}
_CIFAR10_DVS_TRAIN_FRACTION = 0.9


def events_to_frames(
    events: np.ndarray,
    *,
    time_steps: int,
    sensor_size: tuple[int, int] = (128, 128),
    image_size: int | None = None,
    t_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Counts events per time bin, pixel and polarity.

    Bin ``k`` holds the events with ``k = floor((t - t_start) * T / (t_end - t_start))``,
    with ``[t_start, t_end) = t_range`` or, by default, ``[t_min, t_max + 1)``
    of the events, so all bins span the same time and every event lands in
    exactly one. Pixel
    ``(y, x)`` maps to ``(y * S // height, x * S // width)``: pooling by summation,
    exact for any ``S``, so ``frames.sum() == len(events)`` always.

    Args:
      events: structured array with fields ``x``, ``y``, ``t``, ``p`` (any
        order and integer types; ``p`` bool or int, > 0 meaning ON).
      time_steps: ``T``, the number of frames.
      sensor_size: ``(width, height)`` of the sensor.
      image_size: output side ``S``, from 1 to the sensor's smaller side
        (else ``ValueError``: pooling cannot enlarge); None: keep the sensor
        size, and the frames are ``[T, height, width, 2]``.
      t_range: ``[t_start, t_end)`` of the recording, for bins at fixed times
        whatever the first and last event (``ValueError`` if an event lies
        outside); None: the events' own span.

    Returns:
      int64 counts ``[T, S, S, 2]``, channel 0 OFF and 1 ON events.

    Example:
      >>> import numpy as np
      >>> ev = np.zeros(3, dtype=[("x", "i2"), ("y", "i2"), ("p", "?"), ("t", "i8")])
      >>> ev["x"], ev["t"], ev["p"] = [0, 5, 127], [0, 10, 99], [True, False, True]
      >>> f = events_to_frames(ev, time_steps=2, image_size=64)
      >>> f.shape, int(f.sum()), int(f[1, 0, 63, 1])
      ((2, 64, 64, 2), 3, 1)
    """
    width, height = sensor_size
    _check_image_size(image_size, sensor_size)
    out_h, out_w = (height, width) if image_size is None else (image_size, image_size)
    frames = np.zeros((time_steps, out_h, out_w, 2), np.int64)
    if t_range is not None and not t_range[0] < t_range[1]:
        raise ValueError(f"t_range must be [t_start, t_end) with t_start < t_end, got {t_range}")
    if len(events) == 0:
        return frames
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height:
        raise ValueError(
            f"event coordinates out of the {width}x{height} sensor: x in [{x.min()}, {x.max()}], "
            f"y in [{y.min()}, {y.max()}]; pass the data set's sensor_size"
        )
    t = events["t"].astype(np.int64)
    t0, t1 = (t.min(), t.max() + 1) if t_range is None else (int(t_range[0]), int(t_range[1]))
    if t.min() < t0 or t.max() >= t1:
        raise ValueError(
            f"event times in [{t.min()}, {t.max()}] lie outside t_range = [{t0}, {t1})"
        )
    span = t1 - t0
    b = (t - t0) * time_steps // span
    p = (events["p"].astype(np.int64) > 0).astype(np.int64)
    flat = ((b * out_h + y * out_h // height) * out_w + x * out_w // width) * 2 + p
    return np.bincount(flat, minlength=frames.size).reshape(frames.shape)


@dataclasses.dataclass(frozen=True)
class EventTransform:
    """Cached counts ``[n, T, S, S, 2]`` -> float32, with optional augmentation.

    With generators (training) and ``augment``: a random shift of up to
    ``max_shift`` pixels per axis (zero fill), then a left-right flip with
    probability 1/2 if ``flip``; the same for all T frames of an example.
    """

    augment: bool = False
    flip: bool = False
    max_shift: int = 0

    @property
    def augments(self) -> bool:
        return self.augment and (self.flip or self.max_shift > 0)

    def __call__(
        self, frames: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> np.ndarray:
        out = frames.astype(np.float32)
        if rngs is None or not self.augments:
            return out
        for k, rng in enumerate(rngs):
            dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
            out[k] = augment.translate(out[k], int(dy), int(dx))
            if self.flip and rng.integers(2):
                out[k] = out[k][:, :, ::-1]
        return out


def _import_tonic():
    try:
        import tonic
    except ImportError as e:
        raise ImportError(
            "building the DVS frame cache needs tonic: pip install 'snn-jax[dvs]'"
        ) from e
    return tonic


def _download_hint(name: str, data_dir: str) -> str:
    files = EVENT_DATASETS[name].tonic
    if name == "dvs_gesture":
        call = (
            f"tonic.datasets.DVSGesture(save_to={data_dir!r}, train=True); "
            f"tonic.datasets.DVSGesture(save_to={data_dir!r}, train=False)"
        )
    else:
        call = f"tonic.datasets.CIFAR10DVS(save_to={data_dir!r})"
    return (
        "Download it once on a machine with internet access (tonic fetches and extracts it):\n"
        "  pip install 'snn-jax[dvs]'\n"
        f'  python -c "import tonic; {call}"\n'
        f"then copy {os.path.join(data_dir, files.folder)} to the data_dir of this machine "
        "(config.data.data_dir), or copy a frame cache built elsewhere."
    )


def check_downloaded(name: str, data_dir: str, split: str) -> None:
    """Raises unless tonic's files for ``split`` are in ``data_dir`` (tonic 1.7 layout).

    tonic itself would start a download when they are missing; this checks the
    same things tonic checks (the archive and enough extracted files), offline.

    Raises:
      DatasetNotFoundError: with the command that downloads the data set.
    """
    files = EVENT_DATASETS[name].tonic
    root = os.path.join(data_dir, files.folder)
    archive = os.path.join(root, files.archives[split])
    pattern = os.path.join(root, files.subdirs[split], "**", f"*{files.extension}")
    found = sum(1 for _ in itertools.islice(glob.iglob(pattern, recursive=True), files.min_files))
    if os.path.isfile(archive) and found >= files.min_files:
        return
    raise DatasetNotFoundError(
        f"{name} ({split} split) is not in data_dir={data_dir!r}: expected the archive "
        f"{archive} ({'present' if os.path.isfile(archive) else 'missing'}) and at least "
        f"{files.min_files} extracted {files.extension} files under "
        f"{os.path.join(root, files.subdirs[split])} (found {found}).\n"
        + _download_hint(name, data_dir)
    )


def _open_tonic_dataset(name: str, data_dir: str, split: str) -> Any:
    """The tonic dataset object holding ``split`` (no transform: we bin ourselves)."""
    check_downloaded(name, data_dir, split)
    tonic = _import_tonic()
    cls = getattr(tonic.datasets, EVENT_DATASETS[name].tonic.tonic_class)
    if name == "dvs_gesture":
        return cls(save_to=data_dir, train=split == "train")
    return cls(save_to=data_dir)


def cifar10_dvs_split(paths: Sequence[str], targets: Sequence[int]) -> dict[str, np.ndarray]:
    """The fixed CIFAR10-DVS split: per class, the first 90 % of recordings by path are train.

    Args:
      paths: file of each recording (tonic's ``dataset.data``).
      targets: class of each recording.

    Returns:
      ``{"train": indices, "test": indices}``, int64, each sorted by (class, path).
    """
    targets = np.asarray(targets)
    order = sorted(range(len(paths)), key=lambda i: (int(targets[i]), str(paths[i])))
    train, test = [], []
    for c in np.unique(targets):
        members = [i for i in order if targets[i] == c]
        n_train = int(len(members) * _CIFAR10_DVS_TRAIN_FRACTION)
        train += members[:n_train]
        test += members[n_train:]
    return {"train": np.asarray(train, np.int64), "test": np.asarray(test, np.int64)}


def _write_cache(
    frames_path: str,
    labels_path: str,
    dataset: Any,
    indices: np.ndarray,
    spec: _Spec,
    time_steps: int,
    image_size: int,
    num_workers: int,
) -> None:
    """Bins ``dataset[indices]`` into a uint16 ``.npy``; each file appears atomically."""
    os.makedirs(os.path.dirname(frames_path), exist_ok=True)
    shape = (len(indices), time_steps, image_size, image_size, 2)
    suffix = f".tmp-{uuid.uuid4().hex[:12]}"  # unique across hosts sharing the directory
    tmp_frames = frames_path + suffix
    tmp_labels = labels_path + suffix
    frames = np.lib.format.open_memmap(tmp_frames, mode="w+", dtype=np.uint16, shape=shape)
    labels = np.zeros(len(indices), np.int32)

    def one(k: int) -> tuple[np.ndarray, int]:
        events, target = dataset[int(indices[k])]
        counts = events_to_frames(
            events,
            time_steps=time_steps,
            sensor_size=spec.sensor_size,
            image_size=image_size,
            t_range=spec.time_window,
        )
        return np.minimum(counts, _MAX_COUNT).astype(np.uint16), int(target)

    try:
        with ThreadPoolExecutor(max(1, num_workers)) as pool:
            for k, (counts, target) in enumerate(pool.map(one, range(len(indices)))):
                frames[k], labels[k] = counts, target
                if (k + 1) % 500 == 0:
                    log.info("binned %d / %d recordings", k + 1, len(indices))
        frames.flush()
        del frames
        with open(tmp_labels, "wb") as f:
            np.save(f, labels, allow_pickle=False)
        os.replace(tmp_labels, labels_path)
        os.replace(tmp_frames, frames_path)  # last: its presence marks a complete cache
    finally:
        for path in (tmp_frames, tmp_labels):
            if os.path.exists(path):
                os.remove(path)


def cache_paths(cache_dir: str, name: str, split: str, time_steps: int, image_size: int):
    """``(frames.npy, labels.npy)`` of one split's cache."""
    folder = os.path.join(cache_dir, name, f"{_CACHE_VERSION}_T{time_steps}_S{image_size}")
    return (
        os.path.join(folder, f"{split}_frames.npy"),
        os.path.join(folder, f"{split}_labels.npy"),
    )


def default_data_dir() -> str:
    """Where tonic data sets live by default: ``~/tonic_data``."""
    return os.path.expanduser("~/tonic_data")


def frame_shape(
    name: str, time_steps: int | None, image_size: int | None = None
) -> tuple[int, int, int, int]:
    """``[T, S, S, 2]`` of one example of ``name`` as :func:`event_parts` yields it.

    ``S`` is ``image_size`` (None: the sensor's side).

    >>> frame_shape("dvs_gesture", 40, 32), frame_shape("cifar10_dvs", 10)
    ((40, 32, 32, 2), (10, 128, 128, 2))
    """
    spec = EVENT_DATASETS[name]
    if time_steps is None or time_steps < 1:
        raise ValueError(f"{name} needs time_steps >= 1 frames, got {time_steps}")
    _check_image_size(image_size, spec.sensor_size)
    size = spec.sensor_size[0] if image_size is None else int(image_size)
    return (int(time_steps), size, size, 2)


def _check_image_size(image_size: int | None, sensor_size: tuple[int, int]) -> None:
    """Raises ``ValueError`` unless ``image_size`` is None or in [1, the sensor's smaller side]."""
    if image_size is not None and not 1 <= image_size <= min(sensor_size):
        raise ValueError(
            f"image_size must be from 1 to {min(sensor_size)} (frames are sum-pooled from the "
            f"{sensor_size[0]}x{sensor_size[1]} sensor, never enlarged), got {image_size}"
        )


def event_parts(
    name: str,
    *,
    time_steps: int,
    image_size: int | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    augment: bool = False,
    num_workers: int | None = None,
) -> DatasetParts:
    """Sources for ``create_pipeline``: cached frames, built on first use.

    The cache is built from tonic's files, or for ``event_digits`` from
    recordings generated on the spot (:mod:`snn_jax.data.event_digits`;
    seconds, nothing to download).

    Args:
      name: a key of :data:`EVENT_DATASETS`.
      time_steps: ``T`` frames per recording.
      image_size: output side ``S`` (None: the sensor's side, 128, or 34 for
        ``event_digits``).
      data_dir: where tonic keeps the raw data (None: ``~/tonic_data``).
      cache_dir: frame cache root (None: ``<data_dir>/snn_jax_cache``).
      augment: in training, random shifts of up to ``S // 8`` pixels, plus
        left-right flips for CIFAR10-DVS (not for gestures or digits, whose
        classes change under a mirror).
      num_workers: threads that bin recordings while the cache is built.

    Returns:
      Examples float32 event counts ``[T, S, S, 2]`` (the pipeline yields them
      time-major ``[T, B, S, S, 2]``).

    Raises:
      DatasetNotFoundError: if neither the cache nor the raw data is there.
      ImportError: if the cache must be built and tonic is missing.
    """
    spec = EVENT_DATASETS[name]
    shape = frame_shape(name, time_steps, image_size)
    size = shape[1]
    data_dir = default_data_dir() if data_dir is None else os.path.expanduser(data_dir)
    cache_dir = os.path.join(data_dir, "snn_jax_cache") if cache_dir is None else cache_dir
    workers = num_workers or min(8, os.cpu_count() or 1)
    sources = {}
    shared: dict[str, Any] = {}  # CIFAR10-DVS: one tonic object for both splits
    # a generated set's folder names its generator, so a changed generator never reads old frames
    cache_name = name if spec.tonic is not None else f"{name}-{EVENT_DIGITS.fingerprint()}"
    for split in ("train", "test"):
        frames_path, labels_path = cache_paths(cache_dir, cache_name, split, time_steps, size)
        if not (os.path.exists(frames_path) and os.path.exists(labels_path)):
            if spec.tonic is None:
                dataset = EventDigits(split)
                indices = np.arange(len(dataset))
            elif name == "cifar10_dvs":
                if "ds" not in shared:
                    shared["ds"] = _open_tonic_dataset(name, data_dir, split)
                    shared["split"] = cifar10_dvs_split(shared["ds"].data, shared["ds"].targets)
                dataset, indices = shared["ds"], shared["split"][split]
            else:
                dataset = _open_tonic_dataset(name, data_dir, split)
                indices = np.arange(len(dataset))
            log.info("building the %s %s frame cache in %s", name, split, frames_path)
            _write_cache(
                frames_path, labels_path, dataset, indices, spec, time_steps, size, workers
            )
        frames = np.load(frames_path, mmap_mode="r")
        labels = np.load(labels_path)
        if frames.shape[1:] != shape or len(frames) != len(labels):
            raise ValueError(
                f"corrupt cache {frames_path}: frames {frames.shape}, labels {labels.shape}, "
                f"expected [N, {time_steps}, {size}, {size}, 2] and [N]; delete it to rebuild"
            )
        tf = EventTransform(
            augment=augment and split == "train", flip=spec.flip, max_shift=size // 8
        )
        sources[split] = ArraySource(frames, labels, tf, augments=tf.augments)
    return DatasetParts(spec.num_classes, shape, True, sources["train"], sources["test"])
