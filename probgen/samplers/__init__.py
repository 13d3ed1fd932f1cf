r"""Samplers: decoding strategies for discrete autoregressive sampling."""

from .decoding import Strategy, Temperature, TopK, TopP, decoding

__all__ = ["Strategy", "Temperature", "TopK", "TopP", "decoding"]
