r"""Training objectives, as free functions.

An objective maps a model, a batch :math:`x` and an optional context :math:`c` to a scalar
loss to minimise:

.. code-block:: python

    loss = objective(model, x, c)

where ``model`` is an :class:`torch.nn.Module` whose call ``model(c)`` returns a
distribution. Models never own optimisers or losses: a model's ``default_objective`` is
one line that calls a function of this module, and :func:`probgen.fit` takes any.

Under :func:`probgen.fit` in a distributed run the model an objective receives is a
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper. Calling it (``model(c)``)
goes through the wrapper, as it must for gradients to be averaged across processes; any
other attribute (a submodule, a method such as ``encode``) is reached through
:func:`unwrap`.
"""

from __future__ import annotations

__all__ = [
    "nll",
    "reverse_kl",
    "unwrap",
    "contrastive_divergence",
    "persistent_contrastive_divergence",
    "energy_regularization",
    "AdversarialLoss",
    "minimax",
    "non_saturating",
    "wasserstein",
    "hinge",
    "least_squares",
    "gradient_penalty",
    "clip_weights",
    "discriminator_loss",
    "generator_loss",
    "adversarial",
    "mmd",
    "flow_matching",
    "denoising",
    "denoising_score_matching",
    "sliced_score_matching",
    "vq_vae",
    "autoencoder",
    "elbo",
    "iwae",
    "KLWarmup",
]

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import torch
import torch.nn as nn
from torch import Size, Tensor

from .metrics.two_sample import MixtureRBF, mmd2
from .samplers import Kernel, ReplayBuffer, run_chain


def unwrap(model: nn.Module) -> nn.Module:
    r"""The module inside a data-parallel wrapper, or ``model`` itself.

    Arguments:
        model: A module, possibly wrapped by
            :class:`~torch.nn.parallel.DistributedDataParallel` or
            :class:`~torch.nn.DataParallel`.

    Returns:
        The wrapped module, whose attributes and methods are the model's own.

    Example:
        >>> import probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> unwrap(flow) is flow
        True
    """
    # Both wrappers keep the user's module as `.module`; duck typing avoids importing
    # torch.distributed where it is not built.
    while type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(
        model, "module"
    ):
        model = model.module
    return model


def nll(model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The mean negative log-likelihood of a batch.

    .. math:: \ell = -\frac{1}{N} \sum_{i=1}^N \log p_\phi(x_i | c_i)

    Minimising it is maximum likelihood, i.e. minimising :math:`\mathrm{KL}(p_{data} \|
    p_\phi)` up to the data's entropy. It is as exact as ``log_prob`` is: a bound or an
    estimate for families whose ``log_prob_kind`` says so.

    Arguments:
        model: A module whose call ``model(c)`` returns a distribution :math:`p_\phi(X | c)`.
        x: A batch :math:`x` with shape :math:`(*, *E)`, E the event shape.
        c: A context :math:`c` with shape :math:`(*, C)`, or ``None`` for an unconditional
            model.

    Returns:
        The scalar loss :math:`\ell`.

    Example:
        >>> import torch, probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> nll(flow, torch.randn(16, 2)).shape
        torch.Size([])
    """
    d = model() if c is None else model(c)
    return -d.log_prob(x).mean()


def reverse_kl(
    model: nn.Module,
    log_target: Callable[[Tensor], Tensor],
    n: int,
    c: Tensor | None = None,
) -> Tensor:
    r"""The reverse Kullback-Leibler divergence to an unnormalised target, up to a constant.

    .. math:: \ell = \frac{1}{N} \sum_{i=1}^N \log q_\phi(x_i) - \log \tilde p(x_i),
        \quad x_i \sim q_\phi

    For :math:`\tilde p = Z p`, :math:`\mathbb{E}[\ell] = \mathrm{KL}(q_\phi \| p) - \log Z`.
    The samples are reparameterised, so the gradient flows through them; the model must
    support ``rsample`` (its fused ``rsample_and_log_prob`` is used when it has one).

    Arguments:
        model: A module whose call ``model(c)`` returns a distribution :math:`q_\phi(X | c)`.
        log_target: The log-density :math:`\log \tilde p(x)` of the target, up to a
            constant, mapping :math:`x` with shape :math:`(N, *B, *E)` to shape
            :math:`(N, *B)`.
        n: The number of samples :math:`N` (per context).
        c: A context :math:`c` with shape :math:`(*B, C)`, or ``None``.

    Returns:
        The scalar loss :math:`\ell`.

    Example:
        >>> import torch, probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> reverse_kl(flow, log_p, 64).shape
        torch.Size([])
    """
    if n < 1:
        raise ValueError(f"expected a number of samples n >= 1, got {n}")
    d = model() if c is None else model(c)
    if not d.has_rsample:
        raise ValueError(
            f"reverse_kl needs reparameterised samples but {type(d).__name__} has no rsample"
        )
    if hasattr(d, "rsample_and_log_prob"):
        x, log_q = d.rsample_and_log_prob(Size((n,)))
    else:
        x = d.rsample(Size((n,)))
        log_q = d.log_prob(x)
    return (log_q - log_target(x)).mean()


# Energy-based models: contrastive divergence and its persistent variant.

def energy_regularization(energy_pos: Tensor, energy_neg: Tensor) -> Tensor:
    r"""The squared-energy penalty that keeps contrastive divergence stable.

    .. math:: r = \frac1N \sum_i E(x_i^+)^2 + \frac1M \sum_j E(x_j^-)^2

    Contrastive divergence only sees energy *differences*, so the energies can drift to
    large magnitudes (and their gradients, hence the sampler's steps, with them); the
    penalty anchors them near 0 (Du and Mordatch, 2019, section 3.3).

    Arguments:
        energy_pos: The energies of the data, any shape.
        energy_neg: The energies of the model's samples, any shape.

    Returns:
        The scalar penalty :math:`r`.

    Example:
        >>> import torch
        >>> energy_regularization(torch.ones(4), -torch.ones(3))
        tensor(2.)
    """
    return (energy_pos**2).mean() + (energy_neg**2).mean()


def _negatives(
    d: Any, x0: Tensor, kernel: Kernel | None, steps: int | None, generator: Any
) -> Tensor:
    # The model's samples: the kernel run from x0, detached (no gradient flows through
    # the chains: the contrastive divergence gradient treats them as fixed samples).
    kernel = d.kernel if kernel is None else kernel
    steps = d.steps if steps is None else steps
    chain = run_chain(kernel, x0.detach(), d.target, steps, record=False, generator=generator)
    return chain.state.x.detach()


def _cd_loss(d: Any, x: Tensor, x_neg: Tensor, regularization: float) -> Tensor:
    e_pos, e_neg = d.energy(x), d.energy(x_neg)
    loss = e_pos.mean() - e_neg.mean()
    if regularization:
        loss = loss + regularization * energy_regularization(e_pos, e_neg)
    return loss


def _sample_dims(d: Any, x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape[: x.dim() - len(d.batch_shape) - len(d.event_shape)])


def contrastive_divergence(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    steps: int | None = None,
    kernel: Kernel | None = None,
    start: Literal["data", "init"] = "data",
    regularization: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Contrastive divergence: the maximum-likelihood gradient of an energy-based model,
    with the model's expectation estimated by short MCMC runs.

    .. math:: \ell = \frac1N \sum_i E_\theta(x_i^+) - \frac1N \sum_i E_\theta(x_i^-)
        \; [+ \lambda r], \qquad
        \nabla_\theta \ell \approx -\nabla_\theta \frac1N \sum_i \log p_\theta(x_i^+)

    since :math:`\nabla_\theta \log p_\theta(x) = -\nabla_\theta E_\theta(x) +
    \mathbb{E}_{p_\theta}[\nabla_\theta E_\theta]`. The negatives :math:`x^-` are ``steps``
    kernel transitions from the data (CD-k; ``start="data"``) or from the model's initial
    distribution (short-run MCMC; ``start="init"``), detached. When the kernel leaves
    :math:`p_\theta` invariant and the data are samples of :math:`p_\theta`, the expected
    gradient is exactly zero. The loss value itself is not a likelihood.

    Arguments:
        model: A module whose call ``model(c)`` returns an energy-based distribution (an
            :class:`~probgen.energy.EnergyBased` or :class:`~probgen.energy.RestrictedBoltzmann`
            with ``energy``, ``target``, ``kernel``, ``steps`` and ``init``).
        x: A batch :math:`x^+` with shape :math:`(N, *E)`.
        c: A context with shape :math:`(N, C)`, or ``None``.
        steps: Kernel transitions (default: the model's ``steps``); CD-1 is 1.
        kernel: The kernel (default: the model's), e.g. ``ULA(0.01)`` for short-run
            Langevin, ``BlockGibbs()`` for RBMs.
        start: ``"data"`` (CD-k) or ``"init"`` (short-run chains from the initial
            distribution).
        regularization: The weight :math:`\lambda` of :func:`energy_regularization`.
        generator: The kernel's random number generator.

    Returns:
        The scalar loss :math:`\ell`.

    References:
        | Training Products of Experts by Minimizing Contrastive Divergence (Hinton, 2002)
        | Learning Non-Convergent Non-Persistent Short-Run MCMC Toward Energy-Based Model
          (Nijkamp et al., 2019) https://arxiv.org/abs/1904.09770

    Example:
        >>> import torch, probgen as pg
        >>> ebm = pg.energy.EBM(features=2, hidden=(16,), steps=5)
        >>> contrastive_divergence(ebm, torch.randn(32, 2)).shape
        torch.Size([])
    """
    d = model() if c is None else model(c)
    if start == "data":
        x0 = x
    elif start == "init":
        init = d.init if d.init.batch_shape == d.batch_shape else d.init.expand(d.batch_shape)
        x0 = init.sample(torch.Size(_sample_dims(d, x)))
    else:
        raise ValueError(f"expected start 'data' or 'init', got {start!r}")
    return _cd_loss(d, x, _negatives(d, x0, kernel, steps, generator), regularization)


def persistent_contrastive_divergence(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    buffer: ReplayBuffer,
    steps: int | None = None,
    kernel: Kernel | None = None,
    regularization: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Persistent contrastive divergence: the chains carry over from step to step.

    The loss is :func:`contrastive_divergence`'s, but each step's chains start where
    earlier steps left them, kept in a :class:`~probgen.samplers.ReplayBuffer` (with a
    fraction reinitialised from the model's initial distribution each step). Since the
    model changes slowly, persistent chains stay near equilibrium and a few transitions
    per step suffice. Give the buffer with :func:`functools.partial`:

    .. code-block:: python

        buffer = pg.samplers.ReplayBuffer(10_000, reinit=0.05)
        objective = partial(pg.objectives.persistent_contrastive_divergence, buffer=buffer)
        pg.fit(ebm, data, objective=objective)

    The buffer is the objective's state, outside the model: save it with its
    ``state_dict`` next to :func:`probgen.fit`'s checkpoint to resume exactly. With a
    context, buffered states are run under the batch's context (the buffer is an
    initialisation).

    Arguments:
        model: A module whose call ``model(c)`` returns an energy-based distribution.
        x: A batch :math:`x^+` with shape :math:`(N, *E)`.
        c: A context with shape :math:`(N, C)`, or ``None``.
        buffer: The :class:`~probgen.samplers.ReplayBuffer` of persistent chains.
        steps: Kernel transitions per step (default: the model's ``steps``).
        kernel: The kernel (default: the model's).
        regularization: The weight :math:`\lambda` of :func:`energy_regularization`.
        generator: The random number generator of the kernel and the buffer.

    Returns:
        The scalar loss.

    References:
        | Training Restricted Boltzmann Machines using Approximations to the Likelihood
          Gradient (Tieleman, 2008)
        | Implicit Generation and Generalization in Energy-Based Models (Du and Mordatch,
          2019) https://arxiv.org/abs/1903.08689

    Example:
        >>> import torch, probgen as pg
        >>> ebm = pg.energy.EBM(features=2, hidden=(16,), steps=5)
        >>> buffer = pg.samplers.ReplayBuffer(100)
        >>> persistent_contrastive_divergence(ebm, torch.randn(32, 2), buffer=buffer).shape
        torch.Size([])
    """
    d = model() if c is None else model(c)
    event = d.event_shape
    n = math.prod(x.shape[: x.dim() - len(event)])

    def fresh(k: int) -> Tensor:
        init = d.init
        with torch.no_grad():
            if init.batch_shape == ():
                return init.sample(torch.Size((k,)))
            return init.sample(torch.Size((math.ceil(k / init.batch_shape.numel()),))).reshape(
                -1, *event
            )[:k]

    x0, idx = buffer.draw(n, fresh, generator)
    x_neg = _negatives(d, x0.reshape(x.shape), kernel, steps, generator)
    buffer.update(idx, x_neg.reshape(n, *event))
    return _cd_loss(d, x, x_neg, regularization)


# Implicit models: adversarial losses (GANs) and maximum mean discrepancy (GMMN).


class AdversarialLoss:
    r"""The two players' losses of a GAN, as functions of the critic's outputs.

    ``critic(real, fake)`` is the discriminator's loss given its logits on a real and a
    generated batch; ``generator(fake)`` is the generator's loss given the logits on a
    generated batch. Both are scalars to minimise. The module-level instances
    :data:`minimax`, :data:`non_saturating`, :data:`wasserstein`, :data:`hinge` and
    :data:`least_squares` are the usual ones; :func:`adversarial` turns one into the
    objectives of :func:`probgen.fit`.

    Arguments:
        name: A short name.
        critic: The discriminator's loss ``(real, fake) -> scalar``.
        generator: The generator's loss ``fake -> scalar``.
    """

    def __init__(
        self,
        name: str,
        critic: Callable[[Tensor, Tensor], Tensor],
        generator: Callable[[Tensor], Tensor],
    ) -> None:
        self.name, self.critic, self.generator = name, critic, generator

    def __repr__(self) -> str:
        return f"AdversarialLoss({self.name!r})"


def _bce_critic(real: Tensor, fake: Tensor) -> Tensor:
    # -log sigmoid(r) - log(1 - sigmoid(f)), written with softplus for stability.
    return nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()


minimax = AdversarialLoss("minimax", _bce_critic, lambda fake: -nn.functional.softplus(fake).mean())
minimax.__doc__ = r"""The original GAN game (Goodfellow et al., 2014, eq. 1):

.. math:: \ell_D = -\mathbb{E}\log\sigma(D(x)) - \mathbb{E}\log(1 - \sigma(D(G(z)))),
    \qquad \ell_G = \mathbb{E}\log(1 - \sigma(D(G(z))))

For a fixed generator the optimal discriminator is :math:`\sigma(D^*(x)) = p(x) / (p(x)
+ q(x))`. The generator's gradient vanishes when the discriminator wins (saturation).
"""

non_saturating = AdversarialLoss(
    "non_saturating", _bce_critic, lambda fake: nn.functional.softplus(-fake).mean()
)
non_saturating.__doc__ = r"""The non-saturating GAN: the minimax critic, and the generator
maximises :math:`\log \sigma(D(G(z)))` instead, :math:`\ell_G = -\mathbb{E}\log\sigma(D(G(z)))`
(same fixed points, strong gradients early on; Goodfellow et al., 2014, section 3)."""

wasserstein = AdversarialLoss(
    "wasserstein", lambda real, fake: fake.mean() - real.mean(), lambda fake: -fake.mean()
)
wasserstein.__doc__ = r"""The Wasserstein GAN: the critic maximises
:math:`\mathbb{E} D(x) - \mathbb{E} D(G(z))`, the Kantorovich-Rubinstein dual of
:math:`W_1` when :math:`D` is 1-Lipschitz, kept so by weight clipping
(``adversarial(wasserstein, clip=0.01)``, Arjovsky et al., 2017,
https://arxiv.org/abs/1701.07875) or a gradient penalty (``penalty=10.0``, WGAN-GP,
Gulrajani et al., 2017, https://arxiv.org/abs/1704.00028)."""

hinge = AdversarialLoss(
    "hinge",
    lambda real, fake: nn.functional.relu(1 - real).mean() + nn.functional.relu(1 + fake).mean(),
    lambda fake: -fake.mean(),
)
hinge.__doc__ = r"""The hinge loss, :math:`\ell_D = \mathbb{E}\max(0, 1 - D(x)) +
\mathbb{E}\max(0, 1 + D(G(z)))`, :math:`\ell_G = -\mathbb{E} D(G(z))`; usually with a
spectrally normalised critic (Miyato et al., 2018, https://arxiv.org/abs/1802.05957)."""

least_squares = AdversarialLoss(
    "least_squares",
    lambda real, fake: ((real - 1).square().mean() + fake.square().mean()) / 2,
    lambda fake: (fake - 1).square().mean() / 2,
)
least_squares.__doc__ = r"""The least-squares GAN (Mao et al., 2017,
https://arxiv.org/abs/1611.04076): :math:`\ell_D = \frac12\mathbb{E}(D(x) - 1)^2 +
\frac12\mathbb{E}D(G(z))^2`, :math:`\ell_G = \frac12\mathbb{E}(D(G(z)) - 1)^2`."""


def gradient_penalty(
    critic: Callable[..., Tensor], real: Tensor, fake: Tensor, c: Tensor | None = None
) -> Tensor:
    r"""The WGAN-GP gradient penalty, two-sided, at random interpolates:

    .. math:: r = \mathbb{E}_{\hat x}\big(\|\nabla_{\hat x} D(\hat x)\|_2 - 1\big)^2, \qquad
        \hat x = \epsilon x + (1 - \epsilon) \tilde x, \quad \epsilon \sim U(0, 1)

    The optimal critic of the Wasserstein dual has unit gradient norm almost everywhere
    between the two distributions; the penalty pulls it there (a soft Lipschitz
    constraint). It is zero for any critic with unit gradient norm, e.g. a linear critic
    with a unit-norm weight. Differentiable in the critic's parameters (double backward).

    Arguments:
        critic: The critic, ``critic(x)`` or ``critic(x, c)``, on :math:`x` with shape
            :math:`(N, *E)`, returning shape :math:`(N,)` (e.g. :meth:`GAN.critic`).
        real: Data :math:`x` with shape :math:`(N, *E)`.
        fake: Generated samples :math:`\tilde x` with shape :math:`(N, *E)`.
        c: The contexts with shape :math:`(N, C)`, or ``None``.

    Returns:
        The scalar penalty :math:`r` (to be weighted, :math:`\lambda = 10` in the paper).

    References:
        | Improved Training of Wasserstein GANs (Gulrajani et al., 2017), Algorithm 1
        | https://arxiv.org/abs/1704.00028

    Example:
        >>> critic = lambda x: x @ torch.tensor([0.6, 0.8])
        >>> float(gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2)))
        0.0
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"expected real and fake of the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype, device=real.device)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x) if c is None else critic(x, c)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    norm = grad.reshape(len(x), -1).norm(dim=-1)
    return (norm - 1).square().mean()


@torch.no_grad()
def clip_weights(module: nn.Module, clip: float) -> None:
    r"""Clamps every parameter of ``module`` to :math:`[-\text{clip}, \text{clip}]`, in
    place (the WGAN's crude Lipschitz constraint)."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


def _fake(model: nn.Module, x: Tensor, c: Tensor | None) -> Tensor:
    # A generated batch matching x: N samples, or one per context row.
    d = model() if c is None else model(c)
    event = len(d.event_shape)
    n = x.shape[: x.dim() - event]
    if c is None:
        return d.rsample(n)
    if tuple(d.batch_shape) != tuple(n):
        raise ValueError(
            f"expected a context with batch shape {tuple(n)} (one row per data point), got "
            f"{tuple(c.shape)}"
        )
    return d.rsample()


def discriminator_loss(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    loss: AdversarialLoss = non_saturating,
    penalty: float = 0.0,
    clip: float | None = None,
) -> Tensor:
    r"""The discriminator's (critic's) objective of a GAN on a batch.

    .. math:: \ell_D = \mathrm{loss.critic}(D(x, c), D(\tilde x, c)) + \lambda r,
        \qquad \tilde x \sim p_\theta(\cdot | c)

    with the generated batch detached (the generator does not move on this loss) and
    :math:`r` the :func:`gradient_penalty` when ``penalty`` :math:`= \lambda > 0`.

    Arguments:
        model: A :class:`~probgen.implicit.GAN` (possibly wrapped by DDP).
        x: A batch of data with shape :math:`(N, *E)`.
        c: Its contexts with shape :math:`(N, C)`, or ``None``.
        loss: The :class:`AdversarialLoss`.
        penalty: The weight :math:`\lambda` of the gradient penalty (0: none).
        clip: Clamp the discriminator's parameters to :math:`[-clip, clip]` before use
            (the WGAN's weight clipping); ``None``: no clipping.

    Returns:
        The scalar loss.
    """
    gan = unwrap(model)
    if clip is not None:
        clip_weights(gan.discriminator, clip)
    with torch.no_grad():
        fake = _fake(model, x, c)
    value = loss.critic(gan.critic(x, c), gan.critic(fake, c))
    if penalty:
        value = value + penalty * gradient_penalty(gan.critic, x, fake, c)
    return value


def generator_loss(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    loss: AdversarialLoss = non_saturating,
    clip: float | None = None,
) -> Tensor:
    r"""The generator's objective of a GAN: ``loss.generator`` of the critic's logits on a
    reparameterised generated batch of the size of ``x`` (and with its contexts ``c``).

    Arguments:
        model: A :class:`~probgen.implicit.GAN` (possibly wrapped by DDP).
        x: A batch of data with shape :math:`(N, *E)` (only its size is used).
        c: Its contexts with shape :math:`(N, C)`, or ``None``.
        loss: The :class:`AdversarialLoss`.
        clip: The weight clipping of :func:`discriminator_loss`, applied here too so that
            the generator always sees the clipped critic.

    Returns:
        The scalar loss.
    """
    gan = unwrap(model)
    if clip is not None:
        clip_weights(gan.discriminator, clip)
    return loss.generator(gan.critic(_fake(model, x, c), c))


def adversarial(
    loss: AdversarialLoss = non_saturating, penalty: float = 0.0, clip: float | None = None
) -> dict[str, Callable[..., Tensor]]:
    r"""The two players of a GAN, as :func:`probgen.fit`'s dict of objectives.

    The discriminator comes first, so a round is ``schedule["discriminator"]`` critic
    steps, then the generator's.

    Arguments:
        loss: The :class:`AdversarialLoss` (:data:`non_saturating` by default).
        penalty: The WGAN-GP gradient-penalty weight (e.g. 10 with :data:`wasserstein`).
        clip: The WGAN's weight clipping (e.g. 0.01 with :data:`wasserstein`).

    Returns:
        ``{"discriminator": ..., "generator": ...}``.

    Example:
        >>> players = adversarial(wasserstein, penalty=10.0)
        >>> sorted(players)
        ['discriminator', 'generator']
    """
    if not isinstance(loss, AdversarialLoss):
        raise ValueError(f"expected an AdversarialLoss, got {type(loss).__name__}")
    if penalty < 0 or (clip is not None and clip <= 0):
        raise ValueError(f"expected penalty >= 0 and clip > 0, got {penalty} and {clip}")
    return {
        "discriminator": partial(discriminator_loss, loss=loss, penalty=penalty, clip=clip),
        "generator": partial(generator_loss, loss=loss, clip=clip),
    }


def mmd(model: nn.Module, x: Tensor, c: Tensor | None = None, *, kernel: Any = None) -> Tensor:
    r"""The unbiased squared maximum mean discrepancy between a batch and as many
    reparameterised samples of the model: the GMMN loss.

    .. math:: \ell = \widehat{\mathrm{MMD}}^2_u\big(\{x_i\}, \{\tilde x_i\}\big), \qquad
        \tilde x_i \sim p_\theta(\cdot | c_i)

    With a context, the points compared are the pairs :math:`(x_i, c_i)` and
    :math:`(\tilde x_i, c_i)`: the joint distributions are matched.

    Arguments:
        model: A module whose call ``model(c)`` returns a reparameterisable distribution.
        x: A batch with shape :math:`(N, *E)`.
        c: Its contexts with shape :math:`(N, C)`, or ``None``.
        kernel: The kernel (default :class:`probgen.metrics.MixtureRBF`, bandwidths from
            the median heuristic on each batch, detached).

    Returns:
        The scalar loss.

    References:
        | Generative Moment Matching Networks (Li et al., 2015)
        | https://arxiv.org/abs/1502.02761
    """
    fake = _fake(model, x, c)
    n = x.shape[0]
    a, b = x.reshape(n, -1), fake.reshape(n, -1)
    if c is not None:
        a, b = torch.cat([a, c.to(a.dtype)], -1), torch.cat([b, c.to(b.dtype)], -1)
    return mmd2(a, b, MixtureRBF() if kernel is None else kernel)


def flow_matching(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    path: Any = None,
    coupling: Any = None,
    x0: Tensor | None = None,
) -> Tensor:
    r"""The conditional flow matching loss of an ODE flow.

    .. math:: \ell = \frac{1}{N} \sum_i \big\| v_\phi(x_{t_i}, t_i, c_i)
        - (\dot\alpha_{t_i} x_1^{(i)} + \dot\sigma_{t_i} x_0^{(i)}) \big\|^2 ,
        \quad x_t = \alpha_t x_1 + \sigma_t x_0, \quad t_i \sim U(0, 1)

    with data :math:`x_1`, noise :math:`x_0` from the model's base paired with the data by
    a coupling (time runs from noise at 0 to data at 1). Its minimiser is the marginal
    velocity, whose flow carries the base to the data distribution.

    Arguments:
        model: A module whose call returns a :class:`~probgen.distributions.ContinuousFlow`
            (e.g. :class:`~probgen.distributions.FlowMatching`).
        x: Data :math:`x_1` with shape :math:`(N, D)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        path: The probability path (default: the model's ``path``).
        coupling: The minibatch coupling (default: the model's ``coupling``).
        x0: Noise already paired with ``x`` (reflow pairs), with shape :math:`(N, D)`;
            then no coupling is applied.

    Returns:
        The scalar loss.

    References:
        | Flow Matching for Generative Modeling (Lipman et al., 2022)
        | https://arxiv.org/abs/2210.02747
    """
    from .utils import broadcast_context  # kept local: this section is appended

    inner = unwrap(model)
    path = getattr(inner, "path", None) if path is None else path
    if path is None:
        raise ValueError("flow_matching needs a path: pass path= or give the model a .path")
    coupling = getattr(inner, "coupling", None) if coupling is None else coupling
    d = model() if c is None else model(c)
    event = len(d.event_shape)
    if x0 is None:
        x0 = d.base.sample(x.shape[: x.dim() - len(d.batch_shape) - event])
        if coupling is not None:
            x0 = coupling(x0, x)
    elif x0.shape != x.shape:
        raise ValueError(
            f"expected x0 with the shape of x {tuple(x.shape)}, got {tuple(x0.shape)}"
        )
    t = torch.rand(x.shape[: x.dim() - event], dtype=x.dtype, device=x.device)
    xt, u = path.sample(x0, x, t)
    v = d.transform.field(xt, t, broadcast_context(xt, c, event))
    return (v - u).square().flatten(x.dim() - event).sum(-1).mean()


def denoising(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    t_max: float | None = None,
    p_uncond: float = 0.0,
) -> Tensor:
    r"""The denoising loss of a diffusion model (denoising score matching, reweighted by
    the parameterisation),

    .. math:: \ell = \frac{1}{N} \sum_i \big\| \mathrm{net}(\alpha_{t_i} x_i +
        \sigma_{t_i} \epsilon_i, t_i, c_i) - y(x_i, \epsilon_i) \big\|^2, \quad
        t_i \sim U(0, t_{max}), \; \epsilon_i \sim \mathcal{N}(0, I)

    where :math:`y` is the parameterisation's target (:math:`\epsilon` for noise
    prediction, as in DDPM's simple loss; time runs from noise at 0 to data at 1).
    With ``p_uncond > 0`` (condition dropout, for classifier-free guidance), each
    :math:`c_i` is replaced by the null context, the zero vector, with that probability.

    Arguments:
        model: A :class:`~probgen.distributions.Diffusion` (``network``, ``sde``,
            ``parameterization``, ``t_max`` attributes).
        x: Data with shape :math:`(N, D)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        t_max: The largest time drawn (default: the model's).
        p_uncond: The probability of replacing a context by the null context.

    Returns:
        The scalar loss.

    References:
        | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
        | https://arxiv.org/abs/2006.11239
        | Classifier-Free Diffusion Guidance (Ho and Salimans, 2022)
        | https://arxiv.org/abs/2207.12598
    """
    inner = unwrap(model)
    t_max = inner.t_max if t_max is None else t_max
    if p_uncond:
        if c is None:
            raise ValueError(f"condition dropout needs a context, got p_uncond={p_uncond}")
        keep = torch.rand(c.shape[:-1], device=c.device) >= p_uncond
        c = torch.where(keep[..., None], c, torch.zeros_like(c))
    event = len(x.shape) - 1
    t = t_max * torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
    a, s = inner.sde.alpha_sigma(t.reshape(-1, *[1] * event))
    e = torch.randn_like(x)
    xt = a * x + s * e
    out = inner.network(xt, t, c)
    target = inner.parameterization.target(x, e, a, s)
    return (out - target).square().flatten(1).sum(-1).mean()


# Score matching: denoising over a ladder of noise levels (NCSN) and sliced score matching.


def denoising_score_matching(model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""Denoising score matching over a ladder of noise levels (NCSN), each level weighted
    by :math:`\lambda(\sigma) = \sigma^2`,

    .. math:: \ell = \frac{1}{N} \sum_i \tfrac12 \big\| \sigma_{k_i} s_\theta(x_i +
        \sigma_{k_i} z_i, \sigma_{k_i}, c_i) + z_i \big\|^2, \quad
        k_i \sim U\{1, \dots, L\}, \; z_i \sim \mathcal{N}(0, I) ,

    an unbiased estimate of Song and Ermon's :math:`\frac1L \sum_k \sigma_k^2
    \ell(\theta; \sigma_k)` (their eq. 5 and 6). For each level the minimiser is the score
    of the smoothed data, :math:`\nabla \log p_\sigma` (Vincent, 2011): the loss differs
    from :math:`\frac{1}{2L} \sum_k \sigma_k^2 \mathbb{E} \| s_\theta - \nabla \log
    p_{\sigma_k} \|^2` by a constant.

    Arguments:
        model: A :class:`~probgen.diffusion.NCSN` (``sigmas`` and ``score(x, sigma, c)``).
        x: Data with shape :math:`(N, D)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.

    Returns:
        The scalar loss.

    References:
        | Generative Modeling by Estimating Gradients of the Data Distribution (Song and
        | Ermon, 2019) https://arxiv.org/abs/1907.05600
        | A Connection Between Score Matching and Denoising Autoencoders (Vincent, 2011)
        | https://doi.org/10.1162/NECO_a_00142
    """
    inner = unwrap(model)
    sigmas = inner.sigmas.to(dtype=x.dtype, device=x.device)
    k = torch.randint(len(sigmas), (x.shape[0],), device=x.device)
    sigma = sigmas[k]
    z = torch.randn_like(x)
    shape = (-1, *[1] * (x.dim() - 1))
    s = inner.score(x + sigma.reshape(shape) * z, sigma, c)
    return 0.5 * (sigma.reshape(shape) * s + z).square().flatten(1).sum(-1).mean()


def sliced_score_matching(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    projections: int = 1,
    noise: Literal["gaussian", "rademacher"] = "gaussian",
    variance_reduction: bool = True,
) -> Tensor:
    r"""Sliced score matching: Hyvärinen's objective with the Jacobian trace projected on
    random directions :math:`v` (:math:`\mathbb{E}[v v^\top] = I`),

    .. math:: \ell = \frac{1}{N M} \sum_{i, m} v_{im}^\top \nabla_x \big(v_{im}^\top
        s_\theta(x_i, c_i)\big) + \tfrac12 \big(v_{im}^\top s_\theta(x_i, c_i)\big)^2 ,

    whose expectation over :math:`v` is the exact score-matching objective
    :math:`\mathbb{E}_x[\mathrm{tr} \nabla_x s_\theta + \frac12 \|s_\theta\|^2]`, minimised
    by the data's score. With ``variance_reduction`` (SSM-VR) the second term is its
    expectation, :math:`\frac12 \|s_\theta\|^2`, computed exactly. Each projection costs
    one vector-Jacobian product.

    Arguments:
        model: A :class:`~probgen.diffusion.ScoreModel` (``score(x, c)``).
        x: Data with shape :math:`(N, D)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        projections: The number :math:`M` of directions per datum.
        noise: The law of :math:`v`: standard normal or Rademacher.
        variance_reduction: Whether to use SSM-VR.

    Returns:
        The scalar loss.

    References:
        | Sliced Score Matching: A Scalable Approach to Density and Score Estimation
        | (Song et al., 2019) https://arxiv.org/abs/1905.07088
    """
    if noise not in ("gaussian", "rademacher"):
        raise ValueError(f"expected noise 'gaussian' or 'rademacher', got {noise!r}")
    if projections < 1:
        raise ValueError(f"expected projections >= 1, got {projections}")
    inner = unwrap(model)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = inner.score(x, c)
        v = torch.randn(projections, *x.shape, dtype=x.dtype, device=x.device)
        if noise == "rademacher":
            v = v.sign()
        sv = (s * v).flatten(2).sum(-1)  # (M, N)
        terms = []
        for m in range(projections):
            (g,) = torch.autograd.grad(sv[m].sum(), x, create_graph=True)
            terms.append((g * v[m]).flatten(1).sum(-1))
        trace = torch.stack(terms)  # (M, N)
        square = s.square().flatten(1).sum(-1) if variance_reduction else sv.square()
    return (trace + 0.5 * square).mean()


# Latent-variable objectives: the ELBO (Pyro's own estimators), IWAE and KL warm-up.


def elbo(
    model: nn.Module,
    x: Tensor,
    c: Tensor | None = None,
    *,
    beta: float | None = None,
    particles: int = 1,
    analytic_kl: bool = False,
) -> Tensor:
    r"""The negative (beta-)evidence lower bound of a VAE, per datum, computed by Pyro.

    .. math:: \ell = -\frac{1}{N} \sum_{i=1}^N \mathbb{E}_{q_\phi(z | x_i, c_i)}
        [\log p_\theta(x_i | z, c_i)] - \beta \, \mathrm{KL}(q_\phi(z | x_i, c_i) \,\|\,
        p(z | c_i))

    It is :class:`pyro.infer.Trace_ELBO`'s (or, with ``analytic_kl``,
    :class:`pyro.infer.TraceMeanField_ELBO`'s, which uses the closed-form KL when one is
    registered) ``differentiable_loss`` of the model's ``model`` / ``guide`` pair, divided
    by the batch size, so that learning rates do not depend on it. With :math:`\beta = 1`,
    :math:`-\ell` is a lower bound on the mean :math:`\log p_\theta(x | c)`.

    Arguments:
        model: A :class:`~probgen.latent.VAE` (or a module with ``model`` and ``guide``
            methods taking ``(x, c, beta)``).
        x: A batch with shape :math:`(N, *E)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        beta: The KL weight :math:`\beta` (default: the model's ``beta``).
        particles: The number of samples of :math:`z` per datum (vectorised).
        analytic_kl: Whether to use the closed-form KL where one is registered.

    Returns:
        The scalar loss :math:`\ell`.

    References:
        | Auto-Encoding Variational Bayes (Kingma and Welling, 2013)
        | https://arxiv.org/abs/1312.6114

    Example:
        >>> import torch, probgen as pg
        >>> from probgen.nn import ContextMLP
        >>> vae = pg.latent.VAE(ContextMLP(3, 4), ContextMLP(2, 6), latent=2, event_shape=3)
        >>> elbo(vae, torch.randn(16, 3)).shape
        torch.Size([])
    """
    import pyro.infer  # kept local: this section is appended

    inner = unwrap(model)
    beta = getattr(inner, "beta", 1.0) if beta is None else beta
    if particles < 1:
        raise ValueError(f"expected particles >= 1, got {particles}")
    estimator = pyro.infer.TraceMeanField_ELBO if analytic_kl else pyro.infer.Trace_ELBO
    loss = estimator(
        num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1
    ).differentiable_loss(inner.model, inner.guide, x, c, beta)
    return loss / x.shape[0]


def iwae(
    model: nn.Module, x: Tensor, c: Tensor | None = None, *, particles: int = 5
) -> Tensor:
    r"""The negative importance-weighted bound of a latent-variable model, per datum.

    .. math:: \ell = -\frac{1}{N} \sum_{i=1}^N \log \frac{1}{K} \sum_{k=1}^K
        \frac{p_\theta(x_i | z_k, c_i) \, p(z_k | c_i)}{q_\phi(z_k | x_i, c_i)},
        \quad z_k \sim q_\phi(z | x_i, c_i)

    The bound is per datum (Pyro's :class:`~pyro.infer.RenyiELBO` with :math:`\alpha = 0`
    would weight whole batches), tighter than the ELBO (:math:`K = 1`) and increasing in
    :math:`K` to :math:`\log p_\theta(x | c)`. Gradients flow through the reparameterised
    particles.

    Arguments:
        model: A module whose call ``model(c)`` returns a
            :class:`~probgen.latent.Marginal` (e.g. a :class:`~probgen.latent.VAE`).
        x: A batch with shape :math:`(N, *E)`.
        c: Contexts with shape :math:`(N, C)`, or ``None``.
        particles: The number of particles :math:`K`.

    Returns:
        The scalar loss :math:`\ell`.

    References:
        | Importance Weighted Autoencoders (Burda et al., 2015)
        | https://arxiv.org/abs/1509.00519

    Example:
        >>> import torch, probgen as pg
        >>> from probgen.nn import ContextMLP
        >>> vae = pg.latent.VAE(ContextMLP(3, 4), ContextMLP(2, 6), latent=2, event_shape=3)
        >>> iwae(vae, torch.randn(16, 3), particles=8).shape
        torch.Size([])
    """
    d = model() if c is None else model(c)
    lw = d.log_weights(x, particles)
    return -(torch.logsumexp(lw, dim=0) - math.log(particles)).mean()


class KLWarmup:
    r"""The beta-ELBO with a KL weight that rises linearly over the first steps,

    .. math:: \beta_t = \beta_0 + (\beta - \beta_0) \min(1, t / T),

    an objective for :func:`probgen.fit` (``objective=KLWarmup(T)``). The step :math:`t`
    is this object's explicit state: it counts the calls made in training mode with
    gradients on (validation, in eval mode under ``no_grad``, does not count), and is saved
    by :meth:`state_dict` next to ``fit``'s checkpoint. In a Pyro loop, pass
    ``beta=warmup.beta_at(step)`` to ``vae.model`` and ``vae.guide`` instead.

    Arguments:
        steps: The length :math:`T` of the warm-up.
        beta: The final weight :math:`\beta`.
        start: The initial weight :math:`\beta_0`.
        kwargs: Keyword arguments of :func:`elbo` (``particles``, ``analytic_kl``).

    References:
        | Ladder Variational Autoencoders (Sønderby et al., 2016)
        | https://arxiv.org/abs/1602.02282

    Example:
        >>> KLWarmup(100, beta=2.0).beta_at(25)
        0.5
    """

    def __init__(self, steps: int, beta: float = 1.0, start: float = 0.0, **kwargs: Any) -> None:
        if steps < 1 or beta < 0 or start < 0:
            raise ValueError(
                f"expected steps >= 1 and weights >= 0, got {steps}, {beta} and {start}"
            )
        self.steps, self.beta, self.start, self.kwargs = steps, beta, start, kwargs
        self.step = 0

    def beta_at(self, step: int) -> float:
        r"""The weight :math:`\beta_t` at step :math:`t`."""
        return self.start + (self.beta - self.start) * min(1.0, step / self.steps)

    def __call__(self, model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
        beta = self.beta_at(self.step)
        if unwrap(model).training and torch.is_grad_enabled():
            self.step += 1
        return elbo(model, x, c, beta=beta, **self.kwargs)

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])

    def __repr__(self) -> str:
        return f"KLWarmup(steps={self.steps}, beta={self.beta}, start={self.start})"


# Vector quantisation / autoencoder objectives: VQ-VAE's first stage and deterministic
# autoencoders (plain, denoising, sparse).


def vq_vae(model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The first-stage loss of a VQ-VAE: reconstruction, codebook and commitment,

    .. math:: \ell = \frac1N \sum_i \Big[ -\log p_\theta(x_i | z_q(x_i))
        + \|\mathrm{sg}[z_e(x_i)] - e\|^2 + \beta \|z_e(x_i) - \mathrm{sg}[e]\|^2 \Big]

    (van den Oord et al., 2017, eq. 3), with straight-through gradients from the decoder
    to the encoder; the squared error summed over elements replaces
    :math:`-\log p_\theta` for a deterministic decoder; the norms sum over the code grid.
    An EMA codebook has no codebook term (the quantiser updates it in training mode). The
    prior is not trained here: fit it on ``vq.encode(x)`` afterwards (the second stage),
    so the context, which only the prior sees, is unused.

    Arguments:
        model: A :class:`~probgen.distributions.vq.VQVAE`.
        x: A batch with shape :math:`(N, *E)`.
        c: Contexts (unused by this stage), or ``None``.

    Returns:
        The scalar loss :math:`\ell`.

    References:
        | Neural Discrete Representation Learning (van den Oord et al., 2017)
        | https://arxiv.org/abs/1711.00937

    Example:
        >>> import torch
        >>> from probgen.distributions import CategoricalFamily
        >>> from probgen.distributions.vq import VQVAE
        >>> vq = VQVAE.small((1, 4, 4), codes=4, likelihood=CategoricalFamily(5))
        >>> vq_vae(vq, torch.randint(5, (8, 1, 4, 4)).float()).shape
        torch.Size([])
    """
    inner = unwrap(model)
    q = inner.quantize(x)
    error = inner.reconstruction_error(inner.params(q.z_q), x)
    return (error + q.loss).mean()


def autoencoder(model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The loss of a deterministic autoencoder, plain, denoising or sparse,

    .. math:: \ell = \frac1N \sum_i \mathrm{err}\big(g(h_i), x_i\big)
        + \lambda \frac{1}{N H} \sum_{i, j} |h_{ij}|, \qquad h_i = f(\tilde x_i), \;
        \tilde x_i = \mathrm{noise}(x_i) ,

    with the model's corruption (the identity when it has none) and L1 weight
    :math:`\lambda` (its ``sparsity``); the error is the squared error summed over
    elements, or :math:`-\log p(x_i | g(h_i))` with a likelihood. The corruption applies
    here only: the target is the clean :math:`x_i`.

    Arguments:
        model: An :class:`~probgen.distributions.autoencoder.Autoencoder`.
        x: A batch with shape :math:`(N, *E)`.
        c: Must be ``None``: autoencoders take no context.

    Returns:
        The scalar loss :math:`\ell`.

    Example:
        >>> import torch
        >>> from probgen.distributions.autoencoder import Autoencoder
        >>> from probgen.nn import MLPDecoder, MLPEncoder
        >>> ae = Autoencoder(MLPEncoder((4,), 2, hidden=(8,)), MLPDecoder(2, (4,), hidden=(8,)))
        >>> autoencoder(ae, torch.randn(16, 4)).shape
        torch.Size([])
    """
    if c is not None:
        raise ValueError("autoencoders take no context; got one")
    inner = unwrap(model)
    h = inner.encode(x if inner.noise is None else inner.noise(x))
    loss = inner.reconstruction_error(inner.params(h), x).mean()
    if inner.sparsity:
        loss = loss + inner.sparsity * h.abs().mean()
    return loss
