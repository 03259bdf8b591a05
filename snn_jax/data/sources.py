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

__all__ = ["ArraySource", "DatasetParts", "ImageTransform"]

# raw examples [n, ...] and one generator per example (None: eval) -> float32 [n, ...]
BatchTransform = Callable[[np.ndarray, Sequence[np.random.Generator] | None], np.ndarray]


class DatasetParts(NamedTuple):
    """What a data set module hands to ``create_pipeline``."""

    num_classes: int
    example_shape: tuple[int, ...]
    time_major: bool
    train: Source
    test: Source


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
