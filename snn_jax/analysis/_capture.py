"""Finding submodule calls inside a Flax model: their paths, inputs and outputs.

Every analysis in this package looks inside a model without changing it. It runs
the model once under :func:`flax.linen.intercept_methods` and records the calls
of the submodules it cares about (a residual block, a LIF layer, a conv). A
recorded call keeps an *unbound* copy of the submodule, its path in the variable
tree and its arguments, so the submodule can later be applied on its own, as a
pure function of its input (:meth:`Call.apply`). That is what makes a block's
Jacobian a plain ``jax.vjp``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

__all__ = ["Call", "ModulePredicate", "capture_calls", "path_name", "subtree"]

ModulePredicate = Callable[[nn.Module], bool]

# Collections a forward pass may write: running statistics and sown values.
MUTABLE = ("batch_stats", "intermediates")


def path_name(path: Sequence[str]) -> str:
    """``("Block_0", "conv1") -> "Block_0/conv1"``; the root module is ``""``."""
    return "/".join(path)


def subtree(variables: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any]:
    """The variables of the submodule at ``path``: ``{collection: subtree}``.

    Collections that hold nothing at ``path`` are left out.
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


@dataclasses.dataclass(frozen=True)
class Call:
    """One recorded call of a submodule.

    Attributes:
      name: the submodule's path joined by ``/`` (``#k`` appended for the k-th
        repeated call of the same submodule, k >= 1).
      path: the path as a tuple.
      module: an unbound copy of the submodule (same attributes, no parent).
      args: the positional arguments of the call (``args[0]`` is its input).
      kwargs: the keyword arguments.
      output: what the call returned.
    """

    name: str
    path: tuple[str, ...]
    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def apply(self, variables: Mapping[str, Any], x: jax.Array) -> jax.Array:
        """Applies the submodule alone to a new input ``x`` (other arguments as recorded).

        ``variables`` are the whole model's; the submodule's part is taken from
        ``self.path``. Running statistics and sown values it writes are dropped.
        """
        out, _ = self.module.apply(
            subtree(variables, self.path),
            x,
            *self.args[1:],
            mutable=list(MUTABLE),
            **self.kwargs,
        )
        return out


# Jitted capture passes by (model, predicate, train, outermost, input types), most
# recent last: analysing a model batch after batch compiles it once per input shape.
_PASSES: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
_MAX_PASSES = 8


def _compiled_pass(model, predicate, train, outermost, variables, x):
    """``(jitted run, recorded calls, their static parts)``, reused for the same key.

    ``run(variables, x) -> (output, arrays)`` returns each recorded call's array
    arguments and output; the calls themselves and their non-array arguments
    (flags) are filled in ``recorded`` and ``static`` when ``run`` is traced,
    and stay valid for every later call with the same input types (``jax.jit``
    may still retrace, e.g. for weak types or inside ``jax.set_mesh``; a model
    calls the same submodules with the same flags then, so each trace records
    the same structure). The model
    is keyed by identity and kept with its entry, so the key cannot be reused
    by another object while the entry exists.
    """
    leaves, treedef = jax.tree.flatten((variables, x))
    types = tuple((np.shape(v), getattr(v, "dtype", type(v))) for v in leaves)
    key = (id(model), predicate, train, outermost, treedef, types)
    if key in _PASSES:
        _PASSES.move_to_end(key)
        return _PASSES[key][1:]
    recorded: list[Call] = []
    static: list[tuple[Any, list[Any], list[bool]]] = []

    def run(variables, x):
        calls, out = capture_calls(model, variables, x, predicate, train=train, outermost=outermost)
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
    x: jax.Array,
    predicate: ModulePredicate,
    *,
    train: bool = True,
    outermost: bool = True,
    compiled: bool = False,
    replace_input: Callable[[int, jax.Array], jax.Array] | None = None,
) -> tuple[list[Call], Any]:
    """Runs ``model.apply(variables, x, train=train)`` and records matching calls.

    Args:
      model: a Flax module called as ``model(x, train=...)``.
      variables: its variables (``params`` and, if any, ``batch_stats``).
      x: the model input.
      predicate: which submodules to record (called with the bound submodule).
      train: passed to the model (``True``: batch statistics, as in training).
      outermost: skip calls nested inside an already recorded call.
      compiled: run the forward pass under ``jax.jit`` (much faster than op by
        op for a deep model): the calls' array arguments and outputs are then
        the concrete results (or the outer trace's values when called inside
        a ``jax.jit``). The compiled pass is reused by later calls with the
        same model object, predicate, flags and input shapes and dtypes (the
        last eight are kept), so batch after batch compiles once.
      replace_input: ``(k, input) -> new input`` for the k-th recorded call
        (in call order): the call then runs on, and records, the new input.

    Returns:
      ``(calls, output)``: the recorded calls in call order and the model output.
    """
    if compiled and replace_input is not None:
        raise ValueError("capture_calls: compiled=True cannot be combined with replace_input")
    if compiled:
        run, recorded, static = _compiled_pass(model, predicate, train, outermost, variables, x)
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

    calls: list[Call | None] = []
    active: list[bool] = []  # one entry per open __call__ frame: was it recorded?
    seen: dict[tuple[str, ...], int] = {}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or context.module.scope is None:
            return next_fun(*args, **kwargs)
        module = context.module
        record = module.path != () and predicate(module) and not (outermost and any(active))
        if record:
            slot = len(calls)  # reserve the place: calls are listed in the order they begin
            calls.append(None)
            if replace_input is not None:
                args = (replace_input(slot, args[0]), *args[1:])
        active.append(record)
        try:
            out = next_fun(*args, **kwargs)
        finally:
            active.pop()
        if record:
            path = tuple(module.path)
            count = seen.get(path, 0)
            seen[path] = count + 1
            name = path_name(path) + (f"#{count}" if count else "")
            calls[slot] = Call(
                name, path, module.clone(parent=None), tuple(args), dict(kwargs), out
            )
        return out

    with nn.intercept_methods(interceptor):
        output, _ = without_remat(model).apply(variables, x, train=train, mutable=list(MUTABLE))
    return [c for c in calls if c is not None], output


def without_remat(model: nn.Module) -> nn.Module:
    """A zoo model with ``memory="remat"`` or ``"compact"`` as the same model with ``"none"``.

    Inside an ``nn.remat`` block the layers' inputs and outputs are values of
    the recomputation, which cannot leave it; a compact unit calls no LIF
    layer and no norm (:class:`snn_jax.nn.NormNeuron`). The values are the
    same without either. Other models are returned as they are.
    """
    memory = getattr(model, "memory", None)
    return model.clone(memory="none") if memory in ("remat", "compact") else model
