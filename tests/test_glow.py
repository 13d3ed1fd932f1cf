r"""Glow, dequantisation and the digits data: shapes, exactness, bounds, Pyro, the recipe."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

import probgen as pg
import probgen.testing as T
from probgen.distributions import NormalizingFlow, log_prob_kind
from probgen.flows import Dequantization, Dequantized, Glow, VariationalDequantizer
from probgen.transforms import LogitTransform


def _glow(shape=(1, 4, 4), context=0, **kwargs) -> Glow:
    # A generic Glow: actnorms initialised on a batch (their first scoring pass would
    # otherwise change the map mid-check), then every parameter perturbed.
    kwargs = {"levels": 2, "steps": 1, "hidden": 8, **kwargs}
    torch.manual_seed(1)
    glow = Glow(shape, context, **kwargs).double()
    c = torch.randn(16, context) if context else None
    with torch.no_grad():
        (glow(c) if c is not None else glow()).log_prob(1 + 2 * torch.randn(16, *shape))
    return T.perturb(glow, scale=0.1)


# Glow


@pytest.mark.parametrize("shape", [(1, 4, 4), (1, 8, 8), (3, 4, 4)])
def test_glow_shapes(shape):
    glow = _glow(shape)
    d = glow()
    assert d.batch_shape == () and d.event_shape == shape
    assert log_prob_kind(d) == "exact"
    x = d.sample((5,))
    assert x.shape == (5, *shape) and d.log_prob(x).shape == (5,)
    T.check_shapes(glow, sample_shape=(3,))


def test_glow_rsample_and_log_prob_agree():
    d = _glow((1, 8, 8))()
    x, log_p = d.rsample_and_log_prob((4,))
    assert torch.allclose(log_p, d.log_prob(x), atol=1e-8)
    assert x.requires_grad


@pytest.mark.parametrize("levels", [1, 2])
def test_glow_transform_is_bijective_with_exact_ladj(levels):
    d = _glow((1, 4, 4), levels=levels, steps=2)()
    T.check_transform(d.transform, d.base.sample((2,)))


def test_conditional_glow():
    glow = _glow((1, 4, 4), context=3)
    assert glow.context == 3
    c = torch.randn(2, 3)
    d = glow(c)
    assert d.batch_shape == (2,) and d.event_shape == (1, 4, 4)
    x = d.sample((5,))
    assert x.shape == (5, 2, 1, 4, 4) and d.log_prob(x).shape == (5, 2)
    assert glow(torch.randn(3)).batch_shape == ()
    T.check_shapes(glow, torch.randn(4, 2, 3), sample_shape=())
    T.check_transform(d.transform, d.base.sample((2,)))
    # The context matters.
    x = d.sample()
    assert not torch.allclose(glow(c).log_prob(x), glow(c.flip(0)).log_prob(x))


def test_glow_model_contracts():
    glow = _glow((1, 4, 4), context=2)
    c = torch.randn(3, 2)
    with torch.no_grad():
        x = glow(c).sample((2,))
    T.check_gradients(glow, x, c)
    T.check_train_eval(glow, x, c)
    T.check_state_dict(glow, lambda: Glow((1, 4, 4), 2, levels=2, steps=1, hidden=8), x, c)
    T.check_pyro(glow, c)
    T.check_bad_input(glow, c)


def test_glow_actnorms_initialize_on_first_batch():
    glow = Glow((1, 8, 8), levels=2, steps=2, hidden=8).double()
    actnorms = [m for m in glow.modules() if isinstance(m, pg.transforms.ActNorm)]
    assert len(actnorms) == 4 and not any(bool(a.initialized) for a in actnorms)
    x = 5 + 3 * torch.rand(64, 1, 8, 8)
    glow().log_prob(x)
    assert all(bool(a.initialized) for a in actnorms)
    # Reloaded, a model keeps its parameters on its next batch.
    fresh = Glow((1, 8, 8), levels=2, steps=2, hidden=8).double()
    fresh.load_state_dict(glow.state_dict())
    y = torch.randn(8, 1, 8, 8)
    assert torch.equal(fresh().log_prob(y), glow().log_prob(y))


def test_glow_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by 4"):
        Glow((1, 6, 6), levels=2)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        Glow((8, 8))


# Dequantisation


def _continuous(alpha: float, levels: int = 3) -> tuple[torch.nn.Module, NormalizingFlow]:
    torch.manual_seed(2)
    # A moderate perturbation: a wider flow piles mass against the box's edges, where
    # the cell quadrature below would need far more points to see it.
    flow = T.perturb(pg.flows.RealNVP(2, transforms=2, hidden=(8,)).double(), 0.1)
    return flow, NormalizingFlow(flow(), LogitTransform(alpha, levels))


def _cells(p, levels: int = 3, n: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Gauss-Legendre quadrature over each unit cell of {0..L-1}^2: the exact mass
    # P(x) = int p(x + u) du and the expected uniform bound E_u log p(x + u).
    t, w = np.polynomial.legendre.leggauss(n)
    t, w = torch.tensor((t + 1) / 2), torch.tensor(w / 2)
    grid, weight = torch.cartesian_prod(t, t), (w[:, None] * w[None, :]).flatten()
    cells = torch.cartesian_prod(torch.arange(levels * 1.0), torch.arange(levels * 1.0))
    with torch.no_grad():
        log_p = p.log_prob(cells[:, None, :] + grid)
    return cells, (log_p.exp() * weight).sum(-1), (log_p * weight).sum(-1)


def test_dequantized_mass_sums_to_one_and_bound_is_below():
    # With alpha = 0 the continuous density lives on the box [0, 3]^2: the cells' masses
    # are a distribution. Jensen: exp E_u log p(x + u) <= P(x) for every configuration.
    _, p = _continuous(alpha=0.0)
    _, mass, bound = _cells(p)
    assert abs(mass.sum().item() - 1) < 1e-3
    assert (bound <= mass.log()).all()
    assert bound.exp().sum() <= 1
    # With a margin alpha > 0 some mass falls outside the box: still a lower bound.
    _, p = _continuous(alpha=0.05)
    _, mass, bound = _cells(p)
    assert mass.sum() <= 1 and bound.exp().sum() <= mass.sum()


def test_uniform_dequantized_log_prob_is_an_unbiased_bound():
    _, p = _continuous(alpha=0.05)
    cells, _, bound = _cells(p)
    d = Dequantized(p, levels=3)
    assert d.log_prob_kind == "bound" and not d.has_rsample
    n = 20_000
    with torch.no_grad():
        lp = d.log_prob(cells.expand(n, 9, 2))
    assert lp.shape == (n, 9)
    # A z-test per cell at 5 standard errors: a false failure rate below 1e-5 in all.
    err = (lp.mean(0) - bound).abs() / (lp.std(0) / math.sqrt(n))
    assert (err < 5).all(), err


def test_importance_weighted_bound_is_tighter():
    _, p = _continuous(alpha=0.05)
    cells, mass, _ = _cells(p)
    n = 4000
    with torch.no_grad():
        one = Dequantized(p, 3).log_prob(cells.expand(n, 9, 2)).mean(0)
        many = Dequantized(p, 3, samples=16).log_prob(cells.expand(n, 9, 2))
    se = many.std(0) / math.sqrt(n)
    # E[IWAE_16] lies between the ELBO and log P(x) (one-sided 5-sigma tests).
    assert (many.mean(0) > one).all()
    assert (many.mean(0) - 5 * se <= mass.log()).all()


def test_dequantized_samples_match_the_cell_masses():
    _, p = _continuous(alpha=0.0)
    cells, mass, _ = _cells(p)
    d = Dequantized(p, levels=3)
    n = 20_000
    x = d.sample((n,))
    assert x.shape == (n, 2) and x.dtype == torch.float64
    assert ((x >= 0) & (x <= 2) & (x == x.floor())).all()
    counts = torch.bincount((3 * x[:, 0] + x[:, 1]).long(), minlength=9).double()
    # Pearson's chi-square over the cells expected to hold 20 samples or more (the
    # test's normal approximation needs it): false failure rate 1e-4.
    keep = mass * n >= 20
    assert keep.sum() >= 4
    assert multinomial_goodness_of_fit(mass[keep], counts[keep], total_count=n) > 1e-4


def test_dequantized_support_and_pyro():
    _, p = _continuous(alpha=0.05)
    d = Dequantized(p, levels=3)
    for bad in (torch.tensor([0.5, 1.0]), torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 0.0])):
        with pytest.raises(ValueError, match="support"):
            d.log_prob(bad)
    with pytest.raises(ValueError, match="event_shape"):
        d.log_prob(torch.zeros(3))
    assert d.log_prob(torch.tensor([[2, 0], [1, 1]])).shape == (2,)  # integer dtypes too
    assert d.expand((4,)).sample().shape == (4, 2)

    def model(obs=None):
        with pyro.plate("data", 5):
            return pyro.sample("x", d, obs=obs)

    x = model()
    assert x.shape == (5, 2)
    trace = pyro.poutine.trace(model).get_trace(x)
    assert torch.isfinite(trace.log_prob_sum())


def test_dequantization_of_glow():
    model = Dequantization(_glow((1, 4, 4)), levels=17)
    d = model()
    assert isinstance(d, Dequantized) and log_prob_kind(d) == "bound"
    x = d.sample((6,))
    assert x.shape == (6, 1, 4, 4)
    assert ((x >= 0) & (x <= 16) & (x == x.floor())).all()
    lp = d.log_prob(x)
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    T.check_gradients(model, x)


def test_conditional_dequantization():
    model = Dequantization(_glow((1, 4, 4), context=2), levels=17)
    c = torch.randn(3, 2)
    d = model(c)
    assert d.batch_shape == (3,)
    x = d.sample((4,))
    assert x.shape == (4, 3, 1, 4, 4) and d.log_prob(x).shape == (4, 3)
    with pytest.raises(ValueError, match="context"):
        model()


def test_variational_dequantization():
    torch.manual_seed(3)
    q = VariationalDequantizer((1, 4, 4), levels=5, transforms=2, hidden=(8,)).double()
    assert q.context == 16
    x = torch.randint(0, 5, (3, 1, 4, 4)).double()
    u, log_q = q(x).rsample_and_log_prob()
    assert u.shape == (3, 16) and log_q.shape == (3,)
    assert ((u > 0) & (u < 1)).all()
    model = Dequantization(_glow((1, 4, 4)), levels=5, dequantizer=q)
    d = model()
    assert log_prob_kind(d) == "bound"
    assert d.log_prob(x).shape == (3,)
    T.check_gradients(model, x)  # reaches the flow and the dequantizer

    # On a tiny space: E_q[log p(x + u) - log q(u | x)] <= log P(x) (Jensen).
    _, p = _continuous(alpha=0.05)
    cells, mass, _ = _cells(p)
    torch.manual_seed(4)
    q = T.perturb(VariationalDequantizer((2,), levels=3, transforms=2, hidden=(8,)).double())
    n = 4000
    with torch.no_grad():
        lp = Dequantized(p, 3, q).log_prob(cells.expand(n, 9, 2))
    assert lp.shape == (n, 9)
    assert (lp.mean(0) - 5 * lp.std(0) / math.sqrt(n) <= mass.log()).all()


def test_dequantization_rejects_bad_arguments():
    with pytest.raises(ValueError, match="levels"):
        Dequantization(_glow(), levels=1)
    with pytest.raises(ValueError, match="alpha"):
        Dequantization(_glow(), levels=4, alpha=0.5)
    with pytest.raises(ValueError, match="context 4"):
        VariationalDequantizer((4,), 3, flow=pg.flows.RealNVP(4, context=2))


# Data and recipe


def test_digits():
    pytest.importorskip("sklearn")
    from probgen.data import digits

    x, y = digits("train")
    xt, yt = digits("test")
    assert x.shape == (1500, 1, 8, 8) and y.shape == (1500,) and y.dtype == torch.long
    assert xt.shape == (297, 1, 8, 8)
    assert torch.equal(x.unique(), torch.arange(17.0))
    # A fixed split, whatever the global RNG, and disjoint.
    torch.manual_seed(123)
    assert torch.equal(digits("train")[0], x)
    everything = digits("all")[0].flatten(1)
    assert len(torch.cat([x.flatten(1), xt.flatten(1)]).unique(dim=0)) == len(
        everything.unique(dim=0)
    )
    xb, _ = digits("test", binarize=True)
    assert torch.equal(xb, (xt >= 8).to(xb.dtype))
    assert torch.equal(digits("test", scale=True)[0], xt / 16)
    with pytest.raises(ValueError, match="split"):
        digits("validation")


def test_recipe_smoke(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    # Loaded from its file: recipes are scripts, not necessarily an importable package.
    path = Path(__file__).resolve().parents[1] / "recipes" / "flows_digits.py"
    spec = importlib.util.spec_from_file_location("flows_digits", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    out = tmp_path / "out"
    # --threads 0 leaves this process's torch threads alone.
    argv = "--steps 2 --hidden 8 --depth 1 --eval-repeats 1 --samples 4 --quiet --threads 0"
    results = recipe.main([*argv.split(), "--out", str(out)])
    saved = json.loads((out / "results.json").read_text())
    assert saved["log_prob_kind"] == "bound" == results["log_prob_kind"]
    assert math.isfinite(saved["test_bits_per_dim"])
    assert (out / "samples.png").stat().st_size > 0
