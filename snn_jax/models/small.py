"""A small spiking CNN for 8x8 images (scikit-learn digits), the default job's model.

``conv3x3(width) -> norm -> lif -> conv3x3(2*width) -> norm -> lif -> avgpool 2x2
-> flatten -> FC(hidden) -> norm -> lif -> decoder Q = mean_t(M o_t)``.

With the defaults (width 16, hidden 128) it has 71,930 parameters;
``experiments/configs/digits.py`` trains it (T = 4; measured accuracies in the README).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from snn_jax.models.layers import ConvUnit, DenseUnit, SpikingModel, encode_input
from snn_jax.nn import MeanDecoder

__all__ = ["DigitsCNN"]


def _avg_pool_2x2(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DigitsCNN(SpikingModel):
    """Small spiking CNN: two conv units, an average pool, a hidden dense unit, the decoder.

    The pool averages spikes, so the dense unit receives rates in {0, 1/4, ..., 1}.

    Attributes (besides :class:`~snn_jax.models.layers.SpikingModel`'s):
      hidden_features: width of the hidden dense unit.

    Variable paths: ``conv1``, ``conv2`` and ``fc`` (each ``{conv|dense, neuron/norm}``),
    ``decoder/readout``.

    >>> import jax, jax.numpy as jnp
    >>> model = DigitsCNN(width=4, hidden_features=8, time_steps=3)
    >>> x = jnp.ones((2, 8, 8, 1))                       # B=2 digits
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
    (2, 10)
    >>> variables["params"]["fc"]["dense"]["kernel"].shape      # 4x4 pooled map, 8 channels
    (128, 8)
    """

    width: int = 16
    hidden_features: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        layers = self.layer_factory()
        x = encode_input(x, self.time_steps, 3)
        unit = self.maybe_remat(ConvUnit)
        x = unit(layers, self.width, 3, 1, name="conv1")(x, train)
        x = unit(layers, 2 * self.width, 3, 1, spike_input=True, name="conv2")(x, train)
        x = layers.fold(_avg_pool_2x2, x)
        x = x.reshape(*x.shape[:2], -1)  # flatten: [T, B, H*W*C]
        x = self.maybe_remat(DenseUnit)(layers, self.hidden_features, name="fc")(x, train)
        return MeanDecoder(self.num_classes, dtype=self.dtype, name="decoder")(x)
