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

:class:`VQVAE` is a discrete latent model: a vector-quantised code grid
(:class:`VectorQuantizer`) with a nested autoregressive prior (a PixelCNN over the
:math:`K`-valued grid); its call returns a :class:`VectorQuantized` whose ``log_prob`` is
the bound :math:`\log p(x | z_q(x)) + \log p(z_q(x))` with a decoder likelihood
(``log_prob_kind == "bound"``) and raises without one (``"none"``). Train it in two
stages: ``pg.fit(vq, x)`` (:func:`probgen.objectives.vq_vae`), then
``pg.fit(vq.prior, vq.encode(x))``. :class:`Autoencoder` (plain, denoising with
:class:`MaskingNoise` or :class:`GaussianNoise`, sparse) is not a distribution: an
:class:`torch.nn.Module` with ``encode`` / ``decode`` / ``reconstruct``, trained by
:func:`probgen.objectives.autoencoder`. The encoder / decoder blocks live in
:mod:`probgen.nn` and are re-exported here.
"""

from .distributions.autoencoder import Autoencoder, GaussianNoise, MaskingNoise
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
from .distributions.vq import VQVAE, VectorQuantized
from .nn.autoencoder import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    VectorQuantizer,
    codebook_usage,
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
    "VQVAE",
    "VectorQuantized",
    "VectorQuantizer",
    "codebook_usage",
    "Autoencoder",
    "GaussianNoise",
    "MaskingNoise",
    "MLPEncoder",
    "MLPDecoder",
    "ConvEncoder",
    "ConvDecoder",
]
