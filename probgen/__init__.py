r"""probgen: every generative model as a Pyro distribution with ``sample`` and ``log_prob``."""

__version__ = "0.1.0"

from . import (
    autoregressive,
    distributions,
    energy,
    flows,
    lazy,
    nn,
    objectives,
    samplers,
    transforms,
    utils,
)
from .train import fit

__all__ = [
    "__version__",
    "autoregressive",
    "distributions",
    "energy",
    "fit",
    "flows",
    "lazy",
    "nn",
    "objectives",
    "samplers",
    "transforms",
    "utils",
]
