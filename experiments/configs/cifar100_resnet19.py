r"""CIFAR-100, spiking ResNet-19 with tdBN, T = 4: the CIFAR-10 recipe on 100 classes.

    python -m experiments.main --config=experiments/configs/cifar100_resnet19.py
    python -m experiments.main --config=experiments/configs/cifar100_resnet19.py:t2
    python -m experiments.main --config=experiments/configs/cifar100_resnet19.py:smoke

The workdir defaults to ``workdirs/cifar100_resnet19_t<T>``; rerunning a
command resumes it. No argument means ``t4``; ``smoke`` (alone or as
``t2,smoke``) is a short CPU check of the set-up (``paper.py``).

Expected test accuracy: none to compare with. Neither the tdBN paper's
results in METHOD.md section 7 nor the seed paper report CIFAR-100; this job
extends the CIFAR-10 row to the harder data set. Not yet measured with this
repository.

Data: tfds ``cifar100`` prepared as ArrayRecord files in ``$TFDS_DATA_DIR``
or ``~/tensorflow_datasets`` (else ``--config.data.data_dir=...``); if it is
missing the run stops at once with the command that prepares it.

Hardware: as ``cifar10_resnet19.py`` at the same T (one GPU with 32 GB or more;
at T = 4 about 7 GiB of working memory, 3.5 with ``--config.model.memory=compact``,
and 5.1e17 FLOPs for the run).

Hyper-parameters: all those of ``cifar10_resnet19.py``, which this file
imports (ResNet-19 and T from the paper's CIFAR-10 experiment; V_th, tau and
the surrogate from METHOD.md's defaults; the optimisation recipe ours: SGD
with momentum 0.9, learning rate 0.1 with one epoch of warm-up and cosine
decay, weight decay 5e-4, batch 128, 200 epochs, crop and flip). Only the
data set, and with it the 100-way decoding layer, differ.
"""

import ml_collections

from experiments.configs import cifar10_resnet19, paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = paper.Variant.parse(arg, default_time_steps=4)
    c = cifar10_resnet19.get_config(f"t{variant.time_steps}")
    c.name = "cifar100_resnet19" + variant.suffix
    c.data.name = "cifar100"  # 100 classes: the decoding layer follows the data set
    return paper.finish(c, variant)
