"""Experiment scripts and configs of snn-jax (run from the repository root)."""

import importlib.util


def require_matplotlib(script: str) -> None:
    """Raises ``ImportError`` with the install command if matplotlib is missing.

    Called before a script's work starts, so that its plot at the end cannot
    fail after minutes of training.

    >>> require_matplotlib("experiments.compare_methods")  # installed with the dev extra
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(
            f"{script} plots its results with matplotlib, which is not installed; "
            "install it with: pip install -e '.[notebooks]'"
        )
