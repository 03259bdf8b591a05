"""Per-example image augmentation and normalisation in numpy, deterministic given a Generator.

Every function takes one example ``[H, W, C]`` (channels last) and, where it is
random, one ``np.random.Generator``: the pipeline gives each example its own
generator derived from ``(seed, epoch, index)``, so the result never depends on
batch composition or thread scheduling.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "centre_crop",
    "cutout",
    "normalize",
    "random_crop_flip",
    "random_resized_crop",
    "resize_shorter_side",
    "translate",
]


def random_crop_flip(
    image: np.ndarray, rng: np.random.Generator, *, padding: int, flip: bool
) -> np.ndarray:
    """Zero-pads ``padding`` pixels on each side, crops back to ``[H, W]``, maybe flips.

    Args:
      image: ``[H, W, C]``, any dtype (padding uses 0, black for uint8 pixels).
      rng: draws the crop offset (two integers), then the flip (one bit, only if
        ``flip``).
      padding: pixels of zero padding per side (0: no crop).
      flip: mirror left-right with probability 1/2.

    Returns:
      ``[H, W, C]`` of the same dtype.
    """
    if padding > 0:
        # The window at (top, left) of the padded image, without building it.
        top, left = rng.integers(0, 2 * padding + 1, size=2)
        image = translate(image, int(top) - padding, int(left) - padding)
    if flip and rng.integers(2):
        image = image[:, ::-1]
    return image


def translate(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[..., i, j, :] = image[..., i + dy, j + dx, :]``, zero where that is outside.

    Args:
      image: ``[..., H, W, C]`` (one image, or ``[T, H, W, C]`` frames).
      dy: row offset; a window starting ``dy`` rows lower (negative: higher).
      dx: column offset.

    Returns:
      A new array of the same shape and dtype.
    """
    h, w = image.shape[-3:-1]
    y0, y1 = min(max(dy, 0), h), min(max(h + dy, 0), h)
    x0, x1 = min(max(dx, 0), w), min(max(w + dx, 0), w)
    out = np.zeros_like(image)
    out[..., y0 - dy : y1 - dy, x0 - dx : x1 - dx, :] = image[..., y0:y1, x0:x1, :]
    return out


def cutout(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Sets a ``size x size`` square at a uniform random centre to 0 (DeVries & Taylor 2017).

    The square is clipped at the border. Apply after normalisation, so the
    square holds the data set mean.

    Args:
      image: ``[H, W, C]`` float.
      rng: draws the centre (two integers).
      size: side of the square in pixels (0: unchanged).

    Returns:
      ``[H, W, C]``, a copy if changed.
    """
    if size <= 0:
        return image
    h, w = image.shape[:2]
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    y0, y1 = max(0, cy - size // 2), min(h, cy - size // 2 + size)
    x0, x1 = max(0, cx - size // 2), min(w, cx - size // 2 + size)
    image = image.copy()
    image[y0:y1, x0:x1] = 0
    return image


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(images - mean) / std`` per channel in float32; ``mean``/``std`` in pixel units ``[C]``."""
    out = images.astype(np.float32)  # a copy, changed in place below
    out -= np.asarray(mean, np.float32)
    out /= np.asarray(std, np.float32)
    return out


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image  # optional dependency (snn-jax[data])

    pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return out.reshape(height, width, image.shape[-1])


def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> np.ndarray:
    """Inception-style crop: random area and aspect ratio, resized to ``size x size``.

    Tries ``attempts`` times to draw a box of area fraction in ``scale`` and
    log-uniform aspect ratio in ``ratio`` that fits; falls back to the largest
    centred box with a clipped aspect ratio (as torchvision does).

    Args:
      image: ``[H, W, C]`` uint8.
      rng: draws the box (up to four floats per attempt, two integers).
      size: output side.

    Returns:
      ``[size, size, C]`` uint8 (bilinear resize with PIL).
    """
    h, w = image.shape[:2]
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            break
    else:
        in_ratio = w / h
        if in_ratio < ratio[0]:
            cw, ch = w, round(w / ratio[0])
        elif in_ratio > ratio[1]:
            ch, cw = h, round(h * ratio[1])
        else:
            cw, ch = w, h
        top, left = (h - ch) // 2, (w - cw) // 2
    return _resize(image[top : top + ch, left : left + cw], size, size)


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes ``[H, W, C]`` uint8 so that ``min(H, W) == size``, keeping the aspect ratio."""
    h, w = image.shape[:2]
    if h <= w:
        return _resize(image, size, max(size, round(w * size / h)))
    return _resize(image, max(size, round(h * size / w)), size)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``[size, size, C]`` window of ``[H, W, C]`` (``H, W >= size``)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]
