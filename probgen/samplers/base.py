r"""The kernel protocol: explicit state, immutable hyper-parameters, many chains at once.

A Markov kernel :math:`K(x' | x)` leaving a target :math:`\pi(x) \propto \exp \log
\tilde\pi(x)` invariant is a small frozen dataclass of hyper-parameters (a step size, a
number of leapfrog steps) with two methods,

.. code-block:: python

    state = kernel.init(x, target)                # KernelState of the chains at x
    state = kernel.step(state, target, generator)  # one transition of every chain

where ``target`` is the log-density :math:`\log \tilde\pi` (possibly unnormalised), a
callable mapping ``x`` with shape :math:`(*C, *E)` to shape :math:`(*C,)`: the leading
dimensions are independent chains, as many as fit in memory. Nothing is hidden in the
kernel: the state is a :class:`KernelState` tuple, accept / reject is a tensor
``where`` (no ``.item()``, no host-device synchronisation per step), and adaptation
returns a *new* kernel (see :mod:`probgen.samplers.adaptation`). :func:`run_chain` is the
only loop.
"""

from __future__ import annotations

__all__ = [
    "LogDensity",
    "KernelState",
    "Kernel",
    "Chain",
    "run_chain",
    "value_and_grad",
    "log_uniform",
]

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

LogDensity = Callable[[Tensor], Tensor]
r"""A log-density :math:`x \mapsto \log \tilde\pi(x)`, from shape :math:`(*C, *E)` to
:math:`(*C,)`, normalised or not."""


class KernelState(NamedTuple):
    r"""The state of a batch of chains.

    Attributes:
        x: The current points, with shape :math:`(*C, *E)`.
        log_p: Their log-density :math:`\log \tilde\pi(x)`, with shape :math:`(*C,)`.
        grad: Its gradient :math:`\nabla_x \log \tilde\pi(x)`, with shape
            :math:`(*C, *E)`, for kernels that use it (else ``None``).
        accept_prob: The Metropolis-Hastings acceptance probability of the last
            transition, with shape :math:`(*C,)` (ones for unadjusted and Gibbs kernels,
            and at ``init``).
    """

    x: Tensor
    log_p: Tensor
    grad: Tensor | None
    accept_prob: Tensor


class Kernel(Protocol):
    r"""A Markov kernel over a batch of chains (see the module docstring)."""

    def init(self, x: Tensor, target: Any) -> KernelState:
        r"""The state of chains at ``x`` with shape :math:`(*C, *E)`."""
        ...

    def step(
        self, state: KernelState, target: Any, generator: torch.Generator | None = None
    ) -> KernelState:
        r"""One transition of every chain; random numbers come from ``generator``."""
        ...


class Chain(NamedTuple):
    r"""What :func:`run_chain` returns.

    Attributes:
        samples: The recorded points, with shape :math:`(T, *C, *E)`, :math:`T` the number
            of recorded steps (empty along :math:`T` when nothing was recorded).
        state: The final :class:`KernelState`.
        accept_prob: The mean acceptance probability of each chain over the steps after
            warm-up, with shape :math:`(*C,)`.
    """

    samples: Tensor
    state: KernelState
    accept_prob: Tensor


def run_chain(
    kernel: Kernel,
    x: Tensor | KernelState,
    target: Any,
    steps: int,
    *,
    warmup: int = 0,
    thin: int = 1,
    record: bool = True,
    generator: torch.Generator | None = None,
) -> Chain:
    r"""Runs a batch of chains: ``warmup`` discarded steps, then ``steps`` kept ones.

    Arguments:
        kernel: The kernel.
        x: The initial points with shape :math:`(*C, *E)`, or a state to continue from
            (persistent chains).
        target: The kernel's target, e.g. a :data:`LogDensity`.
        steps: The number of transitions after warm-up.
        warmup: The number of transitions first run and discarded (no adaptation: see
            :func:`probgen.samplers.dual_averaging` for that).
        thin: Every ``thin``-th kept state is recorded.
        record: Whether to record samples at all (only the final state is kept otherwise,
            which is what sampling thousands of chains needs).
        generator: The random number generator (the global one when ``None``).

    Returns:
        The :class:`Chain`: recorded samples with shape :math:`(\lfloor steps / thin
        \rfloor, *C, *E)`, the final state, and each chain's mean acceptance probability.

    Example:
        >>> from probgen.samplers import MALA
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> chain = run_chain(MALA(0.5), torch.zeros(100, 2), log_p, steps=20, thin=5)
        >>> chain.samples.shape, chain.accept_prob.shape
        (torch.Size([4, 100, 2]), torch.Size([100]))
    """
    if steps < 0 or warmup < 0 or thin < 1:
        raise ValueError(
            f"expected steps >= 0, warmup >= 0, thin >= 1, got {steps}, {warmup}, {thin}"
        )
    state = x if isinstance(x, KernelState) else kernel.init(x, target)
    for _ in range(warmup):
        state = kernel.step(state, target, generator)
    samples, accept = [], torch.zeros_like(state.log_p)
    for i in range(steps):
        state = kernel.step(state, target, generator)
        accept = accept + state.accept_prob
        if record and (i + 1) % thin == 0:
            samples.append(state.x)
    if samples:
        stacked = torch.stack(samples)
    else:
        stacked = state.x.new_empty((0, *state.x.shape))
    return Chain(stacked, state, accept / max(steps, 1))


def value_and_grad(target: LogDensity, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The log-density and its gradient at ``x``, detached.

    Chains are independent, so the gradient of the sum over chains is each chain's own
    gradient. Gradients are taken even under :func:`torch.no_grad` (sampling a model
    inside an evaluation loop), and only with respect to ``x``: a model's parameters get
    none.

    Arguments:
        target: The log-density.
        x: Points with shape :math:`(*C, *E)`.

    Returns:
        :math:`\log \tilde\pi(x)` with shape :math:`(*C,)` and its gradient with shape
        :math:`(*C, *E)`.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_p = target(x)
        (grad,) = torch.autograd.grad(log_p.sum(), x)
    return log_p.detach(), grad


def log_uniform(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r""":math:`\log u` for :math:`u \sim \mathcal{U}(0, 1)`, with the shape, dtype and device
    of ``like``."""
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    # rand() can return exactly 0: log 0 = -inf accepts every finite proposal, as it should.
    return u.log()


def _event_sum(t: Tensor, log_p: Tensor) -> Tensor:
    # Sums the event dimensions of t (shape (*C, *E)) down to the chains' shape (*C,).
    dims = t.dim() - log_p.dim()
    return t.sum(dim=tuple(range(-dims, 0))) if dims > 0 else t


def _where(accept: Tensor, a: Tensor, b: Tensor) -> Tensor:
    # Accept (shape (*C,)) broadcast over the event dimensions of a and b (shape (*C, *E)).
    return torch.where(accept.reshape(accept.shape + (1,) * (a.dim() - accept.dim())), a, b)


def _log_accept(delta: Tensor) -> Tensor:
    # A proposal whose density is NaN (it left the domain of the energy) is rejected.
    return torch.nan_to_num(delta, nan=-torch.inf).clamp(max=0.0)


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _check_step_size(step_size: float | Tensor) -> None:
    # A tensor step size comes from adaptation, one per step: checking its value would
    # synchronise with the device each time, so only its shape is checked.
    if isinstance(step_size, Tensor):
        if step_size.dim() != 0:
            raise ValueError(
                f"expected a 0-d tensor step_size, got shape {tuple(step_size.shape)}"
            )
    elif not step_size > 0:
        raise ValueError(f"expected step_size > 0, got {step_size}")
