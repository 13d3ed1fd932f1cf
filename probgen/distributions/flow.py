r"""Normalizing flows: the pushforward of a base distribution by a bijection.

Generative maps go from noise to data: :math:`x = f(z)`, :math:`z \sim p(z)`, and

.. math:: \log p(x) = \log p(f^{-1}(x)) - \log |\det J_f(f^{-1}(x))| .

A :class:`Flow` lists its transforms in generative order, :math:`f = f_n \circ \dots
\circ f_1`, the first applied to base samples.
"""

from __future__ import annotations

__all__ = ["NormalizingFlow", "Flow", "MAF", "IAF", "NSF", "RealNVP"]

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution, Transform

from ..lazy import LazyDistribution, LazyTransform, UnconditionalDistribution
from ..transforms import (
    ComposedTransform,
    Coupling,
    MaskedAutoregressive,
    MonotonicAffineTransform,
    MonotonicRQSTransform,
    call_and_ladj,
    inv_call_and_ladj,
)
from ..utils import sum_rightmost
from .base import GenerativeDistribution
from .simple import DiagNormal


class NormalizingFlow(GenerativeDistribution):
    r"""The distribution of :math:`x = f(z)` for :math:`z \sim p(z)`.

    Sampling and scoring are one pass each when :math:`f` is fast in that direction;
    :meth:`rsample_and_log_prob` draws and scores in the same pass.

    Arguments:
        base: The base distribution :math:`p(z)`.
        transform: The bijection :math:`f` from base to data space.

    Example:
        >>> from probgen.transforms import MonotonicAffineTransform, IndependentTransform
        >>> f = IndependentTransform(MonotonicAffineTransform(torch.ones(2), torch.zeros(2)), 1)
        >>> d = NormalizingFlow(DiagNormal(torch.zeros(2), torch.ones(2)), f)
        >>> d.log_prob(torch.ones(2))
        tensor(-1.8379)
    """

    has_rsample = True
    log_prob_kind = "exact"

    def __init__(self, base: Distribution, transform: Transform) -> None:
        self.base, self.transform = base, transform
        shape = transform.forward_shape(base.batch_shape + base.event_shape)
        event_dim = max(transform.codomain.event_dim, len(base.event_shape))
        split = len(shape) - event_dim
        super().__init__(Size(shape[:split]), Size(shape[split:]))
        # The transform's ladj keeps the base event dimensions it treats as batch, and the
        # base's log_prob keeps the transform event dimensions it treats as batch.
        gap = len(base.event_shape) - transform.domain.event_dim
        self._ladj_dims, self._base_dims = max(gap, 0), max(-gap, 0)

    @property
    def support(self):
        return self.transform.codomain

    def __repr__(self) -> str:
        return f"NormalizingFlow(\n  base={self.base},\n  transform={self.transform}\n)"

    def expand(self, batch_shape: Size, _instance=None) -> NormalizingFlow:
        batch_shape = Size(batch_shape)
        base_shape = self.transform.inverse_shape(batch_shape + self.event_shape)
        base_batch = base_shape[: len(base_shape) - len(self.base.event_shape)]
        return NormalizingFlow(self.base.expand(base_batch), self.transform)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        return self.transform(self.base.rsample(sample_shape))

    def log_prob(self, x: Tensor) -> Tensor:
        memo = self._memoized(x)
        if memo is not None:
            return memo
        self.check_value(x)
        z, ladj = inv_call_and_ladj(self.transform, x)
        return self._log_prob_base(z) - sum_rightmost(ladj, self._ladj_dims)

    def rsample_and_log_prob(self, sample_shape: Size = Size()) -> tuple[Tensor, Tensor]:
        if hasattr(self.base, "rsample_and_log_prob"):
            z, log_p = self.base.rsample_and_log_prob(sample_shape)
            log_p = sum_rightmost(log_p, self._base_dims)
        else:
            z = self.base.rsample(sample_shape)
            log_p = self._log_prob_base(z)
        x, ladj = call_and_ladj(self.transform, z)
        return x, log_p - sum_rightmost(ladj, self._ladj_dims)

    def _log_prob_base(self, z: Tensor) -> Tensor:
        return sum_rightmost(self.base.log_prob(z), self._base_dims)


class Flow(LazyDistribution):
    r"""A lazy normalizing flow: transforms and a base, built into a
    :class:`NormalizingFlow` on each call.

    Transforms or bases with ``context > 0`` receive the context; the others are called
    without one. For a context with shape :math:`(*B, C)` the flow has ``batch_shape`` B.

    Arguments:
        transforms: Lazy transforms (or transform values) :math:`f_1, \dots, f_n`, in
            generative order: :math:`f_1` acts on base samples.
        base: The lazy base distribution.

    Example:
        >>> from probgen.transforms import MaskedAutoregressive
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(3), torch.ones(3))
        >>> flow = Flow([MaskedAutoregressive(3, context=2)], base)
        >>> flow(torch.randn(4, 2)).sample().shape
        torch.Size([4, 3])
    """

    def __init__(
        self, transforms: Sequence[LazyTransform | Transform], base: LazyDistribution
    ) -> None:
        super().__init__()
        self.transforms = nn.ModuleList([t for t in transforms if isinstance(t, nn.Module)])
        self._transforms = list(transforms)
        self.base = base
        self.context = max([getattr(t, "context", 0) for t in transforms] + [base.context])

    def forward(self, c: Tensor | None = None) -> NormalizingFlow:
        self.check_context(c)
        parts = [
            (t(c) if t.context else t()) if isinstance(t, LazyTransform) else t
            for t in self._transforms
        ]
        base = self.base(c) if self.base.context else self.base()
        if c is not None and base.batch_shape != c.shape[:-1]:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(base, ComposedTransform(*parts))


def _standard_normal(features: int) -> LazyDistribution:
    return UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features))


def _orders(features: int, transforms: int, randperm: bool) -> list[Tensor]:
    if randperm:
        return [torch.randperm(features) for _ in range(transforms)]
    identity = torch.arange(features)
    return [identity if i % 2 == 0 else identity.flip(0) for i in range(transforms)]


class MAF(Flow):
    r"""A masked autoregressive flow: density in one pass, sampling in :math:`D` passes.

    Consecutive transforms alternate between the natural and the reversed order.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        transforms: The number of autoregressive transforms.
        randperm: Whether each transform draws a random order instead.
        univariate: The elementwise transform constructor (affine by default).
        shapes: The trailing shapes of its parameters, per feature.
        hidden: The widths of each MADE's hidden layers.
        activation: The MADE's activation constructor.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Example:
        >>> flow = MAF(2, transforms=3, hidden=(32, 32))
        >>> d = flow()
        >>> x = d.sample((10,))
        >>> d.log_prob(x).shape
        torch.Size([10])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 5,
        randperm: bool = False,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        _check_features(features, context)
        layers = [
            self._layer(
                MaskedAutoregressive(
                    features, context, order, univariate, shapes, hidden, activation
                )
            )
            for order in _orders(features, transforms, randperm)
        ]
        super().__init__(layers, _standard_normal(features))

    @staticmethod
    def _layer(t: MaskedAutoregressive) -> LazyTransform:
        return t


class IAF(MAF):
    r"""An inverse autoregressive flow: sampling in one pass, density in :math:`D` passes.

    Each transform is the inverse of a masked autoregressive one, which makes the flow a
    fast variational posterior or proposal (sample and score own samples in one pass).

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        transforms: The number of autoregressive transforms.
        randperm: Whether each transform draws a random order instead.
        univariate: The elementwise transform constructor (affine by default).
        shapes: The trailing shapes of its parameters, per feature.
        hidden: The widths of each MADE's hidden layers.
        activation: The MADE's activation constructor.

    References:
        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934
    """

    @staticmethod
    def _layer(t: MaskedAutoregressive) -> LazyTransform:
        # The inverse of a masked autoregressive transform: one pass from noise to data.
        return t.inv


class RealNVP(Flow):
    r"""A coupling flow: density and sampling in one pass each.

    Consecutive transforms alternate which half of the features conditions the other.

    Arguments:
        features: The number of features :math:`D \geq 2`.
        context: The number of context features (0 when unconditional).
        transforms: The number of coupling transforms.
        univariate: The elementwise transform constructor (affine by default).
        shapes: The trailing shapes of its parameters, per feature.
        hidden: The widths of each hyper-network's hidden layers.
        activation: The hyper-network's activation constructor.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 5,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        _check_features(features, context)
        if features < 2:
            raise ValueError(f"RealNVP needs at least 2 features, got {features}; use MAF")
        half = torch.arange(features) % 2 == 0
        layers = [
            Coupling(
                features, context, half if i % 2 == 0 else ~half, univariate, shapes, hidden,
                activation,
            )
            for i in range(transforms)
        ]
        super().__init__(layers, _standard_normal(features))


class NSF(Flow):
    r"""A neural spline flow: monotonic rational-quadratic splines on :math:`[-B, B]`,
    identity outside, conditioned autoregressively (MAF-style, the default) or by coupling.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        transforms: The number of spline transforms.
        bins: The number of spline bins :math:`K`.
        bound: The spline interval half-width :math:`B`.
        coupling: Whether to condition by coupling (one pass both ways) instead of
            autoregressively (one-pass density, :math:`D`-pass sampling).
        hidden: The widths of each hyper-network's hidden layers.
        activation: The hyper-network's activation constructor.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Example:
        >>> flow = NSF(2, context=1, bins=4)
        >>> d = flow(torch.zeros(1))
        >>> d.log_prob(d.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 5,
        bins: int = 8,
        bound: float = 5.0,
        coupling: bool = False,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        _check_features(features, context)
        spline = partial(MonotonicRQSTransform, bound=bound)
        shapes = [(bins,), (bins,), (bins - 1,)]
        if coupling:
            built = RealNVP(features, context, transforms, spline, shapes, hidden, activation)
        else:
            built = MAF(features, context, transforms, False, spline, shapes, hidden, activation)
        super().__init__(list(built.transforms), built.base)


def _check_features(features: int, context: int) -> None:
    if features < 1:
        raise ValueError(f"expected features >= 1, got {features}")
    if context < 0:
        raise ValueError(f"expected context >= 0, got {context}")
