r"""Energy-based models: an unnormalised density and a Markov kernel that samples it.

An energy :math:`E_\theta(x)` defines

.. math:: p_\theta(x) = \frac{\exp(-E_\theta(x))}{Z_\theta}, \quad
    Z_\theta = \int \exp(-E_\theta(x)) \, dx ,

with :math:`Z_\theta` unknown. The distribution value (:class:`EnergyBased`) is honest
about it: ``log_prob_kind == "unnormalized"``, :meth:`~EnergyBased.unnormalized_log_prob`
is :math:`-E_\theta(x)`, and ``log_prob`` raises until a normaliser is supplied
(:meth:`~EnergyBased.normalized`, by AIS or by quadrature in 1-2 D; exact enumeration
for small RBMs). ``sample`` runs a kernel of :mod:`probgen.samplers` from an initial
distribution, which may be any probgen model (a flow: nesting).

Training is :func:`probgen.objectives.contrastive_divergence` and its persistent variant;
:func:`guided_score` composes an energy with a diffusion's score.
"""

from __future__ import annotations

__all__ = [
    "LogNormalizer",
    "EnergyBased",
    "EBM",
    "RBMTarget",
    "RestrictedBoltzmann",
    "RBM",
    "guided_score",
]

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

from ..lazy import LazyDistribution, UnconditionalDistribution
from ..nn import MLP
from ..samplers import MALA, ULA, BlockGibbs, Kernel, ais, geometric_path, run_chain
from ..samplers.base import value_and_grad
from ..utils import broadcast_context, check_context
from .base import GenerativeDistribution
from .simple import DiagNormal


class LogNormalizer(NamedTuple):
    r"""An estimate of :math:`\log Z`.

    Attributes:
        value: :math:`\log \hat Z`, with the distribution's batch shape.
        stderr: Its standard error (AIS), or zeros for quadrature and enumeration (their
            error is deterministic: the grid's, or none).
        method: ``"ais"``, ``"quadrature"`` or ``"enumeration"``.
        ess: AIS's effective sample size (``None`` for the other methods).
    """

    value: Tensor
    stderr: Tensor
    method: str
    ess: Tensor | None = None


class EnergyBased(GenerativeDistribution):
    r"""The distribution :math:`p(x) \propto \exp(-E(x))`, sampled by a Markov kernel.

    Arguments:
        energy: The energy :math:`E`, mapping :math:`x` with shape :math:`(*S, *B, *E)` to
            :math:`(*S, *B)`.
        event_shape: The event shape :math:`E`.
        batch_shape: The batch shape :math:`B` (that of a context).
        init: The distribution the chains start from (any probgen model with ``sample``;
            an exact ``log_prob`` too for AIS): with batch shape :math:`B` or ``()``.
        kernel: The kernel (default :class:`~probgen.samplers.MALA`).
        steps: The kernel transitions of each :meth:`sample`.
        log_z: A known :math:`\log Z` (see :meth:`normalized`); ``None`` when unknown.
        kind: What ``log_prob`` means once ``log_z`` is given: ``"estimate"`` or
            ``"exact"``.

    Example:
        >>> energy = lambda x: (x**2).sum(-1) / 2
        >>> init = DiagNormal(torch.zeros(2), torch.ones(2))
        >>> d = EnergyBased(energy, (2,), init=init, steps=10)
        >>> d.sample((5,)).shape, d.unnormalized_log_prob(torch.zeros(2))
        (torch.Size([5, 2]), tensor(-0.))
        >>> d.normalized().log_prob(torch.zeros(2))  # quadrature in 2-D: -log(2 pi)
        tensor(-1.8379)
    """

    log_prob_kind = "unnormalized"
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        energy: Callable[[Tensor], Tensor],
        event_shape: Sequence[int],
        batch_shape: Sequence[int] = (),
        *,
        init: Distribution | None = None,
        kernel: Kernel | None = None,
        steps: int = 100,
        log_z: Tensor | float | None = None,
        kind: Literal["estimate", "exact"] = "estimate",
    ) -> None:
        event_shape, batch_shape = Size(event_shape), Size(batch_shape)
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"expected steps to be an int >= 0, got {steps!r}")
        if init is None:
            init = DiagNormal(torch.zeros(event_shape), torch.ones(event_shape), len(event_shape))
        if tuple(init.event_shape) != tuple(event_shape):
            raise ValueError(
                f"expected an init distribution with event_shape {tuple(event_shape)}, got "
                f"{tuple(init.event_shape)}"
            )
        self._energy, self.init = energy, init
        self.kernel = kernel if kernel is not None else MALA(0.01)
        self.steps = steps
        super().__init__(batch_shape, event_shape)
        if len(event_shape) != 1:
            self.support = constraints.independent(constraints.real, len(event_shape))
        self._log_z = log_z
        if log_z is not None:
            if kind not in ("estimate", "exact"):
                raise ValueError(f"expected kind 'estimate' or 'exact', got {kind!r}")
            self.log_prob_kind = kind

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, kernel={self.kernel}, steps={self.steps}, "
            f"log_prob_kind={self.log_prob_kind!r})"
        )

    # Densities

    def energy(self, x: Tensor) -> Tensor:
        r"""The energy :math:`E(x)`, shape :math:`(*S, *B)` for :math:`x` with shape
        :math:`(*S, *B, *E)`."""
        self.check_value(x)
        return self._energy(x)

    def unnormalized_log_prob(self, x: Tensor) -> Tensor:
        r"""The unnormalised log-density :math:`-E(x)`."""
        return -self.energy(x)

    def log_prob(self, x: Tensor) -> Tensor:
        if self._log_z is None:
            raise NotImplementedError(
                f"{type(self).__name__} has an unnormalised density (log_prob_kind "
                "'unnormalized'): use d.unnormalized_log_prob(x) = -E(x), or "
                "d.normalized() for a log_prob with log Z estimated by d.log_normalizer() "
                "(AIS, or quadrature for 1-2-D events); train it with "
                "probgen.objectives.contrastive_divergence"
            )
        return self.unnormalized_log_prob(x) - self._log_z

    @property
    def target(self) -> Any:
        r"""What the kernel targets: here the log-density :math:`-E`."""
        return self.unnormalized_log_prob

    # Sampling

    def sample(
        self, sample_shape: Size = Size(), generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Runs ``steps`` kernel transitions from samples of ``init``.

        Arguments:
            sample_shape: The sample shape :math:`S`.
            generator: The kernel's random number generator (``init`` draws from the
                global one).

        Returns:
            The chains' final points, with shape :math:`(*S, *B, *E)`, detached.
        """
        init = self.init
        if init.batch_shape != self.batch_shape:
            init = init.expand(self.batch_shape)
        with torch.no_grad():
            x0 = init.sample(Size(sample_shape))
        return self.evolve(x0, generator=generator)

    def evolve(
        self, x: Tensor, steps: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Runs the kernel from given points (contrastive divergence starts at the data).

        Arguments:
            x: The starting points, with shape :math:`(*S, *B, *E)`.
            steps: The number of transitions (default: ``self.steps``).
            generator: The random number generator.

        Returns:
            The final points, with the shape of ``x``, detached.
        """
        steps = self.steps if steps is None else steps
        chain = run_chain(
            self.kernel, x.detach(), self.target, steps, record=False, generator=generator
        )
        return chain.state.x.detach()

    def expand(self, batch_shape: Size, _instance: Any = None) -> EnergyBased:
        new = copy.copy(self)
        GenerativeDistribution.__init__(new, Size(batch_shape), self.event_shape)
        return new

    # Normalising

    def log_normalizer(
        self,
        method: Literal["auto", "ais", "quadrature"] = "auto",
        *,
        chains: int = 1000,
        betas: int | Tensor = 200,
        kernel: Kernel | None = None,
        bounds: tuple[float, float] = (-10.0, 10.0),
        points: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LogNormalizer:
        r"""Estimates :math:`\log Z = \log \int \exp(-E(x)) dx`.

        - ``"quadrature"`` (1-D or 2-D events): the trapezoidal rule on a grid of the box
          :math:`[lo, hi]^D`, which must hold all but a negligible part of the mass;
        - ``"ais"``: :func:`probgen.samplers.ais` from ``init`` (which needs an exact
          ``log_prob``) along the geometric path to :math:`\exp(-E)`;
        - ``"auto"``: quadrature in 1-2 D, AIS otherwise.

        Arguments:
            method: The method.
            chains: AIS chains.
            betas: AIS inverse temperatures, or their number.
            kernel: AIS's kernel (default: this distribution's, MALA in place of ULA,
                whose bias would make the estimate inconsistent).
            bounds: The quadrature box :math:`(lo, hi)` on every axis.
            points: Grid points per axis (default 2001 in 1-D, 301 in 2-D).
            generator: AIS's random number generator.

        Returns:
            The :class:`LogNormalizer`, with the batch shape.
        """
        dims = self.event_shape.numel()
        if method == "auto":
            method = "quadrature" if dims <= 2 else "ais"
        if method == "quadrature":
            if dims > 2:
                raise ValueError(f"quadrature integrates 1-D or 2-D events, got {dims} dimensions")
            return self._quadrature(bounds, points or (2001 if dims == 1 else 301))
        if method != "ais":
            raise ValueError(f"expected method 'auto', 'ais' or 'quadrature', got {method!r}")
        if kernel is None:
            kernel = MALA(self.kernel.step_size) if isinstance(self.kernel, ULA) else self.kernel
        init = (
            self.init
            if self.init.batch_shape == self.batch_shape
            else self.init.expand(self.batch_shape)
        )
        with torch.no_grad():
            x0 = init.sample(Size((chains,)))
        path = geometric_path(init.log_prob, self.unnormalized_log_prob)
        est = ais(path, x0, kernel, betas, generator=generator)
        return LogNormalizer(est.log_z, est.stderr, "ais", est.ess)

    def _quadrature(self, bounds: tuple[float, float], n: int) -> LogNormalizer:
        lo, hi = bounds
        dims = self.event_shape.numel()
        t = torch.linspace(lo, hi, n, dtype=torch.float64)
        grid = torch.cartesian_prod(*[t] * dims).reshape(-1, dims) if dims == 2 else t[:, None]
        grid = grid.reshape(-1, *[1] * len(self.batch_shape), *self.event_shape)
        grid = grid.expand(-1, *self.batch_shape, *self.event_shape)
        dtype = self.init.sample().dtype
        with torch.no_grad():
            lp = torch.cat([self._energy(g.to(dtype)) for g in grid.split(65536)]).neg().double()
        m = lp.max(0).values
        p = (lp - m).exp().reshape(*[n] * dims, *self.batch_shape)
        for _ in range(dims):
            p = torch.trapezoid(p, t, dim=0)
        value = (m + p.log()).to(dtype)
        return LogNormalizer(value, torch.zeros_like(value), "quadrature")

    def normalized(
        self, log_z: LogNormalizer | Tensor | float | None = None, **kwargs: Any
    ) -> EnergyBased:
        r"""This distribution with a normalised ``log_prob`` :math:`-E(x) - \log \hat Z`.

        Arguments:
            log_z: :math:`\log \hat Z`, or a :class:`LogNormalizer`; by default
                :meth:`log_normalizer` with ``kwargs``.

        Returns:
            A new distribution whose ``log_prob_kind`` is ``"estimate"`` (``"exact"`` when
            :math:`\log Z` came from exact enumeration).
        """
        if log_z is None:
            log_z = self.log_normalizer(**kwargs)
        elif kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)} with a given log_z")
        kind = "estimate"
        if isinstance(log_z, LogNormalizer):
            kind = "exact" if log_z.method == "enumeration" else "estimate"
            log_z = log_z.value
        new = copy.copy(self)
        new._log_z, new.log_prob_kind, new._memo = log_z, kind, None
        return new


class _Energy(nn.Module):
    # The default energy network: an MLP of the event (flattened) and the context.
    def __init__(self, features: int, context: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = MLP(features + context, 1, hidden, activation=nn.SiLU)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.net(x if c is None else torch.cat([x, c], dim=-1))


class EBM(LazyDistribution):
    r"""An energy-based model: a network :math:`E_\theta(x | c)` built into an
    :class:`EnergyBased` distribution on each call.

    The network maps :math:`x` with shape :math:`(*, *E)` (and the context, broadcast to
    shape :math:`(*, C)`, as a second argument when ``context > 0``) to energies with
    shape :math:`(*)` or :math:`(*, 1)`. Smooth activations (SiLU, softplus) suit the
    gradient-based kernels better than ReLU, whose energy is piecewise linear.

    Arguments:
        energy: The energy network, or ``None`` for an MLP of the flattened event (and the
            context) with SiLU activations and ``hidden`` widths.
        features: The event shape :math:`E` (an int for vectors).
        context: The number of context features (0 when unconditional).
        init: The lazy distribution the chains start from (default: a standard normal),
            any probgen model, e.g. a trained flow.
        kernel: The sampling kernel (default ``MALA(0.01)``).
        steps: Kernel transitions per ``sample``.
        hidden: The default network's hidden widths.

    References:
        | A Tutorial on Energy-Based Learning (LeCun et al., 2006)
        | Implicit Generation and Generalization in Energy-Based Models (Du and Mordatch,
          2019) https://arxiv.org/abs/1903.08689

    Example:
        >>> ebm = EBM(features=2, hidden=(16,), steps=5)
        >>> d = ebm()
        >>> d.sample((3,)).shape, d.log_prob_kind
        (torch.Size([3, 2]), 'unnormalized')
    """

    def __init__(
        self,
        energy: nn.Module | None = None,
        features: int | Sequence[int] = 2,
        context: int = 0,
        *,
        init: LazyDistribution | None = None,
        kernel: Kernel | None = None,
        steps: int = 100,
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        event = (features,) if isinstance(features, int) else tuple(features)
        if not event or any(not isinstance(n, int) or n < 1 for n in event):
            raise ValueError(f"expected features to be a positive int or shape, got {features!r}")
        if energy is None:
            if len(event) != 1:
                raise ValueError(f"the default energy network takes vectors, got event {event}")
            energy = _Energy(event[0], context, hidden)
        if init is None:
            zeros = torch.zeros(event)
            init = UnconditionalDistribution(
                DiagNormal, zeros, torch.ones(event), ndims=len(event)
            )
        self.energy, self.init = energy, init
        self.event_shape, self.context = Size(event), context
        self.kernel = kernel if kernel is not None else MALA(0.01)
        self.steps = steps

    def forward(self, c: Tensor | None = None) -> EnergyBased:
        self.check_context(c)
        net, dims, k = self.energy, len(self.event_shape), self.context

        def energy(x: Tensor) -> Tensor:
            e = net(x) if k == 0 else net(x, broadcast_context(x, c, dims))
            # An energy of shape (*, 1) is squeezed to (*): one number per event.
            return e.squeeze(-1) if e.dim() == x.dim() - dims + 1 else e

        init = self.init(c) if self.init.context else self.init()
        batch = c.shape[:-1] if c is not None else Size()
        return EnergyBased(
            energy, self.event_shape, batch, init=init, kernel=self.kernel, steps=self.steps
        )


@dataclass(frozen=True)
class RBMTarget:
    r"""The Bernoulli-Bernoulli RBM's algebra: energy, free energy and conditionals.

    .. math:: E(v, h) = -b^\top v - c^\top h - h^\top W v, \quad
        F(v) = -b^\top v - \sum_j \mathrm{softplus}(c_j + W_j v)

    with :math:`p(h_j = 1 | v) = \sigma(c_j + W_j v)` and :math:`p(v_i = 1 | h) =
    \sigma(b_i + W_{:, i}^\top h)`. Calling it gives :math:`-F(v) = \log \sum_h
    \exp(-E(v, h))`, the unnormalised marginal; it is the target of
    :class:`~probgen.samplers.BlockGibbs`.

    Arguments:
        weight: :math:`W` with shape :math:`(H, V)`.
        visible_bias: :math:`b` with shape :math:`(*B, V)`.
        hidden_bias: :math:`c` with shape :math:`(*B, H)`.
    """

    weight: Tensor
    visible_bias: Tensor
    hidden_bias: Tensor

    def hidden_logits(self, v: Tensor) -> Tensor:
        r"""The logits :math:`c + W v` of :math:`p(h | v)`, shape :math:`(*, H)`."""
        return v @ self.weight.T + self.hidden_bias

    def visible_logits(self, h: Tensor) -> Tensor:
        r"""The logits :math:`b + W^\top h` of :math:`p(v | h)`, shape :math:`(*, V)`."""
        return h @ self.weight + self.visible_bias

    def free_energy(self, v: Tensor) -> Tensor:
        r"""The free energy :math:`F(v)`, shape :math:`(*)`."""
        return -(v * self.visible_bias).sum(-1) - F.softplus(self.hidden_logits(v)).sum(-1)

    def __call__(self, v: Tensor) -> Tensor:
        return -self.free_energy(v)

    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws :math:`h \sim p(h | v)`."""
        return _bernoulli(self.hidden_logits(v), generator)

    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""Draws :math:`v \sim p(v | h)`."""
        return _bernoulli(self.visible_logits(h), generator)

    def log_z(self) -> Tensor:
        r"""The exact :math:`\log Z`, enumerating the smaller layer (:math:`2^{\min(V, H)}`
        terms, by blocks of :math:`2^{12}`)."""
        H, V = self.weight.shape
        if H <= V:
            # log Z = log sum_h exp(c.h) prod_i (1 + exp(b_i + W_i.h))
            def term(h: Tensor) -> Tensor:
                hb = h.reshape(-1, *[1] * (self.hidden_bias.dim() - 1), H)
                return (hb * self.hidden_bias).sum(-1) + F.softplus(
                    hb @ self.weight + self.visible_bias
                ).sum(-1)

            n = H
        else:

            def term(v: Tensor) -> Tensor:
                return -self.free_energy(v.reshape(-1, *[1] * (self.visible_bias.dim() - 1), V))

            n = V
        if n > 24:
            raise ValueError(f"exact log Z enumerates 2^{n} states; use AIS for min(V, H) > 24")
        parts = [term(block) for block in _configurations(n, self.weight)]
        return torch.cat(parts).logsumexp(0)

    def tempered(self, beta: float, base_bias: Tensor) -> RBMTarget:
        r"""The intermediate RBM of AIS: :math:`\beta W`, :math:`(1 - \beta) b_A + \beta
        b`, :math:`\beta c` (Salakhutdinov and Murray, 2008)."""
        return RBMTarget(
            beta * self.weight,
            (1 - beta) * base_bias + beta * self.visible_bias,
            beta * self.hidden_bias,
        )


def _bernoulli(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    return (u < torch.sigmoid(logits)).to(logits.dtype)


def _configurations(n: int, like: Tensor, block: int = 12) -> list[Tensor]:
    # Every {0, 1}^n configuration, in blocks of at most 2^block rows.
    low = min(n, block)
    tail = torch.tensor(list(itertools.product([0.0, 1.0], repeat=low)), dtype=like.dtype)
    tail = tail.to(like.device)
    out = []
    for head in itertools.product([0.0, 1.0], repeat=n - low):
        prefix = torch.tensor(head, dtype=like.dtype, device=like.device).expand(len(tail), -1)
        out.append(torch.cat([prefix, tail], dim=-1))
    return out


class RestrictedBoltzmann(EnergyBased):
    r"""A Bernoulli-Bernoulli restricted Boltzmann machine's marginal over visible units,

    .. math:: p(v) = \frac{1}{Z} \sum_h e^{-E(v, h)} = \frac{e^{-F(v)}}{Z}, \quad
        v \in \{0, 1\}^V ,

    sampled by block Gibbs chains. :math:`\log Z` is exact by enumeration when
    :math:`\min(V, H) \leq 24`, estimated by AIS from a base-rate RBM otherwise.

    Arguments:
        target: The :class:`RBMTarget` (weights and biases, with batch shape :math:`B`).
        init: The distribution the chains start from (default: independent Bernoulli
            units with the visible biases' probabilities).
        kernel: The kernel (default ``BlockGibbs()``).
        steps: Gibbs transitions per ``sample``.
        log_z: A known :math:`\log Z`.
        kind: What ``log_prob`` means once ``log_z`` is given.
    """

    support = constraints.independent(constraints.boolean, 1)

    def __init__(
        self,
        target: RBMTarget,
        *,
        init: Distribution | None = None,
        kernel: Kernel | None = None,
        steps: int = 100,
        log_z: Tensor | float | None = None,
        kind: Literal["estimate", "exact"] = "estimate",
    ) -> None:
        self.rbm = target
        V = target.weight.shape[-1]
        batch = target.visible_bias.shape[:-1]
        if init is None:
            init = _Bernoulli(target.visible_bias.detach())
        super().__init__(
            target.free_energy, (V,), batch, init=init, kernel=kernel or BlockGibbs(), steps=steps,
            log_z=log_z, kind=kind,
        )  # fmt: skip
        self.support = constraints.independent(constraints.boolean, 1)

    @property
    def target(self) -> RBMTarget:
        return self.rbm

    def free_energy(self, v: Tensor) -> Tensor:
        r"""The free energy :math:`F(v) = -\log \sum_h e^{-E(v, h)}`, shape :math:`(*S, *B)`."""
        return self.energy(v)

    def log_normalizer(
        self,
        method: Literal["auto", "enumeration", "ais"] = "auto",
        *,
        chains: int = 1000,
        betas: int | Tensor = 1000,
        base_bias: Tensor | None = None,
        steps_per_beta: int = 1,
        generator: torch.Generator | None = None,
    ) -> LogNormalizer:
        r"""Computes or estimates :math:`\log Z`.

        - ``"enumeration"``: exact, over the :math:`2^{\min(V, H)}` states of the smaller
          layer;
        - ``"ais"``: AIS from the base-rate RBM :math:`p_A(v) \propto e^{b_A^\top v}` (no
          weights) through :meth:`RBMTarget.tempered` with block Gibbs transitions
          (Salakhutdinov and Murray, 2008);
        - ``"auto"``: enumeration when :math:`\min(V, H) \leq 20`, else AIS.

        Arguments:
            method: The method.
            chains: AIS chains.
            betas: AIS inverse temperatures, or their number (a sigmoid schedule).
            base_bias: :math:`b_A` with shape :math:`(V,)` (default zeros; the data's
                logit marginals are a better start, as in the reference).
            steps_per_beta: Gibbs transitions per temperature.
            generator: AIS's random number generator.

        Returns:
            The :class:`LogNormalizer` (exact ones are labelled ``"enumeration"``).
        """
        H, V = self.rbm.weight.shape
        if method == "auto":
            method = "enumeration" if min(H, V) <= 20 else "ais"
        if method == "enumeration":
            with torch.no_grad():
                value = self.rbm.log_z()
            return LogNormalizer(value, torch.zeros_like(value), "enumeration")
        if method != "ais":
            raise ValueError(f"expected method 'auto', 'enumeration' or 'ais', got {method!r}")
        rbm = self.rbm
        b_a = (
            torch.zeros_like(rbm.visible_bias)
            if base_bias is None
            else base_bias.to(rbm.visible_bias)
        )
        b_a = b_a.expand_as(rbm.visible_bias)
        shape = Size((chains,)) + self.batch_shape + (V,)
        with torch.no_grad():
            x0 = _bernoulli(b_a.expand(shape), generator)
            log_z0 = F.softplus(b_a).sum(-1) + H * math.log(2.0)
            est = ais(
                lambda beta: rbm.tempered(beta, b_a), x0, self.kernel, betas,
                steps_per_beta=steps_per_beta, generator=generator,
            )  # fmt: skip
        return LogNormalizer(est.log_z + log_z0, est.stderr, "ais", est.ess)


class _Bernoulli(GenerativeDistribution):
    # Independent Bernoulli units, the chains' default start.
    support = constraints.independent(constraints.boolean, 1)

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:])

    def expand(self, batch_shape: Size, _instance: Any = None) -> _Bernoulli:
        return _Bernoulli(self.logits.expand(Size(batch_shape) + self.event_shape))

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        return _bernoulli(self.logits.expand(Size(sample_shape) + self.logits.shape), None)

    def log_prob(self, x: Tensor) -> Tensor:
        self.check_value(x)
        return -F.binary_cross_entropy_with_logits(
            self.logits.expand_as(x), x, reduction="none"
        ).sum(-1)


class RBM(LazyDistribution):
    r"""A Bernoulli-Bernoulli restricted Boltzmann machine, built into a
    :class:`RestrictedBoltzmann` distribution on each call.

    With a context :math:`c`, the biases are affine in it, :math:`b + A c` and
    :math:`c_h + B c` (a conditional RBM).

    Arguments:
        visible: The number of visible units :math:`V`.
        hidden: The number of hidden units :math:`H`.
        context: The number of context features (0 when unconditional).
        kernel: The sampling kernel (default ``BlockGibbs()``).
        steps: Gibbs transitions per ``sample``.

    References:
        | Training Products of Experts by Minimizing Contrastive Divergence (Hinton, 2002)
        | Training Restricted Boltzmann Machines using Approximations to the Likelihood
          Gradient (Tieleman, 2008)
        | A Practical Guide to Training Restricted Boltzmann Machines (Hinton, 2010)
        | Modeling Human Motion Using Binary Latent Variables (Taylor et al., 2007)

    Example:
        >>> rbm = RBM(6, 3)
        >>> d = rbm()
        >>> v = d.sample((4,))
        >>> v.shape, d.normalized().log_prob(v).shape  # log Z by enumeration
        (torch.Size([4, 6]), torch.Size([4]))
    """

    def __init__(
        self,
        visible: int,
        hidden: int,
        context: int = 0,
        *,
        kernel: Kernel | None = None,
        steps: int = 100,
    ) -> None:
        super().__init__()
        if visible < 1 or hidden < 1:
            raise ValueError(f"expected visible, hidden >= 1, got {visible}, {hidden}")
        self.weight = nn.Parameter(0.01 * torch.randn(hidden, visible))
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))
        self.context = context
        if context:
            self.visible_context = nn.Linear(context, visible, bias=False)
            self.hidden_context = nn.Linear(context, hidden, bias=False)
        self.kernel = kernel if kernel is not None else BlockGibbs()
        self.steps = steps

    def forward(self, c: Tensor | None = None) -> RestrictedBoltzmann:
        check_context(c, self.context)
        b, h = self.visible_bias, self.hidden_bias
        if c is not None:
            b = b + self.visible_context(c)
            h = h + self.hidden_context(c)
        return RestrictedBoltzmann(
            RBMTarget(self.weight, b, h), kernel=self.kernel, steps=self.steps
        )


def guided_score(
    score: Callable[[Tensor, Tensor], Tensor],
    energy: Callable[..., Tensor],
    weight: float = 1.0,
    *,
    time: bool = False,
) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Composes a score with an energy: the score of :math:`p_t(x) e^{-w E(x)}`.

    .. math:: \tilde s(x, t) = s(x, t) - w \nabla_x E(x \,[, t])

    A diffusion (or any score-based sampler) run with :math:`\tilde s` samples the product
    of its own marginals with the Boltzmann factor of :math:`E` (energy guidance, or
    classifier guidance when :math:`E = -\log p(y | x)`): a composition, not a new model.

    Arguments:
        score: The score :math:`s(x, t) = \nabla_x \log p_t(x)`.
        energy: The energy :math:`E(x)` (or :math:`E(x, t)` with ``time=True``), e.g. an
            :class:`EnergyBased` distribution's ``energy``, mapping shape
            :math:`(*, *E)` to :math:`(*)`.
        weight: The guidance weight :math:`w`.
        time: Whether the energy takes the time as a second argument.

    Returns:
        The guided score :math:`\tilde s(x, t)`.

    References:
        | Reduce, Reuse, Recycle: Compositional Generation with Energy-Based Diffusion
          Models and MCMC (Du et al., 2023) https://arxiv.org/abs/2302.11552
        | Diffusion Models Beat GANs on Image Synthesis (Dhariwal and Nichol, 2021)

    Example:
        >>> score = lambda x, t: -x  # N(0, I)
        >>> energy = lambda x: ((x - 2) ** 2).sum(-1) / 2  # times N(2, I): N(1, I/2)
        >>> guided_score(score, energy)(torch.ones(2), torch.tensor(0.5))
        tensor([0., 0.])
    """

    def guided(x: Tensor, t: Tensor) -> Tensor:
        _, grad = value_and_grad(lambda y: -(energy(y, t) if time else energy(y)), x)
        return score(x, t) + weight * grad

    return guided
