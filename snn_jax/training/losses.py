"""Training losses on the decoder's outputs: cross-entropy of the time mean, and TET.

The decoder's output at step ``t`` is ``O_t = M o_t + b`` (``[T, B, K]``); the
prediction is always their time mean ``Q = mean_t O_t`` (METHOD.md section 2).
The temporal efficient training loss (TET, Deng et al., ICLR 2022; METHOD.md
section 10) puts the cross-entropy on every ``O_t`` instead of on ``Q``, plus a
small pull of every output towards a constant ``phi``::

    L = (1 - lam) * mean_t CE(O_t, y) + lam * mean_{t,b,k} (O_t[b, k] - phi)^2

each ``CE`` a mean over the batch, the squared error a mean over every element
of ``O``, as the authors' code (``TET_loss`` with ``torch.nn.MSELoss``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

__all__ = ["LOSSES", "STEP_OUTPUTS", "step_logits", "tet_loss"]

# "ce": cross-entropy of the time mean Q; "tet": tet_loss of the per-step outputs O_t.
LOSSES: tuple[str, ...] = ("ce", "tet")
# The variable collection in which snn_jax.nn.MeanDecoder puts its per-step outputs
# when the caller makes it mutable.
STEP_OUTPUTS = "step_outputs"


def tet_loss(
    step_logits: jax.Array, labels: jax.Array, *, lam: float = 1e-3, phi: float = 1.0
) -> jax.Array:
    """The TET loss (module docstring) of ``step_logits`` ``[T, B, K]``, a scalar (float32).

    Args:
      step_logits: the decoder's output at every step, ``O_t``, ``[T, B, K]``.
      labels: integer classes ``[B]``.
      lam: weight of the squared-error term (the authors' default 1e-3).
      phi: its target value (the authors' default 1.0).

    Raises:
      ValueError: ``step_logits`` not ``[T, B, K]`` or ``labels`` not ``[B]``.

    >>> o = jnp.zeros((2, 3, 4))                 # T=2, B=3, K=4: uniform outputs
    >>> float(tet_loss(o, jnp.array([0, 1, 2]), lam=0.0))   # CE = log 4
    1.3862943649291992
    >>> float(tet_loss(o, jnp.array([0, 1, 2]), lam=1.0, phi=1.0))   # MSE to 1
    1.0
    """
    if step_logits.ndim != 3:
        raise ValueError(
            f"tet_loss expects step_logits [T, B, K] (the decoder's output at every step), "
            f"got shape {step_logits.shape}"
        )
    if labels.shape != step_logits.shape[1:2]:
        raise ValueError(
            f"tet_loss expects integer labels [B] = [{step_logits.shape[1]}], got shape "
            f"{labels.shape}"
        )
    o = step_logits.astype(jnp.float32)
    per_step = jax.vmap(optax.softmax_cross_entropy_with_integer_labels, (0, None))(o, labels)
    return (1 - lam) * jnp.mean(per_step) + lam * jnp.mean(jnp.square(o - phi))


def step_logits(collections: Mapping[str, Any]) -> jax.Array:
    """The per-step outputs ``[T, B, K]`` a model's decoder put in :data:`STEP_OUTPUTS`.

    ``collections`` is what ``apply(..., mutable=[STEP_OUTPUTS, ...])`` returned
    beside the output.

    Raises:
      ValueError: when the model has not exactly one decoder that records them.

    >>> import jax
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", time_steps=3, width=2, hidden_features=4)
    >>> x = jnp.ones((5, 8, 8, 1))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)   # shapes only
    >>> run = lambda v, x: model.apply(v, x, train=False, mutable=[STEP_OUTPUTS])
    >>> q, out = jax.eval_shape(run, variables, x)
    >>> step_logits(out).shape                           # [T, B, K]
    (3, 5, 10)
    """
    flat = flax.traverse_util.flatten_dict(
        flax.core.unfreeze(collections.get(STEP_OUTPUTS, {})), sep="/"
    )
    if len(flat) != 1:
        raise ValueError(
            f"the TET loss needs the per-step outputs of exactly one snn_jax.nn.MeanDecoder, "
            f"found {sorted(flat)}; use a model of snn_jax.models, or config.loss = 'ce'"
        )
    (values,) = flat.values()
    return values[0] if isinstance(values, tuple) else values
