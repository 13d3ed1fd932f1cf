r"""Diagnostics: effective sample sizes of chains and of importance weights, split R-hat.

Samples from :func:`probgen.samplers.run_chain` have shape :math:`(T, C, *E)`: steps
first, then chains. Pyro's estimators (Geyer's initial monotone sequence over the
autocorrelation of every chain, Stan's split R-hat) do the work.
"""

from __future__ import annotations

__all__ = ["effective_sample_size", "split_r_hat", "importance_ess"]

from pyro.ops import stats
from torch import Tensor


def _check(samples: Tensor) -> None:
    if samples.dim() < 2 or samples.shape[0] < 4:
        raise ValueError(
            "expected samples with shape (T, C, *E), T >= 4 steps and C chains, "
            f"got shape {tuple(samples.shape)}"
        )


def effective_sample_size(samples: Tensor) -> Tensor:
    r"""The effective sample size of every coordinate, pooled over chains.

    .. math:: \hat N_{\text{eff}} = \frac{C T}{1 + 2 \sum_{k \geq 1} \hat\rho_k}

    with the autocorrelations :math:`\hat\rho_k` truncated by Geyer's initial monotone
    sequence estimator.

    Arguments:
        samples: Draws with shape :math:`(T, C, *E)`.

    Returns:
        The effective sample sizes, with shape :math:`E`.

    References:
        | Practical Markov Chain Monte Carlo (Geyer, 1992)
        | Stan Reference Manual, section "Effective sample size"

    Example:
        >>> import torch
        >>> x = torch.randn(100, 4, 2)  # independent draws
        >>> ess = effective_sample_size(x)
        >>> ess.shape, bool((ess > 200).all())
        (torch.Size([2]), True)
    """
    _check(samples)
    return stats.effective_sample_size(samples, chain_dim=1, sample_dim=0)


def split_r_hat(samples: Tensor) -> Tensor:
    r"""The split :math:`\hat R` of every coordinate (near 1 when chains agree).

    Arguments:
        samples: Draws with shape :math:`(T, C, *E)`.

    Returns:
        :math:`\hat R`, with shape :math:`E`.

    References:
        | Bayesian Data Analysis, 3rd edition (Gelman et al., 2013), section 11.4
    """
    _check(samples)
    return stats.split_gelman_rubin(samples, chain_dim=1, sample_dim=0)


def importance_ess(log_weights: Tensor, dim: int = 0) -> Tensor:
    r"""Kish's effective sample size of importance weights.

    .. math:: \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}
        = \exp(2 \,\mathrm{LSE}(\log w) - \mathrm{LSE}(2 \log w)) \in [1, N]

    Arguments:
        log_weights: Log-weights :math:`\log w_i`, unnormalised, along ``dim``.
        dim: The dimension of the samples.

    Returns:
        The effective sample size, with ``dim`` reduced.

    Example:
        >>> import torch
        >>> round(float(importance_ess(torch.zeros(100))), 3)
        100.0
    """
    return (2 * log_weights.logsumexp(dim) - (2 * log_weights).logsumexp(dim)).exp()
