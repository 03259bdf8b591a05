"""Export to and import from NIR, the Neuromorphic Intermediate Representation.

NIR (Pedersen et al. 2024, the ``nir`` package) describes a spiking network
as a graph of continuous-time nodes (``Conv2d``, ``Affine``, ``LIF``, ...)
that simulators and neuromorphic chips read. :func:`to_nir` writes a zoo
model as such a graph, with tdBN folded into the convolutions and each
iterative LIF layer given the ``nir.LIF`` parameters whose forward-Euler
integration at step ``dt`` is that LIF exactly (METHOD.md section 12).
:func:`from_nir` turns a graph back into a Flax module that runs it over
time-major input with :func:`snn_jax.lif_scan`, so a network trained
elsewhere can be evaluated and fine-tuned here.

This subpackage needs the optional ``nir`` dependency:
``pip install 'snn-jax[nir]'``.
"""

from __future__ import annotations

try:
    import nir  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised by a test that hides nir
    raise ImportError(
        "snn_jax.nir needs the `nir` package (the Neuromorphic Intermediate Representation); "
        "install it with: pip install 'snn-jax[nir]'"
    ) from error

from snn_jax.nir.export import lif_parameters, to_nir
from snn_jax.nir.network import NIRNetwork, from_nir

__all__ = ["NIRNetwork", "from_nir", "lif_parameters", "to_nir"]
