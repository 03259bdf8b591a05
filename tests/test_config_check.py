"""The config check: every value with a valid range is refused, by key, before anything is built."""

import copy
import importlib
import re

import pytest

from experiments.configs import digits
from snn_jax import training
from snn_jax.training.config_check import check_config, check_run

BAD_VALUES = [
    # (key, bad value, expected message)
    ("seed", -1, "must be an integer >= 0"),
    ("seed", 1.5, "must be an integer >= 0"),
    ("time_steps", 0, "must be an integer >= 1"),
    ("dtype", "float8", "must be one of"),
    ("batch_size", 0, "must be an integer > 0"),
    ("eval_batch_size", -8, "must be an integer > 0"),
    ("num_epochs", 0, "must be an integer >= 1"),
    ("num_train_steps", 0, "must be -1 (train for num_epochs) or an integer >= 1"),
    ("log_every_steps", 0, "must be an integer >= 1"),
    ("eval_every_steps", 0, "must be -1 (once per epoch) or an integer >= 1"),
    ("checkpoint_every_steps", -2, "must be -1 (once per epoch) or an integer >= 1"),
    ("keep_checkpoints", 0, "must be an integer >= 1"),
    ("max_nonfinite_steps", 0, "must be an integer >= 1"),
    ("progress", "yes", "must be True or False"),
    ("distributed", 1, "must be True or False"),
    ("optimizer.name", "lamb", "must be one of ('sgd', 'adam', 'adamw')"),
    ("optimizer.learning_rate", -0.1, "must be > 0 (the peak learning rate"),
    ("optimizer.learning_rate", 0.0, "must be > 0"),
    ("optimizer.learning_rate", float("nan"), "must be > 0"),
    ("optimizer.schedule", "poly", "must be one of ('constant', 'cosine', 'step')"),
    ("optimizer.warmup_steps", -1, "must be an integer >= 0"),
    ("optimizer.weight_decay", -1e-4, "must be >= 0"),
    ("optimizer.momentum", 1.0, "must be in [0, 1)"),
    ("optimizer.momentum", -0.1, "must be in [0, 1)"),
    ("optimizer.nesterov", "no", "must be True or False"),
    ("optimizer.grad_clip_norm", -1.0, "must be >= 0 (0: no clipping)"),
    ("optimizer.decay_boundaries", (0.75, 0.5), "must be increasing fractions"),
    ("optimizer.decay_boundaries", (0.5, 1.0), "must be increasing fractions"),
    ("optimizer.decay_boundaries", (0.0, 0.5), "must be increasing fractions"),
    ("optimizer.decay_factor", 0.0, "must be in (0, 1]"),
    ("optimizer.decay_factor", 2.0, "must be in (0, 1]"),
    ("data.name", "cifar11", "must be one of"),
    ("data.augment", "no", "must be True or False"),
    ("data.cutout", -4, "must be an integer >= 0 (0: off)"),
    ("data.image_size", 0, "must be None or an integer >= 1"),
    ("data.num_workers", 0, "must be None or an integer >= 1"),
    ("model.name", "resnet1000", "must be one of"),
    ("model.norm", "layernorm", "must be one of ('tdbn', 'bn', 'none', 'tebn', 'bntt')"),
    ("model.neuron", "izhikevich", "must be one of ('lif', 'relu')"),
    ("model.memory", "offload", "must be one of ('none', 'remat', 'compact')"),
    ("model.surrogate", "gauss", "must be one of"),
    ("model.surrogate_param", -1.0, "must be None (the surrogate's default) or > 0"),
    ("model.tau", 0.0, "must be in (0, 1]"),
    ("model.tau", 1.5, "must be in (0, 1]"),
    ("model.v_th", 0.0, "must be > 0"),
    ("model.v_th", -0.5, "must be > 0"),
    ("model.detach_reset", 0, "must be True or False"),
]


def _with(config, key, value):
    """``config`` with ``key`` set to ``value``, whatever the field's type."""
    config = copy.deepcopy(config)
    config.unlock()
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node[part]
    if last in node:
        del node[last]  # a typed field would refuse a value of another type
    node[last] = value
    return config


def test_the_shipped_configs_pass():
    for module, arg in [
        ("digits", None),
        ("wu2019_digits", None),
        ("cifar10_resnet19", "t2"),
        ("cifar10_resnet19", "t4,smoke"),
        ("imagenet_resnet34", None),
        ("imagenet_resnet50", "smoke"),
        ("dvsgesture_resnet17", None),
        ("cifar10dvs_resnet19", None),
        ("cifar100_resnet19", None),
        ("wu2019_cifar10", None),
    ]:
        get_config = importlib.import_module(f"experiments.configs.{module}").get_config
        check_config(get_config(arg) if arg else get_config())


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_a_bad_value_is_named_with_its_range(key, value, message):
    config = _with(digits.get_config(), key, value)
    expected = f"config.{key} = {value!r}: {message}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_config(config)


def test_every_problem_is_reported_at_once():
    config = _with(digits.get_config(), "optimizer.learning_rate", -0.1)
    config = _with(config, "model.v_th", 0.0)
    with pytest.raises(ValueError, match="2 bad config values") as error:
        check_config(config)
    assert "learning_rate" in str(error.value)
    assert "v_th" in str(error.value)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("optimizer.learnig_rate", "config.optimizer.learning_rate"),
        ("data.augmnet", "config.data.augment"),
        ("num_epoch", "config.num_epochs"),
    ],
)
def test_an_unknown_key_is_flagged_with_the_closest_one(key, hint):
    """Keys the code reads with a default would otherwise be ignored without a word."""
    config = _with(digits.get_config(), key, 1)
    expected = f"config.{key}: unknown key; did you mean {hint}?"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_config(config)


def test_other_top_level_keys_may_record_what_a_run_started_from():
    config = _with(digits.get_config(), "hand_over", {"source": "conversion_p999"})
    check_config(config)


def test_num_epochs_may_be_anything_when_steps_are_given():
    config = _with(digits.get_config(), "num_epochs", 0)
    config.num_train_steps = 10
    check_config(config)


def test_an_absent_required_key_is_named():
    config = digits.get_config()
    del config.optimizer["learning_rate"]
    with pytest.raises(ValueError, match=r"config\.optimizer\.learning_rate is missing"):
        check_config(config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 30, "config.batch_size = 30: is not divisible by the 4 devices"),
        ("eval_batch_size", 6, "config.eval_batch_size = 6: is not divisible by the 4 devices"),
        ("optimizer.warmup_steps", 100, "must be < the 100 training steps"),
    ],
)
def test_values_that_depend_on_the_run(key, value, message):
    config = _with(digits.get_config(), key, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_run(config, total_steps=100, num_devices=4)
    check_run(digits.get_config(), total_steps=100, num_devices=4)


def test_the_loop_checks_before_it_builds_anything(tmp_path):
    config = _with(digits.get_config(), "optimizer.learning_rate", -0.1)
    with pytest.raises(ValueError, match=r"config\.optimizer\.learning_rate = -0\.1"):
        training.train_and_evaluate(config, str(tmp_path))
    assert not list(tmp_path.iterdir())  # not even the workdir's files
