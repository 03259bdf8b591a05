"""The LIF scan with a hand-written STBP backward pass (``jax.custom_vjp``).

Autodiff of ``lax.scan`` keeps every intermediate of every step for the
backward pass. The STBP recursion (METHOD.md section 3) needs only the
membrane ``u[t]``: the spikes are ``o[t] = H(u[t] - V_th)`` again. The forward
scan carries one array, the leaked membrane ``tau * u[t] * (1 - o[t])``, and
stores ``u[t]``; the spikes are taken from ``u`` after the loop, in one pass.
(Made a second output of the scan instead, the spikes are a buffer of their
own that the next layer keeps for its backward pass: the ResNet-19 train step
at T = 16 then needed 683 instead of 587 MiB of XLA:CPU's temporary memory.)
With ``g[t] = dL/do[t]`` from the layers above and ``d[t+1] = dL/du[t+1]`` from
the future, one reverse scan computes::

    dL/do[t] = g[t] - tau * u[t] * d[t+1]            (reset path; absent if detached)
    d[t]     = dL/do[t] * s(u[t] - V_th) + tau * (1 - o[t]) * d[t+1]
    dL/dx[t] = d[t]

and, after it, ``dL/dtau = sum_t d[t+1] * u[t] * (1 - o[t])`` (``t = 0..T-1``,
with ``u[0]``, ``o[0]`` the initial state). ``s`` is the surrogate derivative.
The result equals autodiff of the plain scan (tested); this is what
``lif_scan(..., implementation="custom_vjp")`` runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from snn_jax.functional.surrogate import SpikeFunction, heaviside

Array = jax.Array

__all__ = ["lif_scan_custom_vjp"]


def _membrane(x, tau, u0, o0, v_th, unroll):
    """``u[1..T]`` of ``u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]``, carrying the leaked term."""

    def step(leaked, x_t):
        u = leaked + x_t
        return tau * u * (1 - heaviside(u - v_th)), u

    _, u = jax.lax.scan(step, tau * u0 * (1 - o0), x, unroll=unroll)
    return u


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sums ``g`` down to ``shape`` (the reverse of numpy broadcasting)."""
    lead = g.ndim - len(shape)
    g = jnp.sum(g, axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _lif(x, tau, u0, o0, v_th, spike, detach_reset, return_membrane, unroll):
    u = _membrane(x, tau, u0, o0, v_th, unroll)
    o = heaviside(u - v_th)
    return (o, u) if return_membrane else o


def _lif_fwd(x, tau, u0, o0, v_th, spike, detach_reset, return_membrane, unroll):
    u = _membrane(x, tau, u0, o0, v_th, unroll)
    o = heaviside(u - v_th)
    return ((o, u) if return_membrane else o), (u, tau, u0, o0)


def _stbp_step(d_next, g_o_t, u_t, *, tau, v_th, spike, detach_reset):
    """``d[t]`` from ``d[t+1]``, ``dL/do[t]`` and ``u[t]`` (the module docstring's recursion)."""
    v = u_t - v_th
    grad_o = g_o_t if detach_reset else g_o_t - tau * u_t * d_next
    return grad_o * spike.derivative(v).astype(u_t.dtype) + tau * (1 - heaviside(v)) * d_next


def _lif_bwd(v_th, spike, detach_reset, return_membrane, unroll, res, g):
    u, tau, u0, o0 = res
    g_o, g_u = g if return_membrane else (g, None)
    rule = dict(tau=tau, v_th=v_th, spike=spike, detach_reset=detach_reset)

    def step(d_next, inputs):
        g_o_t, g_u_t, u_t = inputs
        d = _stbp_step(d_next, g_o_t, u_t, **rule)
        if g_u_t is not None:  # the membrane is an output too
            d = d + g_u_t
        return d, d

    _, dx = jax.lax.scan(step, jnp.zeros_like(u0), (g_o, g_u, u), reverse=True, unroll=unroll)
    keep0 = 1 - o0
    kept = u[:-1] * (1 - heaviside(u[:-1] - v_th))
    dtau = jnp.sum(dx[1:] * kept, axis=0) + dx[0] * u0 * keep0
    du0 = tau * keep0 * dx[0]
    do0 = jnp.zeros_like(o0) if detach_reset else -tau * u0 * dx[0]
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
