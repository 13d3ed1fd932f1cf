r"""Distribution values of every family and the lazy modules that build them."""

from .base import LOG_PROB_KINDS, GenerativeDistribution, log_prob_kind
from .dequantized import Dequantization, Dequantized, VariationalDequantizer
from .flow import IAF, MAF, NSF, Flow, NormalizingFlow, RealNVP
from .glow import Glow
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
]
