r"""Classifier-free guidance against mathematics.

Two Gaussian class conditionals :math:`p(x | k) = \mathcal{N}(m_k, s^2 I)` and, for the
null context, a Gaussian :math:`\mathcal{N}(m_\varnothing, s^2 I)` with the same variance.
Their noised marginals :math:`\mathcal{N}(\alpha_t m, (\alpha_t^2 s^2 + \sigma_t^2) I)` give
exact noise predictions, and the guided score

.. math:: (1 + w) \nabla \log p_t(x | k) - w \nabla \log p_t(x | \varnothing)
    = \nabla \log \mathcal{N}(x; \alpha_t m_g, (\alpha_t^2 s^2 + \sigma_t^2) I), \quad
    m_g = (1 + w) m_k - w m_\varnothing ,

is, at every t, the score of the noised marginal of the guided target
:math:`p(x | k)^{1 + w} p(x | \varnothing)^{-w} \propto \mathcal{N}(m_g, s^2 I)`. So every
sampler driven by the guided noise prediction must reach that Gaussian, and the guided
probability-flow ODE's log_prob must be its density.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from probgen.distributions.continuous import ContinuousFlow
from probgen.distributions.diffusion import (
    DataPrediction,
    Diffusion,
    DiffusionDistribution,
    NoisePrediction,
    VelocityPrediction,
)
from probgen.samplers import sde as S

MEANS = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])  # class k = 0, 1 (one-hot contexts)
NULL_MEAN = torch.tensor([0.0, 0.5])  # the null (zero) context
STD = 0.5
T_MAX = 1 - 1e-3


def _mean(c: torch.Tensor) -> torch.Tensor:
    # One-hot c picks a class mean; the zero context picks the null mean.
    return c @ MEANS.to(c) + (1 - c.sum(-1, keepdim=True)) * NULL_MEAN.to(c)


def _network(sde: S.SDE):
    def eps(x, t, c):
        a, s = sde.alpha_sigma(torch.as_tensor(t, dtype=x.dtype))
        return s * (x - a * _mean(c)) / (a**2 * STD**2 + s**2)

    return eps


def _target(sde: S.SDE, w: float, t: float) -> Independent:
    # The noised guided target at time t, a batch of one Gaussian per class.
    a, s = sde.alpha_sigma(torch.tensor(t))
    m = (1 + w) * MEANS.to(a) - w * NULL_MEAN.to(a)
    std = torch.sqrt(a**2 * STD**2 + s**2)
    return Independent(Normal(a * m, std.expand(2, 2)), 1)


def _guided(sde: S.SDE, w: float, **solver) -> DiffusionDistribution:
    c = torch.eye(2)
    return DiffusionDistribution(
        _network(sde), sde, NoisePrediction(), 2, c, T_MAX, guidance=w, **solver
    )


@pytest.mark.parametrize("param", [NoisePrediction(), DataPrediction(), VelocityPrediction()],
                         ids=repr)  # fmt: skip
def test_guided_eps_is_the_combination_and_zero_guidance_the_conditional(param):
    net = Diffusion(2, context=3, hidden=(16,), parameterization=param).network
    c = torch.randn(4, 3)
    x, t = torch.randn(5, 4, 2), torch.tensor(0.3)
    cond = DiffusionDistribution(net, S.VP(), param, 2, c).eps(x, t)
    null = DiffusionDistribution(net, S.VP(), param, 2, torch.zeros(4, 3)).eps(x, t)
    zero = DiffusionDistribution(net, S.VP(), param, 2, c, guidance=0.0).eps(x, t)
    assert torch.equal(zero, cond)
    w = 2.5
    guided = DiffusionDistribution(net, S.VP(), param, 2, c, guidance=w).eps(x, t)
    assert torch.allclose(guided, (1 + w) * cond - w * null, atol=1e-10)


def test_the_lazy_model_passes_the_guidance_scale():
    model = Diffusion(2, context=2, hidden=(8,))
    c = torch.eye(2)
    x = torch.randn(3, 2, 2)
    assert torch.equal(model(c, guidance=0.0).eps(x, 0.5), model(c).eps(x, 0.5))
    assert model(c, guidance=3.0).guidance == 3.0
    with pytest.raises(ValueError, match="guidance needs a context"):
        Diffusion(2, hidden=(8,))(guidance=1.0)


def _check(y: torch.Tensor, target: Independent, tol: float = 0.03) -> None:
    # y with shape (n, 2 classes, 2): means within 5 standard errors plus the sampler's
    # discretisation tolerance, standard deviations within 5 standard errors
    # (sqrt(1 / 2n)) plus it; 8 checks at 5 sigma each: false failure rate < 1e-5.
    n = len(y)
    std = target.base_dist.scale
    assert ((y.mean(0) - target.mean).abs() < 5 * std / math.sqrt(n) + tol).all(), y.mean(0)
    assert ((y.std(0) / std - 1).abs() < 5 * math.sqrt(0.5 / n) + tol).all(), y.std(0)


SAMPLERS = {
    "ddpm": lambda eps, sde, z: S.ddpm(eps, sde, z, S.uniform_grid(500, T_MAX)),
    "ddim": lambda eps, sde, z: S.ddim(eps, sde, z, S.uniform_grid(50, T_MAX)),
    "euler-maruyama": lambda eps, sde, z: S.euler_maruyama(
        eps, sde, z, S.uniform_grid(500, T_MAX)
    ),
    "predictor-corrector": lambda eps, sde, z: S.predictor_corrector(
        eps, sde, z, S.uniform_grid(250, T_MAX)
    ),
    "heun": lambda eps, sde, z: S.heun(
        lambda x, t: sde.pf_ode(eps)(x, t, None), z, S.uniform_grid(20, T_MAX)
    ),
}


# The long grids (a second or two each) run at w = 3 in the fast suite, every w when slow.
_LONG = ("ddpm", "euler-maruyama", "predictor-corrector")


@pytest.mark.parametrize(
    "sampler, w",
    [
        pytest.param(s, w, marks=pytest.mark.slow) if s in _LONG and w != 3.0 else (s, w)
        for s in SAMPLERS
        for w in (0.0, 1.0, 3.0)
    ],
)
def test_guided_samplers_reach_the_guided_target(sampler, w):
    sde = S.VP()
    d = _guided(sde, w)
    z = d.base.sample((4000,))  # (n, 2, 2): one chain per class
    y, _ = SAMPLERS[sampler](d.eps, sde, z)
    _check(y, _target(sde, w, T_MAX))


def test_guided_probability_flow_samples():
    d = _guided(S.VP(), 2.0, rtol=1e-6, atol=1e-6)
    _check(d.sample((4000,)), _target(d.sde, 2.0, T_MAX))


@pytest.mark.parametrize("sde", [S.VP(), S.VE(0.01, 20.0)], ids=repr)
def test_guided_log_prob_is_the_guided_density(sde):
    w = 2.0
    d = _guided(sde, w, rtol=1e-7, atol=1e-7)
    target = _target(sde, w, T_MAX)
    x = target.sample((10,))
    # From the exact guided marginal at t = 0, the guided ODE carries it to the target.
    flow = ContinuousFlow(_target(sde, w, 0.0), d.transform)
    assert torch.allclose(flow.log_prob(x), target.log_prob(x), atol=1e-4)


class _Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t, c):
        self.seen.append(c)
        return self.scale * x


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_condition_dropout_replaces_the_context_at_the_stated_rate(p):
    net = _Recorder()
    model = Diffusion(2, context=3, network=net, p_uncond=p)
    n = 20000
    c = torch.rand(n, 3) + 1.0  # never zero
    model.default_objective(torch.randn(n, 2), c)
    (seen,) = net.seen
    null = (seen == 0).all(-1)
    assert torch.equal(seen[~null], c[~null])  # the others are left alone
    # A binomial count within 5 standard deviations (false failure rate ~6e-7).
    assert abs(null.double().mean() - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_condition_dropout_needs_a_context():
    with pytest.raises(ValueError, match="p_uncond"):
        Diffusion(2, hidden=(8,), p_uncond=0.1)
