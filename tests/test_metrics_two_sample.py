r"""Sample-based metrics against brute force and closed forms, with calibrated null checks.

Null checks: a p-value from a fixed seed is compared with a level of 0.01, so a correct
test fails by chance with probability 0.01 per seed (never, with the fixed seeds here). The
false-positive-rate checks count rejections at 5% over R independent null runs and accept
within 3.3 binomial standard deviations (a false failure rate of about 1e-3).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import probgen.metrics as M
from probgen.data import toy


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return M.sliced_wasserstein(x, y, projections=32)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mmd2_and_energy_distance_match_brute_force():
    g = _gen(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g) + 0.5
    k = M.RBF(1.3)

    def kk(a, b):
        return math.exp(-float((a - b).square().sum()) / (2 * 1.3**2))

    xx = sum(kk(x[i], x[j]) for i, j in itertools.permutations(range(7), 2)) / 42
    yy = sum(kk(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    xy = sum(kk(a, b) for a in x for b in y) / 35
    assert abs(float(M.mmd2(x, y, k)) - (xx + yy - 2 * xy)) < 1e-10
    d = lambda a, b: float((a - b).norm())  # noqa: E731
    e = (
        2 * sum(d(a, b) for a in x for b in y) / 35
        - sum(d(x[i], x[j]) for i, j in itertools.permutations(range(7), 2)) / 42
        - sum(d(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    )
    assert abs(float(M.energy_distance(x, y)) - e) < 1e-8
    # Mixtures of RBFs average their members; polynomial kernels are (x.y/D + 1)^3.
    mix = M.MixtureRBF((0.5, 2.0))(x, y)
    assert torch.allclose(mix, (M.RBF(0.5)(x, y) + M.RBF(2.0)(x, y)) / 2)
    assert torch.allclose(M.Polynomial()(x, y), (x @ y.T / 3 + 1) ** 3)


def test_sliced_wasserstein_closed_forms():
    g = _gen(1)
    x = torch.randn(500, 1, generator=g)
    # In 1-D with y = x + delta, every quantile moves by delta: W_p = delta exactly.
    assert abs(float(M.sliced_wasserstein(x, x + 0.7)) - 0.7) < 1e-10
    assert float(M.sliced_wasserstein(x, x)) == 0.0
    # In D dimensions a shift delta e_1 projects to delta theta_1, E theta_1^2 = 1 / D: SW_2
    # = delta (mean theta_1^2)^(1/2) over the fixed projections, checked exactly.
    x = torch.randn(400, 3, generator=g)
    shift = torch.tensor([0.9, 0.0, 0.0])
    gen = _gen(5)
    theta = torch.randn(3, 256, generator=gen)
    theta = theta / theta.norm(dim=0)
    expected = 0.9 * theta[0].square().mean().sqrt()
    assert abs(float(M.sliced_wasserstein(x, x + shift, 256, generator=_gen(5))) - expected) < 1e-8
    # Unequal sizes go through quantiles.
    assert float(M.sliced_wasserstein(x, x[:300] + shift)) > 0.3


@pytest.mark.parametrize(
    "statistic",
    [
        lambda x, y, g: M.mmd_test(x, y, permutations=199, generator=g),
        lambda x, y, g: M.mmd_test(x, y, M.MixtureRBF(), permutations=199, generator=g),
        lambda x, y, g: M.mmd_test(x, y, M.DistanceKernel(), permutations=199, generator=g),
        lambda x, y, g: M.permutation_test(x, y, _sw, 99, generator=g),
    ],
    ids=["mmd-median", "mmd-mixture", "energy", "sliced-wasserstein"],
)
def test_statistics_are_null_for_one_distribution_and_detect_a_small_shift(statistic):
    # Two samples of N(0, I) in 2-D, then a shift of 0.6 standard deviations: at n = 300
    # each, every test here has power well above 0.99 at the 1% level.
    g = _gen(2)
    x, y, z = (torch.randn(300, 2, generator=g) for _ in range(3))
    same = statistic(x, y, g)
    # Within the null's spread: below its 99th percentile, so p > 0.01.
    assert same.p_value > 0.01 and same.statistic <= torch.quantile(same.null, 0.99)
    shifted = statistic(x, z + torch.tensor([0.6, 0.0]), g)
    assert shifted.p_value <= 0.01, f"missed a shift of 0.6: p = {shifted.p_value}"


def _false_positive_rate(test, runs: int, n: int) -> tuple[int, list[float]]:
    g = _gen(3)
    ps = []
    for _ in range(runs):
        z = torch.randn(2 * n, 2, generator=g)
        ps.append(test(z[:n], z[n:], g).p_value)
    return sum(p <= 0.05 for p in ps), ps


def _check_binomial(rejections: int, runs: int, level: float = 0.05) -> None:
    mean, sd = runs * level, math.sqrt(runs * level * (1 - level))
    assert abs(rejections - mean) <= 3.3 * sd, (
        f"{rejections} rejections in {runs}, expected {mean}"
    )


def test_mmd_permutation_p_values_are_uniform_under_the_null():
    # With B = 99 permutations, P(p <= 0.05) = 5 / 100 exactly under exchangeability.
    runs = 300
    rejections, ps = _false_positive_rate(
        lambda x, y, g: M.mmd_test(x, y, permutations=99, generator=g), runs, 30
    )
    _check_binomial(rejections, runs)
    # And the whole distribution: deciles hold 10% each, within 3.3 sd.
    counts = torch.histc(torch.tensor(ps), bins=10, min=0, max=1)
    sd = math.sqrt(runs * 0.1 * 0.9)
    assert (counts - runs * 0.1).abs().max() <= 3.3 * sd + 1, counts


@pytest.mark.slow
@pytest.mark.parametrize(
    "test",
    [
        lambda x, y, g: M.mmd_test(x, y, M.DistanceKernel(), permutations=99, generator=g),
        lambda x, y, g: M.permutation_test(x, y, _sw, 99, generator=g),
        lambda x, y, g: M.classifier_test(x, y, steps=100, generator=g),
    ],
    ids=["energy", "sliced-wasserstein", "c2st"],
)
def test_false_positive_rates_at_5_percent(test):
    runs = 200
    rejections, _ = _false_positive_rate(test, runs, 40)
    _check_binomial(rejections, runs)


def test_classifier_test_detects_and_accepts():
    g = _gen(4)
    x, y = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
    same = M.classifier_test(x, y, steps=100, generator=g)
    assert same.p_value > 0.01 and abs(same.statistic - 0.5) < 0.12
    far = M.classifier_test(x, y + torch.tensor([1.5, 0.0]), steps=100, generator=g)
    assert far.p_value < 1e-6 and far.statistic > 0.7


def test_precision_recall_and_coverage():
    d = toy("8gaussians")
    torch.manual_seed(0)
    real = d.sample((1000,))
    pr = M.precision_recall(real, real)
    assert pr.precision == 1.0 and pr.recall == 1.0
    dc = M.density_coverage(real, real)
    assert dc.coverage == 1.0
    # Dropping 4 of the 8 modes keeps precision and halves recall and coverage.
    fake = d.sample((2000,))
    half = fake[torch.atan2(fake[:, 1], fake[:, 0]) > 0][:1000]
    pr = M.precision_recall(real, half)
    assert pr.precision > 0.9 and pr.recall < 0.65
    dc = M.density_coverage(real, half)
    assert dc.coverage < 0.65 and dc.density > 0.7
    # Noise between the modes loses precision.
    noise = 5 * torch.rand(1000, 2) - 2.5
    assert M.precision_recall(real, noise).precision < 0.3
    with pytest.raises(ValueError, match="differ in size"):
        M.precision_recall(real, torch.randn(10, 3))


def test_fid_closed_form_for_gaussians():
    g = _gen(6)
    n = 50_000
    a = torch.randn(n, 2, generator=g) * torch.tensor([1.0, 2.0])
    b = torch.randn(n, 2, generator=g) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, 0.0])
    # Commuting (diagonal) covariances: FID = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2
    # = 1 + 1 + 2.25; the sampling error of each term is ~0.02 at n = 50,000.
    assert abs(M.fid(a, b) - 4.25) < 0.1
    assert M.fid(a, a) < 1e-6


def test_kid_and_classifier_score():
    g = _gen(7)
    a, b = torch.randn(400, 4, generator=g), torch.randn(400, 4, generator=g)
    mean, std = M.kid(a, b, subsets=5, subset_size=200, generator=g)
    assert abs(mean) < 3 * std + 0.05
    far, _ = M.kid(a, b + 1, subsets=5, subset_size=200, generator=g)
    assert far > 10 * max(std, 1e-3)
    # IS: one confident class per sample, balanced over K classes -> K; all alike -> 1.
    logits = 50 * torch.eye(10).repeat(5, 1)
    assert abs(M.classifier_score(logits, lambda x: x) - 10) < 1e-6
    assert abs(M.classifier_score(torch.zeros(20, 10), lambda x: x) - 1) < 1e-12


def test_digits_features_fid_and_inception_score():
    from probgen.data import digits

    net = M.features.digits_classifier()
    x, y = digits("test", scale=True)
    assert float((net(x).argmax(-1) == y).double().mean()) > 0.95
    train, _ = digits("train", scale=True)
    assert net.features(x).shape == (len(x), 64)
    real = M.fid(train, x, net.features)
    noise = M.fid(train, torch.rand(300, 1, 8, 8), net.features)
    assert real < noise / 10
    assert M.classifier_score(x, net) > 8.0  # ten recognisable, balanced classes


@pytest.mark.slow
def test_digits_classifier_trains_deterministically():
    from probgen.data import digits

    a = M.features.train_digits_classifier()
    b = M.features.train_digits_classifier()
    x, y = digits("test", scale=True)
    assert torch.equal(a(x), b(x))
    assert float((a(x).argmax(-1) == y).double().mean()) > 0.95


def test_mode_coverage_on_8gaussians():
    d = toy("8gaussians")
    means, std = M.eight_gaussians_modes()
    torch.manual_seed(0)
    x = d.sample((2500,))
    mc = M.mode_coverage(x, means, std)
    # Within 3 sd of a 2-D isotropic Gaussian's mean: P(chi2_2 <= 9) = 1 - e^{-4.5} = 0.989;
    # binomial sd at n = 2,500 is 0.002.
    assert mc.modes == 8 and abs(mc.high_quality - (1 - math.exp(-4.5))) < 0.01
    assert mc.kl < 0.01
    collapsed = means[3] + std * torch.randn(2500, 2)
    mc = M.mode_coverage(collapsed, means, std)
    assert mc.modes == 1 and abs(mc.kl - math.log(8)) < 1e-9
