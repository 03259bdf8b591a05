"""The LIF scan with a hand-written STBP backward pass (``jax.custom_vjp``).

Autodiff of ``lax.scan`` keeps every intermediate of every step for the
backward pass. The STBP recursion (METHOD.md section 3) needs much less: the
membrane ``u[t]`` and the spikes ``o[t]`` (which are the layer's output and
are kept by the next layer anyway). With ``g[t] = dL/do[t]`` from the layers
above and ``d[t+1] = dL/du[t+1]`` from the future, one reverse scan computes::

    dL/do[t] = g[t] - tau * u[t] * d[t+1]            (reset path; absent if detached)
    d[t]     = dL/do[t] * s(u[t] - V_th) + tau * (1 - o[t]) * d[t+1]
    dL/dx[t] = d[t]
    dL/dtau  = sum_t d[t+1] * u[t] * (1 - o[t])      (t = 0..T-1, with u[0], o[0] the init state)

``s`` is the surrogate derivative. The result equals autodiff of the plain scan
(tested); this is what ``lif_scan(..., implementation="custom_vjp")`` runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from snn_jax.functional.surrogate import SpikeFunction, heaviside

Array = jax.Array

__all__ = ["lif_scan_custom_vjp"]


def _forward(x, tau, u0, o0, v_th, unroll):
    def step(carry, x_t):
        u, o = carry
        u = tau * u * (1 - o) + x_t
        o = heaviside(u - v_th)
        return (u, o), (o, u)

    _, (o, u) = jax.lax.scan(step, (u0, o0), x, unroll=unroll)
    return o, u


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sums ``g`` down to ``shape`` (the reverse of numpy broadcasting)."""
    lead = g.ndim - len(shape)
    g = jnp.sum(g, axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _lif(x, tau, u0, o0, v_th, spike, detach_reset, return_membrane, unroll):
    o, u = _forward(x, tau, u0, o0, v_th, unroll)
    return (o, u) if return_membrane else o


def _lif_fwd(x, tau, u0, o0, v_th, spike, detach_reset, return_membrane, unroll):
    o, u = _forward(x, tau, u0, o0, v_th, unroll)
    out = (o, u) if return_membrane else o
    return out, (o, u, tau, u0, o0)


def _lif_bwd(v_th, spike, detach_reset, return_membrane, unroll, res, g):
    o, u, tau, u0, o0 = res
    g_o, g_u = g if return_membrane else (g, None)

    def step(carry, inputs):
        d_next, dtau = carry
        if return_membrane:
            g_o_t, g_u_t, u_t, o_t = inputs
        else:
            (g_o_t, u_t, o_t), g_u_t = inputs, 0
        keep = 1 - o_t
        grad_o = g_o_t if detach_reset else g_o_t - tau * u_t * d_next
        d = grad_o * spike.derivative(u_t - v_th).astype(u_t.dtype) + tau * keep * d_next + g_u_t
        dtau = dtau + d_next * u_t * keep
        return (d, dtau), d

    zeros = jnp.zeros_like(u0)
    inputs = (g_o, g_u, u, o) if return_membrane else (g_o, u, o)
    (d1, dtau), dx = jax.lax.scan(step, (zeros, zeros), inputs, reverse=True, unroll=unroll)
    keep0 = 1 - o0
    dtau = dtau + d1 * u0 * keep0
    du0 = tau * keep0 * d1
    do0 = jnp.zeros_like(o0) if detach_reset else -tau * u0 * d1
    return dx, _unbroadcast(dtau, tau.shape).astype(tau.dtype), du0, do0


_lif.defvjp(_lif_fwd, _lif_bwd)


def lif_scan_custom_vjp(
    x: Array,
    tau: Array,
    u0: Array,
    o0: Array,
    *,
    v_th: float,
    surrogate: SpikeFunction,
    detach_reset: bool,
    return_membrane: bool,
    unroll: int | bool,
):
    """LIF over ``x`` ``[T, B, ...]`` from state ``(u0, o0)``; see the module docstring.

    ``tau`` is an array (a scalar or broadcastable to ``x[0]``) and receives a
    gradient; ``v_th`` and the surrogate are constants.
    """
    return _lif(x, tau, u0, o0, v_th, surrogate, detach_reset, return_membrane, unroll)
