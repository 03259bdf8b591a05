"""Numpy augmentations against simple references, and the prefetch thread."""

import itertools
import threading
import time

import numpy as np
import pytest

from snn_jax.data import augment, example_rng, prefetch


def test_random_crop_flip_equals_pad_then_crop():
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w, c = rng.integers(1, 10, 3)
        pad = int(rng.integers(1, 6))
        image = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        out = augment.random_crop_flip(image, example_rng(0, 0, trial), padding=pad, flip=True)
        r = example_rng(0, 0, trial)  # replay its draws: offsets, then the flip bit
        top, left = r.integers(0, 2 * pad + 1, size=2)
        ref = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))[top : top + h, left : left + w]
        if r.integers(2):
            ref = ref[:, ::-1]
        np.testing.assert_array_equal(out, ref)


def test_translate_frames():
    x = np.arange(2 * 4 * 5 * 2).reshape(2, 4, 5, 2)
    out = augment.translate(x, 1, -2)
    np.testing.assert_array_equal(out[:, :3, 2:], x[:, 1:, :3])
    assert not out[:, 3:].any()
    assert not out[:, :, :2].any()
    assert not augment.translate(x, 9, 0).any()


def test_cutout_square():
    image = np.ones((16, 16, 3), np.float32)
    out = augment.cutout(image, np.random.default_rng(1), 6)
    zero = (out == 0).all(axis=-1)
    rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
    assert zero.sum() == len(rows) * len(cols) <= 36
    assert image.min() == 1  # input untouched
    assert augment.cutout(image, np.random.default_rng(1), 0) is image


def test_imagenet_geometry():
    pytest.importorskip("PIL")
    image = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    crop = augment.random_resized_crop(image, np.random.default_rng(2), 24)
    assert crop.shape == (24, 24, 3)
    assert crop.dtype == np.uint8
    resized = augment.resize_shorter_side(image, 20)
    assert resized.shape == (20, 35, 3)
    assert augment.centre_crop(resized, 20).shape == (20, 20, 3)
    gray = augment.resize_shorter_side(image[..., :1], 10)
    assert gray.shape == (10, 18, 1)


def test_normalize_per_channel():
    images = np.full((2, 3, 3, 2), 10, np.uint8)
    out = augment.normalize(images, np.array([10.0, 5.0]), np.array([1.0, 2.5]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], 0)
    np.testing.assert_allclose(out[..., 1], 2)


def test_prefetch_keeps_order_raises_and_stops():
    assert list(prefetch(range(10), size=3)) == list(range(10))

    def failing():
        yield 1
        raise RuntimeError("boom")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(it)

    produced = itertools.count()
    it = prefetch(produced, size=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    time.sleep(0.2)
    stopped_at = next(produced)
    time.sleep(0.2)
    assert next(produced) == stopped_at + 1  # the producer no longer advances
    assert not any(t.name == "snn_jax-prefetch" and t.is_alive() for t in threading.enumerate())
