r"""Bijective transforms (values) and the lazy modules that build them."""

from .autoregressive import MaskedAutoregressive, MaskedAutoregressiveTransform
from .base import (
    ComposedTransform,
    IndependentTransform,
    call_and_ladj,
    inv_call_and_ladj,
)
from .continuous import ExactTrace, Hutchinson, ODESolution, ODETransform, odeint_with_ladj
from .coupling import Coupling, CouplingTransform
from .dequantize import LogitTransform
from .elementwise import MonotonicAffineTransform, MonotonicRQSTransform
from .image import (
    ActNorm,
    ActNormTransform,
    ChannelCouplingTransform,
    ConvCoupling,
    FactorOut,
    FactorOutTransform,
    SqueezeTransform,
)
from .linear import (
    Conv1x1,
    Conv1x1Transform,
    LULinear,
    LULinearTransform,
    PermutationTransform,
)

__all__ = [
    "call_and_ladj",
    "inv_call_and_ladj",
    "ComposedTransform",
    "IndependentTransform",
    "MonotonicAffineTransform",
    "MonotonicRQSTransform",
    "CouplingTransform",
    "Coupling",
    "MaskedAutoregressiveTransform",
    "MaskedAutoregressive",
    "PermutationTransform",
    "LULinearTransform",
    "LULinear",
    "Conv1x1Transform",
    "Conv1x1",
    "ActNormTransform",
    "ActNorm",
    "SqueezeTransform",
    "ChannelCouplingTransform",
    "ConvCoupling",
    "FactorOutTransform",
    "FactorOut",
    "LogitTransform",
    "ODETransform",
    "ODESolution",
    "ExactTrace",
    "Hutchinson",
    "odeint_with_ladj",
]
