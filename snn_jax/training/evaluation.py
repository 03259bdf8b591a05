"""Evaluating a classifier on a split: accuracy, loss, firing rates and spikes per image.

One function, :func:`evaluate`, serves every model (ANN, converted SNN,
STBP-trained SNN) and every caller (the training loop, the method comparison,
conversion). The model runs in evaluation mode (``train=False``, running
statistics); each batch goes through one jitted function,
:func:`evaluate_batch`, which returns *sums over the real examples* (those
its ``mask`` keeps), so padded batches count exactly their real examples and
the means do not depend on the batch size. Every batch is cut or padded to one
shape (the first batch's, or fewer examples when ``max_steps_times_batch``
bounds ``T * B``), so a split compiles once.

Firing rates are read from what the spiking layers sow (``intermediates``,
as in training: :func:`snn_jax.training.steps.firing_rates`); the spikes of
each example are counted at the spiking layers' outputs
(:func:`snn_jax.inspect.recording`), all layers, steps and neurons together.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from snn_jax import data as data_lib
from snn_jax.inspect import is_neuron, recording, without_remat
from snn_jax.training import sharding
from snn_jax.training.steps import cross_entropy, firing_rates

__all__ = ["evaluate", "evaluate_batch", "forward_with_spikes"]

Array = jax.Array


def forward_with_spikes(
    model: nn.Module, variables: Mapping[str, Any], image: Array
) -> tuple[Array, Array, Any]:
    """``(logits [B, K], spikes [B], intermediates)`` in evaluation mode (jit-able).

    ``spikes``: each example's spike count, all spiking layers, steps and
    neurons together; ``intermediates``: what the layers sow (firing rates).

    >>> import jax, jax.numpy as jnp
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    >>> x = jnp.ones((5, 8, 8, 1))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, spikes, _ = forward_with_spikes(model, variables, x)
    >>> logits.shape, spikes.shape
    ((5, 10), (5,))
    """
    model = without_remat(model)  # the same values, with the spiking layers' calls to see
    with recording(is_neuron, outermost=False) as calls:
        logits, state = model.apply(variables, image, train=False, mutable=["intermediates"])
    spikes = jnp.zeros(logits.shape[0], jnp.float32)
    for call in calls:  # each [T, B, ...]
        s = call.output.astype(jnp.float32)
        spikes = spikes + jnp.sum(s.reshape(s.shape[0], s.shape[1], -1), axis=(0, 2))
    return logits, spikes, state.get("intermediates", {})


def evaluate_batch(
    model: nn.Module, variables: Mapping[str, Any], batch: Mapping[str, Array]
) -> dict[str, Array]:
    """Sums over the real examples of one batch, in evaluation mode (jit-able).

    Args:
      model: a classifier called as ``model.apply(variables, image, train=False)``.
      variables: its variables (``params``, ``batch_stats``).
      batch: ``image`` (``[B, ...]`` or time-major ``[T, B, ...]``), ``label``
        int ``[B]`` and optionally ``mask`` bool ``[B]`` (False: padding).

    Returns:
      ``loss_sum``, ``correct``, ``count``, ``spikes`` (the real examples'
      spikes, all layers, steps and neurons) and ``firing_rate/<layer>`` (the
      sum of the real examples' rates), scalars; ``predictions`` int ``[B]``
      (all examples, padding included).
    """
    labels = batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, bool)).astype(jnp.float32)
    logits, spikes, intermediates = forward_with_spikes(model, variables, batch["image"])
    predictions = jnp.argmax(logits, -1)
    return {
        "loss_sum": jnp.sum(cross_entropy(logits, labels) * mask),
        "correct": jnp.sum((predictions == labels) * mask),
        "count": jnp.sum(mask),
        "spikes": jnp.sum(spikes * mask),
        **firing_rates(intermediates, mask),
        "predictions": predictions,
    }


@functools.cache
def _compiled(mesh: Mesh | None):
    """:func:`evaluate_batch` jitted (the model static), results replicated over ``mesh``."""
    out = {} if mesh is None else {"out_shardings": sharding.replicated(mesh)}
    return jax.jit(evaluate_batch, static_argnums=0, **out)


def _pieces(
    batches: Iterable[Mapping[str, Any]], limit: int | None, time_major: bool
) -> Iterator[dict[str, np.ndarray]]:
    """The batches cut into pieces of one size (the first batch's, at most ``limit``), padded."""
    size = None
    axis = 1 if time_major else 0
    for batch in batches:
        images = np.asarray(batch["image"])
        labels = np.asarray(batch["label"])
        n = images.shape[axis]
        mask = np.asarray(batch.get("mask", np.ones(n, bool)), bool)
        if size is None:
            size = n if limit is None else max(1, min(n, limit))
        for start in range(0, n, size):
            part = {
                "image": np.take(images, np.arange(start, min(start + size, n)), axis=axis),
                "label": labels[start : start + size],
                "mask": mask[start : start + size],
            }
            missing = size - len(part["label"])
            if missing:  # padding: masked out, one shape for all pieces
                for key, value in part.items():
                    a = axis if key == "image" else 0
                    widths = [(0, 0)] * value.ndim
                    widths[a] = (0, missing)
                    part[key] = np.pad(value, widths)
            yield part


def evaluate(
    model: nn.Module,
    variables: Mapping[str, Any],
    batches: Iterable[Mapping[str, Any]],
    *,
    mesh: Mesh | None = None,
    time_major: bool = False,
    max_steps_times_batch: int | None = None,
    predictions: bool = False,
) -> dict[str, Any]:
    """Accuracy, loss, firing rates and spikes per image over ``batches``, real examples only.

    Args:
      model: a classifier (e.g. a zoo model) called as ``model.apply(variables,
        image, train=False)``.
      variables: its variables (``params``, ``batch_stats``); on the host, or
        replicated over ``mesh``.
      batches: dicts with ``image``, ``label`` int ``[B]`` and optionally
        ``mask`` bool ``[B]`` (False: padding), e.g. a pipeline's
        ``eval_batches()``.
      mesh: place each batch split over this mesh's data axis
        (:func:`snn_jax.training.put_batch`; the batch size must divide over
        its devices) and replicate the results; ``None``: default placement.
      time_major: the images are ``[T, B, ...]`` (event frames).
      max_steps_times_batch: the most ``T * B`` run at once (``T``: the
        model's ``time_steps``, or the frames' ``T``); ``None``: whole batches.
      predictions: also return the real examples' predicted classes.

    Returns:
      ``accuracy``, ``loss`` (mean cross-entropy), ``spikes_per_image`` and
      ``firing_rate/<layer>`` (one per spiking layer: the mean over the real
      examples of each example's mean spike over steps and neurons), floats;
      ``count``, the number of real examples; and with ``predictions``,
      ``predictions`` int ``[count]`` in order. Means are NaN when
      ``count`` is 0.

    >>> import jax, numpy as np
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    >>> x = np.ones((5, 8, 8, 1), np.float32)
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> batch = {"image": x, "label": np.arange(5), "mask": np.arange(5) < 4}
    >>> result = evaluate(model, variables, [batch, batch])       # 2 x 4 real examples
    >>> result["count"], sorted(k for k in result if k.startswith("firing_rate/"))
    (8, ['firing_rate/conv1/neuron/lif', 'firing_rate/conv2/neuron/lif', \
'firing_rate/fc/neuron/lif'])
    """
    limit = None
    if max_steps_times_batch is not None:
        steps = getattr(model, "time_steps", None) or 1
        limit = max(1, max_steps_times_batch // steps)
        if mesh is not None:  # a whole number of examples per device
            n = mesh.devices.size
            limit = max(n, limit // n * n)
    run = _compiled(mesh)
    time_major_keys = ("image",) if time_major else ()
    pieces = _pieces(batches, limit, time_major)
    if mesh is not None:  # placed on the devices by a thread, two pieces ahead
        pieces = data_lib.prefetch(
            ((p, sharding.put_batch(p, mesh, time_major_keys)) for p in pieces), 2
        )
    else:
        pieces = ((p, p) for p in pieces)
    with contextlib.closing(pieces):
        # The host waits for the devices once, at the end.
        outs = [(piece["mask"], run(model, variables, placed)) for piece, placed in pieces]
    outs = jax.device_get(outs)
    sums: dict[str, float] = {}
    kept: list[np.ndarray] = []
    for mask, out in outs:
        if predictions:
            kept.append(np.asarray(out["predictions"])[mask])
        for key, value in out.items():
            if key != "predictions":
                sums[key] = sums.get(key, 0.0) + float(value)
    count = round(sums.pop("count", 0.0))
    mean = (lambda v: v / count) if count else (lambda v: float("nan"))
    result: dict[str, Any] = {
        "accuracy": mean(sums.pop("correct", 0.0)),
        "loss": mean(sums.pop("loss_sum", 0.0)),
        "spikes_per_image": mean(sums.pop("spikes", 0.0)),
        "count": count,
    }
    result.update({key: mean(value) for key, value in sums.items()})
    if predictions:
        result["predictions"] = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return result
