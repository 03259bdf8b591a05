"""The rows of the method comparison, shared by the ``compare_*.py`` configs.

``experiments/compare_methods.py`` reads ``config.compare``: the usual
training fields of the config (data, model, optimizer, epochs) are the base
of every method, and each entry of ``config.compare.methods`` is one method:

- ``kind``: ``"ann"`` (the ANN twin, trained once), ``"conversion"`` (of that
  ANN), ``"hybrid"`` (a conversion fine-tuned with STBP) or ``"stbp"``
  (an SNN trained directly with the config's surrogate gradient, or with
  spike-based BP when its ``model.gradient`` is ``"aggregate"``);
- ``label``: its name in the table; ``rank``: its place in the table;
  ``time_steps``: the ``T`` values to run;
- ``overrides``: fields of the base config it changes (``ann``, ``hybrid``, ``stbp``);
- ``percentile``, ``channelwise`` (``conversion``): threshold balancing;
- ``source`` (``hybrid``): the conversion to start from; the fine-tuned SNN's
  norm is in its ``overrides`` (``"none"``: the converted network itself;
  ``"tdbn"``: converted weights and thresholds in the tdBN model).
"""

import ml_collections

KINDS = ("ann", "conversion", "hybrid", "stbp")

# The ANN twin of a zoo model: the same layers with ReLU and BN, no time loop.
ANN = {"model": {"neuron": "relu", "norm": "bn"}}
# Spike-based BP: integrate-and-fire neurons with reset by subtraction, no norm layer (our
# reading of Lee et al. 2020: dropout, no batch norm), the aggregate pseudo-derivative 1 / V_th.
LEE2020 = {"norm": "none", "tau": 1.0, "reset": "subtract", "gradient": "aggregate"}

# (V_th, tau) of the STBP code (METHOD.md section 1), for MNIST-like and CIFAR data.
WU2019_NEURON = {"mnist": (0.5, 0.2), "cifar": (0.75, 0.25)}


def wu2019_settings(data: str) -> ml_collections.ConfigDict:
    """The config fields of STBP without normalization (Wu et al. 2019), for ``data`` in
    :data:`WU2019_NEURON`: no norm layer (biased convs), the STBP code's threshold and
    leak, rectangular surrogate of width 1. Not reproduced: their NeuNorm, their network
    (CIFARNet) and their optimizer.
    """
    v_th, tau = WU2019_NEURON[data]
    s = ml_collections.ConfigDict()
    s.model = ml_collections.ConfigDict()
    s.model.norm = "none"  # no normalization: the convs carry a bias
    s.model.v_th = v_th
    s.model.tau = tau
    s.model.surrogate = "rectangular"
    s.model.surrogate_param = 1.0  # window |u - V_th| < 0.5, height 1
    return s


def method(kind: str, label: str, time_steps: tuple[int, ...], **fields):
    """One row: ``kind`` in :data:`KINDS`, its ``label`` and ``T`` values, its fields.

    >>> m = method("stbp", "STBP, BN", (4,), overrides={"model": {"norm": "bn"}})
    >>> m.kind, m.time_steps, m.overrides.model.norm
    ('stbp', (4,), 'bn')
    """
    m = ml_collections.ConfigDict()
    m.kind = kind
    m.label = label
    m.time_steps = tuple(time_steps)
    m.overrides = ml_collections.ConfigDict(fields.pop("overrides", {}))
    for key, value in fields.items():
        m[key] = value
    return m


def methods(
    *,
    conversion_steps: tuple[int, ...],
    stbp_steps: tuple[int, ...],
    wu2019_steps: tuple[int, ...],
    lee2020_steps: tuple[int, ...],
    hybrid_steps: tuple[int, ...],
    hybrid_overrides: dict,
    wu2019: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
    """Every row of the seed's table, on the config's model (:func:`add_kit_methods` adds
    the direct-training kit's)."""
    # the converted network's neuron: integrate-and-fire, reset by subtraction, its thresholds
    hybrid_neuron = {"tau": 1.0, "reset": "subtract", "channel_threshold": True}
    conversions = [  # (name, label, percentile, channelwise)
        ("conversion_max", "conversion, max (Diehl 2015)", 100.0, False),
        ("conversion_p999", "conversion, 99.9 % (Rueckauer 2017)", 99.9, False),
        ("conversion_p999_channel", "conversion, 99.9 % per channel", 99.9, True),
    ]
    hybrids = [  # (name, label, norm of the fine-tuned SNN)
        ("hybrid", "hybrid: conversion + STBP (Rathi 2020)", "none"),
        ("hybrid_tdbn", "hybrid into tdBN: conversion + STBP-tdBN", "tdbn"),
    ]
    rows = [
        ("ann", method("ann", "ANN twin (ReLU + BN)", (1,), overrides=ANN)),
        *(
            (
                name,
                method(
                    "conversion",
                    label,
                    conversion_steps,
                    percentile=percentile,
                    channelwise=channelwise,
                ),
            )
            for name, label, percentile, channelwise in conversions
        ),
        *(
            (
                name,
                method(
                    "hybrid",
                    label,
                    hybrid_steps,
                    source="conversion_p999",
                    overrides={**hybrid_overrides, "model": {"norm": norm, **hybrid_neuron}},
                ),
            )
            for name, label, norm in hybrids
        ),
        (
            "lee2020",
            method(
                "stbp",
                "spike-based BP (Lee 2020)",
                lee2020_steps,
                overrides={"model": LEE2020},
            ),
        ),
        (
            "wu2019",
            method("stbp", "STBP, no norm (Wu 2019)", wu2019_steps, overrides=wu2019.to_dict()),
        ),
        ("stbp_tdbn", method("stbp", "STBP-tdBN (Zheng 2021)", stbp_steps)),
    ]
    m = ml_collections.ConfigDict()
    for rank, (name, row) in enumerate(rows):
        row.rank = rank  # the table's row order
        m[name] = row
    return m


def add_kit_methods(methods_: ml_collections.ConfigDict, time_steps: tuple[int, ...]) -> None:
    """Appends the direct-training kit's rows (METHOD.md section 10) to ``methods_``:
    STBP with the TET loss (tdBN), with TEBN, with BNTT, and with a learned leak (PLIF)."""
    rows = [  # (name, label, overrides)
        ("stbp_tet", "STBP-tdBN + TET loss (Deng 2022)", {"loss": "tet"}),
        ("stbp_tebn", "STBP-TEBN (Duan 2022)", {"model": {"norm": "tebn"}}),
        ("stbp_bntt", "STBP-BNTT (Kim 2021)", {"model": {"norm": "bntt"}}),
        ("stbp_plif", "STBP-tdBN, learned leak (Fang 2021)", {"model": {"learn_tau": "layer"}}),
    ]
    rank = max(m.rank for m in methods_.values()) + 1
    for offset, (name, label, overrides) in enumerate(rows):
        method_ = method("stbp", label, time_steps, overrides=overrides)
        method_.rank = rank + offset
        methods_[name] = method_


def comparison(methods_: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
    """``config.compare``: the methods and the measurement settings."""
    c = ml_collections.ConfigDict()
    c.methods = methods_
    c.calibration_examples = 1024  # training images for threshold balancing and tdBN hand-over
    c.energy_examples = 256  # test images whose synaptic operations are counted
    c.pooled = ml_collections.ConfigDict()  # {layer: n}: layers fed by an n-spike average pool
    c.max_steps_times_batch = 32768  # largest T * B simulated at once
    c.reference = ("stbp_tdbn", 4)  # the row the conversions are compared with
    c.smoke = ml_collections.ConfigDict()  # --smoke: a seconds-long run of every kind of row
    c.smoke.methods = ("ann", "conversion_p999", "hybrid_tdbn", "lee2020", "stbp_tdbn")
    c.smoke.time_steps = 2
    c.smoke.num_train_steps = 2
    c.smoke.calibration_examples = 64
    c.smoke.energy_examples = 8
    c.smoke.overrides = ml_collections.ConfigDict()  # base fields changed, e.g. a smaller model
    for key, value in fields.items():
        c[key] = value
    return c
