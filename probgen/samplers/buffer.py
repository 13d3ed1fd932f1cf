r"""A replay buffer of persistent chains, for persistent contrastive divergence."""

from __future__ import annotations

__all__ = ["ReplayBuffer"]

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class ReplayBuffer:
    r"""A fixed-size store of chain states that persist across training steps.

    Each step draws ``n`` stored states uniformly (with replacement), replaces a fraction
    ``reinit`` of them by fresh draws of the initial distribution (so that the buffer
    keeps exploring, and modes the model forgot can come back), runs the kernel from
    them, and writes the results back where they came from. The state is explicit: a
    tensor :attr:`x` (``None`` until the first draw fills the buffer with fresh samples),
    saved and restored by :meth:`state_dict` / :meth:`load_state_dict`.

    Arguments:
        capacity: The number of stored states.
        reinit: The fraction of each draw replaced by fresh samples.

    References:
        | Training Restricted Boltzmann Machines using Approximations to the Likelihood
          Gradient (Tieleman, 2008)
        | Implicit Generation and Generalization in Energy-Based Models (Du and Mordatch,
          2019), section 3.1

    Example:
        >>> buffer = ReplayBuffer(100, reinit=0.05)
        >>> x, idx = buffer.draw(8, lambda k: torch.randn(k, 2))
        >>> buffer.update(idx, x + 1.0)
        >>> buffer.x.shape
        torch.Size([100, 2])
    """

    def __init__(self, capacity: int, reinit: float = 0.05) -> None:
        if capacity < 1:
            raise ValueError(f"expected capacity >= 1, got {capacity}")
        if not 0.0 <= reinit <= 1.0:
            raise ValueError(f"expected reinit in [0, 1], got {reinit}")
        self.capacity, self.reinit = capacity, reinit
        self.x: Tensor | None = None

    def __repr__(self) -> str:
        return f"ReplayBuffer(capacity={self.capacity}, reinit={self.reinit})"

    def draw(
        self, n: int, fresh: Callable[[int], Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Draws ``n`` chain starts.

        Arguments:
            n: The number of states.
            fresh: Draws ``k`` fresh states, shape :math:`(k, *E)`.
            generator: The random number generator of the indices and of the fresh mask.

        Returns:
            The states with shape :math:`(n, *E)` and their indices in the buffer.
        """
        if self.x is None:
            self.x = fresh(self.capacity).detach()
        idx = torch.randint(self.capacity, (n,), generator=generator).to(self.x.device)
        x = self.x[idx]
        mask = torch.rand(n, generator=generator) < self.reinit
        k = int(mask.sum())
        if k:
            x[mask.to(x.device)] = fresh(k).detach().to(x)
        return x, idx

    def update(self, idx: Tensor, x: Tensor) -> None:
        r"""Writes the chains' new states ``x`` (shape :math:`(n, *E)`) back at ``idx``."""
        if self.x is None:
            raise ValueError("the buffer is empty: draw from it first")
        self.x[idx] = x.detach().to(self.x)

    def state_dict(self) -> dict[str, Any]:
        r"""The buffer's contents, for a checkpoint."""
        return {"x": self.x, "capacity": self.capacity, "reinit": self.reinit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r"""Restores what :meth:`state_dict` saved."""
        self.capacity, self.reinit, self.x = state["capacity"], state["reinit"], state["x"]
