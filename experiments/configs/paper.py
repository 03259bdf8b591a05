"""What the configs that reproduce the tdBN paper share; not a config itself.

Each ``<data set>_<model>.py`` config beside this file reproduces one result of
METHOD.md section 7 and takes an optional argument after its path: a
comma-separated list of

- ``t<N>``: ``T = N`` time steps (default: the paper's ``T`` for that result);
- ``smoke``: the same job shrunk to run end to end in a minute or two on a CPU
  (width 4, one block per stage, small images where the loader allows,
  batches of 8, two training steps, one evaluation, one checkpoint). It reads
  the same data set, so it checks an installation, the data and the devices
  before the long run; reading the data takes its own time (the evaluation
  still covers the whole test split: 50,000 JPEG decodes for ImageNet).

The run's name, and so its default workdir under ``workdirs/``, is
``<config>_t<T>``, with ``_smoke`` appended for a smoke run (below:
``cifar10_resnet19_t2`` and ``cifar10_resnet19_t6_smoke``):

    python -m experiments.main --config=experiments/configs/cifar10_resnet19.py:t2
    python -m experiments.main --config=experiments/configs/cifar10_resnet19.py:t6,smoke

Shared here (the field layout is ``digits.py``'s): tdBN + LIF with METHOD.md's
defaults, ``V_th = 0.5``, ``tau = 0.25``, the rectangular surrogate with
``a = 1.0`` and the reset kept in the gradient (the paper's own ``V_th`` and
``tau`` are not confirmed; see METHOD.md section 1), float32, and the logging
and checkpoint cadence of a long run.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from experiments.configs import digits

__all__ = ["SMOKE_STEPS", "Variant", "base_config", "finish"]

SMOKE_STEPS = 2  # training steps of a smoke run


@dataclasses.dataclass(frozen=True)
class Variant:
    """A config's argument: ``t<N>`` and/or ``smoke``, comma-separated."""

    time_steps: int
    smoke: bool = False

    @classmethod
    def parse(cls, arg: str | None, default_time_steps: int) -> Variant:
        """Reads ``arg`` (``None`` or ``""``: the paper's ``T``, full size).

        >>> Variant.parse("t6,smoke", default_time_steps=4)
        Variant(time_steps=6, smoke=True)
        >>> Variant.parse(None, default_time_steps=4)
        Variant(time_steps=4, smoke=False)
        """
        time_steps, smoke = default_time_steps, False
        for token in filter(None, (t.strip() for t in (arg or "").split(","))):
            if token == "smoke":
                smoke = True
            elif token.startswith("t") and token[1:].isdigit() and int(token[1:]) > 0:
                time_steps = int(token[1:])
            else:
                raise ValueError(
                    f"unknown config argument {token!r} in {arg!r}; expected a comma-separated "
                    "list of t<N> (N time steps, e.g. t2) and smoke, e.g. 't2,smoke'"
                )
        return cls(time_steps, smoke)

    @property
    def suffix(self) -> str:
        return f"_t{self.time_steps}" + ("_smoke" if self.smoke else "")


def base_config(name: str, variant: Variant) -> ml_collections.ConfigDict:
    """``digits.py``'s fields with the settings every paper config shares.

    The caller sets the data set, the model (name, ``width``, ``stage_sizes``
    and, where it has one, ``hidden_features``) and every optimisation
    hyper-parameter, then returns :func:`finish` of the result.
    """
    c = digits.get_config()
    # Set explicitly, even where digits.py has the same value, so that a change to
    # the default job never changes a paper run.
    c.name = name + variant.suffix  # default workdir: workdirs/<name>
    c.seed = 0
    c.time_steps = variant.time_steps  # also data.time_steps (a reference) for event data
    c.dtype = "float32"
    c.data.validation_fraction = 0.0  # the papers select nothing: train, then test
    c.data.augment = False  # each paper config sets its own

    c.model.norm = "tdbn"
    c.model.neuron = "lif"
    c.model.tau = 0.25
    c.model.v_th = 0.5
    c.model.surrogate = "rectangular"
    c.model.surrogate_param = 1.0  # a: the window width of STBP's rectangular surrogate
    c.model.detach_reset = False
    # "compact": spikes stored as bits, membranes recomputed; the same values and gradients
    # in about half the working memory (README: "Memory on long unrolls").
    c.model.memory = "none"
    # LIF loops unrolled completely up to T = 16: with loops (even in place) XLA:CPU keeps more
    # alive through the step (CIFAR-10 ResNet-19, T = 4, batch 128: 9.2 -> 6.9 GiB).
    c.model.unroll = variant.time_steps if variant.time_steps <= 16 else 1

    c.log_every_steps = 100
    c.eval_every_steps = -1  # once per epoch
    c.checkpoint_every_steps = -1  # once per epoch
    c.keep_checkpoints = 2
    c.max_nonfinite_steps = 10
    c.progress = True
    return c


def finish(
    c: ml_collections.ConfigDict, variant: Variant, smoke_image_size: int | None = None
) -> ml_collections.ConfigDict:
    """``c`` itself, or for a smoke variant ``c`` shrunk to a short CPU run.

    Smoke: width 4, one block per stage (the compile time of XLA:CPU grows
    with the depth), 8 hidden FC features where the model has that layer,
    ``smoke_image_size`` if given, batches of 8 (divisible by 1, 2, 4 or 8
    devices), :data:`SMOKE_STEPS` training steps without warm-up, then one
    evaluation and one checkpoint. Everything else, the model's classes, data
    set and augmentation included, stays as in the full job.
    """
    if not variant.smoke:
        return c
    c.model.width = 4
    c.model.stage_sizes = (1,) * len(c.model.stage_sizes)
    if "hidden_features" in c.model:
        c.model.hidden_features = 8
    if smoke_image_size is not None:
        c.data.image_size = smoke_image_size
    c.batch_size = 8
    c.eval_batch_size = 8
    c.num_train_steps = SMOKE_STEPS
    c.optimizer.warmup_steps = 0
    c.log_every_steps = 1
    c.eval_every_steps = SMOKE_STEPS
    c.checkpoint_every_steps = SMOKE_STEPS
    c.progress = False
    return c
