"""In-memory sources and the crop/flip/cutout image transform they share.

A source holds one split; :class:`snn_jax.data.pipeline.Pipeline` asks it for
examples by index. :class:`ArraySource` serves arrays (numpy or memory-mapped)
through a batch transform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from snn_jax.data import augment
from snn_jax.data.pipeline import Source

__all__ = [
    "ArraySource",
    "DatasetParts",
    "ImageTransform",
    "SubsetSource",
    "stratified_holdout",
    "with_validation",
]

_HOLDOUT_TAG = 0x5EED_0003  # keeps the validation draw independent of order and augmentation

# raw examples [n, ...] and one generator per example (None: eval) -> float32 [n, ...]
BatchTransform = Callable[[np.ndarray, Sequence[np.random.Generator] | None], np.ndarray]


class DatasetParts(NamedTuple):
    """What a data set module hands to ``create_pipeline``."""

    num_classes: int
    example_shape: tuple[int, ...]
    time_major: bool
    train: Source
    test: Source
    validation: Source | None = None  # held out of the training images (``with_validation``)


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """Pixel images ``[n, H, W, C]`` -> normalised float32, with optional augmentation.

    With generators (training): random crop after ``padding`` pixels of zero
    padding, left-right flip if ``flip`` (both only if ``augment``), then
    normalisation, then cutout of ``cutout`` pixels (if > 0). Without
    generators (eval): normalisation only.

    Attributes:
      mean: per-channel mean in pixel units, ``[C]``.
      std: per-channel standard deviation in pixel units, ``[C]``.
      augment: random crop and flip in training.
      padding: zero padding of the random crop.
      flip: random left-right flip.
      cutout: side of the cutout square (0: off).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    padding: int = 4
    flip: bool = True
    cutout: int = 0

    @property
    def augments(self) -> bool:
        return self.augment or self.cutout > 0

    def __call__(
        self, images: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> np.ndarray:
        if rngs is not None and self.augment:
            images = np.stack(
                [
                    augment.random_crop_flip(x, r, padding=self.padding, flip=self.flip)
                    for x, r in zip(images, rngs, strict=True)
                ]
            )
        out = augment.normalize(images, np.asarray(self.mean), np.asarray(self.std))
        if rngs is not None and self.cutout > 0:
            out = np.stack(
                [augment.cutout(x, r, self.cutout) for x, r in zip(out, rngs, strict=True)]
            )
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """A split held as arrays: ``images`` ``[N, ...]`` (any dtype) and ``labels`` ``[N]``.

    Attributes:
      images: raw examples; a memory-mapped array works (only the indexed rows
        are read).
      labels: integer class labels.
      transform: maps raw examples ``[n, ...]`` and per-example generators (or
        None in eval) to float32 ``[n, *example_shape]``.
      augments: whether ``transform`` uses the generators.
    """

    images: np.ndarray
    labels: np.ndarray
    transform: BatchTransform
    augments: bool = False

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"images and labels differ in length: {len(self.images)} vs {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def load(
        self, indices: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices)
        # Sorted reads are faster on memory-mapped files; restore the order after.
        order = np.argsort(indices, kind="stable")
        raw = np.empty((len(indices), *self.images.shape[1:]), self.images.dtype)
        raw[order] = self.images[indices[order]]
        images = self.transform(raw, rngs)
        return images.astype(np.float32, copy=False), self.labels[indices].astype(np.int32)


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``range(len(labels))`` into kept and held-out indices, class by class.

    Each class ``c`` with ``n_c`` examples gives ``max(1, round(fraction * n_c))``
    of them, drawn uniformly by ``Generator(tag, seed, c)``, to the held-out
    part: every class keeps its share, and the draw is a function of
    ``(labels, fraction, seed)`` only.

    Args:
      labels: integer labels ``[N]``.
      fraction: share held out, in (0, 1).
      seed: non-negative seed of the draw.

    Returns:
      ``(kept, held_out)``, two sorted int64 index arrays that together
      partition ``range(N)``.

    >>> kept, held = stratified_holdout(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.25, seed=0)
    >>> len(kept), len(held), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])[held].tolist())
    (7, 3, [0, 1, 1])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(members)))
        if k >= len(members):
            raise ValueError(
                f"class {c} has {len(members)} example(s): holding out {fraction} of them "
                "leaves none to train on; lower the fraction"
            )
        rng = np.random.default_rng([_HOLDOUT_TAG, seed, int(c)])
        held.append(rng.choice(members, size=k, replace=False))
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


@dataclasses.dataclass(frozen=True, eq=False)
class SubsetSource:
    """The examples ``indices`` of ``source``, renumbered ``0..len(indices) - 1``.

    Loads through ``source`` (its transform, its augmentation when given
    generators), so a validation subset of a training source, read without
    generators, is normalised like the test split and never augmented.
    """

    source: Source
    indices: np.ndarray

    @property
    def augments(self) -> bool:
        return self.source.augments

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.source.labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load(
        self, indices: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.source.load(self.indices[np.asarray(indices)], rngs)


def with_validation(parts: DatasetParts, fraction: float, seed: int) -> DatasetParts:
    """``parts`` with a stratified share ``fraction`` of its training split moved to validation.

    The validation examples are taken from the training split
    (:func:`stratified_holdout`), so they are disjoint from the test split and
    from the remaining training examples; ``seed`` fixes the draw. A fraction
    of 0 returns ``parts`` unchanged.

    Raises:
      ValueError: for a fraction outside [0, 1), or a training source without
        ``labels`` (stratifying needs them).
    """
    if fraction == 0:
        return parts
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    labels = getattr(parts.train, "labels", None)
    if labels is None:
        raise ValueError(
            f"validation_fraction = {fraction} needs the training labels in memory to "
            f"stratify, which {type(parts.train).__name__} does not hold; set "
            "validation_fraction=0 for this data set"
        )
    kept, held_out = stratified_holdout(np.asarray(labels), fraction, seed)
    return parts._replace(
        train=SubsetSource(parts.train, kept), validation=SubsetSource(parts.train, held_out)
    )
