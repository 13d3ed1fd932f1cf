r"""Energy-based models: normalisers (quadrature, AIS, enumeration), contrastive divergence,
RBM algebra, sampling from a nested initial distribution, energy guidance.

Statistical checks: z- and t-tests with stated false failure rates (|z| > 4.42 has
probability 1e-5; |t| > 5 with 39 degrees of freedom about 1.3e-5); AIS is checked
against exact values within 5 of its reported standard errors (the delta-method error
is itself estimated from the weights, hence the margin over 4.42).
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn as nn

import probgen as pg
from probgen.samplers import HMC, MALA, ULA, BlockGibbs, ReplayBuffer
from probgen.testing import check_normalized

Z = 4.42


class GaussianEnergy(nn.Module):
    # E(x) = sum_i p_i (x_i - mu_i)^2 / 2: the energy of N(mu, diag(1 / p)), log Z known.
    def __init__(self, mu=(0.0, 0.0), precision=(1.0, 1.0)) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(mu))
        self.log_precision = nn.Parameter(torch.tensor(precision).log())

    def forward(self, x):
        return (self.log_precision.exp() * (x - self.mu) ** 2).sum(-1) / 2

    def log_z(self):
        p = self.log_precision.exp()
        return 0.5 * (len(p) * math.log(2 * math.pi) - p.log().sum())


def test_log_prob_raises_and_names_what_to_use():
    d = pg.energy.EBM(GaussianEnergy(), 2, steps=2)()
    assert d.log_prob_kind == "unnormalized"
    with pytest.raises(NotImplementedError, match="unnormalized_log_prob") as info:
        d.log_prob(torch.zeros(2))
    assert "log_normalizer" in str(info.value) and "normalized" in str(info.value)
    assert torch.allclose(d.unnormalized_log_prob(torch.ones(2)), -d.energy(torch.ones(2)))
    # Fitting by maximum likelihood fails loudly, and says what to do instead.
    with pytest.raises(NotImplementedError, match="contrastive_divergence"):
        pg.objectives.nll(pg.energy.EBM(GaussianEnergy(), 2), torch.zeros(4, 2))


@pytest.mark.parametrize("dims", [1, 2])
def test_quadrature_normalizer_of_a_gaussian_energy(dims):
    net = GaussianEnergy(mu=(0.5,) * dims, precision=(2.0, 0.5)[:dims])
    d = pg.energy.EBM(net, dims)()
    est = d.log_normalizer()
    assert est.method == "quadrature" and est.value.shape == ()
    assert abs(est.value.item() - net.log_z().item()) < 1e-6
    n = d.normalized()
    assert n.log_prob_kind == "estimate" and d.log_prob_kind == "unnormalized"
    exact = torch.distributions.Normal(net.mu, net.log_precision.exp().rsqrt())
    x = torch.randn(5, dims)
    assert torch.allclose(n.log_prob(x), exact.log_prob(x).sum(-1), atol=1e-6)


class ContextEnergy(nn.Module):
    # E(x | c) = |x - c_{:2}|^2 / (2 exp(c_2)^2): a Gaussian whose mean and scale follow c.
    def forward(self, x, c):
        return ((x - c[..., :2]) ** 2).sum(-1) / (2 * torch.exp(2 * c[..., 2]))


def test_conditional_ebm_normalizes_per_context():
    ebm = pg.energy.EBM(ContextEnergy(), 2, context=3, steps=3)
    c = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, -0.5], [0.5, 0.5, 0.3]])
    d = ebm(c)
    assert d.batch_shape == (3,) and d.sample((5,)).shape == (5, 3, 2)
    est = d.log_normalizer()
    exact = math.log(2 * math.pi) + 2 * c[:, 2]
    assert torch.allclose(est.value, exact, atol=1e-6)
    check_normalized(d.normalized(est), -10.0, 10.0, n=300, atol=1e-4)
    # AIS runs every context's chains at once: one estimate per batch element.
    g = torch.Generator().manual_seed(0)
    ais = d.log_normalizer("ais", chains=500, betas=50, kernel=HMC(0.3, steps=5), generator=g)
    assert ais.value.shape == ais.stderr.shape == ais.ess.shape == (3,)
    assert ((ais.value - exact).abs() < 5 * ais.stderr + 1e-3).all(), (ais, exact)


def test_ais_normalizer_of_a_gaussian_energy():
    # In 3-D "auto" is AIS, from the standard normal init to N(mu, diag(1 / p)).
    net = GaussianEnergy(mu=(1.0, -0.5, 0.0), precision=(4.0, 1.0, 0.25))
    d = pg.energy.EBM(net, 3, kernel=ULA(0.05))()  # ULA is swapped for MALA: exact AIS
    g = torch.Generator().manual_seed(0)
    est = d.log_normalizer(chains=1000, betas=100, kernel=HMC(0.2, steps=5), generator=g)
    assert est.method == "ais" and 1 <= est.ess <= 1000
    err = est.value.item() - net.log_z().item()
    assert abs(err) < 5 * est.stderr.item(), (err, est.stderr)
    default = d.log_normalizer(chains=500, betas=100, generator=g)
    assert abs(default.value.item() - net.log_z().item()) < 5 * default.stderr.item()
    assert d.normalized(est).log_prob_kind == "estimate"


def test_sampling_from_a_nested_flow_init():
    # The chains start from a (random) MAF and move to N(mu, 0.5^2 I) under MALA.
    torch.manual_seed(0)
    net = GaussianEnergy(mu=(1.0, -1.0), precision=(4.0, 4.0))
    flow = pg.flows.MAF(2, transforms=2, hidden=(8,))
    ebm = pg.energy.EBM(net, 2, init=flow, kernel=MALA(0.1), steps=100)
    x = ebm().sample((2000,), generator=torch.Generator().manual_seed(1))
    assert x.shape == (2000, 2) and not x.requires_grad
    stats = torch.cat([x, (x - net.mu.detach()) ** 2], -1)
    expected = torch.tensor([1.0, -1.0, 0.25, 0.25])
    z = (stats.mean(0) - expected) / (stats.std(0) / math.sqrt(len(x)))
    assert (z.abs() < Z).all(), (stats.mean(0), z)


def _gradients(model, objective, batches):
    grads = []
    for x in batches:
        model.zero_grad()
        objective(model, x).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(grads)


def _t(grads):
    return grads.mean(0) / (grads.std(0) / math.sqrt(len(grads)))


def test_cd_gradient_vanishes_at_the_true_gaussian_energy():
    # Data from the model itself and a kernel that leaves it invariant: the negatives are
    # samples of the model too, so E[grad] = E_data[grad E] - E_model[grad E] = 0.
    torch.manual_seed(0)
    net = GaussianEnergy(mu=(1.0, -1.0), precision=(4.0, 1.0))
    ebm = pg.energy.EBM(net, 2, kernel=MALA(0.05), steps=10)
    scale = net.log_precision.exp().rsqrt().detach()
    batches = [net.mu.detach() + scale * torch.randn(400, 2) for _ in range(40)]
    objective = pg.objectives.contrastive_divergence
    t = _t(_gradients(ebm, objective, batches))
    assert (t.abs() < 5).all(), t
    # Power: with the energy's mean off by -0.5 the gradient is far from zero, and a
    # descent step moves the mean towards the data (d loss / d mu < 0).
    with torch.no_grad():
        net.mu -= 0.5
    grads = _gradients(ebm, objective, batches)
    assert (_t(grads)[:2] < -10).all() and (grads.mean(0)[:2] < 0).all()


def _teacher(visible=4, hidden=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pg.energy.RBMTarget(
        torch.randn(hidden, visible, generator=g),
        0.5 * torch.randn(visible, generator=g),
        0.5 * torch.randn(hidden, generator=g),
    )


def _states(n):
    return torch.tensor([[(i >> j) & 1 for j in range(n)] for i in range(2**n)]).double()


def _brute_force_log_z(rbm):
    H, V = rbm.weight.shape
    v, h = _states(V), _states(H)
    joint = (
        v @ rbm.visible_bias
        + (h @ rbm.hidden_bias)[:, None]
        + h @ rbm.weight @ v.T
    )  # (2^H, 2^V): -E(v, h)
    return joint.logsumexp((0, 1)), joint.logsumexp(0)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)], ids=["V>H", "H>V"])
def test_rbm_free_energy_and_exact_log_z(shape):
    V, H = shape
    rbm = _teacher(V, H, seed=1)
    log_z, marginal = _brute_force_log_z(rbm)
    v = _states(V)
    assert torch.allclose(rbm(v), marginal, atol=1e-10)  # -F(v) = log sum_h exp(-E)
    assert torch.allclose(rbm.log_z(), log_z, atol=1e-10)
    d = pg.energy.RestrictedBoltzmann(rbm)
    n = d.normalized()
    assert n.log_prob_kind == "exact"
    assert torch.isclose(n.log_prob(v).logsumexp(0), torch.tensor(0.0, dtype=v.dtype))
    assert torch.allclose(d.free_energy(v), -marginal)


def test_rbm_ais_matches_exact_log_z_within_its_error():
    # Exact by enumeration over 2^10 hidden states; AIS from the base-rate RBM.
    g = torch.Generator().manual_seed(3)
    rbm = pg.energy.RBMTarget(
        0.5 * torch.randn(10, 16, generator=g),
        0.3 * torch.randn(16, generator=g),
        0.3 * torch.randn(10, generator=g),
    )
    d = pg.energy.RestrictedBoltzmann(rbm)
    exact = d.log_normalizer("enumeration")
    est = d.log_normalizer("ais", chains=500, betas=300, generator=g)
    assert est.method == "ais" and est.stderr > 0
    assert abs(est.value - exact.value) < 5 * est.stderr, (est, exact)
    # A base rate from the data's marginals: still unbiased.
    base = torch.logit(torch.full((16,), 0.3))
    est = d.log_normalizer("ais", chains=500, betas=300, base_bias=base, generator=g)
    assert abs(est.value - exact.value) < 5 * est.stderr


def test_cd_gradient_vanishes_for_an_rbm_at_its_own_data():
    # CD-1 with block Gibbs, data drawn exactly from the RBM (by enumeration).
    torch.manual_seed(0)
    model = pg.energy.RBM(4, 3, steps=1)
    teacher = _teacher()
    with torch.no_grad():
        model.weight.copy_(teacher.weight)
        model.visible_bias.copy_(teacher.visible_bias)
        model.hidden_bias.copy_(teacher.hidden_bias)
    states = _states(4)
    probs = teacher(states).softmax(0)
    batches = [states[torch.multinomial(probs, 500, replacement=True)] for _ in range(40)]
    t = _t(_gradients(model, pg.objectives.contrastive_divergence, batches))
    assert (t.abs() < 5).all(), t
    # Power: data from another RBM give gradients far from zero.
    other = _teacher(seed=5)
    probs = other(states).softmax(0)
    batches = [states[torch.multinomial(probs, 500, replacement=True)] for _ in range(40)]
    assert _t(_gradients(model, pg.objectives.contrastive_divergence, batches)).abs().max() > 10


def _nll(model, data):
    d = model().normalized()
    return -d.log_prob(data).mean().item()


@pytest.mark.parametrize("persistent", [False, True], ids=["cd1", "pcd"])
def test_rbm_training_lowers_the_exact_nll(persistent):
    # A 6-4 student trained on a 6-4 teacher's samples: its exact NLL (log Z by
    # enumeration) falls most of the way from the uniform start to the teacher's entropy.
    torch.manual_seed(0)
    teacher = _teacher(6, 4, seed=2)
    states = _states(6)
    probs = teacher(states).softmax(0)
    data = states[torch.multinomial(probs, 5000, replacement=True)]
    entropy = -(probs * probs.log()).sum().item()
    student = pg.energy.RBM(6, 4, steps=1)
    start = _nll(student, data)
    if persistent:
        buffer = ReplayBuffer(500, reinit=0.0)
        objective = partial(pg.objectives.persistent_contrastive_divergence, buffer=buffer)
    else:
        objective = pg.objectives.contrastive_divergence
    pg.fit(student, data, objective=objective, steps=150, batch_size=100, lr=0.1,
           progress=False, seed=0)  # fmt: skip
    end = _nll(student, data)
    assert end - entropy < 0.3 * (start - entropy), (start, end, entropy)


def test_pcd_trains_a_gaussian_energy():
    # Persistent chains with MALA and the energy penalty move the energy's mean and
    # precision to the data's (N((1, -1), diag(0.25, 1)).
    torch.manual_seed(0)
    net = GaussianEnergy()
    ebm = pg.energy.EBM(net, 2, kernel=MALA(0.1), steps=5)
    data = torch.tensor([1.0, -1.0]) + torch.tensor([0.5, 1.0]) * torch.randn(4000, 2)
    buffer = ReplayBuffer(1000, reinit=0.05)
    objective = partial(pg.objectives.persistent_contrastive_divergence, buffer=buffer,
                        regularization=1e-3)  # fmt: skip
    pg.fit(ebm, data, objective=objective, steps=200, batch_size=200, lr=0.05, progress=False,
           seed=0)  # fmt: skip
    # From mu = 0 and precisions 1: within the noise of Adam's last steps of the truth.
    assert torch.allclose(net.mu, torch.tensor([1.0, -1.0]), atol=0.2), net.mu
    precision = net.log_precision.exp()
    assert torch.allclose(precision, torch.tensor([4.0, 1.0]), rtol=0.25), precision


def test_cd_from_the_init_and_validation():
    ebm = pg.energy.EBM(GaussianEnergy(), 2, steps=3)
    loss = pg.objectives.contrastive_divergence(ebm, torch.randn(8, 2), start="init",
                                                regularization=0.1)  # fmt: skip
    assert loss.shape == () and torch.isfinite(loss)
    with pytest.raises(ValueError, match="start"):
        pg.objectives.contrastive_divergence(ebm, torch.randn(8, 2), start="noise")
    assert pg.objectives.energy_regularization(torch.ones(3), torch.zeros(2)) == 1.0


def test_rbm_sampling_and_conditional_shapes():
    rbm = pg.energy.RBM(5, 3, context=2, kernel=BlockGibbs(sweeps=2), steps=4)
    pg.testing.perturb(rbm, scale=1.0)  # away from the near-uniform initialisation
    c = torch.randn(3, 2)
    d = rbm(c)
    v = d.sample((7,))
    assert v.shape == (7, 3, 5) and set(v.unique().tolist()) <= {0.0, 1.0}
    assert d.normalized().log_prob(v).shape == (7, 3)
    exact = d.log_normalizer()
    assert exact.value.shape == (3,) and exact.method == "enumeration"
    g = torch.Generator().manual_seed(0)
    ais = d.log_normalizer("ais", chains=500, betas=200, generator=g)
    assert ais.value.shape == (3,)
    assert ((ais.value - exact.value).abs() < 5 * ais.stderr + 1e-3).all(), (ais, exact)
    with pytest.raises(ValueError):
        d.unnormalized_log_prob(torch.full((3, 5), 0.5))  # off the support {0, 1}^5


def test_guided_score_is_the_score_of_the_product():
    # s(x, t) of N(0, sigma_t^2 I) plus the energy of N(m, tau^2 I), weight w: the score of
    # N(0, sigma^2) N(m, tau^2 / w), a Gaussian with precision 1/sigma^2 + w/tau^2.
    m, tau, w = torch.tensor([1.0, -2.0]), 0.5, 0.7
    sigma = lambda t: 1 + t  # noqa: E731
    score = lambda x, t: -x / sigma(t) ** 2  # noqa: E731
    energy = lambda x: ((x - m) ** 2).sum(-1) / (2 * tau**2)  # noqa: E731
    guided = pg.energy.guided_score(score, energy, weight=w)
    x, t = torch.randn(10, 2), torch.tensor(0.3)
    precision = 1 / sigma(t) ** 2 + w / tau**2
    mean = (w * m / tau**2) / precision
    assert torch.allclose(guided(x, t), -(x - mean) * precision)
    # A time-dependent energy gets t.
    timed = pg.energy.guided_score(score, lambda x, t: energy(x) * t, time=True)
    precision = 1 / sigma(t) ** 2 + t / tau**2
    assert torch.allclose(timed(x, t), -(x - (t * m / tau**2) / precision) * precision)
    # An energy model's energy composes as it is.
    ebm = pg.energy.EnergyBased(energy, (2,))
    assert torch.allclose(pg.energy.guided_score(score, ebm.energy)(x, t), guided(x, t) + (w - 1)
                          * (x - m) / tau**2)  # fmt: skip
