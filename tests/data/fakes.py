"""Stand-ins for downloaded data sets, shared by the data and config tests.

- tfds: :func:`fake_prepared` lays out the empty ArrayRecord files our
  "is it prepared?" check looks for; ``tfds.testing.mock_data`` then serves
  random records.
- tonic: a fake ``tonic`` module (:func:`install_fake_tonic`) whose data sets
  return synthetic recordings in tonic's own formats, and
  :func:`lay_out_tonic_files`, the files tonic checks before it would
  download. The real availability check and frame cache code then run.
"""

import sys
import types

import numpy as np

from snn_jax.data.events import EVENT_DATASETS
from snn_jax.data.tfds_images import TFDS_DATASETS


def fake_prepared(data_dir, name, file_format="array_record"):
    """Empty files where a prepared tfds data set ``name`` has its train and test splits."""
    import tensorflow_datasets as tfds

    version = str(tfds.builder_cls(name).VERSION)
    folder = data_dir / name / version
    folder.mkdir(parents=True)
    for split in ("train", TFDS_DATASETS[name].test_split):
        (folder / f"{name}-{split}.{file_format}-00000-of-00001").touch()
    return str(data_dir)


# tonic 1.7's dtypes (test_data_events.py checks them against tonic when it is installed).
GESTURE_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
CIFAR_DVS_DTYPE = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])


def synthetic_events(seed, dtype, n=None):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 300)) if n is None else n
    ev = np.zeros(n, dtype)
    ev["x"] = rng.integers(0, 128, n)
    ev["y"] = rng.integers(0, 128, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    ev["t"] = np.sort(rng.integers(1_000, 1_000_000, n))
    return ev


class FakeDataset:
    """Mimics a tonic dataset: ``data`` (paths), ``targets`` and ``ds[i] -> (events, target)``."""

    calls = 0

    def __getitem__(self, i):
        type(self).calls += 1
        return synthetic_events(self.seeds[i], self.dtype), self.targets[i]

    def __len__(self):
        return len(self.targets)


class FakeDVSGesture(FakeDataset):
    dtype = GESTURE_DTYPE
    sensor_size = (128, 128, 2)

    def __init__(self, save_to, train=True):
        n = 24 if train else 11
        self.targets = [i % 11 for i in range(n)]
        self.seeds = [i + (0 if train else 10_000) for i in range(n)]
        self.data = [f"{save_to}/user{i}.npy" for i in range(n)]


class FakeCIFAR10DVS(FakeDataset):
    dtype = CIFAR_DVS_DTYPE
    sensor_size = (128, 128, 2)

    def __init__(self, save_to):
        pairs = [(c, j) for c in range(10) for j in range(10)]
        order = np.random.default_rng(0).permutation(len(pairs))  # os.walk order is arbitrary
        pairs = [pairs[k] for k in order]
        self.targets = [c for c, _ in pairs]
        self.seeds = [100 * c + j for c, j in pairs]
        self.data = [f"{save_to}/CIFAR10DVS/class{c}/cifar10_{j:04d}.aedat4" for c, j in pairs]


def install_fake_tonic(monkeypatch):
    """Puts a fake ``tonic`` module with the two fake data sets in ``sys.modules``."""
    module = types.ModuleType("tonic")
    module.datasets = types.SimpleNamespace(DVSGesture=FakeDVSGesture, CIFAR10DVS=FakeCIFAR10DVS)
    monkeypatch.setitem(sys.modules, "tonic", module)
    FakeDataset.calls = 0
    return module


def lay_out_tonic_files(data_dir, name):
    """The files tonic 1.7 checks before it would download (empty: we never read them)."""
    files = EVENT_DATASETS[name].tonic
    root = data_dir / files.folder
    for split in ("train", "test"):
        folder = root / files.subdirs[split] / "sub"
        folder.mkdir(parents=True, exist_ok=True)
        (root / files.archives[split]).touch()
        for i in range(files.min_files):
            (folder / f"{i}{files.extension}").touch()
    return str(data_dir)
