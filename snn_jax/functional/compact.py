"""Compact residuals for BPTT: spikes stored as bits, membranes recomputed.

Autodiff of a ``conv -> tdBN -> LIF`` layer keeps, for the backward pass, the
conv's input (float spikes), the conv's output (for tdBN) and the membrane
potentials (for the surrogate): three float arrays per layer. Of these only
the conv output carries information the backward pass cannot cheaply get
again. This module keeps one float array per layer:

- :func:`spike_conv_general_dilated`: a convolution whose input is spikes
  (0/1). It stores its input as bits (``uint8``, 8 channels per byte); the
  weight gradient unpacks them.
- :func:`lif_from_currents`: the LIF layer fed by ``sum_i (z_i * scale_i +
  shift_i) (+ spikes)`` (tdBN outputs, with a residual branch). It stores the
  ``z_i`` (which tdBN's own backward pass needs anyway) and recomputes the
  membrane in its backward pass, an elementwise loop over ``T``.
- :class:`Currents`: that lazy sum, as the model code builds it
  (``norm(conv(x)) + shortcut``).

Two details of XLA's scheduler are handled here, both found in XLA:CPU's
buffer assignment: an unpacking that depends only on the stored bits is
scheduled early, in the forward pass, and its float result then lives until
the backward pass; so the bits are made to depend on the incoming cotangent
first (``min(p, p | c) == p``, an identity XLA does not fold), and so are
the conv outputs the recomputation starts from. The recomputing loop
outputs the membrane while the forward one outputs the spikes, so that the
two are not merged into one by common-subexpression elimination. Unrolled
completely (``unroll=T``, as the benchmarks run it) the loops are
straight-line code, which XLA:CPU schedules best; else each loop writes its
output over the sum it reads, which nothing else keeps. The loops are the LIF
kernel's (:func:`snn_jax.functional.lif_vjp.lif_forward` and
:func:`~snn_jax.functional.lif_vjp.stbp_reverse`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.functional.lif import check_lif_params
from snn_jax.functional.lif_vjp import _after, _cotangent_of, lif_forward, stbp_reverse
from snn_jax.functional.surrogate import SpikeFunction
from snn_jax.functional.tdbn import tdbn_apply

Array = jax.Array

__all__ = [
    "Currents",
    "lif_from_currents",
    "pack_spikes",
    "spike_conv_general_dilated",
    "unpack_spikes",
]

_SHIFTS = np.arange(8, dtype=np.uint8)  # NumPy: importing must not start a JAX backend


def pack_spikes(s: Array) -> Array:
    """Spikes ``[..., C]`` as bits: ``uint8[..., ceil(C / 8)]``; channel ``8k + i`` is bit ``i``.

    A nonzero entry counts as a spike.

    >>> p = pack_spikes(jnp.array([[1.0, 0, 1, 1, 0, 0, 0, 0, 1]]))
    >>> p, p.dtype
    (Array([[13,  1]], dtype=uint8), dtype('uint8'))
    """
    channels = s.shape[-1]
    bits = (s != 0).astype(jnp.uint8)
    pad = -channels % 8
    if pad:
        bits = jnp.pad(bits, [(0, 0)] * (s.ndim - 1) + [(0, pad)])
    bits = bits.reshape(*s.shape[:-1], -1, 8) << _SHIFTS
    return jnp.sum(bits, axis=-1, dtype=jnp.uint8)  # disjoint bits: the sum is the OR


def unpack_spikes(p: Array, channels: int, dtype=jnp.float32) -> Array:
    """The inverse of :func:`pack_spikes`: ``[..., channels]`` of 0 and 1 in ``dtype``.

    >>> unpack_spikes(jnp.array([[13, 1]], jnp.uint8), 9)
    Array([[1., 0., 1., 1., 0., 0., 0., 0., 1.]], dtype=float32)
    """
    bits = (p[..., None] >> _SHIFTS) & 1
    return bits.reshape(*p.shape[:-1], -1)[..., :channels].astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _spike_conv(lhs: Array, rhs: Array, conv: tuple, channels: int) -> Array:
    return jax.lax.conv_general_dilated(lhs, rhs, **dict(conv))


def _spike_conv_fwd(lhs, rhs, conv, channels):
    return _spike_conv(lhs, rhs, conv, channels), (
        pack_spikes(lhs),
        rhs,
        jnp.zeros((0,), lhs.dtype),
    )


def _spike_conv_bwd(conv, channels, res, g):
    bits, rhs, like = res
    kwargs = dict(conv)
    # g's first entry of each example, placed on the input's batch axis.
    dn = kwargs["dimension_numbers"]
    first = jnp.moveaxis(g, dn.out_spec[0], 0).reshape(g.shape[dn.out_spec[0]], -1)[:, 0]
    first = jnp.expand_dims(first, [a for a in range(bits.ndim) if a != dn.lhs_spec[0]])
    lhs = unpack_spikes(_after(bits, first), channels, like.dtype)
    _, vjp = jax.vjp(lambda lhs, rhs: jax.lax.conv_general_dilated(lhs, rhs, **kwargs), lhs, rhs)
    return vjp(g)


def spike_conv_general_dilated(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> Array:
    """``jax.lax.conv_general_dilated`` of spikes ``lhs`` (0/1), storing them as bits.

    The result and both gradients equal those of ``lax.conv_general_dilated``
    when ``lhs`` holds only zeros and ones (a LIF layer's output); the
    backward pass rebuilds ``lhs`` from its bits, so any other value would be
    read as 1 in the kernel's gradient. The input's channels must be its last
    axis (``NHWC``, as ``flax.linen.Conv``). Use it as
    ``nn.Conv(..., conv_general_dilated=spike_conv_general_dilated)``.

    >>> s = (jax.random.uniform(jax.random.key(0), (2, 5, 5, 3)) > 0.5).astype(jnp.float32)
    >>> k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    >>> dn = ("NHWC", "HWIO", "NHWC")
    >>> plain = jax.grad(lambda k: jax.lax.conv_general_dilated(
    ...     s, k, (1, 1), "SAME", dimension_numbers=dn).sum())(k)
    >>> packed = jax.grad(lambda k: spike_conv_general_dilated(
    ...     s, k, (1, 1), "SAME", dimension_numbers=dn).sum())(k)
    >>> bool(jnp.allclose(plain, packed))
    True
    """
    if batch_group_count != 1:
        raise ValueError("spike_conv_general_dilated does not support batch_group_count != 1")
    pad = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dn.lhs_spec[1] != lhs.ndim - 1:
        raise ValueError(
            f"spike_conv_general_dilated stores the input's last axis as bits and needs it to be "
            f"the channels; got dimension_numbers {dimension_numbers!r}"
        )
    conv = (  # hashable: a static argument of the custom_vjp
        ("window_strides", tuple(window_strides)),
        ("padding", pad),
        ("lhs_dilation", None if lhs_dilation is None else tuple(lhs_dilation)),
        ("rhs_dilation", None if rhs_dilation is None else tuple(rhs_dilation)),
        ("dimension_numbers", dn),
        ("feature_group_count", feature_group_count),
        ("precision", precision),
        ("preferred_element_type", preferred_element_type),
    )
    return _spike_conv(lhs, rhs, conv, lhs.shape[-1])


_spike_conv.defvjp(_spike_conv_fwd, _spike_conv_bwd)


@dataclasses.dataclass(frozen=True)
class Currents:
    """The input of a LIF layer as a lazy sum ``sum_i (z_i * scale_i + shift_i) (+ spikes)``.

    ``z_i`` are ``[T, B, ..., C]`` (conv outputs), ``scale_i`` and ``shift_i``
    per channel ``[C]`` (a tdBN's ``y = z * scale + shift``), ``spikes`` an
    optional ``[T, B, ..., C]`` array of zeros and ones (an identity shortcut).
    ``a + b`` sums two of them; :meth:`add_spikes` adds spikes;
    :func:`lif_from_currents` runs the LIF on them. Each term is computed as
    :func:`~snn_jax.functional.tdbn_apply` does and the sum in float32, in the
    order of the terms: as ``TdBatchNorm(dtype=float32)`` outputs summed by hand.

    >>> z = jnp.arange(4.0).reshape(2, 1, 2)
    >>> c = Currents.affine(z, jnp.array([1.0, 2.0]), jnp.array([0.5, 0.0]))
    >>> (c + c).add_spikes(jnp.ones_like(z)).value()[:, 0]
    Array([[ 2.,  5.],
           [ 6., 13.]], dtype=float32)
    """

    terms: tuple[tuple[Array, Array, Array], ...]
    spikes: Array | None = None

    @classmethod
    def affine(cls, z: Array, scale: Array, shift: Array) -> Currents:
        """``z * scale + shift``."""
        return cls(((z, scale, shift),))

    def __add__(self, other: Currents) -> Currents:
        if not isinstance(other, Currents):
            return NotImplemented
        if self.spikes is not None and other.spikes is not None:
            raise ValueError("Currents can carry one spike term; add the spikes to one branch")
        spikes = self.spikes if other.spikes is None else other.spikes
        return Currents(self.terms + other.terms, spikes)

    def add_spikes(self, spikes: Array) -> Currents:
        """These currents plus ``spikes`` (zeros and ones; stored as bits for the backward pass)."""
        if self.spikes is not None:
            raise ValueError("these Currents already carry a spike term")
        return Currents(self.terms, spikes)

    def value(self) -> Array:
        """The sum, in float32."""
        return _sum(self.terms, self.spikes)


def _sum(terms, spikes) -> Array:
    x = None
    for z, scale, shift in terms:
        y = tdbn_apply(z, scale, shift).astype(jnp.float32)
        x = y if x is None else x + y
    return x if spikes is None else x + spikes.astype(jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _lif_currents(terms, spikes, tau, v_th, spike, detach_reset, unroll):
    return _from_rest(_sum(terms, spikes), tau, v_th, unroll, "spikes")


def _from_rest(x, tau, v_th, unroll, output):
    """``o[1..T]`` or ``u[1..T]`` (``output``) of the hard-reset LIF from rest, over ``x``."""
    rule = dict(tau=tau, v_th=v_th, reset="zero", unroll=unroll, output=output)
    return lif_forward(x, jnp.zeros_like(x[0]), in_place=True, **rule)


def _lif_currents_fwd(terms, spikes, tau, v_th, spike, detach_reset, unroll):
    out = _from_rest(_sum(terms, spikes), tau, v_th, unroll, "spikes")
    bits = None if spikes is None else (pack_spikes(spikes), jnp.zeros((0,), spikes.dtype))
    return out, (terms, bits)


def _lif_currents_bwd(tau, v_th, spike, detach_reset, unroll, res, g):
    terms, bits = res
    spikes = None
    if bits is not None:
        packed, like = bits
        spikes = unpack_spikes(_after(packed, g[..., : packed.shape[-1]]), g.shape[-1], like.dtype)
    # The z's gated on g: else the recomputed sum is scheduled in the forward pass.
    x = _sum([(_after(z, g), a, b) for z, a, b in terms], spikes)
    u = _from_rest(x, tau, v_th, unroll, "membrane")
    rule = dict(tau=tau, v_th=v_th, spike=spike, reset="zero", detach_reset=detach_reset)
    dx, _ = stbp_reverse(u, g, None, unroll=unroll, **rule)
    axes = tuple(range(dx.ndim - 1))
    dshift = jnp.sum(dx, axes)
    dterms = tuple(
        (
            _cotangent_of(z, (dx * scale).astype(z.dtype)),
            _cotangent_of(scale, jnp.sum(dx * z.astype(jnp.float32), axes).astype(scale.dtype)),
            _cotangent_of(shift, dshift.astype(shift.dtype)),
        )
        for z, scale, shift in terms
    )
    return dterms, None if spikes is None else _cotangent_of(packed, dx.astype(spikes.dtype))


_lif_currents.defvjp(_lif_currents_fwd, _lif_currents_bwd)


def lif_from_currents(
    currents: Currents,
    *,
    tau: float,
    v_th: float,
    surrogate: SpikeFunction,
    detach_reset: bool = False,
    unroll: int | bool = 1,
) -> Array:
    """Spikes of a LIF layer from rest fed by ``currents``, storing only the ``z_i`` and bits.

    The same values and gradients as ``lif_scan(currents.value(), ...)``
    with a hard reset (tested), with the memory of the module docstring.

    Args:
      currents: the input ``[T, B, ..., C]``.
      tau: leak in (0, 1] (else ``ValueError``).
      v_th: threshold, > 0 (else ``ValueError``).
      surrogate: spike function of the backward pass.
      detach_reset: stop the gradient through the reset.
      unroll: ``True`` or ``>= T``: straight-line code; else loops of one step.

    >>> from snn_jax.functional import surrogate
    >>> z = jnp.array([[[0.4]], [[0.1]], [[0.6]]])           # T=3, B=1, C=1
    >>> c = Currents.affine(z, jnp.array([1.0]), jnp.array([0.1]))
    >>> lif_from_currents(c, tau=0.5, v_th=0.5, surrogate=surrogate.rectangular())[:, 0, 0]
    Array([1., 0., 1.], dtype=float32)
    """
    check_lif_params(tau, v_th)
    return _lif_currents(
        currents.terms, currents.spikes, tau, v_th, surrogate, detach_reset, unroll
    )
