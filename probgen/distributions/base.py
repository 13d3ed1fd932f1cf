r"""The distribution base class every family shares.

A :class:`GenerativeDistribution` is a Pyro :class:`~pyro.distributions.TorchDistribution`
that also says what its ``log_prob`` means (:attr:`log_prob_kind`), samples and scores in
one pass where the family allows (:meth:`rsample_and_log_prob`), and validates its inputs
at the public boundary with errors that name the expected and the received shapes.
"""

from __future__ import annotations

__all__ = [
    "LOG_PROB_KINDS",
    "GenerativeDistribution",
    "log_prob_kind",
]

from typing import Any

import pyro.distributions as dist
import torch
from torch import Size, Tensor
from torch.distributions import Distribution

from ..utils import check_event, check_finite

LOG_PROB_KINDS = ("exact", "estimate", "bound", "unnormalized", "none")


def _is_real(support: Any) -> bool:
    # real, real_vector, and real under any number of independent() wrappers.
    while isinstance(support, dist.constraints.independent):
        support = support.base_constraint
    return support is dist.constraints.real


class GenerativeDistribution(dist.TorchDistribution):
    r"""Base class of probgen's distribution values.

    Subclasses call ``super().__init__(batch_shape, event_shape)`` and implement
    ``sample`` or ``rsample`` and ``log_prob``; they call :meth:`check_value` on the values
    they score. ``log_prob_kind`` is one of:

    - ``"exact"``: the normalised log-density (flows, autoregressive models);
    - ``"estimate"``: an unbiased or consistent estimate (Hutchinson trace, importance sampling);
    - ``"bound"``: a lower bound (ELBO);
    - ``"unnormalized"``: the log-density up to an unknown constant (energy models);
    - ``"none"``: no density; ``log_prob`` raises (implicit models).

    When a subclass overrides :meth:`rsample_and_log_prob`, calling the distribution
    (which is what ``pyro.sample`` does) draws and scores in one pass and keeps the pair in
    a one-slot memo, so that the ``log_prob`` of that very tensor costs nothing.
    """

    arg_constraints: dict = {}
    log_prob_kind: str = "exact"

    def __init__(
        self,
        batch_shape: Size = Size(),
        event_shape: Size = Size(),
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(Size(batch_shape), Size(event_shape), validate_args=validate_args)
        self._memo: tuple[Tensor, Tensor] | None = None

    # Validation

    def check_value(self, x: Tensor) -> None:
        r"""Raises :class:`ValueError` if ``x`` is not a valid value of this distribution.

        The event shape is always checked; finiteness and the support are checked when
        validation is on (the default; see :func:`pyro.enable_validation`).
        """
        check_event(x, self.event_shape)
        expected = self.batch_shape + self.event_shape
        try:
            torch.broadcast_shapes(x.shape, expected)
        except RuntimeError:
            raise ValueError(
                f"value of shape {tuple(x.shape)} does not broadcast with batch_shape + "
                f"event_shape {tuple(expected)}"
            ) from None
        if self._validate_args:
            check_finite(x)
            support = self.support
            # Finite values are real: a real support needs no second pass over x.
            if support is not None and not _is_real(support):
                try:
                    ok = support.check(x)
                except (NotImplementedError, RuntimeError):
                    return
                if not bool(ok.all()):
                    raise ValueError(f"value lies outside the support {support}")

    # Sampling

    def rsample_and_log_prob(self, sample_shape: Size = Size()) -> tuple[Tensor, Tensor]:
        r"""Draws a reparameterised sample and its log-density.

        Returns:
            A sample with shape ``sample_shape + batch_shape + event_shape`` and its
            log-density with shape ``sample_shape + batch_shape``.
        """
        x = self.rsample(sample_shape)
        return x, self.log_prob(x)

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        fused = type(self).rsample_and_log_prob is not GenerativeDistribution.rsample_and_log_prob
        if fused and self.has_rsample and not args and not kwargs.get("sample_shape"):
            x, log_p = self.rsample_and_log_prob()
            self._memo = (x, log_p)
            return x
        return super().__call__(*args, **kwargs)

    def _memoized(self, x: Tensor) -> Tensor | None:
        # One slot, checked by identity: a tensor drawn by `__call__` is scored for free.
        if self._memo is not None and self._memo[0] is x:
            return self._memo[1]
        return None

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, log_prob_kind={self.log_prob_kind!r})"
        )


def log_prob_kind(d: Distribution) -> str:
    r"""What ``d.log_prob`` means, looking through Pyro's wrappers.

    Pyro's ``Independent``, ``ExpandedDistribution``, ``MaskedDistribution`` and
    ``TransformedDistribution`` keep the meaning of their base. A plain torch or Pyro
    distribution with a density is ``"exact"``.
    """
    while True:
        kind = getattr(d, "log_prob_kind", None)
        if kind is not None:
            return kind
        base = getattr(d, "base_dist", None)
        if base is None:
            return "exact"
        d = base

