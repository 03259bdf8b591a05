r"""ImageNet (ILSVRC 2012), spiking ResNet-34 with tdBN, T = 6 (METHOD.md section 7).

    python -m experiments.main --config=experiments/configs/imagenet_resnet34.py
    python -m experiments.main --config=experiments/configs/imagenet_resnet34.py:smoke

The workdir defaults to ``workdirs/imagenet_resnet34_t6``; rerunning the
command resumes it. ``smoke`` is a short CPU check of the set-up on 32x32
crops of the same data (``paper.py``).

Expected top-1 accuracy on the validation set (Zheng et al. 2021): 63.72 %.
(The seed paper's 65.72 % at T = 6 is a hybrid-trained model, not this
directly trained one.) Not yet measured with this repository.

Data: tfds ``imagenet2012`` prepared as ArrayRecord files in
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (else
``--config.data.data_dir=...``); the archives must be downloaded by hand from
image-net.org first, and the run stops at once with the instructions if the
data set is missing. Images are decoded per batch on ``min(16, cpus)``
threads (``--config.data.num_workers``).

Hardware: 8 GPUs with 32 GB or more (A100 or newer), 32 images per device.
XLA's estimate of one training step's working memory (compiled for CPU) is 7.0
GiB at 32 images per device (5.5 with ``--config.model.memory=compact``); the
step takes 3.9e12 FLOPs per device, 1.5e19 for the whole run: at least 11 hours
at a sustained 50 TFLOP/s per GPU (an estimate; not measured). With fewer
devices keep the global batch of 256 (``optimizer.learning_rate`` is tuned for
it): 4 GPUs with 80 GB at 64 images each need about twice the memory. Several
hosts: ``--config.distributed=True`` on each.

Hyper-parameters.

- From the paper (METHOD.md sections 4-6): the standard ResNet-34 layout
  (conv7x7/2 64, max pool, stages of 3, 4, 6, 3 basic blocks with 64 to 512
  channels) with tdBN + LIF and ``alpha = 1/sqrt(2)`` on residual branches,
  direct encoding, mean decoding, cross-entropy, T = 6.
- METHOD.md's defaults, the paper's own values being unconfirmed:
  ``V_th = 0.5``, ``tau = 0.25``, rectangular surrogate with ``a = 1.0``.
- Ours (neither METHOD.md nor the seed paper states them; the usual recipe
  for ImageNet ResNets): SGD with momentum 0.9 (no Nesterov), learning rate
  0.1 for the global batch of 256 with 5 epochs of linear warm-up and cosine
  decay to 0, weight decay 1e-4 on conv and dense kernels only, 100 epochs
  (500,400 steps), random-resized crop to 224 and horizontal flip in
  training, resize to 256 and centre crop 224 in evaluation, float32, seed 0.
"""

import ml_collections

from experiments.configs import paper

_STEPS_PER_EPOCH = 1_281_167 // 256  # 5,004


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = paper.Variant.parse(arg, default_time_steps=6)
    c = paper.base_config("imagenet_resnet34", variant)

    c.data.name = "imagenet2012"
    c.data.augment = True  # random-resized crop and horizontal flip
    c.data.cutout = 0
    c.data.image_size = 224  # training crop; evaluation: resize to 256, centre crop 224
    c.data.num_workers = ml_collections.FieldReference(None, field_type=int)  # None: auto

    c.model.name = "resnet34"
    c.model.width = 64  # stages have 64, 128, 256, 512 channels
    c.model.stage_sizes = (3, 4, 6, 3)  # basic blocks per stage

    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1  # for the global batch of 256
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 5 * _STEPS_PER_EPOCH
    c.optimizer.weight_decay = 1e-4  # conv and dense kernels only
    c.optimizer.grad_clip_norm = 0.0

    c.batch_size = 256
    c.eval_batch_size = 512
    c.num_epochs = 100
    c.log_every_steps = 500
    return paper.finish(c, variant, smoke_image_size=32)
