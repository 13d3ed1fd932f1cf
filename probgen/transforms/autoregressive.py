r"""Autoregressive transforms: each output's elementwise map depends on earlier outputs."""

from __future__ import annotations

__all__ = ["MaskedAutoregressiveTransform", "MaskedAutoregressive"]

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
from torch import LongTensor, Tensor
from torch.distributions import Transform, constraints

from ..lazy import LazyTransform
from ..nn import MaskedMLP
from ..utils import unpack
from .base import call_and_ladj, inv_call_and_ladj
from .elementwise import MonotonicAffineTransform


def _split_params(phi: Tensor, shapes: Sequence[tuple[int, ...]]) -> tuple[Tensor, ...]:
    r"""Splits the last dimension of ``phi`` into parameters of the given trailing ``shapes``.

    The same as :func:`probgen.utils.unpack`, with fewer view operations (and autograd nodes)
    in the common cases: scalar parameters are an ``unbind``, vectors a ``split``.
    """
    if all(len(s) == 0 for s in shapes) and phi.shape[-1] == len(shapes):
        return phi.unbind(dim=-1)
    if all(len(s) == 1 for s in shapes):
        return phi.split([s[0] for s in shapes], dim=-1)
    return unpack(phi, shapes)


class MaskedAutoregressiveTransform(Transform):
    r"""The autoregressive transform :math:`y_i = \tau(x_i; \phi_i(y_{<i}))`.

    The generative direction (:math:`x \to y`) takes ``passes`` sequential evaluations of
    the hyper-network; the inverse (:math:`y \to x`), and hence the density of :math:`y`,
    takes one. Its Jacobian is triangular in the network's order.

    Arguments:
        meta: A function :math:`y \mapsto \tau` returning the elementwise transform of every
            feature, whose parameters for feature :math:`i` depend only on :math:`y_{<i}`.
        passes: The number of passes the generative direction needs (the number of features).

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, meta: Callable[[Tensor], Transform], passes: int) -> None:
        super().__init__()
        self.meta, self.passes = meta, passes

    def __repr__(self) -> str:
        return f"MaskedAutoregressiveTransform(passes={self.passes})"

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.zeros_like(x)
        for _ in range(self.passes - 1):
            y = self.meta(y)(x)
        y, ladj = call_and_ladj(self.meta(y), x)
        return y, ladj.sum(dim=-1)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = inv_call_and_ladj(self.meta(y), y)
        return x, ladj.sum(dim=-1)

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.meta(y).inv(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return call_and_ladj(self.meta(y), x)[1].sum(dim=-1)


class MaskedAutoregressive(LazyTransform):
    r"""A lazy masked autoregressive transform whose parameters come from a MADE.

    The elementwise transform ``univariate`` is parameterised in the scoring direction, from
    :math:`y` (data side) to :math:`x` (base side): the transform built is
    :math:`y_i = \tau^{-1}(x_i; \phi_i(y_{<i}))` with :math:`\tau` = ``univariate(*phi)``, so
    that scoring (the one-pass direction) runs the forward pass of :math:`\tau`, as in zuko
    and nflows. For a spline, that forward pass is cheaper than its inverse; and fitting a
    density by maximum likelihood trains the map it evaluates directly.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        order: The autoregressive order, a permutation of :math:`0..D-1` (identity by default).
        univariate: The elementwise transform constructor, called with unconstrained
            parameters of the given ``shapes``; it maps the data side to the base side.
        shapes: The trailing shapes of the parameters of ``univariate``, per feature.
        hidden: The widths of the MADE's hidden layers.
        activation: The MADE's activation constructor.
        zero_init: Whether the MADE's last layer starts at zero, so that the transform starts
            as the identity. By default (``None``), only when ``univariate`` takes more than
            two parameters per feature (a spline), where it fits markedly better on the 2-D
            benchmarks; an affine map keeps PyTorch's initialisation, which fits as well or
            better there (``benchmarks/RESULTS.md``).

    Example:
        >>> t = MaskedAutoregressive(3, context=1)
        >>> x, c = torch.randn(5, 3), torch.randn(5, 1)
        >>> torch.allclose(t(c).inv(t(c)(x)), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        order: LongTensor | None = None,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool | None = None,
    ) -> None:
        super().__init__()
        self.features, self.context = features, context
        self.univariate = univariate
        self.shapes = [tuple(s) for s in shapes]
        params = sum(int(torch.Size(s).numel()) for s in self.shapes)
        if zero_init is None:
            zero_init = params > 2
        self.hyper = MaskedMLP(features, params, context, hidden, order, activation, zero_init)

    def _meta(self, c: Tensor | None, y: Tensor) -> Transform:
        return self.univariate(*_split_params(self.hyper(y, c), self.shapes)).inv

    def forward(self, c: Tensor | None = None) -> Transform:
        return MaskedAutoregressiveTransform(partial(self._meta, c), self.features)
