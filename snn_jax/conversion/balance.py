"""Data-based threshold balancing: the activation scale ``lambda`` of each ReLU layer.

For an ANN layer with activations ``a = relu(z)`` on calibration data, the
scale is a robust maximum of ``a``: the ``p``-th percentile of its *positive*
values (Rueckauer et al. 2017; ``p = 100`` is the maximum of Diehl et al.
2015). Layer-wise, one ``lambda`` for the layer; channel-wise, one per
channel (the last axis) from that channel's positive values. Activations
above ``lambda`` are clipped by the converted neuron, which fires at most once
per step, so a percentile below 100 trades a little clipping for higher firing
rates of all the other neurons (less quantisation error at small ``T``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["activation_scale"]


def activation_scale(
    activations: np.ndarray, percentile: float = 99.9, channelwise: bool = False
) -> np.ndarray:
    """``lambda``: the ``percentile`` of the positive ``activations``, per layer or per channel.

    Args:
      activations: ReLU outputs ``[..., C]`` over calibration examples (channels last).
      percentile: in (0, 100]; NumPy's default (linear) interpolation between
        order statistics.
      channelwise: one scale per channel instead of one for the layer.

    Returns:
      float32 ``[C]`` (layer-wise: ``C`` equal values). A layer without any
      positive activation gets 1 (its neurons never fire, whatever the scale);
      channel-wise, a channel without one gets the layer's scale.

    >>> a = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]])       # 3 examples, 2 channels
    >>> activation_scale(a, 100.0).tolist()
    [4.0, 4.0]
    >>> activation_scale(a, 50.0).tolist()                        # median of 1, 2, 3, 4
    [2.5, 2.5]
    >>> activation_scale(a, 100.0, channelwise=True).tolist()
    [4.0, 3.0]
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    a = np.asarray(activations, np.float64)
    channels = a.shape[-1]
    a = a.reshape(-1, channels)
    positive = a[a > 0]
    layer = float(np.percentile(positive, percentile)) if positive.size else 1.0
    scale = np.full(channels, layer)
    if channelwise:
        for c in range(channels):
            column = a[:, c]
            column = column[column > 0]
            if column.size:
                scale[c] = np.percentile(column, percentile)
    return scale.astype(np.float32)
