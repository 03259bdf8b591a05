"""The neuron of a layer, declared once (:class:`NeuronSpec`), and the LIF layer that runs it."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional import lif as lif_lib
from snn_jax.functional import surrogate as surrogate_lib

__all__ = ["GRADIENTS", "IF", "KINDS", "LEARN", "LIF", "NeuronSpec"]

# "lif": the iterative LIF neuron (METHOD.md section 1); "relu": the ANN twin's activation.
KINDS: tuple[str, ...] = ("lif", "relu")
# "stbp": autodiff through the LIF with the surrogate (METHOD.md section 3);
# "aggregate": spike-based BP's gradient (Lee et al. 2020), snn_jax.functional.aggregate_gradient.
GRADIENTS: tuple[str, ...] = ("stbp", "aggregate")
# What a learnable leak or threshold is shared by: "none" (a constant), one value per
# "layer", or one per "channel" (the last axis). METHOD.md section 10.
LEARN: tuple[str, ...] = ("none", "layer", "channel")


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# (field, test, requirement): every setting's valid range, stated once.
_RULES: tuple[tuple[str, Any, str], ...] = (
    ("kind", lambda v: v in KINDS, f"must be one of {KINDS}"),
    ("tau", lambda v: _real(v) and 0 < v <= 1, "must be in (0, 1] (the leak; 1: no leak)"),
    ("v_th", lambda v: _real(v) and v > 0, "must be > 0 (the firing threshold, e.g. 0.5)"),
    ("reset", lambda v: v in lif_lib.RESETS, f"must be one of {lif_lib.RESETS}"),
    ("surrogate", lambda v: v in surrogate_lib.NAMES, f"must be one of {surrogate_lib.NAMES}"),
    (
        "surrogate_param",
        lambda v: v is None or (_real(v) and v > 0),
        "must be None (the surrogate's default) or > 0",
    ),
    ("gradient", lambda v: v in GRADIENTS, f"must be one of {GRADIENTS}"),
    ("detach_reset", lambda v: isinstance(v, bool), "must be True or False"),
    ("learn_tau", lambda v: v in LEARN, f"must be one of {LEARN} (a learned leak's sharing)"),
    (
        "learn_v_th",
        lambda v: v in LEARN,
        f"must be one of {LEARN} (a learned threshold's sharing)",
    ),
    ("channel_threshold", lambda v: isinstance(v, bool), "must be True or False"),
    (
        "unroll",
        lambda v: v is True or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "must be True or an integer >= 1",
    ),
)


def _problems(values: Mapping[str, Any], name: Callable[[str], str]) -> list[str]:
    """``"<name(field)> = <value>: <requirement>"`` for each bad value of ``values``."""
    lines = []
    for field, ok, requirement in _RULES:
        if field in values:
            try:
                good = ok(values[field])
            except TypeError:
                good = False
            if not good:
                lines.append(f"{name(field)} = {values[field]!r}: {requirement}")
    learn_tau = values.get("learn_tau", "none")
    if not lines and learn_tau != "none" and values.get("tau", 0.25) >= 1:
        lines.append(
            f"{name('learn_tau')} = {learn_tau!r}: needs an initial {name('tau')} < 1 "
            "(tau = sigmoid(tau_logit)); e.g. tau = 0.5"
        )
    learn_v_th = values.get("learn_v_th", "none")
    if not lines and learn_v_th != "none" and values.get("channel_threshold", False):
        lines.append(
            f"{name('learn_v_th')} = {learn_v_th!r}: conflicts with "
            f"{name('channel_threshold')} = True (a threshold set directly, as conversion does); "
            "choose one"
        )
    return lines


@dataclasses.dataclass(frozen=True)
class NeuronSpec:
    """Every setting of a layer's neurons, validated once when it is made.

    Models, their layers and :class:`LIF` take one ``NeuronSpec`` instead of
    a dozen loose fields; ``spec.replace(tau=1.0)`` derives another one.

    Attributes:
      kind: ``"lif"`` (spiking) or ``"relu"`` (the ANN twin).
      tau: leak in (0, 1] (1: integrate-and-fire). With ``learn_tau`` the
        initial value of a learned leak ``sigmoid(tau_logit)``, then < 1.
      v_th: firing threshold, > 0 (also tdBN's ``V_th``). With
        ``channel_threshold`` or ``learn_v_th`` the initial value of the
        learned thresholds.
      reset: ``"zero"``: ``u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]``;
        ``"subtract"``: ``u[t] = tau * (u[t-1] - v_th * o[t-1]) + x[t]``.
      surrogate: the surrogate gradient's name (``snn_jax.surrogate.NAMES``).
      surrogate_param: its shape parameter (``snn_jax.surrogate.SHAPE_PARAMETER``
        names it: width, alpha or slope); ``None``: the surrogate's default.
      detach_reset: stop the gradient through the reset term.
      gradient: one of :data:`GRADIENTS`.
      learn_tau: learn the leak (parametric LIF, Fang et al. 2021), one of
        :data:`LEARN`: ``"none"``, one per ``"layer"`` or per ``"channel"``;
        a parameter ``tau_logit`` with ``tau = sigmoid(tau_logit)`` in (0, 1).
      learn_v_th: learn the threshold, one of :data:`LEARN`; a parameter
        ``v_th_log`` with ``V_th = exp(v_th_log)`` > 0.
      channel_threshold: one threshold per channel (the last axis), a
        parameter ``v_th`` ``[C]``; ANN-to-SNN conversion sets it.
      unroll: unroll factor of the LIF time loop (a speed knob; ``True`` or
        ``>= T``: straight-line code).

    >>> NeuronSpec(tau=0.5).replace(reset="subtract").reset
    'subtract'
    >>> NeuronSpec(tau=1.5)
    Traceback (most recent call last):
    ...
    ValueError: NeuronSpec.tau = 1.5: must be in (0, 1] (the leak; 1: no leak)
    """

    kind: str = "lif"
    tau: float = 0.25
    v_th: float = 0.5
    reset: str = "zero"
    surrogate: str = "rectangular"
    surrogate_param: float | None = None
    detach_reset: bool = False
    gradient: str = "stbp"
    learn_tau: str = "none"
    learn_v_th: str = "none"
    channel_threshold: bool = False
    unroll: int | bool = 1

    def __post_init__(self):
        lines = _problems(dataclasses.asdict(self), lambda field: f"NeuronSpec.{field}")
        if lines:
            raise ValueError("; ".join(lines))

    def replace(self, **changes) -> NeuronSpec:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def spike_function(self) -> surrogate_lib.SpikeFunction:
        """The surrogate spike function of :attr:`surrogate` with :attr:`surrogate_param`."""
        if self.surrogate_param is None:
            return surrogate_lib.get(self.surrogate)
        key = surrogate_lib.SHAPE_PARAMETER[self.surrogate]
        return surrogate_lib.get(self.surrogate, **{key: self.surrogate_param})

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any]) -> NeuronSpec:
        """The spec of a training config's flat ``model`` section (``config.model``).

        ``model.neuron`` is the :attr:`kind`; the other fields keep their names
        (``model.tau``, ``model.v_th``, ...); absent ones take their defaults.
        Other keys of the section are ignored (they belong to the model).

        Raises:
          ValueError: one line per bad value, each naming its config key.

        >>> NeuronSpec.from_config({"name": "digits_cnn", "neuron": "lif", "tau": 0.5}).tau
        0.5
        >>> NeuronSpec.from_config({"neuron": "lif", "v_th": -1.0})
        Traceback (most recent call last):
        ...
        ValueError: config.model.v_th = -1.0: must be > 0 (the firing threshold, e.g. 0.5)
        """
        lines = cls.config_problems(model_config)
        if lines:
            raise ValueError("; ".join(lines))
        return cls(**_spec_fields(model_config))

    @staticmethod
    def config_problems(model_config: Mapping[str, Any]) -> list[str]:
        """The bad neuron values of a config's ``model`` section, one line each, naming the key."""
        return _problems(_spec_fields(model_config), _config_key)

    @staticmethod
    def config_keys() -> frozenset[str]:
        """The keys of a config's ``model`` section that :meth:`from_config` reads."""
        return frozenset(_config_key(f.name).removeprefix("config.model.") for f in _FIELDS)


def _config_key(field: str) -> str:
    return "config.model." + ("neuron" if field == "kind" else field)


def _spec_fields(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`NeuronSpec` fields given in a config's ``model`` section."""
    keys = {f.name: _config_key(f.name).removeprefix("config.model.") for f in _FIELDS}
    return {field: model_config[key] for field, key in keys.items() if key in model_config}


_FIELDS = dataclasses.fields(NeuronSpec)


class LIF(nn.Module):
    """A layer of LIF neurons on ``[T, B, ...]`` (METHOD.md section 1) set by a :class:`NeuronSpec`.

    Runs :func:`snn_jax.functional.lif_scan` (its hand-written STBP backward)
    with the spec's leak, threshold, reset and surrogate; the state starts at
    rest on every call, so there is no hidden memory to reset between batches.
    With ``spec.learn_tau`` the leak is a parameter ``tau_logit`` (``tau =
    sigmoid(tau_logit)``, shape ``()`` per layer or ``[C]`` per channel), with
    ``spec.learn_v_th`` the threshold a parameter ``v_th_log`` (``V_th =
    exp(v_th_log)``, same shapes); both go through the hand-written STBP
    backward, which sums their gradients over time (METHOD.md section 10).
    With ``spec.channel_threshold`` the thresholds are a parameter ``v_th``
    ``[C]`` used as they are (ANN-to-SNN conversion sets it).
    ``spec.gradient == "aggregate"`` gives the spikes spike-based BP's
    backward pass instead of STBP's.

    The layer sows each example's firing rate (the mean of its spikes over
    time and neurons, ``[B]``) as ``intermediates/firing_rate``.

    >>> x = jnp.full((3, 2, 4), 0.3)       # T=3, B=2, N=4
    >>> LIF().apply({}, x)[:, 0, 0]        # u = 0.3, 0.375, 0.39375: below V_th = 0.5
    Array([0., 0., 0.], dtype=float32)
    >>> LIF(NeuronSpec(tau=1.0)).apply({}, x)[:, 0, 0]   # 0.3, 0.6 fires, reset, 0.3
    Array([0., 1., 0.], dtype=float32)
    """

    spec: NeuronSpec = NeuronSpec()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self.spec
        if spec.kind != "lif":
            raise ValueError(f"LIF needs a NeuronSpec of kind 'lif', got {spec.kind!r}")
        if x.ndim < 2:
            raise ValueError(
                f"LIF expects a time-major input [T, B, ...] (ndim >= 2), got shape {x.shape}"
            )
        tau, v_th = spec.tau, spec.v_th
        shapes = {"layer": (), "channel": (x.shape[-1],)}
        if spec.learn_tau != "none":
            logit = math.log(spec.tau / (1 - spec.tau))
            init = nn.initializers.constant(logit)
            tau_logit = self.param("tau_logit", init, shapes[spec.learn_tau], jnp.float32)
            tau = jax.nn.sigmoid(tau_logit)
        if spec.learn_v_th != "none":
            init = nn.initializers.constant(math.log(spec.v_th))
            v_th = jnp.exp(self.param("v_th_log", init, shapes[spec.learn_v_th], jnp.float32))
        if spec.channel_threshold:
            init = nn.initializers.constant(spec.v_th)
            v_th = self.param("v_th", init, (x.shape[-1],), jnp.float32)
        spikes = lif_lib.lif_scan(
            x,
            tau=tau,
            v_th=v_th,
            surrogate=spec.spike_function,
            detach_reset=spec.detach_reset,
            reset=spec.reset,
            unroll=spec.unroll,
        )
        if spec.gradient == "aggregate":
            spikes = lif_lib.aggregate_gradient(x, spikes, v_th)
        self.record(spikes)
        return spikes

    def record(self, spikes: jax.Array) -> None:
        """Sows each example's firing rate of ``spikes`` ``[T, B, ...]`` (``[B]``).

        A call does it; a unit that computes this layer's spikes by a fused
        kernel (:class:`snn_jax.nn.NormNeuron` with ``compact``) calls it so
        that the rates are found at the same path either way.
        """
        self.sow("intermediates", "firing_rate", rate_per_example(spikes))


def rate_per_example(spikes: jax.Array) -> jax.Array:
    """``[B]``: each example's mean of ``spikes`` ``[T, B, ...]`` over time and neurons."""
    t, b = spikes.shape[:2]
    return jnp.mean(jnp.mean(spikes.astype(jnp.float32).reshape(t, b, -1), axis=-1), axis=0)


IF = functools.partial(LIF, spec=NeuronSpec(tau=1.0))
IF.__doc__ = "Integrate-and-fire neuron layer: :class:`LIF` with ``tau = 1`` (no leak)."
