r"""STBP without normalization (Wu et al. 2019) on scikit-learn's 8x8 digits, T = 12.

    python -m experiments.main --config=experiments/configs/wu2019_digits.py

The default digits job (``digits.py``: the same DigitsCNN, data and optimizer)
with the Wu et al. 2019 setup (``compare_base.wu2019_settings``): no
normalization layer (``norm="none"``: biased convs feed the LIF neurons
directly), T = 12 as in the seed's table, and the constants of the STBP code
for MNIST recorded in METHOD.md section 1 (``V_th = 0.5``, ``tau = 0.2``,
rectangular surrogate of width 1). Not reproduced: Wu et al.'s NeuNorm,
their network (CIFARNet) and their optimizer. Its measured accuracy, next to
the other methods, is in the README's comparison section
(``experiments/compare_methods.py`` runs it at T = 4 and 12).
"""

import ml_collections

from experiments.configs import compare_base, digits


def get_config() -> ml_collections.ConfigDict:
    c = digits.get_config()
    c.update(compare_base.wu2019_settings("mnist"))
    c.name = "wu2019_digits"
    c.time_steps = 12  # T of Wu et al. 2019 in the seed's table
    return c
