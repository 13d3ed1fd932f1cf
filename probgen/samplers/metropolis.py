r"""Random-walk Metropolis, batched over chains."""

from __future__ import annotations

__all__ = ["RandomWalk"]

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import (
    KernelState,
    LogDensity,
    _check_step_size,
    _log_accept,
    _randn,
    _where,
    log_uniform,
)


@dataclass(frozen=True)
class RandomWalk:
    r"""Random-walk Metropolis with a Gaussian proposal.

    .. math:: y = x + \sigma \xi, \quad \xi \sim \mathcal{N}(0, I), \qquad
        \alpha = \min\left(1, \frac{\tilde\pi(y)}{\tilde\pi(x)}\right)

    The proposal is symmetric, so only the target's ratio enters :math:`\alpha`. An
    acceptance rate near 0.234 is optimal for high-dimensional Gaussian-like targets.

    Arguments:
        step_size: The proposal's standard deviation :math:`\sigma` (a float, or a 0-d
            tensor as adaptation returns).

    References:
        | Equation of State Calculations by Fast Computing Machines (Metropolis et al., 1953)
        | Weak convergence and optimal scaling of random walk Metropolis algorithms
          (Roberts, Gelman and Gilks, 1997)

    Example:
        >>> from probgen.samplers import run_chain
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> chain = run_chain(RandomWalk(1.0), torch.zeros(1000, 2), log_p, steps=50)
        >>> bool((chain.accept_prob > 0).all() and (chain.accept_prob < 1).all())
        True
    """

    step_size: float | Tensor = 0.1
    # What step-size adaptation aims at by default (Roberts, Gelman and Gilks, 1997).
    optimal_accept: ClassVar[float] = 0.234

    def __post_init__(self) -> None:
        _check_step_size(self.step_size)

    def init(self, x: Tensor, target: LogDensity) -> KernelState:
        with torch.no_grad():
            log_p = target(x)
        return KernelState(x, log_p, None, torch.ones_like(log_p))

    def step(
        self, state: KernelState, target: LogDensity, generator: torch.Generator | None = None
    ) -> KernelState:
        x, log_p = state.x, state.log_p
        y = x + self.step_size * _randn(x, generator)
        with torch.no_grad():
            log_q = target(y)
        log_alpha = _log_accept(log_q - log_p)
        accept = log_uniform(log_p, generator) < log_alpha
        return KernelState(
            _where(accept, y, x), torch.where(accept, log_q, log_p), None, log_alpha.exp()
        )
