r"""Train and evaluate a spiking network from a config.

    python -m experiments.main [--config=experiments/configs/digits.py] \
        [--config.key=value ...] [--workdir=workdirs/<config name>]

Without flags it trains the default job (a tdBN SNN on the bundled digits
data, offline). Rerunning with the same ``--workdir`` resumes. Only warnings
are logged unless ``--verbosity`` is given (``--verbosity=0``: the config and
every checkpoint save).
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from snn_jax.training import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "configs", "digits.py"),
    "Config file (get_config()); override fields with --config.key=value.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Checkpoints, logs and summary.json go here (default: workdirs/<name>)."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("workdirs", config.name)
    logging.info("config:\n%s", config)
    print(f"training {config.name} in {os.path.abspath(workdir)} (--verbosity=0 for the full log)")
    summary = train_and_evaluate(config, workdir)
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"summary written to {os.path.join(os.path.abspath(workdir), 'summary.json')}")


if __name__ == "__main__":
    app.run(main)
