r"""Training objectives, as free functions.

An objective maps a model, a batch :math:`x` and an optional context :math:`c` to a scalar
loss to minimise:

.. code-block:: python

    loss = objective(model, x, c)

where ``model`` is an :class:`torch.nn.Module` whose call ``model(c)`` returns a
distribution. Models never own optimisers or losses: a model's ``default_objective`` is
one line that calls a function of this module, and :func:`probgen.fit` takes any.

Under :func:`probgen.fit` in a distributed run the model an objective receives is a
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper. Calling it (``model(c)``)
goes through the wrapper, as it must for gradients to be averaged across processes; any
other attribute (a submodule, a method such as ``encode``) is reached through
:func:`unwrap`.
"""

from __future__ import annotations

__all__ = ["nll", "reverse_kl", "unwrap"]

from collections.abc import Callable

import torch.nn as nn
from torch import Size, Tensor


def unwrap(model: nn.Module) -> nn.Module:
    r"""The module inside a data-parallel wrapper, or ``model`` itself.

    Arguments:
        model: A module, possibly wrapped by
            :class:`~torch.nn.parallel.DistributedDataParallel` or
            :class:`~torch.nn.DataParallel`.

    Returns:
        The wrapped module, whose attributes and methods are the model's own.

    Example:
        >>> import probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> unwrap(flow) is flow
        True
    """
    # Both wrappers keep the user's module as `.module`; duck typing avoids importing
    # torch.distributed where it is not built.
    while type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(
        model, "module"
    ):
        model = model.module
    return model


def nll(model: nn.Module, x: Tensor, c: Tensor | None = None) -> Tensor:
    r"""The mean negative log-likelihood of a batch.

    .. math:: \ell = -\frac{1}{N} \sum_{i=1}^N \log p_\phi(x_i | c_i)

    Minimising it is maximum likelihood, i.e. minimising :math:`\mathrm{KL}(p_{data} \|
    p_\phi)` up to the data's entropy. It is as exact as ``log_prob`` is: a bound or an
    estimate for families whose ``log_prob_kind`` says so.

    Arguments:
        model: A module whose call ``model(c)`` returns a distribution :math:`p_\phi(X | c)`.
        x: A batch :math:`x` with shape :math:`(*, *E)`, E the event shape.
        c: A context :math:`c` with shape :math:`(*, C)`, or ``None`` for an unconditional
            model.

    Returns:
        The scalar loss :math:`\ell`.

    Example:
        >>> import torch, probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> nll(flow, torch.randn(16, 2)).shape
        torch.Size([])
    """
    d = model() if c is None else model(c)
    return -d.log_prob(x).mean()


def reverse_kl(
    model: nn.Module,
    log_target: Callable[[Tensor], Tensor],
    n: int,
    c: Tensor | None = None,
) -> Tensor:
    r"""The reverse Kullback-Leibler divergence to an unnormalised target, up to a constant.

    .. math:: \ell = \frac{1}{N} \sum_{i=1}^N \log q_\phi(x_i) - \log \tilde p(x_i),
        \quad x_i \sim q_\phi

    For :math:`\tilde p = Z p`, :math:`\mathbb{E}[\ell] = \mathrm{KL}(q_\phi \| p) - \log Z`.
    The samples are reparameterised, so the gradient flows through them; the model must
    support ``rsample`` (its fused ``rsample_and_log_prob`` is used when it has one).

    Arguments:
        model: A module whose call ``model(c)`` returns a distribution :math:`q_\phi(X | c)`.
        log_target: The log-density :math:`\log \tilde p(x)` of the target, up to a
            constant, mapping :math:`x` with shape :math:`(N, *B, *E)` to shape
            :math:`(N, *B)`.
        n: The number of samples :math:`N` (per context).
        c: A context :math:`c` with shape :math:`(*B, C)`, or ``None``.

    Returns:
        The scalar loss :math:`\ell`.

    Example:
        >>> import torch, probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=1, hidden=(8,))
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> reverse_kl(flow, log_p, 64).shape
        torch.Size([])
    """
    if n < 1:
        raise ValueError(f"expected a number of samples n >= 1, got {n}")
    d = model() if c is None else model(c)
    if not d.has_rsample:
        raise ValueError(
            f"reverse_kl needs reparameterised samples but {type(d).__name__} has no rsample"
        )
    if hasattr(d, "rsample_and_log_prob"):
        x, log_q = d.rsample_and_log_prob(Size((n,)))
    else:
        x = d.rsample(Size((n,)))
        log_q = d.log_prob(x)
    return (log_q - log_target(x)).mean()
