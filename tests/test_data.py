"""Toy 2-D densities: normalisation, samples against log_prob, entropies, quadratures
against scipy, validation."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from scipy import integrate, special

import probgen.data as data
from probgen.data import TOYS, Checkerboard, EightGaussians, Rings, toy
from probgen.testing import check_goodness_of_fit

# Spirals integrate their density over ~3,300 nodes per point: its grid checks are slow.
FAST = [name for name in TOYS if name != "spirals"]
SMOOTH = [name for name in TOYS if name != "checkerboard"]


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n == "spirals" else n for n in names]


def test_registry():
    assert TOYS == ("8gaussians", "checkerboard", "rings", "moons", "pinwheel", "spirals")
    for name in TOYS:
        d = toy(name)
        assert isinstance(d, data.ToyDistribution)
        assert d.log_prob_kind == "exact"
        assert d.event_shape == (2,) and d.batch_shape == ()
    with pytest.raises(ValueError, match="unknown toy density 'nope'.*8gaussians.*spirals"):
        toy("nope")
    assert toy("rings", radii=(1.0,), scale=0.2).radii == (1.0,)
    with pytest.raises(ValueError, match="positive finite scale"):
        toy("moons", scale=-1.0)
    with pytest.raises(TypeError):
        toy("checkerboard", scale=1.0)  # no such parameter: never swallowed


@pytest.mark.parametrize("name", TOYS)
def test_shapes_and_dtypes(name):
    d = toy(name, dtype=torch.float32)
    assert d.sample().shape == (2,)
    assert d.sample(5).shape == (5, 2)
    x = d.sample((3, 4))
    assert x.shape == (3, 4, 2) and x.dtype == torch.float32
    log_p = d.log_prob(x)
    assert log_p.shape == (3, 4) and log_p.dtype == torch.float32
    assert d.log_prob(x[:0]).shape == (0, 4)
    # Pyro: a plate expands the toy.
    with pyro.plate("plate", 3):
        assert pyro.sample("x", d).shape == (3, 2)
    assert d.expand((3,)).log_prob(x[0, :3]).shape == (3,)


@pytest.mark.parametrize("name", _params(SMOOTH))
def test_normalized(name):
    # The trapezoid over [-L, L]^2 (the extent holds all the mass) with spacing a third of
    # the density's smallest length scale: on these smooth densities its error is far below
    # the tolerance. An even number of nodes keeps the rings' singular origin off the grid.
    d = toy(name)
    n = 2 * math.ceil(d.extent / (d.feature / 3))
    t = torch.linspace(-d.extent, d.extent, n)
    p = d.log_prob(torch.cartesian_prod(t, t)).exp().reshape(n, n)
    mass = torch.trapezoid(torch.trapezoid(p, t, dim=0), t, dim=0)
    assert abs(mass.item() - 1) < 1e-3


def test_checkerboard_density():
    d = Checkerboard()
    # The midpoint rule is exact on a density constant on cells aligned with the grid.
    h = 0.1
    t = -4 + h * (torch.arange(80) + 0.5)
    p = d.log_prob(torch.cartesian_prod(t, t)).exp()
    assert abs(p.sum().item() * h * h - 1) < 1e-12
    black = torch.tensor([[-3.0, -3.0], [1.0, 1.0], [-1.0, -1.0], [3.0, -1.0]])
    white = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-3.0, -1.0], [3.0, 3.0 - 2]])
    assert torch.allclose(d.log_prob(black), torch.full((4,), -math.log(32)))
    assert torch.all(d.log_prob(white) == -math.inf)
    # Off the board: an error with validation on, a zero density with it off.
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([4.5, 0.0]))
    assert Checkerboard(validate_args=False).log_prob(torch.tensor([4.5, 0.0])) == -math.inf


def test_checkerboard_samples():
    # Each black cell holds 1/8 of the samples and the white cells none: Pearson's
    # chi-square over the 8 cells, failing by chance with probability 1e-4.
    n = 80_000
    x = Checkerboard().sample((n,))
    ij = torch.floor(x / 2).long() + 2
    assert torch.all((ij >= 0) & (ij <= 3))
    assert torch.all((ij.sum(-1) % 2) == 0)
    counts = torch.bincount(ij[:, 0] * 4 + ij[:, 1], minlength=16)[
        torch.tensor([i * 4 + j for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    ].double()
    chi2 = ((counts - n / 8) ** 2 / (n / 8)).sum().item()
    assert special.chdtrc(7, chi2) > 1e-4


@pytest.mark.parametrize("name", _params(SMOOTH))
def test_goodness_of_fit(name):
    check_goodness_of_fit(toy(name), n=50_000, bins=12)


@pytest.mark.parametrize("name", _params(TOYS))
def test_entropy_matches_samples(name):
    # E[-log p(X)] over samples is the entropy: a z-test at 4.4 standard errors (false
    # failure rate 1e-5).
    d = toy(name)
    h = d.entropy_estimate()
    assert h.error < 1e-3
    assert d.entropy().shape == () and d.entropy().item() == pytest.approx(h.value)
    ell = -d.log_prob(d.sample((20_000,)))
    se = ell.std().item() / math.sqrt(ell.numel())
    assert abs(ell.mean().item() - h.value) < 4.4 * se + 1e-9


def test_entropy_closed_forms():
    assert toy("checkerboard").entropy_estimate().value == math.log(32)
    assert toy("checkerboard").entropy_estimate().method == "closed form"
    # Far-apart components: the mixture's entropy is log K plus a component's.
    far = EightGaussians(radius=40.0, scale=0.5).entropy_estimate()
    gaussian = math.log(2 * math.pi * math.e * 0.25)
    assert far.value == pytest.approx(math.log(8) + gaussian, abs=1e-6)
    # A single thin ring of radius R: log(2 pi R) + a 1-D Gaussian's entropy, up to
    # E[log r] - log R = O(s^2 / R^2).
    ring = Rings(radii=(5.0,), scale=0.05).entropy_estimate()
    expected = math.log(2 * math.pi * 5.0) + 0.5 * math.log(2 * math.pi * math.e * 0.05**2)
    assert ring.value == pytest.approx(expected, abs=1e-3)


def test_closed_form_log_probs():
    d = EightGaussians()
    # At a mean, the other components add exp(-d^2 / 2 s^2) terms that are negligible.
    log_n = -math.log(2 * math.pi * 0.25)
    assert d.log_prob(torch.tensor([4.0, 0.0])).item() == pytest.approx(
        log_n - math.log(8), abs=1e-6
    )
    r = Rings(radii=(2.0,), scale=0.1)
    x = torch.tensor([[2.0, 0.0], [0.0, -2.1]])
    radial = torch.distributions.Normal(2.0, 0.1).log_prob(torch.tensor([2.0, 2.1]))
    expected = radial - math.log(special.ndtr(20.0)) - torch.log(2 * math.pi * x.norm(dim=-1))
    assert torch.allclose(r.log_prob(x), expected)


def _log_quad(log_f, lo, hi):
    # log of the integral of exp(log_f) on [lo, hi], by adaptive quadrature around the
    # integrand's maximum (scaled out so nothing underflows).
    t = np.linspace(lo, hi, 200_001)
    values = log_f(t)
    top, where = values.max(), t[values.argmax()]
    points = sorted({where, *np.linspace(lo, hi, 60)[1:-1]} - {lo, hi})
    value, _ = integrate.quad(
        lambda s: math.exp(log_f(np.array([s]))[0] - top), lo, hi, points=points,
        limit=5000, epsabs=0, epsrel=1e-11,
    )  # fmt: skip
    return top + math.log(value)


POINTS = np.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5], [2.5, 0.3], [3.0, -3.0], [4.0, 4.0]])


def _log_moon(phi, x, center):
    # log N(x | center + 2 (cos phi, sin phi), 0.2^2 I) + log(1 / pi)
    d2 = (x[0] - center[0] - 2 * np.cos(phi)) ** 2 + (x[1] - center[1] - 2 * np.sin(phi)) ** 2
    return -d2 / (2 * 0.04) - math.log(2 * math.pi * 0.04 * math.pi)


def _log_spiral(t, x, sign):
    # log of 2t / (3 pi)^2 times the two uniform-convolved-with-normal densities.
    w = 1 / 6
    c = np.stack([-t * np.cos(t), t * np.sin(t)], -1) / 3
    low = c if sign > 0 else -c - w
    a, b = (x - low) / 0.1, (x - low - w) / 0.1
    up = a + b > 0  # log(Phi(a) - Phi(b)), reflected into the lower tail
    a, b = np.where(up, -b, a), np.where(up, -a, b)
    log_a, log_b = special.log_ndtr(a), special.log_ndtr(b)
    log_g = log_a + np.log1p(-np.exp(log_b - log_a)) + math.log(6)
    return np.log(2 * t / (3 * math.pi) ** 2 + 1e-300) + log_g.sum(-1)


def test_moons_quadrature():
    got = toy("moons").log_prob(torch.tensor(POINTS))
    for x, value in zip(POINTS, got, strict=True):
        parts = [
            _log_quad(lambda phi, c=center: _log_moon(phi, x, c), start, start + math.pi)  # noqa: B023
            for center, start in (((-1.0, -0.2), 0.0), ((1.0, 0.8), math.pi))
        ]
        assert value.item() == pytest.approx(np.logaddexp(*parts) - math.log(2), abs=1e-4)


def test_spirals_quadrature():
    got = toy("spirals").log_prob(torch.tensor(POINTS))
    for x, value in zip(POINTS, got, strict=True):
        parts = [
            _log_quad(lambda t, s=sign: _log_spiral(t, x, s), 0.0, 3 * math.pi)  # noqa: B023
            for sign in (1, -1)
        ]
        assert value.item() == pytest.approx(np.logaddexp(*parts) - math.log(2), abs=1e-4)


def test_pinwheel_is_a_bijection():
    # Pushing the pinwheel's own construction through its inverse recovers the Gaussian:
    # one arm, compared with the change of variables (Jacobian determinant 1 / 4).
    d = toy("pinwheel", arms=1)
    x = d.sample((1000,))
    y = x / 2
    psi = d.rate * y.norm(dim=-1).exp()
    f = torch.stack(
        [psi.cos() * y[:, 0] - psi.sin() * y[:, 1], psi.sin() * y[:, 0] + psi.cos() * y[:, 1]], -1
    )
    base = torch.distributions.Normal(torch.tensor([1.0, 0.0]), torch.tensor([0.3, 0.1]))
    expected = base.log_prob(f).sum(-1) - math.log(4)
    assert torch.allclose(d.log_prob(x), expected)


@pytest.mark.parametrize("name", TOYS)
def test_bad_input(name):
    d = toy(name)
    with pytest.raises(ValueError, match=r"event_shape \(2,\)"):
        d.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="non-finite"):
        d.log_prob(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="floating-point"):
        d.log_prob(torch.zeros(2, dtype=torch.long))
    with pytest.raises(NotImplementedError):
        d.rsample()
