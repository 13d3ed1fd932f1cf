r"""Samplers over any density: rejection sampling and self-normalised importance sampling.

A *target* is a log-density callable or a distribution: its ``log_prob`` is used, or its
``unnormalized_log_prob`` when its ``log_prob_kind`` is ``"unnormalized"`` (an energy
model). A *proposal* is a distribution with ``sample`` and an exact ``log_prob`` (a
flow, a Gaussian, another probgen model).
"""

from __future__ import annotations

__all__ = ["Rejection", "rejection_sample", "Importance", "importance_sample", "log_density"]

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Size, Tensor

from .base import LogDensity
from .diagnostics import importance_ess


def log_density(target: Any) -> LogDensity:
    r"""The log-density of a target: a distribution's ``unnormalized_log_prob`` (energy
    models) or ``log_prob``, or a callable as it is."""
    kind = getattr(target, "log_prob_kind", None)
    if kind == "unnormalized":
        return target.unnormalized_log_prob
    if kind == "none":
        raise ValueError(f"{type(target).__name__} has no density (log_prob_kind 'none')")
    if hasattr(target, "log_prob"):
        return target.log_prob
    if callable(target):
        return target
    raise ValueError(
        f"expected a log-density callable or a distribution, got {type(target).__name__}"
    )


class Rejection(NamedTuple):
    r"""The result of :func:`rejection_sample`.

    Attributes:
        x: The accepted samples, with shape :math:`(n, *E)`.
        acceptance_rate: Accepted over proposed; :math:`Z / M` in expectation for a
            target normalised to :math:`Z` (:math:`1 / M` for a normalised one).
        proposed: The number of proposals drawn.
    """

    x: Tensor
    acceptance_rate: float
    proposed: int


def rejection_sample(
    target: Any,
    proposal: Any,
    log_bound: float,
    n: int,
    *,
    batch: int | None = None,
    max_proposals: int = 10_000_000,
    generator: torch.Generator | None = None,
) -> Rejection:
    r"""Draws exact samples of a target by rejection from a proposal :math:`q`.

    With a bound :math:`\tilde p(x) \leq M q(x)` everywhere, a proposal :math:`x \sim q`
    is accepted with probability :math:`\tilde p(x) / (M q(x))`; accepted points are
    exact samples of :math:`p = \tilde p / Z`.

    Arguments:
        target: The target :math:`\tilde p` (see the module docstring).
        proposal: The proposal :math:`q`, a distribution with an exact ``log_prob`` and
            ``batch_shape`` ``()``.
        log_bound: :math:`\log M`. A proposal breaking the bound raises: the samples
            would not be exact.
        n: The number of samples wanted.
        batch: Proposals drawn per round (default: :math:`n M / Z` estimated from the
            rounds so far, at least 1024).
        max_proposals: The most proposals drawn before giving up.
        generator: The random number generator of the uniforms (the proposal draws from
            the global one).

    Returns:
        The :class:`Rejection` samples and acceptance rate.

    Raises:
        ValueError: When :math:`\log \tilde p(x) - \log q(x) > \log M` at a proposal.
        RuntimeError: When ``max_proposals`` proposals gave fewer than ``n`` samples.

    References:
        | Various techniques used in connection with random digits (von Neumann, 1951)

    Example:
        >>> from torch.distributions import Normal, Independent
        >>> q = Independent(Normal(torch.zeros(1), 2 * torch.ones(1)), 1)
        >>> p = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
        >>> result = rejection_sample(p, q, math.log(2.0), 1000)  # p / q <= 2
        >>> result.x.shape, 0.4 < result.acceptance_rate < 0.6
        (torch.Size([1000, 1]), True)
    """
    log_p = log_density(target)
    kept: list[Tensor] = []
    count, proposed = 0, 0
    while count < n:
        rate = count / proposed if count else math.exp(-log_bound)
        size = batch or max(1024, math.ceil(1.2 * (n - count) / max(rate, 1e-6)))
        size = min(size, max_proposals - proposed)
        if size <= 0:
            raise RuntimeError(
                f"rejection sampling drew {proposed} proposals for {count} of {n} samples "
                f"(acceptance rate {count / max(proposed, 1):.3g}); raise max_proposals "
                "or tighten the bound"
            )
        with torch.no_grad():
            x = proposal.sample(Size((size,)))
            log_ratio = log_p(x) - proposal.log_prob(x) - log_bound
        if bool((log_ratio > 1e-6).any()):
            worst = float(log_ratio.max()) + log_bound
            raise ValueError(
                f"the bound log M = {log_bound:.6g} is broken: log p(x) - log q(x) reaches "
                f"{worst:.6g} at a proposal; rejection samples would not be exact"
            )
        u = torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype)
        accept = u.to(log_ratio.device).log() < log_ratio
        kept.append(x[accept])
        count += int(accept.sum())
        proposed += size
    return Rejection(torch.cat(kept)[:n], count / proposed, proposed)


@dataclass(frozen=True)
class Importance:
    r"""Weighted samples :math:`(x_i, w_i)` of a target, from :func:`importance_sample`.

    Attributes:
        x: The proposals, with shape :math:`(N, *E)`.
        log_weights: :math:`\log w_i = \log \tilde p(x_i) - \log q(x_i)`, shape :math:`(N,)`.
    """

    x: Tensor
    log_weights: Tensor

    @property
    def ess(self) -> Tensor:
        r"""Kish's effective sample size :math:`(\sum w)^2 / \sum w^2 \in [1, N]`."""
        return importance_ess(self.log_weights)

    @property
    def log_z(self) -> Tensor:
        r"""The unbiased estimate of :math:`Z` on a log scale, :math:`\log \frac1N \sum w_i`."""
        return self.log_weights.logsumexp(0) - math.log(self.log_weights.numel())

    @property
    def stderr(self) -> Tensor:
        r"""The delta-method standard error of :attr:`log_z`,
        :math:`\sqrt{1 / \mathrm{ESS} - 1 / N}`."""
        return (1 / self.ess - 1 / self.log_weights.numel()).clamp(min=0).sqrt()

    def expectation(self, f: Callable[[Tensor], Tensor]) -> Tensor:
        r"""The self-normalised estimate :math:`\sum_i \bar w_i f(x_i)`,
        :math:`\bar w_i = w_i / \sum_j w_j` (consistent, biased by :math:`O(1/N)`).

        Arguments:
            f: A function from :math:`x` with shape :math:`(N, *E)` to :math:`(N, *F)`.
        """
        fx = f(self.x)
        w = self.log_weights.softmax(0).to(fx.dtype)
        return (w.reshape(-1, *[1] * (fx.dim() - 1)) * fx).sum(0)

    def resample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws ``n`` points with probabilities :math:`\bar w_i` (multinomial resampling):
        approximate samples of the target, with about ESS distinct ones."""
        w = self.log_weights.softmax(0)
        idx = torch.multinomial(w.cpu(), n, replacement=True, generator=generator)
        return self.x[idx.to(self.x.device)]


def importance_sample(target: Any, proposal: Any, n: int) -> Importance:
    r"""Weights ``n`` proposals by the target: self-normalised importance sampling.

    .. math:: \mathbb{E}_p[f] \approx \sum_i \bar w_i f(x_i), \quad
        w_i = \frac{\tilde p(x_i)}{q(x_i)}, \quad x_i \sim q

    Arguments:
        target: The target :math:`\tilde p` (see the module docstring).
        proposal: The proposal :math:`q`, a distribution with an exact ``log_prob``.
        n: The number of proposals.

    Returns:
        The :class:`Importance` samples (with :attr:`~Importance.ess`,
        :attr:`~Importance.log_z`, :meth:`~Importance.expectation`,
        :meth:`~Importance.resample`).

    Example:
        >>> from torch.distributions import Normal, Independent
        >>> q = Independent(Normal(torch.zeros(1), 2 * torch.ones(1)), 1)
        >>> result = importance_sample(lambda x: -(x**2).sum(-1) / 2, q, 10_000)
        >>> abs(result.log_z.item() - math.log(2 * math.pi) / 2) < 0.05
        True
    """
    if n < 1:
        raise ValueError(f"expected n >= 1, got {n}")
    with torch.no_grad():
        x = proposal.sample(Size((n,)))
        log_w = log_density(target)(x) - proposal.log_prob(x)
    return Importance(x, log_w)
