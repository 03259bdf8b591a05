"""Independent references for the LIF tests: NumPy loops, the STBP recursion by hand, an oracle.

- :func:`np_lif`: the LIF neuron of METHOD.md section 1 as a plain NumPy loop over
  time, for both resets, with scalar or array ``tau`` and ``v_th``.
- :func:`np_stbp`: the STBP recursion of METHOD.md section 3, run backwards in
  time in float64, with the gradients of ``x``, ``tau``, ``v_th`` and the
  initial state::

      e[t] = g[t] + dl/do[t] * d[t+1]                  (absent with detach_reset)
      d[t] = e[t] * s(u[t] - v_th) + dl/du[t] * d[t+1] + h[t]
      dL/dx[t] = d[t]
      dL/dtau  = sum_t d[t] * dl/dtau[t-1]
      dL/dv_th = sum_t d[t] * dl/dv_th[t-1] - e[t] * s(u[t] - v_th)

  where ``u[t] = l(u[t-1], o[t-1]) + x[t]`` and ``l = tau * u * (1 - o)``
  (zero reset) or ``tau * (u - v_th * o)`` (subtract), ``g`` and ``h`` the
  cotangents of the spikes and of the membrane.
- :func:`lif_scan_autodiff`: autodiff's reference, a ``lax.scan`` of
  :func:`snn_jax.lif_step` (what ``lif_scan``'s hand-written backward must equal).
"""

import math

import jax
import numpy as np

import snn_jax
from snn_jax import surrogate as surrogate_lib


def inputs(shape, seed=0, mean=0.4, std=0.5):
    """Normal input currents in float32: by default some spikes and some silence."""
    return np.random.default_rng(seed).normal(mean, std, shape).astype(np.float32)


def np_lif(x, tau, v_th, reset="zero", u0=None, o0=None):
    """``(o, u)`` of the LIF over ``x`` ``[T, ...]``, in float32 like the library.

    ``tau``, ``v_th``: numbers or arrays broadcastable to ``x[0]``; ``u0``, ``o0``
    the state before the first step (``None``: rest).
    """
    x = np.asarray(x, np.float32)
    tau = np.asarray(tau, np.float32)
    v_th = np.asarray(v_th, np.float32)
    u_prev = np.zeros(x.shape[1:], np.float32) if u0 is None else np.asarray(u0, np.float32)
    o_prev = np.zeros(x.shape[1:], np.float32) if o0 is None else np.asarray(o0, np.float32)
    us, os_ = [], []
    for t in range(x.shape[0]):
        if reset == "subtract":
            u = tau * (u_prev - v_th * o_prev) + x[t]
        else:
            u = tau * u_prev * (np.float32(1) - o_prev) + x[t]
        o = ((u - v_th) >= 0).astype(np.float32)
        us.append(u)
        os_.append(o)
        u_prev, o_prev = u, o
    return np.stack(os_), np.stack(us)


def np_surrogate(name, v, p=None):
    """Surrogate derivative of METHOD.md section 2 (float64), with the library's defaults."""
    v = np.asarray(v, np.float64)
    if name == "rectangular":
        a = 1.0 if p is None else p
        return (np.abs(v) < a / 2) / a
    if name == "sigmoid":
        k = 4.0 if p is None else p
        s = 1 / (1 + np.exp(-k * v))
        return k * s * (1 - s)
    if name == "atan":
        k = 2.0 if p is None else p
        return k / (2 * (1 + (math.pi / 2 * k * v) ** 2))
    if name == "triangle":
        w = 1.0 if p is None else p
        return np.maximum(0, 1 - np.abs(v) / w) / w
    if name == "fast_sigmoid":
        k = 25.0 if p is None else p
        return 1 / (1 + k * np.abs(v)) ** 2
    raise AssertionError(name)


def np_stbp(u, o, g_o, g_u, tau, v_th, surr, detach_reset, reset="zero", u0=0.0, o0=0.0):
    """The STBP backward recursion (module docstring) for one layer, in float64.

    Args:
      u, o: forward membrane and spikes ``[T, ...]`` (float32 values from :func:`np_lif`).
      g_o: dL/do[t] from the layers above; g_u: the direct dL/du[t] (the membrane term).
      tau, v_th: numbers or arrays broadcastable to ``u[0]``.
      surr: ``v -> s(v)`` on ``v = u - v_th``.
      detach_reset: drop the reset path ``dl/do``.
      reset: ``"zero"`` or ``"subtract"``.
      u0, o0: the state before the first step.

    Returns:
      A dict of ``x`` ``[T, ...]``, and ``tau``, ``v_th``, ``u0``, ``o0``, each
      ``[B, ...]`` (per element, before the sum to the parameter's shape: see
      :func:`reduce_to`).
    """
    u = np.asarray(u, np.float64)
    o = np.asarray(o, np.float64)
    tau = np.asarray(tau, np.float64)
    v_th64 = np.asarray(v_th, np.float64)
    # s(u - v_th) with u - v_th rounded in float32, as the library computes it
    v = np.asarray(u, np.float32) - np.asarray(v_th, np.float32)
    s = surr(v.astype(np.float64))
    u_prev = np.concatenate([np.broadcast_to(u0, u[:1].shape), u[:-1]])
    o_prev = np.concatenate([np.broadcast_to(o0, o[:1].shape), o[:-1]])

    def partials(u, o):  # dl/du, dl/do, dl/dtau, dl/dv_th at (u[t], o[t])
        if reset == "subtract":
            return tau + 0 * u, -tau * v_th64 + 0 * u, u - v_th64 * o, -tau * o
        return tau * (1 - o), -tau * u, u * (1 - o), 0 * u

    d_next = np.zeros(u.shape[1:])
    grads = {"x": np.zeros_like(u), "tau": 0.0, "v_th": 0.0}
    for t in reversed(range(u.shape[0])):
        dl_du, dl_do, _, _ = partials(u[t], o[t])
        e = g_o[t] + (0.0 if detach_reset else dl_do * d_next)
        d = e * s[t] + dl_du * d_next + g_u[t]
        grads["v_th"] = grads["v_th"] - e * s[t]
        # the charge of step t from u[t-1], o[t-1]
        _, _, dl_dtau_prev, dl_dvth_prev = partials(u_prev[t], o_prev[t])
        grads["tau"] = grads["tau"] + d * dl_dtau_prev
        grads["v_th"] = grads["v_th"] + d * dl_dvth_prev
        grads["x"][t] = d
        d_next = d
    dl_du0, dl_do0, _, _ = partials(u_prev[0], o_prev[0])
    grads["u0"] = d_next * dl_du0
    grads["o0"] = np.zeros_like(d_next) if detach_reset else d_next * dl_do0
    return grads


def reduce_to(g, shape):
    """Sums a ``[B, ...]`` array over the axes broadcast to reach it from ``shape``."""
    g = np.asarray(g)
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    keep = tuple(i for i, n in enumerate(shape) if n == 1)
    return g.sum(axis=keep, keepdims=True).reshape(shape)


def lif_scan_autodiff(
    x,
    *,
    tau=0.25,
    v_th=0.5,
    surrogate=None,
    detach_reset=False,
    reset="zero",
    init_state=None,
    return_membrane=False,
    unroll=1,
):
    """``lif_scan`` as a ``lax.scan`` of :func:`snn_jax.lif_step`: its gradient is autodiff's.

    The same arguments as :func:`snn_jax.lif_scan`; arrays ``tau`` and ``v_th``
    are cast to ``x.dtype`` as ``lif_scan`` does.
    """
    spike = surrogate_lib.rectangular(1.0) if surrogate is None else surrogate
    tau = tau if isinstance(tau, int | float) else jax.numpy.asarray(tau, x.dtype)
    v_th = v_th if isinstance(v_th, int | float) else jax.numpy.asarray(v_th, x.dtype)
    state = snn_jax.LIFState.zeros(x.shape[1:], x.dtype) if init_state is None else init_state
    state = snn_jax.LIFState(state.u.astype(x.dtype), state.o.astype(x.dtype))

    def step(state, x_t):
        state, o = snn_jax.lif_step(
            state,
            x_t,
            tau=tau,
            v_th=v_th,
            surrogate=spike,
            detach_reset=detach_reset,
            reset=reset,
        )
        return state, (o, state.u) if return_membrane else o

    return jax.lax.scan(step, state, x, unroll=unroll)[1]
