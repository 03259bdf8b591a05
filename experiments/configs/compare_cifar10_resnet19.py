r"""Every row of the seed's table on CIFAR-10 with the spiking ResNet-19 (for users with the data).

    python -m experiments.compare_methods \
        --config=experiments/configs/compare_cifar10_resnet19.py
    python -m experiments.compare_methods \
        --config=experiments/configs/compare_cifar10_resnet19.py --smoke

The base is ``cifar10_resnet19.py`` (data, ResNet-19, SGD, 200 epochs, T = 4);
see its docstring for the data and hardware it needs. The rows, with ``T``
as in the seed's table where it gives one:

- the ANN twin (ReLU + BN, T = 1), trained once with the base's settings;
- its conversion (max, 99.9 %, 99.9 % per channel) at T = 4 to 2048
  (Sengupta 2019: 2500 steps, Hu 2018: 350, Han 2020: 1024);
- hybrid training from the 99.9 % conversion at T = 4, without norm and
  into tdBN: 30 epochs at learning rate 0.01 (our choice; Rathi 2020 used
  200 steps: ``--config.compare.methods.hybrid.time_steps=200``);
- spike-based BP at T = 100 (Lee 2020), STBP without normalization at
  T = 12 (Wu 2019, CIFAR constants of METHOD.md), STBP-tdBN at T = 2, 4, 6.

Each training row is a full 200-epoch run (the hybrids 30): on one GPU this
is days, spike-based BP at T = 100 about 25 times a T = 4 run. Drop rows with
``--config.compare.methods.<name>.time_steps=...`` or edit a copy. The
seed's figures for CIFAR-10: conversion 90.53 % (2500 steps), 91.32 % (350),
hybrid 91.01 % (200), spike-based BP 89.93 % (100), Wu 2019 89.49 % (12),
STBP-tdBN 92.92 % (T = 4, Zheng 2021). Not yet measured with this repository.
"""

import ml_collections

from experiments.configs import cifar10_resnet19, compare_base


def get_config() -> ml_collections.ConfigDict:
    c = cifar10_resnet19.get_config()
    c.name = "compare_cifar10_resnet19"
    c.progress = False
    c.compare = compare_base.comparison(
        compare_base.methods(
            conversion_steps=(4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
            stbp_steps=(2, 4, 6),
            wu2019_steps=(12,),
            lee2020_steps=(100,),
            hybrid_steps=(4,),
            hybrid_overrides={
                "num_epochs": 30,
                "optimizer": {"learning_rate": 0.01, "warmup_steps": 0},
            },
            wu2019=compare_base.wu2019_settings("cifar"),
        )
    )
    c.compare.calibration_examples = 512
    c.compare.energy_examples = 256
    c.compare.pooled = ml_collections.ConfigDict({"fc/dense": 64})  # 8x8 global average pool
    c.compare.smoke.overrides = ml_collections.ConfigDict(
        {"model": {"width": 4, "hidden_features": 8}, "batch_size": 8}
    )
    return c
