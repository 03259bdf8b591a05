"""Where a norm meets a neuron: ``neuron(sum_i norm_i(z_i) + spikes)``, one module.

Every layer of the model zoo ends in this unit: the conv or dense outputs
``z_i`` that feed one neuron layer (one, or two in a residual block: the
block's last conv and its projection shortcut), each normalized, summed with
an identity shortcut's spikes if there is one, then the neuron. It is the one
place where the norm (tdBN, BN, TEBN, BNTT or none) and the neuron (:class:`NeuronSpec`)
are chosen, and the one place a memory-saving kernel may look across the two:
with ``compact=True`` the unit runs
:func:`snn_jax.functional.lif_from_currents`, which keeps only the ``z_i``
(and the spikes as bits) for the backward pass and recomputes the membranes
there, with the same values and gradients as the plain path (tested). Either
way the unit returns an array.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.functional.compact import Currents, lif_from_currents
from snn_jax.nn.attention import TemporalAttention
from snn_jax.nn.neurons import LIF, NeuronSpec
from snn_jax.nn.norm import TdBatchNorm
from snn_jax.nn.temporal_norm import BNTT, TEBN

__all__ = [
    "ATTENTIONS",
    "NORMS",
    "SQUEEZES",
    "STEP_NORMS",
    "NormNeuron",
    "check_compact",
    "compact_conflicts",
]

# "tdbn": TdBatchNorm with the unit's alpha and the neurons' V_th (METHOD.md section 4);
# "bn": ordinary batch norm over the same axes (a TdBatchNorm with alpha * V_th = 1);
# "none": no norm (the linear layers feeding the unit then carry a bias);
# "tebn", "bntt": the norms with a part per time step (TEBN, BNTT; METHOD.md section 10).
NORMS: tuple[str, ...] = ("tdbn", "bn", "none", "tebn", "bntt")
# the norms whose evaluation-mode map differs between time steps
STEP_NORMS: tuple[str, ...] = ("tebn", "bntt")

# "none": no attention; "temporal": TA-SNN's temporal-wise attention (snn_jax.nn.TemporalAttention)
# on the normalized currents, before the neuron (METHOD.md section 11).
ATTENTIONS: tuple[str, ...] = ("none", "temporal")
# What the attention's squeeze averages: "current", the normalized currents it scales (the
# official code); "input", the unit's input (the spikes or frames entering its linear layer).
SQUEEZES: tuple[str, ...] = ("current", "input")


def compact_conflicts(neuron: NeuronSpec, norm: str) -> list[str]:
    """The settings with which a unit cannot run compact (an empty list: it can).

    The compact kernel recomputes a hard-reset LIF with one constant leak and
    threshold from normalized currents, with the STBP gradient.

    >>> compact_conflicts(NeuronSpec(reset="subtract"), "none")
    ["norm='none'", "reset='subtract'"]
    """
    conflicts = {
        f"neuron kind {neuron.kind!r}": neuron.kind != "lif",
        "norm='none'": norm == "none",
        f"norm={norm!r} (a map per time step)": norm in STEP_NORMS,
        f"reset={neuron.reset!r}": neuron.reset != "zero",
        "channel_threshold": neuron.channel_threshold,
        f"gradient={neuron.gradient!r}": neuron.gradient != "stbp",
        f"learn_tau={neuron.learn_tau!r}": neuron.learn_tau != "none",
        f"learn_v_th={neuron.learn_v_th!r}": neuron.learn_v_th != "none",
    }
    return [name for name, present in conflicts.items() if present]


def check_compact(neuron: NeuronSpec, norm: str) -> None:
    """Raises ``ValueError`` naming the :func:`compact_conflicts` of a compact unit, if any."""
    conflicts = compact_conflicts(neuron, norm)
    if conflicts:
        raise ValueError(
            "memory='compact' needs LIF neurons after a tdBN or BN norm, with the hard reset, one "
            f"constant leak and threshold and the STBP gradient; got {', '.join(conflicts)}. "
            "Use memory='none' or 'remat'"
        )


class NormNeuron(nn.Module):
    """``neuron(sum_i norm_i(z_i) + spikes)`` on ``[T, B, ..., C]`` (module docstring).

    Attributes:
      neuron: the neurons' :class:`NeuronSpec` (``kind="relu"``: a ReLU).
      norm: one of :data:`NORMS`.
      alphas: tdBN's ``alpha`` for each input: 1 for one input, ``1/sqrt(n)``
        for each of ``n`` summed branches.
      norm_names: the norm layers' names, one per input.
      compact: keep only the inputs (and spikes as bits) for the backward pass
        (see :func:`compact_conflicts` for what it needs).
      axis_name: the norms' ``axis_name`` (see :class:`TdBatchNorm`).
      attention: one of :data:`ATTENTIONS`. ``"temporal"`` scales the sum of
        the normalized currents by TA-SNN's per-frame scores (a
        :class:`~snn_jax.nn.TemporalAttention` named ``attention``) before
        the identity ``spikes`` are added and the neuron fires: after the
        norm, before the neuron, as the official code; an identity shortcut
        passes unscaled. Not with ``compact``.
      attention_reduction: the attention's ``reduction``.
      discard_threshold: the attention's ``discard_threshold`` (pruning at
        evaluation; ``None``: none).
      attention_squeeze: one of :data:`SQUEEZES`: the squeeze averages the
        normalized currents (``"current"``, the official rule) or the
        unit's ``inputs`` (``"input"``; then the call must pass them).

    Layers: the norms (``norm_names``), ``attention`` (with attention) and
    ``lif`` (a :class:`LIF`, which sows the firing rates; when compact, only
    that).

    >>> import jax
    >>> unit = NormNeuron(NeuronSpec(), alphas=(0.7, 0.7), norm_names=("norm", "shortcut_norm"))
    >>> z = jax.random.normal(jax.random.key(0), (4, 2, 3))       # T=4, B=2, C=3
    >>> out, _ = unit.init_with_output(jax.random.key(1), z, 2 * z)
    >>> out.shape, sorted(_["params"])
    ((4, 2, 3), ['norm', 'shortcut_norm'])
    """

    neuron: NeuronSpec = NeuronSpec()
    norm: str = "tdbn"
    alphas: Sequence[float] = (1.0,)
    norm_names: Sequence[str] = ("norm",)
    compact: bool = False
    axis_name: str | None = None
    attention: str = "none"
    attention_reduction: int = 1
    discard_threshold: float | None = None
    attention_squeeze: str = "current"

    def __post_init__(self):
        if self.attention_squeeze not in SQUEEZES:
            raise ValueError(
                f"unknown attention squeeze {self.attention_squeeze!r}; expected one of {SQUEEZES}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; expected one of {NORMS}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; expected one of {ATTENTIONS}")
        if self.compact and self.attention != "none":
            raise ValueError(
                "memory='compact' does not support attention: the compact kernel recomputes "
                "the membranes from the normalized currents, which the attention rescales; "
                "use memory='none' or 'remat' with attention"
            )
        if len(self.alphas) != len(self.norm_names):
            raise ValueError(
                f"NormNeuron needs one alpha per norm name, got {len(self.alphas)} alphas and "
                f"{len(self.norm_names)} names"
            )
        if self.compact:
            check_compact(self.neuron, self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(
        self,
        *currents: jax.Array,
        spikes: jax.Array | None = None,
        train: bool = True,
        inputs: jax.Array | None = None,
    ) -> jax.Array:
        """The neurons' output for ``currents`` (one per norm) and identity ``spikes``.

        ``inputs``: the unit's input ``[T, B, ...]`` (what its linear layer
        read), for ``attention_squeeze="input"``; otherwise unused.
        """
        if len(currents) != len(self.alphas):
            raise ValueError(
                f"NormNeuron was made for {len(self.alphas)} inputs, got {len(currents)}"
            )
        if self.compact:
            return self._compact(currents, spikes, train)
        x = None
        for z, layer in zip(currents, self._norms(), strict=True):
            y = z if layer is None else layer(z, use_running_average=not train)
            x = y if x is None else x + y
        if self.attention == "temporal":
            attention = TemporalAttention(
                self.attention_reduction, self.discard_threshold, name="attention"
            )
            squeeze_from = None
            if self.attention_squeeze == "input":
                if inputs is None:
                    raise ValueError(
                        "attention_squeeze='input' needs the unit's inputs: call the unit "
                        "with inputs=<what its linear layer read>"
                    )
                squeeze_from = inputs
            x = attention(x, train=train, squeeze_from=squeeze_from)
        if spikes is not None:
            x = x + spikes
        if self.neuron.kind == "relu":
            return nn.relu(x)
        return LIF(self.neuron, name="lif")(x.astype(jnp.float32))

    def _norms(self) -> list[TdBatchNorm | TEBN | BNTT | None]:
        if self.norm == "none":
            return [None] * len(self.alphas)
        if self.norm in STEP_NORMS:
            cls = TEBN if self.norm == "tebn" else BNTT
            return [
                cls(axis_name=self.axis_name, dtype=jnp.float32, name=name)
                for name in self.norm_names
            ]
        return [
            TdBatchNorm(
                alpha=alpha if self.norm == "tdbn" else 1.0,
                v_th=self.neuron.v_th if self.norm == "tdbn" else 1.0,
                axis_name=self.axis_name,
                dtype=jnp.float32,
                name=name,
            )
            for alpha, name in zip(self.alphas, self.norm_names, strict=True)
        ]

    def _compact(self, currents, spikes, train) -> jax.Array:
        terms = tuple(
            (z, *layer.affine(z, use_running_average=not train))
            for z, layer in zip(currents, self._norms(), strict=True)
        )
        spec = self.neuron
        out = lif_from_currents(
            Currents(terms, spikes),
            tau=spec.tau,
            v_th=spec.v_th,
            surrogate=spec.spike_function,
            detach_reset=spec.detach_reset,
            unroll=spec.unroll,
        )
        LIF(spec, name="lif").record(out)
        return out
