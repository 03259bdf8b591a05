"""The train state and its (abstract, then sharded) creation."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import Mesh

from snn_jax.training.sharding import make_mesh, replicated

__all__ = ["TrainState", "create_train_state"]


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax), plus what an SNN run carries.

    Attributes:
      batch_stats: running tdBN/BN statistics (``{}`` for models without norm).
      rng: a raw ``uint32[2]`` PRNG key; step ``s`` uses ``fold_in(rng, s)``.
      nonfinite_streak: consecutive steps whose loss or gradient was not finite.
      skipped_steps: all steps skipped for that reason.
    """

    batch_stats: Any
    rng: jax.Array
    nonfinite_streak: jax.Array
    skipped_steps: jax.Array


def create_train_state(
    rng: jax.Array,
    model: nn.Module,
    tx: optax.GradientTransformation,
    example_input: jax.ShapeDtypeStruct | jax.Array,
    mesh: Mesh | None = None,
    variables: Any = None,
) -> TrainState:
    """Initialises the model and optimizer directly into replicated device memory.

    The state's structure is first derived abstractly with ``jax.eval_shape``;
    then one jitted init writes it with a replicated sharding on ``mesh``.

    Args:
      rng: a raw PRNG key (``jax.random.PRNGKey(seed)``).
      model: a Flax module called as ``model(x, train=...)``.
      tx: the optax optimizer.
      example_input: an input of the model's shape (its batch size is irrelevant).
      mesh: the device mesh (default: all devices).
      variables: start from these ``{"params", "batch_stats"}`` (e.g. a
        converted network) instead of ``model.init``; the state's ``rng`` is
        the same either way.

    Returns:
      A ``TrainState`` at step 0, replicated over ``mesh``.
    """
    mesh = make_mesh() if mesh is None else mesh

    def init(rng, given):
        params_rng, state_rng = jax.random.split(rng)
        if given is None:
            x = jnp.zeros(example_input.shape, example_input.dtype)
            given = model.init(params_rng, x, train=False)
        return TrainState.create(
            apply_fn=model.apply,
            params=given["params"],
            tx=tx,
            batch_stats=given.get("batch_stats", {}),
            rng=state_rng,
            nonfinite_streak=jnp.zeros((), jnp.int32),
            skipped_steps=jnp.zeros((), jnp.int32),
        )

    # The state is replicated, so the partitionable threefry (the default) buys nothing
    # here, and its init compiles several times slower on CPU. The keys drawn are fixed
    # by ``rng`` either way.
    with jax.threefry_partitionable(False):
        abstract = jax.eval_shape(init, rng, variables)
        shardings = jax.tree.map(lambda _: replicated(mesh), abstract)
        return jax.jit(init, out_shardings=shardings)(rng, variables)
