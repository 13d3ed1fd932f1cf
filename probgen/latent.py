r"""Latent-variable models (``pg.latent``): variational autoencoders as Pyro model / guide
pairs.

:class:`VAE` is an :class:`torch.nn.Module` whose call returns a fresh :class:`Marginal`
(the distribution of :math:`x`, ``log_prob_kind == "estimate"``: importance-weighted with
:math:`K` particles), and whose ``model`` / ``guide`` methods are a Pyro model / guide
pair for :class:`pyro.infer.SVI`. Decoder likelihoods are per-element families
(:class:`~probgen.distributions.BernoulliFamily`,
:class:`~probgen.distributions.GaussianFamily`, :class:`FixedGaussianFamily`,
:class:`LearnedGaussianFamily`, :class:`~probgen.distributions.CategoricalFamily`,
:class:`~probgen.distributions.LogisticMixtureFamily`). Train with
:func:`probgen.objectives.elbo` (the default objective), :func:`~probgen.objectives.iwae`
or :class:`~probgen.objectives.KLWarmup`; inspect with the diagnostics below.
"""

from .distributions.elements import (
    BernoulliFamily,
    CategoricalFamily,
    GaussianFamily,
    LogisticMixtureFamily,
)
from .distributions.latent import (
    VAE,
    Factorized,
    FixedGaussianFamily,
    LearnedGaussianFamily,
    Marginal,
)
from .distributions.latent_diagnostics import (
    ActiveUnits,
    PosteriorCollapseWarning,
    active_units,
    interpolate,
    kl_per_dimension,
    reconstruct,
    traverse,
)

__all__ = [
    "VAE",
    "Marginal",
    "Factorized",
    "BernoulliFamily",
    "GaussianFamily",
    "FixedGaussianFamily",
    "LearnedGaussianFamily",
    "CategoricalFamily",
    "LogisticMixtureFamily",
    "kl_per_dimension",
    "active_units",
    "ActiveUnits",
    "PosteriorCollapseWarning",
    "reconstruct",
    "interpolate",
    "traverse",
]
