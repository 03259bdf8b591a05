"""The hand-written STBP backward (custom_vjp) equals autodiff of the plain scan of lif_step.

The oracle is ``lif_scan_autodiff`` (tests/reference.py): a ``lax.scan`` of
``snn_jax.lif_step``, differentiated by JAX.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import pytest

import snn_jax
from snn_jax import surrogate
from tests.reference import lif_scan_autodiff

T, B, N = 7, 3, 5


def _inputs():
    x = jax.random.normal(jax.random.key(0), (T, B, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, B, N))
    w_u = jax.random.normal(jax.random.key(2), (T, B, N))
    return x, w_o, w_u


def _state():
    return snn_jax.LIFState(
        jnp.full((B, N), 0.3), (jnp.arange(B * N).reshape(B, N) % 2).astype(jnp.float32)
    )


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

    def loss(x, tau, scan):
        out = scan(
            x,
            tau=tau,
            surrogate=surrogate.get(name),
            detach_reset=detach_reset,
            return_membrane=return_membrane,
        )
        if return_membrane:
            return jnp.sum(out[0] * w_o) + jnp.sum(out[1] * w_u)
        return jnp.sum(out * w_o)

    ref_val, ref_grad = jax.value_and_grad(loss, argnums)(x, tau, lif_scan_autodiff)
    val, grad = jax.value_and_grad(loss, argnums)(x, tau, snn_jax.lif_scan)
    assert val == ref_val
    assert float(jnp.abs(ref_grad[0]).max()) > 0
    chex.assert_trees_all_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


# tau and v_th: a Python number, a 0-d array, one per channel [N], one per neuron [B, N].
PARAMS = {
    "float": lambda low, high: (low + high) / 2,
    "scalar": lambda low, high: jnp.array((low + high) / 2),
    "channel": lambda low, high: jnp.linspace(low, high, N),
    "neuron": lambda low, high: jnp.linspace(low, high, B * N).reshape(B, N),
}
PARAM_PAIRS = [
    ("channel", "neuron"),
    ("neuron", "channel"),
    ("float", "channel"),
    ("scalar", "scalar"),
    ("channel", "float"),
]
# Every combination of reset, detach_reset, return_membrane and unroll (1 and T), each
# with one of the (tau, v_th) pairs in turn: every pair meets both resets.
OPTION_CASES = [
    (*options, *PARAM_PAIRS[i % len(PARAM_PAIRS)])
    for i, options in enumerate(
        itertools.product(snn_jax.functional.RESETS, (False, True), (False, True), (1, T))
    )
]


@pytest.mark.parametrize(
    ("reset", "detach_reset", "return_membrane", "unroll", "tau_kind", "v_th_kind"), OPTION_CASES
)
def test_custom_vjp_equals_autodiff_for_every_option(
    reset, detach_reset, return_membrane, unroll, tau_kind, v_th_kind
):
    """Gradients of x, of tau and v_th given as arrays (learnable), and of the initial state."""
    x, w_o, w_u = _inputs()
    tau, v_th = PARAMS[tau_kind](0.2, 0.9), PARAMS[v_th_kind](0.3, 0.6)
    state = _state()
    learned = tuple(i for i, p in ((1, tau), (2, v_th)) if not isinstance(p, float))

    def loss(x, tau, v_th, state, scan):
        out = scan(
            x,
            tau=tau,
            v_th=v_th,
            surrogate=surrogate.sigmoid(),
            reset=reset,
            detach_reset=detach_reset,
            init_state=state,
            return_membrane=return_membrane,
            unroll=unroll,
        )
        if return_membrane:
            return jnp.sum(out[0] * w_o) + jnp.sum(out[1] * w_u)
        return jnp.sum(out * w_o)

    argnums = (0, *learned, 3)
    ref = jax.value_and_grad(loss, argnums)(x, tau, v_th, state, lif_scan_autodiff)
    grad = jax.jit(jax.value_and_grad(loss, argnums), static_argnums=4)
    got = grad(x, tau, v_th, state, snn_jax.lif_scan)
    for g in jax.tree.leaves(ref[1][:-1]):  # x's, tau's, v_th's gradients are there to compare
        assert float(jnp.abs(g).max()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


def test_detach_reset_changes_the_threshold_gradient_of_the_subtract_reset():
    """With the subtract reset v_th keeps its charge term when detached; the two differ."""
    x, w_o, _ = _inputs()
    v_th = jnp.linspace(0.3, 0.6, N)

    def grad_v_th(scan, detach_reset):
        def loss(v_th):
            out = scan(x, v_th=v_th, reset="subtract", detach_reset=detach_reset)
            return jnp.sum(out * w_o)

        return jax.grad(loss)(v_th)

    for detach_reset in (False, True):
        chex.assert_trees_all_close(
            grad_v_th(snn_jax.lif_scan, detach_reset),
            grad_v_th(lif_scan_autodiff, detach_reset),
            rtol=1e-5,
            atol=1e-6,
        )
    assert (
        float(jnp.abs(grad_v_th(snn_jax.lif_scan, False) - grad_v_th(snn_jax.lif_scan, True)).max())
        > 1e-3
    )


@pytest.mark.parametrize("reset", snn_jax.functional.RESETS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_custom_vjp_gradient_of_the_initial_state(detach_reset, reset):
    x, w_o, _ = _inputs()

    def loss(state, scan):
        out = scan(x, init_state=state, detach_reset=detach_reset, reset=reset)
        return jnp.sum(out * w_o)

    ref = jax.grad(loss)(_state(), lif_scan_autodiff)
    got = jax.grad(loss)(_state(), snn_jax.lif_scan)
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
    ref16 = jax.grad(lambda x: jnp.sum(lif_scan_autodiff(x) * w_o.astype(x.dtype)))(
        x.astype(jnp.bfloat16)
    )
    chex.assert_trees_all_close(g16.astype(jnp.float32), ref16.astype(jnp.float32))


@pytest.mark.parametrize("reset", snn_jax.functional.RESETS)
@pytest.mark.parametrize("unroll", [1, 3, T, True])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_custom_vjp_equals_autodiff_looped_and_unrolled(unroll, detach_reset, reset):
    """Both forms of the time loop: a loop (unroll < T) and straight-line code (unroll >= T)."""
    x, w_o, w_u = _inputs()
    tau = jnp.linspace(0.1, 0.9, N)
    v_th = jnp.linspace(0.3, 0.6, N)

    def loss(x, tau, v_th, state, scan):
        o, u = scan(
            x,
            tau=tau,
            v_th=v_th,
            init_state=state,
            detach_reset=detach_reset,
            reset=reset,
            return_membrane=True,
            unroll=unroll,
        )
        return jnp.sum(o * w_o) + jnp.sum(u * w_u)

    ref = jax.value_and_grad(loss, (0, 1, 2, 3))(x, tau, v_th, _state(), lif_scan_autodiff)
    grad = jax.jit(jax.value_and_grad(loss, (0, 1, 2, 3)), static_argnums=4)
    got = grad(x, tau, v_th, _state(), snn_jax.lif_scan)
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reset", snn_jax.functional.RESETS)
def test_looped_backward_writes_the_gradient_over_the_membrane(reset):
    """Unroll 1: the backward needs no second [T, B, N] buffer (XLA updates ``u`` in place),
    with a per-channel threshold and its gradient too."""
    x = jnp.ones((32, 16, 256))
    v_th = jnp.full((256,), 0.5)

    def loss(x, v_th):
        return jnp.sum(snn_jax.lif_scan(x, v_th=v_th, reset=reset))

    grad = jax.jit(jax.grad(loss, (0, 1))).lower(x, v_th).compile()
    assert grad.memory_analysis().temp_size_in_bytes < 0.25 * x.nbytes


@pytest.mark.parametrize("reset", snn_jax.functional.RESETS)
def test_custom_vjp_keeps_one_time_series_for_the_backward_pass(capsys, reset):
    """Only the membrane is saved ([T, B, N] once); autodiff of the scan saves more.

    (Three series with JAX 0.10; how many is JAX's choice, so only "more" is checked.)
    """
    from jax.ad_checkpoint import print_saved_residuals

    x, _, _ = _inputs()
    v_th = jnp.linspace(0.3, 0.6, N)
    series = f"f32[{T},{B},{N}]"
    counts = {}
    for scan in (snn_jax.lif_scan, lif_scan_autodiff):
        print_saved_residuals(
            lambda x, v_th, scan=scan: jnp.sum(scan(x, v_th=v_th, reset=reset)), x, v_th
        )
        counts[scan] = capsys.readouterr().out.count(series)
    assert counts[snn_jax.lif_scan] == 1
    assert counts[lif_scan_autodiff] > 1


def test_custom_vjp_with_one_time_step():
    x = jnp.array([[0.3, 0.7]])
    state = snn_jax.LIFState(jnp.array([0.4, 0.2]), jnp.array([0.0, 1.0]))

    def loss(x, state, tau, v_th, scan):
        out = scan(x, tau=tau, v_th=v_th, init_state=state, reset="subtract")
        return jnp.sum(out * jnp.array([1.0, -2.0]))

    args = (x, state, jnp.array(0.5), jnp.array([0.5, 0.4]))
    ref = jax.grad(loss, argnums=(0, 1, 2, 3))(*args, lif_scan_autodiff)
    got = jax.grad(loss, argnums=(0, 1, 2, 3))(*args, snn_jax.lif_scan)
    assert float(jnp.abs(ref[2])) > 0
    assert float(jnp.abs(ref[3]).min()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-6)


def test_a_surrogate_that_is_not_a_spike_function_is_rejected():
    with pytest.raises(TypeError, match="SpikeFunction"):
        snn_jax.lif_scan(jnp.zeros((T, B)), surrogate=jnp.tanh)


# (detach_reset, shared_state, reset): each option on and off, each reset twice.
SHARD_CASES = [
    (False, False, "zero"),
    (True, True, "zero"),
    (False, True, "subtract"),
    (True, False, "subtract"),
]


@pytest.mark.parametrize(("detach_reset", "shared_state", "reset"), SHARD_CASES)
def test_custom_vjp_inside_shard_map_sums_the_shared_gradients(detach_reset, shared_state, reset):
    """Batch split over 4 devices by ``shard_map``: the gradients of the whole batch.

    ``tau`` and ``v_th`` are shared (the same on every device); so is the
    initial state when ``shared_state``; the resting state
    (``init_state=None``) is too. Their gradients are the sums over the
    devices, as autodiff of the unsplit batch.
    """
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    x = jax.random.normal(jax.random.key(0), (T, 8, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, 8, N))
    tau = jnp.linspace(0.1, 0.9, N)
    v_th = jnp.linspace(0.3, 0.6, N)
    u0 = jnp.linspace(-0.2, 0.4, N) if shared_state else jnp.full((8, N), 0.3)

    def loss(x, w_o, tau, v_th, u0, scan, state=True):
        init = snn_jax.LIFState(u0 * jnp.ones(x.shape[1:]), jnp.zeros(x.shape[1:]))
        out = scan(
            x,
            tau=tau,
            v_th=v_th,
            init_state=init if state else None,
            detach_reset=detach_reset,
            reset=reset,
        )
        return jnp.sum(out * w_o)

    mesh = jax.make_mesh((4,), ("data",))
    batch, shared = jax.sharding.PartitionSpec(None, "data"), jax.sharding.PartitionSpec()
    state_spec = shared if shared_state else jax.sharding.PartitionSpec("data")
    specs = (batch, batch, shared, shared, state_spec)
    args = (x, w_o, tau, v_th, u0)
    placed = [
        jax.device_put(a, jax.sharding.NamedSharding(mesh, s))
        for a, s in zip(args, specs, strict=True)
    ]
    argnums = (0, 2, 3, 4)
    for state in (True, False):
        ref = jax.grad(loss, argnums)(*args, lif_scan_autodiff, state)
        split = jax.shard_map(
            lambda *a, state=state: jax.grad(loss, argnums)(*a, snn_jax.lif_scan, state),
            mesh=mesh,
            in_specs=specs,
            out_specs=tuple(specs[i] for i in argnums),
        )
        got = jax.jit(split)(*placed)
        assert float(jnp.abs(ref[1]).max()) > 0
        assert float(jnp.abs(ref[2]).max()) > 0
        chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


def test_custom_vjp_inside_shard_map_with_the_input_shared():
    """The same input on every device, a different initial state on each: the input's
    gradient is the sum of the devices' gradients (the ``x[:0]`` residual's purpose)."""
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices")
    x = jax.random.normal(jax.random.key(0), (T, 2, N)) * 0.5 + 0.4
    w_o = jax.random.normal(jax.random.key(1), (T, 2, N))
    tau = jnp.linspace(0.1, 0.9, N)
    v_th = jnp.linspace(0.3, 0.6, N)
    u0 = jax.random.uniform(jax.random.key(2), (4 * 2, N))  # [devices * 2, N], split

    def loss(x, tau, v_th, u0, scan):
        state = snn_jax.LIFState(u0, jnp.zeros_like(u0))
        out = scan(x, tau=tau, v_th=v_th, init_state=state, reset="subtract")
        return jnp.sum(out * w_o)

    argnums = (0, 1, 2, 3)
    per_device = jax.vmap(jax.grad(loss, argnums), in_axes=(None, None, None, 0, None))
    gx, gtau, gv, gu0 = per_device(x, tau, v_th, u0.reshape(4, 2, N), lif_scan_autodiff)
    ref = (gx.sum(0), gtau.sum(0), gv.sum(0), gu0.reshape(4 * 2, N))
    mesh = jax.make_mesh((4,), ("data",))
    shared, split = jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec("data")
    specs = (shared, shared, shared, split)
    placed = [
        jax.device_put(a, jax.sharding.NamedSharding(mesh, s))
        for a, s in zip((x, tau, v_th, u0), specs, strict=True)
    ]
    got = jax.jit(
        jax.shard_map(
            lambda *a: jax.grad(loss, argnums)(*a, snn_jax.lif_scan),
            mesh=mesh,
            in_specs=specs,
            out_specs=specs,
        )
    )(*placed)
    assert float(jnp.abs(ref[0]).max()) > 0
    assert float(jnp.abs(ref[2]).max()) > 0
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)
