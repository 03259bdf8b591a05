"""Data loaders: numpy batches for the training engine; no models, no JAX.

Layout: static images ``[B, H, W, C]`` float32 (channels last); event frames
time-major ``[T, B, H, W, 2]`` float32 (channel 0 OFF, 1 ON counts); labels int32
``[B]``; eval batches add a boolean ``mask`` ``[B]`` (False = padding).

Data sets (``config.data.name``): ``digits`` (scikit-learn, offline, the
default), ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``,
``imagenet2012`` (tensorflow-datasets without TensorFlow: ``snn-jax[data]``),
``dvs_gesture``, ``cifar10_dvs`` (tonic: ``snn-jax[dvs]``), ``event_digits``
(the digits seen by an emulated DVS, generated offline: :mod:`snn_jax.data.event_digits`).

    pipeline = create_pipeline(config.data, global_batch_size=128, seed=0)
    for batch in pipeline.train_batches(start_step):  # infinite, exactly resumable
        ...
    batches = prefetch(pipeline.train_batches(start_step))  # the same, prepared on a thread
"""

from snn_jax.data.datasets import DATASET_NAMES, DataConfig, DatasetShape, create_pipeline, describe
from snn_jax.data.digits import DigitsSplit, load_digits_split
from snn_jax.data.events import events_to_frames
from snn_jax.data.pipeline import (
    DatasetNotFoundError,
    Pipeline,
    Source,
    epoch_permutation,
    example_rng,
    prefetch,
)

__all__ = [
    "DATASET_NAMES",
    "DataConfig",
    "DatasetNotFoundError",
    "DatasetShape",
    "DigitsSplit",
    "Pipeline",
    "Source",
    "create_pipeline",
    "describe",
    "epoch_permutation",
    "events_to_frames",
    "example_rng",
    "load_digits_split",
    "prefetch",
]
