r"""MCMC kernels, adaptation, diagnostics, rejection and importance sampling, Pyro interop.

Statistical checks are z-tests of sample means against exact expectations, with the
standard error computed from the samples (or from the effective sample size for one
correlated chain). Each fails by chance with probability about 1e-5 (|z| > 4.42); with
~60 such checks here, about one run in 2,000 fails by chance, none with the fixed seeds.
"""

from __future__ import annotations

import dataclasses
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import MCMC

import probgen as pg
from probgen.samplers import (
    HMC,
    MALA,
    ULA,
    BlockGibbs,
    RandomWalk,
    ReplayBuffer,
    ToPyroKernel,
    dual_averaging,
    effective_sample_size,
    importance_ess,
    importance_sample,
    rejection_sample,
    run_chain,
    sample_with_pyro,
)
from probgen.testing import TEST_FAILURE_RATE

Z = 4.42  # two-sided normal quantile at 1e-5


def assert_mean(values: torch.Tensor, expected: torch.Tensor, what: str, n_eff=None) -> None:
    # values: (N, K) i.i.d. draws of K statistics; expected: (K,) exact expectations.
    n = values.shape[0] if n_eff is None else n_eff
    se = values.std(0) / math.sqrt(n)
    z = (values.mean(0) - expected) / se
    assert (z.abs() < Z).all(), f"{what}: mean {values.mean(0)} vs exact {expected}, z {z}"


# Targets with exact samples and exact moments.


class Gaussian:
    # A correlated Gaussian; in 2-D, correlation 0.9 and scales 1 and 0.5 (the narrow
    # principal axis has standard deviation 0.2).
    def __init__(self, dims: int = 2) -> None:
        if dims == 2:
            self.mean = torch.tensor([1.0, -1.0])
            self.cov = torch.tensor([[1.0, 0.45], [0.45, 0.25]])
        else:
            g = torch.Generator().manual_seed(dims)
            a = torch.randn(dims, dims, generator=g) / math.sqrt(dims)
            self.mean = torch.randn(dims, generator=g)
            self.cov = a @ a.T + 0.1 * torch.eye(dims)
        self.chol = torch.linalg.cholesky(self.cov)
        self.precision = torch.cholesky_inverse(self.chol)

    def log_prob(self, x):
        # Unnormalised: the kernels never need the constant.
        r = x - self.mean
        return -0.5 * ((r @ self.precision) * r).sum(-1)

    def sample(self, n):
        return self.mean + torch.randn(n, len(self.mean)) @ self.chol.T

    def whiten(self, x):
        return torch.linalg.solve_triangular(self.chol, (x - self.mean).T, upper=False).T

    def moments(self):
        # Of the whitened coordinates w: E[w] = 0, E[w w^T] = I.
        return torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0])


class Mixture:
    # Two isotropic components with unequal weights: invariance must keep the weights.
    weights = torch.tensor([0.3, 0.7])
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    scale = 0.7

    def log_prob(self, x):
        # Unnormalised (the kernels never need the constant): -|x - m_k|^2 / 2 s^2 + log w_k.
        comp = -((x[..., None, :] - self.means) ** 2).sum(-1) / (2 * self.scale**2)
        comp = comp + self.weights.log()
        # logaddexp: torch's logsumexp over a last dimension of 2 is 20x slower on CPU.
        return torch.logaddexp(comp[..., 0], comp[..., 1])

    def sample(self, n):
        k = torch.multinomial(self.weights.double(), n, replacement=True)
        return self.means.double()[k] + self.scale * torch.randn(n, 2)

    def moments(self):
        w, m, s2 = self.weights.double(), self.means.double(), self.scale**2
        mean = (w[:, None] * m).sum(0)
        second = (w[:, None, None] * (s2 * torch.eye(2) + m[:, :, None] * m[:, None, :])).sum(0)
        right = (w * torch.special.ndtr(m[:, 0] / self.scale)).sum()
        return torch.cat([mean, second[0, 0:2], second[1, 1:2], right[None]])


def statistics(p, x):
    # First and second moments; of the whitened coordinates for a Gaussian, so that every
    # direction (the narrow one too) is tested with the same power.
    w = p.whiten(x) if isinstance(p, Gaussian) else x
    stats = [w[:, 0], w[:, 1], w[:, 0] ** 2, w[:, 0] * w[:, 1], w[:, 1] ** 2]
    if isinstance(p, Mixture):
        stats.append((x[:, 0] > 0).double())
    return torch.stack(stats, -1)


KERNELS = {
    "rwm": RandomWalk(0.5),
    "mala": MALA(0.02),
    "hmc": HMC(0.15, steps=5),
    "hmc-jitter": HMC(0.15, steps=5, jitter=0.5),
}


@pytest.mark.parametrize("target", ["gaussian", "mixture"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_exact_kernels_leave_the_target_invariant(name, target):
    # Chains started from exact samples are exact samples at every step if the kernel
    # leaves the target invariant: the final points are i.i.d. draws of the target.
    p = Gaussian() if target == "gaussian" else Mixture()
    g = torch.Generator().manual_seed(1)
    chain = run_chain(KERNELS[name], p.sample(5000), p.log_prob, steps=20, generator=g)
    assert_mean(statistics(p, chain.state.x), p.moments(), f"{name}/{target}")
    accept = chain.accept_prob.mean()
    assert 0.05 < accept < 0.999, f"{name}: mean acceptance {accept}"
    assert ((chain.accept_prob >= 0) & (chain.accept_prob <= 1)).all()


def test_the_invariance_check_detects_a_biased_kernel():
    # The same check fails for ULA at the step MALA uses (the variance along the narrow
    # axis, standard deviation 0.2, grows by a third): the invariance tests have power.
    p = Gaussian()
    g = torch.Generator().manual_seed(1)
    chain = run_chain(ULA(0.02), p.sample(5000), p.log_prob, steps=20, generator=g)
    with pytest.raises(AssertionError):
        assert_mean(statistics(p, chain.state.x), p.moments(), "ula")


def _small_rbm(visible=4, hidden=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pg.energy.RBMTarget(
        torch.randn(hidden, visible, generator=g),
        0.5 * torch.randn(visible, generator=g),
        0.5 * torch.randn(hidden, generator=g),
    )


def _all_states(n):
    return torch.tensor([[(i >> j) & 1 for j in range(n)] for i in range(2**n)]).double()


def test_block_gibbs_leaves_a_small_rbm_invariant():
    # Exact marginal p(v) by enumeration; chains start from exact draws of it; after a few
    # sweeps the frequencies of the 16 states pass a chi-square test against p(v).
    rbm = _small_rbm()
    states = _all_states(4)
    probs = rbm(states).softmax(0)
    n = 20_000
    v0 = states[torch.multinomial(probs, n, replacement=True)]
    g = torch.Generator().manual_seed(2)
    chain = run_chain(BlockGibbs(sweeps=2), v0, rbm, steps=3, generator=g)
    index = (chain.state.x * 2 ** torch.arange(4)).sum(-1).long()
    counts = torch.bincount(index, minlength=16).double()
    assert multinomial_goodness_of_fit(probs, counts, total_count=n) > TEST_FAILURE_RATE
    assert (chain.accept_prob == 1).all()


def test_ula_has_its_known_stationary_variance():
    # On N(0, s^2), ULA's step is y = (1 - tau / s^2) x + sqrt(2 tau) xi, whose stationary
    # variance solves v = (1 - tau / s^2)^2 v + 2 tau: v = s^2 / (1 - tau / (2 s^2)).
    s2, tau, n = 1.0, 0.5, 20_000
    v = s2 / (1 - tau / (2 * s2))
    x0 = math.sqrt(v) * torch.randn(n, 1)  # ULA's own stationary law: it must stay there
    g = torch.Generator().manual_seed(3)
    chain = run_chain(ULA(tau), x0, lambda x: -(x**2).sum(-1) / (2 * s2), steps=20, generator=g)
    x = chain.state.x[:, 0]
    assert_mean((x**2)[:, None], torch.tensor([v]), "ULA's stationary variance")
    # ... and that is measurably not the target's variance (the bias is 25 standard errors).
    se = (x**2).std() / math.sqrt(n)
    assert ((x**2).mean() - s2) / se > 10
    assert (chain.accept_prob == 1).all()


@pytest.mark.parametrize("name", list(KERNELS) + ["ula"])
def test_batch_and_event_shapes(name):
    # Chains over two batch dimensions, events that are matrices.
    kernel = KERNELS.get(name, ULA(0.01))
    log_p = lambda x: -(x**2).sum((-2, -1)) / 2  # noqa: E731
    chain = run_chain(kernel, torch.randn(3, 4, 2, 2), log_p, steps=6, warmup=2, thin=3)
    assert chain.samples.shape == (2, 3, 4, 2, 2)
    assert chain.state.log_p.shape == chain.accept_prob.shape == (3, 4)
    assert torch.allclose(chain.state.log_p, log_p(chain.state.x))


@pytest.mark.parametrize("name", list(KERNELS) + ["ula"])
def test_generator_makes_chains_reproducible(name):
    kernel = KERNELS.get(name, ULA(0.01))
    p = Gaussian()
    x0 = p.sample(10)
    runs = [
        run_chain(kernel, x0, p.log_prob, 5, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].samples, runs[1].samples)
    # Under no_grad (sampling inside an evaluation loop) gradient kernels still work.
    with torch.no_grad():
        again = run_chain(kernel, x0, p.log_prob, 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.samples, runs[0].samples)


def test_kernels_are_immutable_and_validate():
    kernel = HMC(0.1, steps=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kernel.step_size = 0.2
    for bad in [lambda: HMC(-1.0), lambda: HMC(0.1, steps=0), lambda: HMC(jitter=1.0),
                lambda: MALA(0.0), lambda: RandomWalk(-0.1), lambda: BlockGibbs(0)]:  # fmt: skip
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="steps >= 0"):
        run_chain(kernel, torch.zeros(2), lambda x: -(x**2).sum(-1), steps=-1)


def test_a_proposal_with_a_nan_density_is_rejected():
    # A log-density that is NaN outside the unit disc: chains inside never leave it.
    log_p = lambda x: torch.where(x.norm(dim=-1) < 1, -(x**2).sum(-1), torch.nan)  # noqa: E731
    chain = run_chain(RandomWalk(0.5), torch.zeros(500, 2), log_p, steps=30)
    assert (chain.samples.norm(dim=-1) < 1).all()


@pytest.mark.parametrize("name", ["rwm", "mala", "hmc"])
def test_dual_averaging_returns_a_new_kernel_at_the_target_acceptance(name):
    # In 10-D the acceptance falls smoothly with the step size (in 2-D HMC's falls off a
    # cliff at the stability limit, and the averaged step lands below it).
    p = Gaussian(10)
    kernel = {"rwm": RandomWalk(3.0), "mala": MALA(1.0), "hmc": HMC(1.0, steps=5)}[name]
    g = torch.Generator().manual_seed(4)
    adapted, state = dual_averaging(kernel, p.sample(500), p.log_prob, 200, generator=g)
    assert adapted is not kernel and kernel.step_size in (3.0, 1.0)
    assert isinstance(adapted.step_size, float) and adapted.step_size < kernel.step_size
    chain = run_chain(adapted, state, p.log_prob, 50, generator=g)
    # 500 chains x 50 steps: the mean acceptance is precise; adaptation's own noise and
    # the averaging of log steps leave it within a few hundredths of the target.
    assert abs(chain.accept_prob.mean() - kernel.optimal_accept) < 0.06


def test_effective_sample_size_of_an_ar1_chain():
    # x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t has ESS = N (1 - rho) / (1 + rho).
    rho, t, c = 0.5, 4000, 4
    x = torch.zeros(t, c)
    x[0] = torch.randn(c)
    noise = torch.randn(t, c) * math.sqrt(1 - rho**2)
    for i in range(1, t):
        x[i] = rho * x[i - 1] + noise[i]
    ess = effective_sample_size(x[:, :, None])
    expected = t * c * (1 - rho) / (1 + rho)
    assert abs(ess.item() / expected - 1) < 0.2, (ess, expected)
    with pytest.raises(ValueError, match=r"\(T, C, \*E\)"):
        effective_sample_size(torch.zeros(3))


def test_importance_ess_bounds():
    assert torch.isclose(importance_ess(torch.zeros(50)), torch.tensor(50.0))
    one_hot = torch.full((50,), -torch.inf)
    one_hot[3] = 0.0
    assert torch.isclose(importance_ess(one_hot), torch.tensor(1.0))


# Samplers over any density.


def _normal(scale):
    return dist.Normal(torch.zeros(1), scale * torch.ones(1)).to_event(1)


def test_rejection_sampling_is_exact_with_rate_one_over_m():
    # p = N(0, 1), q = N(0, 2^2): p / q <= 2 (at 0), so the acceptance rate is 1/2.
    result = rejection_sample(_normal(1.0), _normal(2.0), math.log(2.0), 20_000)
    x = result.x[:, 0]
    assert x.shape == (20_000,)
    assert_mean(torch.stack([x, x**2], -1), torch.tensor([0.0, 1.0]), "rejection samples")
    se = math.sqrt(0.25 / result.proposed)
    assert abs(result.acceptance_rate - 0.5) < Z * se


def test_rejection_sampling_an_energy_model():
    # Unnormalised: exp(-x^2 / 2) has Z = sqrt(2 pi), so the rate is Z / M.
    ebm = pg.energy.EnergyBased(lambda x: (x**2).sum(-1) / 2, (1,))
    log_m = math.log(2.0 * math.sqrt(2 * math.pi))  # M q(x) >= exp(-x^2 / 2)
    result = rejection_sample(ebm, _normal(2.0), log_m, 5000)
    expected = math.sqrt(2 * math.pi) / math.exp(log_m)
    assert abs(result.acceptance_rate - expected) < Z * math.sqrt(0.25 / result.proposed)


def test_rejection_sampling_refuses_a_broken_bound():
    with pytest.raises(ValueError, match="bound"):
        rejection_sample(_normal(1.0), _normal(2.0), math.log(1.5), 1000)


def test_importance_sampling_normaliser_expectations_and_resampling():
    target = lambda x: -(x**2).sum(-1) / 2 + 1.0  # noqa: E731  (log Z = log sqrt(2 pi) + 1)
    result = importance_sample(target, _normal(2.0), 20_000)
    log_z = 0.5 * math.log(2 * math.pi) + 1.0
    assert abs(result.log_z - log_z) < Z * result.stderr
    assert 1 <= result.ess <= 20_000
    # Self-normalised second moment: consistent; its error is ~ sd / sqrt(ESS).
    m2 = result.expectation(lambda x: x**2)
    assert abs(m2.item() - 1.0) < Z * math.sqrt(2.0 / result.ess)
    x = result.resample(5000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5000, 1) and abs(x.var().item() - 1.0) < 0.15


# Persistent chains.


def test_replay_buffer_reinitialises_a_fraction():
    buffer = ReplayBuffer(1000, reinit=0.25)
    g = torch.Generator().manual_seed(0)
    x, idx = buffer.draw(400, lambda k: torch.zeros(k, 2), generator=g)
    buffer.update(idx, x + 1.0)
    x, idx = buffer.draw(4000, lambda k: torch.zeros(k, 2), generator=g)
    fresh = (x == 0).all(-1).double().mean()
    # Fresh: the reinitialised quarter plus the never-updated slots (about 67% of them).
    p_stale = (1 - 1 / 1000) ** 400
    expected = 0.25 + 0.75 * p_stale
    assert abs(fresh - expected) < Z * math.sqrt(expected * (1 - expected) / 4000) + 0.01
    state = buffer.state_dict()
    other = ReplayBuffer(1)
    other.load_state_dict(state)
    assert torch.equal(other.x, buffer.x) and other.reinit == 0.25


# Pyro interop.


def _conjugate_model(y, z):
    # lam ~ Gamma(2, 1), y ~ Poisson(lam); mu ~ N(0, 1) (two of them), z ~ N(mu, 1): both
    # posteriors conjugate, one site constrained (Pyro's transform and Jacobian), one a vector.
    def model():
        lam = pyro.sample("lam", dist.Gamma(2.0, 1.0))
        mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("counts", len(y)):
            pyro.sample("y", dist.Poisson(lam), obs=y)
        with pyro.plate("points", len(z)):
            pyro.sample("z", dist.Normal(mu, 1.0).to_event(1), obs=z)

    a, b = 2.0 + y.sum(), 1.0 + len(y)
    post = {
        "lam": (a / b, a.sqrt() / b),
        "mu": (z.sum(0) / (1 + len(z)), torch.full((2,), 1 / math.sqrt(1 + len(z)))),
    }
    return model, post


def _check_posterior(samples, post):
    for name, (mean, sd) in post.items():
        s = samples[name].reshape(len(samples[name]), -1)
        ess = effective_sample_size(s[:, None])
        z = (s.mean(0) - torch.as_tensor(mean).reshape(-1)) / (torch.as_tensor(sd) / ess.sqrt())
        assert (z.abs() < Z).all(), f"{name}: mean {s.mean(0)}, exact {mean}, ESS {ess}"
        assert (ess > 50).all(), f"{name}: ESS {ess}"


@pytest.mark.parametrize(
    "kernel",
    [MALA(0.1), pytest.param(RandomWalk(0.5), marks=pytest.mark.slow),
     pytest.param(HMC(0.2, steps=5), marks=pytest.mark.slow)],
    ids=["mala", "rwm", "hmc"],
)  # fmt: skip
def test_pyro_adapter_recovers_a_conjugate_posterior(kernel):
    pyro.set_rng_seed(0)
    y = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 2.0])
    z = torch.tensor([[0.5, -1.0], [1.5, 0.0], [1.0, -2.0], [0.0, -0.5]])
    model, post = _conjugate_model(y, z)
    slow = not isinstance(kernel, MALA)
    wrapped = ToPyroKernel(kernel, model)
    mcmc = MCMC(wrapped, num_samples=2000 if slow else 400, warmup_steps=200 if slow else 100,
                disable_progbar=True)  # fmt: skip
    mcmc.run()
    _check_posterior(mcmc.get_samples(), post)
    assert wrapped.kernel is not kernel  # adaptation made a new kernel, the old one is intact
    assert 0 < mcmc.diagnostics()["acceptance rate"]["chain 0"] < 1


def test_pyro_adapter_takes_a_potential_function():
    pyro.set_rng_seed(0)
    potential = lambda p: (p["x"] ** 2).sum() / 2  # noqa: E731
    wrapped = ToPyroKernel(HMC(0.5, steps=3), potential_fn=potential,
                           initial_params={"x": torch.zeros(3)})  # fmt: skip
    mcmc = MCMC(wrapped, num_samples=200, warmup_steps=50, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["x"].shape == (200, 3)
    with pytest.raises(ValueError, match="exactly one"):
        ToPyroKernel(HMC(), None)


@pytest.mark.parametrize("kernel", ["nuts", pytest.param("hmc", marks=pytest.mark.slow)])
def test_pyro_nuts_and_hmc_sample_an_energy_model(kernel):
    from pyro.infer.mcmc import HMC as PyroHMC

    pyro.set_rng_seed(0)
    # exp(-E) with E = |x - 1|^2 / 2: N(1, I).
    ebm = pg.energy.EnergyBased(lambda x: ((x - 1) ** 2).sum(-1) / 2, (2,))
    extra = {"num_steps": 5} if kernel == "hmc" else {}
    pyro_kernel = PyroHMC if kernel == "hmc" else pyro.infer.mcmc.NUTS
    x = sample_with_pyro(ebm, torch.zeros(2, 2), 150, warmup_steps=50, kernel=pyro_kernel, **extra)
    assert x.shape == (150, 2, 2)
    ess = effective_sample_size(x)
    z = (x.mean((0, 1)) - 1.0) / (1.0 / ess.sqrt())
    assert (z.abs() < Z).all(), (x.mean((0, 1)), ess)
