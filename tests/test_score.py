r"""Score models and DPM-Solver++ against mathematics.

With the analytic score of Gaussian-mixture data (the closed form of test_diffusion.py,
for any noise level): annealed Langevin reaches the smoothed data distribution (a kernel
two-sample test against exact samples, which rejects a wrong mixture), DPM-Solver++(2M)
reaches the data in <= 20 steps, converges at second order and beats DDIM at equal NFE;
the NCSN ladder's probability-flow ODE gives the exact density; the DSM loss is lowest at
the analytic score by exactly the weighted squared error; sliced score matching equals
the exact score-matching objective (exact Jacobian trace) in expectation and its minimiser
on Gaussian data is the Gaussian score.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from test_diffusion import MEANS, STDS, WEIGHTS, _analytic_eps, _mixture
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import probgen as pg
import probgen.testing
from probgen.distributions.continuous import ContinuousFlow
from probgen.metrics import energy_distance, mmd_test
from probgen.objectives import denoising_score_matching, sliced_score_matching
from probgen.samplers import sde as S


def _data(sigma: float) -> MixtureSameFamily:
    # test_diffusion's mixture smoothed by N(0, sigma^2 I), in float64 (its module-level
    # constants are float32, which a 0-d float64 tensor does not promote).
    std = torch.sqrt(STDS.double() ** 2 + sigma**2)[:, None].expand(2, 2)
    return MixtureSameFamily(
        Categorical(WEIGHTS.double()), Independent(Normal(MEANS.double(), std), 1)
    )


# Two-sample tests run at this level with fixed seeds (false failure rate 1e-3 per test).
LEVEL = 1e-3


def _score(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    # The score of the mixture smoothed by N(0, sigma^2 I), sigma scalar or one per point.
    sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[:-1])
    var = STDS**2 + sigma[..., None] ** 2  # (*, K)
    diff = x[..., None, :] - MEANS  # (*, K, D)
    log_r = WEIGHTS.log() - 0.5 * (diff**2).sum(-1) / var - var.log()  # D = 2
    r = torch.softmax(log_r, dim=-1)
    return -(r[..., None] * diff / var[..., None]).sum(-2)


class Analytic(nn.Module):
    r"""An NCSN network with the analytic output :math:`\sigma \nabla \log p_\sigma`, plus
    an optional perturbation ``delta(x, sigma)``."""

    def __init__(self, sigmas: torch.Tensor, delta=None) -> None:
        super().__init__()
        self.register_buffer("sigmas", sigmas)
        self.delta = delta

    def forward(self, x, t, c=None):
        s1, sl = self.sigmas[0], self.sigmas[-1]
        sigma = s1 * (sl / s1) ** torch.as_tensor(t, dtype=x.dtype)
        out = sigma[..., None] * _score(x, sigma)
        return out if self.delta is None else out + self.delta(x, sigma)


def _ncsn(sigmas, delta=None, **kwargs) -> pg.diffusion.NCSN:
    return pg.diffusion.NCSN(2, sigmas=sigmas, network=Analytic(sigmas, delta), **kwargs)


def test_closed_form_score_is_the_autograd_score_and_test_diffusion_s():
    x = torch.randn(6, 2, requires_grad=True) * 2
    for sigma in (0.01, 0.7, 5.0):
        (grad,) = torch.autograd.grad(_mixture(1.0, sigma).log_prob(x).sum(), x)
        assert torch.allclose(_score(x, sigma), grad, atol=1e-10)
    # The noise prediction of test_diffusion.py at VE time t is -sigma_t times this score.
    sde, t = S.VE(0.01, 20.0), torch.tensor(0.6)
    sigma = sde.alpha_sigma(t)[1]
    assert torch.allclose(_analytic_eps(sde)(x, t), -sigma * _score(x, sigma), atol=1e-10)


def test_the_ladder_is_geometric():
    sigmas = pg.diffusion.geometric_sigmas(10.0, 0.01, 10)
    ratios = sigmas[1:] / sigmas[:-1]
    assert torch.allclose(ratios, ratios[0].expand(9), rtol=1e-6)
    assert math.isclose(sigmas[0], 10.0, rel_tol=1e-6) and math.isclose(
        sigmas[-1], 0.01, rel_tol=1e-6
    )
    default = pg.diffusion.NCSN(2, hidden=(8,)).sigmas
    assert torch.allclose(default.log().diff(), default.log().diff()[0].expand(9), atol=1e-6)
    # The network's time is linear in log sigma: 0 at sigma_1, 1 at sigma_L.
    model = pg.diffusion.NCSN(2, sigmas=sigmas, hidden=(8,))
    assert torch.allclose(model.time(sigmas), torch.linspace(0, 1, 10), atol=1e-12)
    # The ladder's SDE has noise level s(t) = sigma_1 (sigma_L / sigma_1)^t.
    _, s = model.sde().alpha_sigma(model.time(sigmas))
    assert torch.allclose(s, sigmas, rtol=1e-10)
    with pytest.raises(ValueError, match="decreasing"):
        pg.diffusion.NCSN(2, sigmas=[0.1, 1.0])
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        pg.diffusion.geometric_sigmas(0.1, 1.0, 5)


# Annealed Langevin


def test_annealed_langevin_reaches_the_smoothed_data():
    # Song and Ermon's schedule (T = 100, eps = 2e-5 at sigma_L = 0.01) from sigma_1 = 5,
    # above the modes' distance, with the exact noise-conditional score.
    sigmas = pg.diffusion.geometric_sigmas(5.0, 0.01, 10)
    d = _ncsn(sigmas, steps=100, step_size=2e-5)()
    assert pg.distributions.log_prob_kind(d) == "none"
    y, nfe = d.sample_and_nfe((1000,))
    assert nfe == 1000 and y.shape == (1000, 2)
    exact = _data(0.01)
    g = torch.Generator().manual_seed(0)
    assert mmd_test(y, exact.sample((1000,)), permutations=299, generator=g).p_value > LEVEL
    # The same test has power against a mixture with the weights swapped.
    swapped = torch.where(
        (torch.rand(1000) < 0.7)[:, None], MEANS[0], MEANS[1]
    ) + STDS.max() * torch.randn(1000, 2)
    assert mmd_test(swapped, exact.sample((1000,)), permutations=999, generator=g).p_value <= LEVEL


def test_annealed_langevin_denoising_step_is_tweedie():
    sigmas = torch.tensor([1.0, 0.5])
    x = torch.randn(5, 2)
    # Zero Langevin noise cannot be asked for; one step at a vanishing size moves nothing.
    y, nfe = S.annealed_langevin(lambda x, s: _score(x, s), x, sigmas, 1, 1e-300, denoise=True)
    assert nfe == 3
    assert torch.allclose(y, x + 0.25 * _score(x, 0.5), atol=1e-12)


def test_langevin_models_have_no_density_and_say_what_to_use():
    for model in (
        pg.diffusion.NCSN(2, context=3, hidden=(8,), steps=2),
        pg.diffusion.ScoreModel(2, context=3, hidden=(8,), steps=2),
    ):
        d = model(torch.randn(4, 3))
        assert d.batch_shape == (4,) and d.sample((5,)).shape == (5, 4, 2)
        assert d.expand((2, 4)).sample().shape == (2, 4, 2)
        with pytest.raises(NotImplementedError, match="probability_flow"):
            d.log_prob(torch.zeros(4, 2))


# The ladder's probability-flow ODE


def test_probability_flow_of_the_ladder_is_the_exact_density():
    sigmas = pg.diffusion.geometric_sigmas(20.0, 0.05, 8)
    d = _ncsn(sigmas).probability_flow(rtol=1e-7, atol=1e-7)
    assert pg.distributions.log_prob_kind(d) == "exact"
    x = _data(0.0).sample((20,))
    exact = _data(0.05).log_prob(x)
    # From the exact smoothed data at sigma_1, the ODE carries it exactly to sigma_L.
    flow = ContinuousFlow(_data(20.0), d.transform)
    assert torch.allclose(flow.log_prob(x), exact, atol=1e-4)
    # From the N(0, sigma_1^2 I) prior, off by the prior's mismatch only (the data's
    # spread, variance 3.4, next to sigma_1^2 = 400; as in test_diffusion.py).
    assert (d.log_prob(x) - exact).abs().max() < 0.25
    # DPM-Solver++ runs on its eps and sde up to t = 1, where the noise is sigma_L.
    z = d.base.sample((1000,))
    y, nfe = S.dpm_solver_pp(d.eps, d.sde, z, S.logsnr_grid(d.sde, 20, 1.0))
    g = torch.Generator().manual_seed(0)
    assert mmd_test(y, _data(0.05).sample((1000,)), permutations=299, generator=g).p_value > LEVEL


# DPM-Solver++


def _reference(eps, sde, z, t_max):
    # An independent, much finer solve: Heun with 400 steps on the log-SNR grid.
    return S.heun(lambda x, t: sde.pf_ode(eps)(x, t, None), z, S.logsnr_grid(sde, 400, t_max))[0]


@pytest.mark.parametrize("sde", [S.VP(), S.VP(S.CosineSchedule()), S.VE(0.01, 20.0)], ids=repr)
def test_dpm_solver_pp_is_second_order_and_beats_ddim_at_equal_nfe(sde):
    t_max = 1 - 1e-3
    eps = _analytic_eps(sde)
    z = sde.prior_std * torch.randn(2000, 2)
    ref = _reference(eps, sde, z, t_max)
    err = {}
    for k in (10, 20):
        grid = S.logsnr_grid(sde, k, t_max)
        y, nfe = S.dpm_solver_pp(eps, sde, z, grid)
        assert nfe == k
        err["dpm", k] = (y - ref).norm(dim=-1).mean()
        # DDIM on its usual uniform grid and on DPM-Solver's: worse either way.
        for name, g in (("uniform", S.uniform_grid(k, t_max)), ("logsnr", grid)):
            err[name, k] = (S.ddim(eps, sde, z, g)[0] - ref).norm(dim=-1).mean()
    # Better at 10 steps (barely for the cosine schedule, whose log-SNR grid spends steps
    # where alpha_t ~ 1e-3), and by far at 20.
    assert err["dpm", 10] < min(err["uniform", 10], err["logsnr", 10]), err
    assert err["dpm", 20] < 0.5 * min(err["uniform", 20], err["logsnr", 20]), err
    # Doubling the steps divides a second-order method's error by about 4, DDIM's by 2.
    assert err["dpm", 10] / err["dpm", 20] > 3, err
    assert err["logsnr", 10] / err["logsnr", 20] < 2.5, err


def test_dpm_solver_pp_reaches_the_data_in_20_steps():
    sde, t_max = S.VP(), 1 - 1e-3
    eps = _analytic_eps(sde)
    z = torch.randn(2000, 2)
    y, nfe = S.dpm_solver_pp(eps, sde, z, S.logsnr_grid(sde, 20, t_max))
    exact = _mixture(*sde.alpha_sigma(torch.tensor(t_max)))
    g = torch.Generator().manual_seed(0)
    assert mmd_test(y[:1000], exact.sample((1000,)), permutations=299, generator=g).p_value > LEVEL
    # Distribution-level quality at equal NFE (common noise): the energy distance to
    # exact samples is smaller than DDIM's on either grid; the noise floor (exact against
    # exact, 2000 each) is about 5e-4, DDIM's distances 3e-3 and 4e-3.
    x = exact.sample((2000,))
    ed = energy_distance(y, x)
    for grid in (S.uniform_grid(20, t_max), S.logsnr_grid(sde, 20, t_max)):
        ddim = energy_distance(S.ddim(eps, sde, z, grid)[0], x)
        assert ed < ddim, (ed, ddim)


def test_dpm_solver_pp_on_a_diffusion_distribution():
    model = pg.diffusion.Diffusion(2, context=3, hidden=(8,))
    d = model(torch.randn(4, 3))
    y, nfe = S.dpm_solver_pp(d.eps, d.sde, d.base.sample((5,)), S.logsnr_grid(d.sde, 6, d.t_max))
    assert y.shape == (5, 4, 2) and nfe == 6 and torch.isfinite(y).all()


def test_bad_dpm_solver_pp_grid():
    eps = _analytic_eps(S.VP())
    with pytest.raises(ValueError, match="increasing time grid"):
        S.dpm_solver_pp(eps, S.VP(), torch.randn(3, 2), torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="sigma_t > 0"):
        S.dpm_solver_pp(eps, S.VE(), torch.randn(3, 2), torch.tensor([0.0, 0.5, 1.0]))


def test_logsnr_grid_is_uniform_in_log_snr():
    for sde in (S.VP(), S.SubVP(), S.VE(0.01, 20.0), S.VP(S.CosineSchedule())):
        t = S.logsnr_grid(sde, 12, 0.99)
        a, s = sde.alpha_sigma(t)
        lam = (a / s).log()
        assert t[0] == 0 and t[-1] == 0.99 and bool((t.diff() > 0).all())
        assert torch.allclose(lam.diff(), lam.diff().mean().expand(12), rtol=1e-9)


# Denoising score matching


def test_dsm_is_lowest_at_the_analytic_score_by_the_weighted_squared_error():
    sigmas = pg.diffusion.geometric_sigmas(5.0, 0.05, 6)
    x = _data(0.0).sample((20000,))
    w = torch.randn(2, 2)
    deltas = {
        "shift": lambda x, s: torch.tensor([0.3, -0.2]).expand_as(x),
        "scale": lambda x, s: 0.2 * s[..., None] * _score(x, s),
        "linear": lambda x, s: 0.1 * x @ w,
    }
    torch.manual_seed(1)
    best = denoising_score_matching(_ncsn(sigmas), x)
    for name, delta in deltas.items():
        torch.manual_seed(1)  # the same levels and noise: only the score differs
        loss = denoising_score_matching(_ncsn(sigmas, delta), x)
        # The difference is 1/2 E||Delta||^2 (Delta = sigma (s - s*), the output's error)
        # plus E[Delta . (sigma s* + z)], which is zero: sigma s* = -E[z | x + sigma z].
        torch.manual_seed(1)
        k = torch.randint(len(sigmas), (len(x),))
        sigma, z = sigmas[k], torch.randn_like(x)
        xt = x + sigma[:, None] * z
        d = delta(xt, sigma)
        cross = (d * (sigma[:, None] * _score(xt, sigma) + z)).sum(-1)
        half_sq = 0.5 * d.square().sum(-1).mean()
        assert loss > best, name
        se = cross.std() / math.sqrt(len(x))
        assert abs((loss - best) - half_sq) < 5 * se + 1e-10, (name, loss - best, half_sq, se)


def test_dsm_trains_an_ncsn_with_context():
    model = pg.diffusion.NCSN(2, context=3, hidden=(8,), steps=2)
    data = (torch.randn(64, 2), torch.randn(64, 3))
    h = pg.fit(model, data, steps=2, batch_size=16, progress=False)
    assert len(h.loss) == 2 and all(math.isfinite(v) for v in h.loss)
    d = model.probability_flow(torch.randn(4, 3))
    assert d.log_prob(d.sample((2,))).shape == (2, 4)


# Sliced score matching


def _exact_score_matching(model, x):
    # E[tr(grad s) + 1/2 ||s||^2], the trace by the exact Jacobian.
    jac = torch.func.vmap(torch.func.jacrev(lambda y: model.score(y[None])[0]))(x)
    return (jac.diagonal(dim1=-2, dim2=-1).sum(-1) + 0.5 * model.score(x).square().sum(-1)).mean()


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduction", [True, False], ids=["vr", "plain"])
def test_sliced_score_matching_is_score_matching_in_expectation(noise, variance_reduction):
    model = pg.diffusion.ScoreModel(3, hidden=(16,))
    pg.testing.perturb(model, 0.3)
    x = 1.5 * torch.randn(32, 3)
    exact = _exact_score_matching(model, x)
    values = torch.stack([
        sliced_score_matching(model, x, noise=noise, variance_reduction=variance_reduction)
        for _ in range(300)
    ]).detach()  # fmt: skip
    # Unbiased: within 5 standard errors (false failure rate ~6e-7).
    se = values.std() / math.sqrt(len(values))
    assert abs(values.mean() - exact) < 5 * se, (values.mean(), exact, se)
    # Many projections in one call: the same estimator, averaged.
    many = sliced_score_matching(model, x, projections=300, noise=noise,
                                 variance_reduction=variance_reduction)  # fmt: skip
    assert abs(many - exact) < 5 * se


def test_sliced_score_matching_has_gradients_and_validates():
    model = pg.diffusion.ScoreModel(2, context=3, hidden=(8,), steps=2)
    h = pg.fit(model, (torch.randn(64, 2), torch.randn(64, 3)), steps=2, batch_size=16,
               progress=False)  # fmt: skip
    assert all(math.isfinite(v) for v in h.loss)
    with pytest.raises(ValueError, match="noise"):
        sliced_score_matching(model, torch.randn(4, 2), torch.randn(4, 3), noise="uniform")


def test_sliced_score_matching_minimiser_on_gaussian_data_is_the_gaussian_score():
    mu = torch.tensor([1.0, -0.5])
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
    x = torch.distributions.MultivariateNormal(mu, cov).sample((4000,))
    # A linear score s(x) = A x + b holds the Gaussian score -cov^{-1} (x - mu).
    model = pg.diffusion.ScoreModel(2, network=nn.Linear(2, 2))
    opt = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure():
        torch.manual_seed(2)  # the same projections each evaluation: a fixed objective
        opt.zero_grad()
        loss = sliced_score_matching(model, x, projections=8)
        loss.backward()
        return loss

    opt.step(closure)
    precision = torch.linalg.inv(cov)
    a, b = model.network.weight.detach(), model.network.bias.detach()
    # Sampling error: the data's covariance (n = 4000) and the projections' second moment
    # (n M = 32000) are within a few percent of their expectations.
    assert torch.allclose(a, -precision, atol=0.15 * precision.abs().max()), (a, -precision)
    assert torch.allclose(b, precision @ mu, atol=0.15 * (precision @ mu).abs().max())
    # Against the sample's own Gaussian score, the projections' error only.
    emp = torch.linalg.inv(torch.cov(x.T))
    assert torch.allclose(a, -emp, atol=0.05 * emp.abs().max()), (a, -emp)


# Trained


@pytest.mark.slow
def test_trained_ncsn_learns_the_mixture_score_and_its_weights():
    # DSM on fresh mixture samples; the learned sigma * score against the analytic one on
    # noised data, and annealed Langevin's mode weights against the mixture's 0.3 / 0.7.
    sigmas = pg.diffusion.geometric_sigmas(5.0, 0.1, 8)
    model = pg.diffusion.NCSN(2, sigmas=sigmas, hidden=(64, 64), steps=50, step_size=4e-3)
    data = _data(0.0)
    pg.fit(model, lambda n: data.sample((n,)), steps=2000, batch_size=256, lr=2e-3, progress=False)
    x = data.sample((4000,))
    for sigma in sigmas[::3]:
        xt = x + sigma * torch.randn_like(x)
        with torch.no_grad():
            err = sigma * (model.score(xt, sigma) - _score(xt, sigma))
        # Relative to the target's own size E||sigma s*||^2 (<= D = 2).
        target = (sigma * _score(xt, sigma)).square().sum(-1).mean()
        assert err.square().sum(-1).mean() < 0.1 * target, sigma
    y = model().sample((2000,))
    frac = (y[:, 0] > 0).double().mean()
    assert abs(frac - 0.7) < 5 * math.sqrt(0.21 / 2000) + 0.03, frac
