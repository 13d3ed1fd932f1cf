r"""Two-sample statistics and tests: is :math:`x \sim p` from the same distribution as
:math:`y \sim q`?

These are how a model without a density (``log_prob_kind == "none"``) is evaluated, and
how any model's samples are compared with held-out data:

- :func:`mmd2`: the unbiased squared maximum mean discrepancy for a kernel
  (:class:`RBF` with the median heuristic, :class:`MixtureRBF`, :class:`Polynomial`,
  :class:`DistanceKernel`);
- :func:`energy_distance`: the MMD of the distance kernel;
- :func:`sliced_wasserstein`: the Wasserstein distance averaged over random 1-D
  projections;
- :func:`mmd_test` and :func:`permutation_test`: exact permutation p-values;
  :func:`classifier_test`: the classifier two-sample test.

Every function takes samples with shape :math:`(N, *E)` and flattens the event dimensions.
"""

from __future__ import annotations

__all__ = [
    "Kernel",
    "RBF",
    "MixtureRBF",
    "Polynomial",
    "DistanceKernel",
    "median_distance",
    "mmd2",
    "energy_distance",
    "sliced_wasserstein",
    "TestResult",
    "mmd_test",
    "permutation_test",
    "classifier_test",
]

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn as nn
from torch import Tensor

from ..nn import MLP


def _flat(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError(f"expected {name} with shape (N, *E), got {type(x).__name__}")
    if x.shape[0] < 2:
        raise ValueError(f"expected at least 2 samples in {name}, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = _flat(x, "x"), _flat(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same event size, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)} once flattened"
        )
    return x, y.to(x.dtype)


def _sqdist(x: Tensor, y: Tensor) -> Tensor:
    # |x|^2 + |y|^2 - 2 x.y, clamped: rounding can make it slightly negative.
    d = x.square().sum(-1)[:, None] + y.square().sum(-1)[None, :] - 2 * x @ y.T
    return d.clamp_min(0)


def median_distance(z: Tensor) -> Tensor:
    r"""The median of the pairwise Euclidean distances of ``z`` with shape :math:`(N, D)`
    (distinct pairs only; at most 1,000 points, the first ones, for speed)."""
    z = z[:1000].detach()
    d = _sqdist(z, z)
    i, j = torch.triu_indices(len(z), len(z), 1, device=z.device)
    return d[i, j].median().sqrt().clamp_min(1e-12)


class Kernel(Protocol):
    r"""A positive-definite kernel: ``kernel(x, y)`` is the Gram matrix :math:`k(x_i, y_j)`
    with shape :math:`(N, M)` for :math:`x` with shape :math:`(N, D)`, :math:`y` with
    shape :math:`(M, D)`. ``kernel.fit(z)`` returns the kernel with any data-dependent
    hyper-parameter (a bandwidth) set from the pooled sample :math:`z`; fitting on the
    pooled sample keeps a permutation test exact."""

    def __call__(self, x: Tensor, y: Tensor) -> Tensor: ...

    def fit(self, z: Tensor) -> Kernel: ...


@dataclass(frozen=True)
class RBF:
    r"""The Gaussian (RBF) kernel :math:`k(x, y) = \exp(-\|x - y\|^2 / (2 \sigma^2))`.

    Arguments:
        bandwidth: :math:`\sigma`; ``None`` takes the median pairwise distance of the
            pooled sample (the median heuristic) when fitted.

    Example:
        >>> RBF(1.0)(torch.zeros(1, 2), torch.ones(1, 2))
        tensor([[0.3679]])
    """

    bandwidth: float | Tensor | None = None

    def fit(self, z: Tensor) -> RBF:
        return self if self.bandwidth is not None else RBF(median_distance(z))

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.bandwidth is None:
            return self.fit(torch.cat([x, y]))(x, y)
        return torch.exp(-_sqdist(x, y) / (2 * self.bandwidth**2))


@dataclass(frozen=True)
class MixtureRBF:
    r"""A mixture of RBF kernels, :math:`k = \frac1K \sum_k \exp(-\|x-y\|^2 / (2\sigma_k^2))`,
    characteristic and sensitive at several scales at once.

    Arguments:
        bandwidths: The :math:`\sigma_k`; ``None`` takes the median pairwise distance
            :math:`m` of the pooled sample times each of ``scales`` when fitted.
        scales: The multiples of :math:`m` (with ``bandwidths=None``).

    Example:
        >>> MixtureRBF((1.0, 2.0))(torch.zeros(1, 2), torch.zeros(1, 2))
        tensor([[1.]])
    """

    bandwidths: Sequence[float] | Tensor | None = None
    scales: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0)

    def fit(self, z: Tensor) -> MixtureRBF:
        if self.bandwidths is not None:
            return self
        return MixtureRBF(median_distance(z) * z.new_tensor(self.scales), self.scales)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.bandwidths is None:
            return self.fit(torch.cat([x, y]))(x, y)
        s = torch.as_tensor(self.bandwidths, dtype=x.dtype, device=x.device)
        d = _sqdist(x, y)
        return torch.exp(-d[..., None] / (2 * s**2)).mean(-1)


@dataclass(frozen=True)
class Polynomial:
    r"""The polynomial kernel :math:`k(x, y) = (x^T y / D + 1)^3` of the kernel inception
    distance (KID).

    Arguments:
        degree: The degree (3 for KID).
    """

    degree: int = 3

    def fit(self, z: Tensor) -> Polynomial:
        return self

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return (x @ y.T / x.shape[-1] + 1) ** self.degree


@dataclass(frozen=True)
class DistanceKernel:
    r"""The (conditionally positive-definite) distance kernel :math:`k(x, y) = -\|x - y\|`,
    whose MMD is the energy distance."""

    def fit(self, z: Tensor) -> DistanceKernel:
        return self

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        # sqrt has an infinite derivative at 0 (the diagonal): guard it.
        return -(_sqdist(x, y) + 1e-30).sqrt()


def _mmd2_from_gram(k: Tensor, a: Tensor) -> Tensor:
    # The unbiased MMD^2 for pooled Gram matrix k (T, T) and memberships a (B, T) in {0, 1}
    # (1: the point is in x), for B labellings at once.
    n = a.sum(-1)
    b = 1 - a
    m = b.sum(-1)
    diag = k.diagonal()
    ka, kb = a @ k, b @ k
    xx = ((ka * a).sum(-1) - a @ diag) / (n * (n - 1))
    yy = ((kb * b).sum(-1) - b @ diag) / (m * (m - 1))
    xy = (ka * b).sum(-1) / (n * m)
    return xx + yy - 2 * xy


def mmd2(x: Tensor, y: Tensor, kernel: Kernel | None = None) -> Tensor:
    r"""The unbiased estimate of the squared maximum mean discrepancy.

    .. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)} \sum_{i \neq j} k(x_i, x_j)
        + \frac{1}{m(m-1)} \sum_{i \neq j} k(y_i, y_j)
        - \frac{2}{nm} \sum_{i, j} k(x_i, y_j)

    Its expectation is :math:`\mathrm{MMD}^2(p, q) \geq 0`, zero iff :math:`p = q` for a
    characteristic kernel; the estimate itself can be negative. Differentiable in
    :math:`x` and :math:`y` (the GMMN loss); a median-heuristic bandwidth is detached.

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.
        kernel: The kernel (default :class:`RBF` with the median heuristic).

    Returns:
        The scalar estimate.

    References:
        | A Kernel Two-Sample Test (Gretton et al., 2012), Lemma 6
        | https://jmlr.org/papers/v13/gretton12a.html

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
        >>> abs(float(mmd2(x, y))) < 0.01
        True
    """
    x, y = _pair(x, y)
    kernel = (RBF() if kernel is None else kernel).fit(torch.cat([x, y]))
    z = torch.cat([x, y])
    a = torch.cat([x.new_ones(len(x)), x.new_zeros(len(y))])[None]
    return _mmd2_from_gram(kernel(z, z), a)[0]


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    r"""The energy distance, unbiased:

    .. math:: \mathcal{E}(p, q) = 2 \mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\|
        - \mathbb{E}\|Y - Y'\|

    with the within-sample means over distinct pairs. It is :func:`mmd2` with the kernel
    :math:`k(x, y) = -\|x - y\|`, zero iff :math:`p = q` (with finite first moments).

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.

    Returns:
        The scalar estimate.

    References:
        | Energy statistics: A class of statistics based on distances (Székely and Rizzo,
          2013) https://doi.org/10.1016/j.jspi.2013.03.018
    """
    return mmd2(x, y, DistanceKernel())


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    projections: int = 128,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The sliced Wasserstein distance between two samples,

    .. math:: SW_p(p, q) = \Big( \mathbb{E}_{\theta \sim U(S^{D-1})}
        W_p^p(\theta_\# p, \theta_\# q) \Big)^{1/p}

    estimated with ``projections`` random directions; each 1-D :math:`W_p` compares
    sorted projections (quantiles at :math:`(i + 1/2)/K`, :math:`K = \max(n, m)`, when the
    sizes differ).

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.
        projections: The number of random directions.
        p: The order :math:`p \geq 1`.
        generator: The random number generator of the directions (default: one seeded
            with 0, so that the statistic is a fixed function of the samples).

    Returns:
        The scalar distance.

    References:
        | Sliced and Radon Wasserstein Barycenters of Measures (Bonneel et al., 2015)
        | https://doi.org/10.1007/s10851-014-0506-3
    """
    x, y = _pair(x, y)
    if p < 1:
        raise ValueError(f"expected p >= 1, got {p}")
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    theta = torch.randn(x.shape[1], projections, generator=generator, dtype=x.dtype)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    if len(px) != len(py):
        k = max(len(px), len(py))
        q = (torch.arange(k, dtype=x.dtype, device=x.device) + 0.5) / k
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)
    return (px - py).abs().pow(p).mean().pow(1 / p)


@dataclass(frozen=True)
class TestResult:
    r"""The outcome of a two-sample test.

    Attributes:
        statistic: The observed statistic.
        p_value: The p-value: the probability, under :math:`p = q`, of a statistic at
            least as large. Permutation p-values are :math:`(1 + \#\{s_b \geq s\}) / (1 +
            B)`, valid (never below the level's chance) for any number :math:`B` of
            permutations.
        null: The statistics of the permuted samples (``None`` for a test with an
            analytic null).
    """

    statistic: float
    p_value: float
    null: Tensor | None = None


def _perms(t: int, n: int, permutations: int, generator: torch.Generator | None) -> Tensor:
    if permutations < 1:
        raise ValueError(f"expected permutations >= 1, got {permutations}")
    idx = torch.stack([torch.randperm(t, generator=generator) for _ in range(permutations)])
    return idx[:, :n]


def mmd_test(
    x: Tensor,
    y: Tensor,
    kernel: Kernel | None = None,
    permutations: int = 500,
    generator: torch.Generator | None = None,
) -> TestResult:
    r"""The kernel two-sample test: :func:`mmd2` with a permutation p-value.

    The pooled Gram matrix is computed once (its kernel fitted on the pooled sample, so
    a median-heuristic bandwidth is the same for every permutation) and every permutation
    relabels it, which keeps the test exact.

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.
        kernel: The kernel (default :class:`RBF` with the median heuristic);
            :class:`DistanceKernel` gives the energy-distance test.
        permutations: The number :math:`B` of permutations.
        generator: The random number generator of the permutations.

    Returns:
        The :class:`TestResult`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 1
        >>> mmd_test(x, y, permutations=99, generator=g).p_value
        0.01
    """
    x, y = _pair(x, y)
    with torch.no_grad():
        z = torch.cat([x, y])
        k = (RBF() if kernel is None else kernel).fit(z)(z, z)
        a = torch.cat([x.new_ones(len(x)), x.new_zeros(len(y))])[None]
        observed = _mmd2_from_gram(k, a)[0]
        idx = _perms(len(z), len(x), permutations, generator)
        perm = x.new_zeros(permutations, len(z)).scatter_(1, idx.to(z.device), 1.0)
        null = torch.cat([_mmd2_from_gram(k, chunk) for chunk in perm.split(64)])
    p = (1 + int((null >= observed).sum())) / (1 + permutations)
    return TestResult(float(observed), p, null)


def permutation_test(
    x: Tensor,
    y: Tensor,
    statistic: Callable[[Tensor, Tensor], Tensor],
    permutations: int = 200,
    generator: torch.Generator | None = None,
) -> TestResult:
    r"""A permutation test of :math:`p = q` for any statistic that grows with the
    difference (e.g. :func:`sliced_wasserstein`, :func:`energy_distance`).

    Under :math:`p = q` the pooled sample is exchangeable, so the statistic of a random
    relabelling has the statistic's null distribution.

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.
        statistic: A function ``(x, y) -> scalar`` (deterministic: fix its random numbers).
        permutations: The number :math:`B` of permutations.
        generator: The random number generator of the permutations.

    Returns:
        The :class:`TestResult`.
    """
    _pair(x, y)
    with torch.no_grad():
        observed = float(statistic(x, y))
        z = torch.cat([x, y.to(x.dtype)])
        null = []
        for _ in range(permutations):
            perm = torch.randperm(len(z), generator=generator).to(z.device)
            null.append(float(statistic(z[perm[: len(x)]], z[perm[len(x) :]])))
    null_ = torch.tensor(null, dtype=torch.float64)
    p = (1 + int((null_ >= observed).sum())) / (1 + permutations)
    return TestResult(observed, p, null_)


def classifier_test(
    x: Tensor,
    y: Tensor,
    hidden: Sequence[int] = (64, 64),
    steps: int = 300,
    lr: float = 1e-2,
    generator: torch.Generator | None = None,
) -> TestResult:
    r"""The classifier two-sample test (C2ST).

    1. Label :math:`x` as 1 and :math:`y` as 0 and split the pooled sample in halves at
       random.
    2. Train a classifier (an MLP, full-batch Adam, inputs standardised) on one half.
    3. Its accuracy :math:`\hat a` on the other half, :math:`n_{te}` points, is the
       statistic. Under :math:`p = q` no classifier beats chance, and
       :math:`n_{te} \hat a \sim \mathrm{Binomial}(n_{te}, 1/2)` exactly when the classes
       are balanced in the test half (approximately otherwise): the p-value is its upper
       tail.

    The accuracy is also interpretable: 0.5 means indistinguishable, 1 means disjoint.

    Arguments:
        x: Samples of :math:`p` with shape :math:`(n, *E)`.
        y: Samples of :math:`q` with shape :math:`(m, *E)`.
        hidden: The classifier's hidden widths.
        steps: The number of full-batch training steps.
        lr: The learning rate.
        generator: The random number generator of the split and the initialisation.

    Returns:
        The :class:`TestResult` (``statistic`` the test accuracy).

    References:
        | Revisiting Classifier Two-Sample Tests (Lopez-Paz and Oquab, 2017)
        | https://arxiv.org/abs/1610.06545
    """
    x, y = _pair(x, y)
    z = torch.cat([x, y]).detach()
    labels = torch.cat([x.new_ones(len(x)), x.new_zeros(len(y))])
    perm = torch.randperm(len(z), generator=generator).to(z.device)
    half = len(z) // 2
    train, test = perm[:half], perm[half:]
    mean, std = z[train].mean(0), z[train].std(0).clamp_min(1e-8)
    z = (z - mean) / std
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(z.shape[1], 1, hidden).to(z)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(net(z[train]).squeeze(-1), labels[train]).backward()
            opt.step()
    with torch.no_grad():
        correct = int(((net(z[test]).squeeze(-1) > 0).to(z.dtype) == labels[test]).sum())
    n = len(test)
    # Upper tail of Binomial(n, 1/2) at `correct`, in log space for large n.
    ks = torch.arange(correct, n + 1, dtype=torch.float64)
    log_pmf = (
        torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64))
        - torch.lgamma(ks + 1)
        - torch.lgamma(n - ks + 1)
        - n * math.log(2)
    )
    p = float(log_pmf.logsumexp(0).exp().clamp(max=1.0))
    return TestResult(correct / n, p, None)
