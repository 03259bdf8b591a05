r"""Every row of the seed's table on scikit-learn's 8x8 digits (DigitsCNN), offline.

    python -m experiments.compare_methods            # this config is the default
    python -m experiments.compare_methods --smoke    # every kind of row, in seconds

Trains the ANN twin once, converts it (three threshold balancings, T = 1 to
256), fine-tunes the conversion at T = 2 and 4 (hybrid, without norm and into
tdBN), and trains spike-based BP (T = 4, 8), STBP without normalization
(Wu 2019, T = 4, 12), STBP-tdBN (T = 1, 2, 4, 6) and the direct-training
kit's rows at T = 4 (TET loss, TEBN, BNTT, learned leak), all on the
DigitsCNN of ``digits.py`` with its data (1-pixel shifts, a 10 % validation
split), optimizer and 30 epochs (the hybrids: 10 epochs at a lower learning
rate). Trained rows report the final test accuracy and the test accuracy at
the step of best validation accuracy. Writes ``results.md``, ``results.json`` and
``accuracy_vs_time_steps.png`` to the workdir. The measured table is in the
README (section "Conversion, hybrid training and direct training compared").
"""

import ml_collections

from experiments.configs import compare_base, digits


def get_config() -> ml_collections.ConfigDict:
    c = digits.get_config()
    c.name = "compare_digits"
    c.progress = False
    c.compare = compare_base.comparison(
        compare_base.methods(
            conversion_steps=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            stbp_steps=(1, 2, 4, 6),
            wu2019_steps=(4, 12),
            lee2020_steps=(4, 8),
            hybrid_steps=(2, 4),
            hybrid_overrides={
                "num_epochs": 10,
                "optimizer": {"learning_rate": 1e-3, "warmup_steps": 0},
            },
            wu2019=compare_base.wu2019_settings("mnist"),
        )
    )
    compare_base.add_kit_methods(c.compare.methods, time_steps=(4,))  # TET, TEBN, BNTT, PLIF
    c.compare.calibration_examples = 1024
    c.compare.energy_examples = 360  # the whole test split
    c.compare.pooled = ml_collections.ConfigDict({"fc/dense": 4})  # after the 2x2 average pool
    c.compare.smoke.overrides = ml_collections.ConfigDict(
        {"model": {"width": 4, "hidden_features": 16}}
    )
    return c
