r"""Coupling transforms: half the features parameterise an elementwise map of the rest."""

from __future__ import annotations

__all__ = ["CouplingTransform", "Coupling"]

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
from torch import BoolTensor, Tensor
from torch.distributions import Transform, constraints

from ..lazy import LazyTransform
from ..nn import MLP
from ..utils import broadcast_context, unpack
from .base import call_and_ladj, inv_call_and_ladj
from .elementwise import MonotonicAffineTransform


class CouplingTransform(Transform):
    r"""The coupling transform :math:`y_a = x_a`, :math:`y_b = \tau(x_b; \phi(x_a))`.

    Both directions take one pass, and :math:`\log |\det J| = \sum_b \log \tau'(x_b)`.

    Arguments:
        meta: A function :math:`x_a \mapsto \tau` returning an elementwise transform of
            :math:`x_b`, with :math:`x_a` of shape :math:`(*, |a|)`.
        mask: The boolean mask of the conditioning features :math:`a`, with shape :math:`(D,)`.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, meta: Callable[[Tensor], Transform], mask: BoolTensor) -> None:
        super().__init__()
        self.meta = meta
        self.idx_a = mask.nonzero().squeeze(-1)
        self.idx_b = (~mask).nonzero().squeeze(-1)
        perm = torch.cat([self.idx_a, self.idx_b])
        self.unperm = None if bool((perm == torch.arange(len(perm))).all()) else perm.argsort()

    def __repr__(self) -> str:
        return f"CouplingTransform(a={self.idx_a.tolist()}, b={self.idx_b.tolist()})"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(-1, self.idx_a.to(x.device)), x.index_select(
            -1, self.idx_b.to(x.device)
        )

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        y = torch.cat([a, b], dim=-1)
        return y if self.unperm is None else y.index_select(-1, self.unperm.to(y.device))

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        b, ladj = call_and_ladj(self.meta(a), b)
        return self._merge(a, b), ladj.sum(dim=-1)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(y)
        b, ladj = inv_call_and_ladj(self.meta(a), b)
        return self._merge(a, b), ladj.sum(dim=-1)

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.inv_call_and_ladj(y)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]


class Coupling(LazyTransform):
    r"""A lazy coupling transform whose elementwise parameters come from an MLP of
    :math:`x_a` and the context.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        mask: The conditioning features :math:`a`, with shape :math:`(D,)`; the first half
            by default.
        univariate: The elementwise transform constructor, called with unconstrained
            parameters of the given ``shapes`` (e.g. :class:`MonotonicRQSTransform`).
        shapes: The trailing shapes of the parameters of ``univariate``, per feature.
        hidden: The widths of the hyper-network's hidden layers.
        activation: The hyper-network's activation constructor.

    Example:
        >>> t = Coupling(4, context=2)
        >>> x, c = torch.randn(3, 4), torch.randn(3, 2)
        >>> torch.allclose(t(c).inv(t(c)(x)), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        mask: BoolTensor | None = None,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling transform needs at least 2 features, got {features}")
        if mask is None:
            mask = torch.arange(features) < features // 2
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (features,) or mask.all() or not mask.any():
            raise ValueError(
                f"expected a mask with shape ({features},) holding both True and False, "
                f"got {mask.tolist()}"
            )
        self.features, self.context = features, context
        self.register_buffer("mask", mask)
        self.univariate = univariate
        self.shapes = [tuple(s) for s in shapes]
        self.params = sum(int(torch.Size(s).numel()) for s in self.shapes)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        self.hyper = MLP(n_a + context, n_b * self.params, hidden, activation)

    def _meta(self, c: Tensor | None, a: Tensor) -> Transform:
        if c is not None:
            a = torch.cat([a, broadcast_context(a, c)], dim=-1)
        phi = self.hyper(a).unflatten(-1, (-1, self.params))
        return self.univariate(*unpack(phi, self.shapes))

    def forward(self, c: Tensor | None = None) -> Transform:
        return CouplingTransform(partial(self._meta, c), self.mask)
