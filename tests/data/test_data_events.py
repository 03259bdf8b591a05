"""DVS event streams with synthetic recordings in tonic's own formats (no download, no tonic).

A fake ``tonic`` module stands in for the real one (``tests/data/fakes.py``);
the files tonic checks for are laid out empty, so the real availability check
and cache path run.
"""

import os
import sys
import time

import numpy as np
import pytest

from snn_jax.data import DatasetNotFoundError, create_pipeline, describe, events_to_frames
from snn_jax.data.events import cache_paths, cifar10_dvs_split, frame_shape
from tests.data.fakes import (
    CIFAR_DVS_DTYPE,
    GESTURE_DTYPE,
    FakeCIFAR10DVS,
    FakeDataset,
    FakeDVSGesture,
    install_fake_tonic,
    lay_out_tonic_files,
    synthetic_events,
)

T = 5  # frames; batches use B = 4 so that T != B


@pytest.fixture
def fake_tonic(monkeypatch):
    return install_fake_tonic(monkeypatch)


def make(name, data_dir, image_size=None, **kw):
    return create_pipeline(
        {"name": name, "data_dir": data_dir, "time_steps": T, "image_size": image_size, **kw},
        global_batch_size=4,
        eval_batch_size=4,
        seed=0,
    )


def test_tonic_formats_match_ours():
    tonic = pytest.importorskip("tonic")
    assert tonic.datasets.DVSGesture.dtype == GESTURE_DTYPE
    assert tonic.datasets.CIFAR10DVS.dtype == CIFAR_DVS_DTYPE
    assert tonic.datasets.DVSGesture.sensor_size == (128, 128, 2)
    assert tonic.datasets.CIFAR10DVS.sensor_size == (128, 128, 2)


@pytest.mark.parametrize("dtype", [GESTURE_DTYPE, CIFAR_DVS_DTYPE])
@pytest.mark.parametrize("image_size", [None, 48, 64])
def test_binning_keeps_every_event(dtype, image_size):
    ev = synthetic_events(3, dtype, n=500)
    frames = events_to_frames(ev, time_steps=T, image_size=image_size)
    side = 128 if image_size is None else image_size
    assert frames.shape == (T, side, side, 2)
    assert frames.sum() == len(ev)
    assert frames[..., 1].sum() == ev["p"].sum()
    # first event in the first frame, last in the last (ToFrame(n_time_bins) drops the tail)
    first, last = ev[0], ev[-1]
    s = side / 128
    assert frames[0, int(first["y"] * s), int(first["x"] * s), int(first["p"])] >= 1
    assert frames[-1, int(last["y"] * s), int(last["x"] * s), int(last["p"])] >= 1
    per_frame = frames.sum(axis=(1, 2, 3))
    t = ev["t"].astype(np.int64)
    edges = t[0] + (t[-1] - t[0] + 1) * np.arange(T + 1) / T
    np.testing.assert_array_equal(per_frame, np.histogram(t, edges)[0])


def test_binning_rejects_coordinates_off_the_sensor():
    ev = synthetic_events(0, GESTURE_DTYPE, n=10)
    ev["x"][0] = 128
    with pytest.raises(ValueError, match="sensor"):
        events_to_frames(ev, time_steps=2)


@pytest.mark.parametrize("image_size", [0, -3, 129, 256])
def test_image_size_outside_the_sensor_is_rejected(image_size):
    """Sum pooling only shrinks: 256 would leave every other row and column empty."""
    ev = synthetic_events(0, GESTURE_DTYPE, n=10)
    with pytest.raises(ValueError, match="image_size must be from 1 to 128"):
        events_to_frames(ev, time_steps=2, image_size=image_size)
    with pytest.raises(ValueError, match="image_size must be from 1 to 128"):
        frame_shape("dvs_gesture", 2, image_size)


def test_gesture_frames_layout_counts_and_cache(tmp_path, fake_tonic):
    data_dir = lay_out_tonic_files(tmp_path, "dvs_gesture")
    p = make("dvs_gesture", data_dir)
    assert (p.num_classes, p.example_shape, p.time_major) == (11, (T, 128, 128, 2), True)
    assert (p.train_size, p.test_size) == (24, 11)
    batch = p.train_batch(0)
    assert batch["image"].shape == (T, 4, 128, 128, 2)
    assert batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    test = FakeDVSGesture(data_dir, train=False)
    ev = list(p.eval_batches())
    assert len(ev) == 3
    assert ev[-1]["image"].shape == (T, 4, 128, 128, 2)
    np.testing.assert_array_equal(ev[-1]["mask"], [True, True, True, False])
    k = 0
    for b in ev:
        for j in np.flatnonzero(b["mask"]):
            events, target = test[k]
            assert b["image"][:, j].sum() == len(events)  # time-major: example j is [:, j]
            np.testing.assert_array_equal(b["image"][:, j], events_to_frames(events, time_steps=T))
            assert b["label"][j] == target
            k += 1
    assert k == 11

    # The cache is there, complete and alone (no temporary files) ...
    for split in ("train", "test"):
        for path in cache_paths(
            os.path.join(data_dir, "snn_jax_cache"), "dvs_gesture", split, T, 128
        ):
            assert os.path.isfile(path)
    folder = os.path.dirname(path)
    assert sorted(os.listdir(folder)) == sorted(
        f"{s}_{kind}.npy" for s in ("train", "test") for kind in ("frames", "labels")
    )
    # ... and reused: no tonic, no raw files, no recording read.
    calls = FakeDataset.calls
    sys.modules["tonic"] = None
    for f in os.listdir(os.path.join(data_dir, "DVSGesture")):
        if f.endswith(".tar.gz"):
            os.remove(os.path.join(data_dir, "DVSGesture", f))
    q = make("dvs_gesture", data_dir)
    assert FakeDataset.calls == calls
    for a, b in zip(p.eval_batches(), q.eval_batches(), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_downsampled_frames_keep_counts(tmp_path, fake_tonic):
    data_dir = lay_out_tonic_files(tmp_path, "dvs_gesture")
    p = make("dvs_gesture", data_dir, image_size=32)
    assert p.example_shape == (T, 32, 32, 2)
    # describe() knows it without the data.
    described = describe({"name": "dvs_gesture", "time_steps": T, "image_size": 32})
    assert described == p.shape
    batch = next(p.eval_batches())
    assert batch["image"].shape == (T, 4, 32, 32, 2) == p.shape.batch_shape(4)
    test = FakeDVSGesture(data_dir, train=False)
    for j in range(4):
        assert batch["image"][:, j].sum() == len(test[j][0])


def test_cifar10_dvs_split_9_to_1_per_class(tmp_path, fake_tonic):
    data_dir = lay_out_tonic_files(tmp_path, "cifar10_dvs")
    p = make("cifar10_dvs", data_dir, image_size=16)
    assert (p.num_classes, p.train_size, p.test_size) == (10, 90, 10)
    fake = FakeCIFAR10DVS(data_dir)
    split = cifar10_dvs_split(fake.data, fake.targets)
    assert not set(split["train"]) & set(split["test"])
    assert sorted([*split["train"], *split["test"]]) == list(range(100))
    targets = np.asarray(fake.targets)
    np.testing.assert_array_equal(np.bincount(targets[split["train"]]), [9] * 10)
    np.testing.assert_array_equal(np.bincount(targets[split["test"]]), [1] * 10)
    # fixed: by path, whatever the listing order; the last recording of each class is test
    shuffled = np.random.default_rng(1).permutation(100)
    again = cifar10_dvs_split([fake.data[i] for i in shuffled], targets[shuffled])
    assert sorted(shuffled[again["test"]]) == sorted(split["test"])
    assert all(fake.data[i].endswith("0009.aedat4") for i in split["test"])
    labels = np.concatenate([b["label"][b["mask"]] for b in p.eval_batches()])
    np.testing.assert_array_equal(labels, np.arange(10))


def test_event_augmentation(tmp_path, fake_tonic):
    data_dir = lay_out_tonic_files(tmp_path, "cifar10_dvs")
    plain = make("cifar10_dvs", data_dir, image_size=32)
    aug = make("cifar10_dvs", data_dir, image_size=32, augment=True)
    a, b = plain.train_batch(1), aug.train_batch(1)
    np.testing.assert_array_equal(a["label"], b["label"])
    changed = [not np.array_equal(a["image"][:, j], b["image"][:, j]) for j in range(4)]
    assert any(changed)
    assert (b["image"].sum(axis=(0, 2, 3, 4)) <= a["image"].sum(axis=(0, 2, 3, 4))).all()
    np.testing.assert_array_equal(aug.train_batch(1)["image"], b["image"])
    resumed = next(make("cifar10_dvs", data_dir, image_size=32, augment=True).train_batches(1))
    np.testing.assert_array_equal(resumed["image"], b["image"])
    for x, y in zip(plain.eval_batches(), aug.eval_batches(), strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])


@pytest.mark.parametrize(
    ("name", "call"),
    [("dvs_gesture", "tonic.datasets.DVSGesture"), ("cifar10_dvs", "tonic.datasets.CIFAR10DVS")],
)
def test_missing_data_fails_fast_with_the_fix(tmp_path, name, call):
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as e:
        make(name, str(tmp_path))
    assert time.perf_counter() - start < 5
    message = str(e.value)
    for needle in (call, "snn-jax[dvs]", str(tmp_path)):
        assert needle in message


def test_missing_tonic_says_how_to_install(tmp_path, monkeypatch):
    data_dir = lay_out_tonic_files(tmp_path, "dvs_gesture")
    monkeypatch.setitem(sys.modules, "tonic", None)
    with pytest.raises(ImportError, match=r"pip install 'snn-jax\[dvs\]'"):
        make("dvs_gesture", data_dir)


def test_event_config_errors(tmp_path):
    with pytest.raises(ValueError, match="time_steps"):
        create_pipeline(
            {"name": "dvs_gesture", "data_dir": str(tmp_path), "time_steps": None},
            global_batch_size=4,
        )
    with pytest.raises(ValueError, match="cutout"):
        create_pipeline({"name": "dvs_gesture", "time_steps": 4, "cutout": 8}, global_batch_size=4)


def test_real_tonic_reads_a_synthetic_gesture_layout(tmp_path):
    """The real tonic DVSGesture class on files in its own on-disk format (x, y, p, t[ms])."""
    pytest.importorskip("tonic")
    import numpy.lib.recfunctions  # noqa: F401  (tonic uses np.lib.recfunctions)

    root = tmp_path / "DVSGesture"
    counts = {}
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        root.mkdir(exist_ok=True)
        (root / f"{folder}.tar.gz").touch()
        for user in range(10):
            d = root / folder / f"user{user:02d}_led"
            d.mkdir(parents=True)
            for label in range(11):
                ev = synthetic_events(user * 11 + label, GESTURE_DTYPE, n=20 + label)
                raw = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1)
                np.save(d / f"{label}.npy", raw.astype(np.int64))
                counts[(split, user, label)] = len(ev)
    p = make("dvs_gesture", str(tmp_path), image_size=16)
    assert (p.train_size, p.test_size) == (110, 110)
    ev = list(p.eval_batches())
    sums = np.concatenate([b["image"].sum(axis=(0, 2, 3, 4))[b["mask"]] for b in ev])
    labels = np.concatenate([b["label"][b["mask"]] for b in ev])
    assert sorted(sums.astype(int)) == sorted(v for k, v in counts.items() if k[0] == "test")
    np.testing.assert_array_equal(sums, 20 + labels)  # n = 20 + label events per recording
