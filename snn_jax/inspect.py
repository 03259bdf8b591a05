"""Looking inside a Flax model: record, and optionally replace, the calls of its submodules.

Every analysis, the conversion to spiking networks and the evaluation look
inside a model the same way, without changing it: the model runs once under
:func:`flax.linen.intercept_methods`, and each call of a submodule that a
*predicate* accepts is recorded as a :class:`Call`: its path in the variable
tree, its arguments, its output and an *unbound* copy of the submodule, so
that the submodule can be applied again on its own, as a pure function of its
input (:meth:`Call.apply`: a block's Jacobian is then a plain ``jax.vjp``).
A recorded call's input or output may also be replaced on the way
(``replace_input``, ``replace_output``): conversion swaps each neuron for its
rate, isometry cuts the gradient between blocks.

:func:`capture_calls` runs a model and returns the calls; with
``compiled=True`` the pass is jitted and cached per model, predicate and input
types, so a loop over batches compiles once. :func:`recording` is the context
manager underneath, for a caller that runs the model itself (e.g. to keep the
sown ``intermediates``).

The predicates :func:`is_neuron`, :func:`is_linear`, :func:`is_norm` and
:func:`is_block` name the layers of ``snn_jax.models``; :func:`blocks_of_type`
makes one for other classes. A block is marked explicitly, by inheriting
:class:`snn_jax.models.Block`.

Inside an ``nn.remat`` scope the values are those of the recomputation and
cannot leave it, and a compact unit calls no LIF layer and no norm, so
:func:`capture_calls` runs :func:`without_remat` of the model: the same values.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from snn_jax.models.layers import Block
from snn_jax.nn import BNTT, LIF, TEBN, TdBatchNorm

__all__ = [
    "Call",
    "Predicate",
    "blocks_of_type",
    "capture_calls",
    "is_block",
    "is_linear",
    "is_neuron",
    "is_norm",
    "path_name",
    "recording",
    "subtree",
    "without_remat",
]

Predicate = Callable[[nn.Module], bool]
# (the call, with output None) -> its new first argument
InputFn = Callable[["Call"], Any]
# (the call, with its output) -> the output its caller gets instead
OutputFn = Callable[["Call"], Any]

# Collections a forward pass may write: running statistics and sown values.
MUTABLE = ("batch_stats", "intermediates")


def is_neuron(module: nn.Module) -> bool:
    """True for a spiking layer, :class:`snn_jax.nn.LIF` (``IF`` is a LIF).

    >>> from snn_jax.nn import IF, LIF, TdBatchNorm
    >>> is_neuron(LIF()), is_neuron(IF()), is_neuron(TdBatchNorm())
    (True, True, False)
    """
    return isinstance(module, LIF)


def is_linear(module: nn.Module) -> bool:
    """True for a conv or dense layer (``flax.linen.Conv``, ``flax.linen.Dense``).

    >>> import flax.linen as nn
    >>> is_linear(nn.Conv(3, (3, 3))), is_linear(nn.Dense(3)), is_linear(nn.BatchNorm())
    (True, True, False)
    """
    return isinstance(module, nn.Conv | nn.Dense)


def is_norm(module: nn.Module) -> bool:
    """True for a norm layer with running statistics (:class:`snn_jax.nn.TdBatchNorm`, BN,
    :class:`snn_jax.nn.TEBN`, :class:`snn_jax.nn.BNTT`).

    >>> import flax.linen as nn
    >>> from snn_jax.nn import BNTT, TdBatchNorm
    >>> is_norm(TdBatchNorm()), is_norm(nn.BatchNorm()), is_norm(BNTT()), is_norm(nn.LayerNorm())
    (True, True, True, False)
    """
    return isinstance(module, TdBatchNorm | nn.BatchNorm | TEBN | BNTT)


def is_block(module: nn.Module) -> bool:
    """True for a block: an instance of :class:`snn_jax.models.Block`.

    The zoo's residual blocks (``BasicBlock``, ``BottleneckBlock``) and its
    ``conv|dense -> norm -> neuron`` units (``ConvUnit``, ``DenseUnit``) are
    blocks; a user marks a block of their own by inheriting ``Block``.

    >>> import flax.linen as nn
    >>> from snn_jax.models import Block
    >>> class MyBlock(Block):
    ...     @nn.compact
    ...     def __call__(self, x, train=True):
    ...         return nn.Dense(x.shape[-1])(x)
    >>> is_block(MyBlock()), is_block(nn.Dense(3))
    (True, False)
    """
    return isinstance(module, Block)


def blocks_of_type(*types: type) -> Predicate:
    """A predicate accepting instances of ``types`` (e.g. ``blocks_of_type(MyBlock)``).

    >>> import flax.linen as nn
    >>> blocks_of_type(nn.Dense)(nn.Dense(3)), blocks_of_type(nn.Dense)(nn.Conv(3, (3,)))
    (True, False)
    """
    if not types:
        raise ValueError("blocks_of_type needs at least one module class, got none")
    return lambda module: isinstance(module, types)


def path_name(path: Sequence[str]) -> str:
    """``("Block_0", "conv1") -> "Block_0/conv1"``; the root module is ``""``.

    >>> path_name(("stage1_block1", "conv1"))
    'stage1_block1/conv1'
    """
    return "/".join(path)


def subtree(variables: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any]:
    """The variables of the submodule at ``path``: ``{collection: subtree}``.

    Collections that hold nothing at ``path`` are left out.

    >>> subtree({"params": {"fc": {"kernel": 1}}, "batch_stats": {}}, ("fc",))
    {'params': {'kernel': 1}}
    """
    out = {}
    for collection, tree in variables.items():
        node = tree
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            out[collection] = node
    return out


def without_remat(model: nn.Module) -> nn.Module:
    """A zoo model with ``memory="remat"`` or ``"compact"`` as the same model with ``"none"``.

    Inside an ``nn.remat`` block the layers' inputs and outputs are values of
    the recomputation, which cannot leave it; a compact unit calls no LIF
    layer and no norm (:class:`snn_jax.nn.NormNeuron`). The values are the
    same without either. Other models are returned as they are.

    >>> from snn_jax.models import get_model
    >>> without_remat(get_model("digits_cnn", memory="remat")).memory
    'none'
    """
    memory = getattr(model, "memory", None)
    return model.clone(memory="none") if memory in ("remat", "compact") else model


@dataclasses.dataclass(frozen=True)
class Call:
    """One recorded call of a submodule.

    Attributes:
      name: the submodule's path joined by ``/`` (``#k`` appended for the k-th
        repeated call of the same submodule, k >= 1).
      path: the path as a tuple.
      module: an unbound copy of the submodule (same attributes, no parent).
      args: the positional arguments of the call (``args[0]`` is its input,
        after ``replace_input``).
      kwargs: the keyword arguments.
      output: what the submodule returned (before ``replace_output``).
    """

    name: str
    path: tuple[str, ...]
    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def apply(self, variables: Mapping[str, Any], x: jax.Array) -> Any:
        """Applies the submodule alone to a new input ``x`` (other arguments as recorded).

        ``variables`` are the whole model's; the submodule's part is taken from
        ``self.path``. Running statistics and sown values it writes are dropped.
        """
        out, _ = self.module.apply(
            subtree(variables, self.path), x, *self.args[1:], mutable=list(MUTABLE), **self.kwargs
        )
        return out


@contextlib.contextmanager
def recording(
    predicate: Predicate,
    *,
    outermost: bool = True,
    replace_input: InputFn | None = None,
    replace_output: OutputFn | None = None,
) -> Iterator[list[Call]]:
    """Records the calls of matching submodules of every model applied inside the block.

    Args:
      predicate: which submodules to record (called with the bound submodule;
        the root module is never recorded).
      outermost: skip calls nested inside an already recorded call.
      replace_input: ``call -> new input`` (``call.output`` is ``None``): the
        call then runs on, and records, the new input.
      replace_output: ``call -> new output``: what the caller receives
        instead of ``call.output``, which stays the recorded output.

    Yields:
      The list of recorded calls, in the order they began; it is complete
      when the ``with`` block ends.

    >>> import jax.numpy as jnp, flax.linen as nn
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         return nn.Dense(2, name="out")(nn.Dense(3, name="hidden")(x))
    >>> variables = Net().init(jax.random.key(0), jnp.ones((1, 4)))
    >>> with recording(is_linear) as calls:
    ...     y = Net().apply(variables, jnp.ones((5, 4)))
    >>> [(c.name, c.output.shape) for c in calls]
    [('hidden', (5, 3)), ('out', (5, 2))]
    """
    calls: list[Call | None] = []
    done: list[Call] = []
    active: list[bool] = []  # one entry per open __call__ frame: was it recorded?
    seen: dict[tuple[str, ...], int] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or module.scope is None:
            return next_fun(*args, **kwargs)
        record = module.path != () and predicate(module) and not (outermost and any(active))
        if not record:
            active.append(False)
            try:
                return next_fun(*args, **kwargs)
            finally:
                active.pop()
        path = tuple(module.path)
        count = seen.get(path, 0)
        seen[path] = count + 1
        call = Call(
            path_name(path) + (f"#{count}" if count else ""),
            path,
            module.clone(parent=None),
            tuple(args),
            dict(kwargs),
            None,
        )
        slot = len(calls)  # reserve the place: calls are listed in the order they begin
        calls.append(None)
        if replace_input is not None:
            args = (replace_input(call), *args[1:])
            call = dataclasses.replace(call, args=tuple(args))
        active.append(True)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            active.pop()
        call = dataclasses.replace(call, output=out)
        calls[slot] = call
        done[:] = [c for c in calls if c is not None]
        return out if replace_output is None else replace_output(call)

    with nn.intercept_methods(interceptor):
        yield done


# Jitted capture passes by (model, predicate, flags, replacements, input types), most
# recent last: analysing a model batch after batch compiles it once per input shape.
_PASSES: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
_MAX_PASSES = 8


def _compiled_pass(model, predicate, train, outermost, replace_input, replace_output, variables, x):
    """``(jitted run, recorded calls, their static parts)``, reused for the same key.

    ``run(variables, x) -> (output, arrays)`` returns each recorded call's array
    arguments and output; the calls themselves and their non-array arguments
    (flags) are filled in ``recorded`` and ``static`` when ``run`` is traced,
    and stay valid for every later call with the same input types (a retrace,
    e.g. for weak types, records the same structure: a model calls the same
    submodules with the same flags). The model and the functions are keyed by
    identity and kept with their entry, so a key cannot be reused by another
    object while the entry exists.
    """
    leaves, treedef = jax.tree.flatten((variables, x))
    types = tuple((np.shape(v), getattr(v, "dtype", type(v))) for v in leaves)
    key = (id(model), predicate, train, outermost, replace_input, replace_output, treedef, types)
    if key in _PASSES:
        _PASSES.move_to_end(key)
        return _PASSES[key][1:]
    recorded: list[Call] = []
    static: list[tuple[Any, list[Any], list[bool]]] = []

    def run(variables, x):
        calls, out = capture_calls(
            model,
            variables,
            x,
            predicate,
            train=train,
            outermost=outermost,
            replace_input=replace_input,
            replace_output=replace_output,
        )
        # Kept without the traced values, which come back as outputs instead.
        recorded[:] = [dataclasses.replace(c, args=(), kwargs={}, output=None) for c in calls]
        static.clear()
        arrays = []
        for c in calls:  # array arguments come back; the others (flags) stay static
            leaves, treedef = jax.tree.flatten((c.args, c.kwargs))
            is_array = [isinstance(v, jax.Array) for v in leaves]
            flags = [None if a else v for v, a in zip(leaves, is_array, strict=True)]
            static.append((treedef, flags, is_array))
            arrays.append(([v for v, a in zip(leaves, is_array, strict=True) if a], c.output))
        return out, arrays

    _PASSES[key] = (model, jax.jit(run), recorded, static)
    if len(_PASSES) > _MAX_PASSES:
        _PASSES.popitem(last=False)
    return _PASSES[key][1:]


def capture_calls(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Any,
    predicate: Predicate,
    *,
    train: bool = True,
    outermost: bool = True,
    compiled: bool = False,
    replace_input: InputFn | None = None,
    replace_output: OutputFn | None = None,
) -> tuple[list[Call], Any]:
    """Runs ``model.apply(variables, x, train=train)`` and records the matching calls.

    The model runs as :func:`without_remat` of it; running statistics and sown
    values it writes are dropped.

    Args:
      model: a Flax module called as ``model(x, train=...)``.
      variables: its variables (``params`` and, if any, ``batch_stats``).
      x: the model input.
      predicate: which submodules to record, e.g. :func:`is_neuron`.
      train: passed to the model (``True``: batch statistics, as in training).
      outermost: skip calls nested inside an already recorded call.
      compiled: run the pass under ``jax.jit`` (much faster than op by op for
        a deep model); the calls' array arguments and outputs are then its
        results. The compiled pass is reused by later calls with the same
        model object, predicate, flags, replacement functions and input shapes
        and dtypes (the last eight are kept), so batch after batch compiles once.
      replace_input: ``call -> new input`` (see :func:`recording`).
      replace_output: ``call -> new output`` (see :func:`recording`).

    Returns:
      ``(calls, output)``: the recorded calls in call order and the model output.

    >>> import jax, jax.numpy as jnp
    >>> from snn_jax.models import get_model
    >>> model = get_model("digits_cnn", width=2, hidden_features=4, time_steps=3)
    >>> x = jnp.ones((5, 8, 8, 1))                               # B=5, T=3
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> calls, logits = capture_calls(model, variables, x, is_neuron, train=False, compiled=True)
    >>> [c.name for c in calls]
    ['conv1/neuron/lif', 'conv2/neuron/lif', 'fc/neuron/lif']
    >>> calls[2].output.shape                                     # [T, B, features]
    (3, 5, 4)
    >>> _, silent = capture_calls(model, variables, x, is_neuron, train=False,
    ...                           replace_output=lambda call: 0 * call.output)
    >>> bias = variables["params"]["decoder"]["readout"]["bias"]  # no spikes: the bias alone
    >>> bool(jnp.allclose(silent, bias))
    True
    """
    if compiled:
        run, recorded, static = _compiled_pass(
            model, predicate, train, outermost, replace_input, replace_output, variables, x
        )
        output, arrays = run(variables, x)
        calls = []
        for c, (treedef, leaves, is_array), (values, out) in zip(
            recorded, static, arrays, strict=True
        ):
            it = iter(values)
            leaves = [next(it) if a else v for v, a in zip(leaves, is_array, strict=True)]
            args, kwargs = jax.tree.unflatten(treedef, leaves)
            calls.append(dataclasses.replace(c, args=args, kwargs=kwargs, output=out))
        return calls, output
    with recording(
        predicate,
        outermost=outermost,
        replace_input=replace_input,
        replace_output=replace_output,
    ) as calls:
        output, _ = without_remat(model).apply(variables, x, train=train, mutable=list(MUTABLE))
    return list(calls), output
