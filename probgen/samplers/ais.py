r"""Annealed importance sampling (AIS) of log-normalising constants.

Given a normalised :math:`p_0` (or one with known :math:`Z_0`), an unnormalised target
:math:`f_1` and a path of unnormalised densities :math:`f_\beta` between them, AIS moves
chains through :math:`\beta_0 = 0 < \beta_1 < \dots < \beta_K = 1`:

1. draw :math:`x_0 \sim p_0`;
2. for :math:`k = 1, \dots, K`: add :math:`\log f_{\beta_k}(x_{k-1}) - \log
   f_{\beta_{k-1}}(x_{k-1})` to :math:`\log w`, then move :math:`x_{k-1} \to x_k` by a
   kernel that leaves :math:`f_{\beta_k}` invariant.

Then :math:`\mathbb{E}[w] = Z_1 / Z_0` exactly, whatever the schedule and the kernel's
mixing (they only change the variance): :math:`\hat Z_1 = Z_0 \frac1N \sum_i w_i`.

References:
    | Annealed Importance Sampling (Neal, 2001)
    | https://arxiv.org/abs/physics/9803008
    | On the Quantitative Analysis of Deep Belief Networks (Salakhutdinov and Murray, 2008)
"""

from __future__ import annotations

__all__ = ["AIS", "Geometric", "geometric_path", "sigmoid_schedule", "ais"]

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .base import Kernel, LogDensity, run_chain
from .diagnostics import importance_ess


class AIS(NamedTuple):
    r"""The result of :func:`ais`.

    Attributes:
        log_z: The estimate :math:`\log \hat Z_1 = \log Z_0 + \log \frac1N \sum_i w_i`, with
            the batch shape :math:`B` (biased low by about ``stderr**2 / 2``: :math:`\hat Z_1`,
            not its log, is unbiased).
        stderr: Its delta-method standard error
            :math:`\sqrt{1 / \mathrm{ESS} - 1 / N}`, where
            :math:`\mathrm{Var}[w] / \mathbb{E}[w]^2 = N / \mathrm{ESS} - 1`.
        log_weights: The log-weights :math:`\log w_i`, with shape :math:`(N, *B)`.
        ess: Kish's effective sample size of the weights, in :math:`[1, N]`.
        x: The chains' final points, with shape :math:`(N, *B, *E)` (weighted samples of
            the target).
    """

    log_z: Tensor
    stderr: Tensor
    log_weights: Tensor
    ess: Tensor
    x: Tensor


@dataclass(frozen=True)
class Geometric:
    r"""The geometric mean :math:`\log f_\beta = (1 - \beta) \log p_0 + \beta \log f_1`.

    Arguments:
        log_p0: The log-density of the start :math:`p_0`.
        log_f1: The unnormalised log-density of the target :math:`f_1`.
        beta: The inverse temperature :math:`\beta \in [0, 1]`.
    """

    log_p0: LogDensity
    log_f1: LogDensity
    beta: float | Tensor

    def __call__(self, x: Tensor) -> Tensor:
        # Either end is evaluated alone, so a target undefined at some x does not matter
        # before it enters the path.
        if isinstance(self.beta, float) and self.beta in (0.0, 1.0):
            return self.log_p0(x) if self.beta == 0.0 else self.log_f1(x)
        return (1 - self.beta) * self.log_p0(x) + self.beta * self.log_f1(x)


def geometric_path(log_p0: LogDensity, log_f1: LogDensity) -> Callable[[float], Geometric]:
    r"""The geometric path :math:`\beta \mapsto f_\beta = p_0^{1 - \beta} f_1^\beta`.

    Arguments:
        log_p0: The log-density of the start :math:`p_0`.
        log_f1: The unnormalised log-density of the target :math:`f_1`.

    Returns:
        A function from :math:`\beta` to the log-density :math:`\log f_\beta`.
    """
    return lambda beta: Geometric(log_p0, log_f1, beta)


def sigmoid_schedule(steps: int, sharpness: float = 4.0) -> Tensor:
    r"""Inverse temperatures :math:`0 = \beta_0 < \dots < \beta_K = 1` on a rescaled sigmoid.

    .. math:: \beta_k = \frac{\sigma(\delta (2k / K - 1)) - \sigma(-\delta)}
        {\sigma(\delta) - \sigma(-\delta)}

    Denser at both ends than a linear schedule, where the log-density changes fastest.

    Arguments:
        steps: The number of intermediate transitions :math:`K \geq 1`.
        sharpness: :math:`\delta`.

    Returns:
        The :math:`K + 1` inverse temperatures, in float64.

    References:
        | Annealing between distributions by averaging moments (Grosse et al., 2013)
    """
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    s = torch.sigmoid(sharpness * torch.linspace(-1, 1, steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


def ais(
    path: Callable[[float], Any],
    x: Tensor,
    kernel: Kernel,
    betas: int | Tensor,
    *,
    log_z0: float | Tensor = 0.0,
    steps_per_beta: int = 1,
    generator: torch.Generator | None = None,
) -> AIS:
    r"""Estimates :math:`\log Z_1` of the path's end by annealed importance sampling.

    Arguments:
        path: A function from :math:`\beta` to the kernel's target at :math:`\beta`
            (e.g. :func:`geometric_path`, or an RBM's ``ais_path``); calling a target gives
            its unnormalised log-density :math:`\log f_\beta`, and :math:`f_0` is
            normalised up to :math:`Z_0`.
        x: Exact samples of :math:`p_0 = f_0 / Z_0`, one per chain, with shape
            :math:`(N, *B, *E)`: :math:`N` chains for each of the targets' batch
            elements :math:`B` (none for one target).
        kernel: A kernel leaving each :math:`f_\beta` invariant (MALA, HMC, random walk;
            block Gibbs for RBMs). ULA is biased: its estimate is not consistent.
        betas: The inverse temperatures, increasing from 0 to 1, or their number
            :math:`K` for :func:`sigmoid_schedule`.
        log_z0: :math:`\log Z_0` (0 for a normalised :math:`p_0`), a float or a tensor with
            shape :math:`B`.
        steps_per_beta: Kernel transitions at each intermediate temperature.
        generator: The random number generator of the transitions.

    Returns:
        The :class:`AIS` estimate, its standard error, the weights and their ESS.

    Example:
        >>> from probgen.samplers import HMC
        >>> log_p0 = lambda x: -(x**2).sum(-1) / 2 - math.log(2 * math.pi)
        >>> log_f1 = lambda x: -((x - 1) ** 2).sum(-1) / (2 * 0.25)  # Z = 2 pi 0.25
        >>> est = ais(geometric_path(log_p0, log_f1), torch.randn(500, 2), HMC(0.2, 5), 50)
        >>> abs(est.log_z.item() - math.log(2 * math.pi * 0.25)) < 5 * est.stderr.item() + 0.02
        True
    """
    if isinstance(betas, int):
        betas = sigmoid_schedule(betas)
    betas = [float(b) for b in betas]
    if len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"expected inverse temperatures from 0 to 1, got {betas}")
    if any(b <= a for a, b in zip(betas[:-1], betas[1:], strict=True)):
        raise ValueError("expected strictly increasing inverse temperatures")
    state = kernel.init(x, path(betas[0]))
    if state.log_p.dim() < 1:
        raise ValueError(f"expected chains along the first dimension of x, got {tuple(x.shape)}")
    log_w = torch.zeros_like(state.log_p)
    for beta in betas[1:]:
        target = path(beta)
        fresh = kernel.init(state.x, target)
        log_w = log_w + (fresh.log_p - state.log_p)
        state = run_chain(
            kernel, fresh, target, steps_per_beta, record=False, generator=generator
        ).state
    n = log_w.shape[0]  # the chains; the other dimensions are the targets' batch
    ess = importance_ess(log_w)
    log_z = log_w.logsumexp(0) - math.log(n) + log_z0
    stderr = (1 / ess - 1 / n).clamp(min=0).sqrt()
    return AIS(log_z, stderr, log_w, ess, state.x)
