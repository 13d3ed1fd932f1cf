r"""Glow: a multi-scale flow over images of shape :math:`(C, H, W)`.

Each level squeezes space into channels, applies ``steps`` flow steps (activation
normalisation, invertible :math:`1 \times 1` convolution, affine coupling over channels)
and factors half the channels out to the base; the last level factors out everything.
See :mod:`probgen.transforms.image` for the multi-scale design: every level is a
shape-preserving map of :math:`(C, H, W)`, so a Glow is a plain
:class:`~probgen.distributions.flow.Flow` over a standard normal with event shape
:math:`(C, H, W)`.
"""

from __future__ import annotations

__all__ = ["Glow"]

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch.distributions import Transform

from ..lazy import LazyTransform, UnconditionalDistribution
from ..transforms import (
    ActNorm,
    Conv1x1,
    ConvCoupling,
    FactorOut,
    MonotonicAffineTransform,
    SqueezeTransform,
)
from .flow import Flow
from .simple import DiagNormal


class Glow(Flow):
    r"""A lazy Glow flow over images with shape :math:`(C, H, W)`.

    In the scoring direction (data to noise), level :math:`\ell = 1, \dots, L` is

    1. squeeze :math:`(C_\ell, H_\ell, W_\ell) \to (4 C_\ell, H_\ell / 2, W_\ell / 2)`;
    2. ``steps`` times: actnorm, invertible :math:`1 \times 1` convolution, affine coupling
       (Kingma & Dhariwal, 2018, table 1);
    3. except at the last level: the half of the channels about to leave is normalised
       by an affine coupling conditioned on the half that stays (Glow's learned prior of
       the factored-out latents), then leaves to the base; level :math:`\ell + 1` acts on
       the other :math:`2 C_\ell` channels;
    4. unsqueeze back to :math:`(C_\ell, H_\ell, W_\ell)`, so that the latent keeps the
       data's layout.

    The generative direction runs the inverse of each part in reverse order. Every
    coupling network starts at zero and every actnorm initialises itself on the first
    batch it scores, so a fresh Glow is data-normalising from the first step.

    :math:`H` and :math:`W` must be divisible by :math:`2^L`. For data in :math:`[0, 1]`
    push the flow through :class:`~probgen.transforms.LogitTransform`,
    ``NormalizingFlow(glow(), LogitTransform())``; for integer levels use
    :class:`~probgen.distributions.dequantized.Dequantization`.

    Arguments:
        shape: The image shape :math:`(C, H, W)`.
        context: The number of context features (0 when unconditional), given to every
            coupling network as constant feature maps.
        levels: The number of levels :math:`L`.
        steps: The number of flow steps per level.
        hidden: The channel width of the coupling networks' hidden layers.
        univariate: The elementwise transform of the couplings (affine by default).
        shapes: The trailing shapes of its parameters, per pixel.
        kernel_size: The size of the coupling networks' first and last kernels.
        activation: The coupling networks' activation constructor.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> glow = Glow((1, 8, 8), levels=2, steps=2, hidden=16)
        >>> d = glow()
        >>> x = d.sample((5,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([5, 1, 8, 8]), torch.Size([5]))
    """

    def __init__(
        self,
        shape: Sequence[int],
        context: int = 0,
        levels: int = 2,
        steps: int = 4,
        hidden: int = 64,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        shape = tuple(shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"expected an image shape (C, H, W), got {shape}")
        if levels < 1 or steps < 1:
            raise ValueError(f"expected levels >= 1 and steps >= 1, got {levels} and {steps}")
        if context < 0:
            raise ValueError(f"expected context >= 0, got {context}")
        C, H, W = shape
        if H % 2**levels or W % 2**levels:
            raise ValueError(
                f"{levels} levels need a height and width divisible by {2**levels}, "
                f"got shape {shape}"
            )

        def coupling(channels: int, mask: torch.Tensor | None = None) -> ConvCoupling:
            return ConvCoupling(
                channels,
                context,
                mask,
                univariate,
                shapes,
                (hidden, hidden),
                kernel_size,
                activation,
            )

        def level(channels: int, depth: int) -> list[LazyTransform | Transform]:
            # One level in generative order: the reverse of the scoring order above.
            c4 = 4 * channels
            parts: list[LazyTransform | Transform] = [SqueezeTransform()]
            if depth < levels:
                parts.append(FactorOut(level(2 * channels, depth + 1), 2 * channels))
                parts.append(coupling(c4, torch.arange(c4) < 2 * channels))
            for _ in range(steps):
                parts += [coupling(c4), Conv1x1(c4), ActNorm(c4)]
            parts.append(SqueezeTransform().inv)
            return parts

        base = UnconditionalDistribution(
            DiagNormal, torch.zeros(shape), torch.ones(shape), ndims=3
        )
        super().__init__(level(C, 1), base)
        self.shape, self.levels, self.steps = shape, levels, steps
