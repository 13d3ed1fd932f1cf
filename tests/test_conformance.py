r"""The shared conformance suite: every family in the registry, every contract."""

from __future__ import annotations

import pytest
import torch
from registry import CASES, Case, build

import probgen.testing as T
from probgen.distributions import log_prob_kind


def _context(case: Case, *batch: int) -> torch.Tensor | None:
    return torch.randn(*batch, case.context) if case.context else None


def _data(model, c):
    with torch.no_grad():
        return (model(c) if c is not None else model()).sample((5,))


def _skip(case: Case, check: str) -> None:
    if check in case.skip:
        pytest.skip(case.skip[check])


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_shapes(case: Case):
    model = build(case)
    T.check_shapes(model, _context(case, 2), sample_shape=(3,))
    T.check_shapes(model, _context(case, 4, 2), sample_shape=())
    if case.context:
        # A context without batch dimensions gives an unbatched distribution.
        d = model(torch.randn(case.context))
        assert d.batch_shape == () and d.event_shape == case.event_shape
    else:
        d = model()
        assert d.batch_shape == () and tuple(d.event_shape) == case.event_shape


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_log_prob_kind(case: Case):
    d = build(case)(_context(case, 2))
    assert log_prob_kind(d) in ("exact", "estimate", "bound", "unnormalized", "none")


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_transform_is_bijective_with_exact_ladj(case: Case):
    model = build(case)
    c = _context(case, 3)
    d = model(c) if c is not None else model()
    if not hasattr(d, "transform"):
        pytest.skip("not a pushforward")
    x = d.base.sample((3,)) if c is None else d.base.sample()
    T.check_transform(d.transform, x)


@pytest.mark.parametrize("case", [c for c in CASES if c.quadrature], ids=repr)
def test_normalized(case: Case):
    _skip(case, "normalized")
    model = build(case)
    c = _context(case, 2)
    d = model(c) if c is not None else model()
    if log_prob_kind(d) != "exact":
        pytest.skip("no exact density to integrate")
    n = 2000 if len(case.event_shape) and case.event_shape[0] == 1 else 300
    T.check_normalized(d, -12.0, 12.0, n=n, atol=5e-3)


@pytest.mark.parametrize("case", [c for c in CASES if c.gof], ids=repr)
def test_goodness_of_fit(case: Case):
    _skip(case, "gof")
    model = build(case)
    c = _context(case)
    d = model(c) if c is not None else model()
    if log_prob_kind(d) != "exact":
        pytest.skip("goodness of fit needs an exact density")
    T.check_goodness_of_fit(d)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_gradients_reach_every_parameter(case: Case):
    _skip(case, "gradients")
    model = build(case)
    c = _context(case, 5)
    x = _data(model, c)
    T.check_gradients(model, x, c)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_train_eval_agree(case: Case):
    model = build(case)
    c = _context(case, 5)
    T.check_train_eval(model, _data(model, c), c)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_state_dict_round_trip(case: Case):
    model = build(case)
    c = _context(case, 5)
    T.check_state_dict(model, case.factory, _data(model, c), c)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_pyro_interop(case: Case):
    model = build(case)
    T.check_pyro(model, _context(case, 2))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input(case: Case):
    model = build(case)
    T.check_bad_input(model, _context(case, 2))
