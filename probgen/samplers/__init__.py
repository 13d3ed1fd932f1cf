r"""Samplers: decoding strategies for discrete autoregressive sampling."""

from . import decoding
from .decoding import Strategy, Temperature, TopK, TopP, strategies

__all__ = ["decoding", "Strategy", "Temperature", "TopK", "TopP", "strategies"]
