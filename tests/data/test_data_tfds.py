"""tfds image sets read without TensorFlow, under ``tfds.testing.mock_data``.

``mock_data`` replaces the records but not our check for prepared files, so each
test first lays out empty ArrayRecord files where a prepared data set has them.
"""

import os
import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("PIL")

from snn_jax.data import (  # noqa: E402
    DatasetNotFoundError,
    create_pipeline,
    describe,
    epoch_permutation,
)
from snn_jax.data.tfds_images import TFDS_DATASETS  # noqa: E402
from tests.data.fakes import fake_prepared  # noqa: E402

NUM_EXAMPLES = 24


def raw_records(name, split, n):
    ds = tfds.data_source(name, split=split, download=False)
    return (
        np.stack([ds[i]["image"] for i in range(n)]),
        np.array([int(ds[i]["label"]) for i in range(n)]),
    )


def pipeline(name, data_dir, **config):
    return create_pipeline(
        {"name": name, "data_dir": data_dir, **config},
        global_batch_size=8,
        eval_batch_size=16,
        seed=1,
    )


@pytest.mark.parametrize(("name", "shape"), [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_shapes_labels_normalisation(tmp_path, name, shape):
    data_dir = fake_prepared(tmp_path, name)
    spec = TFDS_DATASETS[name]
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        p = pipeline(name, data_dir)
        raw, labels = raw_records(name, spec.test_split, NUM_EXAMPLES)
    assert (p.num_classes, p.example_shape, p.time_major) == (10, shape, False)
    assert describe({"name": name}) == p.shape
    assert (p.train_size, p.test_size) == (NUM_EXAMPLES, NUM_EXAMPLES)
    batch = p.train_batch(0)
    assert batch["image"].shape == (8, *shape)
    assert batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    ev = list(p.eval_batches())
    images = np.concatenate([b["image"][b["mask"]] for b in ev])
    expected = (raw - np.float32(spec.mean)) / np.float32(spec.std)
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b["label"][b["mask"]] for b in ev]), labels)
    assert labels.min() >= 0
    assert labels.max() < p.num_classes


def test_cifar_augmentation_off_on_determinism_resume(tmp_path):
    data_dir = fake_prepared(tmp_path, "cifar10")
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        plain = pipeline("cifar10", data_dir)
        aug = pipeline("cifar10", data_dir, augment=True, cutout=8)
        aug2 = pipeline("cifar10", data_dir, augment=True, cutout=8)
        crop_flip = pipeline("cifar10", data_dir, augment=True)
        raw, _ = raw_records("cifar10", "train", NUM_EXAMPLES)
    spec = TFDS_DATASETS["cifar10"]
    order = epoch_permutation(1, 0, NUM_EXAMPLES)[:8]
    expected = (raw[order] - np.float32(spec.mean)) / np.float32(spec.std)
    np.testing.assert_allclose(plain.train_batch(0)["image"], expected, rtol=1e-6, atol=1e-6)
    changed = [
        not np.array_equal(x, y)
        for x, y in zip(crop_flip.train_batch(0)["image"], expected, strict=True)
    ]
    assert any(changed)  # crops and flips (a zero offset without flip leaves some unchanged)
    a = aug.train_batch(0)
    assert all(not np.array_equal(x, y) for x, y in zip(a["image"], expected, strict=True))
    np.testing.assert_array_equal(a["label"], plain.train_batch(0)["label"])
    # cutout leaves a square at the mean (0 after normalisation) in every image
    assert all((x == 0).all(axis=-1).sum() >= 16 for x in a["image"])
    batches = [aug.train_batch(s) for s in range(5)]
    resumed = aug2.train_batches(3)
    for s in (3, 4):
        np.testing.assert_array_equal(next(resumed)["image"], batches[s]["image"])
    np.testing.assert_array_equal(aug2.train_batch(0)["image"], a["image"])
    # eval is never augmented
    for x, y in zip(plain.eval_batches(), aug.eval_batches(), strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])


def test_imagenet_crops(tmp_path):
    data_dir = fake_prepared(tmp_path, "imagenet2012")
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        p = pipeline("imagenet2012", data_dir, image_size=32, augment=True)
        q = pipeline("imagenet2012", data_dir, image_size=32, augment=True)
        plain = pipeline("imagenet2012", data_dir, image_size=32, num_workers=1)
        cutout_only = pipeline("imagenet2012", data_dir, image_size=32, cutout=4)
    assert (p.num_classes, p.example_shape) == (1000, (32, 32, 3))
    # cutout without augment: the centre crop with a 4x4 square at the mean, no random crop
    centre, cut = plain.train_batch(2)["image"], cutout_only.train_batch(2)["image"]
    for x, y in zip(centre, cut, strict=True):
        changed = (x != y).any(axis=-1)
        assert 0 < changed.sum() <= 16
        assert (y[changed] == 0).all()
    a, b = p.train_batch(2), q.train_batch(2)
    assert a["image"].shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(a["image"], b["image"])  # threads do not matter
    c = plain.train_batch(2)
    assert not np.array_equal(a["image"], c["image"])
    np.testing.assert_array_equal(a["label"], c["label"])
    assert a["label"].min() >= 0
    assert a["label"].max() < 1000
    e1, e2 = next(p.eval_batches()), next(plain.eval_batches())
    np.testing.assert_array_equal(e1["image"], e2["image"])  # eval: centre crop, no augmentation
    assert e1["image"].shape == (16, 32, 32, 3)
    pixel = e1["image"] * np.float32(TFDS_DATASETS["imagenet2012"].std) + np.float32(
        TFDS_DATASETS["imagenet2012"].mean
    )
    assert pixel.min() > -0.5
    assert pixel.max() < 255.5


@pytest.mark.parametrize("name", ["cifar10", "imagenet2012"])
def test_missing_data_fails_fast_with_the_fix(tmp_path, name):
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as e:
        create_pipeline({"name": name, "data_dir": str(tmp_path)}, global_batch_size=8)
    assert time.perf_counter() - start < 5
    assert isinstance(e.value, FileNotFoundError)
    message = str(e.value)
    for needle in (
        "download_and_prepare",
        "snn-jax[tf]",
        "file_format='array_record'",
        str(tmp_path),
    ):
        assert needle in message
    if name == "imagenet2012":
        for needle in (
            os.path.join(str(tmp_path), "downloads", "manual"),
            "ILSVRC2012_img_train.tar",
            "ILSVRC2012_img_val.tar",
        ):
            assert needle in message


def test_tfrecord_preparation_is_explained(tmp_path):
    data_dir = fake_prepared(tmp_path, "cifar10", file_format="tfrecord")
    with pytest.raises(DatasetNotFoundError, match="TFRecord"):
        create_pipeline({"name": "cifar10", "data_dir": data_dir}, global_batch_size=8)


def test_wrong_image_size_for_cifar(tmp_path):
    data_dir = fake_prepared(tmp_path, "cifar10")
    with (
        tfds.testing.mock_data(num_examples=4),
        pytest.raises(ValueError, match="image_size must be None or 32"),
    ):
        pipeline("cifar10", data_dir, image_size=64)
