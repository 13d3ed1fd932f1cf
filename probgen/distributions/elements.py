r"""Per-element families of chain-rule distributions: what :math:`p(x_i | x_{<i})` is.

An autoregressive network outputs ``params`` numbers per element; a family turns them
into the conditional distribution of that element: its log-probability, a sample (under
a decoding strategy for discrete families), its support, and, for discrete families, the
logits over every value. Values are floating tensors holding the element's value (the
integers :math:`0, \dots, K - 1` for discrete families), the dtype of the network.

- :class:`BernoulliFamily`: 1 logit, values :math:`\{0, 1\}`.
- :class:`CategoricalFamily`: :math:`K` logits, values :math:`\{0, \dots, K - 1\}`.
- :class:`GaussianFamily`: a mean and a raw scale, real values (reparameterisable).
- :class:`LogisticMixtureFamily`: the discretised mixture of logistics of PixelCNN++ over
  :math:`L` integer levels (the distribution value :class:`DiscretizedLogisticMixture`).
"""

from __future__ import annotations

__all__ = [
    "ElementFamily",
    "BernoulliFamily",
    "CategoricalFamily",
    "GaussianFamily",
    "LogisticMixtureFamily",
    "DiscretizedLogisticMixture",
]

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import constraints

from ..samplers.decoding import Strategy, apply, temperature_of

StrategyLike = Strategy | Sequence[Strategy] | None


class ElementFamily:
    r"""Base class of per-element families.

    Attributes:
        params: The number of network outputs per element.
        support: The constraint every element's value satisfies.
        values: The number :math:`K` of values of a discrete family, ``None`` when continuous.
        has_rsample: Whether :meth:`sample` is a differentiable function of the parameters.
    """

    params: int = 1
    support: constraints.Constraint = constraints.real
    values: int | None = None
    has_rsample: bool = False

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        r"""The log-probability of each element.

        Arguments:
            params: The parameters, with shape :math:`(*, P)`.
            x: The values, with shape :math:`(*)`.

        Returns:
            :math:`\log p(x_i | \theta_i)`, with shape :math:`(*)`.
        """
        # Discrete families: a gather from the normalised logits.
        logits = self.logits(params)
        return logits.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def logits(self, params: Tensor) -> Tensor:
        r"""The normalised log-probabilities of the values :math:`0, \dots, K - 1`, with
        shape :math:`(*, K)` (discrete families only)."""
        raise NotImplementedError(f"{type(self).__name__} is not discrete")

    def sample(self, params: Tensor, strategy: StrategyLike = None) -> Tensor:
        r"""Draws one value per element, with shape :math:`(*)`, from the distribution the
        strategy makes of the conditional (the conditional itself when ``None``)."""
        # Inverse-CDF sampling with one uniform per element: the same RNG stream gives the
        # same value whichever code path (cached or naive) computed the logits.
        probs = apply(strategy, self.logits(params)).softmax(dim=-1)
        u = torch.rand(probs.shape[:-1], dtype=probs.dtype, device=probs.device)
        x = (probs.cumsum(dim=-1) <= u.unsqueeze(-1)).sum(dim=-1)
        # Rounding can leave the last cumulative sum below u; the top value has mass then.
        x = torch.minimum(x, (probs > 0).long().cumsum(-1).argmax(-1))
        return x.to(params.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BernoulliFamily(ElementFamily):
    r"""Binary elements, :math:`p(x_i = 1 | x_{<i}) = \sigma(\theta_i)`, from one logit.

    Example:
        >>> BernoulliFamily().log_prob(torch.zeros(1), torch.ones(()))
        tensor(-0.6931)
    """

    params = 1
    support = constraints.boolean
    values = 2

    def logits(self, params: Tensor) -> Tensor:
        theta = params[..., 0]
        return torch.stack([F.logsigmoid(-theta), F.logsigmoid(theta)], dim=-1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        theta = params[..., 0]
        return -F.binary_cross_entropy_with_logits(theta, x.to(theta.dtype), reduction="none")


class CategoricalFamily(ElementFamily):
    r"""Elements with :math:`K` values, :math:`p(x_i = k | x_{<i}) = \mathrm{softmax}(
    \theta_i)_k`, from :math:`K` logits.

    Arguments:
        values: The number of values :math:`K \geq 2`.

    Example:
        >>> CategoricalFamily(4).log_prob(torch.zeros(4), torch.tensor(2.0))
        tensor(-1.3863)
    """

    def __init__(self, values: int) -> None:
        if int(values) != values or values < 2:
            raise ValueError(f"expected an integer number of values >= 2, got {values}")
        self.values = self.params = int(values)
        self.support = constraints.integer_interval(0, self.values - 1)

    def logits(self, params: Tensor) -> Tensor:
        return params.log_softmax(dim=-1)

    def __repr__(self) -> str:
        return f"CategoricalFamily({self.values})"


class GaussianFamily(ElementFamily):
    r"""Real elements, :math:`p(x_i | x_{<i}) = \mathcal{N}(\mu_i, \sigma_i^2)`, from a
    mean and a raw scale, :math:`\sigma_i = \mathrm{softplus}(s_i) + \sigma_{min}`.

    Sampling is reparameterised, :math:`x_i = \mu_i + \sigma_i \epsilon_i`; only
    :class:`~probgen.samplers.Temperature` applies (variance times :math:`T`).

    Arguments:
        min_scale: The floor :math:`\sigma_{min}` that keeps the density bounded.

    Example:
        >>> GaussianFamily(0.0).log_prob(torch.tensor([0.0, 0.5413]), torch.zeros(()))
        tensor(-0.9189)
    """

    params = 2
    support = constraints.real
    has_rsample = True

    def __init__(self, min_scale: float = 1e-3) -> None:
        if min_scale < 0:
            raise ValueError(f"expected min_scale >= 0, got {min_scale}")
        self.min_scale = float(min_scale)

    def _loc_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        return params[..., 0], F.softplus(params[..., 1]) + self.min_scale

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        loc, scale = self._loc_scale(params)
        z = (x - loc) / scale
        return -0.5 * z.square() - scale.log() - 0.5 * math.log(2 * math.pi)

    def sample(self, params: Tensor, strategy: StrategyLike = None) -> Tensor:
        t = temperature_of(strategy, "Gaussian")
        loc, scale = self._loc_scale(params)
        eps = torch.randn(loc.shape, dtype=loc.dtype, device=loc.device)
        return loc + math.sqrt(t) * scale * eps

    def __repr__(self) -> str:
        return f"GaussianFamily(min_scale={self.min_scale})"


class LogisticMixtureFamily(ElementFamily):
    r"""Integer levels :math:`\{0, \dots, L - 1\}` under a discretised mixture of
    :math:`M` logistics (PixelCNN++), from :math:`3M` parameters per element: mixture
    logits, means and log-scales (see :class:`DiscretizedLogisticMixture`).

    Arguments:
        components: The number of mixture components :math:`M`.
        levels: The number of levels :math:`L \geq 2`.

    References:
        | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
        | and Other Modifications (Salimans et al., 2017)
        | https://arxiv.org/abs/1701.05517

    Example:
        >>> f = LogisticMixtureFamily(components=2, levels=17)
        >>> f.logits(torch.zeros(6)).exp().sum()
        tensor(1.)
    """

    def __init__(self, components: int = 5, levels: int = 256) -> None:
        if components < 1 or levels < 2:
            raise ValueError(
                f"expected components >= 1 and levels >= 2, got {components} and {levels}"
            )
        self.components, self.values = int(components), int(levels)
        self.params = 3 * self.components
        self.support = constraints.integer_interval(0, self.values - 1)

    def distribution(self, params: Tensor) -> DiscretizedLogisticMixture:
        r"""The conditional as a distribution value, with ``batch_shape`` params.shape[:-1]."""
        m = self.components
        return DiscretizedLogisticMixture(
            params[..., :m],
            params[..., m : 2 * m],
            params[..., 2 * m :],
            self.values,
            validate_args=False,  # the chain rule validates values at its boundary
        )

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return self.distribution(params).log_prob(x)

    def logits(self, params: Tensor) -> Tensor:
        return self.distribution(params).level_logits()

    def __repr__(self) -> str:
        return f"LogisticMixtureFamily(components={self.components}, levels={self.values})"


class DiscretizedLogisticMixture(dist.TorchDistribution):
    r"""A mixture of :math:`M` logistics discretised to :math:`L` integer levels.

    Level :math:`x` is the bin :math:`[v - h, v + h]` around :math:`v = 2x / (L - 1) - 1
    \in [-1, 1]`, :math:`h = 1 / (L - 1)`; the edge bins extend to :math:`\pm \infty`:

    .. math:: p(x) = \sum_m \pi_m \left[ \sigma\left(\frac{v + h - \mu_m}{s_m}\right)
        - \sigma\left(\frac{v - h - \mu_m}{s_m}\right) \right] .

    The bins telescope, so the levels' masses sum to one exactly. Each bin's log-mass is
    computed in a form that never cancels, :math:`\log(\sigma(a) - \sigma(b)) = \log
    \sigma(a) + \log \sigma(-b) + \log(1 - e^{b - a})`, rather than with PixelCNN++'s
    density approximation in the middle (which is not normalised).

    Arguments:
        logits: The mixture logits, with shape :math:`(*, M)`.
        loc: The means :math:`\mu_m` (in :math:`[-1, 1]` units), with shape :math:`(*, M)`.
        log_scale: :math:`\log s_m`, with shape :math:`(*, M)`, clamped below at -7.
        levels: The number of levels :math:`L`.

    References:
        | PixelCNN++ (Salimans et al., 2017)
        | https://arxiv.org/abs/1701.05517
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "loc": constraints.real_vector,
        "log_scale": constraints.real_vector,
    }

    def __init__(
        self,
        logits: Tensor,
        loc: Tensor,
        log_scale: Tensor,
        levels: int,
        validate_args: bool | None = None,
    ) -> None:
        if not (logits.shape == loc.shape == log_scale.shape):
            raise ValueError(
                f"expected logits, loc and log_scale of one shape (*, M), got "
                f"{tuple(logits.shape)}, {tuple(loc.shape)}, {tuple(log_scale.shape)}"
            )
        self.logits, self.loc = logits, loc
        # PixelCNN++'s floor: a scale below e^-7 puts all mass in one bin anyway.
        self.log_scale = log_scale.clamp(min=-7.0)
        self.levels = int(levels)
        super().__init__(Size(logits.shape[:-1]), Size(), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.levels - 1)

    def expand(self, batch_shape: Size, _instance=None) -> DiscretizedLogisticMixture:
        shape = Size(batch_shape) + self.loc.shape[-1:]
        return DiscretizedLogisticMixture(
            self.logits.expand(shape),
            self.loc.expand(shape),
            self.log_scale.expand(shape),
            self.levels,
            validate_args=False,
        )

    def _component_log_mass(self, x: Tensor) -> Tensor:
        # x with shape (*, 1) broadcasting against (*, M).
        h = 1.0 / (self.levels - 1)
        v = 2.0 * x * h - 1.0
        inv_s = torch.exp(-self.log_scale)
        a = (v + h - self.loc) * inv_s
        b = (v - h - self.loc) * inv_s
        upper = F.logsigmoid(a)  # log P(X <= v + h): the first bin's mass
        lower = F.logsigmoid(-b)  # log P(X > v - h): the last bin's mass
        middle = upper + lower + torch.log(-torch.expm1(-2.0 * h * inv_s))
        return torch.where(x <= 0, upper, torch.where(x >= self.levels - 1, lower, middle))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_mass = self._component_log_mass(value.to(self.loc.dtype).unsqueeze(-1))
        return torch.logsumexp(self.logits.log_softmax(dim=-1) + log_mass, dim=-1)

    def level_logits(self) -> Tensor:
        r"""The log-probabilities of every level, with shape ``batch_shape + (L,)``."""
        x = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device)
        shape = (self.levels,) + (1,) * len(self.batch_shape)
        lp = self.expand(Size((self.levels,)) + self.batch_shape).log_prob(
            x.reshape(shape).expand(self.levels, *self.batch_shape)
        )
        return lp.movedim(0, -1)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            probs = self.level_logits().exp()
            flat = probs.reshape(-1, self.levels)
            n = Size(sample_shape).numel()
            idx = torch.multinomial(flat, n, replacement=True).T
            return idx.reshape(*sample_shape, *self.batch_shape).to(self.loc.dtype)
