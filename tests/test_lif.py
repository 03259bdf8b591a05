"""The LIF neuron (METHOD.md section 1) and its STBP gradient (section 3) against NumPy.

The forward reference is a plain NumPy loop over time; the backward reference
is the STBP recursion written out by hand, run backwards in time (both in
tests/reference.py, which states the recursion). The gradient tests run both
``lif_scan`` and the autodiff oracle ``lif_scan_autodiff`` against it.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snn_jax
from snn_jax import LIFState, lif_scan, lif_step, surrogate
from snn_jax import nn as snn
from snn_jax.functional import Currents, lif_from_currents
from tests.reference import (
    inputs,
    lif_scan_autodiff,
    np_lif,
    np_stbp,
    np_surrogate,
    reduce_to,
)

T, B, N = 6, 3, 4  # T != B everywhere
SHAPES = [(T, B), (T, B, N), (5, 2, 3, 2, 3)]  # [T,B], [T,B,N], [T,B,H,W,C]
PARAMS = [(0.25, 0.5), (0.5, 0.3), (0.2, 0.2), (1.0, 1.0)]  # (tau, v_th); tau = 1 is IF


# ----------------------------------------------------------------------------- forward


# every (tau, v_th) once and every layout at least once (IF on [T, B] and on [T, B, H, W, C])
FORWARD_CASES = [
    (SHAPES[1], *PARAMS[0]),
    (SHAPES[1], *PARAMS[1]),
    (SHAPES[0], *PARAMS[3]),
    (SHAPES[2], *PARAMS[2]),
    (SHAPES[2], *PARAMS[3]),
]


@pytest.mark.parametrize(("shape", "tau", "v_th"), FORWARD_CASES)
def test_lif_scan_equals_numpy_loop(shape, tau, v_th):
    x = inputs(shape, seed=len(shape))
    o_ref, u_ref = np_lif(x, tau, v_th)
    assert 0 < o_ref.mean() < 1  # some spikes and some silence
    o, u = lif_scan(jnp.asarray(x), tau=tau, v_th=v_th, return_membrane=True)
    chex.assert_shape([o, u], shape)
    assert o.dtype == u.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(o), o_ref)
    np.testing.assert_allclose(np.asarray(u), u_ref, rtol=1e-6, atol=1e-6)
    # spikes alone (return_membrane=False) are the same
    np.testing.assert_array_equal(np.asarray(lif_scan(jnp.asarray(x), tau=tau, v_th=v_th)), o_ref)


PARAM_SHAPES = {
    "float": None,  # a Python number: a constant
    "scalar": (),
    "per_channel": (N,),
    "per_neuron": (B, N),
}


def _param(kind, low, high):
    """A leak or threshold of ``PARAM_SHAPES[kind]``: values between ``low`` and ``high``."""
    shape = PARAM_SHAPES[kind]
    if shape is None:
        return (low + high) / 2
    size = int(np.prod(shape))
    return np.linspace(low, high, max(size, 1)).astype(np.float32).reshape(shape)


@pytest.mark.parametrize("reset", snn_jax.functional.RESETS)
@pytest.mark.parametrize(
    ("tau_kind", "v_th_kind"),
    [(k, k) for k in PARAM_SHAPES]
    + [
        ("float", "per_channel"),
        ("per_neuron", "float"),
    ],
)
def test_lif_scan_equals_numpy_loop_every_reset_and_parameter_shape(reset, tau_kind, v_th_kind):
    """Both resets with tau and v_th as numbers, 0-d arrays, one per channel or per neuron."""
    x = inputs((T, B, N), seed=12, mean=0.4, std=0.6)
    tau, v_th = _param(tau_kind, 0.2, 1.0), _param(v_th_kind, 0.3, 0.7)
    o_ref, u_ref = np_lif(x, tau, v_th, reset=reset)
    assert 0.1 < o_ref.mean() < 0.9
    kw = {
        k: v if isinstance(v, float) else jnp.asarray(v) for k, v in (("tau", tau), ("v_th", v_th))
    }
    o, u = lif_scan(jnp.asarray(x), reset=reset, return_membrane=True, **kw)
    np.testing.assert_array_equal(np.asarray(o), o_ref)
    np.testing.assert_allclose(np.asarray(u), u_ref, rtol=1e-6, atol=1e-6)
    # the reset matters for this input
    other = np_lif(x, tau, v_th, reset="zero" if reset == "subtract" else "subtract")[1]
    assert not np.allclose(other, u_ref)


def test_a_surrogate_that_is_not_a_spike_function_is_a_type_error():
    """No silent fallback to another implementation: say what to pass."""
    x = jnp.zeros((T, B, N))
    for bad in (surrogate.atan().primitive, lambda v: jax.nn.sigmoid(4 * v), "atan"):
        with pytest.raises(TypeError, match=r"SpikeFunction.*surrogate\.get"):
            lif_scan(x, surrogate=bad)


def test_defaults_are_tau_quarter_vth_half():
    x = inputs((T, B, N), seed=7)
    o_ref, _ = np_lif(x, 0.25, 0.5)
    np.testing.assert_array_equal(np.asarray(lif_scan(jnp.asarray(x))), o_ref)


def test_reset_and_leak_by_hand():
    """A hand-computed trace: leak 0.5, threshold 1, hard reset to 0 after a spike."""
    x = jnp.array([0.6, 0.6, 0.6, 0.2, 1.5], jnp.float32)[:, None]  # [T=5, B=1]
    o, u = lif_scan(x, tau=0.5, v_th=1.0, return_membrane=True)
    # u: 0.6; 0.3+0.6=0.9; 0.45+0.6=1.05 (spike); reset -> 0.2; 0.1+1.5=1.6 (spike)
    np.testing.assert_allclose(u[:, 0], [0.6, 0.9, 1.05, 0.2, 1.6], rtol=1e-6)
    np.testing.assert_array_equal(o[:, 0], [0, 0, 1, 0, 1])


def test_spike_at_threshold_exactly():
    x = jnp.array([[0.5, 0.4999]], jnp.float32)  # [T=1, B=2]
    np.testing.assert_array_equal(lif_scan(x, v_th=0.5), [[1.0, 0.0]])


@pytest.mark.parametrize("shape", SHAPES)
def test_learnable_tau_array_forward(shape):
    x = inputs(shape, seed=11)
    tau = np.linspace(0.1, 1.0, shape[-1]).astype(np.float32)  # per neuron, broadcast to x[0]
    o_ref, u_ref = np_lif(x, tau, 0.4)
    o, u = lif_scan(jnp.asarray(x), tau=jnp.asarray(tau), v_th=0.4, return_membrane=True)
    np.testing.assert_array_equal(np.asarray(o), o_ref)
    np.testing.assert_allclose(np.asarray(u), u_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("detach_reset", [False, True])
def test_lif_step_iterated_equals_scan(detach_reset):
    x = jnp.asarray(inputs((T, B, N), seed=3))
    spike = surrogate.get("atan")
    state = LIFState.zeros(x.shape[1:], x.dtype)
    outs, mems = [], []
    for t in range(x.shape[0]):
        state, o = lif_step(
            state, x[t], tau=0.3, v_th=0.45, surrogate=spike, detach_reset=detach_reset
        )
        assert isinstance(state, LIFState)
        np.testing.assert_array_equal(o, state.o)
        outs.append(o)
        mems.append(state.u)
    o_scan, u_scan = lif_scan(
        x, tau=0.3, v_th=0.45, surrogate=spike, detach_reset=detach_reset, return_membrane=True
    )
    np.testing.assert_array_equal(jnp.stack(outs), o_scan)
    np.testing.assert_allclose(jnp.stack(mems), u_scan, rtol=1e-6, atol=1e-7)
    o_ref, _ = np_lif(x, 0.3, 0.45)
    np.testing.assert_array_equal(jnp.stack(outs), o_ref)


def test_lif_step_default_surrogate_and_order():
    """Charge, fire, reset: the reset uses the previous spike, the output is this step's spike."""
    state = LIFState(u=jnp.array([0.8, 0.8]), o=jnp.array([1.0, 0.0]))
    new, o = lif_step(state, jnp.array([0.3, 0.3]), tau=0.5, v_th=0.5)
    np.testing.assert_allclose(new.u, [0.3, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(o, [0.0, 1.0])
    # default surrogate is rectangular(1.0): d o / d x = 1[|u - v_th| < 0.5]
    g = jax.grad(lambda x: jnp.sum(lif_step(LIFState.zeros((3,)), x)[1]))(
        jnp.array([-0.1, 0.3, 0.7])
    )
    np.testing.assert_allclose(g, [0.0, 1.0, 1.0])


def test_init_state_zeros_and_custom():
    z = LIFState.zeros((B, N), jnp.bfloat16)
    chex.assert_shape([z.u, z.o], (B, N))
    assert z.u.dtype == z.o.dtype == jnp.bfloat16
    assert not np.any(np.asarray(z.u, np.float32))
    assert not np.any(np.asarray(z.o, np.float32))

    x = inputs((T, B, N), seed=5)
    rng = np.random.default_rng(6)
    u0 = rng.normal(0.5, 0.5, (B, N)).astype(np.float32)
    o0 = (rng.uniform(size=(B, N)) < 0.5).astype(np.float32)
    o_ref, u_ref = np_lif(x, 0.4, 0.5, u0=u0, o0=o0)
    o, u = lif_scan(
        jnp.asarray(x),
        tau=0.4,
        v_th=0.5,
        init_state=LIFState(jnp.asarray(u0), jnp.asarray(o0)),
        return_membrane=True,
    )
    np.testing.assert_array_equal(np.asarray(o), o_ref)
    np.testing.assert_allclose(np.asarray(u), u_ref, rtol=1e-6, atol=1e-6)
    # the initial state matters in this example
    assert not np.array_equal(o_ref, np_lif(x, 0.4, 0.5)[0]) or not np.allclose(
        u_ref, np_lif(x, 0.4, 0.5)[1]
    )


def test_jit_equals_eager_and_unroll():
    x = jnp.asarray(inputs((T, B, N), seed=8))
    kw = {"tau": 0.3, "v_th": 0.4, "surrogate": surrogate.get("sigmoid"), "return_membrane": True}
    eager = lif_scan(x, **kw)
    jitted = jax.jit(functools.partial(lif_scan, **kw))(x)
    unrolled = lif_scan(x, unroll=4, **kw)
    np.testing.assert_array_equal(eager[0], jitted[0])
    chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(eager[0], unrolled[0])
    chex.assert_trees_all_close(eager, unrolled, rtol=1e-6, atol=1e-7)


def test_no_retrace_for_new_values():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(x, tau):
        return lif_scan(x, tau=tau, v_th=0.5, surrogate=surrogate.get("atan"))

    x1 = jnp.asarray(inputs((T, B, N), seed=1))
    x2 = jnp.asarray(inputs((T, B, N), seed=2))
    o1 = run(x1, jnp.float32(0.25))
    o2 = run(x2, jnp.float32(0.5))  # new values, same shapes: no second trace
    np.testing.assert_array_equal(o1, np_lif(x1, 0.25, 0.5)[0])
    np.testing.assert_array_equal(o2, np_lif(x2, 0.5, 0.5)[0])


def test_bfloat16_spikes():
    x = jnp.asarray(inputs((T, B, N), seed=9), jnp.bfloat16)
    o = lif_scan(x)
    assert o.dtype == jnp.bfloat16
    assert set(np.unique(np.asarray(o, np.float32))) == {0.0, 1.0}


@pytest.mark.parametrize("shape", [(), (T,)])
def test_rejects_input_without_time_and_batch(shape):
    with pytest.raises(ValueError, match=r"\[T, B"):
        lif_scan(jnp.zeros(shape))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dtype": jnp.int32}, TypeError, "floating-point"),
        ({"tau": jnp.full((3,), 0.5)}, ValueError, r"tau of shape \(3,\) does not broadcast"),
        ({"v_th": jnp.full((2, B, N), 0.5)}, ValueError, "v_th of shape"),
        ({"state": (B + 1, N)}, ValueError, r"init_state.u has shape \(4, 4\); it must be"),
    ],
)
def test_rejects_inputs_that_do_not_fit_the_time_step(kwargs, error, message):
    """Wrong dtype, a leak or threshold that does not broadcast to [B, ...], a state of
    another shape: a clear error instead of a broadcast deep inside the scan."""
    kwargs = dict(kwargs)  # the parameter set's own dict stays as it is
    x = jnp.zeros((T, B, N), kwargs.pop("dtype", jnp.float32))
    if "state" in kwargs:
        shape = kwargs.pop("state")
        kwargs["init_state"] = LIFState(jnp.zeros(shape), jnp.zeros(shape))
    with pytest.raises(error, match=message):
        lif_scan(x, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": np.float32(1.5)}, "tau"),
        ({"tau": jnp.float32(0.0)}, "tau"),
        ({"tau": jnp.array([0.5, 0.5, -0.5, 0.5])}, "tau"),  # one neuron's leak
        ({"v_th": np.float32(-0.5)}, "v_th"),
        ({"v_th": jnp.zeros(N)}, "v_th"),
    ],
)
def test_rejects_concrete_parameters_out_of_range(kwargs, message):
    """NumPy and JAX scalars and arrays are checked like Python numbers."""
    with pytest.raises(ValueError, match=message):
        lif_scan(jnp.zeros((T, B, N)), **kwargs)
    with pytest.raises(ValueError, match=message):
        snn.LIF(snn.NeuronSpec(**kwargs)).apply({}, jnp.zeros((T, B, N)))
    currents = Currents.affine(jnp.zeros((T, B, N)), jnp.ones(N), jnp.zeros(N))
    rule = {"tau": 0.25, "v_th": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        lif_from_currents(currents, surrogate=surrogate.rectangular(), **rule)


def test_step_rejects_a_state_of_another_shape():
    with pytest.raises(ValueError, match=r"state.u has shape \(3,\); it must be"):
        lif_step(LIFState.zeros((3,)), jnp.ones((4,)))


@pytest.mark.parametrize("tau_shape", [(N,), (1, N), (B, N)])
def test_leak_per_neuron_or_channel_is_accepted(tau_shape):
    x = jnp.asarray(inputs((T, B, N), seed=2))
    tau = jnp.full(tau_shape, 0.3)
    np.testing.assert_array_equal(lif_scan(x, tau=tau), lif_scan(x, tau=0.3))


def test_public_names():
    assert snn_jax.lif_scan is lif_scan
    assert snn_jax.lif_step is lif_step
    assert snn_jax.LIFState is LIFState


# ----------------------------------------------------------------------------- STBP gradient

TAU, V_TH = 0.3, 0.4  # not the defaults, to catch a default used by mistake


def _loss_terms(shape, seed=0):
    rng = np.random.default_rng(100 + seed)
    w_o = rng.normal(size=shape).astype(np.float32)
    w_u = rng.normal(size=shape).astype(np.float32)
    return w_o, w_u


def _jax_grads(x, tau, w_o, w_u, *, name, detach_reset, return_membrane, scan, argnums=0):
    def loss(x, tau):
        out = scan(
            x,
            tau=tau,
            v_th=V_TH,
            surrogate=surrogate.get(name),
            detach_reset=detach_reset,
            return_membrane=return_membrane,
        )
        if return_membrane:
            return jnp.sum(out[0] * w_o) + jnp.sum(out[1] * w_u)
        return jnp.sum(out * w_o)

    return jax.jit(jax.grad(loss, argnums))(jnp.asarray(x), tau)


# lif_scan (the hand-written backward) and the oracle its other tests compare against.
SCANS = [pytest.param(lif_scan, id="lif_scan"), pytest.param(lif_scan_autodiff, id="oracle")]
# Every surrogate with the membrane term in the loss; the spikes-only loss and the
# autodiff oracle (tests/reference.py) with two surrogates.
GRAD_CASES = (
    [pytest.param(name, True, lif_scan, id=f"{name}-membrane") for name in surrogate.NAMES]
    + [pytest.param(name, False, lif_scan, id=f"{name}-spikes") for name in ("rectangular", "atan")]
    + [
        pytest.param("rectangular", True, lif_scan_autodiff, id="rectangular-membrane-oracle"),
        pytest.param("atan", False, lif_scan_autodiff, id="atan-spikes-oracle"),
    ]
)


@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
@pytest.mark.parametrize(("name", "return_membrane", "scan"), GRAD_CASES)
def test_stbp_gradient_equals_numpy_recursion(name, return_membrane, scan, detach_reset):
    shape = (T, B, N)
    x = inputs(shape, seed=21, mean=0.5, std=0.5)
    w_o, w_u = _loss_terms(shape)
    o, u = np_lif(x, TAU, V_TH)
    surr = functools.partial(np_surrogate, name)
    g_u = w_u if return_membrane else np.zeros(shape)
    ref = np_stbp(u, o, w_o, g_u, TAU, V_TH, surr, detach_reset)["x"]
    # the test can tell the reset term apart: the two recursions differ here
    other = np_stbp(u, o, w_o, g_u, TAU, V_TH, surr, not detach_reset)["x"]
    assert np.abs(ref - other).max() > 1e-2
    if name == "rectangular":  # many membranes inside the window |u - v_th| < 1/2
        assert (np.abs(u - V_TH) < 0.5).mean() > 0.4

    grad = _jax_grads(
        x,
        TAU,
        w_o,
        w_u,
        name=name,
        detach_reset=detach_reset,
        return_membrane=return_membrane,
        scan=scan,
    )
    chex.assert_shape(grad, shape)
    np.testing.assert_allclose(np.asarray(grad), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
def test_stbp_gradient_integrate_and_fire(detach_reset, scan):
    """tau = 1: no leak, the gradient is carried undamped between spikes."""
    shape = (7, 2, 3)
    x = inputs(shape, seed=22, mean=0.2, std=0.4)
    w_o, w_u = _loss_terms(shape, seed=1)
    o, u = np_lif(x, 1.0, V_TH)
    surr = functools.partial(np_surrogate, "rectangular")
    ref = np_stbp(u, o, w_o, np.zeros(shape), 1.0, V_TH, surr, detach_reset)["x"]
    grad = _jax_grads(
        x,
        1.0,
        w_o,
        w_u,
        name="rectangular",
        detach_reset=detach_reset,
        return_membrane=False,
        scan=scan,
    )
    np.testing.assert_allclose(np.asarray(grad), ref, rtol=1e-5, atol=1e-6)


SCALAR_TAU = np.float32(0.6)
NEURON_TAU = np.linspace(0.2, 0.9, N).astype(np.float32)
ROW_TAU = np.full((1, N), 0.45, np.float32)
TAU_CASES = [
    pytest.param(SCALAR_TAU, lif_scan, id="scalar"),
    pytest.param(NEURON_TAU, lif_scan, id="per_channel"),
    pytest.param(ROW_TAU, lif_scan, id="row"),
    pytest.param(ROW_TAU, lif_scan_autodiff, id="row-oracle"),
]


@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
@pytest.mark.parametrize(("tau", "scan"), TAU_CASES)
def test_stbp_gradient_learnable_tau(tau, scan, detach_reset):
    shape = (T, B, N)
    x = inputs(shape, seed=23, mean=0.5, std=0.5)
    w_o, w_u = _loss_terms(shape, seed=2)
    o, u = np_lif(x, tau, V_TH)
    surr = functools.partial(np_surrogate, "rectangular")
    ref = np_stbp(u, o, w_o, w_u, tau, V_TH, surr, detach_reset)
    ref_tau = reduce_to(ref["tau"], np.shape(tau))
    assert np.abs(ref_tau).min() > 1e-3  # a real gradient to compare

    gx, gtau = _jax_grads(
        x,
        jnp.asarray(tau),
        w_o,
        w_u,
        name="rectangular",
        detach_reset=detach_reset,
        return_membrane=True,
        scan=scan,
        argnums=(0, 1),
    )
    chex.assert_shape(gtau, np.shape(tau))
    np.testing.assert_allclose(np.asarray(gx), ref["x"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gtau), ref_tau, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
def test_stbp_gradient_through_init_state(detach_reset, scan):
    """Gradients reach the initial state (u0, o0) and tau's first-step term from it."""
    shape = (T, B, N)
    x = inputs(shape, seed=25, mean=0.5, std=0.5)
    w_o, w_u = _loss_terms(shape, seed=4)
    rng = np.random.default_rng(26)
    u0 = rng.normal(0.5, 0.5, shape[1:]).astype(np.float32)
    o0 = (rng.uniform(size=shape[1:]) < 0.5).astype(np.float32)
    o, u = np_lif(x, TAU, V_TH, u0=u0, o0=o0)
    surr = functools.partial(np_surrogate, "rectangular")
    ref = np_stbp(u, o, w_o, w_u, TAU, V_TH, surr, detach_reset, u0=u0, o0=o0)
    assert np.abs(ref["u0"]).max() > 1e-2

    def loss(x, tau, u0, o0):
        out, mem = scan(
            x,
            tau=tau,
            v_th=V_TH,
            detach_reset=detach_reset,
            init_state=LIFState(u0, o0),
            return_membrane=True,
        )
        return jnp.sum(out * w_o) + jnp.sum(mem * w_u)

    args = (jnp.asarray(x), jnp.float32(TAU), jnp.asarray(u0), jnp.asarray(o0))
    gx, gtau, gu0, go0 = jax.jit(jax.grad(loss, (0, 1, 2, 3)))(*args)
    np.testing.assert_allclose(np.asarray(gx), ref["x"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gtau), ref["tau"].sum(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gu0), ref["u0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(go0), ref["o0"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
def test_stbp_gradient_subtract_reset_per_channel_threshold(detach_reset, scan):
    """Reset by subtraction, a learnable per-channel threshold and leak, an initial state:
    the gradients of x, tau, v_th (spike term and reset term) and the state by hand."""
    shape = (T, B, N)
    x = inputs(shape, seed=27, mean=0.45, std=0.5)
    w_o, w_u = _loss_terms(shape, seed=5)
    tau = np.linspace(0.3, 0.9, N).astype(np.float32)
    v_th = np.linspace(0.3, 0.6, N).astype(np.float32)
    rng = np.random.default_rng(28)
    u0 = rng.normal(0.4, 0.4, shape[1:]).astype(np.float32)
    o0 = (rng.uniform(size=shape[1:]) < 0.5).astype(np.float32)
    o, u = np_lif(x, tau, v_th, reset="subtract", u0=u0, o0=o0)
    assert 0.1 < o.mean() < 0.9
    surr = functools.partial(np_surrogate, "atan")
    ref = np_stbp(u, o, w_o, w_u, tau, v_th, surr, detach_reset, "subtract", u0=u0, o0=o0)
    # a zero-reset recursion would give another v_th gradient: the reset term counts here
    zero = np_stbp(u, o, w_o, w_u, tau, v_th, surr, detach_reset, "zero", u0=u0, o0=o0)
    assert np.abs(reduce_to(ref["v_th"] - zero["v_th"], (N,))).max() > 1e-2

    def loss(x, tau, v_th, u0, o0):
        out, mem = scan(
            x,
            tau=tau,
            v_th=v_th,
            surrogate=surrogate.atan(),
            reset="subtract",
            detach_reset=detach_reset,
            init_state=LIFState(u0, o0),
            return_membrane=True,
        )
        return jnp.sum(out * w_o) + jnp.sum(mem * w_u)

    args = [jnp.asarray(a) for a in (x, tau, v_th, u0, o0)]
    gx, gtau, gv, gu0, go0 = jax.jit(jax.grad(loss, (0, 1, 2, 3, 4)))(*args)
    chex.assert_shape([gtau, gv], (N,))
    np.testing.assert_allclose(np.asarray(gx), ref["x"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gtau), reduce_to(ref["tau"], (N,)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gv), reduce_to(ref["v_th"], (N,)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gu0), ref["u0"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(go0), ref["o0"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset", "detach"])
def test_stbp_two_layers_spatial_and_temporal(detach_reset):
    """x1 -> LIF -> o1 @ W -> LIF -> o2: the spatial sum dL/do1 = dL/dx2 @ W^T of section 3."""
    t, b, n1, n2 = 5, 2, 4, 3
    rng = np.random.default_rng(31)
    x1 = rng.normal(0.5, 0.5, (t, b, n1)).astype(np.float32)
    w = rng.normal(0.25, 0.4, (n1, n2)).astype(np.float32)
    w_o = rng.normal(size=(t, b, n2)).astype(np.float32)
    surr = functools.partial(np_surrogate, "rectangular")

    o1, u1 = np_lif(x1, TAU, V_TH)
    x2 = np.einsum("tbi,ij->tbj", o1, w).astype(np.float32)
    o2, u2 = np_lif(x2, TAU, V_TH)
    dx2 = np_stbp(u2, o2, w_o, np.zeros_like(w_o), TAU, V_TH, surr, detach_reset)["x"]
    dw_ref = np.einsum("tbi,tbj->ij", o1.astype(np.float64), dx2)
    g1 = np.einsum("tbj,ij->tbi", dx2, w.astype(np.float64))
    dx1 = np_stbp(u1, o1, g1, np.zeros_like(g1), TAU, V_TH, surr, detach_reset)["x"]
    assert np.abs(dx1).max() > 1e-2
    assert np.abs(dw_ref).max() > 1e-2

    def loss(x1, w):
        kw = {"tau": TAU, "v_th": V_TH, "detach_reset": detach_reset}
        s1 = lif_scan(x1, **kw)
        s2 = lif_scan(jnp.einsum("tbi,ij->tbj", s1, w), **kw)
        return jnp.sum(s2 * w_o)

    gx1, gw = jax.jit(jax.grad(loss, (0, 1)))(jnp.asarray(x1), jnp.asarray(w))
    np.testing.assert_array_equal(np.asarray(lif_scan(jnp.asarray(x2), tau=TAU, v_th=V_TH)), o2)
    np.testing.assert_allclose(np.asarray(gx1), dx1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gw), dw_ref, rtol=1e-5, atol=1e-6)


def test_stbp_gradient_under_jit_and_vmap():
    """jit(grad) and vmap over independent sequences give the recursion too."""
    shape = (T, B, N)
    x = inputs(shape, seed=24, mean=0.5, std=0.5)
    w_o, _ = _loss_terms(shape, seed=3)
    o, u = np_lif(x, TAU, V_TH)
    surr = functools.partial(np_surrogate, "rectangular")
    ref = np_stbp(u, o, w_o, np.zeros(shape), TAU, V_TH, surr, False)["x"]

    def loss(x, w):
        return jnp.sum(lif_scan(x, tau=TAU, v_th=V_TH) * w)

    g_jit = jax.jit(jax.grad(loss))(jnp.asarray(x), w_o)
    np.testing.assert_allclose(np.asarray(g_jit), ref, rtol=1e-5, atol=1e-6)
    # vmap over the batch axis: each [T, N] sequence as its own [T, 1, N] problem
    per_seq = jax.vmap(
        lambda xb, wb: jax.grad(loss)(xb[:, None], wb[:, None])[:, 0], in_axes=(1, 1), out_axes=1
    )(jnp.asarray(x), jnp.asarray(w_o))
    np.testing.assert_allclose(np.asarray(per_seq), ref, rtol=1e-5, atol=1e-6)
