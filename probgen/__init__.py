r"""probgen: every generative model as a Pyro distribution with ``sample`` and ``log_prob``."""

__version__ = "0.1.0"

from . import autoregressive, distributions, flows, lazy, nn, objectives, transforms, utils
from .train import fit

__all__ = [
    "__version__",
    "autoregressive",
    "distributions",
    "fit",
    "flows",
    "lazy",
    "nn",
    "objectives",
    "transforms",
    "utils",
]
