"""Building blocks shared by the model zoo: the norm/neuron choice, input encoding, units.

Every model of :mod:`snn_jax.models` is built from three kinds of layer:

- a linear layer (conv or dense), run once over ``T*B`` examples by folding
  time into the batch (:func:`snn_jax.nn.fold_time`);
- a norm layer, one of :data:`NORMS`:

  - ``"tdbn"``: :class:`snn_jax.nn.TdBatchNorm` with the layer's ``alpha`` and the
    neurons' ``V_th``: ``y = scale * alpha * V_th * (x - mean) / sqrt(var + eps) + bias``;
  - ``"bn"``: ordinary batch norm, ``y = scale * (x - mean) / sqrt(var + eps) + bias``,
    with the same statistics (per channel over ``T``, ``B`` and space): a
    ``TdBatchNorm`` with ``alpha * V_th = 1``;
  - ``"none"``: no norm; the conv/dense layer then carries a bias;

- a neuron, one of :data:`NEURONS`: ``"lif"`` (:class:`snn_jax.nn.LIF`, scanned
  over ``T``; it sows its firing rate into ``intermediates``) or ``"relu"``.
  The LIF's reset (``"zero"`` or ``"subtract"``), per-channel thresholds and
  gradient (``"stbp"`` or spike-based BP's ``"aggregate"``) are settings too;
  ANN-to-SNN conversion (``snn_jax.conversion``) uses the last three.

``neuron="relu"``, ``norm="bn"``, ``time_steps=1`` is the ANN twin of a model:
the same layers and parameters, no time loop.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax import surrogate as surrogate_lib
from snn_jax.functional.compact import Currents, spike_conv_general_dilated
from snn_jax.functional.lif import RESETS
from snn_jax.nn import LIF, TdBatchNorm, direct_encode, fold_time, unfold_time
from snn_jax.nn.neurons import GRADIENTS, currents_conflicts

__all__ = [
    "MEMORY_OPTIONS",
    "NEURONS",
    "NORMS",
    "ConvUnit",
    "DenseUnit",
    "LayerFactory",
    "SpikingModel",
    "check_choice",
    "conv_init",
    "encode_input",
    "folded",
]

NORMS: tuple[str, ...] = ("tdbn", "bn", "none")
NEURONS: tuple[str, ...] = ("lif", "relu")
# "remat": recompute each block/unit in the backward pass instead of storing its activations.
# "compact": store spikes as bits and recompute membranes (snn_jax.functional.compact); for
# LIF neurons after a norm, with the hard reset, the STBP gradient and one threshold.
MEMORY_OPTIONS: tuple[str, ...] = ("none", "remat", "compact")


def conv_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Kaiming normal, fan_out (as torchvision's ResNets): suited to convs followed by a norm.

    The same values as ``nn.initializers.variance_scaling(2.0, "fan_out",
    "normal")`` (with either ``jax.threefry_partitionable`` setting), drawn as
    a flat vector and reshaped: with JAX 0.10's default (partitionable)
    threefry, XLA:CPU took 10 to 15 s to compile a 4-D ``jax.random.normal``
    (a 3x3x4x8 kernel), about 1 s for the flat one.
    """
    fan_out = shape[-1] * math.prod(shape[:-2])
    std = jnp.sqrt(jnp.array(2.0 / fan_out, dtype))
    return (jax.random.normal(key, (math.prod(shape),), dtype) * std).reshape(shape)


Array = jax.Array


def check_choice(what: str, value: Any, valid: Sequence[Any]) -> None:
    """Raises ``ValueError`` naming the valid values if ``value`` is not one of them."""
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(valid)}")


def folded(layer: nn.Module, x: Array, *args, **kwargs) -> Array:
    """``layer`` applied to ``[T, B, ...]`` once over ``T*B``: ``unfold(layer(fold(x)))``."""
    y, time_steps = fold_time(x)
    return unfold_time(layer(y, *args, **kwargs), time_steps)


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


def _spike_function(name: str, param: float | None) -> surrogate_lib.SpikeFunction:
    """``surrogate.get(name)`` with its one shape parameter (width/alpha/slope) set to ``param``."""
    check_choice("surrogate", name, surrogate_lib.NAMES)
    if param is None:
        return surrogate_lib.get(name)
    key = next(iter(inspect.signature(getattr(surrogate_lib, name)).parameters))
    return surrogate_lib.get(name, **{key: param})


@dataclasses.dataclass(frozen=True)
class LayerFactory:
    """Makes the conv/dense, norm and neuron layers of a model from its settings.

    Its methods are called inside a module's ``@nn.compact`` method; the layers
    they create belong to that module and take the given ``name``.

    Attributes:
      norm: one of :data:`NORMS`.
      neuron: one of :data:`NEURONS`.
      tau, v_th, surrogate, surrogate_param, detach_reset, unroll, reset,
        channel_threshold, gradient: LIF settings (``surrogate_param`` ``None``:
        the surrogate's default width/alpha/slope; see :class:`snn_jax.nn.LIF`).
      dtype: compute dtype of conv and dense layers. Norm outputs and membrane
        potentials stay float32.
      memory: one of :data:`MEMORY_OPTIONS`. With ``"compact"``, convs of
        spikes store their input as bits and ``normalize`` returns
        :class:`~snn_jax.functional.Currents` for the neuron (see
        :mod:`snn_jax.functional.compact`); ``"remat"`` is the models' business.
      axis_name: the norms' ``axis_name`` (see :class:`snn_jax.nn.TdBatchNorm`).
    """

    norm: str = "tdbn"
    neuron: str = "lif"
    tau: float = 0.25
    v_th: float = 0.5
    surrogate: str = "rectangular"
    surrogate_param: float | None = None
    detach_reset: bool = False
    unroll: int = 1
    dtype: Any = jnp.float32
    reset: str = "zero"
    channel_threshold: bool = False
    gradient: str = "stbp"
    memory: str = "none"
    axis_name: str | None = None

    def __post_init__(self):
        check_choice("norm", self.norm, NORMS)
        check_choice("neuron", self.neuron, NEURONS)
        check_choice("surrogate", self.surrogate, surrogate_lib.NAMES)
        check_choice("reset", self.reset, RESETS)
        check_choice("gradient", self.gradient, GRADIENTS)
        check_choice("memory option", self.memory, MEMORY_OPTIONS)
        if self.compact:
            layer = {"neuron='relu'": self.neuron != "lif", "norm='none'": self.norm == "none"}
            conflicts = [name for name, present in layer.items() if present]
            conflicts += currents_conflicts(
                reset=self.reset, channel_threshold=self.channel_threshold, gradient=self.gradient
            )
            if conflicts:
                names = ", ".join(conflicts)
                raise ValueError(
                    "memory='compact' needs LIF neurons after a norm, with the hard reset, one "
                    f"threshold and the STBP gradient; got {names}. Use memory='none' or 'remat'"
                )

    @property
    def compact(self) -> bool:
        return self.memory == "compact"

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
        conv_fn = spike_conv_general_dilated if spike_input and self.compact else None
        return nn.Conv(
            features,
            (kernel_size, kernel_size),
            strides=(strides, strides),
            padding=((pad, pad), (pad, pad)),
            use_bias=self.norm == "none",
            kernel_init=conv_init,
            dtype=self.dtype,
            conv_general_dilated=conv_fn,
            name=name,
        )

    def dense(self, features: int, *, name: str) -> nn.Dense:
        return nn.Dense(features, use_bias=self.norm == "none", dtype=self.dtype, name=name)

    def normalize(
        self, x: Array, train: bool, *, alpha: float = 1.0, name: str
    ) -> Array | Currents:
        """The norm layer on ``x`` ``[T, B, ..., C]`` (``alpha`` is used by tdBN only).

        With ``memory="compact"`` the result is ``Currents`` for :meth:`activate`.
        """
        if self.norm == "none":
            return x
        alpha, v_th = (alpha, self.v_th) if self.norm == "tdbn" else (1.0, 1.0)
        layer = TdBatchNorm(
            alpha=alpha, v_th=v_th, axis_name=self.axis_name, dtype=jnp.float32, name=name
        )
        if self.compact:
            factor, shift = layer(x, use_running_average=not train, return_affine=True)
            return Currents.affine(x, factor, shift)
        return layer(x, use_running_average=not train)

    def add_shortcut(self, y: Array | Currents, shortcut: Array | Currents) -> Array | Currents:
        """``y + shortcut`` before a residual block's neuron.

        With ``memory="compact"`` an identity shortcut is the block's input
        spikes, stored as bits.
        """
        if isinstance(y, Currents) and not isinstance(shortcut, Currents):
            return y.add_spikes(shortcut)
        return y + shortcut

    def activate(self, x: Array | Currents, *, name: str) -> Array:
        """The neuron on ``x`` ``[T, B, ...]``: LIF spikes (float32) or ReLU."""
        if self.neuron == "relu":
            return nn.relu(x)
        lif = LIF(
            tau=self.tau,
            v_th=self.v_th,
            surrogate=_spike_function(self.surrogate, self.surrogate_param),
            detach_reset=self.detach_reset,
            unroll=self.unroll,
            reset=self.reset,
            channel_threshold=self.channel_threshold,
            gradient=self.gradient,
            name=name,
        )
        return lif(x if isinstance(x, Currents) else x.astype(jnp.float32))


class ConvUnit(nn.Module):
    """``conv(k x k, stride) -> norm -> neuron`` on ``[T, B, H, W, C]``.

    Layers: ``conv``, ``norm``, ``lif``. ``spike_input``: the input is spikes
    (see :meth:`LayerFactory.conv`).
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
        x = self.layers.normalize(folded(conv, x), train, name="norm")
        return self.layers.activate(x, name="lif")


class DenseUnit(nn.Module):
    """``dense -> norm -> neuron`` on ``[T, B, F]``. Layers: ``dense``, ``norm``, ``lif``."""

    layers: LayerFactory
    features: int

    @nn.compact
    def __call__(self, x: Array, train: bool = True) -> Array:
        x = folded(self.layers.dense(self.features, name="dense"), x)
        x = self.layers.normalize(x, train, name="norm")
        return self.layers.activate(x, name="lif")


class SpikingModel(nn.Module):
    """Settings shared by every model of the zoo (a base class; not a model itself).

    Attributes:
      num_classes: outputs of the decoding layer.
      time_steps: ``T`` for static inputs (repeated over time); for time-major
        input ``[T, B, ...]`` ``None`` or equal to its ``T``.
      width: base number of channels.
      norm: ``"tdbn"``, ``"bn"`` or ``"none"`` (see :data:`NORMS`).
      neuron: ``"lif"`` or ``"relu"`` (see :data:`NEURONS`).
      tau: LIF leak.
      v_th: LIF threshold (and tdBN's ``V_th``).
      surrogate: surrogate gradient name (``snn_jax.surrogate.NAMES``).
      surrogate_param: its width/alpha/slope; ``None``: that surrogate's default.
      detach_reset: stop the gradient through the LIF reset.
      unroll: unroll factor of the LIF layers' time loops (``lif_scan``).
      memory: one of :data:`MEMORY_OPTIONS`: ``"none"``, ``"remat"`` (recompute
        blocks in the backward pass) or ``"compact"`` (spikes stored as bits,
        membranes recomputed: :mod:`snn_jax.functional.compact`).
      dtype: compute dtype of convs and dense layers.
      reset: LIF reset, ``"zero"`` (hard, default) or ``"subtract"``.
      channel_threshold: per-channel LIF thresholds, parameters ``v_th`` ``[C]``
        initialised to ``v_th`` (set by ANN-to-SNN conversion).
      gradient: ``"stbp"`` (default) or ``"aggregate"`` (spike-based BP, Lee et al. 2020).
      axis_name: for hand-written ``jax.shard_map`` (or ``pmap``) code over a
        split batch: the mapped axis over which every norm layer averages its
        batch statistics, so they are the global batch's. ``None`` (default)
        under ``jax.jit`` with a sharded batch, which already gives the global
        statistics; inside ``shard_map`` ``None`` means per-device statistics.
    """

    num_classes: int = 10
    time_steps: int | None = 4
    width: int = 64
    norm: str = "tdbn"
    neuron: str = "lif"
    tau: float = 0.25
    v_th: float = 0.5
    surrogate: str = "rectangular"
    surrogate_param: float | None = None
    detach_reset: bool = False
    unroll: int = 1
    memory: str = "none"
    dtype: Any = jnp.float32
    reset: str = "zero"
    channel_threshold: bool = False
    gradient: str = "stbp"
    axis_name: str | None = None

    def __post_init__(self):
        self.layer_factory()  # validates norm, neuron, surrogate and memory option early
        super().__post_init__()

    def layer_factory(self) -> LayerFactory:
        return LayerFactory(
            norm=self.norm,
            neuron=self.neuron,
            tau=self.tau,
            v_th=self.v_th,
            surrogate=self.surrogate,
            surrogate_param=self.surrogate_param,
            detach_reset=self.detach_reset,
            unroll=self.unroll,
            dtype=self.dtype,
            reset=self.reset,
            channel_threshold=self.channel_threshold,
            gradient=self.gradient,
            memory=self.memory,
            axis_name=self.axis_name,
        )

    def maybe_remat(self, cls: type[nn.Module]) -> type[nn.Module]:
        """``cls`` wrapped by ``nn.remat`` when ``memory == "remat"`` (``train`` is static)."""
        return nn.remat(cls, static_argnums=(2,)) if self.memory == "remat" else cls
