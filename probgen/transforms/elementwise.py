r"""Elementwise (univariate) monotonic transforms with unconstrained parameters.

Each takes the raw output of a hyper-network and applies its constraints itself, so any
real parameters give a valid bijection; all-zero parameters give the identity.
"""

from __future__ import annotations

__all__ = ["MonotonicAffineTransform", "MonotonicRQSTransform"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Transform, constraints


def _soft_bound(x: Tensor, bound: float) -> Tensor:
    # x / (1 + |x| / bound): identity near 0, never beyond `bound`, gradients never vanish.
    return x / (1 + x.abs() / bound)


class MonotonicAffineTransform(Transform):
    r"""The elementwise affine map :math:`y = \mu + \exp(s) x`.

    The log-scale is softly bounded, :math:`|s| < -\log(\text{slope})`, so that neither
    direction overflows early in training.

    Arguments:
        shift: The shift :math:`\mu`, with shape :math:`(*,)`.
        log_scale: The unconstrained log-scale, with shape :math:`(*,)`.
        slope: The smallest scale :math:`\exp(s)` allowed.

    Example:
        >>> t = MonotonicAffineTransform(torch.tensor(1.0), torch.tensor(0.0))
        >>> t(torch.tensor(2.0))
        tensor(3.)
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, shift: Tensor, log_scale: Tensor, slope: float = 1e-3) -> None:
        super().__init__()
        self.shift = shift
        self.log_scale = _soft_bound(log_scale, -math.log(slope))

    def __repr__(self) -> str:
        return "MonotonicAffineTransform()"

    def _call(self, x: Tensor) -> Tensor:
        return self.shift + self.log_scale.exp() * x

    def _inverse(self, y: Tensor) -> Tensor:
        return (y - self.shift) * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.log_scale.expand(x.shape)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(x), self.log_scale.expand(x.shape)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._inverse(y), self.log_scale.expand(y.shape)


class MonotonicRQSTransform(Transform):
    r"""A monotonic rational-quadratic spline on :math:`[-B, B]`, the identity outside.

    With knots :math:`(x_k, y_k)`, derivatives :math:`d_k`, bin widths :math:`w_k`,
    heights :math:`h_k`, slopes :math:`s_k = h_k / w_k` and :math:`\xi = (x - x_k) / w_k`,

    .. math:: y = y_k + h_k \frac{s_k \xi^2 + d_k \xi (1 - \xi)}
        {s_k + (d_k + d_{k+1} - 2 s_k) \xi (1 - \xi)} .

    The boundary derivatives are 1, so the map and its derivative are continuous where the
    identity tails begin. Both directions are closed form and one pass; inputs are clamped
    before the spline arithmetic so that no NaN or infinite gradient leaks from the
    branch :func:`torch.where` discards, whatever the magnitude of the input.

    Arguments:
        widths: The unconstrained bin widths, with shape :math:`(*, K)`.
        heights: The unconstrained bin heights, with shape :math:`(*, K)`.
        derivatives: The unconstrained interior knot derivatives, with shape :math:`(*, K - 1)`.
        bound: The half-width :math:`B` of the spline's interval.
        slope: The smallest derivative allowed.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Example:
        >>> t = MonotonicRQSTransform(torch.randn(8), torch.randn(8), torch.randn(7))
        >>> x = torch.linspace(-6.0, 6.0, 5)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(
        self,
        widths: Tensor,
        heights: Tensor,
        derivatives: Tensor,
        bound: float = 5.0,
        slope: float = 1e-3,
    ) -> None:
        super().__init__()
        if widths.shape[-1] != heights.shape[-1] or derivatives.shape[-1] != widths.shape[-1] - 1:
            raise ValueError(
                "expected widths and heights with shape (*, K) and derivatives with shape "
                f"(*, K - 1), got {tuple(widths.shape)}, {tuple(heights.shape)} and "
                f"{tuple(derivatives.shape)}"
            )
        self.bound = bound
        self.bins = widths.shape[-1]
        limit = -math.log(slope) / 2

        def knots(raw: Tensor) -> Tensor:
            p = F.softmax(_soft_bound(raw, limit), dim=-1)
            cum = torch.cumsum(p, dim=-1)[..., :-1]
            # Exact end points, so the tails join the spline without a gap.
            return bound * (2 * F.pad(F.pad(cum, (1, 0), value=0.0), (0, 1), value=1.0) - 1)

        derivatives = _soft_bound(derivatives, 2 * limit).exp()
        # Rows: knots x_k, knots y_k, derivatives d_k (1 at both ends), each with K + 1 entries.
        self.knots = torch.stack(
            [knots(widths), knots(heights), F.pad(derivatives, (1, 1), value=1.0)], dim=-2
        )

    def __repr__(self) -> str:
        return f"MonotonicRQSTransform(bins={self.bins}, bound={self.bound})"

    def _gather(self, v: Tensor, row: int) -> tuple[Tensor, ...]:
        knots = self.knots
        if knots.shape[:-2] != v.shape:
            knots = knots.expand(*v.shape, *knots.shape[-2:])
        k = (knots[..., row, 1:-1] <= v[..., None]).sum(dim=-1, keepdim=True)
        idx = torch.cat([k, k + 1], dim=-1)[..., None, :].expand(*v.shape, 3, 2)
        g = knots.gather(-1, idx)  # (*, 3, 2)
        return g[..., 0, 0], g[..., 0, 1], g[..., 1, 0], g[..., 1, 1], g[..., 2, 0], g[..., 2, 1]

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        inside = x.abs() < self.bound
        x_in = x.clamp(-self.bound, self.bound)
        x0, x1, y0, y1, d0, d1 = self._gather(x_in, 0)
        w, h = x1 - x0, y1 - y0
        s = h / w
        xi = ((x_in - x0) / w).clamp(0, 1)
        xi1 = xi * (1 - xi)
        denom = s + (d0 + d1 - 2 * s) * xi1
        y = y0 + h * (s * xi * xi + d0 * xi1) / denom
        dy = s * s * (d1 * xi * xi + 2 * s * xi1 + d0 * (1 - xi) ** 2) / (denom * denom)
        return torch.where(inside, y, x), torch.where(inside, dy.log(), torch.zeros_like(x))

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        inside = y.abs() < self.bound
        y_in = y.clamp(-self.bound, self.bound)
        x0, x1, y0, y1, d0, d1 = self._gather(y_in, 1)
        w, h = x1 - x0, y1 - y0
        s = h / w
        dy = y_in - y0
        t = d0 + d1 - 2 * s
        a = h * (s - d0) + dy * t
        b = h * d0 - dy * t
        c = -s * dy
        disc = (b * b - 4 * a * c).clamp(min=0)
        # The root formula stable for a -> 0 (Durkan et al., eq. 29).
        xi = (2 * c / (-b - disc.sqrt())).clamp(0, 1)
        x = x0 + xi * w
        xi1 = xi * (1 - xi)
        denom = s + t * xi1
        dydx = s * s * (d1 * xi * xi + 2 * s * xi1 + d0 * (1 - xi) ** 2) / (denom * denom)
        return torch.where(inside, x, y), torch.where(inside, dydx.log(), torch.zeros_like(y))

    def _call(self, x: Tensor) -> Tensor:
        return self._forward(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self._backward(y)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._forward(x)[1]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._forward(x)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._backward(y)
