r"""Block Gibbs sampling for bipartite models (restricted Boltzmann machines)."""

from __future__ import annotations

__all__ = ["Bipartite", "BlockGibbs"]

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .base import KernelState


class Bipartite(Protocol):
    r"""A joint :math:`p(v, h)` whose two blocks are conditionally independent given each
    other, sampled through its conditionals; calling it gives the marginal
    :math:`\log \tilde p(v)` (minus the free energy)."""

    def __call__(self, v: Tensor) -> Tensor:
        r"""The unnormalised marginal log-density of :math:`v` with shape :math:`(*C, *E)`."""
        ...

    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws :math:`h \sim p(h | v)`."""
        ...

    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws :math:`v \sim p(v | h)`."""
        ...


@dataclass(frozen=True)
class BlockGibbs:
    r"""Block Gibbs sampling: :math:`h \sim p(h | v)`, then :math:`v' \sim p(v | h)`.

    Each half step samples a whole block at once, exactly, so the joint :math:`p(v, h)`
    and its marginal :math:`p(v)` are invariant and every "proposal" is accepted. The
    chains' state is the visible block :math:`v`.

    Arguments:
        sweeps: The number of :math:`v \to h \to v` sweeps per transition (CD-k uses
            :math:`k` of them).

    References:
        | Training Products of Experts by Minimizing Contrastive Divergence (Hinton, 2002)

    Example:
        >>> import probgen as pg
        >>> from probgen.samplers import run_chain
        >>> rbm = pg.energy.RBM(6, 3)()
        >>> chain = run_chain(BlockGibbs(), torch.zeros(100, 6), rbm.target, steps=4)
        >>> chain.samples.shape
        torch.Size([4, 100, 6])
    """

    sweeps: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.sweeps, int) or self.sweeps < 1:
            raise ValueError(f"expected sweeps to be an int >= 1, got {self.sweeps!r}")

    def init(self, x: Tensor, target: Bipartite) -> KernelState:
        with torch.no_grad():
            log_p = target(x)
        return KernelState(x, log_p, None, torch.ones_like(log_p))

    def step(
        self, state: KernelState, target: Bipartite, generator: torch.Generator | None = None
    ) -> KernelState:
        v = state.x
        with torch.no_grad():
            for _ in range(self.sweeps):
                v = target.sample_visible(target.sample_hidden(v, generator), generator)
            log_p = target(v)
        return KernelState(v, log_p, None, state.accept_prob)
