"""The direct-training kit (METHOD.md section 10): learnable leak and threshold, TET, TEBN, BNTT.

Each equation against an independent reference: a NumPy loop, the STBP recursion
by hand (tests/reference.py) and autodiff of the plain ``lax.scan``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import nn as snn
from snn_jax import surrogate
from snn_jax.nn import NeuronSpec
from tests.reference import inputs, lif_scan_autodiff, np_lif, np_stbp, np_surrogate, reduce_to

T, B, C = 5, 3, 4  # T != B


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize(("learn_tau", "learn_v_th"), [("channel", "channel"), ("layer", "layer")])
def test_plif_forward_and_gradients(reset, learn_tau, learn_v_th):
    """Leak sigmoid(a), threshold exp(b): forward against a NumPy loop, the gradients of
    a and b against the STBP recursion by hand (chain rule) and autodiff of the plain scan."""
    spec = NeuronSpec(
        tau=0.6, v_th=0.4, reset=reset, surrogate="atan", learn_tau=learn_tau, learn_v_th=learn_v_th
    )
    layer = snn.LIF(spec)
    x = jnp.asarray(inputs((T, B, C), seed=41, mean=0.35, std=0.5))
    variables = layer.init(jax.random.key(0), x)
    shape = (C,) if learn_tau == "channel" else ()
    params = variables["params"]
    assert params["tau_logit"].shape == shape
    assert params["v_th_log"].shape == shape
    np.testing.assert_allclose(jax.nn.sigmoid(params["tau_logit"]), 0.6, rtol=1e-6)
    np.testing.assert_allclose(jnp.exp(params["v_th_log"]), 0.4, rtol=1e-6)
    # move them off their initial values, one per channel where there are channels
    a = jnp.linspace(-0.5, 1.0, C)[: C if shape else 1].reshape(shape).astype(jnp.float32)
    b = jnp.linspace(-1.2, -0.7, C)[: C if shape else 1].reshape(shape).astype(jnp.float32)
    params = {"tau_logit": a, "v_th_log": b}
    tau = np.asarray(jax.nn.sigmoid(a))
    v_th = np.asarray(jnp.exp(b))

    o, u = np_lif(x, tau, v_th, reset=reset)
    assert 0.1 < o.mean() < 0.9
    np.testing.assert_array_equal(layer.apply({"params": params}, x), o)

    w = inputs((T, B, C), seed=42, mean=0.0, std=1.0)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) * w)))(params)
    surr = functools.partial(np_surrogate, "atan")
    ref = np_stbp(u, o, w, np.zeros_like(w), tau, v_th, surr, False, reset)
    tau64, v64 = _sigmoid(a), np.exp(np.asarray(b, np.float64))
    want_a = reduce_to(ref["tau"], shape) * tau64 * (1 - tau64)  # dtau/da = tau (1 - tau)
    want_b = reduce_to(ref["v_th"], shape) * v64  # dV/db = V
    np.testing.assert_allclose(grads["tau_logit"], want_a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["v_th_log"], want_b, rtol=1e-4, atol=1e-5)
    assert np.abs(want_a).max() > 1e-2
    assert np.abs(want_b).max() > 1e-2

    def oracle(p):
        out = lif_scan_autodiff(
            x,
            tau=jax.nn.sigmoid(p["tau_logit"]),
            v_th=jnp.exp(p["v_th_log"]),
            surrogate=surrogate.atan(),
            reset=reset,
        )
        return jnp.sum(out * w)

    auto = jax.jit(jax.grad(oracle))(params)
    for name in params:
        np.testing.assert_allclose(grads[name], auto[name], rtol=1e-4, atol=1e-5)


def test_plif_in_a_model_has_its_parameters():
    """A digits CNN with a learned leak per channel and threshold per layer."""
    from snn_jax import models

    spec = NeuronSpec(learn_tau="channel", learn_v_th="layer", tau=0.5)
    model = models.get_model("digits_cnn", num_classes=10, time_steps=2, width=4, neuron=spec)
    x = jnp.asarray(inputs((B, 8, 8, 1), seed=3, mean=0.5, std=0.5))
    variables = model.init(jax.random.key(0), x)
    lif = variables["params"]["conv1"]["neuron"]["lif"]
    assert lif["tau_logit"].shape == (4,)
    assert lif["v_th_log"].shape == ()
