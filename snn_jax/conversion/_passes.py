"""Running a zoo model with its neurons, or its linear layers' outputs, replaced.

Conversion looks at a model through a few such passes. Each runs
``model.apply(variables, x, train=False)`` under :func:`flax.linen.intercept_methods`
and, at every spiking layer (:class:`snn_jax.nn.LIF`) and every conv or dense
layer, records its input and may replace its output. The model is not changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snn_jax.analysis._capture import without_remat
from snn_jax.nn import LIF

__all__ = ["Pass", "make_pass"]

Array = jax.Array
# (layer name, its input) -> its replacement output
NeuronFn = Callable[[str, Array], Array]
# (layer name, its input, its output) -> its replacement output
LinearFn = Callable[[str, Array, Array], Array]


@dataclasses.dataclass
class Pass:
    """A jitted pass ``run(variables, x) -> (output, inputs, outputs)``.

    ``inputs`` maps each neuron and linear layer (its path joined by ``/``) to
    the array it received; ``outputs`` maps each linear layer to what it
    returned (before any replacement). ``order`` lists ``(kind, name)`` in call
    order, ``kind`` being ``"neuron"`` or ``"linear"``; it is filled when the
    pass is first traced.
    """

    run: Callable[[Mapping[str, Any], Array], tuple[Any, dict[str, Array], dict[str, Array]]]
    order: list[tuple[str, str]]


def make_pass(
    model: nn.Module,
    *,
    neuron_fn: NeuronFn | None = None,
    linear_fn: LinearFn | None = None,
) -> Pass:
    """A pass over ``model`` with neurons and linear outputs replaced as given (``None``: kept).

    Raises:
      ValueError: (when run) if a layer is called twice; conversion needs one
        call per layer.
    """
    order: list[tuple[str, str]] = []

    def run(variables, x):
        order.clear()
        inputs: dict[str, Array] = {}
        outputs: dict[str, Array] = {}

        def record(kind, module, value):
            name = "/".join(module.path)
            if name in inputs:
                raise ValueError(f"layer {name} is called twice; conversion needs one call each")
            order.append((kind, name))
            inputs[name] = value
            return name

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            if isinstance(module, LIF):
                name = record("neuron", module, args[0])
                if neuron_fn is None:
                    return next_fun(*args, **kwargs)
                return neuron_fn(name, args[0])
            if isinstance(module, nn.Conv | nn.Dense):
                name = record("linear", module, args[0])
                out = next_fun(*args, **kwargs)
                outputs[name] = out
                return out if linear_fn is None else linear_fn(name, args[0], out)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            out = without_remat(model).apply(variables, jnp.asarray(x), train=False)
        return out, inputs, outputs

    return Pass(jax.jit(run), order)
