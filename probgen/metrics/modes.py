r"""Mode coverage of samples from a mixture of well-separated modes (the 2-D toys).

The classic mode-collapse figure: how many of the modes the samples hit, and what share of
the samples is of high quality (within a few standard deviations of some mode).
"""

from __future__ import annotations

__all__ = ["ModeCoverage", "mode_coverage", "eight_gaussians_modes"]

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ModeCoverage:
    r"""Mode statistics of a sample.

    Attributes:
        modes: The number of modes hit (see :func:`mode_coverage`).
        total: The number of modes.
        fraction: ``modes / total``.
        high_quality: The share of samples within ``threshold`` standard deviations of
            their nearest mode.
        counts: The number of high-quality samples at each mode.
        kl: :math:`\mathrm{KL}(\hat q \| u)` between the distribution of high-quality
            samples over modes and the uniform one (0 when balanced; :math:`\log K` when
            collapsed on one mode), in nats.
    """

    modes: int
    total: int
    fraction: float
    high_quality: float
    counts: tuple[int, ...]
    kl: float


def mode_coverage(
    x: Tensor,
    means: Tensor,
    std: float,
    threshold: float = 3.0,
    min_share: float = 0.01,
) -> ModeCoverage:
    r"""Counts the modes hit by samples of a mixture of isotropic modes.

    A sample is of *high quality* when it lies within ``threshold`` standard deviations of
    its nearest mode; a mode is *hit* when at least ``min_share`` of the samples are high
    quality samples nearest to it (e.g. 25 of 2,500, where an even spread over 8 modes
    gives about 312 each).

    Arguments:
        x: Samples with shape :math:`(N, D)`.
        means: The modes' centres with shape :math:`(K, D)`.
        std: The modes' standard deviation.
        threshold: The radius of a mode, in standard deviations.
        min_share: The share of all samples a mode needs to count as hit.

    Returns:
        The :class:`ModeCoverage`.

    References:
        | Unrolled Generative Adversarial Networks (Metz et al., 2017), section 3.1
        | https://arxiv.org/abs/1611.02163
        | VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational Learning
          (Srivastava et al., 2017) https://arxiv.org/abs/1705.07761

    Example:
        >>> means, std = eight_gaussians_modes()
        >>> mode_coverage(means.repeat(10, 1), means, std).modes
        8
    """
    if x.dim() != 2 or means.dim() != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(
            f"expected x with shape (N, D) and means (K, D), got {tuple(x.shape)} and "
            f"{tuple(means.shape)}"
        )
    x = x.detach().to(torch.float64)
    means = means.to(x)
    d = torch.cdist(x, means)
    nearest, which = d.min(1)
    good = nearest <= threshold * std
    counts = torch.bincount(which[good], minlength=len(means))
    hit = int((counts >= max(1, math.ceil(min_share * len(x)))).sum())
    q = counts.double() / counts.sum().clamp_min(1)
    kl = float((q * (q.clamp_min(1e-300).log() + math.log(len(means)))).sum())
    return ModeCoverage(
        hit,
        len(means),
        hit / len(means),
        float(good.double().mean()),
        tuple(int(c) for c in counts),
        kl,
    )


def eight_gaussians_modes(radius: float = 4.0, scale: float = 0.5) -> tuple[Tensor, float]:
    r"""The means and standard deviation of :class:`probgen.data.toy.EightGaussians`,
    :math:`\mu_k = R(\cos \frac{k\pi}{4}, \sin \frac{k\pi}{4})`.

    Arguments:
        radius: The radius :math:`R` (the toy's default 4).
        scale: The standard deviation (the toy's default 0.5).

    Returns:
        The means with shape :math:`(8, 2)` (float64) and the standard deviation.
    """
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=-1), float(scale)
