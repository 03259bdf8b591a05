"""The generic batch iterator: resume, determinism, epochs, eval padding, process shards."""

import itertools

import numpy as np
import pytest

from snn_jax.data import Pipeline, epoch_permutation
from snn_jax.data.sources import ArraySource

N_TRAIN, N_TEST = 50, 21
GLOBAL_BATCH = 8


def _noise_transform(images, rngs):
    """Images carry their index in pixel 0; augmentation adds per-example noise elsewhere."""
    out = images.astype(np.float32)
    if rngs is not None:
        for k, rng in enumerate(rngs):
            out[k, 1:] += rng.standard_normal(out.shape[1:])[1:].astype(np.float32)
    return out


def make_pipeline(
    *,
    seed=0,
    process_index=0,
    process_count=1,
    augment=True,
    eval_batch=8,
    global_batch=GLOBAL_BATCH,
    time_steps=None,
):
    def split(n, offset):
        shape = (n, 3, 2, 1) if time_steps is None else (n, time_steps, 3, 2, 2)
        images = np.zeros(shape, np.float32)
        images.reshape(n, -1)[:, 0] = np.arange(n) + offset
        return ArraySource(
            images, (np.arange(n) % 5).astype(np.int64), _noise_transform, augments=augment
        )

    example_shape = (3, 2, 1) if time_steps is None else (time_steps, 3, 2, 2)
    return Pipeline.build(
        name="toy",
        num_classes=5,
        example_shape=example_shape,
        time_major=time_steps is not None,
        train_source=split(N_TRAIN, 0),
        test_source=split(N_TEST, 1000),
        global_batch_size=global_batch,
        eval_batch_size=eval_batch,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
    )


def ids(batch):
    """The example index carried by each image of a batch-major batch."""
    return batch["image"].reshape(len(batch["label"]), -1)[:, 0].astype(int)


def take(it, n):
    return list(itertools.islice(it, n))


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_shapes_and_sizes():
    p = make_pipeline()
    assert p.steps_per_epoch == N_TRAIN // GLOBAL_BATCH == 6
    assert (p.train_size, p.test_size) == (N_TRAIN, N_TEST)
    batch = next(p.train_batches())
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (GLOBAL_BATCH, 3, 2, 1)
    assert batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32


@pytest.mark.parametrize("start", [1, 5, 6, 13])
def test_exact_resume(start):
    p = make_pipeline()
    full = take(p.train_batches(0), start + 8)
    resumed = take(p.train_batches(start), 8)
    for a, b in zip(full[start:], resumed, strict=True):
        assert_batches_equal(a, b)
    assert_batches_equal(p.train_batch(start), full[start])


def test_same_seed_same_batches_other_seed_differs():
    a = take(make_pipeline(seed=3).train_batches(), 8)
    b = take(make_pipeline(seed=3).train_batches(), 8)
    c = take(make_pipeline(seed=4).train_batches(), 8)
    for x, y in zip(a, b, strict=True):
        assert_batches_equal(x, y)
    assert any(not np.array_equal(ids(x), ids(z)) for x, z in zip(a, c, strict=True))


def test_each_epoch_is_a_permutation():
    p = make_pipeline()
    steps = p.steps_per_epoch
    batches = take(p.train_batches(), 3 * steps)
    orders = []
    for e in range(3):
        seen = np.concatenate([ids(b) for b in batches[e * steps : (e + 1) * steps]])
        assert len(np.unique(seen)) == len(seen) == steps * GLOBAL_BATCH  # remainder dropped
        np.testing.assert_array_equal(seen, epoch_permutation(0, e, N_TRAIN)[: len(seen)])
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])


def test_every_example_once_per_epoch_when_divisible():
    p = make_pipeline(global_batch=10)
    seen = np.concatenate([ids(b) for b in take(p.train_batches(), p.steps_per_epoch)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(N_TRAIN))


def test_augmentation_depends_on_seed_epoch_index_only():
    p = make_pipeline()
    b0 = p.train_batch(0)
    again = p.train_batch(0)
    np.testing.assert_array_equal(b0["image"], again["image"])
    # The same example in another epoch gets other noise.
    first = ids(b0)[0]
    b_next = next(b for b in take(p.train_batches(6), 6) if first in ids(b))
    k = list(ids(b_next)).index(first)
    assert not np.array_equal(b_next["image"][k], b0["image"][0])


def test_eval_covers_each_example_once_with_mask():
    p = make_pipeline(eval_batch=8)
    batches = list(p.eval_batches())
    assert len(batches) == p.num_eval_batches == 3
    for b in batches:
        assert b["image"].shape == (8, 3, 2, 1)
        assert b["mask"].dtype == np.bool_
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, np.arange(24) < N_TEST)
    real = np.concatenate([ids(b)[b["mask"]] for b in batches])
    np.testing.assert_array_equal(real, 1000 + np.arange(N_TEST))  # in order, no augmentation
    last = batches[-1]
    assert not last["image"][~last["mask"]].any()
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, np.arange(N_TEST) % 5)


def test_two_processes_split_each_global_batch():
    whole = make_pipeline()
    parts = [make_pipeline(process_index=i, process_count=2) for i in range(2)]
    assert parts[0].local_batch_size == GLOBAL_BATCH // 2
    for step in [0, 1, 7, 12]:
        g = whole.train_batch(step)
        p0, p1 = (q.train_batch(step) for q in parts)
        assert not set(ids(p0)) & set(ids(p1))
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), g[key])
    for g, b0, b1 in zip(whole.eval_batches(), *(q.eval_batches() for q in parts), strict=True):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(np.concatenate([b0[key], b1[key]]), g[key])


@pytest.mark.parametrize(
    ("global_batch", "eval_batch", "match"),
    [(9, 8, "global_batch_size = 9"), (8, 7, "eval_batch_size = 7"), (0, 8, "global_batch")],
)
def test_batch_not_divisible_by_processes(global_batch, eval_batch, match):
    with pytest.raises(ValueError, match=match):
        make_pipeline(global_batch=global_batch, eval_batch=eval_batch, process_count=2)


def test_bad_process_index_and_oversized_batch():
    with pytest.raises(ValueError, match="process_index"):
        make_pipeline(process_index=2, process_count=2)
    with pytest.raises(ValueError, match="exceeds the 50 training examples"):
        make_pipeline(global_batch=64)


def test_time_major_event_batches():
    t = 3  # T != B
    p = make_pipeline(time_steps=t, augment=False)
    batch = p.train_batch(0)
    assert batch["image"].shape == (t, GLOBAL_BATCH, 3, 2, 2)
    ev = next(p.eval_batches())
    assert ev["image"].shape == (t, 8, 3, 2, 2)
    # Example k of the batch is image[:, k]; its index sits in frame 0, pixel 0.
    np.testing.assert_array_equal(
        batch["image"][0, :, 0, 0, 0], epoch_permutation(0, 0, N_TRAIN)[:GLOBAL_BATCH]
    )


def test_stratified_holdout_against_a_count_per_class():
    from snn_jax.data.sources import stratified_holdout

    labels = np.repeat(np.arange(4), [10, 21, 3, 40])
    kept, held = stratified_holdout(labels, 0.2, seed=5)
    # per class: max(1, round(0.2 * n)) -> 2, 4, 1, 8
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=4), [2, 4, 1, 8])
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    _, held_again = stratified_holdout(labels, 0.2, seed=5)
    np.testing.assert_array_equal(held, held_again)
    with pytest.raises(ValueError, match="class 0 has 1 example"):
        stratified_holdout(np.array([0, 1, 1, 1]), 0.5, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout(labels, 0.0, seed=0)
