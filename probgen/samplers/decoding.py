r"""Decoding strategies for discrete autoregressive sampling: temperature, top-k, top-p.

A strategy maps the logits :math:`\ell \in \mathbb{R}^K` of one conditional
:math:`p(x_i | x_{<i})` to the logits of the distribution actually sampled. It *changes
the distribution sampled*: a chain-rule model sampled with a strategy draws from

.. math:: q(x) = \prod_i \mathrm{softmax}(s(\ell_i(x_{<i})))_{x_i} \neq p(x) ,

while its ``log_prob`` stays the model's :math:`\log p(x)`. Removed values get logit
:math:`-\infty`. Strategies are small immutable objects; a sequence of them is applied in
order (the usual order is temperature, then top-k, then top-p, as in :func:`strategies`).

References:
    | The Curious Case of Neural Text Degeneration (Holtzman et al., 2019)
    | https://arxiv.org/abs/1904.09751
"""

from __future__ import annotations

__all__ = ["Strategy", "Temperature", "TopK", "TopP", "strategies", "apply", "temperature_of"]

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class Strategy:
    r"""Base class of decoding strategies: a map from logits to logits."""

    def __call__(self, logits: Tensor) -> Tensor:
        r"""
        Arguments:
            logits: The logits :math:`\ell`, with shape :math:`(*, K)`.

        Returns:
            The logits of the distribution to sample, with shape :math:`(*, K)`.
        """
        raise NotImplementedError


class Temperature(Strategy):
    r"""Divides the logits by a temperature :math:`T > 0`,

    .. math:: q(k) \propto p(k)^{1 / T} .

    :math:`T < 1` sharpens the distribution, :math:`T > 1` flattens it, :math:`T = 1` is
    the model's. For a Gaussian conditional :math:`\mathcal{N}(\mu, \sigma^2)` the same
    tempering gives :math:`\mathcal{N}(\mu, T \sigma^2)`.

    Arguments:
        t: The temperature :math:`T`.

    Example:
        >>> Temperature(2.0)(torch.tensor([2.0, 0.0]))
        tensor([1., 0.])
    """

    def __init__(self, t: float) -> None:
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"expected a finite temperature > 0, got {t}")
        self.t = float(t)

    def __call__(self, logits: Tensor) -> Tensor:
        return logits / self.t

    def __repr__(self) -> str:
        return f"Temperature({self.t})"


class TopK(Strategy):
    r"""Keeps the :math:`k` most probable values and renormalises,

    .. math:: q(j) \propto p(j) \, [j \in \mathrm{top}_k(p)] .

    Exactly :math:`k` values are kept, even when probabilities tie at the boundary (ties
    are broken by :func:`torch.topk`).

    Arguments:
        k: The number of values kept, :math:`k \geq 1` (all when :math:`k \geq K`).

    Example:
        >>> TopK(1)(torch.tensor([0.0, 2.0, 1.0]))
        tensor([-inf, 2., -inf])
    """

    def __init__(self, k: int) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"expected an integer k >= 1, got {k}")
        self.k = int(k)

    def __call__(self, logits: Tensor) -> Tensor:
        if self.k >= logits.shape[-1]:
            return logits
        idx = logits.topk(self.k, dim=-1).indices
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
        return logits.masked_fill(~keep, -math.inf)

    def __repr__(self) -> str:
        return f"TopK({self.k})"


class TopP(Strategy):
    r"""Nucleus sampling: keeps the smallest set of most probable values whose mass is at
    least :math:`p` and renormalises,

    .. math:: q(j) \propto p(j) \, [j \in V_p], \qquad
        V_p = \arg\min_{V : \sum_{j \in V} p(j) \geq p} |V| .

    A value is kept when the mass of the values strictly more probable than it (in sorted
    order) is below :math:`p`, so the most probable value is always kept.

    Arguments:
        p: The nucleus mass, :math:`0 < p \leq 1` (:math:`p = 1` keeps everything).

    References:
        | The Curious Case of Neural Text Degeneration (Holtzman et al., 2019)
        | https://arxiv.org/abs/1904.09751

    Example:
        >>> TopP(0.5)(torch.tensor([0.6, 0.3, 0.1]).log())
        tensor([-0.5108,    -inf,    -inf])
    """

    def __init__(self, p: float) -> None:
        if not 0 < p <= 1:
            raise ValueError(f"expected 0 < p <= 1, got {p}")
        self.p = float(p)

    def __call__(self, logits: Tensor) -> Tensor:
        if self.p >= 1:
            return logits
        sorted_logits, idx = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # The mass strictly before each sorted value: keep while it is below p.
        before = probs.cumsum(dim=-1) - probs
        keep_sorted = before < self.p
        keep = torch.zeros_like(keep_sorted).scatter_(-1, idx, keep_sorted)
        return logits.masked_fill(~keep, -math.inf)

    def __repr__(self) -> str:
        return f"TopP({self.p})"


def strategies(
    temperature: float | None = None, top_k: int | None = None, top_p: float | None = None
) -> list[Strategy]:
    r"""The strategies for the given arguments, in the usual order: temperature, top-k,
    top-p (each left out when ``None``).

    Example:
        >>> strategies(temperature=0.8, top_p=0.9)
        [Temperature(0.8), TopP(0.9)]
    """
    out: list[Strategy] = []
    if temperature is not None:
        out.append(Temperature(temperature))
    if top_k is not None:
        out.append(TopK(top_k))
    if top_p is not None:
        out.append(TopP(top_p))
    return out


def _as_list(strategy: Strategy | Sequence[Strategy] | None) -> list[Strategy]:
    if strategy is None:
        return []
    if isinstance(strategy, Strategy):
        return [strategy]
    strategies = list(strategy)
    for s in strategies:
        if not isinstance(s, Strategy):
            raise TypeError(f"expected Strategy objects, got {type(s).__name__}")
    return strategies


def apply(strategy: Strategy | Sequence[Strategy] | None, logits: Tensor) -> Tensor:
    r"""Applies a strategy, a sequence of strategies (in order) or none to logits of shape
    :math:`(*, K)`."""
    for s in _as_list(strategy):
        logits = s(logits)
    return logits


def temperature_of(strategy: Strategy | Sequence[Strategy] | None, family: str) -> float:
    r"""The product of the temperatures of ``strategy``, for a continuous family that can
    only be tempered; raises :class:`ValueError` naming ``family`` for any other strategy."""
    t = 1.0
    for s in _as_list(strategy):
        if not isinstance(s, Temperature):
            raise ValueError(
                f"{s!r} needs a discrete family; the {family} family supports Temperature only"
            )
        t *= s.t
    return t
