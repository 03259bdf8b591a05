"""The batch iterator shared by every data set: epochs, exact resume, process shards, eval padding.

A :class:`Pipeline` turns a :class:`Source` (random access to examples) into numpy
batches. It owns all index arithmetic and randomness, so every data set gets the
same guarantees:

* step ``s`` of ``train_batches`` is a pure function of ``(seed, s)``: starting at
  ``s`` yields exactly the batch a run from 0 yields at ``s`` (exact resume);
* epoch ``e`` visits the training split in the order
  ``permutation(seed, e)`` (the remainder that does not fill a batch is dropped);
* the augmentation of example ``i`` in epoch ``e`` draws from
  ``Generator(seed, e, i)``, whatever the batch size or process count;
* each of ``process_count`` processes yields its contiguous share of every
  global batch (``global_batch_size // process_count`` examples).
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol

import numpy as np

__all__ = [
    "DatasetNotFoundError",
    "DatasetShape",
    "Pipeline",
    "Source",
    "check_batch_sizes",
    "epoch_permutation",
    "example_rng",
    "prefetch",
]

# Domain tags keep the permutation and augmentation streams independent.
_PERMUTATION_TAG = 0x5EED_0001
_AUGMENT_TAG = 0x5EED_0002


class DatasetNotFoundError(FileNotFoundError):
    """The data set is not on disk; the message says how to get it."""


class Source(Protocol):
    """Random access to the examples of one split.

    ``load`` returns float32 examples ``[n, *example_shape]`` (batch-major, also
    for event streams) and int32 labels ``[n]``. It augments if and only if
    ``rngs`` is given (one generator per index); ``augments`` says whether it
    uses them, so the pipeline builds generators only when needed.
    """

    augments: bool

    def __len__(self) -> int: ...

    def load(
        self, indices: np.ndarray, rngs: Sequence[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order of the training split in ``epoch``: a permutation of ``range(size)``.

    Args:
      seed: run seed (non-negative).
      epoch: epoch number (non-negative).
      size: number of training examples.

    Returns:
      int64 ``[size]``, a function of ``(seed, epoch)`` only.
    """
    return np.random.default_rng([_PERMUTATION_TAG, seed, epoch]).permutation(size)


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for the augmentation of training example ``index`` in ``epoch``."""
    return np.random.default_rng([_AUGMENT_TAG, seed, epoch, int(index)])


def check_batch_sizes(
    global_batch_size: int, eval_batch_size: int | None, process_index: int, process_count: int
) -> None:
    """Raises ValueError unless both batch sizes split evenly over the processes."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, process_count); got process_index="
            f"{process_index}, process_count={process_count}"
        )
    sizes = {"global_batch_size": global_batch_size}
    if eval_batch_size is not None:
        sizes["eval_batch_size"] = eval_batch_size
    for key, value in sizes.items():
        if value <= 0 or value % process_count:
            raise ValueError(
                f"{key} = {value} must be a positive multiple of process_count = "
                f"{process_count} (each process yields {key} // process_count examples); "
                f"use e.g. {max(1, value // process_count + 1) * process_count}"
            )


class DatasetShape(NamedTuple):
    """What a data set's batches look like, known without reading it (``data.describe``)."""

    num_classes: int
    example_shape: tuple[int, ...]  # one example: [H, W, C], or [T, H, W, 2] for events
    time_major: bool  # batches [T, B, H, W, 2] instead of [B, H, W, C]

    def batch_shape(self, batch: int) -> tuple[int, ...]:
        """The ``image`` shape of a batch of ``batch`` examples.

        >>> DatasetShape(11, (40, 32, 32, 2), True).batch_shape(16)
        (40, 16, 32, 32, 2)
        """
        e = self.example_shape
        return (e[0], batch, *e[1:]) if self.time_major else (batch, *e)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Numpy batches of one data set for one process.

    Batches are dicts: ``image`` float32 ``[B, H, W, C]`` (static images) or
    ``[T, B, H, W, 2]`` (event frames, ``time_major``), ``label`` int32 ``[B]``
    and, in eval batches only, ``mask`` bool ``[B]``. ``B`` is the local batch:
    the global batch size divided by ``process_count``.

    Build one with :func:`snn_jax.data.create_pipeline`.
    """

    name: str
    num_classes: int
    example_shape: tuple[int, ...]
    time_major: bool
    train_size: int
    test_size: int
    global_batch_size: int
    steps_per_epoch: int
    eval_batch_size: int
    seed: int
    process_index: int
    process_count: int
    train_source: Source = dataclasses.field(repr=False)
    test_source: Source = dataclasses.field(repr=False)
    validation_source: Source | None = dataclasses.field(default=None, repr=False)

    @property
    def validation_size(self) -> int:
        """Examples in the validation split (0: none)."""
        return 0 if self.validation_source is None else len(self.validation_source)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        num_classes: int,
        example_shape: Sequence[int],
        time_major: bool,
        train_source: Source,
        test_source: Source,
        global_batch_size: int,
        eval_batch_size: int | None = None,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        validation_source: Source | None = None,
    ) -> Pipeline:
        """Checks the batch arithmetic and returns the pipeline.

        Raises:
          ValueError: if a batch size is not a positive multiple of
            ``process_count``, the process index is out of range, the seed is
            negative, or the training split is smaller than one global batch.
        """
        eval_batch_size = global_batch_size if eval_batch_size is None else eval_batch_size
        check_batch_sizes(global_batch_size, eval_batch_size, process_index, process_count)
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        train_size, test_size = len(train_source), len(test_source)
        steps_per_epoch = train_size // global_batch_size
        if steps_per_epoch == 0:
            raise ValueError(
                f"global_batch_size = {global_batch_size} exceeds the {train_size} training "
                f"examples of {name!r}; use a batch size of at most {train_size}"
            )
        return cls(
            name=name,
            num_classes=num_classes,
            example_shape=tuple(int(d) for d in example_shape),
            time_major=time_major,
            train_size=train_size,
            test_size=test_size,
            global_batch_size=global_batch_size,
            steps_per_epoch=steps_per_epoch,
            eval_batch_size=eval_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            train_source=train_source,
            test_source=test_source,
            validation_source=validation_source,
        )

    @property
    def local_batch_size(self) -> int:
        """Training examples per batch of this process."""
        return self.global_batch_size // self.process_count

    @property
    def num_eval_batches(self) -> int:
        """Eval batches in one pass over the test split (the last one padded)."""
        return math.ceil(self.test_size / self.eval_batch_size)

    def _eval_source(self, split: str) -> Source:
        if split == "test":
            return self.test_source
        if split == "validation":
            if self.validation_source is None:
                raise ValueError(
                    f"{self.name!r} was built without a validation split; set "
                    "data.validation_fraction > 0"
                )
            return self.validation_source
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")

    @property
    def shape(self) -> DatasetShape:
        """Classes, example shape and layout (``shape.batch_shape(b)``: one batch's image shape)."""
        return DatasetShape(self.num_classes, self.example_shape, self.time_major)

    def _local(self, global_indices: np.ndarray) -> np.ndarray:
        size = len(global_indices) // self.process_count
        return global_indices[self.process_index * size : (self.process_index + 1) * size]

    def _finish(self, images: np.ndarray) -> np.ndarray:
        # Sources are batch-major; event frames go out time-major [T, B, ...].
        if self.time_major:
            images = np.ascontiguousarray(np.swapaxes(images, 0, 1))
        return images

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        """The local share of global training batch ``step`` (a pure function of seed, step)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_permutation(self.seed, epoch, self.train_size)
        return self._train_batch(epoch, position, order)

    def _train_batch(self, epoch: int, position: int, order: np.ndarray) -> dict:
        g = self.global_batch_size
        indices = self._local(order[position * g : (position + 1) * g])
        rngs = None
        if self.train_source.augments:
            rngs = [example_rng(self.seed, epoch, i) for i in indices]
        images, labels = self.train_source.load(indices, rngs)
        return {"image": self._finish(images), "label": labels.astype(np.int32)}

    def train_batches(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields training batches from global step ``start_step`` on, forever.

        Args:
          start_step: the first step to yield; the batches equal those a run
            from 0 yields at the same steps.

        Yields:
          ``{"image": float32 [B, H, W, C] or [T, B, H, W, 2], "label": int32 [B]}``
          with ``B = global_batch_size // process_count``.
        """
        if start_step < 0:
            raise ValueError(f"start_step must be non-negative, got {start_step}")
        step, epoch, order = start_step, -1, None
        while True:
            e, position = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, order = e, epoch_permutation(self.seed, e, self.train_size)
            yield self._train_batch(epoch, position, order)
            step += 1

    def eval_batches(self, split: str = "test") -> Iterator[dict[str, np.ndarray]]:
        """One pass over the test (or validation) split in order, without augmentation.

        Every example of the split appears exactly once over all processes.
        The last global batch is padded to ``eval_batch_size`` with zero images
        whose ``mask`` is False.

        Args:
          split: ``"test"``, or ``"validation"`` (the share of the training
            images held out by ``data.validation_fraction``).

        Yields:
          ``{"image": ..., "label": int32 [B], "mask": bool [B]}`` with
          ``B = eval_batch_size // process_count``.
        """
        source = self._eval_source(split)
        size, g = len(source), self.eval_batch_size
        for b in range(math.ceil(size / g)):
            indices = np.arange(b * g, (b + 1) * g)
            local = self._local(indices)
            mask = local < size
            real = local[mask]
            images = np.zeros((len(local), *self.example_shape), np.float32)
            labels = np.zeros(len(local), np.int32)
            if len(real):
                images[mask], labels[mask] = source.load(real, None)
            yield {"image": self._finish(images), "label": labels, "mask": mask}


class _Raised(NamedTuple):
    error: BaseException


_END = object()


def prefetch(iterable: Iterable, size: int = 2) -> Iterator:
    """Yields the items of ``iterable`` in order, producing up to ``size`` ahead on a thread.

    Overlaps batch preparation (numpy, decoding) with the device step. An
    exception in the producer is raised at the consumer; closing the returned
    generator (or dropping it) stops the producer after at most one more item.

    Args:
      iterable: e.g. ``pipeline.train_batches(step)``.
      size: items buffered ahead (>= 1).
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer
            put(_Raised(e))

    threading.Thread(target=produce, daemon=True, name="snn_jax-prefetch").start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
