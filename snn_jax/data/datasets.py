"""``create_pipeline``: data set by name, from a config, to a :class:`Pipeline`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from snn_jax.data.digits import DIGITS_SHAPE, digits_parts
from snn_jax.data.events import EVENT_DATASETS, event_parts, frame_shape
from snn_jax.data.pipeline import DatasetShape, Pipeline, check_batch_sizes
from snn_jax.data.sources import DatasetParts, with_validation
from snn_jax.data.tfds_images import TFDS_DATASETS, tfds_example_shape, tfds_parts

__all__ = ["DATASET_NAMES", "DataConfig", "DatasetShape", "create_pipeline", "describe"]

DATASET_NAMES: tuple[str, ...] = ("digits", *TFDS_DATASETS, *EVENT_DATASETS)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The keys ``config.data`` may hold; absent keys take these defaults.

    Attributes:
      name: one of :data:`DATASET_NAMES`.
      data_dir: tfds or tonic data directory (None: the library's default,
        ``$TFDS_DATA_DIR``/``~/tensorflow_datasets`` or ``~/tonic_data``).
      augment: training augmentation (digits: 1-pixel shifts; CIFAR/MNIST:
        padded random crop and flip; ImageNet: random-resized-crop and flip;
        DVS: random shift, plus flip for CIFAR10-DVS).
      cutout: cutout square side in training, static images only (0: off).
      time_steps: frames per event stream (DVS only; ignored otherwise).
      image_size: ImageNet crop side (None: 224) or DVS frame side (None: 128);
        static sets of fixed size accept None or their own size.
      cache_dir: DVS frame cache (None: ``<data_dir>/snn_jax_cache``).
      num_workers: decoding threads (ImageNet, DVS cache build; None: auto).
      validation_fraction: share of the training images held out, per class,
        as a validation split for model selection (0: none). The draw is fixed
        by the run seed; the test split is never touched.
    """

    name: str
    data_dir: str | None = None
    augment: bool = False
    cutout: int = 0
    time_steps: int | None = None
    image_size: int | None = None
    cache_dir: str | None = None
    num_workers: int | None = None
    validation_fraction: float = 0.0

    @classmethod
    def from_config(cls, config: Any) -> DataConfig:
        """Reads an ``ml_collections.ConfigDict`` or mapping; rejects unknown keys and names."""
        items = dict(config.items()) if hasattr(config, "items") else dict(config)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(items) - set(known))
        if unknown:
            raise ValueError(f"unknown data config keys {unknown}; the keys are {known}")
        if "name" not in items:
            raise ValueError(f"the data config needs a 'name', one of {list(DATASET_NAMES)}")
        if items["name"] not in DATASET_NAMES:
            raise ValueError(
                f"unknown data set {items['name']!r}; valid names: {list(DATASET_NAMES)}"
            )
        if int(items.get("cutout") or 0) < 0:
            raise ValueError(f"cutout must be >= 0 pixels, got {items['cutout']}")
        fraction = items.get("validation_fraction") or 0.0
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
        return cls(**items)


def describe(config: Mapping[str, Any] | Any) -> DatasetShape:
    """Classes and example shape of the data set ``config`` (``config.data``), reading nothing.

    The same as the :class:`Pipeline` that :func:`create_pipeline` would build
    reports, for planning (model input shapes, memory) without the data.

    >>> describe({"name": "cifar10"})
    DatasetShape(num_classes=10, example_shape=(32, 32, 3), time_major=False)
    >>> describe({"name": "dvs_gesture", "time_steps": 40, "image_size": 32}).example_shape
    (40, 32, 32, 2)
    """
    cfg = config if isinstance(config, DataConfig) else DataConfig.from_config(config)
    if cfg.name == "digits":
        if cfg.image_size not in (None, DIGITS_SHAPE[0]):
            raise ValueError(
                f"digits images are 8x8; image_size must be None or 8, got {cfg.image_size}"
            )
        return DatasetShape(10, DIGITS_SHAPE, False)
    if cfg.name in TFDS_DATASETS:
        spec = TFDS_DATASETS[cfg.name]
        return DatasetShape(spec.num_classes, tfds_example_shape(cfg.name, cfg.image_size), False)
    shape = frame_shape(cfg.name, cfg.time_steps, cfg.image_size)
    return DatasetShape(EVENT_DATASETS[cfg.name].num_classes, shape, True)


def _parts(cfg: DataConfig) -> DatasetParts:
    cutout = int(cfg.cutout or 0)
    if cfg.name == "digits":
        return digits_parts(augment=bool(cfg.augment), cutout=cutout)
    if cfg.name in TFDS_DATASETS:
        return tfds_parts(
            cfg.name,
            data_dir=cfg.data_dir,
            augment=bool(cfg.augment),
            cutout=cutout,
            image_size=cfg.image_size,
            num_workers=cfg.num_workers,
        )
    if cutout:
        raise ValueError(f"cutout applies to static images, not to {cfg.name}; set cutout=0")
    return event_parts(
        cfg.name,
        time_steps=cfg.time_steps,
        image_size=cfg.image_size,
        data_dir=cfg.data_dir,
        cache_dir=cfg.cache_dir,
        augment=bool(cfg.augment),
        num_workers=cfg.num_workers,
    )


def create_pipeline(
    config: Mapping[str, Any] | Any,
    *,
    global_batch_size: int,
    eval_batch_size: int | None = None,
    seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Pipeline:
    """Builds the batch pipeline of the data set ``config.name`` for one process.

    Args:
      config: ``config.data``: an ``ml_collections.ConfigDict`` or mapping with
        the keys of :class:`DataConfig`.
      global_batch_size: training examples per step over all processes.
      eval_batch_size: eval examples per batch over all processes (None: the
        training batch size).
      seed: data order and augmentation seed (non-negative).
      process_index: this process (None: 0). The training engine passes
        ``jax.process_index()``; the data package never imports JAX.
      process_count: number of processes (None: 1).

    Returns:
      A :class:`Pipeline` whose batches are ``image`` float32 ``[B, H, W, C]``
      (or ``[T, B, H, W, 2]`` for events) and ``label`` int32 ``[B]``, with
      ``B = global_batch_size // process_count``.

    Raises:
      ValueError: unknown data set name or config key, or batch sizes not
        divisible by ``process_count``.
      DatasetNotFoundError: the data set is not on disk (the message says how
        to get it).
    """
    cfg = DataConfig.from_config(config)
    process_index = 0 if process_index is None else process_index
    process_count = 1 if process_count is None else process_count
    check_batch_sizes(global_batch_size, eval_batch_size, process_index, process_count)
    describe(cfg)  # image_size and time_steps
    parts = _parts(cfg)  # may read a whole data set: check the cheap things first
    parts = with_validation(parts, float(cfg.validation_fraction or 0.0), seed)
    return Pipeline.build(
        name=cfg.name,
        num_classes=parts.num_classes,
        example_shape=parts.example_shape,
        time_major=parts.time_major,
        train_source=parts.train,
        test_source=parts.test,
        validation_source=parts.validation,
        global_batch_size=global_batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
    )
