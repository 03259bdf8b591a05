"""Test set-up: four simulated CPU devices, fixed before JAX starts its backend.

The multi-device tests (tdBN statistics over a batch sharded on a ``Mesh``)
need 4 devices; on a machine with an accelerator they use 4 CPU devices only if
JAX runs on CPU, and skip otherwise.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=4"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import contextlib  # noqa: E402

import jax  # noqa: E402  (must come after XLA_FLAGS)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from snn_jax.data import event_digits  # noqa: E402

# The same request through the config; it fails harmlessly if the backend has already started.
with contextlib.suppress(AttributeError, RuntimeError, ValueError):
    jax.config.update("jax_num_cpu_devices", 4)


@pytest.fixture
def few_digits(monkeypatch):
    """``event_digits`` over 40 of the digits (4 per class, 3 train and 1 test)."""
    images, labels, _ = event_digits._digits()
    keep = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(10)])
    splits = {"train": keep[np.arange(40) % 4 != 3], "test": keep[np.arange(40) % 4 == 3]}
    monkeypatch.setattr(event_digits, "_digits", lambda: (images, labels, splits))
    return splits
