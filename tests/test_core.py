r"""The core layer: lazy modules, the distribution base class, validation, closed forms."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

import probgen as pg
import probgen.testing
from probgen.distributions import DiagNormal, GenerativeDistribution, NormalizingFlow, log_prob_kind
from probgen.lazy import UnconditionalDistribution, UnconditionalTransform
from probgen.transforms import IndependentTransform, MonotonicAffineTransform


def _affine(shift, log_scale):
    return IndependentTransform(MonotonicAffineTransform(shift, log_scale), 1)


def test_pushforward_of_an_affine_map_is_the_gaussian():
    shift, log_scale = torch.tensor([1.0, -2.0]), torch.tensor([0.3, -0.5])
    d = NormalizingFlow(DiagNormal(torch.zeros(2), torch.ones(2)), _affine(shift, log_scale))
    x = torch.randn(10, 2)
    scale = MonotonicAffineTransform(shift, log_scale).log_scale.exp()
    expected = dist.Normal(shift, scale).to_event(1).log_prob(x)
    assert torch.allclose(d.log_prob(x), expected)
    # And its samples have that mean and scale (Monte Carlo, 5 standard errors).
    s = d.sample((40000,))
    assert ((s.mean(0) - shift).abs() < 5 * scale / 200).all()


def test_diag_normal_matches_torch_and_its_entropy():
    loc, scale = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    d = DiagNormal(loc, scale)
    x = torch.randn(5, 3, 4)
    assert torch.allclose(d.log_prob(x), dist.Normal(loc, scale).to_event(1).log_prob(x))
    assert torch.allclose(d.entropy(), dist.Normal(loc, scale).to_event(1).entropy())
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    assert d.expand((2, 3)).sample().shape == (2, 3, 4)


def test_validation_names_shapes_and_values():
    d = pg.flows.MAF(2, transforms=1, hidden=(4,))()
    with pytest.raises(ValueError, match=r"event_shape \(2,\).*got shape \(5, 3\)"):
        d.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="non-finite"):
        d.log_prob(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="non-finite"):
        d.log_prob(torch.tensor([math.inf, 0.0]))
    cflow = pg.flows.MAF(2, context=3, transforms=1, hidden=(4,))
    with pytest.raises(ValueError, match=r"context with shape \(\*, 3\), got \(4, 2\)"):
        cflow(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="expects a context"):
        cflow()
    with pytest.raises(ValueError, match="unconditional"):
        pg.flows.MAF(2, transforms=1)(torch.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        cflow(torch.tensor([0.0, math.nan, 0.0]))


def test_builders_reject_bad_sizes():
    with pytest.raises(ValueError, match="features"):
        pg.flows.MAF(0)
    with pytest.raises(ValueError, match="at least 2 features"):
        pg.flows.RealNVP(1)


def test_log_prob_kind_sees_through_pyro_wrappers():
    d = pg.flows.NSF(2, transforms=1, bins=3)()
    assert d.log_prob_kind == "exact"
    assert log_prob_kind(d.expand((3,))) == "exact"
    assert log_prob_kind(d.mask(False)) == "exact"
    assert log_prob_kind(dist.Normal(0.0, 1.0)) == "exact"

    class Unnormalized(GenerativeDistribution):
        log_prob_kind = "unnormalized"

    assert log_prob_kind(dist.Independent(Unnormalized(torch.Size([2])), 1)) == "unnormalized"


def test_memo_only_answers_for_the_same_tensor():
    d = pg.testing.perturb(pg.flows.IAF(2, transforms=1, hidden=(4,)))()
    x = d()  # __call__ draws and scores in one pass
    assert d._memoized(x) is not None
    assert d._memoized(x.clone()) is None
    assert torch.allclose(d.log_prob(x), d.log_prob(x.clone()))


def test_lazy_modules_build_fresh_values_and_follow_the_module():
    base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2))
    assert base() is not base()
    assert set(dict(base.named_buffers())) == {"_0", "_1"}
    t = UnconditionalTransform(_affine, torch.zeros(2), torch.zeros(2))
    assert len(list(t.parameters())) == 2
    flow = pg.flows.Flow([t], base)
    x = torch.randn(3, 2)
    assert torch.allclose(flow().log_prob(x), base().log_prob(x))
    assert flow.condition() is not flow.condition()


def test_the_flow_is_a_module_that_saves_whole():
    import io

    flow = pg.testing.perturb(pg.flows.NSF(2, context=1, transforms=2, hidden=(8,)))
    buffer = io.BytesIO()
    torch.save(flow, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    c, x = torch.randn(4, 1), torch.randn(4, 2)
    assert torch.equal(flow(c).log_prob(x), again(c).log_prob(x))


def test_iaf_samples_in_one_pass_and_maf_scores_in_one():
    from probgen.lazy import LazyInverse

    iaf, maf = pg.flows.IAF(3, transforms=2), pg.flows.MAF(3, transforms=2)
    assert all(isinstance(t, LazyInverse) for t in iaf.transforms)
    assert not any(isinstance(t, LazyInverse) for t in maf.transforms)
