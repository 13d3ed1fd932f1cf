r"""VAEs against closed forms: a linear-Gaussian model (probabilistic PCA) has an exact
marginal, an exact posterior and a closed-form maximum-likelihood solution."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pyro
import pyro.infer
import pyro.poutine as poutine
import pytest
import torch
import torch.nn as nn
from torch.distributions import MultivariateNormal, kl_divergence

import probgen as pg
import probgen.testing
from probgen.latent import (
    VAE,
    BernoulliFamily,
    CategoricalFamily,
    Factorized,
    FixedGaussianFamily,
    GaussianFamily,
    LearnedGaussianFamily,
    LogisticMixtureFamily,
    PosteriorCollapseWarning,
)
from probgen.nn import ContextMLP
from probgen.objectives import KLWarmup, elbo, iwae

D, L = 4, 2


def linear_vae(sigma: float = 0.5, particles: int = 64) -> VAE:
    r"""Probabilistic PCA as a VAE: x = W z + b + sigma * eps, z ~ N(0, I), a linear
    encoder, an isotropic learned noise scale."""
    return VAE(
        nn.Linear(D, 2 * L),
        nn.Linear(L, D),
        latent=L,
        event_shape=D,
        likelihood=LearnedGaussianFamily(sigma),
        particles=particles,
    )


def marginal(vae: VAE) -> MultivariateNormal:
    r"""The exact p(x) = N(b, W W^T + sigma^2 I) of a linear VAE."""
    W, b = vae.decoder.weight, vae.decoder.bias
    s2 = vae.likelihood.log_scale.exp() ** 2
    return MultivariateNormal(b, W @ W.T + s2 * torch.eye(D))


def posterior(vae: VAE, x: torch.Tensor) -> MultivariateNormal:
    r"""The exact p(z | x) = N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I."""
    W, b = vae.decoder.weight, vae.decoder.bias
    s2 = vae.likelihood.log_scale.exp() ** 2
    M = W.T @ W + s2 * torch.eye(L)
    Minv = torch.linalg.inv(M)
    return MultivariateNormal((x - b) @ (Minv @ W.T).T, s2 * Minv)


@torch.no_grad()
def set_exact_encoder(vae: VAE) -> None:
    # With orthogonal columns of W the exact posterior is diagonal, so the Gaussian encoder
    # can represent it: mean M^-1 W^T (x - b), scale sigma / sqrt(M_jj).
    W, b = vae.decoder.weight, vae.decoder.bias
    s2 = vae.likelihood.log_scale.exp() ** 2
    M = W.T @ W + s2 * torch.eye(L)
    assert torch.allclose(M, torch.diag(torch.diag(M)))
    A = torch.linalg.inv(M) @ W.T
    scale = (s2 / torch.diag(M)).sqrt() - vae.min_scale
    enc = vae.encoder
    enc.weight.zero_()
    enc.weight[:L] = A
    enc.bias[:L] = -A @ b
    enc.bias[L:] = scale + torch.log(-torch.expm1(-scale))  # softplus^-1


@torch.no_grad()
def orthogonal_decoder(vae: VAE) -> None:
    Q, _ = torch.linalg.qr(torch.randn(D, L))
    vae.decoder.weight.copy_(Q * torch.tensor([2.0, 1.0]))
    vae.decoder.bias.copy_(torch.randn(D))


def ppca_data(n: int = 500) -> torch.Tensor:
    W = torch.randn(D, L) * torch.tensor([2.0, 1.0])
    return torch.randn(n, L) @ W.T + 0.5 * torch.randn(n, D) + torch.tensor([1.0, -1, 0, 2])


def ppca_max_log_likelihood(x: torch.Tensor, latent: int) -> float:
    r"""The mean log-likelihood at the PPCA maximum (Tipping and Bishop, 1999, eq. 7-8):
    with S the sample covariance and its eigenvalues l_1 >= ... >= l_D, sigma^2 is the
    mean of the discarded ones and
    log L / N = -1/2 (D log 2 pi + sum_{j<=q} log l_j + (D - q) log sigma^2 + D)."""
    n, d = x.shape
    xc = x - x.mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / n).flip(0)
    s2 = lam[latent:].mean()
    log_det = lam[:latent].log().sum() + (d - latent) * s2.log()
    return float(-0.5 * (d * math.log(2 * math.pi) + log_det + d))


# The marginal, the ELBO and the IWAE bound against closed forms.


def test_exact_posterior_makes_every_weight_the_marginal():
    vae = linear_vae()
    orthogonal_decoder(vae)
    set_exact_encoder(vae)
    x = torch.randn(7, D) * 2
    with torch.no_grad():
        lw = vae().log_weights(x, 16)
        exact = marginal(vae).log_prob(x)
    assert lw.shape == (16, 7)
    assert torch.allclose(lw, exact.expand(16, 7), atol=1e-8)
    assert torch.allclose(vae().log_prob(x), exact, atol=1e-8)


def test_elbo_is_the_marginal_minus_kl_to_the_exact_posterior():
    # ELBO(x) = log p(x) - KL(q(z | x) || p(z | x)), in closed form for Gaussians.
    vae = linear_vae()
    pg.testing.perturb(vae, 0.3)
    x = torch.randn(5, D)
    with torch.no_grad():
        q = vae.encode(x)
        qf = MultivariateNormal(q.loc, torch.diag_embed(q.scale**2))
        exact = marginal(vae).log_prob(x) - kl_divergence(qf, posterior(vae, x))
        lw = vae().log_weights(x, 20_000)
    mc, se = lw.mean(0), lw.std(0) / math.sqrt(lw.shape[0])
    assert (exact < marginal(vae).log_prob(x)).all()
    # 5 standard errors: a false failure rate below 1e-6 per datum.
    assert ((mc - exact).abs() < 5 * se).all(), (mc, exact, se)

    # Pyro's estimators of the same bound, per datum: Trace_ELBO (Monte Carlo KL) and
    # TraceMeanField_ELBO (the registered closed-form KL).
    for analytic in (False, True):
        with torch.no_grad():
            loss = elbo(vae, x, particles=4000, analytic_kl=analytic)
        assert abs(-loss.item() - exact.mean().item()) < 5 * se.max().item() * math.sqrt(5)


def test_iwae_increases_with_particles_towards_the_marginal():
    # A decoder with an exact posterior, and an encoder moved away from it.
    vae = linear_vae()
    orthogonal_decoder(vae)
    set_exact_encoder(vae)
    with torch.no_grad():
        # Means moved away, scales widened: q is wider than p(z | x), so the weights have
        # a finite variance and the gap closes like 1 / K.
        vae.encoder.weight[:L] += 0.2 * torch.randn(L, D)
        vae.encoder.bias[L:] += 0.5
    x = torch.randn(200, D)
    with torch.no_grad():
        log_p = marginal(vae).log_prob(x)
        gaps, ses = [], []
        for k in (1, 10, 100, 1000):
            # Four independent estimates per datum: the mean gap and its standard error.
            est = torch.stack(
                [vae().log_weights(x, k).logsumexp(0) - math.log(k) for _ in range(4)]
            )
            gap = log_p - est
            gaps.append(gap.mean().item())
            ses.append(gap.mean(0).std().item() / math.sqrt(x.shape[0]))
    # E log p_K <= log p(x): no gap is significantly negative (5 standard errors).
    assert all(g > -5 * s for g, s in zip(gaps, ses, strict=True)), (gaps, ses)
    # ... and it closes as K grows: for large K the gap is about Var(w / p) / (2K).
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] < gaps[0] / 50, gaps


def test_iwae_objective_is_the_negative_mean_log_prob():
    vae = linear_vae(particles=8)
    x = torch.randn(6, D)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        a = iwae(vae, x, particles=8)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        b = -vae().log_prob(x).mean()
    assert torch.allclose(a, b)
    a.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())


def test_trained_linear_vae_recovers_the_ppca_maximum_likelihood():
    x = ppca_data()
    vae = linear_vae(sigma=1.0, particles=256)
    steps = 400
    cosine = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # noqa: E731
    # The IWAE bound (K = 16). Under the ELBO the rotation of W towards orthogonal columns
    # (where the diagonal posterior is exact) is a slow direction, and until it is reached
    # the ELBO trades log p(x) for a smaller KL(q || p(z | x)): the slow test below trains
    # by the ELBO for longer.
    objective = partial(iwae, particles=16)
    pg.fit(
        vae,
        x,
        objective=objective,
        steps=steps,
        batch_size=500,
        lr=0.1,
        scheduler=cosine,
        progress=False,
    )
    best = ppca_max_log_likelihood(x, L)
    with torch.no_grad():
        learned = marginal(vae).log_prob(x).mean().item()
        estimate = vae().log_prob(x).mean().item()
    # The learned model is a PPCA model, so it cannot beat the maximum; a linear VAE's
    # stationary points are PPCA's (Lucas et al., 2019), where the ELBO is tight.
    assert learned <= best + 1e-9
    assert best - learned < 0.03, (best, learned)
    assert abs(estimate - learned) < 0.01, (estimate, learned)


@pytest.mark.slow
def test_elbo_training_reaches_the_ppca_maximum_with_orthogonal_columns():
    # Lucas et al. (2019): a linear VAE's ELBO is maximal at the PPCA maximum likelihood
    # with W^T W diagonal, where the diagonal Gaussian posterior is exact and the bound tight.
    x = ppca_data()
    vae = linear_vae(sigma=1.0, particles=256)
    steps = 1500
    cosine = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)  # noqa: E731
    objective = partial(elbo, analytic_kl=True, particles=64)
    pg.fit(vae, x, objective=objective, steps=steps, batch_size=500, lr=0.1,
           scheduler=cosine, progress=False)  # fmt: skip
    best = ppca_max_log_likelihood(x, L)
    with torch.no_grad():
        learned = marginal(vae).log_prob(x).mean().item()
        WtW = vae.decoder.weight.T @ vae.decoder.weight
        bound = vae().elbo(x, particles=256).mean().item()
    assert learned <= best + 1e-9 and best - learned < 1e-3, (best, learned)
    assert WtW[0, 1].abs() < 1e-2 * WtW.diagonal().min(), WtW
    assert abs(bound - learned) < 1e-2, (bound, learned)


# KL and beta.


def test_analytic_kl_equals_monte_carlo():
    vae = linear_vae()
    pg.testing.perturb(vae, 0.5)
    x = torch.randn(4, D)
    with torch.no_grad():
        q, p = vae.encode(x), vae.prior_distribution()
        kl = kl_divergence(q, p.expand(q.batch_shape))
        z = q.sample((100_000,))
        log_ratio = q.log_prob(z) - p.log_prob(z)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert kl.shape == (4,)
    assert ((mc - kl).abs() < 5 * se).all(), (mc, kl, se)
    per_dim = pg.latent.kl_per_dimension(vae, x)
    assert per_dim.shape == (L,) and torch.allclose(per_dim.sum(), kl.mean())


def _seeded(f, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return f()


@pytest.mark.parametrize("analytic", [False, True])
def test_beta_scales_exactly_the_kl(analytic):
    vae = linear_vae()
    pg.testing.perturb(vae, 0.3)
    x = torch.randn(8, D)
    loss = {
        b: _seeded(lambda b=b: elbo(vae, x, beta=b, analytic_kl=analytic))
        for b in (0.0, 0.5, 1.0, 3.0)
    }
    # -ELBO_beta = -E log p(x | z) + beta KL: affine in beta, with the same draws of z.
    kl = loss[1.0] - loss[0.0]
    for b in (0.5, 3.0):
        assert torch.allclose(loss[b], loss[0.0] + b * kl, atol=1e-10)
    if analytic:
        with torch.no_grad():
            q = vae.encode(x)
            exact = kl_divergence(q, vae.prior_distribution().expand(q.batch_shape)).mean()
        assert torch.allclose(kl, exact, atol=1e-10)
    # beta = 0 masks the latent site: the reconstruction term alone.
    with torch.no_grad():
        z = _seeded(lambda: vae.encode(x).rsample())
        rec = -vae.decode(z).log_prob(x).mean()
    assert torch.allclose(loss[0.0], rec, atol=1e-10)


def test_kl_warmup_schedule_counts_training_steps_only():
    vae = linear_vae()
    warmup = KLWarmup(4, beta=2.0)
    x = torch.randn(8, D)
    betas = [warmup.beta_at(t) for t in range(6)]
    assert betas == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    first = _seeded(lambda: warmup(vae, x))
    assert warmup.step == 1
    assert torch.allclose(first, _seeded(lambda: elbo(vae, x, beta=0.0)))
    vae.eval()
    with torch.no_grad():
        warmup(vae, x)
    assert warmup.step == 1
    vae.train()
    history = pg.fit(vae, x, objective=warmup, steps=3, batch_size=8, progress=False)
    assert warmup.step == 4 and len(history.loss) == 3
    state = warmup.state_dict()
    fresh = KLWarmup(4, beta=2.0)
    fresh.load_state_dict(state)
    assert fresh.step == 4


# Pyro.


def test_model_and_guide_sites_and_shapes():
    vae = linear_vae()
    x = torch.randn(6, D)
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    z, obs = model.nodes["z"], model.nodes["x"]
    assert not z["is_observed"] and obs["is_observed"]
    assert z["fn"].batch_shape == (6,) and z["fn"].event_shape == (L,)
    assert obs["fn"].batch_shape == (6,) and obs["fn"].event_shape == (D,)
    assert torch.equal(z["value"], guide.nodes["z"]["value"])
    for site in (z, obs, guide.nodes["z"]):
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert site["cond_indep_stack"][0].dim == -1
    model.compute_log_prob()
    assert model.nodes["x"]["log_prob"].shape == (6,)
    # Parameters are registered in Pyro's store under the module's name.
    names = set(pyro.get_param_store().keys())
    assert {f"vae$$${n}" for n, _ in vae.named_parameters()} <= names

    # Vectorised particles add a dimension left of the plate.
    particles = pyro.plate("particles", 3, dim=-2)
    with particles:
        g = poutine.trace(vae.guide).get_trace(x)
    with particles:
        m = poutine.trace(poutine.replay(vae.model, trace=g)).get_trace(x)
    assert g.nodes["z"]["value"].shape == (3, 6, L)
    assert m.nodes["x"]["fn"].batch_shape == (3, 6)


@pytest.mark.parametrize("estimator", [pyro.infer.Trace_ELBO, pyro.infer.TraceMeanField_ELBO])
def test_svi_trains_the_pair(estimator):
    x = ppca_data(200)
    vae = linear_vae(sigma=1.0)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.03}), estimator())
    losses = [svi.step(x) for _ in range(150)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < sum(losses[:10])
    # SVI moved the module's own parameters (the param store holds the same tensors).
    assert pyro.get_param_store()["vae$$$decoder.weight"] is vae.decoder.weight


def test_conditional_vae_feeds_the_context_everywhere():
    C = 3
    prior = pg.flows.MAF(L, C, transforms=1, hidden=(8,))
    vae = VAE(
        ContextMLP(D, 2 * L, C, hidden=(8,)),
        ContextMLP(L, 2 * D, C, hidden=(8,)),
        prior,
        event_shape=D,
        context=C,
    )
    pg.testing.perturb(vae, 0.1)
    x, c = torch.randn(5, D), torch.randn(5, C)
    loss = elbo(vae, x, c)
    loss.backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    tr = poutine.trace(vae.model).get_trace(x, c)
    assert tr.nodes["z"]["fn"].batch_shape == (5,)
    # Each network sees the context: changing it changes the prior, q and p(x | z).
    c2 = c + 1
    z = torch.randn(5, L)
    assert not torch.allclose(
        vae.prior_distribution(c).log_prob(z), vae.prior_distribution(c2).log_prob(z)
    )
    assert not torch.allclose(vae.encode(x, c).loc, vae.encode(x, c2).loc)
    assert not torch.allclose(vae.decode(z, c).mean, vae.decode(z, c2).mean)
    with pytest.raises(ValueError, match="context"):
        vae.model(x)


# Likelihoods: every decoder family is normalised.


@pytest.mark.parametrize(
    "family, values",
    [
        (BernoulliFamily(), 2),
        (CategoricalFamily(5), 5),
        (LogisticMixtureFamily(1, 17), 17),
        (LogisticMixtureFamily(3, 6), 6),
    ],
    ids=["bernoulli", "categorical", "discretised-logistic", "logistic-mixture"],
)
def test_discrete_likelihoods_sum_to_one(family, values):
    params = 2 * torch.randn(4, 2, family.params)
    d = Factorized(family, params, (2,))
    grid = torch.tensor(list(itertools.product(range(values), repeat=2)), dtype=torch.float64)
    lp = d.log_prob(grid[:, None, :])  # (values^2, 4)
    assert torch.allclose(lp.logsumexp(0), torch.zeros(4), atol=1e-10)
    # Samples fall on the grid.
    x = d.sample((50,))
    assert ((x >= 0) & (x < values) & (x == x.round())).all()


@pytest.mark.parametrize(
    "family",
    [GaussianFamily(), FixedGaussianFamily(0.7), LearnedGaussianFamily(0.3)],
    ids=["gaussian", "fixed-scale", "learned-scale"],
)
def test_gaussian_likelihoods_integrate_to_one(family):
    params = torch.randn(3, 1, family.params)
    d = Factorized(family, params, (1,))
    t = torch.linspace(-12, 12, 4001)
    with torch.no_grad():
        p = d.log_prob(t[:, None, None]).exp()
    assert torch.allclose(torch.trapezoid(p, t, dim=0), torch.ones(3), atol=1e-8)


def test_likelihood_parameters_are_trained():
    vae = linear_vae(sigma=1.0)
    elbo(vae, torch.randn(5, D)).backward()
    assert vae.likelihood.log_scale.grad is not None
    assert "likelihood.log_scale" in vae.state_dict()


# Priors.


def test_priors_without_a_normalised_density_are_refused():
    gan = pg.implicit.GAN(ContextMLP(2, 2), ContextMLP(2, 1), latent=2)
    with pytest.raises(ValueError, match="log_prob_kind 'none'"):
        VAE(nn.Linear(D, 4), nn.Linear(2, 2 * D), gan, event_shape=D)
    ebm = pg.energy.EBM(features=2, hidden=(8,))
    with pytest.raises(ValueError, match="log_prob_kind 'unnormalized'"):
        VAE(nn.Linear(D, 4), nn.Linear(2, 2 * D), ebm, event_shape=D)
    with pytest.raises(ValueError, match="event_shape"):
        VAE(nn.Linear(D, 4), nn.Linear(2, 2 * D), pg.flows.MAF(3), latent=2, event_shape=D)


def test_flow_prior_is_trained_and_scored():
    vae = VAE(
        nn.Linear(D, 2 * L), nn.Linear(L, 2 * D), pg.flows.NSF(L, hidden=(8,)), event_shape=D
    )
    pg.testing.perturb(vae, 0.1)
    x = torch.randn(5, D)
    iwae(vae, x).backward()
    assert all(p.grad is not None for p in vae.prior.parameters())
    # A flow prior has no registered KL: TraceMeanField_ELBO falls back on sampling.
    assert torch.isfinite(elbo(vae, x, analytic_kl=True))


class MixturePrior(nn.Module):
    r"""A learned mixture of Gaussians over z: a plain torch distribution as a prior."""

    def __init__(self, components: int = 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, L))
        self.log_scale = nn.Parameter(torch.zeros(components, L))

    def forward(self):
        from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

        normal = Independent(Normal(self.loc, self.log_scale.exp()), 1)
        return MixtureSameFamily(Categorical(logits=self.logits), normal)


def test_mixture_prior_is_trained_and_scored():
    vae = VAE(nn.Linear(D, 2 * L), nn.Linear(L, 2 * D), MixturePrior(), event_shape=D)
    x = torch.randn(5, D)
    elbo(vae, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.prior.parameters())
    assert vae().log_prob(x).shape == (5,) and vae().sample((2,)).shape == (2, D)


def test_diffusion_prior_nests():
    # Latent diffusion: the prior's log p(z) is the probability-flow ODE's (kind "exact").
    prior = pg.diffusion.Diffusion(L, hidden=(8,), rtol=1e-4, atol=1e-4)
    vae = VAE(nn.Linear(D, 2 * L), nn.Linear(L, 2 * D), prior, event_shape=D, particles=2)
    x = torch.randn(3, D)
    elbo(vae, x).backward()
    assert all(p.grad is not None for p in vae.prior.parameters())
    assert vae().log_prob(x).shape == (3,) and vae().sample((2,)).shape == (2, D)


# The marginal's estimate is unbiased for p(x): it integrates to one.


def test_estimate_integrates_to_one_by_quadrature():
    # E[exp log p_K(x)] = p(x) for any K, so the grid integral of exp(log_prob) is 1 up to
    # the quadrature error and a Monte Carlo error we estimate from the weights themselves.
    vae = VAE(
        ContextMLP(2, 4, hidden=(16,)),
        ContextMLP(2, 4, hidden=(16,)),
        latent=2,
        event_shape=2,
        likelihood=GaussianFamily(0.3),
    )
    pg.testing.perturb(vae, 0.1)
    n, k = 161, 16
    t = torch.linspace(-8, 8, n)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        w = vae().log_weights(grid, k).exp()  # (K, n^2)
    p, var = w.mean(0), w.var(0) / k
    h = (t[1] - t[0]).item()
    integral = (p * h * h).sum().item()
    se = math.sqrt((var * h**4).sum().item())
    assert abs(integral - 1) < 5 * se + 1e-3, (integral, se)


# Diagnostics.


def test_active_units_and_posterior_collapse_warning():
    vae = linear_vae()
    x = torch.randn(100, D)
    with torch.no_grad():
        vae.encoder.weight[:L] = 0.0  # posterior means ignore x: every unit inactive
    with pytest.warns(PosteriorCollapseWarning, match="0 of 2"):
        au = pg.latent.active_units(vae, x)
    assert au.count == 0 and au.variance.shape == (L,)
    with torch.no_grad():
        vae.encoder.weight[0, 0] = 1.0
        vae.encoder.weight[1, 1] = 1.0
    au = pg.latent.active_units(vae, x)
    assert au.count == 2
    # The variance is that of the posterior means over the data.
    assert torch.allclose(au.variance, vae.encode(x).loc.detach().var(0))


def test_reconstructions_interpolations_traversals():
    vae = linear_vae()
    pg.testing.perturb(vae, 0.3)
    x = torch.randn(3, D)
    rec = pg.latent.reconstruct(vae, x)
    with torch.no_grad():
        expected = vae.decoder(vae.encode(x).loc)
    assert torch.allclose(rec, expected)
    path = pg.latent.interpolate(vae, x[:2], x[1:], steps=5)
    assert path.shape == (5, 2, D)
    assert torch.allclose(path[0], rec[:2]) and torch.allclose(path[-1], rec[1:])
    # A linear decoder maps the straight latent line to a straight line.
    assert torch.allclose(path[2], (path[0] + path[-1]) / 2)
    mu = vae.encode(x[0]).loc.detach()
    values = torch.tensor([-1.0, mu[1].item(), 2.0])
    trav = pg.latent.traverse(vae, x[0], dims=[1], values=values)
    assert trav.shape == (1, 3, D)
    assert torch.allclose(trav[0, 1], rec[0])
    # Discrete likelihoods decode to their expected level.
    d = Factorized(CategoricalFamily(3), torch.tensor([[[0.0, 0.0, math.log(2)]]]), (1,))
    assert torch.allclose(d.mean, torch.tensor([[(0 + 1 + 2 * 2) / 4]]))


def test_bad_networks_and_inputs():
    vae = VAE(nn.Linear(D, 3), nn.Linear(L, 2 * D), latent=L, event_shape=D)
    with pytest.raises(ValueError, match=r"encoder to return shape \(5, 4\)"):
        vae.encode(torch.randn(5, D))
    vae = VAE(nn.Linear(D, 2 * L), nn.Linear(L, D), latent=L, event_shape=D)
    with pytest.raises(ValueError, match="decoder to return 2 x"):
        vae.decode(torch.randn(5, L))
    vae = linear_vae()
    with pytest.raises(ValueError, match=r"expected x with shape \(N, 4\)"):
        vae.model(torch.randn(5, D + 1))
    with pytest.raises(ValueError, match="beta"):
        elbo(vae, torch.randn(5, D), beta=-1.0)


@pytest.mark.slow
def test_goodness_of_fit_with_many_particles():
    # The suite's binned chi-square against exp(log p_K): the estimate is unbiased for
    # p(x), and with K = 1000 particles its noise, averaged over the 100 grid points of a
    # bin, is small against the bins' sampling noise; the false failure rate is the
    # suite's, 1e-4, up to that residual noise.
    vae = VAE(
        ContextMLP(2, 4, hidden=(16,)),
        ContextMLP(2, 4, hidden=(16,)),
        latent=2,
        event_shape=2,
        likelihood=GaussianFamily(0.3),
        particles=1000,
    )
    pg.testing.perturb(vae, 0.1)
    pg.testing.check_goodness_of_fit(vae(), n=20_000)
