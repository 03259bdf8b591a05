r"""A plain (shortcut-free) deep spiking CNN on the bundled 8x8 digits, T = 4.

    python -m experiments.main --config=experiments/configs/digits_plain.py \
        --config.model.depth=20 --config.model.norm=tdbn --workdir=workdirs/plain20_tdbn

The default job (``digits.py``: data, validation split, neuron and AdamW
optimiser) with the model replaced by ``snn_jax.models.PlainCNN``: ``depth``
conv3x3 -> norm -> LIF units in ``num_stages`` stages of doubling width
(``width``, ``2 width``, ...) and halving resolution, a global average pool and
the mean-over-time readout. Every model field is a key of this file, so it can
be set from the command line (``--config.model.depth``, ``.width``,
``.num_stages``, ``.norm``). ``experiments/depth.py`` trains it for each depth
and norm.

Batch 32 for 20 epochs (800 steps with the 10 % validation split held out):
with tdBN, depth 20 ends near 95 % test accuracy; without normalisation the
spikes die out in the deeper layers and it stays at chance (README, "Depth:
where tdBN matters").
"""

import ml_collections

from experiments.configs import digits


def get_config() -> ml_collections.ConfigDict:
    c = digits.get_config()
    c.name = "digits_plain"
    c.model.name = "plain"
    c.model.depth = 20  # conv -> norm -> LIF units, no shortcuts
    c.model.width = 16  # channels of the first stage; doubled at each later stage
    c.model.num_stages = 3  # stages; each after the first starts with a stride-2 conv
    c.model.unroll = 4  # LIF loop unrolled over T = 4: straight-line code, faster on XLA:CPU
    c.num_epochs = 20
    return c
