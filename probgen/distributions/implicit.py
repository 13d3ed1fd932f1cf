r"""Implicit models: the pushforward of a latent distribution by a generator network.

A generator :math:`G_\theta` maps latent noise (and an optional context) to data,

.. math:: x = G_\theta(z, c), \qquad z \sim p(z),

which defines a distribution one can sample from (and differentiate samples through) but
whose density is intractable: :math:`G_\theta` is neither invertible nor
dimension-preserving. The value :class:`Implicit` says so with ``log_prob_kind == "none"``;
its ``log_prob`` raises and points to the sample-based metrics of
:mod:`probgen.metrics` (two-sample tests, precision / recall, FID / KID, mode coverage).

Two lazy models build it: :class:`GAN` (trained against a discriminator, several players
of :func:`probgen.fit`) and :class:`GMMN` (trained by maximum mean discrepancy alone).
"""

from __future__ import annotations

__all__ = ["Implicit", "ImplicitModel", "GAN", "GMMN", "NO_DENSITY"]

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

from ..lazy import LazyDistribution, UnconditionalDistribution
from .base import GenerativeDistribution
from .simple import DiagNormal

NO_DENSITY = (
    "{name} is an implicit model (log_prob_kind 'none'): its density is intractable, so "
    "log_prob is not defined. Evaluate it with samples instead: "
    "probgen.metrics.mmd_test, energy_distance, sliced_wasserstein, classifier_test "
    "(two-sample tests), precision_recall, density_coverage, fid, kid, mode_coverage"
)


class Implicit(GenerativeDistribution):
    r"""The distribution of :math:`x = G(z, c)` for :math:`z \sim p(z)`: samples, no density.

    Sampling is one pass of the generator; :meth:`rsample` is differentiable with respect
    to the generator's parameters (and the latent's, when it is reparameterisable).

    Arguments:
        latent: The latent distribution :math:`p(z)`, with ``batch_shape ()``.
        generator: The map :math:`G`, called as ``generator(z)`` or, with a context,
            ``generator(z, c)`` on a flat batch: :math:`z` with shape :math:`(N, *L)`,
            :math:`c` with shape :math:`(N, C)`, returning shape :math:`(N, *E)`.
        event_shape: The data's event shape :math:`E`.
        context: A context :math:`c` with shape :math:`(*B, C)`, or ``None``.
        batch_shape: The batch shape (default: the context's :math:`B`, else ``()``);
            the context must broadcast to it.
        support: The support of :math:`x` (default: the reals).

    Example:
        >>> G = torch.nn.Linear(3, 2)
        >>> d = Implicit(DiagNormal(torch.zeros(3), torch.ones(3)), G, (2,))
        >>> d.sample((5,)).shape
        torch.Size([5, 2])
        >>> d.log_prob_kind
        'none'
    """

    has_rsample = True
    log_prob_kind = "none"

    def __init__(
        self,
        latent: Distribution,
        generator: Callable[..., Tensor],
        event_shape: Sequence[int],
        context: Tensor | None = None,
        batch_shape: Sequence[int] | None = None,
        support: constraints.Constraint = constraints.real,
    ) -> None:
        if latent.batch_shape != ():
            raise ValueError(
                f"expected a latent distribution with batch_shape (), got "
                f"{tuple(latent.batch_shape)}"
            )
        if batch_shape is None:
            batch_shape = context.shape[:-1] if context is not None else Size()
        batch_shape = Size(batch_shape)
        if context is not None:
            try:
                torch.broadcast_shapes(context.shape[:-1], batch_shape)
            except RuntimeError:
                raise ValueError(
                    f"context of shape {tuple(context.shape)} does not broadcast with "
                    f"batch_shape {tuple(batch_shape)}"
                ) from None
        self.latent, self.generator, self.context = latent, generator, context
        self._support = support
        super().__init__(batch_shape, Size(event_shape))

    @property
    def support(self) -> constraints.Constraint:
        return self._support

    def __repr__(self) -> str:
        return (
            f"Implicit(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, latent={self.latent})"
        )

    def expand(self, batch_shape: Size, _instance: Any = None) -> Implicit:
        batch_shape = Size(batch_shape)
        c = self.context
        if c is not None:
            c = c.expand(*batch_shape, c.shape[-1])
        return Implicit(
            self.latent, self.generator, self.event_shape, c, batch_shape, self._support
        )

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        shape = Size(sample_shape) + self.batch_shape
        n = shape.numel()
        # The generator sees one flat batch: a network knows nothing of sample and batch
        # dimensions, and one call is faster than many.
        z = self.latent.rsample(shape).reshape(n, *self.latent.event_shape)
        if self.context is None:
            x = self.generator(z)
        else:
            c = self.context.expand(*shape, self.context.shape[-1]).reshape(n, -1)
            x = self.generator(z, c)
        if tuple(x.shape[1:]) != tuple(self.event_shape) or x.shape[0] != n:
            raise ValueError(
                f"expected the generator to return shape ({n}, "
                f"{', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )
        return x.reshape(*shape, *self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError(NO_DENSITY.format(name=type(self).__name__))


def _standard_normal(features: int) -> LazyDistribution:
    return UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features))


class ImplicitModel(LazyDistribution):
    r"""A lazy implicit model: a latent and a generator, built into an :class:`Implicit`.

    Arguments:
        generator: The generator network, called as ``generator(z)`` when ``context ==
            0`` and ``generator(z, c)`` otherwise.
        latent: The latent dimension :math:`L` (a standard normal), or a lazy
            unconditional distribution.
        context: The number of context features :math:`C` (0 when unconditional).
        event_shape: The data's event shape; by default ``generator.event_shape``, else
            found by generating one sample.
        support: The support of the data (default: the reals).
    """

    def __init__(
        self,
        generator: nn.Module,
        latent: int | LazyDistribution = 16,
        context: int = 0,
        event_shape: Sequence[int] | None = None,
        support: constraints.Constraint = constraints.real,
    ) -> None:
        super().__init__()
        if context < 0:
            raise ValueError(f"expected context >= 0, got {context}")
        if isinstance(latent, int):
            if latent < 1:
                raise ValueError(f"expected a latent dimension >= 1, got {latent}")
            latent = _standard_normal(latent)
        if not isinstance(latent, LazyDistribution) or latent.context:
            raise ValueError(
                "expected latent to be an int or an unconditional LazyDistribution, got "
                f"{type(latent).__name__}"
            )
        self.generator, self.latent, self.context = generator, latent, context
        self._support = support
        if event_shape is None:
            event_shape = getattr(generator, "event_shape", None)
        if event_shape is None:
            event_shape = self._infer_event_shape()
        self.event_shape = Size(event_shape)

    @torch.no_grad()
    def _infer_event_shape(self) -> Size:
        # One sample in eval mode, so that no running statistic moves.
        training = self.training
        self.eval()
        try:
            z = self.latent().sample((1,))
            c = z.new_zeros(1, self.context) if self.context else None
            x = self.generator(z) if c is None else self.generator(z, c)
        finally:
            self.train(training)
        return Size(x.shape[1:])

    def forward(self, c: Tensor | None = None) -> Implicit:
        self.check_context(c)
        return Implicit(self.latent(), self.generate, self.event_shape, c, support=self._support)

    def generate(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        r"""Runs the generator on a flat batch.

        Arguments:
            z: Latents with shape :math:`(N, *L)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.

        Returns:
            Data with shape :math:`(N, *E)`.
        """
        return self.generator(z) if c is None else self.generator(z, c)


class GAN(ImplicitModel):
    r"""A generative adversarial network: a generator and a discriminator (critic).

    The model is the generator's distribution, :class:`Implicit`; the discriminator
    :math:`D_\psi` is the second player, trained against it by the losses of
    :mod:`probgen.objectives` through :func:`probgen.fit`'s several players:

    .. math:: \min_\theta \max_\psi \; \mathbb{E}_{p_{data}}[\log \sigma(D_\psi(x))]
        + \mathbb{E}_{p(z)}[\log (1 - \sigma(D_\psi(G_\theta(z))))]

    (the minimax loss; non-saturating, Wasserstein, WGAN-GP and hinge variants change the
    two players' losses). With a context (e.g. one-hot labels) both networks receive it:
    a conditional GAN.

    .. code-block:: python

        gan = GAN(generator, discriminator, latent=16)
        pg.fit(
            gan, x, steps=2000,
            objective=pg.objectives.adversarial(pg.objectives.wasserstein, penalty=10.0),
            optimizer={
                "discriminator": Adam(gan.discriminator.parameters(), 1e-4, betas=(0.5, 0.9)),
                "generator": Adam(gan.generator_parameters(), 1e-4, betas=(0.5, 0.9)),
            },
            schedule={"discriminator": 5},  # 5 critic steps per generator step
        )

    Arguments:
        generator: The generator, called as ``generator(z)`` or ``generator(z, c)``.
        discriminator: The discriminator, called as ``discriminator(x)`` or
            ``discriminator(x, c)`` on :math:`x` with shape :math:`(N, *E)`, returning
            logits (critic values) with shape :math:`(N,)` or :math:`(N, 1)`.
        latent: The latent dimension :math:`L` (a standard normal), or a lazy
            unconditional distribution.
        context: The number of context features :math:`C`.
        event_shape: The data's event shape (inferred when ``None``).
        support: The support of the data.

    References:
        | Generative Adversarial Nets (Goodfellow et al., 2014)
        | https://arxiv.org/abs/1406.2661
        | Conditional Generative Adversarial Nets (Mirza and Osindero, 2014)
        | https://arxiv.org/abs/1411.1784

    Example:
        >>> from probgen.nn import ContextMLP
        >>> gan = GAN(ContextMLP(4, 2, hidden=(16,)), ContextMLP(2, 1, hidden=(16,)), latent=4)
        >>> gan().rsample((8,)).shape, gan.critic(torch.randn(8, 2)).shape
        (torch.Size([8, 2]), torch.Size([8]))
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent: int | LazyDistribution = 16,
        context: int = 0,
        event_shape: Sequence[int] | None = None,
        support: constraints.Constraint = constraints.real,
    ) -> None:
        super().__init__(generator, latent, context, event_shape, support)
        self.discriminator = discriminator

    def critic(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The discriminator's logits (critic values) :math:`D_\psi(x, c)`.

        Arguments:
            x: Data with shape :math:`(*S, *E)`.
            c: Contexts with shape :math:`(*S, C)` (or broadcastable), or ``None``.

        Returns:
            The logits, with shape :math:`S`.
        """
        k = len(self.event_shape)
        shape = x.shape[: x.dim() - k]
        if tuple(x.shape[x.dim() - k :]) != tuple(self.event_shape):
            raise ValueError(
                f"expected x with event_shape {tuple(self.event_shape)}, got shape "
                f"{tuple(x.shape)}"
            )
        flat = x.reshape(-1, *self.event_shape)
        if self.context:
            self.check_context(c)
            c = c.expand(*shape, self.context).reshape(-1, self.context)
            out = self.discriminator(flat, c)
        else:
            self.check_context(c)
            out = self.discriminator(flat)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        if out.shape != (flat.shape[0],):
            raise ValueError(
                f"expected the discriminator to return shape ({flat.shape[0]},) or "
                f"({flat.shape[0]}, 1), got {tuple(out.shape)}"
            )
        return out.reshape(shape)

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        r"""The parameters of the generator player: every parameter but the discriminator's."""
        critic = {id(p) for p in self.discriminator.parameters()}
        return (p for p in self.parameters() if id(p) not in critic)

    def default_objective(self, x: Tensor | None, c: Tensor | None = None) -> Tensor:
        raise ValueError(
            "a GAN has two players, so fit needs a dict of objectives and optimizers: "
            "pg.fit(gan, x, objective=pg.objectives.adversarial(loss), optimizer={"
            "'discriminator': ..., 'generator': ...}) (see probgen.implicit.GAN)"
        )


class GMMN(ImplicitModel):
    r"""A generative moment matching network: a generator trained by minimising the
    maximum mean discrepancy to the data, with no discriminator.

    .. math:: \min_\theta \mathrm{MMD}_k^2(p_{data}, p_\theta), \qquad
        \mathrm{MMD}_k^2(p, q) = \mathbb{E}\,k(x, x') + \mathbb{E}\,k(y, y')
        - 2 \mathbb{E}\,k(x, y)

    with :math:`x, x' \sim p` and :math:`y, y' \sim q`, estimated without bias on each
    batch (:func:`probgen.objectives.mmd`). A characteristic kernel (a mixture of RBF
    kernels by default) makes the MMD zero only when the distributions are equal. A
    conditional GMMN matches the joint distributions of :math:`(x, c)`.

    Arguments:
        generator: The generator, called as ``generator(z)`` or ``generator(z, c)``.
        latent: The latent dimension :math:`L` (a standard normal), or a lazy
            unconditional distribution.
        context: The number of context features :math:`C`.
        kernel: The kernel of the loss (default
            :class:`probgen.metrics.MixtureRBF`, bandwidths from the median heuristic).
        event_shape: The data's event shape (inferred when ``None``).
        support: The support of the data.

    References:
        | Generative Moment Matching Networks (Li et al., 2015)
        | https://arxiv.org/abs/1502.02761
        | Training generative neural networks via Maximum Mean Discrepancy optimization
          (Dziugaite et al., 2015) https://arxiv.org/abs/1505.03906

    Example:
        >>> from probgen.nn import ContextMLP
        >>> gmmn = GMMN(ContextMLP(4, 2, hidden=(16,)), latent=4)
        >>> gmmn().sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        generator: nn.Module,
        latent: int | LazyDistribution = 16,
        context: int = 0,
        kernel: Callable[..., Any] | None = None,
        event_shape: Sequence[int] | None = None,
        support: constraints.Constraint = constraints.real,
    ) -> None:
        super().__init__(generator, latent, context, event_shape, support)
        self.kernel = kernel

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        # Imported here: objectives sit to the right of distributions in the layering.
        from ..objectives import mmd, unwrap

        return mmd(self, x, c, kernel=unwrap(self).kernel)
