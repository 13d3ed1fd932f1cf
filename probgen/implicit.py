r"""Implicit models (``pg.implicit``): the pushforward of a latent by a generator network.

Every builder is an :class:`torch.nn.Module` whose call returns a fresh :class:`Implicit`
(a Pyro distribution with ``sample`` / ``rsample`` and ``log_prob_kind == "none"``);
``context > 0`` makes it conditional. Evaluate with the sample-based metrics of
:mod:`probgen.metrics`; train a GAN with :func:`probgen.objectives.adversarial`'s two
players and a GMMN with its default objective, :func:`probgen.objectives.mmd`.
"""

from .distributions.implicit import GAN, GMMN, Implicit, ImplicitModel
from .nn.gan import ContextMLP, DCDiscriminator, DCGenerator, StyleGenerator, spectral_normalize

__all__ = [
    "Implicit",
    "ImplicitModel",
    "GAN",
    "GMMN",
    "ContextMLP",
    "DCGenerator",
    "DCDiscriminator",
    "StyleGenerator",
    "spectral_normalize",
]
