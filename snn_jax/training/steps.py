"""Pure, jit-able train and eval steps: STBP through the model's LIF scans."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from snn_jax.training.losses import LOSSES, STEP_OUTPUTS, step_logits, tet_loss
from snn_jax.training.state import TrainState

__all__ = ["cross_entropy", "firing_rates", "train_step"]

Metrics = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy of the decoded output ``Q`` ``[B, K]`` (float32)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def firing_rates(intermediates: Any, mask: jax.Array | None = None) -> Metrics:
    """``{"firing_rate/<layer path>": rate}`` from the per-example rates the LIF layers sow.

    Without ``mask``: the mean over the batch (and over the calls of a layer
    called more than once). With a ``mask`` ``[B]``: the sum over the examples
    it keeps, for a mean over the real examples of several padded batches.

    >>> sown = {"lif": {"firing_rate": (jnp.array([0.1, 0.3, 0.9]),)}}
    >>> firing_rates(sown)["firing_rate/lif"]
    Array(0.43333334, dtype=float32)
    >>> firing_rates(sown, mask=jnp.array([1.0, 1.0, 0.0]))["firing_rate/lif"]
    Array(0.4, dtype=float32)
    """
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(intermediates), sep="/")
    rates = {}
    for path, values in flat.items():
        if path.endswith("firing_rate"):
            per_example = jnp.mean(jnp.stack(values), axis=0)
            total = jnp.mean(per_example) if mask is None else jnp.sum(per_example * mask)
            rates["firing_rate/" + path.removesuffix("/firing_rate")] = total
    return rates


def _variables(state: TrainState, params) -> dict[str, Any]:
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss: str = "ce",
    tet_lambda: float = 1e-3,
    tet_phi: float = 1.0,
) -> tuple[TrainState, Metrics]:
    """One optimisation step on a (sharded) batch.

    The loss is the mean softmax cross-entropy of the decoded output
    (``loss="ce"``) or the TET loss of the decoder's per-step outputs
    (``loss="tet"``, :func:`snn_jax.training.tet_loss` with ``tet_lambda``
    and ``tet_phi``); its gradient is STBP through the model's LIF scans. A step whose loss or
    gradient is not finite keeps the old parameters, optimizer state and
    statistics (the step counter still advances: the batch was consumed) and
    is counted in ``skipped`` and ``nonfinite_streak``.

    Args:
      state: the current ``TrainState``.
      batch: ``{"image": [B, ...] or [T, B, ...], "label": int [B]}``.

    Returns:
      ``(new_state, metrics)``; metrics has ``loss``, ``accuracy``,
      ``grad_norm``, ``param_norm``, ``skipped``, ``nonfinite_streak`` and one
      ``firing_rate/<layer>`` per spiking layer.
    """
    step_rng = jax.random.fold_in(state.rng, state.step)

    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    tet = loss == "tet"
    collections = ["batch_stats", "intermediates"] + ([STEP_OUTPUTS] if tet else [])

    def loss_fn(params):
        logits, updates = state.apply_fn(
            _variables(state, params),
            batch["image"],
            train=True,
            mutable=collections,
            rngs={"dropout": step_rng},
        )
        if tet:
            value = tet_loss(step_logits(updates), batch["label"], lam=tet_lambda, phi=tet_phi)
        else:
            value = jnp.mean(cross_entropy(logits, batch["label"]))
        return value, (logits, updates)

    (value, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)

    updated = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
    new_state = updated.replace(
        params=keep(updated.params, state.params),
        opt_state=keep(updated.opt_state, state.opt_state),
        batch_stats=keep(updated.batch_stats, state.batch_stats),
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1),
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
    )
    metrics = {
        "loss": value,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        "grad_norm": grad_norm,
        "param_norm": optax.tree.norm(new_state.params),
        "skipped": (~finite).astype(jnp.float32),
        "nonfinite_streak": new_state.nonfinite_streak,
        **firing_rates(updates.get("intermediates", {})),
    }
    return new_state, metrics
