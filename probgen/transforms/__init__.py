r"""Bijective transforms (values) and the lazy modules that build them."""

from .autoregressive import MaskedAutoregressive, MaskedAutoregressiveTransform
from .base import (
    ComposedTransform,
    IndependentTransform,
    call_and_ladj,
    inv_call_and_ladj,
)
from .coupling import Coupling, CouplingTransform
from .elementwise import MonotonicAffineTransform, MonotonicRQSTransform

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
]
