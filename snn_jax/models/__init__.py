"""The model zoo: spiking ResNets, a plain deep spiking CNN and a small CNN for digits.

Every model maps a static batch ``[B, H, W, C]`` (repeated over ``time_steps``)
or time-major frames ``[T, B, H, W, C]`` to logits ``[B, num_classes]``, is
called as ``model.apply(variables, x, train=...)``, and takes
``norm`` in :data:`snn_jax.nn.NORMS` (``"tdbn"``, ``"bn"``, ``"none"``, ``"tebn"``, ``"bntt"``) and
``neuron``, a :class:`snn_jax.nn.NeuronSpec`. ``neuron=NeuronSpec(kind="relu"),
norm="bn", time_steps=1`` is the ANN twin of a model (same parameters, no time loop).
The LIF layers sow their firing rates into the ``intermediates`` collection.

>>> import jax, jax.numpy as jnp
>>> model = get_model("digits_cnn", num_classes=10, time_steps=4, width=4)
>>> x = jnp.zeros((3, 8, 8, 1))
>>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
>>> sorted(variables)
['batch_stats', 'params']
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from snn_jax.models.layers import (
    MEMORY_OPTIONS,
    Block,
    ConvUnit,
    DenseUnit,
    LayerFactory,
    SpikingModel,
)
from snn_jax.models.plain import PlainCNN
from snn_jax.models.resnet import (
    BasicBlock,
    BottleneckBlock,
    ResNet17,
    ResNet18,
    ResNet19,
    ResNet34,
    ResNet50,
    SpikingResNet,
)
from snn_jax.models.small import DigitsCNN

__all__ = [
    "MEMORY_OPTIONS",
    "MODEL_NAMES",
    "BasicBlock",
    "Block",
    "BottleneckBlock",
    "ConvUnit",
    "DenseUnit",
    "DigitsCNN",
    "LayerFactory",
    "PlainCNN",
    "ResNet17",
    "ResNet18",
    "ResNet19",
    "ResNet34",
    "ResNet50",
    "SpikingModel",
    "SpikingResNet",
    "get_model",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet17": ResNet17,
    "resnet18": ResNet18,
    "resnet19": ResNet19,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "plain": PlainCNN,
    "digits_cnn": DigitsCNN,
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def get_model(name: str, **kwargs) -> nn.Module:
    """The model ``name`` (one of :data:`MODEL_NAMES`) with its fields set by ``kwargs``.

    Raises:
      ValueError: for an unknown name, or an unknown norm, neuron, surrogate or
        memory option.
      TypeError: for a keyword the model does not have.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return _MODELS[name](**kwargs)
