r"""Transforms: inverses, log-determinants, triangular Jacobians, spline numerics."""

from __future__ import annotations

import pytest
import torch

import probgen.testing as T
from probgen.transforms import (
    ComposedTransform,
    Coupling,
    IndependentTransform,
    MaskedAutoregressive,
    MonotonicAffineTransform,
    MonotonicRQSTransform,
    call_and_ladj,
    inv_call_and_ladj,
)


def _spline(*batch: int, bins: int = 6, bound: float = 3.0, scale: float = 2.0):
    return MonotonicRQSTransform(
        scale * torch.randn(*batch, bins),
        scale * torch.randn(*batch, bins),
        scale * torch.randn(*batch, bins - 1),
        bound=bound,
    )


def test_affine_is_exact():
    shift, log_scale = torch.randn(4, 3), torch.randn(4, 3)
    t = IndependentTransform(MonotonicAffineTransform(shift, log_scale), 1)
    T.check_transform(t, torch.randn(4, 3))


def test_affine_log_scale_is_bounded():
    t = MonotonicAffineTransform(torch.zeros(2), torch.tensor([1e4, -1e4]), slope=1e-3)
    bound = -torch.log(torch.tensor(1e-3))
    assert torch.allclose(t.log_scale, torch.stack([bound, -bound]))  # saturated, finite
    # Near 0 the bound is the identity (slope 1), and it is odd and increasing.
    raw = torch.linspace(-20.0, 20.0, 401, requires_grad=True)
    s = MonotonicAffineTransform(torch.zeros(401), raw, slope=1e-3).log_scale
    (slope_at_0,) = torch.autograd.grad(s[200], raw)
    assert torch.isclose(slope_at_0[200], torch.tensor(1.0))
    assert torch.allclose(s, -s.flip(0)) and (s.diff() > 0).all() and (s.abs() < bound).all()


def test_spline_inverse_and_ladj_inside_and_outside():
    t = IndependentTransform(_spline(16, 2), 1)
    x = 4 * torch.randn(16, 2)  # about half the points fall in the identity tails
    T.check_transform(t, x)


def test_spline_is_identity_outside_its_bound():
    t = _spline(100, bound=2.0)
    x = torch.linspace(2.0001, 50.0, 100) * torch.where(torch.arange(100) % 2 == 0, 1.0, -1.0)
    y, ladj = call_and_ladj(t, x)
    assert torch.equal(y, x) and torch.equal(ladj, torch.zeros_like(x))


def test_spline_is_monotonic_and_continuous_at_the_bound():
    t = _spline(bound=2.0)
    x = torch.linspace(-3, 3, 20001)
    y = t(x)
    assert (y[1:] > y[:-1]).all()
    for b in (-2.0, 2.0):
        edge = torch.tensor([b - 1e-9, b + 1e-9])
        y, ladj = call_and_ladj(t, edge)
        assert (y - edge).abs().max() < 1e-6 and ladj.abs().max() < 1e-6


def test_spline_maps_the_interval_onto_itself():
    t = _spline(5, bound=3.0)
    ends = torch.tensor([-3.0, 3.0]).expand(5, 2).T.contiguous()
    assert torch.allclose(t(ends), ends, atol=1e-12)


@pytest.mark.parametrize("magnitude", [1e2, 1e4, 1e6])
def test_spline_has_no_nan_for_large_inputs_or_their_gradients(magnitude: float):
    widths = torch.randn(3, 8, requires_grad=True)
    t = MonotonicRQSTransform(widths, torch.randn(3, 8), torch.randn(3, 7), bound=5.0)
    x = torch.tensor([magnitude, -magnitude, 0.5], requires_grad=True)
    y, ladj = call_and_ladj(t, x)
    xi, ladj_i = inv_call_and_ladj(t, x)
    (y.sum() + ladj.sum() + xi.sum() + ladj_i.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(widths.grad).all()
    assert y[0] == magnitude and y[1] == -magnitude


def test_spline_zero_parameters_is_identity():
    t = MonotonicRQSTransform(torch.zeros(8), torch.zeros(8), torch.zeros(7))
    x = torch.linspace(-6, 6, 101)
    y, ladj = call_and_ladj(t, x)
    assert torch.allclose(y, x, atol=1e-12) and ladj.abs().max() < 1e-12


def test_spline_rejects_mismatched_parameters():
    with pytest.raises(ValueError, match="K - 1"):
        MonotonicRQSTransform(torch.zeros(8), torch.zeros(8), torch.zeros(8))


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("spline", [False, True])
def test_coupling(context: int, spline: bool):
    kw = dict(univariate=MonotonicRQSTransform, shapes=[(5,), (5,), (4,)]) if spline else {}
    lazy = Coupling(5, context, mask=torch.tensor([1, 0, 1, 0, 0]).bool(), hidden=(16,), **kw)
    T.perturb(lazy)
    c = torch.randn(6, context) if context else None
    t = lazy(c)
    T.check_transform(t, torch.randn(6, 5))
    # The conditioning features pass through unchanged.
    x = torch.randn(6, 5)
    assert torch.equal(t(x)[:, [0, 2]], x[:, [0, 2]])


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("spline", [False, True])
def test_masked_autoregressive(context: int, spline: bool):
    kw = dict(univariate=MonotonicRQSTransform, shapes=[(5,), (5,), (4,)]) if spline else {}
    order = torch.tensor([2, 0, 3, 1])
    lazy = MaskedAutoregressive(4, context, order=order, hidden=(16, 16), **kw)
    T.perturb(lazy)
    c = torch.randn(3, context) if context else None
    t = lazy(c)
    T.check_transform(t, torch.randn(3, 4))
    T.check_transform(lazy.inv(c), torch.randn(3, 4))


def test_masked_autoregressive_jacobian_is_triangular_in_its_order():
    order = torch.tensor([2, 0, 3, 1])
    lazy = T.perturb(MaskedAutoregressive(4, order=order, hidden=(16, 16)))
    t = lazy()
    # x -> z (the one-pass direction): z_i depends on x_j only where order[j] <= order[i].
    jac = torch.autograd.functional.jacobian(lambda x: t.inv(x), torch.randn(4))
    allowed = order[None, :] <= order[:, None]
    assert (jac[~allowed] == 0).all()
    assert (jac.diagonal() != 0).all()
    # And the generative direction has the same structure.
    jac = torch.autograd.functional.jacobian(lambda z: t(z), torch.randn(4))
    assert (jac[~allowed] == 0).all()


def test_composed_transform_sums_elementwise_ladj():
    a = IndependentTransform(_spline(2), 1)
    b = MonotonicAffineTransform(torch.randn(2), torch.randn(2))
    t = ComposedTransform(a, b)
    assert t.event_dim == 1
    T.check_transform(t, torch.randn(7, 2))
    empty = ComposedTransform()
    _, ladj = call_and_ladj(empty, torch.randn(3))
    assert ladj.shape == (3,)


def test_check_transform_catches_a_wrong_ladj():
    class Wrong(MonotonicAffineTransform):
        def call_and_ladj(self, x):
            return self(x), 2 * self.log_scale.expand(x.shape)

        def inv_call_and_ladj(self, y):
            return self.inv(y), 2 * self.log_scale.expand(y.shape)

        def log_abs_det_jacobian(self, x, y):
            return 2 * self.log_scale.expand(x.shape)

    t = IndependentTransform(Wrong(torch.randn(2), torch.randn(2)), 1)
    with pytest.raises(AssertionError):
        T.check_transform(t, torch.randn(3, 2))
