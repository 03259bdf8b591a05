"""Building blocks shared by the model zoo: input encoding, layers, units, shared settings.

Every model of :mod:`snn_jax.models` is built from two kinds of layer:

- a linear layer (conv or dense), run once over ``T*B`` examples by folding
  time into the batch (:func:`snn_jax.nn.fold_time`);
- a :class:`snn_jax.nn.NormNeuron` after it: the norm (one of
  :data:`snn_jax.nn.NORMS`: ``"tdbn"``, ``"bn"``, ``"tebn"``, ``"bntt"`` or ``"none"``, in which
  case the linear layer carries a bias) and the neuron (a
  :class:`snn_jax.nn.NeuronSpec`: LIF, scanned over ``T``, or ReLU).

``neuron=NeuronSpec(kind="relu")``, ``norm="bn"``, ``time_steps=1`` is the ANN
twin of a model: the same layers and parameters, no time loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional.compact import spike_conv_general_dilated
from snn_jax.nn import NORMS, NeuronSpec, NormNeuron, direct_encode, fold_time, unfold_time
from snn_jax.nn.norm_neuron import ATTENTIONS, SQUEEZES, check_compact

__all__ = [
    "MEMORY_OPTIONS",
    "Block",
    "ConvUnit",
    "DenseUnit",
    "LayerFactory",
    "SpikingModel",
    "check_choice",
    "conv_init",
    "encode_input",
    "folded",
]

# "remat": recompute each block/unit in the backward pass instead of storing its activations.
# "compact": convs of spikes keep their input as bits and the NormNeuron units recompute
# their membranes (snn_jax.nn.NormNeuron); for LIF neurons after a norm, with the hard reset,
# the STBP gradient and one constant leak and threshold.
MEMORY_OPTIONS: tuple[str, ...] = ("none", "remat", "compact")


def conv_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Kaiming normal, fan_out (as torchvision's ResNets): suited to convs followed by a norm.

    The same values as ``nn.initializers.variance_scaling(2.0, "fan_out",
    "normal")``, drawn as a flat vector and reshaped, because XLA:CPU compiles
    a flat ``jax.random.normal`` far faster than a 4-D one with JAX's default
    (partitionable) threefry.
    """
    fan_out = shape[-1] * math.prod(shape[:-2])
    std = jnp.sqrt(jnp.array(2.0 / fan_out, dtype))
    return (jax.random.normal(key, (math.prod(shape),), dtype) * std).reshape(shape)


Array = jax.Array


def check_choice(what: str, value: Any, valid: Sequence[Any]) -> None:
    """Raises ``ValueError`` naming the valid values if ``value`` is not one of them."""
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(valid)}")


def folded(layer, x: Array, shards: int = 1) -> Array:
    """``layer`` applied to ``[T, B, ...]`` once over ``T*B``: ``unfold(layer(fold(x)))``.

    ``shards``: the devices the batch is split over (see :mod:`snn_jax.nn.folding`).
    """
    y, time_steps = fold_time(x, shards)
    return unfold_time(layer(y), time_steps, shards)


def encode_input(x: Array, time_steps: int | None, example_ndim: int) -> Array:
    """A model input as time-major ``[T, B, ...]``.

    Args:
      x: a static batch ``[B, *example]`` (``example_ndim + 1`` axes), repeated
        over ``time_steps`` (direct encoding), or time-major frames
        ``[T, B, *example]`` used as they are.
      time_steps: ``T``; for time-major input ``None`` or equal to ``x.shape[0]``.
      example_ndim: axes of one example, e.g. 3 for ``[H, W, C]``.

    Raises:
      ValueError: on a wrong rank, a static input without ``time_steps``, or
        time-major input whose ``T`` differs from ``time_steps``.
    """
    static, time_major = example_ndim + 1, example_ndim + 2
    if x.ndim == static:
        if time_steps is None:
            raise ValueError(
                f"a static input of shape {x.shape} is repeated over time_steps, which is None; "
                "set time_steps (e.g. 4) or pass time-major input [T, B, ...]"
            )
        return direct_encode(x, time_steps)
    if x.ndim == time_major:
        if time_steps is not None and time_steps != x.shape[0]:
            raise ValueError(
                f"time-major input of shape {x.shape} has T = {x.shape[0]} steps but the model "
                f"has time_steps = {time_steps}; set time_steps to {x.shape[0]} or None"
            )
        return x
    raise ValueError(
        f"expected a static batch of ndim {static} ([B, H, W, C]) or time-major frames of "
        f"ndim {time_major} ([T, B, H, W, C]), got shape {x.shape} (ndim {x.ndim})"
    )


@dataclasses.dataclass(frozen=True)
class LayerFactory:
    """Makes a model's conv/dense layers and :class:`~snn_jax.nn.NormNeuron` units.

    Its methods are called inside a module's ``@nn.compact`` method; the layers
    they create belong to that module and take the given ``name``.

    Attributes:
      neuron: the neurons' :class:`~snn_jax.nn.NeuronSpec`.
      norm: one of :data:`snn_jax.nn.NORMS`.
      memory: one of :data:`MEMORY_OPTIONS`; ``"compact"`` is applied here
        (bit-stored conv inputs, compact units), ``"remat"`` by the models.
      dtype: compute dtype of conv and dense layers. Norm outputs and membrane
        potentials stay float32.
      axis_name: the norms' ``axis_name`` (see :class:`snn_jax.nn.TdBatchNorm`).
      batch_shards: the devices the batch is split over (time folding's row order).
      attention: one of :data:`snn_jax.nn.norm_neuron.ATTENTIONS`, in every unit
        (see :class:`~snn_jax.nn.NormNeuron`).
      attention_reduction: the attention's reduction ``r`` (``1 <= r <= T``).
      discard_threshold: the attention's pruning threshold at evaluation, or ``None``.
      attention_squeeze: what the attention's squeeze averages (one of
        :data:`snn_jax.nn.norm_neuron.SQUEEZES`); the units pass their input.
    """

    neuron: NeuronSpec = NeuronSpec()
    norm: str = "tdbn"
    memory: str = "none"
    dtype: Any = jnp.float32
    axis_name: str | None = None
    batch_shards: int = 1
    attention: str = "none"
    attention_reduction: int = 1
    discard_threshold: float | None = None
    attention_squeeze: str = "current"

    def __post_init__(self):
        check_choice("norm", self.norm, NORMS)
        check_choice("attention squeeze", self.attention_squeeze, SQUEEZES)
        check_choice("memory option", self.memory, MEMORY_OPTIONS)
        check_choice("attention", self.attention, ATTENTIONS)
        if self.memory == "compact" and self.attention != "none":
            raise ValueError(
                "memory='compact' does not support attention (the compact kernel recomputes "
                "the membranes from the unscaled currents); use memory='none' or 'remat'"
            )
        if not isinstance(self.neuron, NeuronSpec):
            raise TypeError(
                f"neuron must be a snn_jax.nn.NeuronSpec, got {self.neuron!r}; e.g. "
                "NeuronSpec(kind='relu') for the ANN twin"
            )
        if self.memory == "compact":
            check_compact(self.neuron, self.norm)

    def conv(
        self,
        features: int,
        kernel_size: int,
        strides: int = 1,
        *,
        spike_input: bool = False,
        name: str,
    ) -> nn.Conv:
        """A square conv with symmetric padding ``(k - 1) // 2`` (as torchvision).

        ``spike_input``: the conv's input is spikes (a LIF layer's output); with
        ``memory="compact"`` it is then stored as bits for the backward pass.
        """
        pad = (kernel_size - 1) // 2
        compact = spike_input and self.memory == "compact"
        return nn.Conv(
            features,
            (kernel_size, kernel_size),
            strides=(strides, strides),
            padding=((pad, pad), (pad, pad)),
            use_bias=self.norm == "none",
            kernel_init=conv_init,
            dtype=self.dtype,
            conv_general_dilated=spike_conv_general_dilated if compact else None,
            name=name,
        )

    def dense(self, features: int, *, name: str) -> nn.Dense:
        return nn.Dense(features, use_bias=self.norm == "none", dtype=self.dtype, name=name)

    def fold(self, layer, x: Array) -> Array:
        """``layer`` over ``[T, B, ...]`` with time folded into the batch (:func:`folded`)."""
        return folded(layer, x, self.batch_shards)

    def unit(
        self,
        alphas: Sequence[float] = (1.0,),
        norm_names: Sequence[str] = ("norm",),
        *,
        name: str,
    ) -> NormNeuron:
        """The norm(s) and neuron after one or more linear layers (one per alpha)."""
        return NormNeuron(
            self.neuron,
            self.norm,
            tuple(alphas),
            tuple(norm_names),
            compact=self.memory == "compact",
            axis_name=self.axis_name,
            attention=self.attention,
            attention_reduction=self.attention_reduction,
            discard_threshold=self.discard_threshold,
            attention_squeeze=self.attention_squeeze,
            name=name,
        )


class Block(nn.Module):
    """Marks a module as one block of a network: a unit of depth for the analyses.

    :func:`snn_jax.inspect.is_block` accepts exactly the instances of this
    class: the residual blocks and the conv/dense units of the zoo inherit it,
    and so can a user's own block (``class MyBlock(Block): ...``). It adds no
    field and no behaviour.
    """


class ConvUnit(Block):
    """``conv(k x k, stride) -> norm -> neuron`` on ``[T, B, H, W, C]``.

    Layers: ``conv`` and ``neuron`` (a :class:`~snn_jax.nn.NormNeuron`: ``norm``,
    ``lif``). ``spike_input``: the input is spikes (see :meth:`LayerFactory.conv`).
    """

    layers: LayerFactory
    features: int
    kernel_size: int = 3
    strides: int = 1
    spike_input: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        lay = self.layers
        conv = lay.conv(
            self.features, self.kernel_size, self.strides, spike_input=self.spike_input, name="conv"
        )
        return lay.unit(name="neuron")(lay.fold(conv, x), train=train, inputs=x)


class DenseUnit(Block):
    """``dense -> norm -> neuron`` on ``[T, B, F]``. Layers: ``dense``, ``neuron``."""

    layers: LayerFactory
    features: int

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        lay = self.layers
        return lay.unit(name="neuron")(
            lay.fold(lay.dense(self.features, name="dense"), x), train=train, inputs=x
        )


class SpikingModel(nn.Module):
    """Settings shared by every model of the zoo (a base class; not a model itself).

    Attributes:
      num_classes: outputs of the decoding layer.
      time_steps: ``T`` for static inputs (repeated over time); for time-major
        input ``[T, B, ...]`` ``None`` or equal to its ``T``.
      width: base number of channels.
      neuron: the neurons' :class:`~snn_jax.nn.NeuronSpec` (leak, threshold,
        reset, surrogate, ...; ``NeuronSpec(kind="relu")`` for the ANN twin).
        tdBN's ``V_th`` is the neurons' ``v_th``.
      norm: ``"tdbn"``, ``"bn"``, ``"tebn"``, ``"bntt"`` or ``"none"`` (see
        :data:`snn_jax.nn.NORMS`).
      memory: one of :data:`MEMORY_OPTIONS`: ``"none"``, ``"remat"`` (recompute
        blocks in the backward pass) or ``"compact"`` (spikes stored as bits,
        membranes recomputed: :class:`snn_jax.nn.NormNeuron`).
      dtype: compute dtype of convs and dense layers.
      axis_name: for hand-written ``jax.shard_map`` (or ``pmap``) code over a
        split batch: the mapped axis over which every norm layer averages its
        batch statistics, so they are the global batch's. ``None`` (default)
        under ``jax.jit`` with a sharded batch, which already gives the global
        statistics; inside ``shard_map`` ``None`` means per-device statistics.
      batch_shards: the number of devices the batch is split over under
        ``jax.jit`` (the training loop sets it from its mesh): time is then
        folded into the batch per device, so each device computes only its
        own examples. Any value gives the same result.
      attention: ``"none"`` or ``"temporal"``: TA-SNN's temporal-wise
        attention in every unit, after the norm and before the neuron
        (:class:`snn_jax.nn.NormNeuron`; not with ``memory="compact"``).
      attention_reduction: its reduction ``r``, ``1 <= r <= T``.
      discard_threshold: its pruning threshold at evaluation (``None``: no pruning).
      attention_squeeze: ``"current"`` (the official rule: the squeeze averages
        the normalized currents) or ``"input"`` (the unit's input spikes/frames).
    """

    num_classes: int = 10
    time_steps: int | None = 4
    width: int = 64
    neuron: NeuronSpec = NeuronSpec()
    norm: str = "tdbn"
    memory: str = "none"
    dtype: Any = jnp.float32
    axis_name: str | None = None
    batch_shards: int = 1
    attention: str = "none"
    attention_reduction: int = 1
    discard_threshold: float | None = None
    attention_squeeze: str = "current"

    def __post_init__(self):
        self.layer_factory()  # validates norm, neuron and memory option early
        super().__post_init__()

    def layer_factory(self) -> LayerFactory:
        return LayerFactory(
            neuron=self.neuron,
            norm=self.norm,
            memory=self.memory,
            dtype=self.dtype,
            axis_name=self.axis_name,
            batch_shards=self.batch_shards,
            attention=self.attention,
            attention_reduction=self.attention_reduction,
            discard_threshold=self.discard_threshold,
            attention_squeeze=self.attention_squeeze,
        )

    def maybe_remat(self, cls: type[nn.Module]) -> type[nn.Module]:
        """``cls`` wrapped by ``nn.remat`` when ``memory == "remat"`` (``train`` is static)."""
        return nn.remat(cls, static_argnums=(2,)) if self.memory == "remat" else cls
