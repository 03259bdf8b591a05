"""Experiment scripts and configs of snn-jax (run from the repository root)."""

import importlib.util
import math


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


def finite(obj):
    """``obj`` with every NaN and infinity (in nested dicts, lists, tuples) as ``None``.

    Standard JSON has no NaN: results written with it stay readable by any
    JSON parser.

    >>> finite({"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    {'a': None, 'b': [1.0, None], 'c': 2}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj
