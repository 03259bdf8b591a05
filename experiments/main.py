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

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "digits.py")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS, sys_argv: list[str] | None = None):
    """Defines ``--config`` (with ``--config.key=value`` overrides) and ``--workdir``.

    ``sys_argv``: the command line whose ``--config.key`` overrides are
    registered (default: ``sys.argv``); pass the one you parse.

    Returns:
      The two flag holders, ``(config, workdir)``; :func:`main` reads them from
      ``flags.FLAGS``.
    """
    config = config_flags.DEFINE_config_file(
        "config",
        DEFAULT_CONFIG,
        "Config file (get_config()); override fields with --config.key=value.",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=sys_argv,
    )
    workdir = flags.DEFINE_string(
        "workdir",
        None,
        "Checkpoints, logs and summary.json go here (default: workdirs/<name>).",
        flag_values=flag_values,
    )
    return config, workdir


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    config = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or os.path.join("workdirs", config.name)
    logging.info("config:\n%s", config)
    print(f"training {config.name} in {os.path.abspath(workdir)} (--verbosity=0 for the full log)")
    _, summary = train_and_evaluate(config, workdir)
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"summary written to {os.path.join(os.path.abspath(workdir), 'summary.json')}")


if __name__ == "__main__":
    define_flags()  # here, not on import: importing this module defines no flags
    app.run(main)
