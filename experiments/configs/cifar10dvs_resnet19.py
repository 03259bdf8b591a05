r"""CIFAR10-DVS, spiking ResNet-19 with tdBN, T = 10 frames (METHOD.md section 7).

    python -m experiments.main --config=experiments/configs/cifar10dvs_resnet19.py
    python -m experiments.main --config=experiments/configs/cifar10dvs_resnet19.py:smoke

The workdir defaults to ``workdirs/cifar10dvs_resnet19_t10``; rerunning the
command resumes it. ``smoke`` is a short CPU check of the set-up on
16x16 frames of the same data (``paper.py``).

Expected test accuracy (Zheng et al. 2021): 67.8 % (METHOD.md: the accuracy
is confirmed, the model and T are as recalled). Not yet measured with this
repository.

Data: tonic's ``CIFAR10DVS`` in ``~/tonic_data`` (else
``--config.data.data_dir=...``), 10,000 recordings of 10 classes. The data
set has no official split; ours is fixed: per class, the first 90 % of the
recordings by file name train, the rest (1,000) test. The first run bins
every recording into T frames of equal duration, summed from 128x128 to
48x48, and caches them (uint16, about 900 MB) under
``<data_dir>/snn_jax_cache`` (``--config.data.cache_dir``); later runs read
only the cache. The smoke variant builds its own small 16x16 cache. A missing
data set stops the run at once with the command that downloads it.

Hardware: one GPU with 32 GB or more (A100 or newer). XLA's estimate of one
training step's working memory (compiled for CPU) is 13 GiB (5.0 GiB with
``--config.model.memory=compact``: spikes stored as bits); a step takes
9.4e12 FLOPs, the whole run 5.3e17: at least 3 hours at a sustained 50 TFLOP/s
(an estimate; not measured).

Hyper-parameters.

- From the paper (METHOD.md sections 4-7): ResNet-19 (conv3x3 128, stages
  of 3, 3, 2 basic blocks with 128, 256, 512 channels, FC 256 + tdBN + LIF;
  METHOD.md: as recalled) with tdBN and ``alpha = 1/sqrt(2)`` on residual
  branches, T = 10 frames of event counts (two polarity channels) fed to the
  first conv layer, mean decoding, cross-entropy.
- METHOD.md's defaults, the paper's own values being unconfirmed:
  ``V_th = 0.5``, ``tau = 0.25``, rectangular surrogate with ``a = 1.0``.
- Ours (neither METHOD.md nor the seed paper states them): frames pooled to
  48x48, the 9:1 split above, Adam with learning rate 1e-3, cosine decay to 0
  and no warm-up, no weight decay, batch 32, 200 epochs (56,200 steps),
  random shifts of up to 6 pixels and horizontal flips in training, float32,
  seed 0.
"""

import ml_collections

from experiments.configs import paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = paper.Variant.parse(arg, default_time_steps=10)
    c = paper.base_config("cifar10dvs_resnet19", variant)

    c.data.name = "cifar10_dvs"
    c.data.augment = True  # random shifts of up to image_size // 8 pixels, and flips
    c.data.image_size = 48  # frames summed from the 128x128 sensor to 48x48
    c.data.cache_dir = ml_collections.FieldReference(None, field_type=str)  # None: in data_dir
    c.data.num_workers = ml_collections.FieldReference(None, field_type=int)  # None: auto

    c.model.name = "resnet19"
    c.model.width = 128  # stages have 128, 256, 512 channels
    c.model.stage_sizes = (3, 3, 2)  # basic blocks per stage
    c.model.hidden_features = 256  # FC 256 + tdBN + LIF before the decoding layer

    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 0
    c.optimizer.weight_decay = 0.0
    c.optimizer.grad_clip_norm = 0.0

    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_epochs = 200
    c.log_every_steps = 50
    return paper.finish(c, variant, smoke_image_size=16)
