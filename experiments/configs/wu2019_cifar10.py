r"""STBP without normalization (Wu et al. 2019) on CIFAR-10 with the spiking ResNet-19, T = 12.

    python -m experiments.main --config=experiments/configs/wu2019_cifar10.py

``cifar10_resnet19.py`` (data, ResNet-19, optimizer, 200 epochs) with the Wu
et al. 2019 setup (``compare_base.wu2019_settings``): no normalization layer
(``norm="none"``: biased convs), T = 12 as in the seed's table, and the
constants of the STBP code for CIFAR recorded in METHOD.md section 1
(``V_th = 0.75``, ``tau = 0.25``, rectangular surrogate of width 1). Wu et
al. trained a 7-layer CIFARNet with their NeuNorm, neither of which is
reproduced: this is the tdBN paper's ResNet-19 without its tdBN, the setting
in which Zheng et al. 2021 argue that deep SNNs do not train well. Not yet
measured with this repository (the seed's table: 89.49 % for Wu 2019's own
network).
"""

import ml_collections

from experiments.configs import cifar10_resnet19, compare_base


def get_config() -> ml_collections.ConfigDict:
    c = cifar10_resnet19.get_config()
    c.update(compare_base.wu2019_settings("cifar"))
    c.name = "wu2019_cifar10"
    c.time_steps = 12  # T of Wu et al. 2019 in the seed's table
    return c
