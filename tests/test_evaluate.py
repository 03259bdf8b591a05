"""snn_jax.training.evaluate against a NumPy computation: masked padded batches, any batch size."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import training
from snn_jax.nn import LIF, NeuronSpec

T, N, F, H, K = 4, 7, 5, 6, 3  # T != any batch size used below
TAU, V_TH = 0.25, 0.5


class Tiny(nn.Module):
    """``fc -> ramp over T -> LIF -> mean_t -> out``: logits ``[B, K]`` from ``[B, F]``."""

    @nn.compact
    def __call__(self, x, train=True):
        z = nn.Dense(H, name="fc")(x)
        ramp = jnp.arange(1, T + 1, dtype=z.dtype)[:, None, None] / T
        s = LIF(NeuronSpec(tau=TAU, v_th=V_TH), name="lif")(ramp * z)  # [T, B, H]
        return nn.Dense(K, name="out")(jnp.mean(s, axis=0))


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    labels = rng.integers(0, K, N)
    variables = Tiny().init(jax.random.key(1), jnp.asarray(x))
    variables = jax.tree.map(lambda v: v * 2.0, variables)  # enough input to fire often
    return x, labels, variables


def _numpy_reference(x, labels, variables):
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), variables["params"])
    z = x.astype(np.float64) @ p["fc"]["kernel"] + p["fc"]["bias"]
    u, o, spikes = np.zeros_like(z), np.zeros_like(z), []
    for t in range(T):
        u = TAU * u * (1 - o) + z * (t + 1) / T
        o = (u >= V_TH).astype(np.float64)
        spikes.append(o)
    s = np.stack(spikes)  # [T, N, H]
    logits = s.mean(0) @ p["out"]["kernel"] + p["out"]["bias"]
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    logp -= logits.max(1, keepdims=True)
    return {
        "accuracy": np.mean(logits.argmax(1) == labels),
        "loss": -np.mean(logp[np.arange(N), labels]),
        "firing_rate/lif": s.mean(axis=(0, 2)).mean(),
        "spikes_per_image": s.sum(axis=(0, 2)).mean(),
        "predictions": logits.argmax(1),
        "spikes": s,
    }


def _batches(x, labels, size, junk=100.0):
    """Batches of ``size``; the last padded with junk images and labels, masked out."""
    for start in range(0, N, size):
        image, label = x[start : start + size], labels[start : start + size]
        pad = size - len(image)
        mask = np.arange(size) < len(image)
        image = np.concatenate([image, np.full((pad, F), junk, np.float32)])
        label = np.concatenate([label, np.full(pad, K - 1)])
        yield {"image": image, "label": label, "mask": mask}


def _check(result, ref):
    assert result["count"] == N
    np.testing.assert_allclose(result["accuracy"], ref["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(result["loss"], ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(result["firing_rate/lif"], ref["firing_rate/lif"], rtol=1e-6)
    np.testing.assert_allclose(result["spikes_per_image"], ref["spikes_per_image"], rtol=1e-6)
    np.testing.assert_array_equal(result["predictions"], ref["predictions"])


def test_reference_is_not_trivial():
    x, labels, variables = _data()
    s = _numpy_reference(x, labels, variables)["spikes"]
    assert 0.1 < s.mean() < 0.9


@pytest.mark.parametrize("size", [3, 7, 2])
def test_evaluate_equals_numpy_over_real_examples_for_any_batch_size(size):
    x, labels, variables = _data()
    ref = _numpy_reference(x, labels, variables)
    result = training.evaluate(Tiny(), variables, _batches(x, labels, size), predictions=True)
    _check(result, ref)
    assert sorted(result) == [
        "accuracy",
        "count",
        "firing_rate/lif",
        "loss",
        "predictions",
        "spikes_per_image",
    ]


def test_evaluate_cuts_batches_to_bound_steps_times_batch():
    x, labels, variables = _data()
    ref = _numpy_reference(x, labels, variables)
    # T * 2 example-steps at once: pieces of 2 examples out of batches of 3 (one shape)
    result = training.evaluate(
        Tiny(), variables, _batches(x, labels, 3), max_steps_times_batch=2 * T, predictions=True
    )
    _check(result, ref)


def test_evaluate_on_a_mesh_splits_each_batch_over_the_devices():
    x, labels, variables = _data()
    ref = _numpy_reference(x, labels, variables)
    mesh = training.make_mesh()
    size = mesh.devices.size * 2  # a whole number of examples per device
    result = training.evaluate(
        Tiny(), variables, _batches(x, labels, size), mesh=mesh, predictions=True
    )
    _check(result, ref)


def test_evaluate_without_mask_and_without_examples():
    x, labels, variables = _data()
    ref = _numpy_reference(x, labels, variables)
    result = training.evaluate(Tiny(), variables, [{"image": x, "label": labels}])
    np.testing.assert_allclose(result["accuracy"], ref["accuracy"], rtol=1e-6)
    assert "predictions" not in result
    empty = training.evaluate(Tiny(), variables, [])
    assert empty["count"] == 0
    assert np.isnan(empty["accuracy"])


def test_evaluate_counts_the_spikes_of_a_compact_model():
    from snn_jax.models import get_model

    x = np.asarray(jax.random.uniform(jax.random.key(0), (5, 8, 8, 1)))
    labels = np.arange(5) % 3
    model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=T)
    variables = model.init(jax.random.key(1), x, train=False)
    batches = [{"image": x, "label": labels}]
    plain = training.evaluate(model, variables, batches)
    for memory in ("remat", "compact"):
        other = training.evaluate(model.clone(memory=memory), variables, batches)
        for key in ("accuracy", "loss", "spikes_per_image"):
            np.testing.assert_allclose(other[key], plain[key], rtol=1e-5)
    assert plain["spikes_per_image"] > 0
