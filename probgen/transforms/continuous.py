r"""The ODE transform: the flow map of a vector field, with its log-determinant integrated
in the same solve.

For a vector field :math:`v(x, t, c)` the transform maps :math:`x(t_0)` to :math:`x(t_1)`
along :math:`\frac{dx}{dt} = v(x, t, c)`, and by the instantaneous change of variables

.. math:: \frac{d}{dt} \log |\det J(t)| = \nabla \cdot v(x(t), t, c)
    = \operatorname{tr} \frac{\partial v}{\partial x}(x(t), t, c) ,

so :math:`\log |\det J_f(x(t_0))| = \int_{t_0}^{t_1} \nabla \cdot v \, dt` rides along in
the state :math:`(x, \ell)` of one :func:`torchdiffeq.odeint` call. Time runs from
:math:`t_0 = 0` (noise) to :math:`t_1 = 1` (data): the forward direction is generative.

The divergence is an object: :class:`ExactTrace` (one backward pass per feature; exact,
for small dimensions) or :class:`Hutchinson` (probes drawn once per solve; unbiased,
``log_prob_kind == "estimate"``). Every solve reports its number of function evaluations
in an :class:`ODESolution`.
"""

from __future__ import annotations

__all__ = [
    "Divergence",
    "ExactTrace",
    "Hutchinson",
    "ODESolution",
    "ODETransform",
    "odeint_with_ladj",
]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
import torchdiffeq
from torch import Tensor
from torch.distributions import Transform, constraints

VectorField = Callable[[Tensor, Tensor, Tensor | None], Tensor]


class Divergence:
    r"""How :math:`\nabla \cdot v` is computed: a small object with ``kind``, ``probes``
    (noise drawn once per solve, or ``None``) and ``__call__``."""

    kind: str = "exact"

    def probes(self, x: Tensor, event_dim: int) -> Tensor | None:
        return None

    def __call__(
        self, v: Tensor, x: Tensor, eps: Tensor | None, event_dim: int, create_graph: bool
    ) -> Tensor:
        raise NotImplementedError


class ExactTrace(Divergence):
    r"""The exact divergence :math:`\sum_i \partial v_i / \partial x_i`, one vector-Jacobian
    product per feature (:math:`D` backward passes, batched over samples).

    The batch elements must not interact inside the field (no batch normalisation), which
    holds for every network of :mod:`probgen.nn`.
    """

    kind = "exact"

    def __repr__(self) -> str:
        return "ExactTrace()"

    def __call__(
        self, v: Tensor, x: Tensor, eps: Tensor | None, event_dim: int, create_graph: bool
    ) -> Tensor:
        batch = x.shape[: x.dim() - event_dim]
        v_flat = v.reshape(*batch, -1)
        div = x.new_zeros(batch)
        for i in range(v_flat.shape[-1]):
            (g,) = torch.autograd.grad(
                v_flat[..., i].sum(), x, create_graph=create_graph, retain_graph=True
            )
            div = div + g.reshape(*batch, -1)[..., i]
        return div


EXACT_TRACE = ExactTrace()


@dataclass(frozen=True)
class Hutchinson(Divergence):
    r"""Hutchinson's unbiased estimator of the divergence,

    .. math:: \nabla \cdot v \approx \frac{1}{K} \sum_{k=1}^K \epsilon_k^\top
        \frac{\partial v}{\partial x} \epsilon_k ,
        \quad \mathbb{E}[\epsilon \epsilon^\top] = I ,

    with :math:`K` probes drawn once per solve (the estimate is then the divergence of one
    fixed random functional, so adaptive solvers see a smooth integrand).

    Arguments:
        probes_per_solve: The number of probes :math:`K`.
        noise: ``"rademacher"`` (lower variance) or ``"gaussian"``.

    References:
        | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models
        | (Grathwohl et al., 2018) https://arxiv.org/abs/1810.01367
    """

    probes_per_solve: int = 1
    noise: Literal["rademacher", "gaussian"] = "rademacher"
    kind = "estimate"

    def __post_init__(self) -> None:
        if self.probes_per_solve < 1:
            raise ValueError(f"expected probes_per_solve >= 1, got {self.probes_per_solve}")
        if self.noise not in ("rademacher", "gaussian"):
            raise ValueError(f"expected noise 'rademacher' or 'gaussian', got {self.noise!r}")

    def probes(self, x: Tensor, event_dim: int) -> Tensor:
        eps = torch.randn(self.probes_per_solve, *x.shape, dtype=x.dtype, device=x.device)
        return eps.sign() if self.noise == "rademacher" else eps

    def __call__(
        self, v: Tensor, x: Tensor, eps: Tensor | None, event_dim: int, create_graph: bool
    ) -> Tensor:
        assert eps is not None
        total = 0
        for e in eps:
            (g,) = torch.autograd.grad(v, x, e, create_graph=create_graph, retain_graph=True)
            total = total + (g * e).flatten(x.dim() - event_dim).sum(-1)
        return total / len(eps)


@dataclass(frozen=True)
class ODESolution:
    r"""The end of one ODE solve.

    Attributes:
        x: The state at the last time, with shape :math:`(*, *E)`.
        ladj: :math:`\int \nabla \cdot v \, dt` over the grid, with shape :math:`(*)`: the
            log-determinant of the map from the first time to the last (``None`` when not
            integrated).
        nfe: The number of evaluations of the vector field.
    """

    x: Tensor
    ladj: Tensor | None
    nfe: int


class _Dynamics(nn.Module):
    # The augmented right-hand side (x, ladj) -> (v, div v), an nn.Module so that the
    # adjoint method finds the field's parameters; it counts its own evaluations.

    def __init__(self, field, c, divergence, eps, event_dim, with_ladj):
        super().__init__()
        self.field = field
        self.c, self.divergence, self.eps = c, divergence, eps
        self.event_dim, self.with_ladj = event_dim, with_ladj
        self.nfe = 0

    def forward(self, t: Tensor, state):
        self.nfe += 1
        if not self.with_ladj:
            return self.field(state, t, self.c)
        x = state[0]
        # The divergence needs d v / d x even when sampling under no_grad; the graph is
        # kept (create_graph) only when the caller differentiates the result.
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            v = self.field(x, t, self.c)
            div = self.divergence(v, x, self.eps, self.event_dim, create_graph)
        if not create_graph:
            v, div = v.detach(), div.detach()
        return v, div


def odeint_with_ladj(
    field: VectorField,
    x: Tensor,
    t: Tensor,
    c: Tensor | None = None,
    divergence: Divergence | None = EXACT_TRACE,
    event_dim: int = 1,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    adjoint: bool = False,
    options: dict[str, Any] | None = None,
) -> ODESolution:
    r"""Solves :math:`\frac{dx}{dt} = v(x, t, c)` over the time grid ``t`` and integrates
    the divergence alongside.

    .. math:: x(t_K) = x(t_0) + \int_{t_0}^{t_K} v \, dt , \quad
        \ell = \int_{t_0}^{t_K} \nabla \cdot v \, dt

    A decreasing grid solves backwards in time (then :math:`\ell` is the negative of the
    forward log-determinant).

    Arguments:
        field: The vector field, ``field(x, t, c)`` with ``x`` of shape :math:`(*, *E)` and
            ``t`` a scalar tensor.
        x: The initial state, with shape :math:`(*, *E)`.
        t: The time grid :math:`t_0, \dots, t_K`, monotonic, with shape :math:`(K + 1,)`.
        c: A context broadcast to :math:`(*, C)`, or ``None``.
        divergence: :class:`ExactTrace`, :class:`Hutchinson`, or ``None`` (no log-det).
        event_dim: The number of event dimensions :math:`|E|`.
        method: A :func:`torchdiffeq.odeint` method (``"dopri5"``, ``"rk4"``, ...).
        rtol: The relative tolerance of adaptive methods.
        atol: The absolute tolerance of adaptive methods.
        adjoint: Whether to backpropagate with the adjoint method (memory :math:`O(1)` in
            the number of steps, one more solve backwards).
        options: Further options of the method (e.g. ``{"step_size": 0.1}``).

    Returns:
        The :class:`ODESolution` at the last time of the grid, with its NFE.

    Example:
        >>> A = torch.tensor([[0.0, 1.0], [-1.0, -0.5]])
        >>> x, t = torch.ones(3, 2), torch.tensor([0.0, 1.0])
        >>> sol = odeint_with_ladj(lambda x, t, c: x @ A.T, x, t)
        >>> round(sol.ladj[0].item(), 4)
        -0.5
    """
    if t.dim() != 1 or len(t) < 2:
        raise ValueError(f"expected a time grid with shape (K + 1,), K >= 1, got {tuple(t.shape)}")
    t = t.to(dtype=x.dtype, device=x.device)
    with_ladj = divergence is not None
    eps = divergence.probes(x, event_dim) if with_ladj else None
    dynamics = _Dynamics(field, c, divergence, eps, event_dim, with_ladj)
    state = (x, x.new_zeros(x.shape[: x.dim() - event_dim])) if with_ladj else x
    kwargs = dict(rtol=rtol, atol=atol, method=method, options=options)
    if adjoint:
        if not isinstance(field, nn.Module):
            raise ValueError("the adjoint method needs a field that is an nn.Module")
        params = tuple(p for p in field.parameters() if p.requires_grad)
        if c is not None and c.requires_grad:
            params = params + (c,)
        out = torchdiffeq.odeint_adjoint(dynamics, state, t, adjoint_params=params, **kwargs)
    else:
        out = torchdiffeq.odeint(dynamics, state, t, **kwargs)
    if with_ladj:
        return ODESolution(out[0][-1], out[1][-1], dynamics.nfe)
    return ODESolution(out[-1], None, dynamics.nfe)


class ODETransform(Transform):
    r"""The flow map :math:`f: x(t_0) \mapsto x(t_1)` of :math:`\frac{dx}{dt} = v(x, t, c)`.

    .. math:: \log |\det J_f(x(t_0))| = \int_{t_0}^{t_1} \nabla \cdot v(x(t), t, c) \, dt

    The inverse solves backwards from :math:`t_1` to :math:`t_0`. Both fused methods solve
    once, the log-det in the same solve; :meth:`solve` also reports the NFE.

    Arguments:
        field: The vector field ``field(x, t, c)``, e.g. a :class:`probgen.nn.TimeMLP`.
        c: A context with shape :math:`(*, C)`, broadcast to the batch, or ``None``.
        t0: The start time (noise side).
        t1: The end time (data side).
        divergence: :class:`ExactTrace` (default) or :class:`Hutchinson`.
        event_dim: The number of event dimensions.
        method, rtol, atol, adjoint, options: As in :func:`odeint_with_ladj`.

    Example:
        >>> f = ODETransform(lambda x, t, c: -x, t0=0.0, t1=0.6931471805599453)
        >>> f(torch.ones(2))
        tensor([0.5000, 0.5000])
    """

    bijective = True

    def __init__(
        self,
        field: VectorField,
        c: Tensor | None = None,
        t0: float = 0.0,
        t1: float = 1.0,
        divergence: Divergence = EXACT_TRACE,
        event_dim: int = 1,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        adjoint: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if t0 == t1:
            raise ValueError(f"expected t0 != t1, got t0 = t1 = {t0}")
        self.field, self.c, self.t0, self.t1 = field, c, float(t0), float(t1)
        self.divergence, self._event_dim = divergence, event_dim
        self.solver = dict(method=method, rtol=rtol, atol=atol, adjoint=adjoint, options=options)

    @property
    def event_dim(self) -> int:
        return self._event_dim

    @property
    def domain(self):
        return constraints.independent(constraints.real, self._event_dim)

    @property
    def codomain(self):
        return constraints.independent(constraints.real, self._event_dim)

    def __repr__(self) -> str:
        return (
            f"ODETransform(t0={self.t0}, t1={self.t1}, divergence={self.divergence}, "
            f"method={self.solver['method']!r})"
        )

    def solve(self, x: Tensor, inverse: bool = False, ladj: bool = True) -> ODESolution:
        r"""Solves forwards (:math:`t_0 \to t_1`) or backwards from ``x``.

        Returns:
            An :class:`ODESolution` whose ``ladj`` is the *forward* log-determinant at the
            preimage (the contract of :func:`probgen.transforms.inv_call_and_ladj`) in both
            directions, and whose ``nfe`` counts this solve.
        """
        a, b = (self.t1, self.t0) if inverse else (self.t0, self.t1)
        t = torch.tensor([a, b], dtype=x.dtype, device=x.device)
        c = self._context(x)
        sol = odeint_with_ladj(
            self.field,
            x,
            t,
            c,
            self.divergence if ladj else None,
            self._event_dim,
            **self.solver,
        )
        if sol.ladj is not None and inverse:
            return ODESolution(sol.x, -sol.ladj, sol.nfe)
        return sol

    def _context(self, x: Tensor) -> Tensor | None:
        if self.c is None:
            return None
        batch = x.shape[: x.dim() - self._event_dim]
        return self.c.expand(*batch, self.c.shape[-1])

    def _call(self, x: Tensor) -> Tensor:
        return self.solve(x, ladj=False).x

    def _inverse(self, y: Tensor) -> Tensor:
        return self.solve(y, inverse=True, ladj=False).x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.solve(x).ladj

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sol = self.solve(x)
        return sol.x, sol.ladj

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        sol = self.solve(y, inverse=True)
        return sol.x, sol.ladj
