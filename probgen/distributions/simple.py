r"""Simple distributions with event dimensions, used as bases and priors."""

from __future__ import annotations

__all__ = ["DiagNormal", "BoxUniform"]

import math

import pyro.distributions as dist
import torch
from torch import Size, Tensor
from torch.distributions import constraints

from ..utils import sum_rightmost
from .base import GenerativeDistribution


class DiagNormal(GenerativeDistribution):
    r"""A multivariate normal with diagonal covariance,

    .. math:: p(x) = \prod_i \mathcal{N}(x_i | \mu_i, \sigma_i^2) .

    The rightmost ``ndims`` dimensions of ``loc`` form the event.

    Arguments:
        loc: The mean :math:`\mu`, with shape :math:`(*B, *E)`.
        scale: The standard deviation :math:`\sigma > 0`, broadcastable to ``loc``.
        ndims: The number of event dimensions :math:`|E|`.

    Example:
        >>> d = DiagNormal(torch.zeros(3), torch.ones(3))
        >>> d.log_prob(torch.zeros(3))
        tensor(-2.7568)
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True
    log_prob_kind = "exact"

    def __init__(self, loc: Tensor, scale: Tensor, ndims: int = 1) -> None:
        loc, scale = torch.broadcast_tensors(loc, scale)
        if loc.dim() < ndims:
            raise ValueError(f"expected loc with at least {ndims} dimensions, got {loc.dim()}")
        self.loc, self.scale, self.ndims = loc, scale, ndims
        split = loc.dim() - ndims
        super().__init__(loc.shape[:split], loc.shape[split:])
        self.support = constraints.independent(constraints.real, ndims)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.scale**2

    def expand(self, batch_shape: Size, _instance=None) -> DiagNormal:
        shape = Size(batch_shape) + self.event_shape
        return DiagNormal(self.loc.expand(shape), self.scale.expand(shape), self.ndims)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * eps

    def log_prob(self, x: Tensor) -> Tensor:
        self.check_value(x)
        z = (x - self.loc) / self.scale
        n = self.event_shape.numel()
        log_norm = sum_rightmost(self.scale.log(), self.ndims) + 0.5 * n * math.log(2 * math.pi)
        return -0.5 * sum_rightmost(z * z, self.ndims) - log_norm

    def entropy(self) -> Tensor:
        n = self.event_shape.numel()
        return sum_rightmost(self.scale.log(), self.ndims) + 0.5 * n * (1 + math.log(2 * math.pi))


class BoxUniform(dist.Independent):
    r"""The uniform distribution on the box :math:`[a, b)`, with ``ndims`` event dimensions.

    Arguments:
        low: The lower bound :math:`a`, with shape :math:`(*B, *E)`.
        high: The upper bound :math:`b`, broadcastable to ``low``.
        ndims: The number of event dimensions.
    """

    log_prob_kind = "exact"

    def __init__(self, low: Tensor, high: Tensor, ndims: int = 1) -> None:
        super().__init__(dist.Uniform(low, high), ndims)
