r"""Diffusion models: a network that denoises, an SDE, and the probability-flow ODE.

Time runs from :math:`t = 0` (noise) to :math:`t = 1` (data); the noised marginal is
:math:`x_t = \alpha_t x + \sigma_t \epsilon` (:mod:`probgen.samplers.sde`). The network
predicts a *parameterisation* of the denoising problem (noise, data, velocity or score),
all converted to a noise prediction :math:`\hat\epsilon(x, t, c)`. The distribution is the
pushforward of the prior :math:`\mathcal{N}(0, \sigma_{prior}^2 I)` at :math:`t = 0` by the
probability-flow ODE up to :math:`t_{max} = 1 - 10^{-3}`, so ``log_prob`` is exact through
that ODE and ``sample`` uses the same solve; the stochastic samplers (DDPM, DDIM,
Euler-Maruyama, predictor-corrector, Heun) of :mod:`probgen.samplers` take
:meth:`DiffusionDistribution.eps` and :attr:`DiffusionDistribution.sde`.

Classifier-free guidance lives in :meth:`DiffusionDistribution.eps`, so every sampler and
the probability-flow ODE see it: with a guidance scale :math:`w` and the null context
:math:`\varnothing` (the zero vector),

.. math:: \tilde\epsilon(x, t, c) = (1 + w) \, \hat\epsilon(x, t, c)
    - w \, \hat\epsilon(x, t, \varnothing) ,

so :math:`w = 0` is the conditional model and the guided score is
:math:`(1 + w) \nabla \log p_t(x | c) - w \nabla \log p_t(x)`. The network learns both
by condition dropout in training (``p_uncond`` of :class:`Diffusion`).

References:
    | Score-Based Generative Modeling through Stochastic Differential Equations
    | (Song et al., 2021) https://arxiv.org/abs/2011.13456
    | Classifier-Free Diffusion Guidance (Ho and Salimans, 2022)
    | https://arxiv.org/abs/2207.12598
"""

from __future__ import annotations

__all__ = [
    "Parameterization",
    "NoisePrediction",
    "DataPrediction",
    "VelocityPrediction",
    "ScorePrediction",
    "DiffusionDistribution",
    "Diffusion",
]

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..lazy import LazyDistribution
from ..nn.time import TimeMLP
from ..samplers.sde import SDE, VP
from ..transforms.continuous import EXACT_TRACE, Divergence, ODETransform
from ..utils import broadcast_context
from .continuous import ContinuousFlow
from .simple import DiagNormal


class Parameterization:
    r"""What the network predicts: ``eps`` converts its output to a noise prediction and
    ``target`` is the regression target, for :math:`x_t = \alpha x_0 + \sigma \epsilon`."""

    def eps(self, out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError

    def target(self, x0: Tensor, e: Tensor, a: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoisePrediction(Parameterization):
    r"""The network predicts :math:`\epsilon` (DDPM)."""

    def eps(self, out, x, a, s):
        return out

    def target(self, x0, e, a, s):
        return e


class DataPrediction(Parameterization):
    r"""The network predicts :math:`x_0`; :math:`\hat\epsilon = (x - \alpha \hat x_0) /
    \sigma`."""

    def eps(self, out, x, a, s):
        return (x - a * out) / s

    def target(self, x0, e, a, s):
        return x0


class VelocityPrediction(Parameterization):
    r"""The network predicts :math:`v = \alpha \epsilon - \sigma x_0` (Salimans and Ho,
    2022); :math:`\hat\epsilon = (\sigma x + \alpha \hat v) / (\alpha^2 + \sigma^2)`."""

    def eps(self, out, x, a, s):
        return (s * x + a * out) / (a**2 + s**2)

    def target(self, x0, e, a, s):
        return a * e - s * x0


class ScorePrediction(Parameterization):
    r"""The network predicts the score :math:`\nabla \log p_t = -\epsilon / \sigma`."""

    def eps(self, out, x, a, s):
        return -s * out

    def target(self, x0, e, a, s):
        return -e / s


class DiffusionDistribution(ContinuousFlow):
    r"""The distribution of a diffusion model: the prior pushed by the probability-flow ODE

    .. math:: \frac{dx}{dt} = -f(t) x - \tfrac12 g(t)^2 \frac{\hat\epsilon(x, t, c)}
        {\sigma_t}, \quad x(0) \sim \mathcal{N}(0, \sigma_{prior}^2 I) ,

    from :math:`t = 0` to :math:`t_{max}`.

    Arguments:
        network: The network ``network(x, t, c)``.
        sde: The SDE (:class:`~probgen.samplers.VP`, ``SubVP``, ``VE``).
        parameterization: What the network predicts.
        features: The number of features :math:`D`.
        c: A context with shape :math:`(*B, C)`, or ``None``.
        t_max: Where the ODE stops (the data end, short of the singular :math:`t = 1`).
        divergence: The divergence of the ODE transform (exact trace by default).
        guidance: The classifier-free guidance scale :math:`w` (0: the conditional model;
            needs a context; the null context is the zero vector).
        solver: Keyword arguments of :class:`~probgen.transforms.ODETransform`.
    """

    def __init__(
        self,
        network: Callable[..., Tensor],
        sde: SDE,
        parameterization: Parameterization,
        features: int,
        c: Tensor | None = None,
        t_max: float = 1 - 1e-3,
        divergence: Divergence = EXACT_TRACE,
        guidance: float = 0.0,
        **solver: Any,
    ) -> None:
        if guidance and c is None:
            raise ValueError(f"classifier-free guidance needs a context, got guidance={guidance}")
        self.network, self.sde, self.parameterization, self.c = network, sde, parameterization, c
        self.guidance = float(guidance)
        batch = c.shape[:-1] if c is not None else ()
        dtype = c.dtype if c is not None else _dtype(network)
        loc = torch.zeros(*batch, features, dtype=dtype)
        base = DiagNormal(loc, torch.full_like(loc, sde.prior_std))
        pf_ode = sde.pf_ode(self.eps)

        def field(x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
            # Adaptive solvers step past the end and interpolate back: hold the field at
            # its value at the end rather than evaluate it where sigma_t reaches 0.
            return pf_ode(x, t.clamp(0.0, t_max), c)

        super().__init__(base, ODETransform(field, None, 0.0, t_max, divergence, **solver))
        self.t_max = t_max

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        r"""The noise prediction :math:`\hat\epsilon(x, t, c)` for ``x`` of shape
        :math:`(*, D)` and a scalar time ``t``; guided, :math:`(1 + w) \hat\epsilon(x, t, c)
        - w \hat\epsilon(x, t, \varnothing)`, when the guidance scale :math:`w \neq 0`."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        a, s = self.sde.alpha_sigma(t)
        c = broadcast_context(x, self.c)
        if not self.guidance:
            return self.parameterization.eps(self.network(x, t, c), x, a, s)
        # One network pass over the stack of the conditional and the null inputs.
        out = self.network(torch.stack([x, x]), t, torch.stack([c, torch.zeros_like(c)]))
        e = self.parameterization.eps(out, x, a, s)
        return (1 + self.guidance) * e[0] - self.guidance * e[1]


def _dtype(network: Any) -> torch.dtype:
    if isinstance(network, nn.Module):
        for p in network.parameters():
            return p.dtype
    return torch.get_default_dtype()


class Diffusion(LazyDistribution):
    r"""A diffusion model: a denoising network over an SDE, trained by denoising.

    .. math:: \mathcal{L} = \mathbb{E}_{t, x, \epsilon} \|
        \mathrm{net}(\alpha_t x + \sigma_t \epsilon, t, c) - y(x, \epsilon) \|^2

    with the target :math:`y` of the parameterisation (:func:`probgen.objectives.denoising`).

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features.
        hidden: The widths of the default :class:`~probgen.nn.TimeMLP`.
        network: A network ``network(x, t, c)`` to use instead.
        sde: The SDE (default :class:`~probgen.samplers.VP` with DDPM's linear schedule).
        parameterization: What the network predicts (default :class:`NoisePrediction`).
        t_max: The end of the probability-flow ODE.
        divergence: The divergence of the ODE transform.
        p_uncond: The probability that training replaces a context by the null (zero)
            context, so that the network also learns the unconditional model for
            classifier-free guidance (``model(c, guidance=w)``).
        solver: Keyword arguments of :class:`~probgen.transforms.ODETransform`.

    References:
        | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
        | https://arxiv.org/abs/2006.11239
        | Classifier-Free Diffusion Guidance (Ho and Salimans, 2022)
        | https://arxiv.org/abs/2207.12598

    Example:
        >>> model = Diffusion(2, hidden=(16,))
        >>> model.default_objective(torch.randn(8, 2)).shape
        torch.Size([])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        network: nn.Module | None = None,
        sde: SDE | None = None,
        parameterization: Parameterization | None = None,
        t_max: float = 1 - 1e-3,
        divergence: Divergence = EXACT_TRACE,
        p_uncond: float = 0.0,
        **solver: Any,
    ) -> None:
        super().__init__()
        if features < 1 or context < 0:
            raise ValueError(f"expected features >= 1 and context >= 0, got {features}, {context}")
        if not 0 <= p_uncond <= 1 or (p_uncond and not context):
            raise ValueError(f"expected 0 <= p_uncond <= 1 with a context, got {p_uncond}")
        self.p_uncond = p_uncond
        self.features, self.context = features, context
        self.network = (
            TimeMLP(features, context, hidden, frequencies=4) if network is None else network
        )
        self.sde = VP() if sde is None else sde
        self.parameterization = NoisePrediction() if parameterization is None else parameterization
        self.t_max, self.divergence, self.solver = t_max, divergence, solver

    def forward(self, c: Tensor | None = None, guidance: float = 0.0) -> DiffusionDistribution:
        r"""
        Arguments:
            c: A context with shape :math:`(*B, C)`, or ``None``.
            guidance: The classifier-free guidance scale :math:`w` (needs a context).
        """
        self.check_context(c)
        return DiffusionDistribution(
            self.network, self.sde, self.parameterization, self.features, c, self.t_max,
            self.divergence, guidance, **self.solver,
        )  # fmt: skip

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        from ..objectives import denoising  # objectives sit one layer above

        return denoising(self, x, c, p_uncond=self.p_uncond)
