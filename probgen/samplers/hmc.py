r"""Hamiltonian Monte Carlo with a leapfrog integrator, batched over chains."""

from __future__ import annotations

__all__ = ["HMC", "leapfrog"]

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import (
    KernelState,
    LogDensity,
    _check_step_size,
    _event_sum,
    _log_accept,
    _randn,
    _where,
    log_uniform,
    value_and_grad,
)


def leapfrog(
    x: Tensor, p: Tensor, grad: Tensor, target: LogDensity, step_size: float | Tensor, steps: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Integrates Hamilton's equations for :math:`H(x, p) = -\log \tilde\pi(x) + \|p\|^2 / 2`.

    .. math:: p_{1/2} = p_0 + \tfrac{\epsilon}{2} \nabla \log \tilde\pi(x_0), \quad
        x_1 = x_0 + \epsilon p_{1/2}, \quad
        p_1 = p_{1/2} + \tfrac{\epsilon}{2} \nabla \log \tilde\pi(x_1)

    repeated ``steps`` times (the inner half steps merged), one gradient per step. The map
    is volume preserving and reversible, which is what makes HMC's acceptance exact.

    Arguments:
        x: Positions with shape :math:`(*C, *E)`.
        p: Momenta with shape :math:`(*C, *E)`.
        grad: :math:`\nabla \log \tilde\pi(x)` with shape :math:`(*C, *E)`.
        target: The log-density.
        step_size: The step :math:`\epsilon`.
        steps: The number of leapfrog steps :math:`L \geq 1`.

    Returns:
        The final positions, momenta, log-densities (shape :math:`(*C,)`) and gradients.
    """
    p = p + 0.5 * step_size * grad
    for i in range(steps):
        x = x + step_size * p
        log_p, grad = value_and_grad(target, x)
        p = p + (step_size if i < steps - 1 else 0.5 * step_size) * grad
    return x, p, log_p, grad


@dataclass(frozen=True)
class HMC:
    r"""Hamiltonian Monte Carlo with a unit mass matrix.

    Each transition draws momenta :math:`p \sim \mathcal{N}(0, I)`, runs :math:`L`
    leapfrog steps from :math:`(x, p)` to :math:`(y, q)` and accepts :math:`y` with
    probability

    .. math:: \alpha = \min(1, \exp(H(x, p) - H(y, q))), \quad
        H(x, p) = -\log \tilde\pi(x) + \tfrac12 \|p\|^2 .

    Tune :math:`\epsilon` with :func:`probgen.samplers.dual_averaging`, which aims by
    default at an acceptance rate of 0.65, optimal for high-dimensional Gaussian-like
    targets (Beskos et al., 2013).

    Arguments:
        step_size: The leapfrog step :math:`\epsilon` (a float, or a 0-d tensor as
            adaptation returns).
        steps: The number of leapfrog steps :math:`L` per transition.
        jitter: Each chain's step is drawn uniformly in :math:`[(1 - j) \epsilon, (1 + j)
            \epsilon]` at every transition (Neal, 2011, section 5.4.2), which keeps a
            fixed trajectory length from resonating with the target's periods.

    References:
        | Hybrid Monte Carlo (Duane et al., 1987)
        | MCMC using Hamiltonian dynamics (Neal, 2011)
        | https://arxiv.org/abs/1206.1901
        | Optimal tuning of the hybrid Monte Carlo algorithm (Beskos et al., 2013)
        | https://arxiv.org/abs/1001.4460

    Example:
        >>> from probgen.samplers import run_chain
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> chain = run_chain(HMC(0.3, steps=5), torch.zeros(500, 2), log_p, steps=20)
        >>> 0.8 < chain.accept_prob.mean().item() <= 1.0
        True
    """

    step_size: float | Tensor = 0.1
    steps: int = 10
    jitter: float = 0.0
    # What step-size adaptation aims at by default (Beskos et al., 2013).
    optimal_accept: ClassVar[float] = 0.65

    def __post_init__(self) -> None:
        _check_step_size(self.step_size)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"expected steps to be an int >= 1, got {self.steps!r}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"expected jitter in [0, 1), got {self.jitter}")

    def init(self, x: Tensor, target: LogDensity) -> KernelState:
        log_p, grad = value_and_grad(target, x)
        return KernelState(x, log_p, grad, torch.ones_like(log_p))

    def step(
        self, state: KernelState, target: LogDensity, generator: torch.Generator | None = None
    ) -> KernelState:
        x, log_p, grad = state.x, state.log_p, state.grad
        p = _randn(x, generator)
        step = self.step_size
        if self.jitter:
            # Each chain's own step, uniform in (1 -+ jitter) step_size: trajectories of
            # one fixed length can resonate with the target's periods and barely move.
            u = torch.rand(log_p.shape, generator=generator, dtype=x.dtype, device=x.device)
            u = u.reshape(log_p.shape + (1,) * (x.dim() - log_p.dim()))
            step = step * (1 + self.jitter * (2 * u - 1))
        y, q, log_q, grad_y = leapfrog(x, p, grad, target, step, self.steps)
        # -H(y, q) + H(x, p): the energy error of the integrator.
        delta = log_q - log_p - 0.5 * _event_sum(q**2 - p**2, log_p)
        log_alpha = _log_accept(delta)
        accept = log_uniform(log_p, generator) < log_alpha
        return KernelState(
            _where(accept, y, x),
            torch.where(accept, log_q, log_p),
            _where(accept, grad_y, grad),
            log_alpha.exp(),
        )
