r"""Continuous normalizing flows: the pushforward of a base by the flow of an ODE.

Time runs from :math:`t = 0` (noise, the base) to :math:`t = 1` (data). For a vector field
:math:`v(x, t, c)` with flow map :math:`f`,

.. math:: \log p(x) = \log p_0(f^{-1}(x)) - \int_0^1 \nabla \cdot v(x(t), t, c) \, dt ,

computed in one backward solve (:class:`probgen.transforms.ODETransform`). Two lazy
models build the same distribution and differ in how they train:

- :class:`CNF` (FFJORD): maximum likelihood through the ODE (:func:`probgen.objectives.nll`);
- :class:`FlowMatching`: regression of :math:`v` onto the velocity of a probability path
  (:func:`probgen.objectives.flow_matching`), simulation-free, with an optional minibatch
  optimal-transport coupling; :func:`reflow_pairs` straightens a trained model.

Probability paths are small objects, :math:`x_t = \alpha_t x_1 + \sigma_t x_0` with
:math:`x_0` noise and :math:`x_1` data (:class:`LinearPath`, :class:`VPPath`); couplings
too (:class:`IndependentCoupling`, :class:`OTCoupling`).
"""

from __future__ import annotations

__all__ = [
    "ContinuousFlow",
    "CNF",
    "FlowMatching",
    "AffinePath",
    "LinearPath",
    "VPPath",
    "Coupling",
    "IndependentCoupling",
    "OTCoupling",
    "reflow_pairs",
]

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution

from ..lazy import LazyDistribution, UnconditionalDistribution
from ..nn.time import TimeMLP
from ..transforms.continuous import EXACT_TRACE, Divergence, ODETransform
from .flow import NormalizingFlow
from .simple import DiagNormal


class ContinuousFlow(NormalizingFlow):
    r"""The distribution of :math:`x = f(z)`, :math:`z \sim p_0`, for the flow map
    :math:`f` of an ODE (an :class:`~probgen.transforms.ODETransform`).

    ``log_prob_kind`` is ``"exact"`` with an exact trace and ``"estimate"`` with
    Hutchinson's. :meth:`log_prob_and_nfe` and :meth:`sample_and_nfe` also report the
    number of function evaluations of their solve.

    Arguments:
        base: The base distribution :math:`p_0`.
        transform: The ODE transform from :math:`t = 0` to :math:`t = 1`.
    """

    def __init__(self, base: Distribution, transform: ODETransform) -> None:
        super().__init__(base, transform)
        self.log_prob_kind = transform.divergence.kind

    def __repr__(self) -> str:
        return f"ContinuousFlow(\n  base={self.base},\n  transform={self.transform}\n)"

    def expand(self, batch_shape: Size, _instance=None) -> ContinuousFlow:
        return ContinuousFlow(self.base.expand(Size(batch_shape)), self.transform)

    def log_prob_and_nfe(self, x: Tensor) -> tuple[Tensor, int]:
        r"""Returns :math:`\log p(x)` with shape :math:`(*)` and the NFE of its solve."""
        self.check_value(x)
        sol = self.transform.solve(x, inverse=True)
        return self._log_prob_base(sol.x) - sol.ladj, sol.nfe

    def sample_and_nfe(self, sample_shape: Size | tuple[int, ...] = ()) -> tuple[Tensor, int]:
        r"""Returns samples with shape ``sample_shape + batch_shape + event_shape`` and the
        NFE of their solve."""
        with torch.no_grad():
            sol = self.transform.solve(self.base.sample(sample_shape), ladj=False)
        return sol.x, sol.nfe


class CNF(LazyDistribution):
    r"""A free-form continuous normalizing flow (FFJORD), trained by maximum likelihood.

    .. math:: \frac{dx}{dt} = v_\phi(x, t, c), \quad x(0) \sim \mathcal{N}(0, I)

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        hidden: The widths of the field's hidden layers.
        field: A vector field module ``field(x, t, c)`` to use instead of a
            :class:`~probgen.nn.TimeMLP`.
        divergence: :class:`~probgen.transforms.ExactTrace` (exact ``log_prob``) or
            :class:`~probgen.transforms.Hutchinson` (an unbiased estimate).
        method: The :func:`torchdiffeq.odeint` method.
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        adjoint: Whether to backpropagate by the adjoint method.
        options: Further options of the method.

    References:
        | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models
        | (Grathwohl et al., 2018) https://arxiv.org/abs/1810.01367
        | Neural Ordinary Differential Equations (Chen et al., 2018)
        | https://arxiv.org/abs/1806.07366

    Example:
        >>> cnf = CNF(2, hidden=(16,))
        >>> d = cnf()
        >>> d.log_prob(d.sample((4,))).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        field: nn.Module | None = None,
        divergence: Divergence = EXACT_TRACE,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        adjoint: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if features < 1 or context < 0:
            raise ValueError(f"expected features >= 1 and context >= 0, got {features}, {context}")
        self.features, self.context = features, context
        self.field = TimeMLP(features, context, hidden) if field is None else field
        self.base = UnconditionalDistribution(
            DiagNormal, torch.zeros(features), torch.ones(features)
        )
        self.divergence = divergence
        self.solver = dict(method=method, rtol=rtol, atol=atol, adjoint=adjoint, options=options)

    def forward(self, c: Tensor | None = None) -> ContinuousFlow:
        self.check_context(c)
        base = self.base()
        if c is not None:
            base = base.expand(c.shape[:-1])
        transform = ODETransform(self.field, c, 0.0, 1.0, self.divergence, **self.solver)
        return ContinuousFlow(base, transform)


# Probability paths and couplings


class AffinePath:
    r"""A Gaussian probability path between noise :math:`x_0` and data :math:`x_1`,

    .. math:: x_t = \alpha_t x_1 + \sigma_t x_0, \quad
        u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0 ,

    with :math:`\alpha_0 = 0, \sigma_0 = 1` (noise) and :math:`\alpha_1 = 1` (data).
    Subclasses define :meth:`alpha_sigma` and its time derivative :meth:`derivatives`.
    """

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""Returns :math:`x_t` and the target velocity :math:`u_t`.

        Arguments:
            x0: Noise with shape :math:`(*, *E)`.
            x1: Data with the same shape.
            t: Times with shape :math:`(*)`.
        """
        t = t.reshape(*t.shape, *[1] * (x1.dim() - t.dim()))
        (a, s), (da, ds) = self.alpha_sigma(t), self.derivatives(t)
        return a * x1 + s * x0, da * x1 + ds * x0


class LinearPath(AffinePath):
    r"""The straight (rectified-flow, optimal-transport) path,

    .. math:: x_t = t x_1 + (1 - (1 - \sigma_{min}) t) x_0 .

    Arguments:
        sigma_min: The noise left at :math:`t = 1` (0 for rectified flow).

    References:
        | Flow Matching for Generative Modeling (Lipman et al., 2022)
        | https://arxiv.org/abs/2210.02747
        | Flow Straight and Fast (Liu et al., 2022) https://arxiv.org/abs/2209.03003
    """

    def __init__(self, sigma_min: float = 0.0) -> None:
        self.sigma_min = sigma_min

    def __repr__(self) -> str:
        return f"LinearPath(sigma_min={self.sigma_min})"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return t, 1 - (1 - self.sigma_min) * t

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), torch.full_like(t, -(1 - self.sigma_min))


class VPPath(AffinePath):
    r"""A variance-preserving path, :math:`\alpha_t^2 + \sigma_t^2 = 1`,

    .. math:: \alpha_t = \sin(\tfrac{\pi}{2} t), \quad \sigma_t = \cos(\tfrac{\pi}{2} t) .

    References:
        | Building Normalizing Flows with Stochastic Interpolants (Albergo and
        | Vanden-Eijnden, 2022) https://arxiv.org/abs/2209.15571
    """

    def __repr__(self) -> str:
        return "VPPath()"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sin(0.5 * math.pi * t), torch.cos(0.5 * math.pi * t)

    def derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        w = 0.5 * math.pi
        return w * torch.cos(w * t), -w * torch.sin(w * t)


class Coupling:
    r"""How noise :math:`x_0` is paired with data :math:`x_1` in a minibatch."""

    def __call__(self, x0: Tensor, x1: Tensor) -> Tensor:
        r"""Returns ``x0`` reordered along its first dimension to pair with ``x1``."""
        raise NotImplementedError


class IndependentCoupling(Coupling):
    r"""The product coupling :math:`q(x_0) q(x_1)`: pairs as drawn."""

    def __repr__(self) -> str:
        return "IndependentCoupling()"

    def __call__(self, x0: Tensor, x1: Tensor) -> Tensor:
        return x0


class OTCoupling(Coupling):
    r"""Minibatch optimal transport: the exact assignment

    .. math:: \pi = \arg\min_{\pi \in S_N} \sum_i \| x_1^{(i)} - x_0^{(\pi(i))} \|^2

    over the :math:`N` pairs of a minibatch (Hungarian algorithm, SciPy's
    ``linear_sum_assignment``), which straightens the marginal paths.

    References:
        | Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
        | Transport (Tong et al., 2023) https://arxiv.org/abs/2302.00482
    """

    def __repr__(self) -> str:
        return "OTCoupling()"

    def __call__(self, x0: Tensor, x1: Tensor) -> Tensor:
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:  # pragma: no cover - scipy ships with the test extra
            raise ImportError(
                "OTCoupling needs SciPy (scipy.optimize.linear_sum_assignment); "
                "install it with `pip install scipy` or use IndependentCoupling()"
            ) from None
        if x0.shape != x1.shape:
            raise ValueError(
                f"expected x0 and x1 of one shape, got {tuple(x0.shape)}, {tuple(x1.shape)}"
            )
        a, b = x1.detach().flatten(1), x0.detach().flatten(1)
        cost = torch.cdist(a, b).square()
        _, cols = linear_sum_assignment(cost.cpu().numpy())
        return x0[torch.as_tensor(cols, device=x0.device)]


class FlowMatching(CNF):
    r"""A continuous normalizing flow trained by conditional flow matching.

    .. math:: \mathcal{L}(\phi) = \mathbb{E}_{t, (x_0, x_1) \sim \pi}
        \| v_\phi(x_t, t, c) - u_t(x_0, x_1) \|^2

    for a probability path :math:`x_t` (:class:`LinearPath`, :class:`VPPath`) and a
    coupling :math:`\pi` of noise and data (:class:`IndependentCoupling`,
    :class:`OTCoupling`). Its distribution is the ODE pushforward of the base, exactly as
    a :class:`CNF`'s: ``log_prob`` is exact through the ODE and samples come from the same
    solve.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features.
        hidden: The widths of the field's hidden layers.
        path: The probability path (default :class:`LinearPath`).
        coupling: The minibatch coupling (default :class:`IndependentCoupling`).
        kwargs: The remaining arguments of :class:`CNF` (field, divergence, solver).

    References:
        | Flow Matching for Generative Modeling (Lipman et al., 2022)
        | https://arxiv.org/abs/2210.02747

    Example:
        >>> fm = FlowMatching(2, hidden=(16,), coupling=OTCoupling())
        >>> fm.default_objective(torch.randn(8, 2)).shape
        torch.Size([])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        path: AffinePath | None = None,
        coupling: Coupling | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(features, context, hidden, **kwargs)
        self.path = LinearPath() if path is None else path
        self.coupling = IndependentCoupling() if coupling is None else coupling

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        from ..objectives import flow_matching  # objectives sit one layer above

        return flow_matching(self, x, c)


@torch.no_grad()
def reflow_pairs(
    model: LazyDistribution, n: int, c: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Draws :math:`n` coupled pairs :math:`(x_0, f(x_0))` from a trained ODE flow, the
    training set of a rectified (reflow) step.

    Arguments:
        model: A :class:`CNF` or :class:`FlowMatching` model.
        n: The number of pairs.
        c: A context with shape :math:`(n, C)` for a conditional model, or ``None``.

    Returns:
        Noise :math:`x_0` and samples :math:`x_1`, each with shape :math:`(n, D)`.

    References:
        | Flow Straight and Fast (Liu et al., 2022) https://arxiv.org/abs/2209.03003
    """
    d = model() if c is None else model(c)
    x0 = d.base.sample(() if c is not None else (n,))
    return x0, d.transform.solve(x0, ladj=False).x
