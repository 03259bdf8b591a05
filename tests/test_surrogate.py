"""Surrogate spike functions: exact Heaviside forward, surrogate-derivative backward.

The backward pass is checked against two independent references: ``jax.grad``
of the smooth ``.primitive`` and a NumPy transcription of the formula of
METHOD.md section 2 written here (never the library's ``.derivative``).
"""

import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import surrogate

PARAM = {
    "rectangular": "width",
    "sigmoid": "alpha",
    "atan": "alpha",
    "triangle": "width",
    "fast_sigmoid": "slope",
}
DEFAULT = {"rectangular": 1.0, "sigmoid": 4.0, "atan": 2.0, "triangle": 1.0, "fast_sigmoid": 25.0}
OTHER = {"rectangular": 0.5, "sigmoid": 10.0, "atan": 3.0, "triangle": 0.6, "fast_sigmoid": 5.0}


def np_derivative(name: str, v, p: float) -> np.ndarray:
    """The surrogate derivative s(v) of METHOD.md section 2, in float64."""
    v = np.asarray(v, np.float64)
    if name == "rectangular":
        return (np.abs(v) < p / 2).astype(np.float64) / p
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-p * v))
        return p * s * (1.0 - s)
    if name == "atan":
        return p / (2.0 * (1.0 + (math.pi / 2 * p * v) ** 2))
    if name == "triangle":
        return np.maximum(0.0, 1.0 - np.abs(v) / p) / p
    if name == "fast_sigmoid":
        return 1.0 / (1.0 + p * np.abs(v)) ** 2
    raise AssertionError(name)


def make(name: str, p: float):
    return surrogate.get(name, **{PARAM[name]: p})


def sample_v(p: float, seed: int = 0) -> np.ndarray:
    """72 points spread over the support of the surrogate, plus v = 0 and points near it.

    One shape everywhere keeps JAX's per-shape compilations (and the test time) low.
    """
    rng = np.random.default_rng(seed)
    v = rng.uniform(-2.5, 2.5, 65) * max(p, 1.0 / p)
    return np.concatenate([[0.0, 1e-4, -1e-4, 0.05, -0.05, 0.3, -0.3], v]).astype(np.float32)


CASES = [(name, DEFAULT[name]) for name in PARAM] + [(name, OTHER[name]) for name in PARAM]
TOL = {"rtol": 1e-5, "atol": 2e-6}


def test_names_registry():
    assert set(surrogate.NAMES) == set(PARAM)
    assert len(surrogate.NAMES) == len(PARAM)


@pytest.mark.parametrize("name", list(PARAM))
def test_shape_parameter_names_the_factorys_argument(name):
    """``SHAPE_PARAMETER`` names each factory's one argument (read from its signature here)."""
    assert surrogate.SHAPE_PARAMETER == PARAM
    params = inspect.signature(getattr(surrogate, name)).parameters
    assert list(params) == [surrogate.SHAPE_PARAMETER[name]]
    assert params[surrogate.SHAPE_PARAMETER[name]].default == DEFAULT[name]
    assert surrogate.get(name, **{PARAM[name]: OTHER[name]}).params == {PARAM[name]: OTHER[name]}


@pytest.mark.parametrize("name", list(PARAM))
def test_get_defaults_and_attributes(name):
    f = surrogate.get(name)
    assert f.name == name
    assert f.params == {PARAM[name]: DEFAULT[name]}
    g = make(name, OTHER[name])
    assert g.params == {PARAM[name]: OTHER[name]}
    assert callable(g.derivative)
    assert callable(g.primitive)
    # the factory of the same name builds the same surrogate
    h = getattr(surrogate, name)(OTHER[name])
    assert (h.name, h.params) == (g.name, g.params)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", list(PARAM))
def test_forward_is_exact_heaviside(name, dtype):
    p = OTHER[name]
    v = sample_v(p)
    v[-6:] = [0.0, -0.0, 1e-7, -1e-7, 3e-3, -3e-3]
    v = jnp.asarray(v, dtype=dtype)
    o = make(name, p)(v)
    assert o.dtype == dtype
    chex.assert_shape(o, v.shape)
    o_np = np.asarray(o.astype(jnp.float32))
    assert set(np.unique(o_np)) == {0.0, 1.0}
    expected = (np.asarray(v.astype(jnp.float32)) >= 0).astype(np.float32)
    np.testing.assert_array_equal(o_np, expected)
    # H(0) = 1 exactly (a spike at threshold), H(-eps) = 0.
    z = make(name, p)(jnp.array([0.0, -1e-6, 1e-6], dtype))
    np.testing.assert_array_equal(np.asarray(z.astype(jnp.float32)), [1.0, 0.0, 1.0])


@pytest.mark.parametrize(("name", "p"), CASES)
def test_backward_equals_formula_and_primitive(name, p):
    f = make(name, p)
    v = jnp.asarray(sample_v(p))
    grad = jax.grad(lambda v: jnp.sum(f(v)))(v)
    assert grad.dtype == jnp.float32
    chex.assert_shape(grad, v.shape)
    np.testing.assert_allclose(grad, np_derivative(name, v, p), **TOL)
    grad_primitive = jax.grad(lambda v: jnp.sum(f.primitive(v)))(v)
    np.testing.assert_allclose(grad, grad_primitive, **TOL)
    # Not vacuous: the surrogate is nonzero at v = 0 and varies.
    assert float(grad[0]) > 0
    assert float(jnp.std(grad)) > 0
    # the .derivative attribute is the same formula
    np.testing.assert_allclose(f.derivative(v), np_derivative(name, v, p), **TOL)


@pytest.mark.parametrize("name", ["rectangular", "triangle"])
def test_window_edges(name):
    """The rectangular window is open: 1[|v| < a/2]; the triangle vanishes at |v| = w."""
    p = 0.5
    f = make(name, p)
    edge = p / 2 if name == "rectangular" else p
    v = sample_v(p)
    v[:5] = [-edge, edge, 0.0, edge * 0.99, -edge * 0.99]
    v = jnp.asarray(v)
    grad = jax.grad(lambda v: jnp.sum(f(v)))(v)
    np.testing.assert_allclose(grad, np_derivative(name, v, p), **TOL)
    assert float(grad[0]) == 0.0
    assert float(grad[1]) == 0.0


@pytest.mark.parametrize("name", list(PARAM))
def test_backward_multiplies_upstream_cotangent(name):
    """d/dv sum(w * f(2v - c)) = 2 w s(2v - c): the cotangent and the chain rule pass through."""
    p = OTHER[name]
    f = make(name, p)
    v = sample_v(p, seed=1)
    w = np.random.default_rng(2).normal(size=v.shape).astype(np.float32)
    grad = jax.grad(lambda v: jnp.sum(w * f(2.0 * v - 0.1)))(jnp.asarray(v))
    expected = 2.0 * w * np_derivative(name, 2.0 * v.astype(np.float64) - 0.1, p)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(PARAM))
def test_backward_bfloat16(name):
    p = DEFAULT[name]
    f = make(name, p)
    v = jnp.asarray(sample_v(p), jnp.bfloat16)
    grad = jax.grad(lambda v: jnp.sum(f(v).astype(jnp.float32)))(v)
    assert grad.dtype == jnp.bfloat16
    expected = np_derivative(name, np.asarray(v.astype(jnp.float32)), p)
    np.testing.assert_allclose(np.asarray(grad.astype(jnp.float32)), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", list(PARAM))
def test_transformations(name):
    """jit, vmap (per-example gradients), checkpoint and nested grad give the formula."""
    p = OTHER[name]
    f = make(name, p)
    v = jnp.asarray(sample_v(p, seed=3))
    expected = np_derivative(name, v, p)

    jitted = jax.jit(jax.grad(lambda v: jnp.sum(f(v))))
    np.testing.assert_allclose(jitted(v), expected, **TOL)

    per_example = jax.vmap(jax.grad(lambda s: f(s)))(v)
    np.testing.assert_allclose(per_example, expected, **TOL)

    remat = jax.grad(lambda v: jnp.sum(jax.checkpoint(f)(v)))(v)
    np.testing.assert_allclose(remat, expected, **TOL)

    # grad through a jitted spike function inside another differentiated function
    inner = jax.jit(f)
    np.testing.assert_array_equal(inner(v), np.asarray(v) >= 0)
    outer = jax.grad(lambda v: jnp.sum(3.0 * inner(v)))(v)
    np.testing.assert_allclose(outer, 3.0 * expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(PARAM))
def test_shape_parameter_not_differentiated(name):
    """The width/alpha/slope gets no gradient: it is static (not traceable) or its gradient is 0."""
    v = jnp.asarray(sample_v(OTHER[name]))

    def loss(p):
        return jnp.sum(make(name, p)(v))

    try:
        dp = jax.grad(loss)(OTHER[name])
    except (jax.errors.ConcretizationTypeError, TypeError):
        return
    assert float(dp) == 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0])
@pytest.mark.parametrize("name", list(PARAM))
def test_invalid_parameter_raises(name, bad):
    with pytest.raises(ValueError, match=r"(?i)" + PARAM[name] + "|> 0|positive"):
        make(name, bad)
    with pytest.raises(ValueError, match=PARAM[name]):
        getattr(surrogate, name)(bad)


@pytest.mark.parametrize("bad_name", ["relu", "", "rect"])
def test_unknown_name_raises(bad_name):
    with pytest.raises(ValueError, match="rectangular"):  # the message lists the valid names
        surrogate.get(bad_name)
