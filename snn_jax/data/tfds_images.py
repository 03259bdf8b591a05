"""Static-image data sets from tensorflow-datasets, read without TensorFlow.

Records come from ``tfds.data_source`` (ArrayRecord files, random access,
decoded by tfds with PIL). MNIST, Fashion-MNIST and CIFAR are decoded once into
memory (about 150 MB for CIFAR); ImageNet is decoded per batch on a thread pool.
Before tfds is asked, the prepared files are looked for on disk, so a missing
data set fails in about a second with the command that prepares it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from snn_jax.data import augment
from snn_jax.data.pipeline import DatasetNotFoundError
from snn_jax.data.sources import ArraySource, DatasetParts, ImageTransform

__all__ = ["TFDS_DATASETS", "check_prepared", "tfds_example_shape", "tfds_parts"]


def _pixels(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(255.0 * v for v in values)


@dataclasses.dataclass(frozen=True)
class _Spec:
    num_classes: int
    image_shape: tuple[int, int, int] | None  # None: variable (ImageNet), set by image_size
    mean: tuple[float, ...]  # pixel units
    std: tuple[float, ...]
    test_split: str = "test"
    padding: int = 4  # random-crop padding (small images)
    flip: bool = True


TFDS_DATASETS: dict[str, _Spec] = {
    "cifar10": _Spec(
        10, (32, 32, 3), _pixels((0.4914, 0.4822, 0.4465)), _pixels((0.2470, 0.2435, 0.2616))
    ),
    "cifar100": _Spec(
        100, (32, 32, 3), _pixels((0.5071, 0.4865, 0.4409)), _pixels((0.2673, 0.2564, 0.2762))
    ),
    "mnist": _Spec(10, (28, 28, 1), _pixels((0.1307,)), _pixels((0.3081,)), padding=2, flip=False),
    "fashion_mnist": _Spec(10, (28, 28, 1), _pixels((0.2860,)), _pixels((0.3530,)), padding=2),
    "imagenet2012": _Spec(
        1000,
        None,
        _pixels((0.485, 0.456, 0.406)),
        _pixels((0.229, 0.224, 0.225)),
        test_split="validation",
    ),
}

_IMAGENET_MANUAL = (
    "ImageNet cannot be downloaded automatically: register at "
    "https://image-net.org/download-images, download ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar and put both in {data_dir}/downloads/manual/ before preparing."
)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "reading CIFAR/MNIST/ImageNet needs tensorflow-datasets: pip install 'snn-jax[data]'"
        ) from e
    return tfds


def default_data_dir() -> str:
    """tfds's default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def check_prepared(name: str, data_dir: str, splits: Sequence[str]) -> None:
    """Raises unless ``data_dir`` holds ``name`` prepared as ArrayRecord files for ``splits``.

    Looks for ``<data_dir>/<name>/<version>/<name>-<split>.array_record*`` with
    the version this tfds release reads; touches no network.

    Raises:
      DatasetNotFoundError: with the command that prepares the data set.
    """
    tfds = _import_tfds()
    version = str(tfds.builder_cls(name).VERSION)
    version_dir = os.path.join(data_dir, name, version)
    missing = [
        s for s in splits if not glob.glob(os.path.join(version_dir, f"{name}-{s}.array_record*"))
    ]
    if not missing:
        return
    if glob.glob(os.path.join(version_dir, f"{name}-*.tfrecord*")):
        found = (
            f"{version_dir} holds TFRecord files, which tfds.data_source cannot read "
            "(random access needs the ArrayRecord format); prepare it again as below"
        )
    elif os.path.isdir(os.path.join(data_dir, name)):
        others = sorted(os.listdir(os.path.join(data_dir, name)))
        found = (
            f"{os.path.join(data_dir, name)} holds {others}, but this tensorflow-datasets "
            f"reads version {version} with ArrayRecord files for splits {missing}"
        )
    else:
        found = f"no {os.path.join(data_dir, name)} directory"
    manual = "\n" + _IMAGENET_MANUAL.format(data_dir=data_dir) if name == "imagenet2012" else ""
    raise DatasetNotFoundError(
        f"tfds data set {name!r} (version {version}, splits {list(splits)}) is not prepared in "
        f"data_dir={data_dir!r}: {found}.{manual}\n"
        "Prepare it once on a machine with internet access and TensorFlow:\n"
        "  pip install 'snn-jax[tf]'\n"
        f'  python -c "import tensorflow_datasets as tfds; tfds.builder({name!r}, '
        f"data_dir={data_dir!r}, file_format='array_record').download_and_prepare()\"\n"
        f"then copy {os.path.join(data_dir, name)} to the data_dir of this machine "
        "(config.data.data_dir)."
    )


def _open(name: str, split: str, data_dir: str):
    tfds = _import_tfds()
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def _read_all(ds, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a whole split: images uint8 ``[N, *shape]``, labels int32 ``[N]``."""
    n = len(ds)
    images = np.empty((n, *shape), np.uint8)
    labels = np.empty(n, np.int32)
    for i in range(n):  # ds[i], not __getitems__: tfds's mock_data breaks the latter
        record = ds[i]
        images[i] = np.asarray(record["image"]).reshape(shape)
        labels[i] = int(record["label"])
    return images, labels


@dataclasses.dataclass(frozen=True, eq=False)
class LazySource:
    """Decodes records on demand: ``example_fn(image uint8 [H, W, C], rng | None)`` per record.

    Records are read, decoded and transformed on ``executor`` threads (PIL
    releases the GIL); the result does not depend on thread scheduling.
    """

    ds: Any
    example_fn: Callable[[np.ndarray, np.random.Generator | None], np.ndarray]
    augments: bool
    executor: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.ds)

    def load(
        self, indices: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        def one(k: int):
            record = self.ds[int(indices[k])]
            image = np.asarray(record["image"], np.uint8)
            return self.example_fn(image, None if rngs is None else rngs[k]), int(record["label"])

        pool = self.executor.map if self.executor is not None else map
        images, labels = zip(*pool(one, range(len(indices))), strict=True)
        return np.stack(images).astype(np.float32), np.asarray(labels, np.int32)


def _imagenet_fn(spec: _Spec, image_size: int, train: bool, cutout: int):
    mean, std = np.asarray(spec.mean), np.asarray(spec.std)
    resize = round(image_size * 256 / 224)

    def example(image: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        if rng is not None and train:
            image = augment.random_resized_crop(image, rng, image_size)
            if rng.integers(2):
                image = image[:, ::-1]
        else:
            image = augment.centre_crop(augment.resize_shorter_side(image, resize), image_size)
        out = augment.normalize(image, mean, std)
        if rng is not None and cutout > 0:
            out = augment.cutout(out, rng, cutout)
        return out

    return example


def tfds_example_shape(name: str, image_size: int | None = None) -> tuple[int, int, int]:
    """``[H, W, C]`` of one example of ``name`` as :func:`tfds_parts` yields it.

    ImageNet: ``image_size`` (None: 224) square crops; the other data sets have
    one size, and ``image_size`` must be None or that size.

    >>> tfds_example_shape("cifar10"), tfds_example_shape("imagenet2012", 128)
    ((32, 32, 3), (128, 128, 3))
    """
    spec = TFDS_DATASETS[name]
    if spec.image_shape is None:
        size = 224 if image_size is None else int(image_size)
        return (size, size, 3)
    if image_size is not None and image_size != spec.image_shape[0]:
        raise ValueError(
            f"{name} images are {spec.image_shape[0]}x{spec.image_shape[1]}; image_size must be "
            f"None or {spec.image_shape[0]}, got {image_size}"
        )
    return spec.image_shape


def tfds_parts(
    name: str,
    *,
    data_dir: str | None = None,
    augment: bool = False,
    cutout: int = 0,
    image_size: int | None = None,
    num_workers: int | None = None,
) -> DatasetParts:
    """Sources for ``create_pipeline`` from a prepared tfds data set.

    Args:
      name: a key of :data:`TFDS_DATASETS`.
      data_dir: tfds data directory (None: ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      augment: training augmentation: random crop after zero padding (4 pixels
        for CIFAR, 2 for MNIST) and flip (not for MNIST); for ImageNet
        random-resized-crop and flip.
      cutout: side of the cutout square in training (0: off).
      image_size: ImageNet output side (None: 224); must be None or the native
        size for the other data sets.
      num_workers: decoding threads for ImageNet (None: ``min(16, cpu_count)``).

    Returns:
      Normalised float32 images ``[N, H, W, C]`` with the standard per-channel
      mean and std; eval examples are never augmented (ImageNet: shorter side
      resized to ``256/224 * image_size``, then the centre crop).

    Raises:
      DatasetNotFoundError: if the data set is not prepared in ``data_dir``.
    """
    spec = TFDS_DATASETS[name]
    shape = tfds_example_shape(name, image_size)
    data_dir = default_data_dir() if data_dir is None else os.path.expanduser(data_dir)
    splits = ("train", spec.test_split)
    check_prepared(name, data_dir, splits)
    train_ds, test_ds = (_open(name, s, data_dir) for s in splits)

    if spec.image_shape is None:  # ImageNet: decode per batch
        size = shape[0]
        workers = num_workers or min(16, os.cpu_count() or 1)
        executor = ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-decode")
        train = LazySource(
            train_ds, _imagenet_fn(spec, size, augment, cutout), augment or cutout > 0, executor
        )
        test = LazySource(test_ds, _imagenet_fn(spec, size, False, 0), False, executor)
        return DatasetParts(spec.num_classes, shape, False, train, test)

    train_tf = ImageTransform(
        spec.mean, spec.std, augment=augment, padding=spec.padding, flip=spec.flip, cutout=cutout
    )
    test_tf = ImageTransform(spec.mean, spec.std)
    train = ArraySource(
        *_read_all(train_ds, spec.image_shape), train_tf, augments=train_tf.augments
    )
    test = ArraySource(*_read_all(test_ds, spec.image_shape), test_tf)
    return DatasetParts(spec.num_classes, shape, False, train, test)
