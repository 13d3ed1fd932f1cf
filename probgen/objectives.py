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
]

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn as nn
from torch import Size, Tensor

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
