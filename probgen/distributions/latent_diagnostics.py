r"""Diagnostics of variational autoencoders: what the latent code holds.

- :func:`kl_per_dimension`: the KL term of the ELBO, split over latent dimensions;
- :func:`active_units`: Burda et al.'s count of the latent dimensions the data move,
  with a :class:`PosteriorCollapseWarning` when most are inactive;
- :func:`reconstruct`, :func:`interpolate`, :func:`traverse`: decoded means as tensors,
  ready for an image grid.

Every function runs without gradients, on the VAE as it is (eval mode is the caller's
choice).
"""

from __future__ import annotations

__all__ = [
    "ActiveUnits",
    "PosteriorCollapseWarning",
    "kl_per_dimension",
    "active_units",
    "reconstruct",
    "interpolate",
    "traverse",
]

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .latent import VAE
from .simple import DiagNormal


class PosteriorCollapseWarning(UserWarning):
    r"""Most latent units are inactive: the posterior of those equals the prior."""


class ActiveUnits(NamedTuple):
    r"""The result of :func:`active_units`.

    Attributes:
        count: The number of active units.
        variance: :math:`\mathrm{Cov}_x(\mathbb{E}_{q(z | x)}[z_u])` of each unit, shape
            :math:`(L,)`.
        threshold: The activity threshold.
    """

    count: int
    variance: Tensor
    threshold: float


@torch.no_grad()
def kl_per_dimension(vae: VAE, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The KL term of the ELBO split over latent dimensions, averaged over the data,

    .. math:: \mathrm{KL}_u = \frac{1}{N} \sum_i \mathrm{KL}(q(z_u | x_i, c_i) \,\|\,
        p(z_u | c_i)),

    in closed form for a factorised normal prior (the default); the sum over :math:`u` is
    the ELBO's KL. A unit whose KL is near zero carries no information about :math:`x`.

    Arguments:
        vae: A :class:`~probgen.latent.VAE` with a factorised normal prior.
        x: Data with shape :math:`(N, *E)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.

    Returns:
        The KL of each unit in nats, with shape :math:`(L,)`.

    Example:
        >>> from probgen.nn import ContextMLP
        >>> vae = VAE(ContextMLP(3, 4), ContextMLP(2, 6), latent=2, event_shape=3)
        >>> kl_per_dimension(vae, torch.randn(10, 3)).shape
        torch.Size([2])
    """
    q = vae.encode(x, c)
    p = vae.prior_distribution(c)
    if not isinstance(p, DiagNormal):
        raise ValueError(
            f"KL per dimension needs a factorised normal prior (DiagNormal), got "
            f"{type(p).__name__}: a flow or a mixture does not factorise over units"
        )
    var = (q.scale / p.scale).square()
    t = ((q.loc - p.loc) / p.scale).square()
    kl = 0.5 * (var + t - 1 - var.log())
    return kl.reshape(-1, vae.latent).mean(0)


@torch.no_grad()
def active_units(
    vae: VAE,
    x: Tensor,
    c: Tensor | None = None,
    threshold: float = 1e-2,
    warn: bool = True,
) -> ActiveUnits:
    r"""The number of active latent units (Burda et al., 2015, section 5.2),

    .. math:: A_u = \mathrm{Cov}_x\left(\mathbb{E}_{q(z | x)}[z_u]\right) > \delta ,

    the units whose posterior mean moves with the data. An inactive unit's posterior is
    (nearly) the prior whatever :math:`x`: it has collapsed. When fewer than half the
    units are active, a :class:`PosteriorCollapseWarning` is raised (unless ``warn`` is
    false).

    Arguments:
        vae: A :class:`~probgen.latent.VAE`.
        x: Data with shape :math:`(N, *E)`, :math:`N \geq 2`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        threshold: The threshold :math:`\delta` (0.01 in the paper, for unit-variance
            priors).
        warn: Whether to warn on posterior collapse.

    Returns:
        An :class:`ActiveUnits` ``(count, variance, threshold)``.

    References:
        | Importance Weighted Autoencoders (Burda et al., 2015)
        | https://arxiv.org/abs/1509.00519
    """
    mean = vae.encode(x, c).mean.reshape(-1, vae.latent)
    if mean.shape[0] < 2:
        raise ValueError(f"expected at least 2 data to measure a covariance, got {mean.shape[0]}")
    variance = mean.var(dim=0)
    count = int((variance > threshold).sum())
    if warn and 2 * count < vae.latent:
        warnings.warn(
            f"posterior collapse: {count} of {vae.latent} latent units are active "
            f"(Cov_x(E_q[z_u]) > {threshold}); the others' posteriors equal the prior. "
            "Consider a KL warm-up (pg.objectives.KLWarmup), a smaller beta, or a weaker "
            "decoder",
            PosteriorCollapseWarning,
            stacklevel=2,
        )
    return ActiveUnits(count, variance, threshold)


@torch.no_grad()
def reconstruct(vae: VAE, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The decoded mean at the posterior mean, :math:`\mathbb{E}[x | z = \mathbb{E}_q[z
    | x, c], c]`.

    Arguments:
        vae: A :class:`~probgen.latent.VAE`.
        x: Data with shape :math:`(*S, *E)`.
        c: Contexts with shape :math:`(*S, C)`, or ``None``.

    Returns:
        The reconstructions, with the shape of ``x``.
    """
    return vae.decode(vae.encode(x, c).mean, c).mean


@torch.no_grad()
def interpolate(
    vae: VAE, x0: Tensor, x1: Tensor, steps: int = 8, c: Tensor | None = None
) -> Tensor:
    r"""Decoded means along the straight line between two posterior means,

    .. math:: x_t = \mathbb{E}[x | z = (1 - t) \mu(x_0) + t \mu(x_1)], \quad
        t \in \{0, \frac{1}{T - 1}, \dots, 1\} .

    Arguments:
        vae: A :class:`~probgen.latent.VAE`.
        x0: The start, with shape :math:`(*S, *E)`.
        x1: The end, with the shape of ``x0``.
        steps: The number of points :math:`T \geq 2`.
        c: Contexts with shape :math:`(*S, C)`, or ``None`` (one context for the line).

    Returns:
        The decoded means, with shape :math:`(T, *S, *E)`.
    """
    if steps < 2:
        raise ValueError(f"expected steps >= 2, got {steps}")
    z0, z1 = vae.encode(x0, c).mean, vae.encode(x1, c).mean
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
    t = t.reshape(-1, *[1] * z0.dim())
    return vae.decode((1 - t) * z0 + t * z1, c).mean


@torch.no_grad()
def traverse(
    vae: VAE,
    x: Tensor,
    dims: Sequence[int] | None = None,
    values: Tensor | None = None,
    c: Tensor | None = None,
) -> Tensor:
    r"""Decoded means as one latent unit at a time sweeps a range, the others held at the
    posterior mean of ``x``,

    .. math:: x_{u, v} = \mathbb{E}[x | z = \mu(x) + (v - \mu_u(x)) e_u] .

    Arguments:
        vae: A :class:`~probgen.latent.VAE`.
        x: One datum, with shape :math:`E`.
        dims: The units :math:`u` to sweep (default: all).
        values: The values :math:`v`, with shape :math:`(V,)` (default: 7 points from -3
            to 3, in the units of a standard normal prior).
        c: A context with shape :math:`(C,)`, or ``None``.

    Returns:
        The decoded means, with shape :math:`(|dims|, V, *E)`.
    """
    if tuple(x.shape) != tuple(vae.event_shape):
        raise ValueError(
            f"expected one datum with shape {tuple(vae.event_shape)}, got {tuple(x.shape)}"
        )
    mu = vae.encode(x, c).mean
    dims = list(range(vae.latent)) if dims is None else list(dims)
    if values is None:
        values = torch.linspace(-3, 3, 7, dtype=mu.dtype, device=mu.device)
    z = mu.expand(len(dims), len(values), vae.latent).clone()
    for i, u in enumerate(dims):
        z[i, :, u] = values
    return vae.decode(z, c).mean
