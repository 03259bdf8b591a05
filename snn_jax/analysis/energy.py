"""Synaptic operations and an energy estimate for a spiking model.

A layer fed by spikes does no multiplications: each input spike adds one
weight to each output it connects to, one *accumulate* (AC) per connection.
The synaptic operations (SOPs) of such a layer are therefore

    SOPs = sum over input elements i of  spikes(i) * fan_out(i)

where ``fan_out(i)`` is the number of (output, weight) products element ``i``
enters: ``out_features`` for a dense layer, and for a convolution the number
of output positions whose window covers ``i`` (fewer at a padded border, see
:func:`fan_out_map`) times the output channels of its group. A layer fed by
real values (the encoder conv under direct encoding, any layer of an ANN) does
``sum_i fan_out(i)`` multiply-accumulates (MACs), whatever the values; the
products with a conv's zero padding are not counted, since they need not be
done. The energy is ``E = e_ac * SOPs + e_mac * MACs``
with, by default, the 45 nm CMOS figures of Horowitz (ISSCC 2014) for 32-bit
floating point: 0.9 pJ per add and 4.6 pJ per multiply-add (3.7 + 0.9).

In a spiking model a layer counts as spike-driven when its input holds only
0s and 1s (rate-coded input spikes included), or when it is named in
``pooled``: fed by an average pool of spikes, which folds into its weights
(see :func:`count_operations`). In an ANN (``spiking=False``) every layer
does MACs, even on binary input (binarized images, a dead ReLU layer).
``snn_jax.nn.MeanDecoder`` averages the last spikes over time before its dense
readout; it is counted as the equal ``(1/T) sum_t M o[t]``, that is, one AC
per spike and output. Norm layers (folded into the
weights for inference, see ``snn_jax.analysis.folding``), pooling, the LIF
updates and biases are not counted: the usual convention, and small next to
the synaptic operations.

Counts are per example (divided by the batch size) and summed over time steps.
SOPs follow the spikes actually emitted, so the frames that temporal attention
drops at inference (``snn_jax.nn.TemporalAttention``'s ``discard_threshold``:
no input, so no spikes from them) are already saved in the counts of the
layers after them; the attention's own few multiply-adds are not counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.inspect import capture_calls, is_linear, subtree
from snn_jax.nn import MeanDecoder

__all__ = ["EnergyModel", "count_operations", "energy_estimate", "fan_out_map"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, in joules.

    Attributes:
      e_ac: one accumulate (a spike adds a weight). Default 0.9 pJ, a 32-bit
        float add at 45 nm (Horowitz 2014).
      e_mac: one multiply-accumulate. Default 4.6 pJ (32-bit float mult 3.7 pJ
        + add 0.9 pJ at 45 nm).
    """

    e_ac: float = 0.9e-12
    e_mac: float = 4.6e-12


def fan_out_map(layer: nn.Module, kernel_shape: tuple[int, ...], input_shape: tuple[int, ...]):
    """How many (output, weight) products each input element of one example enters.

    Computed exactly as ``d/dx sum(layer_ones(x))``, where ``layer_ones`` is
    the layer with an all-ones kernel and no bias: by linearity that gradient
    counts, for each input element, the terms it appears in. Padding, strides,
    dilation and feature groups are thus handled by the layer itself.

    Args:
      layer: an ``nn.Conv`` or ``nn.Dense`` (bound or not; only its attributes are used).
      kernel_shape: the shape of its kernel.
      input_shape: the shape of its input *without* the batch axis.

    Returns:
      ``np.ndarray`` float64 of ``input_shape``.

    >>> import flax.linen as nn
    >>> fan_out_map(nn.Dense(7), (4, 7), (4,)).tolist()
    [7.0, 7.0, 7.0, 7.0]
    >>> fan_out_map(nn.Conv(1, (3,), padding="SAME"), (3, 1, 1), (5, 1))[:, 0].tolist()
    [2.0, 3.0, 3.0, 3.0, 2.0]
    """
    unit = layer.clone(parent=None, use_bias=False)
    ones_kernel = {"params": {"kernel": jnp.ones(kernel_shape, jnp.float32)}}

    def total(z):
        return jnp.sum(unit.apply(ones_kernel, z).astype(jnp.float32))

    with jax.default_matmul_precision("highest"):
        grad = jax.grad(total)(jnp.ones((1, *input_shape), jnp.float32))
    return np.asarray(grad[0], np.float64)


def _is_counted(module: nn.Module) -> bool:
    return is_linear(module) or isinstance(module, MeanDecoder)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def count_operations(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    *,
    train: bool = False,
    pooled: Mapping[str, int] | None = None,
    spiking: bool = True,
) -> dict[str, dict[str, Any]]:
    """SOPs (accumulates) and MACs per conv/dense layer, per example, over all time steps.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``;
        its output's leading axis is the batch.
      variables: its variables.
      x: a model input (a batch).
      train: ``False`` (default) runs the model as in evaluation.
      pooled: ``{layer path: n}`` for layers fed by the average of ``n`` spikes
        (an average pool of spikes before them). The pool folds into the
        weights (``W mean(o) = sum (W/n) o``), so such a layer is counted as
        spike-driven: ``n * x`` spikes enter each input element, each doing
        ``fan_out`` ACs. Without it the layer's non-binary input makes it MACs.
      spiking: ``False`` for an ANN (ReLU neurons): every layer is counted as
        MACs over all its connections, whatever its input values.

    Returns:
      ``{layer path: {"kind", "ops", "input_rate"}}`` in call order: ``kind``
      is ``"ac"`` for a spike-driven layer (``ops`` = SOPs) and ``"mac"`` for a
      real-valued one (``ops`` = MACs); ``input_rate`` is the mean of the
      input (its firing rate when it is spikes). ``ops`` are float per example.

    Raises:
      ValueError: a ``pooled`` layer whose input times ``n`` is not a whole
        number of spikes, a ``pooled`` name that is not a counted layer, or
        ``pooled`` given with ``spiking=False``.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=False):
    ...         return nn.Dense(5, name="fc")(x)
    >>> spikes = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # 3 spikes, 2 examples
    >>> variables = Net().init(jax.random.key(0), spikes)
    >>> count_operations(Net(), variables, spikes)["fc"]["ops"]      # 3 * 5 / 2
    7.5
    >>> rates = spikes / 2                                             # as if pooled over 2
    >>> count_operations(Net(), variables, rates, pooled={"fc": 2})["fc"]["ops"]
    7.5
    >>> count_operations(Net(), variables, spikes, spiking=False)["fc"]["ops"]  # 3 * 5 MACs
    15.0
    """
    pooled = dict(pooled or {})
    if pooled and not spiking:
        raise ValueError("pooled counts spikes; an ANN (spiking=False) has none to pool")
    calls, output = capture_calls(
        model, variables, x, _is_counted, train=train, outermost=False, compiled=True
    )
    unknown = set(pooled) - {c.name for c in calls}
    if unknown:
        raise ValueError(
            f"pooled names {sorted(unknown)} are not conv/dense/decoder layers of the model; "
            f"the layers are {[c.name for c in calls]}"
        )
    batch = jax.tree.leaves(output)[0].shape[0]
    result: dict[str, dict[str, Any]] = {}
    decoders: list[tuple[str, ...]] = []
    for call in calls:
        if any(call.path[: len(d)] == d for d in decoders):
            continue  # the readout of a decoder counted as spikes below
        inputs = np.asarray(call.args[0], np.float64)
        rate = float(inputs.mean())
        if call.name in pooled:
            n = pooled[call.name]
            inputs = inputs * n  # spikes per input element
            if not np.allclose(inputs, np.round(inputs), atol=1e-4):
                raise ValueError(
                    f"the input of {call.name} times pooled={n} is not a whole number of "
                    "spikes; give the number of spikes its average pool takes"
                )
            inputs = np.round(inputs)
            spikes = True
        else:
            spikes = spiking and _is_binary(inputs)
        if isinstance(call.module, MeanDecoder):
            if spikes:  # (1/T) sum_t M o[t]: one AC per spike and output
                decoders.append(call.path)
                ops = float(inputs.sum()) * call.module.features
                result[call.name] = {"kind": "ac", "ops": ops / batch, "input_rate": rate}
            continue
        kernel = subtree(variables, call.path)["params"]["kernel"]
        fan_out = fan_out_map(call.module, kernel.shape, inputs.shape[1:])
        if spikes:
            ops = float(np.sum(inputs.sum(axis=0) * fan_out))
        else:
            ops = float(inputs.shape[0] * fan_out.sum())
        result[call.name] = {
            "kind": "ac" if spikes else "mac",
            "ops": ops / batch,
            "input_rate": rate,
        }
    return result


def energy_estimate(
    operations: Mapping[str, Mapping[str, Any]], energy: EnergyModel | None = None
) -> dict[str, float]:
    """Total SOPs, MACs and energy per example from :func:`count_operations`.

    Args:
      operations: the output of :func:`count_operations`.
      energy: energy per operation (default :class:`EnergyModel`: 0.9 pJ per
        AC, 4.6 pJ per MAC).

    Returns:
      ``{"sops", "macs", "energy_ac_j", "energy_mac_j", "energy_j"}`` (joules).

    >>> ops = {"enc": {"kind": "mac", "ops": 1e6}, "fc": {"kind": "ac", "ops": 2e6}}
    >>> e = energy_estimate(ops)
    >>> round(e["energy_j"] * 1e6, 2)                  # microjoules: 4.6 + 1.8
    6.4
    """
    energy = energy or EnergyModel()
    sops = sum(float(v["ops"]) for v in operations.values() if v["kind"] == "ac")
    macs = sum(float(v["ops"]) for v in operations.values() if v["kind"] == "mac")
    return {
        "sops": sops,
        "macs": macs,
        "energy_ac_j": sops * energy.e_ac,
        "energy_mac_j": macs * energy.e_mac,
        "energy_j": sops * energy.e_ac + macs * energy.e_mac,
    }
