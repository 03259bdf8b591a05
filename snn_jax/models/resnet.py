"""Spiking ResNets of the tdBN paper (Zheng et al. 2021; METHOD.md section 6).

Basic block (:class:`BasicBlock`)::

    o ─ conv3x3(s) ─ norm ─ lif ─ conv3x3 ─ norm(alpha=1/sqrt2) ─┐
    └──────── identity, or conv1x1(s) ─ norm(alpha=1/sqrt2) ─────(+)─ lif

The sum of the two branches enters the LIF neuron (the add happens before the
spike): the norms, the add and the neuron are one :class:`snn_jax.nn.NormNeuron`.
Identity shortcuts (same shape) carry no norm. The bottleneck block
(:class:`BottleneckBlock`, ResNet-50) is ``1x1 -> 3x3(s) -> 1x1 (4x channels)``
with ``alpha = 1/sqrt2`` on the last norm and on the projection shortcut (the
stride sits on the 3x3 conv, as torchvision's ResNet v1.5).

Layouts. Stage ``i`` (0-based) of a ResNet has ``width * 2**i`` channels
(``4 *`` that at the output of a bottleneck) and stride 2 except the first.

- CIFAR stem: ``conv3x3(width) -> norm -> lif``; then the stages, a global
  average pool, optionally a hidden ``FC -> norm -> lif`` layer, and the
  decoding layer ``Q = mean_t(M o_t)`` (:class:`snn_jax.nn.MeanDecoder`).
- ImageNet stem: ``conv7x7/2(width) -> norm -> lif -> maxpool 3x3/2``; no hidden FC.

Named variants (the depth counts the stem, the block convs, the hidden FC and
the decoder; not the 1x1 projection shortcuts):

- ``ResNet19`` (CIFAR): width 128, stages (3, 3, 2) of 128/256/512 channels,
  hidden FC 256: 1 + 16 + 1 + 1 = 19 layers. At CIFAR size (32x32x3) with 10
  classes it has 12,698,250 parameters: conv kernels 12,553,600 (3 of them 1x1
  projections), tdBN scale and bias 10,496, hidden FC 131,072 and its tdBN 512,
  decoder 2,570 (``tests/test_models.py`` sums them layer by layer). The figure
  usually quoted for the paper's ResNet-19 is about 12.6 M (not confirmed
  against the paper): a count without the norm parameters and the hidden FC's
  norm gives 12.69 M, the conv kernels alone 12.55 M; the paper's exact FC and
  norm bookkeeping is not known.
- ``ResNet17`` (DVS): the ResNet-19 family with one block fewer in the second
  stage: width 128, stages (3, 2, 2), hidden FC 256: 1 + 14 + 1 + 1 = 17 layers.
  *Our choice*: the paper's exact layout is not confirmed. Event frames enter
  time-major ``[T, B, H, W, 2]``; downsample them (e.g. to 32x32 or 64x64) in
  the data pipeline, as the stem keeps the resolution.
- ``ResNet18``, ``ResNet34`` (basic) and ``ResNet50`` (bottleneck), ImageNet:
  torchvision's layouts (width 64, stages (2, 2, 2, 2), (3, 4, 6, 3),
  (3, 4, 6, 3)) with tdBN + LIF. With 1000 classes their parameter counts equal
  torchvision's exactly (11,689,512 / 21,797,672 / 25,557,032): tdBN's
  ``scale`` and ``bias`` take the place of BN's weight and bias.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.models.layers import (
    Block,
    ConvUnit,
    DenseUnit,
    LayerFactory,
    SpikingModel,
    check_choice,
    encode_input,
)
from snn_jax.nn import MeanDecoder

__all__ = [
    "STEMS",
    "BasicBlock",
    "BottleneckBlock",
    "ResNet17",
    "ResNet18",
    "ResNet19",
    "ResNet34",
    "ResNet50",
    "SpikingResNet",
]

Array = jax.Array
ModuleDef = Any

STEMS: tuple[str, ...] = ("cifar", "imagenet")

# tdBN's alpha for each of the two branches summed before a spiking neuron.
RESIDUAL_ALPHA = 1 / math.sqrt(2)


def _shortcut(
    lay: LayerFactory, x: Array, features: int, strides: int
) -> tuple[tuple[Array, ...], Array | None]:
    """``(currents, spikes)`` the shortcut adds before the block's last neuron.

    Identity (no currents; the block's input spikes) if the shape is kept, else
    the current of ``conv1x1(strides)`` (normalized by the unit, alpha 1/sqrt2).
    """
    if strides == 1 and x.shape[-1] == features:
        return (), x
    conv = lay.conv(features, 1, strides, spike_input=True, name="shortcut_conv")
    return (lay.fold(conv, x),), None


def _residual_unit(lay: LayerFactory, y: Array, x: Array, features: int, strides: int, name: str):
    """The block's last unit: ``neuron(norm(y) + shortcut(x))`` (both norms with alpha 1/sqrt2)."""
    currents, spikes = _shortcut(lay, x, features, strides)
    unit = lay.unit(
        (RESIDUAL_ALPHA,) * (1 + len(currents)),
        ("norm", "shortcut_norm")[: 1 + len(currents)],
        name=name,
    )
    return unit, (y, *currents), spikes


class BasicBlock(Block):
    """Spiking basic block on ``[T, B, H, W, C]`` (see the module docstring).

    Layers: ``conv1``, ``neuron1`` (``norm``, ``lif``), ``conv2``, ``shortcut_conv``
    (projection only), ``neuron2`` (``norm`` and, with a projection,
    ``shortcut_norm``, both alpha 1/sqrt2; ``lif`` after the add).
    """

    layers: LayerFactory
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        lay = self.layers
        conv1 = lay.conv(self.features, 3, self.strides, spike_input=True, name="conv1")
        h = lay.unit(name="neuron1")(lay.fold(conv1, x), train=train, inputs=x)
        y = lay.fold(lay.conv(self.features, 3, spike_input=True, name="conv2"), h)
        unit, currents, spikes = _residual_unit(lay, y, x, self.features, self.strides, "neuron2")
        return unit(*currents, spikes=spikes, train=train, inputs=h)


class BottleneckBlock(Block):
    """Spiking bottleneck block: ``1x1 -> 3x3(s) -> 1x1 (4 * features)``, then add and LIF.

    Layers: ``conv1..3``, ``neuron1``, ``neuron2``, ``shortcut_conv`` (projection
    only), ``neuron3`` (its norms with alpha 1/sqrt2, the add, then ``lif``).
    """

    layers: LayerFactory
    features: int
    strides: int = 1
    expansion: int = 4

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        lay = self.layers
        out = self.features * self.expansion
        y = lay.fold(lay.conv(self.features, 1, spike_input=True, name="conv1"), x)
        h1 = lay.unit(name="neuron1")(y, train=train, inputs=x)
        conv2 = lay.conv(self.features, 3, self.strides, spike_input=True, name="conv2")
        h2 = lay.unit(name="neuron2")(lay.fold(conv2, h1), train=train, inputs=h1)
        y = lay.fold(lay.conv(out, 1, spike_input=True, name="conv3"), h2)
        unit, currents, spikes = _residual_unit(lay, y, x, out, self.strides, "neuron3")
        return unit(*currents, spikes=spikes, train=train, inputs=h2)


class SpikingResNet(SpikingModel):
    """A spiking ResNet: ``[B, H, W, C]`` images or ``[T, B, H, W, C]`` frames to logits.

    Static images are repeated over ``time_steps`` (direct encoding; the stem is
    the encoder). Convs, pools and dense layers run once over ``T*B``; LIF
    layers scan over ``T``; the decoder averages ``M o_t`` over time.

    Attributes (besides :class:`~snn_jax.models.layers.SpikingModel`'s):
      stage_sizes: blocks per stage.
      block_cls: :class:`BasicBlock` or :class:`BottleneckBlock`.
      stem: ``"cifar"`` (conv3x3) or ``"imagenet"`` (conv7x7/2 + maxpool 3x3/2).
      hidden_features: width of the hidden ``FC -> norm -> lif`` layer before
        the decoder (``None``: none).

    Variable paths: ``stem/{conv,neuron/norm}``, ``stage{i}_block{j}/...`` (1-based),
    ``fc/{dense,neuron/norm}``, ``decoder/readout``.

    >>> import jax, jax.numpy as jnp
    >>> model = ResNet19(num_classes=10, width=4, time_steps=2)
    >>> x = jnp.ones((3, 8, 8, 3))                       # B=3 static images
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
    (3, 10)
    >>> variables["params"]["stage2_block1"]["shortcut_conv"]["kernel"].shape
    (1, 1, 4, 8)
    """

    stage_sizes: Sequence[int] = (3, 3, 2)
    block_cls: ModuleDef = BasicBlock
    stem: str = "cifar"
    hidden_features: int | None = None

    def __post_init__(self):
        check_choice("stem", self.stem, STEMS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        layers = self.layer_factory()
        x = encode_input(x, self.time_steps, 3)
        stem = self.maybe_remat(ConvUnit)
        if self.stem == "cifar":
            x = stem(layers, self.width, 3, name="stem")(x, train)
        else:
            x = stem(layers, self.width, 7, 2, name="stem")(x, train)
            pool = functools.partial(
                nn.max_pool, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
            )
            x = layers.fold(pool, x)
        block_cls = self.maybe_remat(self.block_cls)
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                block = block_cls(
                    layers, self.width * 2**i, strides, name=f"stage{i + 1}_block{j + 1}"
                )
                x = block(x, train)
        x = jnp.mean(x, axis=(2, 3))  # global average pool: [T, B, C]
        if self.hidden_features is not None:
            x = self.maybe_remat(DenseUnit)(layers, self.hidden_features, name="fc")(x, train)
        return MeanDecoder(self.num_classes, dtype=self.dtype, name="decoder")(x)


ResNet19 = functools.partial(SpikingResNet, stage_sizes=(3, 3, 2), width=128, hidden_features=256)
ResNet17 = functools.partial(SpikingResNet, stage_sizes=(3, 2, 2), width=128, hidden_features=256)
ResNet18 = functools.partial(SpikingResNet, stage_sizes=(2, 2, 2, 2), stem="imagenet")
ResNet34 = functools.partial(SpikingResNet, stage_sizes=(3, 4, 6, 3), stem="imagenet")
ResNet50 = functools.partial(
    SpikingResNet, stage_sizes=(3, 4, 6, 3), stem="imagenet", block_cls=BottleneckBlock
)
