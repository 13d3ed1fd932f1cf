r"""Langevin kernels: unadjusted (ULA) and Metropolis-adjusted (MALA).

Both discretise the Langevin diffusion :math:`dX = \nabla \log \pi(X) dt + \sqrt 2 dW`,
whose stationary law is :math:`\pi`, with the Euler-Maruyama step

.. math:: y = x + \tau \nabla \log \tilde\pi(x) + \sqrt{2 \tau} \xi ,
    \quad \xi \sim \mathcal{N}(0, I) .

ULA keeps every step: it is cheap and biased by :math:`O(\tau)`. On :math:`\pi =
\mathcal{N}(0, s^2)` the step is the autoregression :math:`y = (1 - \tau / s^2) x +
\sqrt{2 \tau} \xi`, whose stationary variance :math:`v` solves :math:`v = (1 - \tau /
s^2)^2 v + 2 \tau`:

.. math:: v = \frac{s^2}{1 - \tau / (2 s^2)} > s^2 \qquad (0 < \tau < 2 s^2) .

MALA accepts or rejects the step as a Metropolis-Hastings proposal, which removes the
bias: :math:`\pi` is exactly invariant.
"""

from __future__ import annotations

__all__ = ["ULA", "MALA"]

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


@dataclass(frozen=True)
class ULA:
    r"""The unadjusted Langevin algorithm (every proposal accepted).

    Short runs of it are how energy-based models are usually trained and sampled (Du and
    Mordatch, 2019); its stationary law differs from the target by :math:`O(\tau)` (see
    the module docstring for the Gaussian case).

    Arguments:
        step_size: The time step :math:`\tau` (a float, or a 0-d tensor as
            adaptation returns).

    References:
        | Exponential convergence of Langevin distributions and their discrete
          approximations (Roberts and Tweedie, 1996)
        | Bayesian Learning via Stochastic Gradient Langevin Dynamics (Welling and Teh, 2011)

    Example:
        >>> from probgen.samplers import run_chain
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> run_chain(ULA(0.1), torch.zeros(10, 2), log_p, steps=5).samples.shape
        torch.Size([5, 10, 2])
    """

    step_size: float | Tensor = 0.01

    def __post_init__(self) -> None:
        _check_step_size(self.step_size)

    def init(self, x: Tensor, target: LogDensity) -> KernelState:
        log_p, grad = value_and_grad(target, x)
        return KernelState(x, log_p, grad, torch.ones_like(log_p))

    def step(
        self, state: KernelState, target: LogDensity, generator: torch.Generator | None = None
    ) -> KernelState:
        tau = self.step_size
        noise = _randn(state.x, generator)
        y = state.x + tau * state.grad + (2 * tau) ** 0.5 * noise
        log_p, grad = value_and_grad(target, y)
        return KernelState(y, log_p, grad, state.accept_prob)


@dataclass(frozen=True)
class MALA:
    r"""The Metropolis-adjusted Langevin algorithm.

    The Langevin step :math:`y \sim q(y | x) = \mathcal{N}(x + \tau \nabla \log
    \tilde\pi(x), 2 \tau I)` is accepted with probability

    .. math:: \alpha = \min\left(1, \frac{\tilde\pi(y) q(x | y)}{\tilde\pi(x) q(y | x)}
        \right), \quad \log q(y | x) = -\frac{\| y - x - \tau \nabla \log \tilde\pi(x)
        \|^2}{4 \tau} + \text{const} .

    An acceptance rate near 0.574 is optimal for high-dimensional Gaussian-like targets.

    Arguments:
        step_size: The time step :math:`\tau` (a float, or a 0-d tensor as
            adaptation returns).

    References:
        | Exponential convergence of Langevin distributions and their discrete
          approximations (Roberts and Tweedie, 1996)
        | Optimal scaling of discrete approximations to Langevin diffusions (Roberts and
          Rosenthal, 1998)

    Example:
        >>> from probgen.samplers import run_chain
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> chain = run_chain(MALA(0.5), torch.zeros(1000, 2), log_p, steps=50)
        >>> 0.5 < chain.accept_prob.mean().item() < 1.0
        True
    """

    step_size: float | Tensor = 0.01
    # What step-size adaptation aims at by default (Roberts and Rosenthal, 1998).
    optimal_accept: ClassVar[float] = 0.574

    def __post_init__(self) -> None:
        _check_step_size(self.step_size)

    def init(self, x: Tensor, target: LogDensity) -> KernelState:
        log_p, grad = value_and_grad(target, x)
        return KernelState(x, log_p, grad, torch.ones_like(log_p))

    def step(
        self, state: KernelState, target: LogDensity, generator: torch.Generator | None = None
    ) -> KernelState:
        tau = self.step_size
        x, log_p, grad = state.x, state.log_p, state.grad
        y = x + tau * grad + (2 * tau) ** 0.5 * _randn(x, generator)
        log_q, grad_y = value_and_grad(target, y)
        # log q(x | y) - log q(y | x), the Gaussian proposals' normalisers cancelling.
        forward = _event_sum((y - x - tau * grad) ** 2, log_p)
        backward = _event_sum((x - y - tau * grad_y) ** 2, log_p)
        log_alpha = _log_accept(log_q - log_p + (forward - backward) / (4 * tau))
        accept = log_uniform(log_p, generator) < log_alpha
        return KernelState(
            _where(accept, y, x),
            torch.where(accept, log_q, log_p),
            _where(accept, grad_y, grad),
            log_alpha.exp(),
        )
