"""Spiking neuron layers (Flax linen) over time-major inputs ``[T, B, ...]``."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional import compact
from snn_jax.functional import lif as lif_lib
from snn_jax.functional import surrogate as surrogate_lib

__all__ = ["GRADIENTS", "IF", "LIF", "currents_conflicts"]

GRADIENTS: tuple[str, ...] = ("stbp", "aggregate")


def currents_conflicts(
    *, reset: str, channel_threshold: bool, gradient: str, learn_tau: bool = False
) -> list[str]:
    """The LIF settings a layer fed by :class:`snn_jax.functional.Currents` cannot have.

    >>> currents_conflicts(reset="subtract", channel_threshold=False, gradient="stbp")
    ["reset='subtract'"]
    """
    conflicts = {
        "learn_tau": learn_tau,
        "reset='subtract'": reset != "zero",
        "channel_threshold": channel_threshold,
        "gradient='aggregate'": gradient != "stbp",
    }
    return [name for name, present in conflicts.items() if present]


class LIF(nn.Module):
    """Iterative LIF neuron layer: ``[T, B, ...]`` currents to ``[T, B, ...]`` spikes.

    ``u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]``, ``o[t] = H(u[t] - v_th)``,
    scanned over time by :func:`snn_jax.lif_scan`. The state starts at rest on
    every call: there is no hidden memory to reset between batches.

    Attributes:
      tau: leak in (0, 1] (1 is integrate-and-fire). With ``learn_tau`` it is the
        initial value of a learned leak ``tau = sigmoid(tau_logit)`` (< 1).
      v_th: firing threshold (> 0); with ``channel_threshold`` the initial value
        of the per-channel thresholds.
      surrogate: spike function; ``None`` means ``surrogate.rectangular(1.0)``.
      detach_reset: stop the gradient through the reset ``(1 - o)``.
      learn_tau: learn one leak per layer (parametric LIF).
      unroll: unroll factor of the LIF time loop (``lif_scan``).
      reset: ``"zero"`` (hard reset, default) or ``"subtract"``:
        ``u[t] = tau * (u[t-1] - v_th * o[t-1]) + x[t]`` (ANN-to-SNN conversion).
      channel_threshold: one threshold per channel (the last axis), a parameter
        ``v_th`` of shape ``[C]`` initialised to ``v_th``. ANN-to-SNN conversion
        sets it (``snn_jax.conversion``); training updates it like any parameter.
      gradient: ``"stbp"`` (default): autodiff through the scan with the
        surrogate; ``"aggregate"``: spike-based BP (Lee et al. 2020), see
        :func:`snn_jax.functional.aggregate_gradient`.

    The input may also be :class:`snn_jax.functional.Currents` (tdBN outputs
    left unsummed, as a model with ``memory="compact"`` builds them): the layer
    then runs :func:`snn_jax.functional.lif_from_currents`, which stores bits
    and conv outputs instead of membranes for the backward pass (a constant
    ``tau``, hard reset, STBP gradient, one threshold).

    The layer sows each example's firing rate (the mean of its spikes over
    time and neurons, ``[B]``) as ``intermediates/firing_rate``.

    >>> import jax
    >>> x = jnp.full((3, 2, 4), 0.3)       # T=3, B=2, N=4
    >>> LIF().apply({}, x)[:, 0, 0]        # u = 0.3, 0.375, 0.39375 then 0.3 ...
    Array([0., 0., 0.], dtype=float32)
    """

    tau: float = 0.25
    v_th: float = 0.5
    surrogate: surrogate_lib.SpikeFunction | None = None
    detach_reset: bool = False
    learn_tau: bool = False
    unroll: int = 1
    reset: str = "zero"
    channel_threshold: bool = False
    gradient: str = "stbp"

    @nn.compact
    def __call__(self, x: jax.Array | compact.Currents) -> jax.Array:
        lif_lib.check_lif_params(self.tau, self.v_th, self.reset)
        if self.gradient not in GRADIENTS:
            raise ValueError(f"unknown gradient {self.gradient!r}; expected one of {GRADIENTS}")
        if isinstance(x, compact.Currents):
            return self._from_currents(x)
        if x.ndim < 2:
            raise ValueError(
                f"LIF expects a time-major input [T, B, ...] (ndim >= 2), got shape {x.shape}"
            )
        tau = self.tau
        if self.learn_tau:
            if self.tau >= 1:
                raise ValueError("learn_tau needs an initial tau < 1 (tau = sigmoid(logit))")
            logit = math.log(self.tau / (1 - self.tau))
            tau_logit = self.param("tau_logit", nn.initializers.constant(logit), (), jnp.float32)
            tau = jax.nn.sigmoid(tau_logit)
        v_th = self.v_th
        if self.channel_threshold:
            init = nn.initializers.constant(self.v_th)
            v_th = self.param("v_th", init, (x.shape[-1],), jnp.float32)
        spikes = lif_lib.lif_scan(
            x,
            tau=tau,
            v_th=v_th,
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            reset=self.reset,
            unroll=self.unroll,
        )
        if self.gradient == "aggregate":
            spikes = lif_lib.aggregate_gradient(x, spikes, v_th)
        self.sow("intermediates", "firing_rate", _rate_per_example(spikes))
        return spikes

    def _from_currents(self, currents: compact.Currents) -> jax.Array:
        unsupported = currents_conflicts(
            reset=self.reset,
            channel_threshold=self.channel_threshold,
            gradient=self.gradient,
            learn_tau=self.learn_tau,
        )
        if unsupported:
            names = ", ".join(unsupported)
            raise ValueError(
                f"LIF on Currents (memory='compact') supports a constant tau, the hard reset, one "
                f"threshold and the STBP gradient; this layer sets {names}"
            )
        if currents.terms[0][0].ndim < 2:
            raise ValueError(
                "LIF expects a time-major input [T, B, ...] (ndim >= 2), got Currents of shape "
                f"{currents.terms[0][0].shape}"
            )
        spikes = compact.lif_from_currents(
            currents,
            tau=self.tau,
            v_th=self.v_th,
            surrogate=self.surrogate or surrogate_lib.get("rectangular", width=1.0),
            detach_reset=self.detach_reset,
            unroll=self.unroll,
        )
        self.sow("intermediates", "firing_rate", _rate_per_example(spikes))
        return spikes


def _rate_per_example(spikes: jax.Array) -> jax.Array:
    """``[B]``: each example's mean of ``spikes`` ``[T, B, ...]`` over time and neurons."""
    return jnp.mean(spikes.astype(jnp.float32), axis=(0, *range(2, spikes.ndim)))


IF = functools.partial(LIF, tau=1.0)
IF.__doc__ = "Integrate-and-fire neuron layer: :class:`LIF` with ``tau = 1`` (no leak)."
