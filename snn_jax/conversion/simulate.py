"""Evaluating a zoo model on a test split: accuracy, predictions and spikes per image.

Works for every model of the comparison (ANN, converted SNN, STBP-trained
SNN): the model runs in evaluation mode (``train=False``), the spikes of every
spiking layer (:func:`snn_jax.analysis.is_spiking`, found by
``snn_jax.analysis``'s call capture) are counted per example, all steps
and neurons together. Long simulations are split into chunks of at most
``max_steps_times_batch`` example-steps so that ``T * B`` stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from snn_jax.analysis import is_spiking
from snn_jax.analysis._capture import capture_calls

__all__ = ["evaluate_classifier", "forward_with_spikes"]


def forward_with_spikes(model: nn.Module, variables: Mapping[str, Any], x: jax.Array):
    """``(logits [B, K], spikes [B])``: evaluation-mode logits and each example's spike count.

    >>> import jax.numpy as jnp
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    >>> x = jnp.ones((5, 8, 8, 1))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, spikes = forward_with_spikes(model, variables, x)
    >>> logits.shape, spikes.shape
    ((5, 10), (5,))
    """
    calls, logits = capture_calls(model, variables, x, is_spiking, train=False, outermost=False)
    spikes = jnp.zeros(logits.shape[0], jnp.float32)
    for call in calls:  # each [T, B, ...]
        s = call.output.astype(jnp.float32)
        spikes = spikes + jnp.sum(s.reshape(s.shape[0], s.shape[1], -1), axis=(0, 2))
    return logits, spikes


def evaluate_classifier(
    model: nn.Module,
    variables: Mapping[str, Any],
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    max_steps_times_batch: int = 32768,
) -> dict[str, Any]:
    """Accuracy, predictions and mean spikes per image over ``batches``.

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
    steps = getattr(model, "time_steps", None) or 1
    chunk = max(1, max_steps_times_batch // steps)
    run = jax.jit(lambda v, x: forward_with_spikes(model, v, x))
    predictions, labels, spikes = [], [], []
    for batch in batches:
        images = np.asarray(batch["image"], np.float32)
        mask = np.asarray(batch.get("mask", np.ones(len(images), bool)), bool)
        size = min(chunk, len(images))
        for start in range(0, len(images), size):
            part = images[start : start + size]
            n = len(part)
            if n < size:  # pad to the chunk size: one compilation
                part = np.concatenate([part, np.zeros((size - n, *part.shape[1:]), part.dtype)])
            logits, counts = jax.device_get(run(variables, part))
            keep = mask[start : start + n]
            predictions.append(np.argmax(logits[:n], -1)[keep])
            spikes.append(np.asarray(counts[:n], np.float64)[keep])
        labels.append(np.asarray(batch["label"])[mask])
    predictions = np.concatenate(predictions) if predictions else np.zeros(0, int)
    labels = np.concatenate(labels) if labels else np.zeros(0, int)
    spikes = np.concatenate(spikes) if spikes else np.zeros(0)
    count = len(labels)
    return {
        "accuracy": float(np.mean(predictions == labels)) if count else float("nan"),
        "spikes_per_image": float(spikes.mean()) if count else float("nan"),
        "count": count,
        "predictions": predictions,
    }
