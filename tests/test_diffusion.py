r"""Diffusion against mathematics: the SDEs' coefficients against their marginals, forward
marginals by simulation, and, with the analytic score of Gaussian-mixture data, the
probability-flow log_prob against the exact density and every sampler against exact
samples."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import probgen as pg
from probgen.distributions.continuous import ContinuousFlow
from probgen.distributions.diffusion import (
    DataPrediction,
    Diffusion,
    DiffusionDistribution,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from probgen.samplers import sde as S

SDES = [
    S.VP(),
    S.VP(S.CosineSchedule()),
    S.SubVP(),
    S.VE(0.01, 20.0),
]

# Data: a two-component Gaussian mixture in 2-D.
WEIGHTS = torch.tensor([0.3, 0.7])
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
STDS = torch.tensor([0.5, 0.3])


def _mixture(a: torch.Tensor | float, s: torch.Tensor | float) -> MixtureSameFamily:
    # The noised marginal of the mixture: N(a m_k, (a^2 s_k^2 + s^2) I) per component.
    a, s = torch.as_tensor(a), torch.as_tensor(s)
    std = torch.sqrt(a**2 * STDS**2 + s**2)[:, None].expand(2, 2)
    return MixtureSameFamily(Categorical(WEIGHTS), Independent(Normal(a * MEANS, std), 1))


def _analytic_eps(sde: S.SDE):
    # The exact noise prediction -sigma_t * grad log p_t, responsibilities in closed form.
    def eps(x, t, c=None):
        a, s = sde.alpha_sigma(torch.as_tensor(t, dtype=x.dtype))
        var = a**2 * STDS**2 + s**2  # (K,)
        diff = x[..., None, :] - a * MEANS  # (*, K, D)
        log_r = WEIGHTS.log() - 0.5 * (diff**2).sum(-1) / var - var.log()  # D = 2
        r = torch.softmax(log_r, dim=-1)
        score = -(r[..., None] * diff / var[:, None]).sum(-2)
        return -s * score

    return eps


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_coefficients_match_the_marginal(sde):
    # d log alpha / d tau = f and d sigma^2 / d tau = 2 f sigma^2 + g^2, with tau = 1 - t.
    t = torch.linspace(0.05, 0.95, 7, requires_grad=True)
    a, s = sde.alpha_sigma(t)
    f, g = sde.coefficients(t.detach())
    if a.requires_grad:
        (da,) = torch.autograd.grad(a.log().sum(), t, retain_graph=True)
        assert torch.allclose(-da, f, atol=1e-8)
    else:  # a constant scale (VE): no drift
        assert torch.equal(f, torch.zeros_like(f))
    (ds2,) = torch.autograd.grad((s**2).sum(), t)
    assert torch.allclose(-ds2, 2 * f * s.detach() ** 2 + g**2, atol=1e-7)


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_forward_sde_marginals_match_closed_forms(sde):
    # Euler-Maruyama on the noising SDE from data N(m, v) at tau = 0 to tau = 0.7.
    n, steps, m, v = 20000, 700, 1.5, 0.25
    x = m + math.sqrt(v) * torch.randn(n, 1)
    taus = torch.linspace(0.0, 0.7, steps + 1)
    for k in range(steps):
        f, g = sde.coefficients(1 - taus[k])
        dt = taus[k + 1] - taus[k]
        x = x + f * x * dt + g * dt.sqrt() * torch.randn_like(x)
    a, s = sde.alpha_sigma(1 - taus[-1])
    mean, var = a * m, a**2 * v + s**2
    # 5 standard errors plus the O(dt) bias of the scheme.
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n) + 0.01 * math.sqrt(var)
    assert abs(x.var() / var - 1) < 5 * math.sqrt(2 / n) + 0.01


@pytest.mark.parametrize(
    "param", [NoisePrediction(), DataPrediction(), VelocityPrediction(), ScorePrediction()],
    ids=repr,
)  # fmt: skip
def test_parameterizations_invert_their_targets(param):
    x0, e = torch.randn(5, 2), torch.randn(5, 2)
    a, s = torch.rand(5, 1) + 0.1, torch.rand(5, 1) + 0.1
    xt = a * x0 + s * e
    assert torch.allclose(param.eps(param.target(x0, e, a, s), xt, a, s), e, atol=1e-10)


def _distribution(sde: S.SDE, t_max: float = 1 - 1e-3, **solver) -> DiffusionDistribution:
    eps = _analytic_eps(sde)
    return DiffusionDistribution(
        lambda x, t, c: eps(x, t), sde, NoisePrediction(), 2, t_max=t_max, **solver
    )


@pytest.mark.parametrize("sde", [S.VP(), S.SubVP(), S.VE(0.01, 20.0)], ids=repr)
def test_probability_flow_log_prob_is_the_exact_density(sde):
    t_max = 1 - 1e-3
    d = _distribution(sde, t_max, rtol=1e-7, atol=1e-7)
    x = _mixture(1.0, 0.0).sample((20,))
    exact = _mixture(*sde.alpha_sigma(torch.tensor(t_max))).log_prob(x)
    # From the exact marginal at t = 0, the ODE is exact to the solver's tolerance.
    a0, s0 = sde.alpha_sigma(torch.tensor(0.0))
    flow = ContinuousFlow(_mixture(a0, s0), d.transform)
    assert torch.allclose(flow.log_prob(x), exact, atol=1e-4)
    # From the model's Gaussian prior: off by the prior's mismatch only (largest for VE,
    # whose prior ignores the data's spread of variance 3.4 next to sigma_max^2 = 400).
    assert (d.log_prob(x) - exact).abs().max() < 0.2


def _check_samples(y: torch.Tensor, sde: S.SDE, t_max: float, tol: float = 0.05) -> None:
    # Mode weights, means and standard deviations of the samples against the exact marginal.
    a, s = sde.alpha_sigma(torch.tensor(t_max))
    n = len(y)
    mode = (y[:, 0] > 0).long()
    frac = mode.double().mean()
    assert abs(frac - WEIGHTS[1]) < 5 * math.sqrt(0.21 / n) + 0.01, frac
    for k in range(2):
        yk = y[mode == k]
        std = torch.sqrt(a**2 * STDS[k] ** 2 + s**2)
        assert (yk.mean(0) - a * MEANS[k]).abs().max() < 5 * std / math.sqrt(len(yk)) + tol
        assert ((yk.std(0) / std - 1).abs() < 0.1).all(), (yk.std(0), std)


SAMPLERS = {
    "ddpm-1000": lambda eps, sde, z, t_max: S.ddpm(eps, sde, z, S.uniform_grid(1000, t_max)),
    "ddim-50": lambda eps, sde, z, t_max: S.ddim(eps, sde, z, S.uniform_grid(50, t_max)),
    "ddim-eta0.5-200": lambda eps, sde, z, t_max: S.ddim(
        eps, sde, z, S.uniform_grid(200, t_max), eta=0.5
    ),
    "euler-maruyama-1000": lambda eps, sde, z, t_max: S.euler_maruyama(
        eps, sde, z, S.uniform_grid(1000, t_max)
    ),
    "predictor-corrector-500": lambda eps, sde, z, t_max: S.predictor_corrector(
        eps, sde, z, S.uniform_grid(500, t_max)
    ),
    # VE's noise levels span 0.01 to 20: a uniform grid in t needs more steps there.
    "heun-20": lambda eps, sde, z, t_max: S.heun(
        lambda x, t: sde.pf_ode(eps)(x, t, None),
        z,
        S.uniform_grid(50 if isinstance(sde, S.VE) else 20, t_max),
    ),
}


# Long grids (a second or more each) run with the slow tests; the fast suite keeps the
# few-step samplers and a smoke test of every one.
_SLOW = ("ddpm-1000", "euler-maruyama-1000", "predictor-corrector-500")


@pytest.mark.parametrize(
    "sampler", [pytest.param(s, marks=pytest.mark.slow) if s in _SLOW else s for s in SAMPLERS]
)
@pytest.mark.parametrize("sde", [S.VP(), S.VE(0.01, 20.0)], ids=repr)
def test_samplers_reach_the_data_distribution(sampler, sde):
    if sde.__class__ is S.VE and sampler.startswith("ddim-eta"):
        pytest.skip("DDIM's stochastic step needs alpha_t < 1 (a VP-type SDE)")
    t_max = 1 - 1e-3
    eps = _analytic_eps(sde)
    z = sde.prior_std * torch.randn(4000, 2)
    y, nfe = SAMPLERS[sampler](eps, sde, z, t_max)
    assert nfe >= 20
    _check_samples(y, sde, t_max)


def test_probability_flow_samples_of_the_distribution():
    d = _distribution(S.VP(), rtol=1e-6, atol=1e-6)
    y, nfe = d.sample_and_nfe((4000,))
    assert nfe > 0
    _check_samples(y, d.sde, d.t_max)


@pytest.mark.parametrize("sde", [S.VP(), S.SubVP(), S.VE()], ids=repr)
@pytest.mark.parametrize(
    "param", [NoisePrediction(), DataPrediction(), VelocityPrediction(), ScorePrediction()],
    ids=repr,
)  # fmt: skip
def test_fit_every_parameterization(sde, param):
    model = Diffusion(2, context=3, hidden=(8,), sde=sde, parameterization=param)
    data = (torch.randn(64, 2), torch.randn(64, 3))
    h = pg.fit(model, data, steps=2, batch_size=16, progress=False)
    assert len(h.loss) == 2 and all(math.isfinite(v) for v in h.loss)
    d = model(torch.randn(4, 3))
    assert d.log_prob(d.sample((2,))).shape == (2, 4)


def test_bad_grid():
    with pytest.raises(ValueError, match="increasing time grid"):
        S.ddim(_analytic_eps(S.VP()), S.VP(), torch.randn(3, 2), torch.tensor([0.5, 0.2]))


@pytest.mark.parametrize("sampler", [S.ddpm, S.ddim, S.euler_maruyama, S.predictor_corrector])
def test_every_sampler_runs_batched_and_counts_evaluations(sampler):
    eps = _analytic_eps(S.VP())
    y, nfe = sampler(eps, S.VP(), torch.randn(3, 5, 2), S.uniform_grid(4, 0.999))
    assert y.shape == (3, 5, 2) and torch.isfinite(y).all()
    assert nfe == (4 + 3 if sampler is S.predictor_corrector else 4)
