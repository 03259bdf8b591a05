"""snn_jax.inspect: recorded calls, replaced inputs and outputs, the compiled cache, blocks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn_jax import inspect, models
from snn_jax.nn import LIF

T, B, F = 3, 4, 5  # T != B


class Net(nn.Module):
    """``hidden -> LIF over T -> out`` on ``[T, B, F]``."""

    @nn.compact
    def __call__(self, x, train=True):
        y = LIF(name="lif")(nn.Dense(F, name="hidden")(x))
        return nn.Dense(2, name="out")(y)


def _net():
    x = jax.random.normal(jax.random.key(0), (T, B, F))
    return Net(), Net().init(jax.random.key(1), x), x


def test_records_paths_inputs_outputs_and_a_copy_to_reapply():
    model, variables, x = _net()
    calls, out = inspect.capture_calls(model, variables, x, inspect.is_linear)
    assert [c.name for c in calls] == ["hidden", "out"]
    assert calls[0].path == ("hidden",)
    np.testing.assert_array_equal(calls[0].args[0], x)
    np.testing.assert_allclose(calls[1].output, out)
    spikes = LIF().apply({}, calls[0].output)
    np.testing.assert_array_equal(calls[1].args[0], spikes)
    for call in calls:  # each copy applied alone gives the recorded output
        np.testing.assert_allclose(call.apply(variables, call.args[0]), call.output, rtol=1e-6)
    neurons, _ = inspect.capture_calls(model, variables, x, inspect.is_neuron)
    assert [c.name for c in neurons] == ["lif"]


def test_replaced_output_reaches_the_caller_and_the_recorded_output_stays():
    model, variables, x = _net()
    calls, out = inspect.capture_calls(
        model, variables, x, inspect.is_neuron, replace_output=lambda c: jnp.ones_like(c.output)
    )
    kernel = variables["params"]["out"]["kernel"]
    bias = variables["params"]["out"]["bias"]
    np.testing.assert_allclose(out, jnp.broadcast_to(kernel.sum(0) + bias, out.shape), rtol=1e-6)
    np.testing.assert_array_equal(calls[0].output, LIF().apply({}, calls[0].args[0]))


def test_replaced_input_is_run_and_recorded():
    model, variables, x = _net()
    calls, out = inspect.capture_calls(
        model, variables, x, inspect.is_linear, replace_input=lambda c: 2.0 * c.args[0]
    )
    np.testing.assert_allclose(calls[0].args[0], 2.0 * x)
    ref = Net().apply(variables, x)  # the output layer's input doubled too
    hidden = variables["params"]["hidden"]
    spikes = LIF().apply({}, (2 * x) @ hidden["kernel"] + hidden["bias"])
    np.testing.assert_allclose(calls[1].args[0], 2.0 * spikes)
    assert not np.allclose(out, ref)


def test_recording_keeps_what_the_model_sows():
    model, variables, x = _net()
    with inspect.recording(inspect.is_neuron) as calls:
        _, state = model.apply(variables, x, mutable=["intermediates"])
    assert [c.name for c in calls] == ["lif"]
    rate = state["intermediates"]["lif"]["firing_rate"][0]
    np.testing.assert_allclose(rate, jnp.mean(calls[0].output, axis=(0, 2)), rtol=1e-6)


def test_compiled_pass_is_traced_once_for_three_batches():
    model, variables, _ = _net()
    traces = []

    def predicate(module):  # called in Python, so once per trace and module
        if module.name == "hidden":
            traces.append(1)
        return inspect.is_linear(module)

    for seed in range(3):
        x = jax.random.normal(jax.random.key(seed), (T, B, F))
        calls, out = inspect.capture_calls(model, variables, x, predicate, compiled=True)
        np.testing.assert_allclose(out, model.apply(variables, x), rtol=1e-6)
        np.testing.assert_array_equal(calls[0].args[0], x)
    assert len(traces) == 1


def _block_names(model, x, is_block=inspect.is_block):
    variables = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))

    def run(variables, x):
        calls, out = inspect.capture_calls(model, variables, x, is_block, train=False)
        names[:] = [c.name for c in calls]
        return out

    names: list[str] = []
    jax.eval_shape(run, variables, x)
    return names


def test_is_block_finds_exactly_the_blocks_of_the_zoo():
    x = jnp.zeros((B, 8, 8, 3))
    resnet = models.ResNet19(width=4, time_steps=T)
    stages = [f"stage{i}_block{j}" for i, n in ((1, 3), (2, 3), (3, 2)) for j in range(1, n + 1)]
    assert _block_names(resnet, x) == ["stem", *stages, "fc"]
    plain = models.PlainCNN(depth=4, width=4, time_steps=T)
    assert _block_names(plain, x) == ["unit1", "unit2", "unit3", "unit4"]


class MyBlock(models.Block):
    @nn.compact
    def __call__(self, x, train=True):
        return nn.relu(nn.Dense(x.shape[-1])(x))


class Chain(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        return nn.Dense(2)(MyBlock(name="b2")(MyBlock(name="b1")(x)))


def test_a_user_block_is_marked_by_the_marker_class():
    assert _block_names(Chain(), jnp.zeros((B, F))) == ["b1", "b2"]
    assert _block_names(Chain(), jnp.zeros((B, F)), inspect.blocks_of_type(nn.Dense)) == [
        "b1/Dense_0",
        "b2/Dense_0",
        "Dense_0",
    ]


@pytest.mark.parametrize("memory", ["remat", "compact"])
def test_without_remat_gives_the_same_calls_and_output(memory):
    x = jax.random.uniform(jax.random.key(0), (B, 8, 8, 1))
    model = models.get_model("digits_cnn", width=2, hidden_features=4, time_steps=T)
    variables = model.init(jax.random.key(1), x, train=False)
    other = model.clone(memory=memory)
    assert inspect.without_remat(other).memory == "none"
    ref_calls, ref = inspect.capture_calls(
        model, variables, x, inspect.is_neuron, train=False, compiled=True
    )
    calls, out = inspect.capture_calls(
        other, variables, x, inspect.is_neuron, train=False, compiled=True
    )
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, other.apply(variables, x, train=False), rtol=1e-5, atol=1e-6)
    assert [c.name for c in calls] == [c.name for c in ref_calls]
    for a, b in zip(calls, ref_calls, strict=True):
        np.testing.assert_array_equal(a.output, b.output)
