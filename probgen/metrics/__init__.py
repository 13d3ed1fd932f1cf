r"""Metrics: likelihoods (NLL with standard errors, bits per dimension, perplexity)."""

from .likelihood import NLL, bits_per_dim, nll, perplexity

__all__ = ["NLL", "nll", "bits_per_dim", "perplexity"]
