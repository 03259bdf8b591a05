"""Data-parallel placement: a 1-D device mesh, replicated state, batch split over devices."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from snn_jax.nn.folding import DATA_AXIS

__all__ = ["DATA_AXIS", "batch_sharding", "make_mesh", "put_batch", "replicated"]


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over all devices of all processes (auto axis type)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, batch_axis: int = 0) -> NamedSharding:
    """Split axis ``batch_axis`` of an ``ndim``-dimensional array over the data axis."""
    spec = [None] * ndim
    spec[batch_axis] = DATA_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def put_batch(
    batch: Mapping[str, np.ndarray], mesh: Mesh, time_major_keys=()
) -> dict[str, jax.Array]:
    """Assembles the global batch from each process's local share, split over devices.

    Arrays are split along the batch axis: axis 1 for keys in ``time_major_keys``
    (``[T, B, ...]`` event frames), axis 0 otherwise.

    Raises:
      ValueError: if the global batch does not divide evenly over the devices.
    """
    out = {}
    n = mesh.devices.size
    for key, value in batch.items():
        axis = 1 if key in time_major_keys else 0
        global_b = value.shape[axis] * jax.process_count()
        if global_b % n:
            raise ValueError(
                f"global batch size {global_b} (key {key!r}, shape {value.shape}) is not "
                f"divisible by the {n} devices; choose a batch size that is a multiple of {n}"
            )
        sharding = batch_sharding(mesh, value.ndim, axis)
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
