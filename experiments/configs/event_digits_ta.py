r"""Offline event streams with temporal-wise attention (TA-SNN): ``event_digits.py`` plus attention.

    python -m experiments.main --config=experiments/configs/event_digits_ta.py
    python -m experiments.main --config=experiments/configs/event_digits_ta.py:t16
    python -m experiments.main --config=experiments/configs/event_digits_ta.py:smoke
    python -m experiments.compare_attention      # both arms at T = 8 and 16, plots

Everything is ``event_digits.py``'s (data, digits CNN, optimiser, epochs), so
the two configs differ only in the attention: TA-SNN's temporal-wise attention
(``snn_jax.nn.TemporalAttention``, METHOD.md section 11) in every unit, after
tdBN and before the LIF neurons, as the official code places it after its
batch norm.

Expected (measured 2026-12-05, seed 0, on a shared, busy 2-core CPU): 97.5 %
test accuracy after 20 epochs (best 97.5 %; 96.1 % without attention), 4,041
spikes per test image against 8,003, training 562 s; at T = 16 (``:t16``,
measured the same day on the idle machine) 96.7 % (96.9 % without
attention), 10,030 spikes against 17,470, training 326 s. The scores do not
come out lower on the idle (noise-only) bins; METHOD.md section 11 says why.

Hyper-parameters (ours, for this task): reduction ``r = 2`` (``T // 2``
hidden units; the official code uses ``r = 16`` at ``T = 30`` for DVS128
Gesture and ``r = 5`` at ``T = 10`` for CIFAR10-DVS, which would leave one or
no hidden unit at ``T = 8``); no pruning in training or in the reported
accuracy (``model.discard_threshold = None``; ``compare_attention`` sweeps it).
The README's section "Temporal attention on event streams" has the results.
"""

import ml_collections

from experiments.configs import event_digits


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = event_digits.get_config(arg)
    c.name = c.name.replace("event_digits", "event_digits_ta", 1)
    c.model.attention = "temporal"
    c.model.attention_reduction = 2
    c.model.discard_threshold = ml_collections.FieldReference(None, field_type=float)
    return c
