r"""Step-size adaptation by dual averaging: a function that returns a *new* kernel.

Kernels are immutable, so adaptation never changes one in place: it runs the chains with
a sequence of kernels ``dataclasses.replace(kernel, step_size=...)`` and returns the last,
with the state the chains reached. Any kernel with a ``step_size`` field adapts
(:class:`~probgen.samplers.RandomWalk`, :class:`~probgen.samplers.MALA`,
:class:`~probgen.samplers.HMC`); one step size is shared by every chain and driven by
their mean acceptance probability.
"""

from __future__ import annotations

__all__ = ["DualAveraging", "dual_averaging"]

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .base import Kernel, KernelState, run_chain


class _Averages(NamedTuple):
    t: int
    h_bar: Tensor
    log_step: Tensor
    log_step_bar: Tensor


@dataclass(frozen=True)
class DualAveraging:
    r"""Nesterov's dual averaging of the step size, as in the No-U-Turn sampler.

    After :math:`t` transitions with acceptance probabilities :math:`\alpha_i`,

    .. math::
        \bar H_t = \left(1 - \frac{1}{t + t_0}\right) \bar H_{t-1}
            + \frac{\delta - \alpha_t}{t + t_0}, \quad
        \log \epsilon_t = \mu - \frac{\sqrt t}{\gamma} \bar H_t, \\
        \log \bar\epsilon_t = t^{-\kappa} \log \epsilon_t
            + (1 - t^{-\kappa}) \log \bar\epsilon_{t-1},

    with :math:`\mu = \log(10 \epsilon_0)`; the chains move with :math:`\epsilon_t` and
    the final kernel gets :math:`\bar\epsilon_t` (Hoffman and Gelman, 2014, Algorithm 5).
    The state of the recursion is explicit (:meth:`init`, :meth:`update`) so that an
    online loop (the Pyro adapter's warm-up) can drive it too.

    Arguments:
        accept: The target acceptance probability :math:`\delta`.
        gamma: The shrinkage :math:`\gamma`.
        t0: The early-iteration damping :math:`t_0`.
        kappa: The averaging exponent :math:`\kappa`.

    References:
        | The No-U-Turn Sampler (Hoffman and Gelman, 2014), section 3.2
        | https://arxiv.org/abs/1111.4246
    """

    accept: float = 0.8
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def __post_init__(self) -> None:
        if not 0 < self.accept < 1:
            raise ValueError(f"expected a target acceptance in (0, 1), got {self.accept}")

    def init(self, step_size: float | Tensor, like: Tensor) -> tuple[_Averages, Tensor]:
        r"""The recursion's state and :math:`\mu`, on the device and dtype of ``like`` (the
        chains' log-densities), so that no update synchronises with the host."""
        log_step = torch.as_tensor(step_size).to(like).log()
        return _Averages(0, torch.zeros_like(log_step), log_step, log_step), log_step + math.log(
            10
        )

    def update(self, avg: _Averages, mu: Tensor, accept_prob: Tensor) -> _Averages:
        r"""One step of the recursion given the acceptance probabilities of a transition."""
        t = avg.t + 1
        w = 1.0 / (t + self.t0)
        h_bar = (1 - w) * avg.h_bar + w * (self.accept - accept_prob.mean().to(avg.h_bar))
        log_step = mu - math.sqrt(t) / self.gamma * h_bar
        eta = t ** (-self.kappa)
        return _Averages(t, h_bar, log_step, eta * log_step + (1 - eta) * avg.log_step_bar)


def dual_averaging(
    kernel: Any,
    x: Tensor | KernelState,
    target: Any,
    steps: int,
    *,
    schedule: DualAveraging | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Kernel, KernelState]:
    r"""Adapts a kernel's ``step_size`` over ``steps`` transitions of the chains.

    Arguments:
        kernel: A kernel with a ``step_size`` field, its initial step :math:`\epsilon_0`.
        x: The chains' initial points with shape :math:`(*C, *E)`, or their state.
        target: The kernel's target.
        steps: The number of adaptation transitions (warm-up: discard them).
        schedule: The dual-averaging constants and the target acceptance (default: the
            kernel's ``optimal_accept``, 0.234 for random walks, 0.574 for MALA, 0.65
            for HMC).
        generator: The random number generator.

    Returns:
        The adapted kernel (a new one, ``step_size`` a float) and the chains' state.

    Example:
        >>> from probgen.samplers import HMC
        >>> log_p = lambda x: -(x**2 / torch.tensor([1.0, 0.01])).sum(-1) / 2
        >>> kernel, state = dual_averaging(HMC(1.0, steps=5), torch.zeros(200, 2), log_p, 100)
        >>> 0.01 < kernel.step_size < 0.3
        True
    """
    if not any(f.name == "step_size" for f in dataclasses.fields(kernel)):
        raise ValueError(f"{type(kernel).__name__} has no step_size to adapt")
    schedule = schedule or DualAveraging(getattr(kernel, "optimal_accept", 0.8))
    state = x if isinstance(x, KernelState) else kernel.init(x, target)
    avg, mu = schedule.init(kernel.step_size, state.log_p)
    for _ in range(steps):
        moving = dataclasses.replace(kernel, step_size=avg.log_step.exp())
        state = run_chain(moving, state, target, 1, record=False, generator=generator).state
        avg = schedule.update(avg, mu, state.accept_prob)
    step_size = float(avg.log_step_bar.exp()) if steps else kernel.step_size
    return dataclasses.replace(kernel, step_size=step_size), state
