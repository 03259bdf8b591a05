"""A plain (no shortcut) deep spiking CNN of configurable depth.

The network of the tdBN paper's depth experiment: a chain of ``depth``
``conv3x3 -> norm -> neuron`` units (:class:`~snn_jax.models.layers.ConvUnit`)
without shortcuts, where gradient norms explode or vanish without tdBN and stay
flat with it (METHOD.md section 8; ``experiments/gradient_norm.py``).

Layout: the units are split into up to ``num_stages`` stages as evenly as
possible (earlier stages take the remainder); stage ``i`` (0-based) has
``width * 2**i`` channels and its first unit has stride 2 (except stage 0).
Then a global average pool and the decoding layer ``Q = mean_t(M o_t)``.
E.g. ``depth=20`` gives stages of (7, 7, 6) units.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.models.layers import ConvUnit, SpikingModel, encode_input
from snn_jax.nn import MeanDecoder

__all__ = ["PlainCNN", "plain_stage_sizes"]


def plain_stage_sizes(depth: int, num_stages: int = 3) -> tuple[int, ...]:
    """``depth`` units split into ``min(depth, num_stages)`` stages, earlier ones larger.

    >>> plain_stage_sizes(20), plain_stage_sizes(4), plain_stage_sizes(2)
    ((7, 7, 6), (2, 1, 1), (1, 1))
    """
    if depth < 1 or num_stages < 1:
        raise ValueError(f"depth and num_stages must be >= 1, got {depth} and {num_stages}")
    n = min(depth, num_stages)
    return tuple(depth // n + (1 if i < depth % n else 0) for i in range(n))


class PlainCNN(SpikingModel):
    """Plain spiking CNN: ``depth`` conv units, global average pool, decoder.

    Attributes (besides :class:`~snn_jax.models.layers.SpikingModel`'s):
      depth: number of conv units (conv layers).
      num_stages: stages of doubling width and halving resolution.

    Variable paths: ``unit{k}/{conv,neuron/norm}`` for ``k = 1..depth``, ``decoder/readout``.

    >>> import jax, jax.numpy as jnp
    >>> model = PlainCNN(depth=4, width=4, time_steps=3)
    >>> x = jnp.ones((2, 8, 8, 1))                       # B=2 static images
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> sorted(variables["params"])
    ['decoder', 'unit1', 'unit2', 'unit3', 'unit4']
    """

    depth: int = 20
    num_stages: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        layers = self.layer_factory()
        x = encode_input(x, self.time_steps, 3)
        unit = self.maybe_remat(ConvUnit)
        k = 0
        for i, size in enumerate(plain_stage_sizes(self.depth, self.num_stages)):
            for j in range(size):
                k += 1
                strides = 2 if i > 0 and j == 0 else 1
                x = unit(layers, self.width * 2**i, 3, strides, spike_input=k > 1, name=f"unit{k}")(
                    x, train
                )
        x = jnp.mean(x, axis=(2, 3))  # global average pool: [T, B, C]
        return MeanDecoder(self.num_classes, dtype=self.dtype, name="decoder")(x)
