"""ANN-to-SNN conversion and hybrid training, the baselines STBP-tdBN is compared with.

- :func:`convert`: a zoo model's ANN twin (ReLU + BN) to an integrate-and-fire
  SNN with reset by subtraction: BN folded into the weights, thresholds
  balanced from data (a percentile of the activations, per layer or per
  channel), weights rescaled so that spikes are 0/1 events; residual blocks
  and average pooling convert exactly in the rate limit
  (:mod:`~snn_jax.conversion.convert`).
- :func:`hand_over`: the converted network as the start of STBP fine-tuning
  (hybrid training, Rathi et al. 2020), into a model without norm or with tdBN
  (:mod:`~snn_jax.conversion.hybrid`).
- :func:`evaluate_classifier`: accuracy and spikes per image of any zoo model
  at its ``T`` (:mod:`~snn_jax.conversion.simulate`).

Spike-based BP (Lee et al. 2020) is a neuron option of the models
(``gradient="aggregate"``, :func:`snn_jax.functional.aggregate_gradient`);
STBP without normalization (Wu et al. 2019) is ``norm="none"``.
``experiments/compare_methods.py`` runs them all side by side.
"""

from snn_jax.conversion.balance import activation_scale
from snn_jax.conversion.convert import Conversion, convert, rate_limit_logits, snn_twin
from snn_jax.conversion.hybrid import hand_over, layer_statistics
from snn_jax.conversion.simulate import evaluate_classifier, forward_with_spikes

__all__ = [
    "Conversion",
    "activation_scale",
    "convert",
    "evaluate_classifier",
    "forward_with_spikes",
    "hand_over",
    "layer_statistics",
    "rate_limit_logits",
    "snn_twin",
]
