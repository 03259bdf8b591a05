"""scikit-learn digits: the fixed stratified split and its pipeline."""

import numpy as np
import pytest

from snn_jax.data import DATASET_NAMES, create_pipeline, describe, load_digits_split


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_shapes_dtypes_range(split):
    assert split.train_images.shape == (1437, 8, 8, 1)
    assert split.test_images.shape == (360, 8, 8, 1)
    for images in (split.train_images, split.test_images):
        assert images.dtype == np.float32
        assert images.min() == 0.0
        assert images.max() == 1.0
    for labels in (split.train_labels, split.test_labels):
        assert labels.dtype == np.int32
        assert set(np.unique(labels)) == set(range(10))


def test_split_is_stratified(split):
    train = np.bincount(split.train_labels, minlength=10)
    test = np.bincount(split.test_labels, minlength=10)
    total = train + test
    assert total.sum() == 1797
    np.testing.assert_allclose(test, 0.2 * total, atol=1)


def test_split_is_fixed_and_disjoint(split):
    again = load_digits_split()
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # No image is in both splits (the data set has no exact duplicates across them).
    train = {x.tobytes() for x in split.train_images}
    assert not any(x.tobytes() in train for x in split.test_images)


def test_pipeline_does_not_depend_on_run_seed_for_the_split(split):
    a = create_pipeline({"name": "digits"}, global_batch_size=64, eval_batch_size=100, seed=0)
    b = create_pipeline({"name": "digits"}, global_batch_size=64, eval_batch_size=100, seed=7)
    for x, y in zip(a.eval_batches(), b.eval_batches(), strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
    ev = list(a.eval_batches())
    images = np.concatenate([e["image"][e["mask"]] for e in ev])
    labels = np.concatenate([e["label"][e["mask"]] for e in ev])
    np.testing.assert_array_equal(images, split.test_images)
    np.testing.assert_array_equal(labels, split.test_labels)
    assert not np.array_equal(next(a.train_batches())["label"], next(b.train_batches())["label"])


def test_pipeline_fields_and_batches():
    p = create_pipeline(
        {
            "name": "digits",
            "data_dir": None,
            "augment": False,
            "cutout": 0,
            "time_steps": 4,
            "image_size": None,
        },
        global_batch_size=64,
    )
    assert (p.name, p.num_classes, p.example_shape, p.time_major) == (
        "digits",
        10,
        (8, 8, 1),
        False,
    )
    assert describe({"name": "digits"}) == p.shape
    assert (p.train_size, p.test_size, p.steps_per_epoch) == (1437, 360, 1437 // 64)
    batch = next(p.train_batches())
    assert batch["image"].shape == (64, 8, 8, 1)
    assert batch["image"].min() >= 0.0
    assert batch["image"].max() <= 1.0
    ev = list(p.eval_batches())
    assert len(ev) == 6  # ceil(360 / 64)
    assert sum(int(e["mask"].sum()) for e in ev) == 360


def test_augmented_digits_shift_but_stay_in_range(split):
    plain = create_pipeline({"name": "digits"}, global_batch_size=32)
    aug = create_pipeline({"name": "digits", "augment": True}, global_batch_size=32)
    a, b = plain.train_batch(0), aug.train_batch(0)
    np.testing.assert_array_equal(a["label"], b["label"])  # same order, other pixels
    changed = [not np.array_equal(x, y) for x, y in zip(a["image"], b["image"], strict=True)]
    assert 0 < sum(changed) < 32  # a shift of (0, 0) leaves about 1 in 9 unchanged
    assert b["image"].min() >= 0.0
    assert b["image"].max() <= 1.0


def test_config_errors():
    with pytest.raises(ValueError, match="valid names") as e:
        create_pipeline({"name": "cifar11"}, global_batch_size=8)
    for name in DATASET_NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="unknown data config keys"):
        create_pipeline({"name": "digits", "augmnet": True}, global_batch_size=8)
    with pytest.raises(ValueError, match="image_size"):
        create_pipeline({"name": "digits", "image_size": 32}, global_batch_size=8)


def test_accepts_the_default_config_dict():
    ml_collections = pytest.importorskip("ml_collections")
    c = ml_collections.ConfigDict({"name": "digits", "augment": False, "cutout": 0})
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    p = create_pipeline(c, global_batch_size=16, process_index=1, process_count=2)
    assert next(p.train_batches())["image"].shape == (8, 8, 8, 1)


def _all(pipeline, split):
    ev = list(pipeline.eval_batches(split))
    images = np.concatenate([e["image"][e["mask"]] for e in ev])
    labels = np.concatenate([e["label"][e["mask"]] for e in ev])
    return images, labels


def _train_epoch(pipeline):
    # one epoch in the order of epoch 0 (batch 1 so nothing is dropped)
    batches = [pipeline.train_batch(s) for s in range(pipeline.steps_per_epoch)]
    return np.concatenate([b["image"] for b in batches]), np.concatenate(
        [b["label"] for b in batches]
    )


def test_validation_split_is_stratified_disjoint_and_fixed_by_the_seed(split):
    config = {"name": "digits", "validation_fraction": 0.1}
    p = create_pipeline(config, global_batch_size=1, eval_batch_size=50, seed=3)
    val_images, val_labels = _all(p, "validation")
    train_images, train_labels = _train_epoch(p)
    test_images, _ = _all(p, "test")
    # sizes: each class gives round(0.1 * n_c) of its training images
    expected = np.round(0.1 * np.bincount(split.train_labels, minlength=10)).astype(int)
    np.testing.assert_array_equal(np.bincount(val_labels, minlength=10), expected)
    assert (p.validation_size, p.train_size) == (expected.sum(), 1437 - expected.sum())
    np.testing.assert_array_equal(
        np.bincount(train_labels, minlength=10) + expected, np.bincount(split.train_labels)
    )
    # disjoint from the training examples and the untouched test split, together the 1437
    val = {x.tobytes() for x in val_images}
    assert len(val) == len(val_images)
    assert not any(x.tobytes() in val for x in train_images)
    assert not any(x.tobytes() in val for x in test_images)
    np.testing.assert_array_equal(test_images, split.test_images)
    together = sorted(x.tobytes() for x in np.concatenate([train_images, val_images]))
    assert together == sorted(x.tobytes() for x in split.train_images)
    # the same seed draws the same split; another seed another one
    again = create_pipeline(config, global_batch_size=1, eval_batch_size=50, seed=3)
    np.testing.assert_array_equal(_all(again, "validation")[0], val_images)
    other = create_pipeline(config, global_batch_size=1, eval_batch_size=50, seed=4)
    assert not np.array_equal(_all(other, "validation")[0], val_images)


def test_validation_split_is_not_augmented():
    config = {"name": "digits", "validation_fraction": 0.1}
    plain = create_pipeline(config, global_batch_size=8, eval_batch_size=200)
    aug = create_pipeline({**config, "augment": True}, global_batch_size=8, eval_batch_size=200)
    for a, b in zip(plain.eval_batches("validation"), aug.eval_batches("validation"), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_validation_config_errors():
    with pytest.raises(ValueError, match="validation_fraction"):
        create_pipeline({"name": "digits", "validation_fraction": 1.0}, global_batch_size=8)
    p = create_pipeline({"name": "digits"}, global_batch_size=8)
    assert p.validation_size == 0
    with pytest.raises(ValueError, match="validation_fraction"):
        next(p.eval_batches("validation"))
    with pytest.raises(ValueError, match="'test' or 'validation'"):
        next(p.eval_batches("train"))
