r"""Metrics: likelihoods (NLL with standard errors, bits per dimension, perplexity), and
sample-based ones for models without a density: two-sample statistics and tests (MMD,
energy distance, sliced Wasserstein, classifier test), precision / recall, density /
coverage, FID / KID / Inception-Score-style scores, mode coverage."""

from . import features
from .generative import (
    DensityCoverage,
    PrecisionRecall,
    classifier_score,
    density_coverage,
    fid,
    kid,
    precision_recall,
)
from .likelihood import NLL, bits_per_dim, nll, perplexity
from .modes import ModeCoverage, eight_gaussians_modes, mode_coverage
from .two_sample import (
    RBF,
    DistanceKernel,
    Kernel,
    MixtureRBF,
    Polynomial,
    TestResult,
    classifier_test,
    energy_distance,
    median_distance,
    mmd2,
    mmd_test,
    permutation_test,
    sliced_wasserstein,
)

__all__ = [
    "NLL",
    "nll",
    "bits_per_dim",
    "perplexity",
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
    "PrecisionRecall",
    "precision_recall",
    "DensityCoverage",
    "density_coverage",
    "fid",
    "kid",
    "classifier_score",
    "ModeCoverage",
    "mode_coverage",
    "eight_gaussians_modes",
    "features",
]
