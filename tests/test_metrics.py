"""Likelihood metrics: NLL and its standard error against direct computation, bits/dim,
perplexity, errors."""

from __future__ import annotations

import math

import pytest
import torch

import probgen as pg
from probgen.data import toy
from probgen.distributions import DiagNormal, GenerativeDistribution
from probgen.metrics import NLL, bits_per_dim, nll, perplexity


def test_nll_matches_direct_computation():
    d = DiagNormal(torch.zeros(2), torch.full((2,), 2.0))
    x = torch.randn(1001, 2)
    ell = -d.log_prob(x)
    for batch_size in (1, 7, 1000, 5000):
        result = nll(d, x, batch_size=batch_size)
        assert isinstance(result, NLL) and result.n == 1001 and result.kind == "exact"
        assert result.value == pytest.approx(ell.mean().item(), rel=1e-12)
        assert result.stderr == pytest.approx(ell.std().item() / math.sqrt(1001), rel=1e-9)


def test_nll_stderr_keeps_small_variances():
    # A naive sum of squares would lose a variance of 1e-12 next to a mean of 1e4.
    class Shifted(GenerativeDistribution):
        def __init__(self):
            super().__init__(torch.Size(), torch.Size((1,)))

        def log_prob(self, x):
            return -1e4 - 1e-6 * x[..., 0]

    x = torch.randn(10_000, 1)
    result = nll(Shifted(), x, batch_size=999)
    assert result.value == pytest.approx(1e4 + 1e-6 * x.mean().item(), rel=1e-14)
    assert result.stderr == pytest.approx(1e-6 * x.std().item() / 100, rel=1e-6)


def test_nll_of_own_samples_is_the_entropy():
    # A z-test at 4.4 standard errors: a false failure rate of 1e-5.
    d = DiagNormal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]))
    result = nll(d, d.sample((20_000,)))
    assert abs(result.value - d.entropy().item()) < 4.4 * result.stderr


def test_nll_of_models():
    flow = pg.flows.MAF(2, transforms=1, hidden=(8,)).double()
    x = torch.randn(50, 2)
    with torch.no_grad():
        expected = -flow().log_prob(x).mean().item()
    assert nll(flow, x, batch_size=16).value == pytest.approx(expected)
    assert flow.training  # the mode is put back

    cflow = pg.flows.MAF(2, context=3, transforms=1, hidden=(8,)).double()
    c = torch.randn(50, 3)
    with torch.no_grad():
        expected = -cflow(c).log_prob(x).mean().item()
    assert nll(cflow, x, context=c, batch_size=16).value == pytest.approx(expected)


def test_nll_errors():
    d = DiagNormal(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="shape"):
        nll(d, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="batch_size"):
        nll(d, torch.zeros(3, 2), batch_size=0)
    with pytest.raises(ValueError, match="context"):
        nll(d, torch.zeros(3, 2), context=torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"log_prob with shape \(3,\)"):
        nll(DiagNormal(torch.zeros(4, 2), torch.ones(4, 2)), torch.zeros(3, 4, 2))

    class Energy(GenerativeDistribution):
        log_prob_kind = "unnormalized"

        def __init__(self):
            super().__init__(torch.Size(), torch.Size((2,)))

        def log_prob(self, x):
            return -x.square().sum(-1)

    with pytest.raises(ValueError, match="'unnormalized'.*MMD"):
        nll(Energy(), torch.zeros(3, 2))


def test_nll_zero_density():
    result = nll(toy("checkerboard"), torch.tensor([[-3.0, -3.0], [-1.0, 1.0]]))
    assert result.value == math.inf and math.isnan(result.stderr)


def test_bits_per_dim_and_perplexity():
    assert bits_per_dim(2 * math.log(2), 2) == pytest.approx(1.0)
    assert torch.allclose(bits_per_dim(torch.tensor([3 * math.log(2)]), 3), torch.ones(1))
    # A uniform distribution over 8 ** D configurations: 3 bits a dimension.
    assert bits_per_dim(10 * math.log(8), 10) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(1.0, 0)
    # A uniform next-token distribution over V tokens has perplexity V.
    assert perplexity(math.log(50)) == pytest.approx(50)
    assert torch.allclose(perplexity(torch.tensor(math.log(7.0))), torch.tensor(7.0))
