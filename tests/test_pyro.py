r"""Flows inside Pyro programs: as a variational guide, as a prior, as an MCMC potential."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO

import probgen as pg
import probgen.testing as T


def _conjugate_posterior(x: torch.Tensor, A: torch.Tensor, sigma: float):
    # z ~ N(0, I), x_i ~ N(A z, sigma^2 I): the posterior is Gaussian in closed form.
    n = x.shape[0]
    precision = torch.eye(2) + n * A.T @ A / sigma**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (A.T @ x.sum(0)) / sigma**2
    return mean, cov


@pytest.mark.slow
def test_flow_guide_recovers_an_analytic_posterior():
    A = torch.tensor([[1.0, 0.8], [0.0, 0.6]])
    sigma = 1.0
    z_true = torch.tensor([0.5, -1.0])
    x = z_true @ A.T + sigma * torch.randn(4, 2)
    mean, cov = _conjugate_posterior(x, A, sigma)

    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(z @ A.T, sigma).to_event(1), obs=x)

    flow = pg.flows.MAF(2, transforms=2, hidden=(16,))

    def guide(x):
        pyro.module("flow", flow)
        pyro.sample("z", flow())

    # Learning-rate decay to 1e-2 of its start over the run averages the gradient noise away.
    optim = pyro.optim.ClippedAdam({"lr": 2e-2, "lrd": 0.01 ** (1 / 600)})
    elbo = Trace_ELBO(num_particles=64, vectorize_particles=True)
    svi = SVI(model, guide, optim, elbo)
    for _ in range(600):
        svi.step(x)
    with torch.no_grad():
        z = flow().sample((20000,))
    # Monte Carlo error of the moments is ~0.003; the fit, not the sampling, dominates.
    assert torch.allclose(z.mean(0), mean, atol=0.03), (z.mean(0), mean)
    assert torch.allclose(torch.cov(z.T), cov, atol=0.03), (torch.cov(z.T), cov)


def test_guide_sample_is_scored_without_an_inverse_pass():
    # pyro.sample calls the distribution: the fused path keeps (x, log_p) in a one-slot memo.
    flow = T.perturb(pg.flows.IAF(2, transforms=2, hidden=(8,)))
    d = flow()
    with pyro.poutine.trace() as tr:
        z = pyro.sample("z", d)
    tr.trace.compute_log_prob()
    assert tr.trace.nodes["z"]["log_prob"] is d._memoized(z)
    fresh = d.log_prob(z.detach().clone())
    assert torch.allclose(tr.trace.nodes["z"]["log_prob"], fresh)


def test_flow_prior_scores_in_the_joint():
    prior = T.perturb(pg.flows.NSF(2, transforms=2, hidden=(8,), bins=4))
    x = torch.tensor([0.3, -0.2])

    def model():
        z = pyro.sample("z", prior())
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
        return z

    tr = pyro.poutine.trace(model).get_trace()
    z = tr.nodes["z"]["value"]
    expected = prior().log_prob(z) + dist.Normal(z, 0.5).to_event(1).log_prob(x)
    assert torch.allclose(tr.log_prob_sum(), expected)


@pytest.mark.slow
def test_flow_prior_under_nuts_matches_quadrature():
    torch.manual_seed(3)
    prior = T.perturb(pg.flows.MAF(2, transforms=2, hidden=(8,)), scale=0.3)
    for p in prior.parameters():
        p.requires_grad_(False)
    x = torch.tensor([1.0, -0.5])
    scale = 0.7

    def model():
        z = pyro.sample("z", prior())
        pyro.sample("x", dist.Normal(z, scale).to_event(1), obs=x)

    mcmc = MCMC(NUTS(model), num_samples=800, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"]

    # The posterior mean by quadrature of prior x likelihood on a grid.
    t = torch.linspace(-6, 6, 401)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        log_w = prior().log_prob(grid) + dist.Normal(grid, scale).to_event(1).log_prob(x)
    w = torch.softmax(log_w, 0)
    mean = (w[:, None] * grid).sum(0)
    std = ((w[:, None] * (grid - mean) ** 2).sum(0)).sqrt()
    # NUTS draws are correlated: allow 5 standard errors with an effective size of ~200.
    tol = 5 * std / math.sqrt(200)
    assert ((z.mean(0) - mean).abs() < tol).all(), (z.mean(0), mean, tol)


def test_flow_log_prob_as_an_mcmc_potential():
    flow = T.perturb(pg.flows.RealNVP(2, transforms=2, hidden=(8,)))
    for p in flow.parameters():
        p.requires_grad_(False)
    d = flow()
    kernel = NUTS(potential_fn=lambda params: -d.log_prob(params["z"]))
    mcmc = MCMC(
        kernel, num_samples=50, warmup_steps=20, initial_params={"z": torch.zeros(2)},
        disable_progbar=True,
    )
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert z.shape == (50, 2) and torch.isfinite(z).all()
