"""The hand-written STBP backward (custom_vjp) equals autodiff of the plain scan."""

import chex
import jax
import jax.numpy as jnp
import pytest

import snn_jax
from snn_jax import surrogate

T, B, N = 7, 3, 5


def _inputs():
    x = jax.random.normal(jax.random.key(0), (T, B, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, B, N))
    w_u = jax.random.normal(jax.random.key(2), (T, B, N))
    return x, w_o, w_u


CASES = [(name, detach, False, 0.25) for name in surrogate.NAMES for detach in (False, True)] + [
    ("rectangular", detach, membrane, tau)
    for detach in (False, True)
    for membrane, tau in ((True, 0.25), (False, 1.0), (True, "per_neuron"), (False, "scalar_array"))
]


@pytest.mark.parametrize(("name", "detach_reset", "return_membrane", "tau"), CASES)
def test_custom_vjp_equals_autodiff(name, detach_reset, return_membrane, tau):
    x, w_o, w_u = _inputs()
    tau = {"per_neuron": jnp.linspace(0.1, 0.9, N), "scalar_array": jnp.array(0.6)}.get(tau, tau)
    argnums = (0,) if isinstance(tau, float) else (0, 1)

    def loss(x, tau, implementation):
        out = snn_jax.lif_scan(
            x,
            tau=tau,
            surrogate=surrogate.get(name),
            detach_reset=detach_reset,
            return_membrane=return_membrane,
            implementation=implementation,
        )
        if return_membrane:
            return jnp.sum(out[0] * w_o) + jnp.sum(out[1] * w_u)
        return jnp.sum(out * w_o)

    ref_val, ref_grad = jax.value_and_grad(loss, argnums)(x, tau, "autodiff")
    val, grad = jax.value_and_grad(loss, argnums)(x, tau, "custom_vjp")
    assert val == ref_val
    assert float(jnp.abs(ref_grad[0]).max()) > 0
    chex.assert_trees_all_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("detach_reset", [False, True])
def test_custom_vjp_gradient_of_the_initial_state(detach_reset):
    x, w_o, _ = _inputs()
    state = snn_jax.LIFState(
        jnp.full((B, N), 0.3), (jnp.arange(B * N).reshape(B, N) % 2).astype(jnp.float32)
    )

    def loss(state, implementation):
        out = snn_jax.lif_scan(
            x, init_state=state, detach_reset=detach_reset, implementation=implementation
        )
        return jnp.sum(out * w_o)

    ref = jax.grad(loss)(state, "autodiff")
    got = jax.grad(loss)(state, "custom_vjp")
    assert float(jnp.abs(ref.u).max()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-6)


def test_custom_vjp_under_jit_vmap_checkpoint_and_bfloat16():
    x, w_o, _ = _inputs()

    def loss(x):
        return jnp.sum(snn_jax.lif_scan(x) * w_o.astype(x.dtype))

    ref = jax.grad(loss)(x)
    chex.assert_trees_all_close(jax.jit(jax.grad(loss))(x), ref)
    chex.assert_trees_all_close(jax.grad(jax.checkpoint(loss))(x), ref)
    per_sample = jax.vmap(jax.grad(lambda xi, wi: jnp.sum(snn_jax.lif_scan(xi) * wi)), 1, 1)
    chex.assert_trees_all_close(per_sample(x, w_o), ref, rtol=1e-6)
    g16 = jax.grad(loss)(x.astype(jnp.bfloat16))
    assert g16.dtype == jnp.bfloat16
    ref16 = jax.grad(
        lambda x: jnp.sum(snn_jax.lif_scan(x, implementation="autodiff") * w_o.astype(x.dtype))
    )(x.astype(jnp.bfloat16))
    chex.assert_trees_all_close(g16.astype(jnp.float32), ref16.astype(jnp.float32))


@pytest.mark.parametrize("unroll", [1, 3, T, True])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_custom_vjp_equals_autodiff_looped_and_unrolled(unroll, detach_reset):
    """Both forms of the time loop: a loop (unroll < T) and straight-line code (unroll >= T)."""
    x, w_o, w_u = _inputs()
    tau = jnp.linspace(0.1, 0.9, N)
    state = snn_jax.LIFState(
        jnp.full((B, N), 0.3), (jnp.arange(B * N).reshape(B, N) % 2).astype(jnp.float32)
    )

    def loss(x, tau, state, implementation):
        o, u = snn_jax.lif_scan(
            x,
            tau=tau,
            init_state=state,
            detach_reset=detach_reset,
            return_membrane=True,
            unroll=unroll,
            implementation=implementation,
        )
        return jnp.sum(o * w_o) + jnp.sum(u * w_u)

    ref = jax.value_and_grad(loss, (0, 1, 2))(x, tau, state, "autodiff")
    grad = jax.jit(jax.value_and_grad(loss, (0, 1, 2)), static_argnums=3)
    got = grad(x, tau, state, "custom_vjp")
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-6)


def test_looped_backward_writes_the_gradient_over_the_membrane():
    """Unroll 1: the backward needs no second [T, B, N] buffer (XLA updates ``u`` in place)."""
    x = jnp.ones((32, 16, 256))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(snn_jax.lif_scan(x)))).lower(x).compile()
    assert grad.memory_analysis().temp_size_in_bytes < 0.25 * x.nbytes


def test_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match="implementation"):
        snn_jax.lif_scan(jnp.zeros((2, 3)), implementation="fast")


def test_custom_vjp_keeps_one_time_series_for_the_backward_pass(capsys):
    """Only the membrane is saved ([T, B, N] once); autodiff of the scan saves more.

    (Three series with JAX 0.10; how many is JAX's choice, so only "more" is checked.)
    """
    from jax.ad_checkpoint import print_saved_residuals

    x, _, _ = _inputs()
    series = f"f32[{T},{B},{N}]"
    counts = {}
    for impl in ("custom_vjp", "autodiff"):
        print_saved_residuals(
            lambda x, impl=impl: jnp.sum(snn_jax.lif_scan(x, implementation=impl)), x
        )
        counts[impl] = capsys.readouterr().out.count(series)
    assert counts["custom_vjp"] == 1
    assert counts["autodiff"] > 1


def test_custom_vjp_with_one_time_step():
    x = jnp.array([[0.3, 0.7]])
    state = snn_jax.LIFState(jnp.array([0.4, 0.2]), jnp.array([0.0, 1.0]))

    def loss(x, state, tau, implementation):
        out = snn_jax.lif_scan(x, tau=tau, init_state=state, implementation=implementation)
        return jnp.sum(out * jnp.array([1.0, -2.0]))

    args = (x, state, jnp.array(0.5))
    ref = jax.grad(loss, argnums=(0, 1, 2))(*args, "autodiff")
    got = jax.grad(loss, argnums=(0, 1, 2))(*args, "custom_vjp")
    assert float(jnp.abs(ref[2])) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-6)


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("shared_state", [False, True])
def test_custom_vjp_inside_shard_map_sums_the_shared_gradients(detach_reset, shared_state):
    """Batch split over 4 devices by ``shard_map``: the gradients of the whole batch.

    ``tau`` is shared (the same on every device); so is the initial state when
    ``shared_state``; the resting state (``init_state=None``) is too. Their
    gradients are the sums over the devices, as autodiff of the unsplit batch.
    """
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    x = jax.random.normal(jax.random.key(0), (T, 8, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, 8, N))
    tau = jnp.linspace(0.1, 0.9, N)
    u0 = jnp.linspace(-0.2, 0.4, N) if shared_state else jnp.full((8, N), 0.3)

    def loss(x, w_o, tau, u0, implementation, state=True):
        init = snn_jax.LIFState(u0 * jnp.ones(x.shape[1:]), jnp.zeros(x.shape[1:]))
        out = snn_jax.lif_scan(
            x,
            tau=tau,
            init_state=init if state else None,
            detach_reset=detach_reset,
            implementation=implementation,
        )
        return jnp.sum(out * w_o)

    mesh = jax.make_mesh((4,), ("data",))
    batch, shared = jax.sharding.PartitionSpec(None, "data"), jax.sharding.PartitionSpec()
    specs = (batch, batch, shared, shared if shared_state else jax.sharding.PartitionSpec("data"))
    args = (x, w_o, tau, u0)
    placed = [
        jax.device_put(a, jax.sharding.NamedSharding(mesh, s))
        for a, s in zip(args, specs, strict=True)
    ]
    for state in (True, False):
        ref = jax.grad(loss, (0, 2, 3))(*args, "autodiff", state)
        split = jax.shard_map(
            lambda *a, state=state: jax.grad(loss, (0, 2, 3))(*a, "custom_vjp", state),
            mesh=mesh,
            in_specs=specs,
            out_specs=(specs[0], specs[2], specs[3]),
        )
        got = jax.jit(split)(*placed)
        assert float(jnp.abs(ref[1]).max()) > 0
        chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-6)


def test_custom_vjp_inside_shard_map_with_the_input_shared():
    """The same input on every device, a different initial state on each: the input's
    gradient is the sum of the devices' gradients (the ``x[:0]`` residual's purpose)."""
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    x = jax.random.normal(jax.random.key(0), (T, 2, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, 2, N))
    tau = jnp.linspace(0.1, 0.9, N)
    u0 = jax.random.uniform(jax.random.key(2), (4 * 2, N))  # [devices * 2, N], split

    def loss(x, tau, u0, implementation):
        state = snn_jax.LIFState(u0, jnp.zeros_like(u0))
        out = snn_jax.lif_scan(x, tau=tau, init_state=state, implementation=implementation)
        return jnp.sum(out * w_o)

    per_device = jax.vmap(jax.grad(loss, (0, 1, 2)), in_axes=(None, None, 0, None))
    gx, gtau, gu0 = per_device(x, tau, u0.reshape(4, 2, N), "autodiff")
    ref = (gx.sum(0), gtau.sum(0), gu0.reshape(4 * 2, N))
    mesh = jax.make_mesh((4,), ("data",))
    shared, split = jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec("data")
    specs = (shared, shared, split)
    placed = [
        jax.device_put(a, jax.sharding.NamedSharding(mesh, s))
        for a, s in zip((x, tau, u0), specs, strict=True)
    ]
    got = jax.jit(
        jax.shard_map(
            lambda *a: jax.grad(loss, (0, 1, 2))(*a, "custom_vjp"),
            mesh=mesh,
            in_specs=specs,
            out_specs=specs,
        )
    )(*placed)
    assert float(jnp.abs(ref[0]).max()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)
