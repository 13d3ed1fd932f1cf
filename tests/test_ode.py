r"""ODE flows against mathematics: linear ODEs (matrix exponential, trace), the autograd
Jacobian of the solved map, Hutchinson's estimator, closed-form flow matching between
Gaussians, exact minibatch OT."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import probgen as pg
import probgen.testing as T
from probgen.distributions import ContinuousFlow, DiagNormal
from probgen.transforms import ExactTrace, Hutchinson, ODETransform, odeint_with_ladj

TIGHT = dict(rtol=1e-7, atol=1e-7)


def _field(features: int = 2, context: int = 0) -> pg.nn.TimeMLP:
    field = pg.nn.TimeMLP(features, context, hidden=(16, 16), frequencies=2)
    return T.perturb(field.double(), scale=0.1)


def test_linear_ode_matches_matrix_exponential_and_trace():
    A = torch.tensor([[0.3, -1.0, 0.2], [0.8, -0.4, 0.0], [0.1, 0.5, -0.2]])
    x = torch.randn(6, 3)
    t0, t1 = 0.2, 0.9
    f = ODETransform(lambda x, t, c: x @ A.T, t0=t0, t1=t1, **TIGHT)
    y, ladj = pg.transforms.call_and_ladj(f, x)
    expected = x @ torch.linalg.matrix_exp((t1 - t0) * A).T
    assert torch.allclose(y, expected, atol=1e-8)
    assert torch.allclose(ladj, torch.full((6,), (t1 - t0) * A.trace().item()), atol=1e-8)
    # Backwards: the inverse map and the same forward ladj at the preimage.
    x2, ladj2 = pg.transforms.inv_call_and_ladj(f, y)
    assert torch.allclose(x2, x, atol=1e-8) and torch.allclose(ladj2, ladj, atol=1e-8)


@pytest.mark.parametrize("context", [0, 2])
def test_inverse_and_ladj_against_autograd_jacobian(context):
    field = _field(2, context)
    c = torch.randn(5, context) if context else None
    f = ODETransform(field, c, **TIGHT)
    T.check_transform(f, torch.randn(5, 2), atol=1e-5)


def test_adjoint_gradients_match_direct_backpropagation():
    field = _field()
    x = torch.randn(4, 2)
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        _, ladj = ODETransform(field, adjoint=adjoint, **TIGHT).call_and_ladj(x)
        ladj.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in field.parameters()]))
    # Both are solver-accurate: they agree to the tolerance, not to rounding.
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_nfe_is_reported_per_solve():
    f = ODETransform(_field(), method="rk4", options={"step_size": 0.25})
    sol = f.solve(torch.randn(3, 2))
    assert sol.nfe == 4 * 4 and sol.ladj.shape == (3,)
    assert f.solve(torch.randn(3, 2), ladj=False).ladj is None
    d = pg.ode.CNF(2, hidden=(8,))()
    assert d.log_prob_and_nfe(d.sample((3,)))[1] > 0 and d.sample_and_nfe((3,))[1] > 0


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_averages_its_probes(noise):
    # The estimate with K probes is exactly the mean of the K one-probe quadratic forms.
    A = torch.randn(3, 3)
    x = torch.randn(4, 3, requires_grad=True)
    v = x @ A.T
    h = Hutchinson(probes_per_solve=5, noise=noise)
    eps = h.probes(x, 1)
    assert eps.shape == (5, 4, 3)
    expected = torch.einsum("kni,ij,knj->kn", eps, A, eps).mean(0)
    assert torch.allclose(h(v, x, eps, 1, False), expected)
    assert torch.allclose(ExactTrace()(v, x, None, 1, False), A.trace().expand(4))


def test_hutchinson_solve_is_unbiased():
    # One solve of n copies of a point: n independent one-probe estimates of the ladj.
    field, n = _field(), 4000
    x = torch.randn(1, 2).expand(n, 2)
    exact = ODETransform(field, **TIGHT).solve(x[:1]).ladj
    est = ODETransform(field, divergence=Hutchinson(), rtol=1e-7, atol=1e-7).solve(x).ladj
    # 5 standard errors: a false failure rate below 1e-6.
    assert (est.mean() - exact).abs() < 5 * est.std() / math.sqrt(n)
    assert est.std() > 0


def test_hutchinson_model_is_an_estimate():
    d = pg.ode.CNF(2, hidden=(8,), divergence=Hutchinson(2))()
    assert d.log_prob_kind == "estimate"
    assert pg.ode.CNF(2, hidden=(8,))().log_prob_kind == "exact"


class _Field(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x, t, c=None):
        return self.f(x, t, c)


def _gaussian_velocity(path, m: torch.Tensor, s: float):
    # Noise N(0, I), data N(m, s^2 I), independent coupling: x_t ~ N(a m, (sig^2 + a^2 s^2) I)
    # and the marginal velocity is affine in x.
    def v(x, t, c=None):
        (a, sig), (da, dsig) = path.alpha_sigma(t), path.derivatives(t)
        var = sig**2 + a**2 * s**2
        return da * m + (sig * dsig + a * da * s**2) / var * (x - a * m)

    return v


@pytest.mark.parametrize("path", [pg.ode.LinearPath(), pg.ode.VPPath()], ids=repr)
def test_closed_form_velocity_between_gaussians(path):
    m, s = torch.tensor([1.0, -2.0]), 0.5
    base = DiagNormal(torch.zeros(2), torch.ones(2))
    d = ContinuousFlow(base, ODETransform(_gaussian_velocity(path, m, s), **TIGHT))
    x = m + s * torch.randn(20, 2)
    target = DiagNormal(m, torch.full((2,), s))
    assert torch.allclose(d.log_prob(x), target.log_prob(x), atol=1e-6)
    y = d.sample((4000,))
    # Mean within 5 standard errors; the standard deviation within 10%.
    assert ((y.mean(0) - m).abs() < 5 * s / math.sqrt(4000)).all()
    assert ((y.std(0) - s).abs() < 0.1 * s).all()


def test_flow_matching_loss_is_minimal_at_the_marginal_velocity():
    # E||v - u||^2 = E||v - v*||^2 + const: the closed-form field beats a perturbed one.
    m, s = torch.tensor([1.0, -2.0]), 0.5
    path = pg.ode.LinearPath()
    model = pg.ode.FlowMatching(2, hidden=(8,))
    x = m + s * torch.randn(20000, 2)
    exact = _gaussian_velocity(path, m, s)
    model.field = _Field(lambda x, t, c: exact(x, t[..., None]))
    low = pg.objectives.flow_matching(model, x)
    model.field = _Field(lambda x, t, c: exact(x, t[..., None]) + 0.3)
    high = pg.objectives.flow_matching(model, x)
    assert high - low > 0.9 * 2 * 0.3**2


def test_ot_coupling_is_the_exact_assignment():
    x0, x1 = torch.randn(6, 2), torch.randn(6, 2)
    paired = pg.ode.OTCoupling()(x0, x1)
    best = min(((x1 - x0[list(p)]) ** 2).sum().item() for p in itertools.permutations(range(6)))
    assert abs(((x1 - paired) ** 2).sum().item() - best) < 1e-12
    assert torch.equal(paired.sort(0).values, x0.sort(0).values)


@pytest.mark.parametrize("coupling", [pg.ode.IndependentCoupling(), pg.ode.OTCoupling()], ids=repr)
@pytest.mark.parametrize("context", [0, 3])
def test_fit_flow_matching_and_cnf(coupling, context):
    x = torch.randn(64, 2)
    data = (x, torch.randn(64, context)) if context else x
    fm = pg.ode.FlowMatching(2, context, hidden=(8,), coupling=coupling, path=pg.ode.VPPath())
    h = pg.fit(fm, data, steps=2, batch_size=16, progress=False)
    assert len(h.loss) == 2
    cnf = pg.ode.CNF(2, context, hidden=(8,), rtol=1e-4, atol=1e-4)
    h = pg.fit(cnf, data, steps=2, batch_size=16, progress=False)
    assert len(h.loss) == 2


def test_reflow_trains_on_its_own_pairs():
    fm = pg.ode.FlowMatching(2, hidden=(8,), rtol=1e-4, atol=1e-4)
    x0, x1 = pg.distributions.continuous.reflow_pairs(fm, 32)
    assert x0.shape == x1.shape == (32, 2)
    h = pg.ode.reflow(fm, pairs=32, steps=2, batch_size=16, progress=False)
    assert len(h.loss) == 2


def test_bad_time_grid_and_interval():
    with pytest.raises(ValueError, match="t0 != t1"):
        ODETransform(_field(), t0=0.5, t1=0.5)
    with pytest.raises(ValueError, match="time grid"):
        odeint_with_ladj(_field(), torch.randn(2, 2), torch.tensor([0.0]))


@pytest.mark.slow
def test_flow_matching_learns_a_gaussian():
    torch.manual_seed(0)
    m, s = torch.tensor([1.0, -2.0]), 0.5
    data = m + s * torch.randn(4096, 2)
    fm = pg.ode.FlowMatching(2, hidden=(32, 32), rtol=1e-6, atol=1e-6)
    pg.fit(fm, data, steps=600, batch_size=256, lr=3e-3, progress=False)
    test = m + s * torch.randn(2000, 2)
    nll = -fm().log_prob(test).mean().item()
    entropy = 2 * (0.5 * math.log(2 * math.pi * math.e) + math.log(s))
    assert nll - entropy < 0.05
