r"""Linear bijections: permutations, LU-parameterised linear maps and invertible 1x1 convolutions.

The LU parameterisation writes an invertible matrix as

.. math:: W = P L (U + \operatorname{diag}(\sigma \odot e^{s}))

with a fixed permutation :math:`P`, a lower triangular :math:`L` with unit diagonal, a
strictly upper triangular :math:`U`, fixed signs :math:`\sigma \in \{-1, 1\}^D` and
unconstrained log-magnitudes :math:`s`, so that :math:`\log |\det W| = \sum_i s_i` costs
:math:`O(D)` and :math:`W` stays invertible for every parameter value.
"""

from __future__ import annotations

__all__ = [
    "PermutationTransform",
    "LULinearTransform",
    "LULinear",
    "Conv1x1Transform",
    "Conv1x1",
]

import torch
import torch.nn as nn
from torch import LongTensor, Tensor
from torch.distributions import Transform, constraints

from ..lazy import LazyTransform


class PermutationTransform(Transform):
    r"""The permutation of features :math:`y_i = x_{\pi(i)}`, with :math:`\log |\det J| = 0`.

    Arguments:
        perm: The permutation :math:`\pi` of :math:`0, \dots, D - 1`, with shape :math:`(D,)`.

    Example:
        >>> t = PermutationTransform(torch.tensor([2, 0, 1]))
        >>> t(torch.tensor([10.0, 11.0, 12.0]))
        tensor([12., 10., 11.])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, perm: LongTensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(len(perm))):
            raise ValueError(f"expected a permutation of 0..D-1, got {perm.tolist()}")
        self.perm = perm

    def __repr__(self) -> str:
        return f"PermutationTransform({self.perm.tolist()})"

    def _call(self, x: Tensor) -> Tensor:
        return x.index_select(-1, self.perm.to(x.device))

    def _inverse(self, y: Tensor) -> Tensor:
        return y.index_select(-1, self.perm.argsort().to(y.device))

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return x.new_zeros(x.shape[:-1])


class LULinearTransform(Transform):
    r"""The linear map :math:`y = W x` with an LU-parameterised matrix

    .. math:: W = P L (U + \operatorname{diag}(\sigma \odot e^{s})) ,
        \qquad \log |\det J| = \sum_i s_i .

    Only the strictly lower part of ``lower`` and the strictly upper part of ``upper``
    are read, so any real tensors are valid parameters.

    Arguments:
        perm: The permutation :math:`\pi` defining :math:`P` (:math:`(P v)_i = v_{\pi(i)}`),
            with shape :math:`(D,)`.
        lower: The unconstrained :math:`L`, with shape :math:`(D, D)`.
        upper: The unconstrained :math:`U`, with shape :math:`(D, D)`.
        log_diag: The log-magnitudes :math:`s` of the diagonal, with shape :math:`(D,)`.
        sign: The signs :math:`\sigma` of the diagonal, with shape :math:`(D,)` (all
            positive by default).

    Example:
        >>> D = 3
        >>> t = LULinearTransform(torch.arange(D), torch.randn(D, D), torch.randn(D, D),
        ...                       torch.zeros(D))
        >>> x = torch.randn(5, D)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self,
        perm: LongTensor,
        lower: Tensor,
        upper: Tensor,
        log_diag: Tensor,
        sign: Tensor | None = None,
    ) -> None:
        super().__init__()
        D = log_diag.shape[-1]
        if log_diag.shape != (D,) or lower.shape != (D, D) or upper.shape != (D, D):
            raise ValueError(
                "expected lower and upper with shape (D, D) and log_diag with shape (D,), got "
                f"{tuple(lower.shape)}, {tuple(upper.shape)} and {tuple(log_diag.shape)}"
            )
        self.perm, self.log_diag = perm, log_diag
        self.lower = lower.tril(-1) + torch.eye(D, dtype=lower.dtype, device=lower.device)
        diag = log_diag.exp() if sign is None else sign * log_diag.exp()
        self.upper = upper.triu(1) + torch.diag_embed(diag)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(features={len(self.log_diag)})"

    def weight(self) -> Tensor:
        r"""The matrix :math:`W = P L U`, with shape :math:`(D, D)`."""
        return (self.lower @ self.upper).index_select(-2, self.perm.to(self.upper.device))

    def inverse_weight(self) -> Tensor:
        r"""The matrix :math:`W^{-1} = U^{-1} L^{-1} P^T`, by two triangular solves."""
        D = len(self.log_diag)
        eye = torch.eye(D, dtype=self.upper.dtype, device=self.upper.device)
        p_t = eye.index_select(-1, self.perm.to(eye.device))  # P^T, as (P^T)_{j, i} = P_{i, j}
        a = torch.linalg.solve_triangular(self.lower, p_t, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(self.upper, a, upper=True)

    def _ladj(self, x: Tensor) -> Tensor:
        return self.log_diag.sum().expand(x.shape[:-1])

    def _apply(self, w: Tensor, x: Tensor) -> Tensor:
        return x @ w.T

    def _call(self, x: Tensor) -> Tensor:
        return self._apply(self.weight(), x)

    def _inverse(self, y: Tensor) -> Tensor:
        return self._apply(self.inverse_weight(), y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._ladj(x)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(x), self._ladj(x)

    def inv_call_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._inverse(y), self._ladj(y)


class Conv1x1Transform(LULinearTransform):
    r"""The invertible :math:`1 \times 1` convolution :math:`y_{:, h, w} = W x_{:, h, w}`
    with an LU-parameterised :math:`C \times C` matrix :math:`W`,

    .. math:: \log |\det J| = H W \sum_i s_i ,

    which costs :math:`O(C)` instead of the :math:`O(C^3)` of a determinant.

    Arguments:
        perm: The permutation defining :math:`P`, with shape :math:`(C,)`.
        lower: The unconstrained :math:`L`, with shape :math:`(C, C)`.
        upper: The unconstrained :math:`U`, with shape :math:`(C, C)`.
        log_diag: The log-magnitudes :math:`s` of the diagonal, with shape :math:`(C,)`.
        sign: The signs :math:`\sigma` of the diagonal, with shape :math:`(C,)`.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def _ladj(self, x: Tensor) -> Tensor:
        return (x.shape[-2] * x.shape[-1]) * self.log_diag.sum().expand(x.shape[:-3])

    def _apply(self, w: Tensor, x: Tensor) -> Tensor:
        return torch.einsum("ij,...jhw->...ihw", w, x)


class LULinear(LazyTransform):
    r"""A lazy LU-parameterised linear transform, initialised at a random rotation.

    The rotation :math:`Q` is factorised once, :math:`Q = P L U'`; :math:`P` and the signs
    of :math:`\operatorname{diag}(U')` stay fixed (buffers) while :math:`L`, :math:`U` and
    :math:`s = \log |\operatorname{diag}(U')|` are trained.

    Arguments:
        features: The number of features :math:`D`.

    Example:
        >>> t = LULinear(4)
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(t().inv(t()(x)), x, atol=1e-5)
        True
    """

    meta: type[LULinearTransform] = LULinearTransform

    def __init__(self, features: int) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"expected features >= 1, got {features}")
        q, _ = torch.linalg.qr(torch.randn(features, features))
        p, lower, upper = torch.linalg.lu(q)
        diag = upper.diagonal()
        # Q = p @ lower @ upper with p a permutation matrix: (p v)_i = v_{perm(i)}.
        self.register_buffer("perm", p.argmax(dim=-1))
        self.register_buffer("sign", diag.sign())
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_diag = nn.Parameter(diag.abs().log())

    def forward(self, c: Tensor | None = None) -> Transform:
        return self.meta(self.perm, self.lower, self.upper, self.log_diag, self.sign)


class Conv1x1(LULinear):
    r"""A lazy invertible :math:`1 \times 1` convolution over :math:`C` channels (LU form),
    initialised at a random rotation.

    Arguments:
        channels: The number of channels :math:`C`.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = Conv1x1(4)
        >>> t()(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    meta = Conv1x1Transform

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
