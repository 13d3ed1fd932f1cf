r"""Dequantisation: distributions over integer levels built from continuous densities.

A continuous density :math:`p(v)` on :math:`[0, L]^D` defines a distribution over the
integer levels :math:`x \in \{0, \dots, L - 1\}^D`, the mass of each unit cell,

.. math:: P(x) = \int_{[0, 1)^D} p(x + u) \, du
    \geq \exp \mathbb{E}_{q(u | x)} \left[ \log p(x + u) - \log q(u | x) \right]

for any density :math:`q(u | x)` on :math:`[0, 1)^D` (Jensen). Uniform dequantisation takes
:math:`q = \mathcal{U}[0, 1)^D`; variational dequantisation learns :math:`q` (Flow++).
Sampling is :math:`x = \lfloor v \rfloor`, :math:`v \sim p`, clamped to the level range
(the mass :math:`p` puts outside :math:`[0, L)^D`, if any, is assigned to the border levels
by sampling but counted as lost by the bound).
"""

from __future__ import annotations

__all__ = ["Dequantized", "Dequantization", "VariationalDequantizer"]

import math
from collections.abc import Callable, Sequence

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, SigmoidTransform, constraints

from ..lazy import LazyDistribution
from ..transforms import LogitTransform
from ..utils import check_event
from .base import GenerativeDistribution
from .flow import MAF, NormalizingFlow, RealNVP


class Dequantized(GenerativeDistribution):
    r"""A distribution over integer levels :math:`\{0, \dots, L - 1\}^E` defined by a
    continuous density :math:`p(v)` on :math:`[0, L]^E`.

    ``log_prob(x)`` is a *stochastic lower bound*: each call draws :math:`K` dequantisation
    noises :math:`u_k \sim q(u | x)` and returns

    .. math:: \log \frac{1}{K} \sum_{k=1}^K \frac{p(x + u_k)}{q(u_k | x)} ,

    whose expectation is at most :math:`\log P(x)` (the ELBO for :math:`K = 1`, the
    importance-weighted bound otherwise), hence ``log_prob_kind == "bound"``. Its
    gradient trains :math:`p` (and :math:`q`) by maximising that bound. Levels are floats
    (or integers) with integral values; samples are floats.

    Arguments:
        continuous: The continuous distribution :math:`p(v)`, with event shape :math:`E`.
        levels: The number of levels :math:`L`.
        dequantizer: A function :math:`x \mapsto q(u | x)` returning a distribution over
            :math:`[0, 1)^{|E|}` (flattened events, batch shape ``x.shape[:-len(E)]``) that
            can be reparameterised; uniform dequantisation when ``None``.
        samples: The number :math:`K` of dequantisation noises per ``log_prob``.

    References:
        | A note on the evaluation of generative models (Theis et al., 2016)
        | https://arxiv.org/abs/1511.01844
        | Flow++: Improving Flow-Based Generative Models with Variational Dequantization
        | and Architecture Design (Ho et al., 2019)
        | https://arxiv.org/abs/1902.00275

    Example:
        >>> from probgen.distributions import DiagNormal
        >>> p = NormalizingFlow(DiagNormal(torch.zeros(2), torch.ones(2)), LogitTransform(0.05, 3))
        >>> d = Dequantized(p, levels=3)
        >>> x = d.sample((4,))
        >>> bool(((x >= 0) & (x <= 2) & (x == x.floor())).all()), d.log_prob(x).shape
        (True, torch.Size([4]))
    """

    has_rsample = False
    log_prob_kind = "bound"

    def __init__(
        self,
        continuous: Distribution,
        levels: int,
        dequantizer: Callable[[Tensor], Distribution] | None = None,
        samples: int = 1,
    ) -> None:
        if levels < 2:
            raise ValueError(f"expected levels >= 2, got {levels}")
        if samples < 1:
            raise ValueError(f"expected samples >= 1, got {samples}")
        self.continuous, self.levels = continuous, int(levels)
        self.dequantizer, self.samples = dequantizer, int(samples)
        super().__init__(continuous.batch_shape, continuous.event_shape)

    @property
    def support(self):
        bounded = constraints.integer_interval(0, self.levels - 1)
        return constraints.independent(bounded, len(self.event_shape))

    def expand(self, batch_shape: Size, _instance=None) -> Dequantized:
        return Dequantized(
            self.continuous.expand(batch_shape), self.levels, self.dequantizer, self.samples
        )

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            v = self.continuous.sample(Size(sample_shape))
        return v.floor().clamp(0, self.levels - 1)

    def log_prob(self, x: Tensor) -> Tensor:
        self.check_value(x)
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        k = self.samples
        xs = x.expand(k, *x.shape) if k > 1 else x
        if self.dequantizer is None:
            # An open interval: u = 0 exactly would put x + u on the edge of the box.
            u = torch.rand_like(xs).clamp_(min=torch.finfo(x.dtype).tiny)
            log_w = self.continuous.log_prob(xs + u)
        else:
            q = self.dequantizer(xs)
            if hasattr(q, "rsample_and_log_prob"):
                u, log_q = q.rsample_and_log_prob()
            else:
                u = q.rsample()
                log_q = q.log_prob(u)
            log_w = self.continuous.log_prob(xs + u.reshape(xs.shape)) - log_q
        if k == 1:
            return log_w
        return log_w.logsumexp(dim=0) - math.log(k)


class Dequantization(LazyDistribution):
    r"""A lazy dequantised model of integer levels :math:`\{0, \dots, L - 1\}^E` from a lazy
    continuous model, built into a :class:`Dequantized` on each call.

    The continuous model :math:`p(z)` lives on :math:`\mathbb{R}^E` and is pushed onto the
    box :math:`[0, L]^E` by :class:`~probgen.transforms.LogitTransform` with margin
    :math:`\alpha` (Real NVP's logit preprocessing), :math:`v = L (\sigma(z) - \alpha) /
    (1 - 2 \alpha)`; with ``alpha=None`` it is used as is, on the level scale.

    Arguments:
        continuous: The lazy continuous model, e.g. :class:`~probgen.distributions.glow.Glow`.
            Its context, if any, is this model's context.
        levels: The number of levels :math:`L`.
        dequantizer: A lazy :math:`q(u | x)` such as :class:`VariationalDequantizer`, called
            with the levels :math:`x`; uniform dequantisation when ``None``.
        alpha: The logit margin :math:`\alpha \in [0, 1/2)`, or ``None``.
        samples: The number of dequantisation noises per ``log_prob`` (see :class:`Dequantized`).

    Example:
        >>> from probgen.distributions import Glow
        >>> model = Dequantization(Glow((1, 4, 4), levels=1, steps=1, hidden=8), levels=17)
        >>> d = model()
        >>> x = d.sample((3,))
        >>> x.shape, d.log_prob(x).shape, d.log_prob_kind
        (torch.Size([3, 1, 4, 4]), torch.Size([3]), 'bound')
    """

    def __init__(
        self,
        continuous: LazyDistribution,
        levels: int,
        dequantizer: LazyDistribution | None = None,
        alpha: float | None = 0.05,
        samples: int = 1,
    ) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"expected levels >= 2, got {levels}")
        if alpha is not None and not 0 <= alpha < 0.5:
            raise ValueError(f"expected alpha in [0, 1/2) or None, got {alpha}")
        self.continuous, self.dequantizer = continuous, dequantizer
        self.levels, self.alpha, self.samples = int(levels), alpha, int(samples)
        self.context = continuous.context

    def forward(self, c: Tensor | None = None) -> Dequantized:
        self.check_context(c)
        p = self.continuous(c) if self.continuous.context else self.continuous()
        if self.alpha is not None:
            p = NormalizingFlow(p, LogitTransform(self.alpha, self.levels))
        return Dequantized(p, self.levels, self.dequantizer, self.samples)


class VariationalDequantizer(LazyDistribution):
    r"""A lazy variational dequantisation distribution :math:`q(u | x)` on :math:`(0, 1)^D`,

    .. math:: u = \sigma(g(\epsilon; x)) , \qquad \epsilon \sim \mathcal{N}(0, I) ,

    with :math:`g` a conditional flow over the :math:`D = |E|` flattened features, whose
    context is the levels :math:`x` rescaled to :math:`[-1, 1]`. Calling it with levels
    :math:`x` of shape :math:`(*, *E)` gives a distribution over flattened noises of shape
    :math:`(*, D)` that samples and scores in one pass.

    Arguments:
        shape: The event shape :math:`E` of the levels.
        levels: The number of levels :math:`L`.
        flow: A lazy flow over :math:`D` features with context :math:`D`; by default a
            :class:`~probgen.distributions.flow.RealNVP` (coupling: one pass both ways).
        transforms: The number of transforms of the default flow.
        hidden: The hidden widths of the default flow's networks.

    References:
        | Flow++: Improving Flow-Based Generative Models with Variational Dequantization
        | and Architecture Design (Ho et al., 2019)
        | https://arxiv.org/abs/1902.00275

    Example:
        >>> q = VariationalDequantizer((2, 2), levels=4, hidden=(8,))
        >>> u, log_q = q(torch.randint(0, 4, (5, 2, 2))).rsample_and_log_prob()
        >>> u.shape, log_q.shape, bool(((u > 0) & (u < 1)).all())
        (torch.Size([5, 4]), torch.Size([5]), True)
    """

    def __init__(
        self,
        shape: Sequence[int],
        levels: int,
        flow: LazyDistribution | None = None,
        transforms: int = 4,
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        self.shape, self.levels = Size(shape), int(levels)
        features = self.shape.numel()
        if flow is None:
            meta = RealNVP if features >= 2 else MAF
            flow = meta(features, features, transforms=transforms, hidden=hidden)
        if flow.context != features:
            raise ValueError(f"expected a flow with context {features}, got {flow.context}")
        self.flow = flow
        self.context = features

    def forward(self, x: Tensor) -> NormalizingFlow:
        check_event(x, self.shape, "levels")
        x = x if x.is_floating_point() else x.to(torch.get_default_dtype())
        c = x.flatten(x.dim() - len(self.shape)) * (2 / (self.levels - 1)) - 1
        return NormalizingFlow(self.flow(c), SigmoidTransform())
