r"""ImageNet (ILSVRC 2012), spiking ResNet-50 with tdBN, T = 6 (METHOD.md section 7).

    python -m experiments.main --config=experiments/configs/imagenet_resnet50.py
    python -m experiments.main --config=experiments/configs/imagenet_resnet50.py:smoke

The workdir defaults to ``workdirs/imagenet_resnet50_t6``; rerunning the
command resumes it. ``smoke`` is a short CPU check of the set-up on 32x32
crops of the same data (``paper.py``).

Expected top-1 accuracy on the validation set (Zheng et al. 2021): 64.88 %
(METHOD.md: as recalled, not confirmed). Not yet measured with this
repository.

Data: as ``imagenet_resnet34.py`` (tfds ``imagenet2012`` as ArrayRecord).

Hardware: 8 GPUs with 80 GB each (A100 / H100 80 GB), 32 images per device.
XLA's estimate of one training step's working memory (compiled for CPU) is
19 GiB at 32 images per device, 2.7 times ResNet-34's (10 GiB with
``--config.model.memory=compact``); the step takes
4.6e12 FLOPs per device, 1.8e19 for the whole run: at least 13 hours at a
sustained 50 TFLOP/s per GPU (an estimate; not measured). With fewer or
smaller devices keep the global batch of 256 (``optimizer.learning_rate`` is
tuned for it) and spread it over more hosts (``--config.distributed=True``).

Hyper-parameters: those of ``imagenet_resnet34.py``, which this file imports
(T = 6 and the tdBN ResNet from the paper; V_th, tau and the surrogate from
METHOD.md's defaults; ours: SGD with momentum 0.9, learning rate 0.1 per 256
images with 5 warm-up epochs and cosine decay, weight decay 1e-4, batch 256,
100 epochs, random-resized crop 224 and flip). Only the model differs: the
standard ResNet-50 layout (conv7x7/2 64, max pool, stages of 3, 4, 6, 3
bottleneck blocks ``1x1 -> 3x3 -> 1x1`` with 256 to 2048 output channels,
stride on the 3x3 conv) with tdBN + LIF (paper).
"""

import ml_collections

from experiments.configs import imagenet_resnet34, paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = paper.Variant.parse(arg, default_time_steps=6)
    c = imagenet_resnet34.get_config(f"t{variant.time_steps}")
    c.name = "imagenet_resnet50" + variant.suffix
    c.model.name = "resnet50"
    c.model.width = 64  # bottleneck widths 64 to 512, outputs 4x that
    c.model.stage_sizes = (3, 4, 6, 3)  # bottleneck blocks per stage
    return paper.finish(c, variant, smoke_image_size=32)
