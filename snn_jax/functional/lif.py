"""The iterative leaky integrate-and-fire neuron (Wu et al. 2019) as pure functions.

For a time-major input current ``x`` of shape ``[T, B, ...]`` the neuron runs,
per element and for ``t = 1..T`` (METHOD.md section 1)::

    u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]     # charge, with hard reset to 0
    o[t] = H(u[t] - V_th)                         # fire

with ``u[0] = o[0] = 0``. ``reset="subtract"`` (reset by subtraction, the
integrate-and-fire neuron of ANN-to-SNN conversion) charges instead with
``u[t] = tau * (u[t-1] - V_th * o[t-1]) + x[t]``: the membrane keeps what
exceeded the threshold. ``H`` is the exact Heaviside step whose backward pass
is a surrogate derivative (``snn_jax.surrogate``). :func:`lif_step` is one
step, for a caller that scans it; :func:`lif_scan` runs all ``T`` steps with
the hand-written backward pass of :mod:`snn_jax.functional.lif_vjp`, which is
spatio-temporal backpropagation (METHOD.md section 3), equal to reverse-mode
autodiff of a ``lax.scan`` of :func:`lif_step`: the gradient reaches ``u[t]``
from ``o[t]`` (space) and from ``u[t+1]`` through the leak and the reset.
``detach_reset=True`` treats ``o[t-1]`` in the charge as a constant and drops
the reset's term.
``tau = 1`` is the (non-leaky) integrate-and-fire neuron.

:func:`aggregate_gradient` gives a spike train the backward pass of spike-based
BP (Lee et al. 2020) instead of STBP's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.functional import surrogate as surrogate_lib
from snn_jax.functional.lif_vjp import lif_kernel

Array = jax.Array

__all__ = ["RESETS", "LIFState", "aggregate_gradient", "check_lif_params", "lif_scan", "lif_step"]

# "zero": hard reset to 0 (METHOD.md section 1); "subtract": reset by subtracting V_th.
RESETS: tuple[str, ...] = ("zero", "subtract")


class LIFState(NamedTuple):
    """State carried between time steps.

    Attributes:
      u: membrane potential ``u[t]`` after charging, before the reset, ``[B, ...]``.
      o: spikes ``o[t]`` of the same step, ``[B, ...]``, exactly 0 or 1.
    """

    u: Array
    o: Array

    @classmethod
    def zeros(cls, shape, dtype=jnp.float32) -> LIFState:
        """The resting state ``u = o = 0``."""
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def check_lif_params(tau, v_th, reset: str = "zero") -> None:
    """Raises ``ValueError`` for a concrete ``tau`` outside (0, 1], ``v_th <= 0`` or a bad reset.

    Concrete values are numbers and arrays (every entry of a per-neuron leak
    or per-channel threshold is checked); traced ones (under ``jit`` or
    ``grad``, e.g. a learned leak) cannot be, and are not.

    >>> check_lif_params(np.float32(0.5), np.array([0.5, 1.0]))
    >>> check_lif_params(jnp.array([0.5, 1.5]), 0.5)
    Traceback (most recent call last):
    ...
    ValueError: tau (the leak) must be in (0, 1], got [0.5 1.5]
    """
    tau_value, v_th_value = _concrete(tau), _concrete(v_th)
    if tau_value is not None and not np.all((tau_value > 0) & (tau_value <= 1)):
        raise ValueError(f"tau (the leak) must be in (0, 1], got {tau_value}")
    if v_th_value is not None and not np.all(v_th_value > 0):
        raise ValueError(f"v_th (the threshold) must be > 0, got {v_th_value}")
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}; expected one of {RESETS}")


def _concrete(value) -> np.ndarray | None:
    """``value`` as a NumPy array, or ``None`` if it is traced (its value unknown here)
    or partly on other processes' devices."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return None
    return np.asarray(value)


def _check_state(name: str, state: LIFState, step_shape: tuple[int, ...]) -> None:
    """Raises ``ValueError`` unless ``state.u`` and ``state.o`` have one input step's shape."""
    for field in ("u", "o"):
        shape = jnp.shape(getattr(state, field))
        if shape != tuple(step_shape):
            raise ValueError(
                f"{name}.{field} has shape {shape}; it must be the shape of one time step "
                f"of the input, {tuple(step_shape)}"
            )


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` (numpy's rule) without growing it."""
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def lif_step(
    state: LIFState,
    x: Array,
    *,
    tau: float | Array = 0.25,
    v_th: float | Array = 0.5,
    surrogate: surrogate_lib.SpikeFunction | None = None,
    detach_reset: bool = False,
    reset: str = "zero",
) -> tuple[LIFState, Array]:
    """One LIF time step: charge, fire, reset (in ``lax.scan`` carry order).

    Args:
      state: the previous step's ``LIFState`` (``u[t-1]``, ``o[t-1]``), ``[B, ...]``.
      x: input current ``x[t]``, ``[B, ...]``.
      tau: leak in (0, 1]; an array (broadcastable to ``x``) for a learnable leak.
      v_th: firing threshold (> 0); an array broadcastable to ``x`` for one
        threshold per channel.
      surrogate: spike function; ``None`` means ``surrogate.rectangular(1.0)``.
      detach_reset: stop the gradient through the reset (``o[t-1]`` in the charge).
      reset: ``"zero"``: ``u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]``;
        ``"subtract"``: ``u[t] = tau * (u[t-1] - v_th * o[t-1]) + x[t]``.

    Returns:
      ``(LIFState(u[t], o[t]), o[t])``.

    Raises:
      ValueError: ``state`` arrays not of ``x``'s shape, ``tau`` or ``v_th``
        out of range, or an unknown ``reset``.

    >>> s = LIFState.zeros((2,))
    >>> s, o = lif_step(s, jnp.array([0.4, 0.6]))
    >>> o
    Array([0., 1.], dtype=float32)
    >>> s, o = lif_step(s, jnp.array([0.4, 0.0]))  # 0.25 * 0.4 + 0.4; the 2nd was reset
    >>> s.u
    Array([0.5, 0. ], dtype=float32)
    >>> s, o = lif_step(LIFState.zeros((1,)), jnp.array([0.7]), tau=1.0, reset="subtract")
    >>> s, o = lif_step(s, jnp.array([0.0]), tau=1.0, reset="subtract")  # 0.7 - 0.5 kept
    >>> s.u
    Array([0.2], dtype=float32)
    """
    check_lif_params(tau, v_th, reset)
    _check_state("state", state, jnp.shape(x))
    spike = surrogate or surrogate_lib.get("rectangular", width=1.0)
    o_prev = jax.lax.stop_gradient(state.o) if detach_reset else state.o
    if reset == "subtract":
        u = tau * (state.u - v_th * o_prev) + x
    else:
        u = tau * state.u * (1 - o_prev) + x
    o = spike(u - v_th)
    return LIFState(u, o), o


def lif_scan(
    x: Array,
    *,
    tau: float | Array = 0.25,
    v_th: float | Array = 0.5,
    surrogate: surrogate_lib.SpikeFunction | None = None,
    detach_reset: bool = False,
    reset: str = "zero",
    init_state: LIFState | None = None,
    return_membrane: bool = False,
    unroll: int | bool = 1,
) -> Array | tuple[Array, Array]:
    """Runs the LIF neuron over time (axis 0) with the hand-written STBP backward pass.

    The values and gradients are those of a ``lax.scan`` of :func:`lif_step`
    (tested), computed by :mod:`snn_jax.functional.lif_vjp`, which keeps only
    the membrane ``u`` for the backward pass.

    Args:
      x: input current, time-major ``[T, B, ...]``.
      tau: leak in (0, 1] (1 = integrate-and-fire): a Python number (a
        constant), or an array (it receives a gradient: a learnable leak) of
        shape ``()``, one per channel ``[C]`` or one per neuron (``x[0]``'s
        shape, or any shape that broadcasts to it); cast to ``x.dtype``.
      v_th: firing threshold (> 0), a number or an array as ``tau`` (a
        learnable threshold, e.g. one per channel).
      surrogate: a :class:`snn_jax.surrogate.SpikeFunction`; ``None`` means
        ``surrogate.rectangular(1.0)``.
      detach_reset: stop the gradient through ``o[t-1]`` in the charge.
      reset: ``"zero"`` (hard reset, default) or ``"subtract"`` (see :func:`lif_step`).
      init_state: state before the first step; ``None`` is the resting state.
      return_membrane: also return the membrane trace ``u``.
      unroll: unroll factor of the forward time loop (a speed knob; the result
        is the same). ``True`` or ``>= T``: straight-line code; below that
        the backward loop runs one step per iteration, in place.

    Returns:
      Spikes ``o`` of shape ``[T, B, ...]`` (exactly 0 or 1, dtype of ``x``), or
      ``(o, u)`` when ``return_membrane`` is true.

    Raises:
      ValueError: ``x`` without time and batch axes; ``tau`` or ``v_th`` out of
        range or not broadcastable to one step ``x[0]``; ``init_state`` arrays
        not of ``x[0]``'s shape; an unknown ``reset``.
      TypeError: an ``x`` that is not floating point; a ``surrogate`` that is
        not a ``SpikeFunction``.

    >>> x = jnp.full((3, 1), 0.2)
    >>> o, u = lif_scan(x, return_membrane=True)
    >>> u[:, 0]  # 0.2, 0.25 * 0.2 + 0.2, 0.25 * 0.25 + 0.2
    Array([0.2   , 0.25  , 0.2625], dtype=float32)
    >>> v_th = jnp.array([0.3, 0.5])                  # one learnable threshold per channel
    >>> g = jax.grad(lambda v: lif_scan(jnp.full((2, 1, 2), 0.4), v_th=v, reset="subtract").sum())
    >>> g(v_th)                                       # -sum_t s(u[t] - v_th) (+ the reset's term)
    Array([-2.175, -1.875], dtype=float32)
    """
    if x.ndim < 2:
        raise ValueError(
            f"lif_scan expects a time-major input [T, B, ...] (ndim >= 2), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"lif_scan expects a floating-point input current, got dtype {x.dtype}; "
            "cast it first, e.g. x.astype(jnp.float32)"
        )
    spike = surrogate_lib.get("rectangular", width=1.0) if surrogate is None else surrogate
    if not isinstance(spike, surrogate_lib.SpikeFunction):
        raise TypeError(
            f"lif_scan expects a snn_jax.surrogate.SpikeFunction as surrogate, got "
            f"{type(spike).__name__}; build one with snn_jax.surrogate.get(name, ...) or a "
            "factory such as snn_jax.surrogate.atan(2.0), or pass None for rectangular(1.0)"
        )
    check_lif_params(tau, v_th, reset)
    step_shape = x.shape[1:]
    for name, value in (("tau", tau), ("v_th", v_th)):
        if jnp.ndim(value) and not _broadcasts_to(jnp.shape(value), step_shape):
            raise ValueError(
                f"{name} of shape {jnp.shape(value)} does not broadcast to one time step of "
                f"the input, shape {step_shape}; give a scalar, one value per channel "
                f"(shape {step_shape[-1:]}) or one per neuron (shape {step_shape})"
            )
    if init_state is not None:
        _check_state("init_state", init_state, step_shape)
    if not isinstance(tau, int | float):
        tau = jnp.asarray(tau, x.dtype)
    if not isinstance(v_th, int | float):
        v_th = jnp.asarray(v_th, x.dtype)
    state = LIFState.zeros(step_shape, x.dtype) if init_state is None else init_state
    return lif_kernel(
        x,
        state.u.astype(x.dtype),
        state.o.astype(x.dtype),
        tau=tau,
        v_th=v_th,
        surrogate=spike,
        reset=reset,
        detach_reset=detach_reset,
        return_membrane=return_membrane,
        unroll=unroll,
    )


def aggregate_gradient(x: Array, spikes: Array, v_th: float | Array) -> Array:
    """``spikes`` with the backward pass of spike-based BP (Lee et al. 2020), IF form.

    Spike-based BP differentiates a neuron's spike *count* ``a = sum_t o[t]``
    with respect to its accumulated input ``net = sum_t x[t]``: for an
    integrate-and-fire neuron ``a ~= net / V_th``, so ``da/dnet = 1 / V_th``,
    and every step's input receives the same error. Here, for each neuron::

        forward:   o[t] unchanged (the exact spikes)
        backward:  dL/dx[t] = 1[0 < a < T] / V_th * (1/T) sum_t' dL/do[t'],   a = sum_t o[t]

    With the decoder ``Q = mean_t(M o[t])`` every ``dL/do[t]`` of the last
    layer is the same, and then every layer's are; the mean over ``t'`` is then
    ``dL/da``, the paper's error. ``1 / V_th`` is the slope of the IF count
    ``a = clip(net / V_th, 0, T)``; a neuron that never fires or fires at
    every step is outside that range and passes no error. This gate is our
    reading: gating only the silent neurons, the network of the digits
    comparison saturated (its second conv layer fired at 94 % of all steps)
    and stayed near 20 % test accuracy. Lee et al. correct ``da/dnet`` for the
    leak of LIF neurons; that correction is not implemented: this is their
    rule for integrate-and-fire neurons (``tau = 1``), used unchanged for any
    ``tau``. No gradient flows through the membrane's time recursion (STBP's
    temporal term).

    Args:
      x: the neuron's input current ``[T, B, ...]``.
      spikes: its output spikes ``[T, B, ...]`` (computed from ``x``).
      v_th: the threshold (a scalar or an array broadcastable to ``x[0]``).

    Returns:
      ``spikes`` (same values) whose gradient flows to ``x`` as above.

    >>> x = jnp.array([[0.3], [0.9], [0.0], [0.6]])        # T = 4, one neuron
    >>> o = lif_scan(x, tau=1.0, v_th=0.5, reset="subtract")
    >>> w = jnp.arange(4.0)[:, None]                        # dL/do[t] = t
    >>> g = jax.grad(lambda x: jnp.sum(aggregate_gradient(x, o, 0.5) * w))(x)
    >>> g[:, 0]                                             # mean(0, 1, 2, 3) / 0.5
    Array([3., 3., 3., 3.], dtype=float32)
    """
    count = jnp.sum(spikes, axis=0)
    active = (count > 0) & (count < spikes.shape[0])
    gain = jax.lax.stop_gradient(active.astype(x.dtype) / jnp.asarray(v_th, x.dtype))
    mean = jnp.broadcast_to(jnp.mean(x, axis=0), x.shape)
    return jax.lax.stop_gradient(spikes) + gain * (mean - jax.lax.stop_gradient(mean))
