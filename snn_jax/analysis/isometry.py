"""Block dynamical isometry and per-layer gradient norms (METHOD.md section 8).

Treat a network as a chain of blocks ``f_j`` with input-output Jacobians
``J_j``. Gradient norms are preserved through depth when, for every block,

    phi(J_j J_j^T) = E[tr(J_j J_j^T)] / N_out  ~=  1.

``phi`` is estimated with random probes, one vector-Jacobian product each::

    phi ~= (1/K) sum_k ||J^T v_k||^2 / N_out,      v_k ~ N(0, I)

(``E_v ||J^T v||^2 = tr(J J^T)``), and cross-checked against the ratio of
second moments per element, ``mean(y^2) / mean(x^2)``, which equals ``phi``
for a linear block fed by an isotropic input.

How blocks are found and measured: the model runs under
:func:`flax.linen.intercept_methods`; every submodule call that a *predicate*
accepts is a block. In that run each block receives
``stop_gradient(x_j) + e_j`` instead of its input ``x_j``, with taps
``e_j = 0``, and returns ``y_j``. Since the stop-gradient cuts every path from
a block's input back into earlier blocks, ``d y_k / d e_j`` is ``J_j`` for
``k = j`` and 0 otherwise, so one backward pass with cotangents ``v_j`` on all
block outputs gives every ``J_j^T v_j`` at once: one forward pass and ``K``
backward passes (a ``lax.map`` over the probes) for all blocks together, not
per block. The probes of all blocks come from one draw of
``normal(rng, (K, sum_j N_out_j))``, split in block order. This assumes the
blocks form a chain: a block's output reaches later blocks only through their
inputs (true of plain and residual networks, whose shortcuts live inside the
blocks; not of DenseNet-style skips across blocks). The Jacobian is the one
of training: ``train=True`` (batch statistics of the current input, their
dependence on the input included) and surrogate gradients through the spikes.
``J`` is the Jacobian of the whole block output ``[T, B, ...]`` with respect
to the whole input, so ``N_out`` counts time, batch and features.

The default predicate, :func:`snn_jax.inspect.is_block`, takes the blocks
marked as such (subclasses of :class:`snn_jax.models.Block`: the residual
blocks and the conv/dense -> norm -> neuron units of ``snn_jax.models``);
pass :func:`blocks_of_type` or any ``module -> bool`` for other models. Nested
matches count once (the outermost). The model is run through
:func:`snn_jax.inspect.capture_calls`.

Everything here is a pure function of arrays (the model, predicate and probe
count are static): wrap it as ``jax.jit(functools.partial(block_isometry,
model, num_probes=8))`` to compile once and evaluate at many training steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from snn_jax.inspect import Predicate, blocks_of_type, capture_calls, is_block, path_name

__all__ = [
    "block_isometry",
    "block_names",
    "blocks_of_type",
    "default_is_block",
    "gradient_norms",
    "kernel_names",
    "kernel_norms",
    "probe_phi",
]

Array = jax.Array


# The blocks measured by default: subclasses of snn_jax.models.Block.
default_is_block = is_block


def probe_phi(
    vjp_fn: Callable[[Array], tuple[Array, ...]],
    out_shape: tuple[int, ...],
    rng: Array,
    num_probes: int,
    dtype: Any = jnp.float32,
) -> tuple[Array, Array]:
    """``phi(J J^T)`` from ``num_probes`` vector-Jacobian products.

    Args:
      vjp_fn: ``v -> (J^T v,)`` as returned by ``jax.vjp``.
      out_shape: the shape of the output ``y`` (``N_out`` = its size).
      rng: PRNG key for the Gaussian probes.
      num_probes: ``K``.
      dtype: dtype of the probes (the output's).

    Returns:
      ``(phi, phi_std)``: the mean of ``||J^T v_k||^2 / N_out`` over the ``K``
      probes and its standard deviation over them (float32 scalars).

    >>> import jax, jax.numpy as jnp
    >>> _, vjp = jax.vjp(lambda x: 3.0 * x, jnp.ones(1000))
    >>> phi, std = probe_phi(vjp, (1000,), jax.random.key(0), 4)
    >>> round(float(phi))                         # c * I gives c^2 (here 9.2: probe noise)
    9
    """
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    n_out = 1
    for d in out_shape:
        n_out *= d
    probes = jax.random.normal(rng, (num_probes, *out_shape), jnp.float32).astype(dtype)

    def one(v):
        (g,) = vjp_fn(v)
        return jnp.sum(jnp.square(g.astype(jnp.float32))) / n_out

    per_probe = jax.vmap(one)(probes)
    return jnp.mean(per_probe), jnp.std(per_probe)


def block_names(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    *,
    is_block: Predicate = is_block,
    train: bool = True,
) -> list[str]:
    """The blocks :func:`block_isometry` measures, in call (depth) order.

    Runs the model abstractly (``jax.eval_shape``), so it costs no compute.
    """
    names: list[str] = []

    def run(variables, x):
        calls, out = capture_calls(model, variables, x, is_block, train=train)
        names.extend(c.name for c in calls)
        return out

    jax.eval_shape(run, variables, x)
    return names


def block_isometry(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    rng: Array,
    *,
    is_block: Predicate = is_block,
    num_probes: int = 8,
    train: bool = True,
) -> dict[str, dict[str, Array]]:
    """Per-block ``phi(J J^T)``, its spread over probes, and the second-moment ratio.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``.
      variables: its variables (``params``, ``batch_stats``).
      x: a model input, e.g. a static batch ``[B, H, W, C]``.
      rng: PRNG key for the probes (one draw for all blocks, split by block).
      is_block: which submodules are blocks (see the module docstring).
      num_probes: probes ``K`` per block.
      train: ``True`` measures the training-mode Jacobian (batch statistics).

    Returns:
      ``{block name: {"phi", "phi_std", "moment_ratio", "in_moment",
      "out_moment"}}`` of float32 scalars, where ``in_moment = mean(x^2)`` and
      ``out_moment = mean(y^2)`` of the block's input and output and
      ``moment_ratio = out_moment / in_moment``. :func:`block_names` gives the
      names in depth order.

    Raises:
      ValueError: if no submodule matches ``is_block``.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> class Scale(nn.Module):                   # a "block" y = 2 x
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         return 2.0 * x
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=True):
    ...         return Scale()(Scale()(x))
    >>> x = jax.random.normal(jax.random.key(0), (16, 32))
    >>> out = block_isometry(Net(), {}, x, jax.random.key(1), is_block=blocks_of_type(Scale))
    >>> sorted(out), round(float(out["Scale_0"]["moment_ratio"]), 3)
    (['Scale_0', 'Scale_1'], 4.0)
    """
    # Shapes of the block inputs, from an abstract pass (no compute).
    found: list[tuple[str, jax.ShapeDtypeStruct]] = []

    def shapes(variables, x):
        calls, out = capture_calls(model, variables, x, is_block, train=train)
        found[:] = [(c.name, jax.ShapeDtypeStruct(c.args[0].shape, c.args[0].dtype)) for c in calls]
        return out

    jax.eval_shape(shapes, variables, x)
    if not found:
        raise ValueError(
            f"no submodule of {type(model).__name__} matched is_block={is_block!r}; pass a "
            "predicate that accepts the blocks, e.g. blocks_of_type(MyBlock)"
        )

    index = {name: j for j, (name, _) in enumerate(found)}

    def tapped(taps):
        # Block j runs on stop_gradient(its input) + taps[j]: d(outputs)/d(taps[j]) is J_j alone.
        def replace(call):
            x_in = call.args[0]
            return jax.lax.stop_gradient(x_in) + taps[index[call.name]].astype(x_in.dtype)

        calls, _ = capture_calls(model, variables, x, is_block, train=train, replace_input=replace)
        return [c.output for c in calls], [c.args[0] for c in calls]

    taps = [jnp.zeros(s.shape, s.dtype) for _, s in found]
    outputs, vjp_fn, inputs = jax.vjp(tapped, taps, has_aux=True)
    for (name, _), y in zip(found, outputs, strict=True):
        if not isinstance(y, jax.Array):
            raise ValueError(f"block {name} returned {type(y).__name__}, not one array")
    # All probes from one draw, split by block (one random-number program, not one per block).
    sizes = [y.size for y in outputs]
    flat = jax.random.normal(rng, (num_probes, sum(sizes)), jnp.float32)
    offsets = np.cumsum([0, *sizes])
    probes = [
        flat[:, offsets[j] : offsets[j + 1]].reshape(num_probes, *y.shape)
        for j, y in enumerate(outputs)
    ]

    def squared_norms(cotangents):  # one probe per block -> ||J_j^T v_j||^2 / N_out_j
        (grads,) = vjp_fn([v.astype(y.dtype) for v, y in zip(cotangents, outputs, strict=True)])
        return jnp.stack(
            [
                jnp.sum(jnp.square(g.astype(jnp.float32))) / y.size
                for g, y in zip(grads, outputs, strict=True)
            ]
        )

    # One backward pass per probe, in a loop: the memory of one backward pass, not K.
    per_probe = jax.lax.map(squared_norms, probes)  # [K, blocks]
    result = {}
    for j, ((name, _), x_in, y) in enumerate(zip(found, inputs, outputs, strict=True)):
        in_moment = jnp.mean(jnp.square(x_in.astype(jnp.float32)))
        out_moment = jnp.mean(jnp.square(y.astype(jnp.float32)))
        result[name] = {
            "phi": jnp.mean(per_probe[:, j]),
            "phi_std": jnp.std(per_probe[:, j]),
            "moment_ratio": out_moment / in_moment,
            "in_moment": in_moment,
            "out_moment": out_moment,
        }
    return result


def _has_kernel(module: nn.Module) -> bool:
    return module.scope is not None and module.has_variable("params", "kernel")


def kernel_names(
    model: nn.Module, variables: Mapping[str, Any], x: Array, *, train: bool = True
) -> list[str]:
    """Paths ``".../kernel"`` of every conv/dense kernel, in the order the layers run.

    The order of a params dict is not depth order once it has been through a
    JAX transformation (keys come back sorted), so the order is taken from a
    forward pass (abstract: ``jax.eval_shape``, no compute).

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> class Deep(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=True):
    ...         for _ in range(11):
    ...             x = nn.Dense(3)(x)
    ...         return x
    >>> variables = Deep().init(jax.random.key(0), jnp.ones((1, 3)))
    >>> kernel_names(Deep(), variables, jnp.ones((1, 3)))[-2:]   # not sorted as strings
    ['Dense_9/kernel', 'Dense_10/kernel']
    """
    names: list[str] = []

    def run(variables, x):
        calls, out = capture_calls(model, variables, x, _has_kernel, train=train, outermost=False)
        for c in calls:
            name = path_name((*c.path, "kernel"))
            if name not in names:
                names.append(name)
        return out

    jax.eval_shape(run, variables, x)
    return names


def _default_loss(logits: Array, labels: Array) -> Array:
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    )


def gradient_norms(
    model: nn.Module,
    variables: Mapping[str, Any],
    batch: Mapping[str, Array],
    *,
    train: bool = True,
    loss_fn: Callable[[Array, Array], Array] = _default_loss,
) -> dict[str, Array]:
    """``||dL/dW||`` (Frobenius norm) of the loss for every conv/dense kernel.

    The gradient is the training one: STBP with surrogate gradients, batch
    statistics when ``train`` is true.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``.
      variables: its variables (``params``, ``batch_stats``).
      batch: ``{"image": model input, "label": int [B]}``.
      train: run the model in training mode.
      loss_fn: ``(logits [B, K], labels [B]) -> scalar``; default: mean
        softmax cross-entropy.

    Returns:
      ``{".../kernel": norm}`` (float32 scalars); :func:`kernel_names` gives the
      keys in depth order.

    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, train=True):
    ...         return nn.Dense(3, name="out")(nn.Dense(5, name="hidden")(x))
    >>> net = Net()
    >>> variables = net.init(jax.random.key(0), jnp.ones((2, 4)))
    >>> batch = {"image": jnp.ones((2, 4)), "label": jnp.array([0, 2])}
    >>> sorted(gradient_norms(net, variables, batch))
    ['hidden/kernel', 'out/kernel']
    """
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}

    def loss(params):
        logits, _ = model.apply(
            {"params": params, **rest},
            batch["image"],
            train=train,
            mutable=["batch_stats", "intermediates"],
        )
        return loss_fn(logits, batch["label"])

    return kernel_norms(jax.grad(loss)(params))


def kernel_norms(tree: Mapping[str, Any]) -> dict[str, Array]:
    """The Frobenius norm of every ``kernel`` leaf of a params-like tree (e.g. gradients).

    Returns:
      ``{".../kernel": norm}`` (float32 scalars).

    >>> import jax.numpy as jnp
    >>> kernel_norms({"fc": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.ones(2)}})
    {'fc/kernel': Array(1., dtype=float32)}
    """
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
    return {
        k: jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
        for k, g in flat.items()
        if k.endswith("/kernel") or k == "kernel"
    }
