r"""Every row of the seed's table on ImageNet with the spiking ResNet-34 (for users with the data).

    python -m experiments.compare_methods \
        --config=experiments/configs/compare_imagenet_resnet34.py

The base is ``imagenet_resnet34.py`` (data, ResNet-34, SGD, 100 epochs,
T = 6); see its docstring for the data and hardware it needs. The rows:

- the ANN twin (ReLU + BN, T = 1), trained once with the base's settings;
- its conversion (max, 99.9 %, 99.9 % per channel) at T = 16 to 1024. The
  stem's max pool acts on spikes (the OR of the window), an approximation
  of the max of the rates; everything else converts exactly in the rate limit;
- hybrid training from the 99.9 % conversion at T = 6 (the seed's own
  ImageNet model is a hybrid at T = 6: 65.72 %), without norm and into
  tdBN: 10 epochs at learning rate 0.01 (our choice);
- spike-based BP, STBP without normalization and STBP-tdBN, all at T = 6
  (the seed's T = 100 and 12 for the first two are CIFAR-10 figures; set
  ``--config.compare.methods.lee2020.time_steps=100`` to match them).

Each training row is a 100-epoch ImageNet run. The decoder reads the
global-average-pooled spikes, so its readout is counted as MACs. Not yet
measured with this repository.
"""

import ml_collections

from experiments.configs import compare_base, imagenet_resnet34


def get_config() -> ml_collections.ConfigDict:
    c = imagenet_resnet34.get_config()
    c.name = "compare_imagenet_resnet34"
    c.progress = False
    c.compare = compare_base.comparison(
        compare_base.methods(
            conversion_steps=(16, 32, 64, 128, 256, 512, 1024),
            stbp_steps=(6,),
            wu2019_steps=(6,),
            lee2020_steps=(6,),
            hybrid_steps=(6,),
            hybrid_overrides={
                "num_epochs": 10,
                "optimizer": {"learning_rate": 0.01, "warmup_steps": 0},
            },
            wu2019=compare_base.wu2019_settings("cifar"),
        )
    )
    c.compare.calibration_examples = 256
    c.compare.energy_examples = 64
    c.compare.reference = ("stbp_tdbn", 6)
    c.compare.smoke.overrides = ml_collections.ConfigDict(
        {"model": {"width": 4}, "batch_size": 8, "data": {"image_size": 32}}
    )
    return c
