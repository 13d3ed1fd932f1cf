r"""The transform contract and composition.

probgen's transforms are :class:`torch.distributions.Transform` values. Beyond torch's
contract (``domain``, ``codomain``, ``bijective``, ``_call``, ``_inverse``,
``log_abs_det_jacobian``) a transform may define two fused methods that save a pass:

- ``call_and_ladj(x) -> (y, ladj)``: :math:`y = f(x)` and :math:`\log |\det J_f(x)|`;
- ``inv_call_and_ladj(y) -> (x, ladj)``: :math:`x = f^{-1}(y)` and the *forward*
  :math:`\log |\det J_f(x)|` at that :math:`x`.

The free functions :func:`call_and_ladj` and :func:`inv_call_and_ladj` use them when they
exist, fall back on torch's methods otherwise, and see through torch's inverse wrapper.
Every ladj is summed over the transform's ``domain.event_dim`` rightmost dimensions.
"""

from __future__ import annotations

__all__ = [
    "Transform",
    "call_and_ladj",
    "inv_call_and_ladj",
    "ComposedTransform",
    "IndependentTransform",
]

import torch
from torch import Tensor
from torch.distributions import Transform, constraints
from torch.distributions.transforms import _InverseTransform

from ..utils import sum_rightmost


def call_and_ladj(t: Transform, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Returns :math:`y = t(x)` and :math:`\log |\det J_t(x)|`."""
    if isinstance(t, _InverseTransform):
        y, ladj = inv_call_and_ladj(t._inv, x)
        return y, -ladj
    if hasattr(t, "call_and_ladj"):
        return t.call_and_ladj(x)
    y = t(x)
    return y, t.log_abs_det_jacobian(x, y)


def inv_call_and_ladj(t: Transform, y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Returns :math:`x = t^{-1}(y)` and the forward :math:`\log |\det J_t(x)|`."""
    if isinstance(t, _InverseTransform):
        x, ladj = call_and_ladj(t._inv, y)
        return x, -ladj
    if hasattr(t, "inv_call_and_ladj"):
        return t.inv_call_and_ladj(y)
    x = t.inv(y)
    return x, t.log_abs_det_jacobian(x, y)


class ComposedTransform(Transform):
    r"""The composition :math:`f = f_n \circ \dots \circ f_1` of transforms.

    Its ladj is the sum of its parts', each summed to the composition's event dimension;
    both directions are fused, one pass each.

    Arguments:
        transforms: The transforms :math:`f_1, \dots, f_n`, applied in that order.
    """

    bijective = True

    def __init__(self, *transforms: Transform) -> None:
        super().__init__()
        self.transforms = transforms
        self._event_dim = max(
            [max(t.domain.event_dim, t.codomain.event_dim) for t in transforms], default=0
        )

    @property
    def event_dim(self) -> int:
        return self._event_dim

    def __repr__(self) -> str:
        lines = [f"({i}): {t}" for i, t in enumerate(self.transforms)]
        return "ComposedTransform(\n  " + "\n  ".join(lines) + "\n)"

    @property
    def domain(self):
        d = self.transforms[0].domain if self.transforms else constraints.real
        return constraints.independent(d, self.event_dim - d.event_dim)

    @property
    def codomain(self):
        d = self.transforms[-1].codomain if self.transforms else constraints.real
        return constraints.independent(d, self.event_dim - d.event_dim)

    def forward_shape(self, shape):
        for t in self.transforms:
            shape = t.forward_shape(shape)
        return shape

    def inverse_shape(self, shape):
        for t in reversed(self.transforms):
            shape = t.inverse_shape(shape)
        return shape

    def _call(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def _inverse(self, y: Tensor) -> Tensor:
        for t in reversed(self.transforms):
            y = t.inv(y)
        return y

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = 0
        for t in self.transforms:
            x, ladj = call_and_ladj(t, x)
            total = total + sum_rightmost(ladj, self.event_dim - t.domain.event_dim)
        return x, _as_tensor(total, x, self.event_dim)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = 0
        for t in reversed(self.transforms):
            y, ladj = inv_call_and_ladj(t, y)
            total = total + sum_rightmost(ladj, self.event_dim - t.domain.event_dim)
        return y, _as_tensor(total, y, self.event_dim)


class IndependentTransform(Transform):
    r"""Reinterprets the rightmost ``ndims`` batch dimensions of a transform as event ones.

    Arguments:
        base: A transform, often elementwise (``event_dim == 0``).
        ndims: The number of dimensions to add to its event.
    """

    bijective = True

    def __init__(self, base: Transform, ndims: int) -> None:
        super().__init__()
        self.base, self.ndims = base, ndims

    def __repr__(self) -> str:
        return f"IndependentTransform({self.base}, ndims={self.ndims})"

    @property
    def domain(self):
        return constraints.independent(self.base.domain, self.ndims)

    @property
    def codomain(self):
        return constraints.independent(self.base.codomain, self.ndims)

    def _call(self, x: Tensor) -> Tensor:
        return self.base(x)

    def _inverse(self, y: Tensor) -> Tensor:
        return self.base.inv(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return sum_rightmost(self.base.log_abs_det_jacobian(x, y), self.ndims)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, ladj = call_and_ladj(self.base, x)
        return y, sum_rightmost(ladj, self.ndims)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = inv_call_and_ladj(self.base, y)
        return x, sum_rightmost(ladj, self.ndims)


def _as_tensor(total: Tensor | int, x: Tensor, event_dim: int) -> Tensor:
    # An empty composition has a zero ladj with the batch shape of x.
    if isinstance(total, Tensor):
        return total
    return torch.zeros(x.shape[: x.dim() - event_dim], dtype=x.dtype, device=x.device)

