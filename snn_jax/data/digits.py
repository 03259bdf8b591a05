"""scikit-learn's bundled 8x8 digits: the offline default data set (numpy + scikit-learn only)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from snn_jax.data.sources import ArraySource, DatasetParts, ImageTransform

__all__ = ["DIGITS_SHAPE", "DigitsSplit", "load_digits_split"]

DIGITS_SHAPE: tuple[int, int, int] = (8, 8, 1)  # [H, W, C] of one image
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0  # the split is part of the data set, not of the run: never the run seed
_MAX_PIXEL = 16.0


class DigitsSplit(NamedTuple):
    """The fixed split: images float32 ``[N, 8, 8, 1]`` in [0, 1], labels int32 ``[N]``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits_split() -> DigitsSplit:
    """Loads the 1797 digits with the fixed stratified 80/20 train/test split.

    The split is ``train_test_split(test_size=0.2, stratify=labels,
    random_state=0)``: the same on every call and every machine, whatever the run
    seed. Pixels (0..16) are scaled to [0, 1].

    Returns:
      A :class:`DigitsSplit` with 1437 training and 360 test examples, images
      float32 ``[N, 8, 8, 1]`` (channels last), labels int32 ``[N]`` in 0..9.

    Example:
      >>> from snn_jax.data import load_digits_split
      >>> split = load_digits_split()
      >>> split.train_images.shape, split.test_images.shape
      ((1437, 8, 8, 1), (360, 8, 8, 1))
      >>> float(split.train_images.max()), split.test_labels.dtype
      (1.0, dtype('int32'))
    """
    (x_train, x_test), (y_train, y_test) = _raw_split()
    scale = np.float32(1.0 / _MAX_PIXEL)
    return DigitsSplit(
        (x_train * scale).astype(np.float32),
        y_train,
        (x_test * scale).astype(np.float32),
        y_test,
    )


def _raw_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32)[..., None]  # [1797, 8, 8, 1], 0..16
    labels = data.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=_TEST_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )
    return (x_train, x_test), (y_train, y_test)


def digits_parts(*, augment: bool = False, cutout: int = 0) -> DatasetParts:
    """Sources for ``create_pipeline``: [0, 1] pixels; augmentation = 1-pixel shift (no flip)."""
    (x_train, x_test), (y_train, y_test) = _raw_split()
    train_tf = ImageTransform(
        mean=(0.0,), std=(_MAX_PIXEL,), augment=augment, padding=1, flip=False, cutout=cutout
    )
    test_tf = ImageTransform(mean=(0.0,), std=(_MAX_PIXEL,))
    return DatasetParts(
        num_classes=10,
        example_shape=DIGITS_SHAPE,
        time_major=False,
        train=ArraySource(x_train, y_train, train_tf, augments=train_tf.augments),
        test=ArraySource(x_test, y_test, test_tf),
    )
