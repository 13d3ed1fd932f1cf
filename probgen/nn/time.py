r"""Networks of time: a sinusoidal time embedding and an MLP vector field :math:`v(x, t, c)`.

Continuous-time families (ODE flows, flow matching, diffusion) all need a network that
reads a state :math:`x`, a time :math:`t \in [0, 1]` and an optional context :math:`c`.
"""

from __future__ import annotations

__all__ = ["TimeEmbedding", "TimeMLP"]

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .mlp import MLP


class TimeEmbedding(nn.Module):
    r"""Sinusoidal features of a time :math:`t`,

    .. math:: e(t) = (t, \sin(2 \pi f_1 t), \cos(2 \pi f_1 t), \dots,
        \sin(2 \pi f_K t), \cos(2 \pi f_K t))

    with geometric frequencies :math:`f_k` from 1 to ``max_frequency``. The raw time is
    kept as the first feature so that small networks can also use it linearly. Keep the
    frequencies low for ODE fields: every oscillation in :math:`t` costs solver steps.

    Arguments:
        frequencies: The number of frequencies :math:`K`.
        max_frequency: The highest frequency :math:`f_K`.

    Example:
        >>> TimeEmbedding(4)(torch.rand(3)).shape
        torch.Size([3, 9])
    """

    def __init__(self, frequencies: int = 4, max_frequency: float = 4.0) -> None:
        super().__init__()
        f = torch.logspace(0.0, math.log10(max_frequency), frequencies) if frequencies else None
        self.register_buffer("frequencies", 2 * math.pi * f if f is not None else torch.zeros(0))
        self.features = 1 + 2 * frequencies

    def forward(self, t: Tensor) -> Tensor:
        r"""
        Arguments:
            t: Times with shape :math:`(*)`.

        Returns:
            Features with shape :math:`(*, 1 + 2K)`.
        """
        angles = t[..., None] * self.frequencies.to(t.dtype)
        return torch.cat([t[..., None], angles.sin(), angles.cos()], dim=-1)


class TimeMLP(nn.Module):
    r"""An MLP vector field :math:`v(x, t, c) = \mathrm{MLP}([x, e(t), c])`.

    Arguments:
        features: The number of state features :math:`D`.
        context: The number of context features :math:`C` (0 when unconditional).
        hidden: The widths of the hidden layers.
        activation: The activation constructor (smooth ones keep ODE solvers cheap).
        frequencies: The number of time-embedding frequencies (0: the raw time only;
            high frequencies make the field fast in :math:`t` and adaptive solvers slow).
        out_features: The number of outputs (default :math:`D`).

    Example:
        >>> v = TimeMLP(2, context=3, hidden=(16,))
        >>> v(torch.randn(5, 2), torch.tensor(0.5), torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        activation: type[nn.Module] = nn.SiLU,
        frequencies: int = 0,
        out_features: int | None = None,
    ) -> None:
        super().__init__()
        self.features, self.context = features, context
        self.embedding = TimeEmbedding(frequencies)
        out = features if out_features is None else out_features
        self.net = MLP(features + self.embedding.features + context, out, hidden, activation)

    def forward(self, x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            x: States with shape :math:`(*, D)`.
            t: Times, a scalar or with a shape that broadcasts to :math:`(*)`.
            c: A context with shape :math:`(*, C)`, or ``None``.

        Returns:
            Velocities with shape :math:`(*, D)`.
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        parts = [x, self.embedding(t)]
        if self.context:
            if c is None:
                raise ValueError(f"this field expects a context with shape (*, {self.context})")
            parts.append(c.expand(*x.shape[:-1], self.context))
        return self.net(torch.cat(parts, dim=-1))
