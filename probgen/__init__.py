r"""probgen: every generative model as a Pyro distribution with ``sample`` and ``log_prob``."""

__version__ = "0.1.0"

from . import distributions, flows, lazy, nn, transforms, utils

__all__ = ["__version__", "distributions", "flows", "lazy", "nn", "transforms", "utils"]
