r"""Preprocessing bijections for bounded (dequantised) data.

Image flows model bounded data, pixel intensities in :math:`[0, 1]` or dequantised
integer levels in :math:`[0, L]`, with a flow over :math:`\mathbb{R}^D` followed by a
sigmoid-type map onto the box. The distributions that dequantise integer data live in
:mod:`probgen.distributions.dequantized`.
"""

from __future__ import annotations

__all__ = ["LogitTransform"]

import math

import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Transform, constraints


class LogitTransform(Transform):
    r"""The elementwise map from :math:`\mathbb{R}` onto a box, inverse of Real NVP's logit
    preprocessing,

    .. math:: x = b \, \frac{\sigma(z) - \alpha}{1 - 2 \alpha} , \qquad
        \log \left| \frac{dx}{dz} \right| = \log \sigma(z) + \log \sigma(-z)
            + \log \frac{b}{1 - 2 \alpha} .

    Its inverse :math:`z = \operatorname{logit}(\alpha + (1 - 2 \alpha) x / b)` is finite on
    the whole closed interval :math:`[0, b]` when :math:`\alpha > 0`, which keeps boundary
    pixels away from infinite logits; the image of :math:`\mathbb{R}` is the slightly larger
    open interval :math:`(-\alpha b / (1 - 2\alpha), (1 - \alpha) b / (1 - 2 \alpha))`.
    With :math:`\alpha = 0` it is exactly :math:`(0, b)`.

    Arguments:
        alpha: The margin :math:`\alpha \in [0, 1/2)`.
        scale: The width :math:`b > 0` of the data interval :math:`[0, b]` (1 for data in
            :math:`[0, 1]`, the number of levels :math:`L` for dequantised integer levels).

    References:
        | Density estimation using Real NVP (Dinh et al., 2016), section 4.1
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch
        >>> t = LogitTransform(alpha=0.05)
        >>> x = torch.tensor([0.0, 0.5, 1.0])
        >>> torch.allclose(t(t.inv(x)), x)
        True
    """

    domain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, alpha: float = 0.05, scale: float = 1.0) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"expected 0 <= alpha < 1/2, got {alpha}")
        if not scale > 0:
            raise ValueError(f"expected scale > 0, got {scale}")
        self.alpha, self.scale = float(alpha), float(scale)
        self._width = self.scale / (1 - 2 * self.alpha)
        self._log_width = math.log(self._width)

    def __repr__(self) -> str:
        return f"LogitTransform(alpha={self.alpha}, scale={self.scale})"

    @property
    def codomain(self):
        # Depends on alpha and scale, hence an instance property (as torch's AffineTransform).
        return constraints.interval(-self.alpha * self._width, (1 - self.alpha) * self._width)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LogitTransform)
            and self.alpha == other.alpha
            and self.scale == other.scale
        )

    def __hash__(self) -> int:
        return hash((LogitTransform, self.alpha, self.scale))

    def _ladj(self, z: Tensor) -> Tensor:
        # log sigmoid(z) + log sigmoid(-z), stable for large |z|.
        return -F.softplus(-z) - F.softplus(z) + self._log_width

    def _call(self, z: Tensor) -> Tensor:
        return (z.sigmoid() - self.alpha) * self._width

    def _inverse(self, x: Tensor) -> Tensor:
        p = self.alpha + x / self._width
        return p.log() - (-p).log1p()

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        return self._ladj(z)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(z), self._ladj(z)

    def inv_call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + x / self._width
        log_p, log_q = p.log(), (-p).log1p()
        # dx/dz = width * p * (1 - p) at z = logit(p): no second pass through softplus.
        return log_p - log_q, log_p + log_q + self._log_width
