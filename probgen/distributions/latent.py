r"""Variational autoencoders: latent-variable models as Pyro model / guide pairs.

A VAE is the latent-variable model

.. math:: p_\theta(x | c) = \int p_\theta(x | z, c) \, p(z | c) \, dz

with a decoder likelihood :math:`p_\theta(x | z, c)` (independent elements from a
per-element family: Bernoulli, Gaussian, categorical over grey levels, discretised
logistic), a prior :math:`p(z | c)` (any probgen model with a density: a standard normal, a
flow, a mixture, a diffusion) and an amortised Gaussian posterior :math:`q_\phi(z | x, c)`
(the encoder). Three views of one module:

- ``vae.model(x, c)`` and ``vae.guide(x, c)`` are a Pyro model / guide pair
  (``pyro.module``, ``pyro.plate``, ``pyro.sample``), trained by
  :class:`pyro.infer.SVI` with :class:`~pyro.infer.Trace_ELBO` or
  :class:`~pyro.infer.TraceMeanField_ELBO` as any Pyro program;
- ``vae(c)`` is the distribution of :math:`x`, a :class:`Marginal`: ``sample`` decodes
  prior samples, ``log_prob`` is the importance-weighted estimate with :math:`K` particles
  (``log_prob_kind == "estimate"``);
- :func:`probgen.fit` trains it by its ``default_objective``, the (beta-)ELBO computed by
  Pyro's own :class:`~pyro.infer.Trace_ELBO` (:func:`probgen.objectives.elbo`).
"""

from __future__ import annotations

__all__ = [
    "Factorized",
    "FixedGaussianFamily",
    "LearnedGaussianFamily",
    "Marginal",
    "VAE",
]

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, constraints, register_kl

from ..lazy import LazyDistribution, UnconditionalDistribution
from ..utils import check_context, sum_rightmost
from .base import GenerativeDistribution, log_prob_kind
from .elements import ElementFamily, GaussianFamily
from .simple import DiagNormal


@register_kl(DiagNormal, DiagNormal)
def _kl_diag_normal(p: DiagNormal, q: DiagNormal) -> Tensor:
    # What TraceMeanField_ELBO uses for the analytic KL of the default posterior and prior.
    if p.event_shape != q.event_shape:
        raise NotImplementedError
    var = (p.scale / q.scale).square()
    t = ((p.loc - q.loc) / q.scale).square()
    return sum_rightmost(0.5 * (var + t - 1 - var.log()), len(p.event_shape))


# Decoder likelihoods: per-element families (see `elements.py`) over independent elements.


class FixedGaussianFamily(ElementFamily):
    r"""Real elements, :math:`\mathcal{N}(\mu_i, \sigma^2)` with a fixed scale
    :math:`\sigma`, from one parameter (the mean).

    Arguments:
        scale: The standard deviation :math:`\sigma > 0`.

    Example:
        >>> FixedGaussianFamily(1.0).log_prob(torch.zeros(1), torch.zeros(()))
        tensor(-0.9189)
    """

    params = 1
    support = constraints.real
    has_rsample = True

    def __init__(self, scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"expected a scale > 0, got {scale}")
        self.scale = float(scale)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        z = (x - params[..., 0]) / self.scale
        return -0.5 * z.square() - math.log(self.scale) - 0.5 * math.log(2 * math.pi)

    def sample(self, params: Tensor, strategy: Any = None) -> Tensor:
        loc = params[..., 0]
        return loc + self.scale * torch.randn_like(loc)

    def __repr__(self) -> str:
        return f"FixedGaussianFamily({self.scale})"


class LearnedGaussianFamily(nn.Module, ElementFamily):
    r"""Real elements, :math:`\mathcal{N}(\mu_i, \sigma^2)`, from one parameter (the mean),
    with a scale :math:`\sigma` learned as a parameter of the model (not of :math:`z`).

    With ``shape=()`` the scale is shared by every element (isotropic noise, as in
    probabilistic PCA); with the event shape, each element has its own (factor analysis).

    Arguments:
        scale: The initial standard deviation.
        shape: The shape of the scale, broadcastable to the event shape.

    Example:
        >>> f = LearnedGaussianFamily(1.0)
        >>> round(f.log_prob(torch.zeros(1), torch.zeros(())).item(), 4)
        -0.9189
    """

    params = 1
    support = constraints.real
    has_rsample = True

    def __init__(self, scale: float = 1.0, shape: Sequence[int] = ()) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"expected a scale > 0, got {scale}")
        self.log_scale = nn.Parameter(torch.full(tuple(shape), math.log(scale)))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        z = (x - params[..., 0]) * torch.exp(-self.log_scale)
        return -0.5 * z.square() - self.log_scale - 0.5 * math.log(2 * math.pi)

    def sample(self, params: Tensor, strategy: Any = None) -> Tensor:
        loc = params[..., 0]
        return loc + self.log_scale.exp() * torch.randn_like(loc)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.log_scale.shape)}"

    __repr__ = nn.Module.__repr__


def _family_mean(family: ElementFamily, params: Tensor) -> Tensor:
    # Discrete families: the expected level; the Gaussian families hold the mean first.
    if family.values is not None:
        levels = torch.arange(family.values, dtype=params.dtype, device=params.device)
        return (family.logits(params).exp() * levels).sum(-1)
    return params[..., 0]


class Factorized(GenerativeDistribution):
    r"""Independent elements, each from a per-element family with its own parameters,

    .. math:: p(x | \theta) = \prod_i f(x_i | \theta_i) ,

    a decoder's likelihood :math:`p(x | z)`.

    Arguments:
        family: The per-element family :math:`f` (an
            :class:`~probgen.distributions.ElementFamily`).
        params: The parameters :math:`\theta`, with shape :math:`(*B, *E, P)`.
        event_shape: The event shape :math:`E`.

    Example:
        >>> from probgen.distributions import BernoulliFamily
        >>> d = Factorized(BernoulliFamily(), torch.zeros(5, 3, 1), (3,))
        >>> d.log_prob(torch.ones(5, 3)).shape
        torch.Size([5])
    """

    def __init__(self, family: ElementFamily, params: Tensor, event_shape: Sequence[int]) -> None:
        event_shape = Size(event_shape)
        k = len(event_shape)
        if (
            params.dim() < k + 1
            or params.shape[-1] != family.params
            or (params.shape[params.dim() - 1 - k : -1] != event_shape)
        ):
            raise ValueError(
                f"expected params with shape (*B, {', '.join(map(str, event_shape))}, "
                f"{family.params}) for {family!r}, got {tuple(params.shape)}"
            )
        self.family, self.params = family, params
        super().__init__(params.shape[: params.dim() - 1 - k], event_shape)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(self.family.support, len(self.event_shape))

    @property
    def has_rsample(self) -> bool:
        return self.family.has_rsample

    @property
    def mean(self) -> Tensor:
        return _family_mean(self.family, self.params)

    def expand(self, batch_shape: Size, _instance: Any = None) -> Factorized:
        shape = Size(batch_shape) + self.event_shape + self.params.shape[-1:]
        return Factorized(self.family, self.params.expand(shape), self.event_shape)

    def rsample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        if not self.has_rsample:
            raise NotImplementedError(f"{self.family!r} has no reparameterised samples")
        shape = self._extended_shape(sample_shape) + self.params.shape[-1:]
        return self.family.sample(self.params.expand(shape))

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            shape = self._extended_shape(sample_shape) + self.params.shape[-1:]
            return self.family.sample(self.params.expand(shape))

    def log_prob(self, x: Tensor) -> Tensor:
        self.check_value(x)
        shape = torch.broadcast_shapes(x.shape, self.batch_shape + self.event_shape)
        params = self.params.expand(*shape, self.params.shape[-1])
        lp = self.family.log_prob(params, x.expand(shape))
        return sum_rightmost(lp, len(self.event_shape))


class Marginal(GenerativeDistribution):
    r"""The marginal of a latent-variable model, scored by importance sampling.

    .. math:: p(x | c) = \int p(x | z, c) \, p(z | c) \, dz, \qquad
        \log \hat p_K(x | c) = \log \frac{1}{K} \sum_{k=1}^K
        \frac{p(x | z_k, c) \, p(z_k | c)}{q(z_k | x, c)}, \quad z_k \sim q(z | x, c)

    ``sample`` is ancestral (:math:`z \sim p(z | c)`, then :math:`x \sim p(x | z, c)`);
    ``log_prob`` is :math:`\log \hat p_K`. Its exponential :math:`\hat p_K` is an unbiased
    estimate of :math:`p(x | c)`, so :math:`\mathbb{E} \log \hat p_K \leq \log p(x | c)`
    (Jensen), increases with :math:`K` and tends to :math:`\log p(x | c)` (Burda et al.,
    2015, theorem 1); :math:`K = 1` is the ELBO's estimate. Hence ``log_prob_kind ==
    "estimate"``.

    Arguments:
        prior: The prior :math:`p(z | c)`, with event shape :math:`(L,)` and a batch shape
            broadcastable to the batch shape.
        likelihood: The decoder, ``likelihood(z, c)`` with :math:`z` of shape
            :math:`(*S, L)` and :math:`c` of shape :math:`(*S, C)` (or ``None``) returning
            :math:`p(x | z, c)` with batch shape :math:`S`.
        posterior: The encoder, ``posterior(x, c)`` with :math:`x` of shape
            :math:`(*S, *E)` returning :math:`q(z | x, c)` with batch shape :math:`S`.
        event_shape: The data's event shape :math:`E`.
        context: A context with shape :math:`(*B, C)`, or ``None``.
        particles: The number of particles :math:`K` of ``log_prob``.
        batch_shape: The batch shape (default: the context's :math:`B`, else ``()``).
        support: The support of :math:`x`.

    References:
        | Importance Weighted Autoencoders (Burda et al., 2015)
        | https://arxiv.org/abs/1509.00519
    """

    has_rsample = False
    log_prob_kind = "estimate"

    def __init__(
        self,
        prior: Distribution,
        likelihood: Callable[[Tensor, Tensor | None], Distribution],
        posterior: Callable[[Tensor, Tensor | None], Distribution],
        event_shape: Sequence[int],
        context: Tensor | None = None,
        particles: int = 64,
        batch_shape: Sequence[int] | None = None,
        support: constraints.Constraint = constraints.real,
    ) -> None:
        if particles < 1:
            raise ValueError(f"expected particles >= 1, got {particles}")
        if batch_shape is None:
            batch_shape = context.shape[:-1] if context is not None else Size()
        batch_shape = Size(batch_shape)
        if prior.batch_shape != batch_shape:
            prior = prior.expand(batch_shape)
        self.prior, self.likelihood, self.posterior = prior, likelihood, posterior
        self.context, self.particles = context, int(particles)
        self._support = support
        super().__init__(batch_shape, Size(event_shape))

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(self._support, len(self.event_shape))

    def expand(self, batch_shape: Size, _instance: Any = None) -> Marginal:
        batch_shape = Size(batch_shape)
        c = self.context
        if c is not None:
            c = c.expand(*batch_shape, c.shape[-1])
        return Marginal(
            self.prior.expand(batch_shape),
            self.likelihood,
            self.posterior,
            self.event_shape,
            c,
            self.particles,
            batch_shape,
            self._support,
        )

    def _context(self, shape: Size) -> Tensor | None:
        c = self.context
        return None if c is None else c.expand(*shape, c.shape[-1])

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            shape = Size(sample_shape) + self.batch_shape
            z = self.prior.sample(Size(sample_shape))
            return self.likelihood(z, self._context(shape)).sample()

    def log_weights(self, x: Tensor, particles: int | None = None) -> Tensor:
        r"""The log importance weights :math:`\log w_k = \log p(x | z_k, c) + \log p(z_k |
        c) - \log q(z_k | x, c)`, :math:`z_k \sim q(z | x, c)` reparameterised.

        Arguments:
            x: Data with shape :math:`(*S, *B, *E)`.
            particles: The number of particles :math:`K` (default: the distribution's).

        Returns:
            The log-weights, with shape :math:`(K, *S, *B)`.
        """
        self.check_value(x)
        k = particles if particles is not None else self.particles
        if k < 1:
            raise ValueError(f"expected particles >= 1, got {k}")
        shape = torch.broadcast_shapes(
            x.shape[: x.dim() - len(self.event_shape)], self.batch_shape
        )
        x = x.expand(*shape, *self.event_shape)
        c = self._context(shape)
        q = self.posterior(x, c)
        if q.has_rsample and hasattr(q, "rsample_and_log_prob"):
            z, log_q = q.rsample_and_log_prob(Size((k,)))
        else:
            z = q.rsample(Size((k,))) if q.has_rsample else q.sample(Size((k,)))
            log_q = q.log_prob(z)
        log_p = self.prior.log_prob(z)
        log_lik = self.likelihood(z, c).log_prob(x)
        return log_lik + log_p - log_q

    def log_prob(self, x: Tensor) -> Tensor:
        lw = self.log_weights(x)
        return torch.logsumexp(lw, dim=0) - math.log(lw.shape[0])

    def elbo(self, x: Tensor, particles: int = 1) -> Tensor:
        r"""The evidence lower bound of each datum, :math:`\mathbb{E}_q[\log w]`, estimated
        with ``particles`` draws, with shape :math:`(*S, *B)`."""
        return self.log_weights(x, particles).mean(0)


def _standard_normal(features: int) -> LazyDistribution:
    return UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features))


@contextlib.contextmanager
def _kl_weight(beta: float) -> Iterator[None]:
    # Scaling both the prior's and the posterior's site by beta scales exactly the KL term
    # of the ELBO; Pyro's scale must be positive, so beta = 0 masks the latent site.
    if beta == 1:
        yield
    elif beta > 0:
        with poutine.scale(scale=beta):
            yield
    elif beta == 0:
        with poutine.mask(mask=False):
            yield
    else:
        raise ValueError(f"expected a KL weight beta >= 0, got {beta}")


class VAE(LazyDistribution):
    r"""A variational autoencoder: a decoder, a prior and an amortised Gaussian encoder.

    .. math:: p_\theta(x, z | c) = p_\theta(x | z, c) \, p(z | c), \qquad
        q_\phi(z | x, c) = \mathcal{N}(z | \mu_\phi(x, c), \mathrm{diag}\,
        \sigma_\phi^2(x, c))

    trained by maximising the (beta-)ELBO

    .. math:: \mathcal{L}_\beta(x) = \mathbb{E}_{q_\phi(z | x, c)}[\log p_\theta(x | z, c)]
        - \beta \, \mathrm{KL}(q_\phi(z | x, c) \,\|\, p(z | c)) \leq \log p_\theta(x | c)
        \quad (\beta = 1) .

    ``vae.model`` and ``vae.guide`` are the Pyro model / guide pair of this bound; ``beta``
    multiplies the log-densities of the latent site in both (``poutine.scale``), which
    scales exactly the KL term. ``vae(c)`` is the :class:`Marginal` of :math:`x`.

    .. code-block:: python

        vae = VAE(encoder, decoder, latent=8, event_shape=(1, 8, 8),
                  likelihood=CategoricalFamily(17))
        pg.fit(vae, x, steps=2000)                      # default objective: Pyro's ELBO
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
                             pyro.infer.TraceMeanField_ELBO())
        svi.step(x)                                     # or any Pyro loop
        vae().log_prob(x)                               # importance-weighted estimate

    Arguments:
        encoder: The encoder network, called as ``encoder(x)`` (``encoder(x, c)`` with a
            context) on :math:`x` with shape :math:`(N, *E)`, returning :math:`(N, 2L)`:
            the means :math:`\mu` then raw scales :math:`s`, :math:`\sigma =
            \mathrm{softplus}(s) + \sigma_{min}`.
        decoder: The decoder network, called as ``decoder(z)`` (``decoder(z, c)``) on
            :math:`z` with shape :math:`(N, L)`, returning :math:`N \cdot P \cdot |E|`
            numbers read as shape :math:`(N, P, *E)`: parameter-major, so an MLP's
            :math:`(N, P |E|)` output and a convolution's :math:`(N, P C, H, W)` both work.
        prior: The prior, a module whose call returns a distribution over :math:`z` with
            event shape :math:`(L,)` (called with the context when it has ``context > 0``),
            e.g. :class:`~probgen.flows.NSF`, a diffusion; default a standard normal. A
            prior must have a normalised density: ``log_prob_kind`` ``"none"`` (an implicit
            model) or ``"unnormalized"`` (an energy) is refused.
        event_shape: The data's event shape :math:`E` (an int for vectors).
        likelihood: The per-element family of the decoder (default
            :class:`~probgen.distributions.GaussianFamily`, mean and scale per element):
            :class:`~probgen.distributions.BernoulliFamily`,
            :class:`FixedGaussianFamily`, :class:`LearnedGaussianFamily`,
            :class:`~probgen.distributions.CategoricalFamily` (grey levels),
            :class:`~probgen.distributions.LogisticMixtureFamily` (discretised logistic).
        latent: The latent dimension :math:`L` (needed without a prior).
        context: The number of context features :math:`C`; the context goes into the
            encoder, the decoder and (when it takes one) the prior.
        beta: The KL weight :math:`\beta` of the default objective and of ``model`` /
            ``guide``.
        particles: The number of importance particles :math:`K` of ``vae(c).log_prob``.
        min_scale: The floor :math:`\sigma_{min}` of the encoder's scales.
        name: The name of the module in Pyro's parameter store. The store is global: give
            two VAEs trained by SVI in one process different names (or call
            ``pyro.clear_param_store()`` between them), else SVI's optimiser would see the
            first one's tensors. :func:`probgen.fit` steps the module's own parameters and
            is unaffected.

    References:
        | Auto-Encoding Variational Bayes (Kingma and Welling, 2013)
        | https://arxiv.org/abs/1312.6114
        | beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework
          (Higgins et al., 2017)
        | Learning Structured Output Representation using Deep Conditional Generative
          Models (Sohn et al., 2015)

    Example:
        >>> from probgen.nn import ContextMLP
        >>> vae = VAE(ContextMLP(3, 4, hidden=(8,)), ContextMLP(2, 6, hidden=(8,)),
        ...           latent=2, event_shape=3)
        >>> d = vae()
        >>> d.sample((5,)).shape, d.log_prob(torch.randn(5, 3)).shape, d.log_prob_kind
        (torch.Size([5, 3]), torch.Size([5]), 'estimate')
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module | None = None,
        *,
        event_shape: int | Sequence[int],
        likelihood: ElementFamily | None = None,
        latent: int | None = None,
        context: int = 0,
        beta: float = 1.0,
        particles: int = 64,
        min_scale: float = 1e-4,
        name: str = "vae",
    ) -> None:
        super().__init__()
        if context < 0:
            raise ValueError(f"expected context >= 0, got {context}")
        if particles < 1:
            raise ValueError(f"expected particles >= 1, got {particles}")
        if beta < 0:
            raise ValueError(f"expected a KL weight beta >= 0, got {beta}")
        if prior is None:
            if latent is None or latent < 1:
                raise ValueError(f"expected a latent dimension >= 1 or a prior, got {latent}")
            prior = _standard_normal(latent)
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.context = context
        self.event_shape = Size((event_shape,) if isinstance(event_shape, int) else event_shape)
        self.likelihood = GaussianFamily() if likelihood is None else likelihood
        self.beta, self.particles, self.min_scale, self.name = beta, particles, min_scale, name
        self.latent = self._check_prior(latent)

    def _check_prior(self, latent: int | None) -> int:
        with torch.no_grad():
            d = self.prior_distribution(torch.zeros(self.context) if self.context else None)
        kind = log_prob_kind(d)
        if kind in ("none", "unnormalized"):
            raise ValueError(
                f"the prior {type(self.prior).__name__} has log_prob_kind {kind!r}, but a "
                "VAE's ELBO and importance weights need the prior's normalised log-density "
                "log p(z): use a model with log_prob_kind 'exact' or 'estimate' (a flow, a "
                "mixture, a diffusion), not an implicit model or an unnormalised energy"
            )
        if len(d.event_shape) != 1 or (latent is not None and d.event_shape[0] != latent):
            raise ValueError(
                f"expected a prior with event_shape ({latent if latent else 'L'},), got "
                f"{tuple(d.event_shape)}"
            )
        return d.event_shape[0]

    # The three networks, on any leading dimensions.

    def prior_distribution(self, c: Tensor | None = None) -> Distribution:
        r"""The prior :math:`p(z | c)`: the prior module called with the context when it
        takes one, without it otherwise."""
        self.check_context(c)
        return self.prior(c) if getattr(self.prior, "context", 0) else self.prior()

    def _network(
        self, net: nn.Module, v: Tensor, c: Tensor | None, event: int
    ) -> tuple[Tensor, Size]:
        # Networks see one flat batch (N, *event); contexts broadcast to the batch.
        shape = v.shape[: v.dim() - event]
        flat = v.reshape(-1, *v.shape[v.dim() - event :])
        if not self.context:
            return net(flat), shape
        check_context(c, self.context)
        c = c.expand(*shape, self.context).reshape(-1, self.context)
        return net(flat, c), shape

    def encode(self, x: Tensor, c: Tensor | None = None) -> DiagNormal:
        r"""The posterior :math:`q_\phi(z | x, c)`.

        Arguments:
            x: Data with shape :math:`(*S, *E)`.
            c: Contexts with shape :math:`(*S, C)` (or broadcastable), or ``None``.

        Returns:
            A diagonal normal with batch shape :math:`S` and event shape :math:`(L,)`.
        """
        out, shape = self._network(self.encoder, x, c, len(self.event_shape))
        n, L = shape.numel(), self.latent
        if out.shape != (n, 2 * L):
            raise ValueError(
                f"expected the encoder to return shape ({n}, {2 * L}), got {tuple(out.shape)}"
            )
        loc, s = out.reshape(*shape, 2 * L).chunk(2, dim=-1)
        return DiagNormal(loc, F.softplus(s) + self.min_scale)

    def decode(self, z: Tensor, c: Tensor | None = None) -> Factorized:
        r"""The likelihood :math:`p_\theta(x | z, c)`.

        Arguments:
            z: Latents with shape :math:`(*S, L)`.
            c: Contexts with shape :math:`(*S, C)` (or broadcastable), or ``None``.

        Returns:
            A :class:`Factorized` distribution with batch shape :math:`S`.
        """
        out, shape = self._network(self.decoder, z, c, 1)
        p, E = self.likelihood.params, self.event_shape
        if out.numel() != shape.numel() * p * E.numel():
            raise ValueError(
                f"expected the decoder to return {p} x {tuple(E)} numbers per latent (shape "
                f"({shape.numel()}, {p}, {', '.join(map(str, E))})), got {tuple(out.shape)}"
            )
        params = out.reshape(*shape, p, *E).movedim(len(shape), -1)
        return Factorized(self.likelihood, params, E)

    # The Pyro model / guide pair.

    def _check_batch(self, x: Tensor, c: Tensor | None) -> int:
        k = len(self.event_shape)
        if x.dim() != k + 1 or x.shape[1:] != self.event_shape:
            raise ValueError(
                f"expected x with shape (N, {', '.join(map(str, self.event_shape))}), got "
                f"{tuple(x.shape)}"
            )
        check_context(c, self.context)
        if c is not None and c.shape != (x.shape[0], self.context):
            raise ValueError(
                f"expected c with shape ({x.shape[0]}, {self.context}), got {tuple(c.shape)}"
            )
        return x.shape[0]

    def model(self, x: Tensor, c: Tensor | None = None, beta: float | None = None) -> Tensor:
        r"""The Pyro model :math:`p_\theta(x, z | c)`: sites ``"z"`` (latent, event
        :math:`(L,)`) and ``"x"`` (observed, event :math:`E`) in the plate ``"data"``.

        Arguments:
            x: A batch with shape :math:`(N, *E)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.
            beta: The KL weight (default: ``self.beta``).

        Returns:
            The latent sample :math:`z`, with shape :math:`(N, L)`.
        """
        n = self._check_batch(x, c)
        pyro.module(self.name, self)
        beta = self.beta if beta is None else beta
        prior = self.prior_distribution(c)
        with pyro.plate("data", n, dim=-1):
            with _kl_weight(beta):
                z = pyro.sample("z", prior)
            pyro.sample("x", self.decode(z, c), obs=x)
        return z

    def guide(self, x: Tensor, c: Tensor | None = None, beta: float | None = None) -> Tensor:
        r"""The Pyro guide :math:`q_\phi(z | x, c)`: site ``"z"`` in the plate ``"data"``.

        Arguments:
            x: A batch with shape :math:`(N, *E)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.
            beta: The KL weight (default: ``self.beta``); must match the model's.

        Returns:
            The latent sample :math:`z`, with shape :math:`(N, L)`.
        """
        n = self._check_batch(x, c)
        pyro.module(self.name, self)
        beta = self.beta if beta is None else beta
        with pyro.plate("data", n, dim=-1):
            with _kl_weight(beta):
                return pyro.sample("z", self.encode(x, c))

    # The distribution of x.

    def forward(self, c: Tensor | None = None) -> Marginal:
        self.check_context(c)
        return Marginal(
            self.prior_distribution(c),
            self.decode,
            self.encode,
            self.event_shape,
            c,
            self.particles,
            support=self.likelihood.support,
        )

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        # Imported here: objectives sit to the right of distributions in the layering.
        from ..objectives import elbo

        return elbo(self, x, c)
