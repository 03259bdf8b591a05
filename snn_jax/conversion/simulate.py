"""Evaluating a zoo model on a test split: accuracy, predictions and spikes per image.

Works for every model of the comparison (ANN, converted SNN, STBP-trained
SNN) through the one evaluation function, :func:`snn_jax.training.evaluate`:
the model runs in evaluation mode (``train=False``) and the spikes of every
spiking layer are counted per example, all steps and neurons together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from snn_jax.training.evaluation import evaluate
from snn_jax.training.evaluation import forward_with_spikes as _forward

__all__ = ["evaluate_classifier", "forward_with_spikes"]


def forward_with_spikes(model: nn.Module, variables: Mapping[str, Any], x: jax.Array):
    """``(logits [B, K], spikes [B])``: evaluation-mode logits and each example's spike count.

    See :func:`snn_jax.training.evaluation.forward_with_spikes`, which also
    returns the sown firing rates.

    >>> import jax.numpy as jnp
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    >>> x = jnp.ones((5, 8, 8, 1))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, spikes = forward_with_spikes(model, variables, x)
    >>> logits.shape, spikes.shape
    ((5, 10), (5,))
    """
    logits, spikes, _ = _forward(model, variables, x)
    return logits, spikes


def evaluate_classifier(
    model: nn.Module,
    variables: Mapping[str, Any],
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    max_steps_times_batch: int = 32768,
) -> dict[str, Any]:
    """Accuracy, predictions and mean spikes per image over ``batches``.

    :func:`snn_jax.training.evaluate` with ``predictions=True``, keeping its
    ``accuracy``, ``spikes_per_image``, ``count`` and ``predictions``.

    Args:
      model: a zoo model (its ``time_steps`` sets ``T``).
      variables: its variables.
      batches: dicts with ``image`` ``[B, ...]`` (static images), ``label``
        ``[B]`` and optionally ``mask`` ``[B]`` (False: padding), e.g. a
        pipeline's ``eval_batches()``.
      max_steps_times_batch: the most ``T * B`` run at once.

    Returns:
      ``accuracy``, ``spikes_per_image``, ``count`` (real examples) and
      ``predictions`` (int ``[count]``, in order).
    """
    result = evaluate(
        model,
        variables,
        batches,
        max_steps_times_batch=max_steps_times_batch,
        predictions=True,
    )
    return {k: result[k] for k in ("accuracy", "spikes_per_image", "count", "predictions")}
