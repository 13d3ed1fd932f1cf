r"""Normalizing flows (``pg.flows``): the pushforward of a base by learned bijections.

Every builder is an :class:`torch.nn.Module` whose call returns a fresh
:class:`NormalizingFlow` (a Pyro distribution); ``context > 0`` makes it conditional.
"""

from .distributions.dequantized import Dequantization, Dequantized, VariationalDequantizer
from .distributions.flow import IAF, MAF, NSF, Flow, NormalizingFlow, RealNVP
from .distributions.glow import Glow

__all__ = [
    "Flow",
    "NormalizingFlow",
    "MAF",
    "IAF",
    "NSF",
    "RealNVP",
    "Glow",
    "Dequantized",
    "Dequantization",
    "VariationalDequantizer",
]
