r"""Energy-based models (``pg.energy``): an unnormalised density sampled by MCMC.

:class:`EBM` builds an :class:`EnergyBased` distribution (``log_prob_kind ==
"unnormalized"``) from an energy network; :class:`RBM` a Bernoulli-Bernoulli restricted
Boltzmann machine sampled by block Gibbs. Train them with
:func:`probgen.objectives.contrastive_divergence` or
:func:`probgen.objectives.persistent_contrastive_divergence`; the kernels are in
:mod:`probgen.samplers`.
"""

from .distributions.energy import (
    EBM,
    RBM,
    EnergyBased,
    LogNormalizer,
    RBMTarget,
    RestrictedBoltzmann,
    guided_score,
)

__all__ = [
    "EBM",
    "EnergyBased",
    "RBM",
    "RestrictedBoltzmann",
    "RBMTarget",
    "LogNormalizer",
    "guided_score",
]
