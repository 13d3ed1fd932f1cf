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
    # abs() saves its input for backward, not its output, which the in-place steps reuse.
    return x / x.abs().mul_(1 / bound).add_(1)


class MonotonicAffineTransform(Transform):
    r"""The elementwise affine map :math:`y = \mu + \exp(s) x`.

    The log-scale is softly bounded, :math:`s = b \tanh(s_{raw} / b)` with :math:`b =
    -\log(\text{slope})`, so that neither direction overflows early in training. (The
    tanh costs one fused op in each direction, where the algebraic bound of the splines
    costs four forward and about nine backward: an affine flow is cheap enough per step
    for that to show.)

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
        bound = -math.log(slope)
        self.log_scale = torch.tanh(log_scale * (1 / bound)).mul(bound)

    def __repr__(self) -> str:
        return "MonotonicAffineTransform()"

    def _call(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.shift, self.log_scale.exp(), x)

    def _inverse(self, y: Tensor) -> Tensor:
        return (y - self.shift) / self.log_scale.exp()

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
        self.bins = k = widths.shape[-1]
        limit = -math.log(slope) / 2
        # A softmax without its max shift: the soft bound keeps the logits in (-limit, limit),
        # so exp cannot overflow. Dividing the cumulative sums by their last entry (x / x == 1
        # exactly) makes the last knot exactly B, so the tails join the spline without a gap.
        # The in-place steps overwrite buffers no backward formula reads (fewer fresh buffers
        # at large batch); the gradients are those of the out-of-place expressions.
        e = _soft_bound(torch.stack([widths, heights], dim=-2), limit).exp_()  # (*, 2, K)
        c = e.cumsum(dim=-1)
        c = (c / c[..., -1:]).sub_(0.5).mul_(2 * bound)
        knots = F.pad(c, (1, 0), value=-bound)
        d = F.pad(_soft_bound(derivatives, 2 * limit).exp_(), (1, 1), value=1.0)
        # One table per element, (*, 3 (K + 1)): knots x_k, knots y_k, derivatives d_k (1 at
        # both ends), so that one gather fetches a bin's six numbers.
        self.table = torch.cat([knots.flatten(-2), d], dim=-1)
        self._offsets = (0, k + 1, 2 * k + 2, 1, k + 2, 2 * k + 3)

    def __repr__(self) -> str:
        return f"MonotonicRQSTransform(bins={self.bins}, bound={self.bound})"

    def _bin(self, v: Tensor, row: int) -> tuple[Tensor, Tensor, Tensor]:
        # v is the clamped input; row 0 searches the x knots, row 1 the y knots.
        table = self.table
        if table.shape[:-1] != v.shape:
            shape = torch.broadcast_shapes(table.shape[:-1], v.shape)
            table, v = table.expand(*shape, table.shape[-1]), v.expand(shape)
        k, n = self.bins, row * (self.bins + 1)
        # The bin index counts the interior knots at or below v: 0 <= i <= K - 1.
        i = (table[..., n + 1 : n + k] <= v[..., None]).sum(dim=-1, keepdim=True)
        offsets = torch.tensor(self._offsets, device=v.device)
        return v, table.gather(-1, i + offsets).unbind(dim=-1)  # type: ignore[return-value]

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_in = x.clamp(-self.bound, self.bound)
        inside = x_in == x  # False for NaN, which then passes through unchanged
        x_in, (x0, y0, d0, x1, y1, d1) = self._bin(x_in, 0)
        w, h = x1 - x0, y1 - y0
        s = h / w
        # 0 <= x_in - x0 <= w, and rounding is monotonic: xi lies in [0, 1] without a clamp.
        xi = (x_in - x0) / w
        om = 1 - xi
        xo = xi * om
        t = torch.add(d0 + d1, s, alpha=-2)
        denom = torch.addcmul(s, t, xo)
        y = torch.addcdiv(y0, h * xi * torch.addcmul(s * xi, d0, om), denom)
        ladj = _log_dydx(xi, om, xo, s, d0, d1, denom)
        return torch.where(inside, y, x), torch.where(inside, ladj, 0.0)

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        y_in = y.clamp(-self.bound, self.bound)
        inside = y_in == y
        y_in, (x0, y0, d0, x1, y1, d1) = self._bin(y_in, 1)
        w, h = x1 - x0, y1 - y0
        s = h / w
        dy = y_in - y0
        t = torch.add(d0 + d1, s, alpha=-2)
        dt = dy * t
        a = torch.addcmul(dt, h, s - d0)
        b = h * d0 - dt
        sdy = s * dy
        disc = torch.addcmul(b * b, a, sdy, value=4).clamp(min=0)
        # The root of a xi^2 + b xi + c = 0 (c = -s dy) stable for a -> 0 (Durkan et al., eq. 29).
        xi = (2 * sdy / (b + disc.sqrt())).clamp(0, 1)
        x = torch.addcmul(x0, xi, w)
        om = 1 - xi
        xo = xi * om
        denom = torch.addcmul(s, t, xo)
        ladj = _log_dydx(xi, om, xo, s, d0, d1, denom)
        return torch.where(inside, x, y), torch.where(inside, ladj, 0.0)

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


def _log_dydx(
    xi: Tensor, om: Tensor, xo: Tensor, s: Tensor, d0: Tensor, d1: Tensor, denom: Tensor
) -> Tensor:
    # log dy/dx = log(s^2 (d1 xi^2 + 2 s xi (1 - xi) + d0 (1 - xi)^2) / denom^2)
    num = torch.addcmul(torch.addcmul(d1 * xi * xi, s, xo, value=2), d0, om * om)
    return torch.add(num.log(), (s / denom).log(), alpha=2)
