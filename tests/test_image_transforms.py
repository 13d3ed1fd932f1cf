r"""Image and linear transforms: bijectivity, exact ladj against autograd, shapes, ActNorm."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

import probgen.testing as T
from probgen.transforms import (
    ActNorm,
    ActNormTransform,
    ComposedTransform,
    Conv1x1,
    ConvCoupling,
    FactorOut,
    FactorOutTransform,
    IndependentTransform,
    LogitTransform,
    LULinear,
    MonotonicRQSTransform,
    PermutationTransform,
    SqueezeTransform,
    call_and_ladj,
    inv_call_and_ladj,
)


def _perturbed(module):
    return T.perturb(module.double(), scale=0.3)


def _actnorm(channels: int):
    # Initialised first: the data-dependent initialisation would change the map mid-check.
    a = ActNorm(channels).double()
    a().inv(1 + 2 * torch.randn(8, channels, 2, 2))
    return _perturbed(a)


def _image_cases():
    # (name, transform value, input shape); tiny events keep the Jacobians small.
    rqs = lambda w, h, d: MonotonicRQSTransform(w, h, d, bound=3.0)  # noqa: E731
    return [
        ("squeeze", lambda: SqueezeTransform(), (3, 2, 4, 4)),
        ("unsqueeze", lambda: SqueezeTransform().inv, (3, 8, 1, 1)),
        ("actnorm", lambda: _actnorm(2)(), (3, 2, 2, 2)),
        ("conv1x1", lambda: _perturbed(Conv1x1(3))(), (3, 3, 2, 2)),
        ("coupling", lambda: _perturbed(ConvCoupling(2, hidden=(8, 8)))(), (3, 2, 2, 2)),
        (
            "coupling-mask",
            lambda: _perturbed(
                ConvCoupling(3, mask=torch.tensor([False, True, False]), hidden=(8,))
            )(),
            (3, 3, 2, 2),
        ),
        (
            "coupling-rqs",
            lambda: _perturbed(
                ConvCoupling(2, univariate=rqs, shapes=[(4,), (4,), (3,)], hidden=(8,))
            )(),
            (3, 2, 2, 2),
        ),
        (
            "factor-out",
            lambda: _perturbed(
                FactorOut(
                    [
                        SqueezeTransform(),
                        ConvCoupling(4, hidden=(8,)),
                        Conv1x1(4),
                        SqueezeTransform().inv,
                    ],
                    1,
                )
            )(),
            (3, 2, 2, 2),
        ),
        (
            "factor-out-elementwise",
            lambda: FactorOutTransform(LogitTransform(0.1, 2.0).inv, 1),
            (3, 2, 2, 2),
        ),
    ]


@pytest.mark.parametrize("case", _image_cases(), ids=lambda c: c[0])
def test_image_transform_is_bijective_with_exact_ladj(case):
    _, factory, shape = case
    t = factory()
    x = torch.rand(shape) if "elementwise" in case[0] else torch.randn(shape)
    T.check_transform(t, x)


def test_conditional_coupling_broadcasts_context():
    t = _perturbed(ConvCoupling(2, context=3, hidden=(8,)))
    c = torch.randn(4, 3)
    T.check_transform(t(c), torch.randn(4, 2, 2, 2))
    # Sample dimensions in front of the context's batch dimensions.
    x = torch.randn(5, 4, 2, 2, 2)
    y, ladj = call_and_ladj(t(c), x)
    assert y.shape == x.shape and ladj.shape == (5, 4)
    x2, ladj2 = inv_call_and_ladj(t(c), y)
    assert torch.allclose(x2, x) and torch.allclose(ladj2, ladj)
    # Each batch element sees its own context.
    assert not torch.allclose(ladj[:, 0], ladj[:, 1])


def test_coupling_starts_at_identity():
    t = ConvCoupling(4, context=2, hidden=(8,)).double()
    x = torch.randn(3, 4, 2, 2)
    y, ladj = call_and_ladj(t(torch.randn(3, 2)), x)
    assert torch.equal(y, x) and torch.equal(ladj, torch.zeros(3))


def test_squeeze_shapes_and_layout():
    t = SqueezeTransform()
    x = torch.randn(2, 5, 3, 4, 6)
    y = t(x)
    assert y.shape == (2, 5, 12, 2, 3)
    assert t.forward_shape((3, 4, 6)) == (12, 2, 3)
    assert t.inverse_shape((12, 2, 3)) == (3, 4, 6)
    assert t.inv.forward_shape((12, 2, 3)) == (3, 4, 6)
    assert torch.equal(y.reshape(10, 12, 2, 3), F.pixel_unshuffle(x.reshape(10, 3, 4, 6), 2))
    assert torch.equal(t.inv(y), x)
    with pytest.raises(ValueError, match="even height and width"):
        t(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="divisible by 4"):
        t.inv(torch.randn(3, 2, 2))


def test_conv1x1_ladj_matches_slogdet():
    t = _perturbed(Conv1x1(5))()
    w = t.weight()
    _, logdet = torch.linalg.slogdet(w)
    x = torch.randn(2, 5, 3, 4)
    _, ladj = call_and_ladj(t, x)
    assert torch.allclose(ladj, 12 * logdet.expand(2))
    assert torch.allclose(t.inverse_weight() @ w, torch.eye(5), atol=1e-10)
    # As a convolution: the same as conv2d with a 1x1 kernel.
    assert torch.allclose(t(x), F.conv2d(x, w[:, :, None, None]))


def test_conv1x1_starts_as_a_rotation():
    t = Conv1x1(6).double()()
    w = t.weight()
    assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-6)


def test_lu_linear_and_permutation():
    t = _perturbed(LULinear(4))()
    T.check_transform(t, torch.randn(5, 4))
    _, logdet = torch.linalg.slogdet(t.weight())
    assert torch.allclose(t.log_diag.sum(), logdet)
    p = PermutationTransform(torch.tensor([2, 0, 3, 1]))
    T.check_transform(p, torch.randn(5, 4))
    with pytest.raises(ValueError, match="permutation"):
        PermutationTransform(torch.tensor([0, 0, 1]))


def test_logit_transform():
    t = LogitTransform(alpha=0.05, scale=3.0)
    x = torch.tensor([0.0, 0.3, 1.5, 2.9, 3.0])
    z = t.inv(x)
    assert torch.isfinite(z).all()
    assert torch.allclose(t(z), x)
    assert torch.allclose(z.sigmoid(), 0.05 + 0.9 * x / 3)
    T.check_transform(IndependentTransform(t, 1), torch.randn(4, 3) * 4)
    # ladj against the derivative of x = scale (sigmoid(z) - alpha) / (1 - 2 alpha).
    z = torch.linspace(-15, 15, 61, requires_grad=True)
    (dx,) = torch.autograd.grad(t(z).sum(), z)
    assert torch.allclose(call_and_ladj(t, z)[1], dx.log(), atol=1e-8)
    _, ladj = inv_call_and_ladj(t, x)
    assert torch.allclose(ladj, call_and_ladj(t, t.inv(x))[1])
    assert t.codomain.check(torch.tensor([-0.16, 3.16])).all()
    with pytest.raises(ValueError, match="alpha"):
        LogitTransform(alpha=0.5)


class TestActNorm:
    def test_initializes_on_first_scored_batch(self):
        a = ActNorm(3).double()
        x = torch.tensor([1.0, -2.0, 5.0])[:, None, None] + torch.tensor([0.5, 2.0, 3.0])[
            :, None, None
        ] * torch.randn(64, 3, 4, 4)
        z = a().inv(x)
        assert bool(a.initialized)
        assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-10)
        assert torch.allclose(z.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-8)
        # Once only: a second batch does not move the parameters.
        shift = a.shift.detach().clone()
        a().inv(10 + x)
        assert torch.equal(a.shift.detach(), shift)

    def test_sampling_does_not_initialize(self):
        a = ActNorm(2).double()
        a()(torch.randn(5, 2, 2, 2))
        assert not bool(a.initialized)
        assert torch.equal(a.shift.detach(), torch.zeros(2))

    def test_state_dict_round_trip_does_not_reinitialize(self):
        a = ActNorm(2).double()
        a().inv(3 + 2 * torch.randn(32, 2, 2, 2))
        with torch.no_grad():
            a.shift.add_(1.0)  # as if trained after the initialisation
        buffer = io.BytesIO()
        torch.save(a.state_dict(), buffer)
        buffer.seek(0)
        fresh = ActNorm(2).double()
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        assert bool(fresh.initialized)
        x = -7 + 5 * torch.randn(32, 2, 2, 2)
        assert torch.equal(fresh().inv(x), a().inv(x))
        assert torch.equal(fresh.shift, a.shift)

    def test_transform_value_is_affine(self):
        t = ActNormTransform(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.5]))
        x = torch.randn(3, 2, 2, 3)
        y, ladj = call_and_ladj(t, x)
        assert torch.allclose(y[:, 1], 2 + torch.tensor(0.5).exp() * x[:, 1])
        assert torch.allclose(ladj, torch.full((3,), 6 * 0.5))


def test_composed_glow_level_keeps_shape():
    level = ComposedTransform(
        SqueezeTransform(),
        _perturbed(FactorOut([SqueezeTransform(), Conv1x1(8), SqueezeTransform().inv], 2))(),
        _perturbed(ConvCoupling(4, hidden=(8,)))(),
        SqueezeTransform().inv,
    )
    assert level.forward_shape((1, 4, 4)) == (1, 4, 4)
    T.check_transform(level, torch.randn(2, 1, 4, 4))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(\*, 4, H, W\)"):
        ConvCoupling(4).double()()(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match="C > 2"):
        FactorOutTransform(SqueezeTransform(), 2)(torch.randn(2, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        ActNormTransform(torch.zeros(2), torch.zeros(3))
