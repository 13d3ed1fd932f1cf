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
from ..utils import broadcast_context
from .autoregressive import _split_params
from .base import call_and_ladj, inv_call_and_ladj
from .elementwise import MonotonicAffineTransform


class _Split:
    r"""How a coupling mask splits features into :math:`a` and :math:`b` and merges them back.

    Contiguous or strided index sets are slices (views, no copy); the merge is a ``cat``, or
    a ``stack`` for interleaved halves; only other masks need an index permutation.
    """

    def __init__(self, mask: BoolTensor) -> None:
        m = [bool(v) for v in mask.tolist()]
        d = len(m)
        self.idx_a = [i for i in range(d) if m[i]]
        self.idx_b = [i for i in range(d) if not m[i]]
        self.a, self.b = _as_slice(self.idx_a), _as_slice(self.idx_b)
        identity, half = list(range(d)), len(self.idx_a) == len(self.idx_b)
        self.unperm: Tensor | None = None
        if self.idx_a + self.idx_b == identity:
            self.merge_order = "ab"
        elif self.idx_b + self.idx_a == identity:
            self.merge_order = "ba"
        elif half and self.idx_a == identity[::2]:
            self.merge_order = "interleave_ab"
        elif half and self.idx_b == identity[::2]:
            self.merge_order = "interleave_ba"
        else:
            self.merge_order = "permute"
            self.unperm = torch.tensor(self.idx_a + self.idx_b).argsort()

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _take(x, self.a, self.idx_a), _take(x, self.b, self.idx_b)

    def merge(self, a: Tensor, b: Tensor) -> Tensor:
        if self.merge_order == "ba":
            return torch.cat([b, a], dim=-1)
        if self.merge_order == "interleave_ab":
            return torch.stack([a, b], dim=-1).flatten(-2)
        if self.merge_order == "interleave_ba":
            return torch.stack([b, a], dim=-1).flatten(-2)
        y = torch.cat([a, b], dim=-1)
        if self.unperm is not None:
            y = y.index_select(-1, self.unperm.to(y.device))
        return y


def _as_slice(idx: list[int]) -> slice | None:
    # An arithmetic progression of indices is a slice.
    if len(idx) == 1:
        return slice(idx[0], idx[0] + 1)
    step = idx[1] - idx[0]
    if step > 0 and all(j - i == step for i, j in zip(idx[:-1], idx[1:], strict=True)):
        return slice(idx[0], idx[-1] + 1, step)
    return None


def _take(x: Tensor, s: slice | None, idx: list[int]) -> Tensor:
    if s is not None:
        return x[..., s]
    return x.index_select(-1, torch.tensor(idx, device=x.device))


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

    def __init__(
        self, meta: Callable[[Tensor], Transform], mask: BoolTensor, _split: _Split | None = None
    ) -> None:
        super().__init__()
        self.meta = meta
        # The lazy Coupling passes the split it derived from its mask, which saves reading
        # the mask (a device sync on GPU) every time a transform is built.
        self._split = _split if _split is not None else _Split(mask)

    @property
    def idx_a(self) -> Tensor:
        return torch.tensor(self._split.idx_a)

    @property
    def idx_b(self) -> Tensor:
        return torch.tensor(self._split.idx_b)

    def __repr__(self) -> str:
        return f"CouplingTransform(a={self._split.idx_a}, b={self._split.idx_b})"

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split.split(x)
        b, ladj = call_and_ladj(self.meta(a), b)
        return self._split.merge(a, b), ladj.sum(dim=-1)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split.split(y)
        b, ladj = inv_call_and_ladj(self.meta(a), b)
        return self._split.merge(a, b), ladj.sum(dim=-1)

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.inv_call_and_ladj(y)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]


class Coupling(LazyTransform):
    r"""A lazy coupling transform whose elementwise parameters come from an MLP of
    :math:`x_a` and the context.

    As in :class:`~probgen.transforms.MaskedAutoregressive`, ``univariate`` is parameterised
    in the scoring direction: the transform built is :math:`y_b = \tau^{-1}(x_b; \phi(x_a))`
    with :math:`\tau` = ``univariate(*phi)``, so that ``log_prob`` runs the forward pass of
    :math:`\tau`.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features (0 when unconditional).
        mask: The conditioning features :math:`a`, with shape :math:`(D,)`; the first half
            by default.
        univariate: The elementwise transform constructor, called with unconstrained
            parameters of the given ``shapes`` (e.g. :class:`MonotonicRQSTransform`); it maps
            the data side to the base side.
        shapes: The trailing shapes of the parameters of ``univariate``, per feature.
        hidden: The widths of the hyper-network's hidden layers.
        activation: The hyper-network's activation constructor.
        zero_init: Whether the hyper-network's last layer starts at zero (the transform starts
            as the identity); by default, only for more than two parameters per feature, as in
            :class:`~probgen.transforms.MaskedAutoregressive`.

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
        zero_init: bool | None = None,
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
        if zero_init is None:
            zero_init = self.params > 2
        self.hyper = MLP(n_a + context, n_b * self.params, hidden, activation, zero_init)

    def _meta(self, c: Tensor | None, a: Tensor) -> Transform:
        if c is not None:
            a = torch.cat([a, broadcast_context(a, c)], dim=-1)
        phi = self.hyper(a).unflatten(-1, (-1, self.params))
        return self.univariate(*_split_params(phi, self.shapes)).inv

    def forward(self, c: Tensor | None = None) -> Transform:
        return CouplingTransform(partial(self._meta, c), self.mask, self._split())

    def _split(self) -> _Split:
        # Derived from the mask buffer once, and again only if the buffer is replaced or
        # modified in place (load_state_dict, .to(device)).
        key = (self.mask.data_ptr(), self.mask.device, self.mask._version)
        if getattr(self, "_split_key", None) != key:
            self._split_plan, self._split_key = _Split(self.mask), key
        return self._split_plan
