r"""Distribution values of every family and the lazy modules that build them."""

from .autoregressive import MADE, NADE, Autoregressive, ChainRule, OrderMixture
from .base import LOG_PROB_KINDS, GenerativeDistribution, log_prob_kind
from .continuous import (
    CNF,
    AffinePath,
    ContinuousFlow,
    FlowMatching,
    IndependentCoupling,
    LinearPath,
    OTCoupling,
    VPPath,
)
from .diffusion import Diffusion, DiffusionDistribution
from .dequantized import Dequantization, Dequantized, VariationalDequantizer
from .energy import (
    EBM,
    RBM,
    EnergyBased,
    LogNormalizer,
    RBMTarget,
    RestrictedBoltzmann,
    guided_score,
)
from .elements import (
    BernoulliFamily,
    CategoricalFamily,
    DiscretizedLogisticMixture,
    ElementFamily,
    GaussianFamily,
    LogisticMixtureFamily,
)
from .flow import IAF, MAF, NSF, Flow, NormalizingFlow, RealNVP
from .glow import Glow
from .implicit import GAN, GMMN, Implicit, ImplicitModel
from .pixelcnn import PixelCNN
from .sequence import Transformer, WaveNet
from .simple import BoxUniform, DiagNormal

__all__ = [
    "LOG_PROB_KINDS",
    "GenerativeDistribution",
    "log_prob_kind",
    "DiagNormal",
    "BoxUniform",
    "NormalizingFlow",
    "Flow",
    "MAF",
    "IAF",
    "NSF",
    "RealNVP",
    "Glow",
    "Dequantized",
    "Dequantization",
    "VariationalDequantizer",
    "ChainRule",
    "OrderMixture",
    "Autoregressive",
    "MADE",
    "NADE",
    "PixelCNN",
    "WaveNet",
    "Transformer",
    "ElementFamily",
    "BernoulliFamily",
    "CategoricalFamily",
    "GaussianFamily",
    "LogisticMixtureFamily",
    "DiscretizedLogisticMixture",
    "EnergyBased",
    "EBM",
    "LogNormalizer",
    "RBMTarget",
    "RestrictedBoltzmann",
    "RBM",
    "guided_score",
    "Implicit",
    "ImplicitModel",
    "GAN",
    "GMMN",
    "ContinuousFlow",
    "CNF",
    "FlowMatching",
    "AffinePath",
    "LinearPath",
    "VPPath",
    "IndependentCoupling",
    "OTCoupling",
    "Diffusion",
    "DiffusionDistribution",
]
