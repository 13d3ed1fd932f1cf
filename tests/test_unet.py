r"""The U-Net: shapes (flat and image inputs, any batch dimensions), per-sample independence,
time and class conditioning, gradients reaching every parameter."""

from __future__ import annotations

import pytest
import torch

from probgen.diffusion import Diffusion
from probgen.nn import UNet


def _net(**kwargs) -> UNet:
    return UNet((1, 8, 8), channels=(8, 16), **kwargs)


def test_shapes_flat_and_image():
    net = _net(context=3)
    c = torch.randn(3)
    assert net(torch.randn(4, 5, 64), torch.rand(4, 5), c).shape == (4, 5, 64)
    assert net(torch.randn(64), torch.tensor(0.2), c).shape == (64,)
    x = torch.randn(6, 1, 8, 8)
    y = net(x, 0.3, c)
    assert y.shape == (6, 1, 8, 8)
    # The flat and the image forms are the same function.
    assert torch.allclose(net(x.reshape(6, 64), 0.3, c), y.reshape(6, 64), atol=1e-12)
    three = UNet((2, 8, 16), channels=(8, 16, 16), attention=(1, 2))
    assert three(torch.randn(3, 256), torch.rand(3)).shape == (3, 256)


def test_samples_do_not_interact():
    # GroupNorm and attention act within a sample: a batch is the stack of its rows.
    net = _net(context=2)
    x, t, c = torch.randn(5, 64), torch.rand(5), torch.randn(5, 2)
    y = net(x, t, c)
    rows = torch.stack([net(x[i], t[i], c[i]) for i in range(5)])
    assert torch.allclose(y, rows, atol=1e-10)


def test_time_and_class_change_the_output():
    net = _net(context=10)
    x, c = torch.randn(4, 64), torch.eye(10)[:4]
    y = net(x, 0.5, c)
    assert (net(x, 0.6, c) - y).abs().max() > 1e-4
    assert (net(x, 0.5, torch.eye(10)[4:8]) - y).abs().max() > 1e-4
    assert (net(x, 0.5, torch.zeros(10)) - y).abs().max() > 1e-4  # the null context


def test_gradients_reach_every_parameter():
    net = _net(context=10)
    out = net(torch.randn(8, 64), torch.rand(8), torch.eye(10)[:8])
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()), allow_unused=True)
    names = [n for n, _ in net.named_parameters()]
    missing = [n for n, g in zip(names, grads, strict=True) if g is None or not g.abs().sum() > 0]
    assert not missing, missing


def test_bad_inputs():
    net = _net(context=2)
    with pytest.raises(ValueError, match=r"expected x with shape \(\*, 64\)"):
        net(torch.randn(3, 63), 0.5, torch.randn(2))
    with pytest.raises(ValueError, match="expects a context"):
        net(torch.randn(3, 64), 0.5)
    with pytest.raises(ValueError, match="divisible"):
        UNet((1, 6, 6), channels=(8, 16, 16))


def test_a_diffusion_model_trains_and_samples_on_flat_images():
    net = _net(context=10)
    model = Diffusion(64, context=10, network=net, p_uncond=0.2)
    x, c = torch.randn(16, 64), torch.eye(10)[torch.randint(10, (16,))]
    loss = model.default_objective(x, c)
    loss.backward()
    assert torch.isfinite(loss)
    d = model(torch.eye(10)[:2], guidance=1.0)
    y, nfe = d.sample_and_nfe((3,))
    assert y.shape == (3, 2, 64) and nfe > 0 and torch.isfinite(y).all()
