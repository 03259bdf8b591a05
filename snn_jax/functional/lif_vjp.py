"""The LIF time loops and their hand-written STBP backward pass (``jax.custom_vjp``).

One charge per reset (METHOD.md sections 1 and 3), with ``o = H(u - V_th)``::

    zero:      u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]
    subtract:  u[t] = tau * (u[t-1] - V_th * o[t-1]) + x[t]

Write ``u[t] = l(u[t-1], o[t-1]) + x[t]``. The backward pass needs only the
membrane ``u[t]``: the spikes are ``H(u[t] - V_th)`` again. With ``g[t] =
dL/do[t]`` from the layers above (and ``h[t] = dL/du[t]`` when the membrane
is an output too) and ``d[t+1] = dL/du[t+1]`` from the future, one reverse
loop computes::

    e[t] = g[t] + dl/do[t] * d[t+1]             (the reset path; absent if detached)
    d[t] = e[t] * s(u[t] - V_th) + dl/du[t] * d[t+1] + h[t]
    dL/dx[t] = d[t]
    dL/dtau  = sum_t d[t+1] * dl/dtau[t]
    dL/dV_th = sum_t d[t+1] * dl/dV_th[t] - e[t] * s(u[t] - V_th)

with the partial derivatives of :func:`_charge_partials` (``t = 0..T-1`` in
the sums over ``d[t+1]``, ``u[0]`` and ``o[0]`` being the initial state). ``s``
is the surrogate derivative. ``detach_reset`` stops the gradient through
``o[t-1]`` in the charge only: ``V_th``'s own term in the subtract reset stays.
The result equals autodiff of the plain ``lax.scan`` of
:func:`snn_jax.functional.lif.lif_step` (tested), keeping one ``[T, B, ...]``
series for the backward pass where autodiff keeps several.

A leak or threshold given as a Python number is a constant of the program; an
array (scalar, per channel or per neuron) is an input of the ``custom_vjp``
and receives a gradient (a learnable leak or threshold), summed back to its
own shape.

The loops take two forms (:func:`lif_forward`, :func:`stbp_reverse`). With
``unroll`` below ``T`` they are one-step ``fori_loop``\\ s that write each
step's result into a series in place: the forward into a fresh series (or over
its own input, which the compact layers of :mod:`snn_jax.functional.compact`
create for it and do not keep), the backward ``d[t]`` over ``u[t]``, read once
at the step that replaces it, summing the parameters' gradients as it goes, so
it allocates no series of its own. ``lax.scan``'s stacked outputs, by
contrast, start as zero-filled buffers that XLA:CPU allocates at the start of
the program. The backward loop is never unrolled: XLA:CPU then copies the
buffer it updates in every iteration. With ``unroll >= T`` (or ``True``) both
are straight-line code, which XLA:CPU runs best when there are few, large
steps (T = 4 in the paper configs). experiments/benchmarks/README.md has the
measurements behind these choices.

Inside ``shard_map`` the gradient of an argument that is the same on every
device (a shared leak or threshold, the resting state) is the sum over the
devices, as autodiff gives it (:func:`_cotangent_of`; tested against the
unsplit batch).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from snn_jax.functional.surrogate import SpikeFunction, heaviside

Array = jax.Array

__all__ = ["lif_forward", "lif_kernel", "stbp_reverse"]


def _unrolled(unroll: int | bool, steps: int) -> bool:
    """Whether ``unroll`` makes the time loop straight-line code."""
    return unroll is True or (unroll is not False and unroll >= steps)


def _leak(u, o, tau, v_th, reset):
    """``l(u, o)``: what ``u[t-1]``, ``o[t-1]`` leave to ``u[t]`` (the module docstring)."""
    if reset == "subtract":
        return tau * (u - v_th * o)
    return tau * u * (1 - o)


class _Partials(NamedTuple):
    """Partial derivatives of ``l(u, o)`` (``v_th`` is ``None`` where ``l`` has no ``V_th``)."""

    u: Array
    o: Array
    tau: Array
    v_th: Array | None


def _charge_partials(u, o, tau, v_th, reset) -> _Partials:
    """``dl/du``, ``dl/do``, ``dl/dtau``, ``dl/dV_th`` of :func:`_leak` at ``(u, o)``."""
    if reset == "subtract":  # l = tau * (u - v_th * o)
        return _Partials(tau, -tau * v_th, u - v_th * o, -tau * o)
    return _Partials(tau * (1 - o), -tau * u, u * (1 - o), None)  # l = tau * u * (1 - o)


def lif_forward(x, leaked, *, tau, v_th, reset, unroll, output="membrane", in_place=False):
    """``u[1..T]`` (or ``o[1..T]``, ``output="spikes"``) of the LIF fed by ``x`` ``[T, B, ...]``.

    ``leaked`` is ``l(u[0], o[0])``, the initial state's share of ``u[1]``.
    Below full unroll, a ``fori_loop`` writes step ``t``'s result into the
    series at ``t``: a fresh one, or ``x`` itself with ``in_place`` (for a
    caller that creates ``x`` and does not keep it; that loop is not
    unrolled, as the backward loop).
    """

    def step(leaked, x_t):
        u = leaked + x_t
        o = heaviside(u - v_th)
        return _leak(u, o, tau, v_th, reset), u if output == "membrane" else o

    steps = x.shape[0]
    if _unrolled(unroll, steps):
        ys = [None] * steps
        for t in range(steps):
            leaked, ys[t] = step(leaked, x[t])
        return jnp.stack(ys)

    def body(t, carry):
        leaked, buf = carry
        leaked, y = step(leaked, _at(buf if in_place else x, t))
        return leaked, jax.lax.dynamic_update_index_in_dim(buf, y, t, 0)

    if in_place:
        return jax.lax.fori_loop(0, steps, body, (leaked, x))[1]
    # The first step outside the loop: XLA:CPU then needs a little less working memory.
    leaked, y = step(leaked, x[0])
    init = (leaked, jnp.zeros_like(x).at[0].set(y))
    return jax.lax.fori_loop(1, steps, body, init, unroll=unroll)[1]


def stbp_reverse(u, g_o, g_u, *, tau, v_th, spike, reset, detach_reset, unroll, sums=()):
    """``(d[1..T], {name: per-element sum})``: the reverse loop of the module docstring.

    ``u`` is the membrane ``u[1..T]``, ``g_o`` (and ``g_u``, or ``None``) the
    cotangents of the spikes (and of the membrane). ``sums`` names the
    parameters (``"tau"``, ``"v_th"``) whose gradients to sum, each ``[B, ...]``
    and without the first step's term ``d[1] * dl/dp[0]``, which needs the
    initial state. Below full unroll, ``d`` is written over ``u``, so ``u``
    should not be needed afterwards (else XLA copies it first).
    """
    steps = u.shape[0]
    zeros = jnp.zeros_like(u[0])

    def step(d_next, acc, g_o_t, g_u_t, u_t):
        v = u_t - v_th
        p = _charge_partials(u_t, heaviside(v), tau, v_th, reset)
        e = g_o_t if detach_reset else g_o_t + p.o * d_next
        es = e * spike.derivative(v).astype(u_t.dtype)
        d = es + p.u * d_next
        d = d if g_u_t is None else d + g_u_t  # the membrane is an output too
        acc = dict(acc)
        if "tau" in acc:
            acc["tau"] = acc["tau"] + p.tau * d_next
        if "v_th" in acc:
            acc["v_th"] = acc["v_th"] - es + (0 if p.v_th is None else p.v_th * d_next)
        return d, acc

    acc = {name: zeros for name in sums}
    if _unrolled(unroll, steps):
        ds = [zeros] * (steps + 1)
        for t in range(steps - 1, -1, -1):
            ds[t], acc = step(ds[t + 1], acc, g_o[t], None if g_u is None else g_u[t], u[t])
        return jnp.stack(ds[:-1]), acc

    def body(i, carry):
        d_next, acc, buf = carry
        t = steps - 1 - i
        g_u_t = None if g_u is None else _at(g_u, t)
        d, acc = step(d_next, acc, _at(g_o, t), g_u_t, _at(buf, t))
        # d[t] replaces u[t], which no later iteration (earlier time) reads. Every
        # reader of u[t] must come before that write, else XLA copies the whole
        # buffer in each iteration: the sums read u[t] too, so d[t] is written
        # only once they exist (one element per example suffices: along the batch
        # axis, so that a batch split over devices keeps this local).
        written = d
        for a in acc.values():
            written = _after(written, a[(slice(None),) + (slice(0, 1),) * (a.ndim - 1)])
        return d, acc, jax.lax.dynamic_update_index_in_dim(buf, written, t, 0)

    _, acc, d = jax.lax.fori_loop(0, steps, body, (zeros, acc, u))
    return d, acc


def _after(x: Array, c: Array) -> Array:
    """``x``, bitwise unchanged, computed only once ``c`` exists.

    ``min(p, p | c) == p`` on the bit patterns: a data dependency that XLA
    does not fold away, and so an order of computation (an
    ``optimization_barrier`` orders nothing on XLA:CPU). ``c`` broadcasts
    against ``x``; the compact layers (:mod:`snn_jax.functional.compact`)
    take it from a cotangent along ``x``'s batch axes, so that with the batch
    split over devices each device uses only its own part.
    """
    uint = jnp.dtype(f"uint{8 * x.dtype.itemsize}")
    bits = x if x.dtype == uint else jax.lax.bitcast_convert_type(x, uint)
    c_bits = jax.lax.bitcast_convert_type(c.astype(jnp.float32), jnp.uint32).astype(uint)
    bits = jnp.minimum(bits, bits | c_bits)
    return bits if x.dtype == uint else jax.lax.bitcast_convert_type(bits, x.dtype)


def _at(xs: Array, t) -> Array:
    """``xs[t]`` for a traced ``t``."""
    return jax.lax.dynamic_index_in_dim(xs, t, keepdims=False)


def _cotangent_of(primal: Array, ct: Array) -> Array:
    """``ct`` summed over the ``shard_map`` devices on which ``primal`` does not vary.

    A custom backward rule must return cotangents that vary over the same mesh
    axes as their primals. One computed from the outputs' cotangent varies
    over every axis any input varies over; if its primal is the same on every
    device (a shared leak, the resting state), its cotangent is the sum over
    the devices, the transpose of the implicit broadcast, as autodiff computes
    it. Outside ``shard_map`` there are no such axes and ``ct`` is returned as it is.

    >>> _cotangent_of(jnp.ones(3), jnp.arange(3.0))
    Array([0., 1., 2.], dtype=float32)
    """
    extra = tuple(sorted(_varying_axes(ct) - _varying_axes(primal)))
    return jax.lax.psum(ct, extra) if extra else ct


def _varying_axes(x: Array) -> frozenset[str]:
    """The mesh axes over which ``x`` differs between devices inside ``shard_map``."""
    return jax.typeof(x).manual_axis_type.varying


def _unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sums ``g`` down to ``shape`` (the reverse of numpy broadcasting)."""
    lead = g.ndim - len(shape)
    g = jnp.sum(g, axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


class _Rule(NamedTuple):
    """The static part of the kernel (hashable: ``custom_vjp``'s non-differentiable argument).

    ``fixed`` holds the parameters given as Python numbers, ``(name, value)`` pairs.
    """

    fixed: tuple[tuple[str, float], ...]
    reset: str
    spike: SpikeFunction
    detach_reset: bool
    return_membrane: bool
    unroll: int | bool


def _params(rule: _Rule, learned: dict) -> dict:
    """``{"tau": ..., "v_th": ...}``: the constants and the arrays."""
    return {**dict(rule.fixed), **learned}


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _lif(x, u0, o0, learned, rule):
    return _lif_fwd(x, u0, o0, learned, rule)[0]


def _lif_fwd(x, u0, o0, learned, rule):
    p = _params(rule, learned)
    leaked = _leak(u0, o0, p["tau"], p["v_th"], rule.reset)
    u = lif_forward(x, leaked, **p, reset=rule.reset, unroll=rule.unroll)
    o = heaviside(u - p["v_th"])
    # x[:0] holds no data, only x's type: the mesh axes it varies over in shard_map.
    return ((o, u) if rule.return_membrane else o), (u, u0, o0, learned, x[:0])


def _lif_bwd(rule, res, g):
    u, u0, o0, learned, x_type = res
    p = _params(rule, learned)
    g_o, g_u = g if rule.return_membrane else (g, None)
    kw = dict(p, spike=rule.spike, reset=rule.reset, detach_reset=rule.detach_reset)
    dx, sums = stbp_reverse(u, g_o, g_u, unroll=rule.unroll, sums=tuple(learned), **kw)
    # The first step, u[1] = l(u0, o0) + x[1]: the initial state's terms.
    first = _charge_partials(u0, o0, p["tau"], p["v_th"], rule.reset)
    du0 = first.u * dx[0]
    do0 = jnp.zeros_like(o0) if rule.detach_reset else first.o * dx[0]
    dlearned = {}
    for name, value in learned.items():
        partial = getattr(first, name)
        total = sums[name] if partial is None else sums[name] + partial * dx[0]
        ct = _unbroadcast(total, jnp.shape(value)).astype(value.dtype)
        dlearned[name] = _cotangent_of(value, ct)
    return (
        _cotangent_of(x_type, dx),
        _cotangent_of(u0, du0.astype(u0.dtype)),
        _cotangent_of(o0, do0.astype(o0.dtype)),
        dlearned,
    )


_lif.defvjp(_lif_fwd, _lif_bwd)


def lif_kernel(
    x: Array,
    u0: Array,
    o0: Array,
    *,
    tau: float | Array,
    v_th: float | Array,
    surrogate: SpikeFunction,
    reset: str,
    detach_reset: bool,
    return_membrane: bool,
    unroll: int | bool,
):
    """LIF over ``x`` ``[T, B, ...]`` from state ``(u0, o0)``; see the module docstring.

    ``tau`` and ``v_th`` are Python numbers (constants) or arrays of ``x``'s
    dtype broadcastable to ``x[0]`` (they receive gradients). The checks of
    the arguments are :func:`snn_jax.functional.lif.lif_scan`'s.
    """
    values = {"tau": tau, "v_th": v_th}
    fixed = tuple((k, float(v)) for k, v in values.items() if isinstance(v, int | float))
    learned = {k: v for k, v in values.items() if not isinstance(v, int | float)}
    rule = _Rule(fixed, reset, surrogate, detach_reset, return_membrane, unroll)
    return _lif(x, u0, o0, learned, rule)
