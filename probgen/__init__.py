r"""probgen: every generative model as a Pyro distribution with ``sample`` and ``log_prob``."""

__version__ = "0.1.0"

from . import (
    autoregressive,
    data,
    diffusion,
    distributions,
    energy,
    flows,
    implicit,
    latent,
    lazy,
    metrics,
    nn,
    objectives,
    ode,
    samplers,
    transforms,
    utils,
)
from .train import fit

__all__ = [
    "__version__",
    "autoregressive",
    "data",
    "diffusion",
    "distributions",
    "energy",
    "fit",
    "flows",
    "implicit",
    "latent",
    "lazy",
    "metrics",
    "nn",
    "objectives",
    "ode",
    "samplers",
    "transforms",
    "utils",
]
