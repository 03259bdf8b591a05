"""Spiking activity of a model: firing rates, silent and saturated neurons.

The spike trains are read from the model's spiking layers (``snn_jax.nn.LIF``
and ``IF``) during one forward pass, through :func:`snn_jax.inspect.capture_calls`,
without changing the model. A *neuron* is
one element of a layer's output apart from time and batch (a position and
channel of a conv feature map, a unit of a dense layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.inspect import Predicate, capture_calls, is_neuron

__all__ = ["firing_statistics", "is_spiking", "layer_activity", "spike_trains"]

Array = jax.Array


# The spiking layers of snn_jax.nn (LIF, and IF which is a LIF): snn_jax.inspect.is_neuron.
is_spiking = is_neuron


def spike_trains(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    *,
    train: bool = False,
    predicate: Predicate = is_neuron,
) -> dict[str, Array]:
    """The output spikes of every spiking layer, ``{layer path: [T, B, ...]}``.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``.
      variables: its variables.
      x: a model input.
      train: ``False`` (default) uses running statistics, as in evaluation.
      predicate: which submodules are spiking layers.

    Returns:
      A dict in call (depth) order; values are the layers' outputs.

    >>> import jax.numpy as jnp, flax.linen as nn
    >>> from snn_jax.nn import LIF
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=False):
    ...         return LIF(name="lif")(x)
    >>> spike_trains(Net(), {}, jnp.full((3, 2, 4), 0.6))["lif"].shape
    (3, 2, 4)
    """
    calls, _ = capture_calls(
        model, variables, x, predicate, train=train, outermost=False, compiled=True
    )
    return {c.name: c.output for c in calls}


def firing_statistics(spikes: Array) -> dict[str, Array]:
    """Firing statistics of one layer's spikes ``[T, B, ...]``.

    Args:
      spikes: 0/1 array, time-major ``[T, B, ...]``.

    Returns:
      ``rate``: mean spikes per neuron and step (scalar); ``rate_per_step``:
      the mean at each step ``[T]``; ``silent``: fraction of neurons that never
      fire, over the whole batch and all steps; ``saturated``: fraction of
      neurons that fire at every step for every example of the batch;
      ``neuron_rate``: the rate of each neuron over time and batch ``[...]``.

    >>> import jax.numpy as jnp
    >>> s = jnp.zeros((4, 2, 3)).at[:, :, 0].set(1.0).at[0, 0, 1].set(1.0)  # T=4, B=2, 3 neurons
    >>> st = firing_statistics(s)
    >>> float(st["silent"]), float(st["saturated"]), st["rate_per_step"].tolist()
    (0.3333333432674408, 0.3333333432674408, [0.5, 0.3333333432674408, 0.3333333432674408, 0.3333333432674408])
    """  # noqa: E501
    if spikes.ndim < 2:
        raise ValueError(f"expected time-major spikes [T, B, ...], got shape {spikes.shape}")
    s = spikes.astype(jnp.float32)
    neuron_rate = jnp.mean(s, axis=(0, 1))
    return {
        "rate": jnp.mean(s),
        "rate_per_step": jnp.mean(s.reshape(s.shape[0], -1), axis=1),
        "silent": jnp.mean(neuron_rate == 0),
        "saturated": jnp.mean(neuron_rate == 1),
        "neuron_rate": neuron_rate,
    }


def layer_activity(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    *,
    train: bool = False,
    predicate: Predicate = is_neuron,
) -> dict[str, dict[str, Array]]:
    """:func:`firing_statistics` of every spiking layer, ``{layer path: stats}``.

    >>> import jax.numpy as jnp, flax.linen as nn
    >>> from snn_jax.nn import LIF
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=False):
    ...         return LIF(name="lif")(x)
    >>> float(layer_activity(Net(), {}, jnp.full((3, 2, 4), 0.6))["lif"]["saturated"])
    1.0
    """
    trains = spike_trains(model, variables, x, train=train, predicate=predicate)
    return {name: firing_statistics(s) for name, s in trains.items()}
