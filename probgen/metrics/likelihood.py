r"""Likelihood metrics: test negative log-likelihood with its standard error, bits per
dimension and perplexity.

Every number is in nats unless its name says bits. A test NLL is a Monte Carlo estimate of
the cross-entropy :math:`H(p_{data}, p_\phi) = H(p_{data}) + \mathrm{KL}(p_{data} \|
p_\phi)`; on a toy density with a known entropy the gap to :math:`H(p_{data})` is the KL.
"""

from __future__ import annotations

__all__ = ["NLL", "nll", "bits_per_dim", "perplexity"]

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor
from torch.distributions import Distribution

from ..distributions.base import log_prob_kind


@dataclass(frozen=True)
class NLL:
    r"""A mean negative log-likelihood in nats, with its standard error.

    Attributes:
        value: The mean :math:`\bar{\ell} = -\frac{1}{N} \sum_i \log p(x_i)`.
        stderr: Its standard error :math:`s / \sqrt{N}`, :math:`s` the sample standard
            deviation of :math:`-\log p(x_i)` (NaN when :math:`N = 1`).
        n: The number of points :math:`N`.
        kind: The ``log_prob_kind`` of the model: with ``"bound"`` the value is an upper
            bound of the NLL, with ``"estimate"`` an estimate.
    """

    value: float
    stderr: float
    n: int
    kind: str = "exact"

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.stderr:.4f}"


def nll(
    d: Distribution | nn.Module,
    x: Tensor,
    context: Tensor | None = None,
    batch_size: int = 4096,
) -> NLL:
    r"""The mean negative log-likelihood of data under a model, with its standard error,

    .. math:: \bar{\ell} = -\frac{1}{N} \sum_{i=1}^N \log p(x_i | c_i), \qquad
        \mathrm{se} = \sqrt{\frac{1}{N (N - 1)} \sum_i (\ell_i - \bar{\ell})^2} .

    Scores ``batch_size`` points at a time without gradients (the sum is accumulated in
    float64), so ``x`` may be far larger than what fits through the model at once.

    Arguments:
        d: A distribution with ``batch_shape ()``, or a model (a module whose call
            ``d(c)`` returns one; it is evaluated in eval mode, then put back).
        x: The data, with shape :math:`(N, *E)`, E the event shape.
        context: The context with shape :math:`(N, C)` of a conditional model.
        batch_size: The number of points scored per call of ``log_prob``.

    Returns:
        The :class:`NLL`. A point of zero density makes its value ``inf`` (and its
        stderr NaN).

    Raises:
        ValueError: For a model whose ``log_prob`` is not normalised
            (``log_prob_kind`` ``"unnormalized"`` or ``"none"``), or for shapes that do
            not fit.

    Example:
        >>> from probgen.distributions import DiagNormal
        >>> d = DiagNormal(torch.zeros(2), torch.ones(2))
        >>> result = nll(d, torch.zeros(10, 2))
        >>> round(result.value, 4), result.stderr  # log(2 pi), the same for every point
        (1.8379, 0.0)
    """
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected data with shape (N, *event_shape), N >= 1, got {shape}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if context is not None and (context.dim() < 1 or context.shape[0] != x.shape[0]):
        raise ValueError(
            f"expected a context with shape ({x.shape[0]}, C) for data of shape "
            f"{tuple(x.shape)}, got {tuple(context.shape)}"
        )
    model = d if isinstance(d, nn.Module) else None
    if model is None and context is not None:
        raise ValueError("a context needs a model (a module d with d(c) a distribution)")
    training = model.training if model is not None else False
    if model is not None:
        model.eval()
    # Chan et al.'s pairwise update of (count, mean, sum of squared deviations): a naive
    # sum of squares loses the variance when it is small next to the mean.
    count, mean, m2, kind = 0, 0.0, 0.0, None
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size]
                if model is None:
                    dist = d
                elif context is None:
                    dist = model()
                else:
                    dist = model(context[start : start + batch_size])
                if kind is None:
                    kind = _check_kind(dist)
                log_p = dist.log_prob(xb)
                if log_p.shape != xb.shape[:1]:
                    raise ValueError(
                        f"expected log_prob with shape ({xb.shape[0]},) for a batch of shape "
                        f"{tuple(xb.shape)}, got {tuple(log_p.shape)}: nll scores "
                        "distributions with batch_shape () (or the context's batch)"
                    )
                ell = -log_p.double()
                k, mean_b = ell.numel(), float(ell.mean())
                m2_b = float((ell - mean_b).square().sum()) if math.isfinite(mean_b) else math.inf
                delta = mean_b - mean
                mean += delta * k / (count + k)
                m2 += m2_b + delta * delta * count * k / (count + k)
                count += k
    finally:
        if model is not None:
            model.train(training)
    n = x.shape[0]
    if not math.isfinite(mean) or n < 2:
        return NLL(mean, math.nan, n, kind)
    return NLL(mean, math.sqrt(m2 / (n - 1) / n), n, kind)


def _check_kind(d: Distribution) -> str:
    kind = log_prob_kind(d)
    if kind in ("unnormalized", "none"):
        raise ValueError(
            f"this model's log_prob is {kind!r}, so an NLL is meaningless; compare samples "
            "instead (probgen.metrics: MMD, energy distance, sliced Wasserstein)"
        )
    return kind


def bits_per_dim(nll_nats: float | Tensor, dims: int) -> float | Tensor:
    r"""Converts a negative log-likelihood per data point into bits per dimension,

    .. math:: \text{bpd} = \frac{\ell}{D \log 2} .

    For images with 256 levels scaled to :math:`[0, 1]`, ``nll_nats`` must be the NLL of
    the discrete data, i.e. the continuous (dequantised) density's NLL plus :math:`D \log
    256`.

    Arguments:
        nll_nats: The NLL :math:`\ell` of one data point, in nats.
        dims: The number of dimensions :math:`D` of a data point.

    Returns:
        The bits per dimension, a float or a tensor like ``nll_nats``.

    Example:
        >>> bits_per_dim(2 * math.log(2), 2)
        1.0
    """
    if dims < 1:
        raise ValueError(f"expected dims >= 1, got {dims}")
    return nll_nats / (dims * math.log(2))


def perplexity(nll_nats: float | Tensor) -> float | Tensor:
    r"""The perplexity of a model given its NLL per token,

    .. math:: \mathrm{PPL} = e^{\ell} ,

    the effective number of equally likely choices per token.

    Arguments:
        nll_nats: The mean NLL per token :math:`\ell`, in nats.

    Returns:
        The perplexity, a float or a tensor like ``nll_nats``.

    Example:
        >>> round(perplexity(math.log(10)), 6)
        10.0
    """
    if isinstance(nll_nats, Tensor):
        return nll_nats.exp()
    return math.exp(nll_nats)
