r"""Sample-quality metrics of generative models in a feature space.

- :func:`precision_recall`: the fraction of generated samples on the data's k-NN manifold
  (quality) and of data on the model's (diversity);
- :func:`density_coverage`: their outlier-robust versions;
- :func:`fid`: the Fréchet distance between Gaussian fits of the two feature sets;
- :func:`kid`: the unbiased MMD with a cubic polynomial kernel, averaged over subsets;
- :func:`classifier_score`: the Inception Score, :math:`\exp \mathbb{E}_x
  \mathrm{KL}(p(y|x) \| p(y))`, for any classifier.

Each takes an optional ``extractor`` mapping samples :math:`(N, *E)` to features
:math:`(N, F)`; without one the flattened samples are the features. No pretrained network
can be downloaded here: for 8x8 digits, :func:`probgen.metrics.features.digits_classifier`
is probgen's own extractor and classifier, so "FID" here is not comparable with the
Inception-based numbers of papers, only across models scored with the same extractor.
"""

from __future__ import annotations

__all__ = [
    "PrecisionRecall",
    "precision_recall",
    "DensityCoverage",
    "density_coverage",
    "fid",
    "kid",
    "classifier_score",
]

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .two_sample import Polynomial, _mmd2_from_gram

Extractor = Callable[[Tensor], Tensor]


@torch.no_grad()
def _features(x: Tensor, extractor: Extractor | None, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected {name} with shape (N, *E), N >= 2, got {shape}")
    f = x if extractor is None else extractor(x)
    return f.reshape(f.shape[0], -1).to(torch.float64)


def _pair(real: Tensor, fake: Tensor, extractor: Extractor | None) -> tuple[Tensor, Tensor]:
    r, f = _features(real, extractor, "real"), _features(fake, extractor, "fake")
    if r.shape[1] != f.shape[1]:
        raise ValueError(
            f"real and fake features differ in size: {tuple(r.shape)} and {tuple(f.shape)}"
        )
    return r, f


def _radii(x: Tensor, k: int) -> Tensor:
    # The distance of each point to its k-th nearest neighbour among the others.
    if k >= len(x):
        raise ValueError(f"expected k < the number of points {len(x)}, got k={k}")
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def _inside(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    # (P, C): whether points[p] lies in the ball of centres[c].
    return torch.cdist(points, centres) <= radii[None, :]


@dataclass(frozen=True)
class PrecisionRecall:
    r"""Precision (sample quality) and recall (coverage of the data), both in [0, 1]."""

    precision: float
    recall: float


def precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, extractor: Extractor | None = None
) -> PrecisionRecall:
    r"""Improved precision and recall of a generative model (k-NN manifolds).

    Each set's manifold is the union of balls around its points, each ball reaching the
    point's :math:`k`-th nearest neighbour in the same set. Then

    .. math:: \text{precision} = \frac1M \sum_j 1[\phi(y_j) \in \mathcal{M}_{real}], \qquad
        \text{recall} = \frac1N \sum_i 1[\phi(x_i) \in \mathcal{M}_{fake}] .

    Identical sets give 1 and 1; a model that drops modes keeps its precision and loses
    recall; one that fills the gaps between modes loses precision.

    Arguments:
        real: Data with shape :math:`(N, *E)`.
        fake: Samples with shape :math:`(M, *E)`.
        k: The neighbour defining each ball's radius.
        extractor: The feature map :math:`\phi` (identity when ``None``).

    Returns:
        The :class:`PrecisionRecall`.

    References:
        | Improved Precision and Recall Metric for Assessing Generative Models
          (Kynkäänniemi et al., 2019) https://arxiv.org/abs/1904.06991
    """
    r, f = _pair(real, fake, extractor)
    precision = _inside(f, r, _radii(r, k)).any(1).double().mean()
    recall = _inside(r, f, _radii(f, k)).any(1).double().mean()
    return PrecisionRecall(float(precision), float(recall))


@dataclass(frozen=True)
class DensityCoverage:
    r"""Density (expected number of real balls a sample falls in, over :math:`k`; about 1
    for a matching model, unbounded) and coverage (the fraction of real balls holding a
    sample, in [0, 1])."""

    density: float
    coverage: float


def density_coverage(
    real: Tensor, fake: Tensor, k: int = 5, extractor: Extractor | None = None
) -> DensityCoverage:
    r"""Density and coverage: precision and recall built on the real manifold only, so
    that outliers of the model do not inflate them.

    .. math:: \text{density} = \frac{1}{kM} \sum_j \sum_i 1[\phi(y_j) \in B_i], \qquad
        \text{coverage} = \frac1N \sum_i 1[\exists j: \phi(y_j) \in B_i]

    with :math:`B_i` the ball around real point :math:`i` reaching its :math:`k`-th
    nearest real neighbour.

    Arguments:
        real: Data with shape :math:`(N, *E)`.
        fake: Samples with shape :math:`(M, *E)`.
        k: The neighbour defining each ball's radius.
        extractor: The feature map :math:`\phi` (identity when ``None``).

    Returns:
        The :class:`DensityCoverage`.

    References:
        | Reliable Fidelity and Diversity Metrics for Generative Models (Naeem et al., 2020)
        | https://arxiv.org/abs/2002.09797
    """
    r, f = _pair(real, fake, extractor)
    inside = _inside(f, r, _radii(r, k))
    return DensityCoverage(
        float(inside.double().sum() / (k * len(f))), float(inside.any(0).double().mean())
    )


def _sqrtm_trace(a: Tensor, b: Tensor) -> Tensor:
    # tr((A B)^{1/2}) for symmetric positive semi-definite A, B: the eigenvalues of A B are
    # those of A^{1/2} B A^{1/2}, which is symmetric, so eigh applies (clamped at 0).
    va, qa = torch.linalg.eigh(a)
    root = (qa * va.clamp_min(0).sqrt()) @ qa.T
    return torch.linalg.eigvalsh(root @ b @ root).clamp_min(0).sqrt().sum()


def fid(real: Tensor, fake: Tensor, extractor: Extractor | None = None) -> float:
    r"""The Fréchet distance between Gaussian fits of the real and generated features,

    .. math:: \mathrm{FID} = \|\mu_r - \mu_f\|^2 + \mathrm{tr}\big(\Sigma_r + \Sigma_f
        - 2 (\Sigma_r \Sigma_f)^{1/2}\big),

    the squared 2-Wasserstein distance between :math:`\mathcal{N}(\mu_r, \Sigma_r)` and
    :math:`\mathcal{N}(\mu_f, \Sigma_f)`. Biased upward at small sample sizes: compare
    models at equal sizes (or use :func:`kid`).

    Arguments:
        real: Data with shape :math:`(N, *E)`.
        fake: Samples with shape :math:`(M, *E)`.
        extractor: The feature map :math:`\phi` (identity when ``None``), e.g.
            :func:`probgen.metrics.features.digits_classifier`'s ``features``.

    Returns:
        The distance (float64 arithmetic).

    References:
        | GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium
          (Heusel et al., 2017) https://arxiv.org/abs/1706.08500
    """
    r, f = _pair(real, fake, extractor)
    mr, mf = r.mean(0), f.mean(0)
    cr, cf = torch.cov(r.T).reshape(r.shape[1], -1), torch.cov(f.T).reshape(f.shape[1], -1)
    value = (mr - mf).square().sum() + cr.trace() + cf.trace() - 2 * _sqrtm_trace(cr, cf)
    return float(value.clamp_min(0))


def kid(
    real: Tensor,
    fake: Tensor,
    extractor: Extractor | None = None,
    subsets: int = 10,
    subset_size: int = 500,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    r"""The kernel inception distance: the unbiased :func:`~probgen.metrics.mmd2` of the
    features with the kernel :math:`k(x, y) = (x^T y / F + 1)^3`, averaged over random
    subsets.

    Unlike FID it is unbiased, so small samples compare fairly; its mean over subsets
    comes with the standard deviation across subsets.

    Arguments:
        real: Data with shape :math:`(N, *E)`.
        fake: Samples with shape :math:`(M, *E)`.
        extractor: The feature map :math:`\phi` (identity when ``None``).
        subsets: The number of subsets.
        subset_size: Their size (capped at :math:`\min(N, M)`).
        generator: The random number generator of the subsets.

    Returns:
        The mean and the standard deviation over subsets.

    References:
        | Demystifying MMD GANs (Bińkowski et al., 2018) https://arxiv.org/abs/1801.01401
    """
    r, f = _pair(real, fake, extractor)
    size = min(subset_size, len(r), len(f))
    kernel = Polynomial()
    values = []
    for _ in range(subsets):
        i = torch.randperm(len(r), generator=generator)[:size]
        j = torch.randperm(len(f), generator=generator)[:size]
        z = torch.cat([r[i], f[j]])
        a = torch.cat([z.new_ones(size), z.new_zeros(size)])[None]
        values.append(_mmd2_from_gram(kernel(z, z), a)[0])
    v = torch.stack(values)
    return float(v.mean()), float(v.std()) if subsets > 1 else math.nan


@torch.no_grad()
def classifier_score(x: Tensor, classifier: Callable[[Tensor], Tensor], splits: int = 1) -> float:
    r"""The Inception Score of samples, with any classifier of logits,

    .. math:: \mathrm{IS} = \exp\Big( \mathbb{E}_x \, \mathrm{KL}\big(p(y | x) \,\|\,
        p(y)\big) \Big), \qquad p(y) = \mathbb{E}_x\, p(y | x),

    between 1 (every sample classified alike, or every sample ambiguous) and the number
    of classes (confident and balanced): high when samples are recognisable and diverse.

    Arguments:
        x: Samples with shape :math:`(N, *E)`.
        classifier: A function mapping ``x`` to logits with shape :math:`(N, K)`, e.g.
            :func:`probgen.metrics.features.digits_classifier`.
        splits: Score disjoint splits separately and average (the original protocol uses
            10).

    Returns:
        The score.

    References:
        | Improved Techniques for Training GANs (Salimans et al., 2016)
        | https://arxiv.org/abs/1606.03498
    """
    logits = classifier(x).to(torch.float64)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"expected logits with shape ({x.shape[0]}, K), got {tuple(logits.shape)}"
        )
    scores = []
    for part in logits.chunk(splits):
        log_p = part.log_softmax(-1)
        log_marginal = log_p.logsumexp(0) - math.log(len(part))
        kl = (log_p.exp() * (log_p - log_marginal)).sum(-1).mean()
        scores.append(kl.exp())
    return float(torch.stack(scores).mean())
