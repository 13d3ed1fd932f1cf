r"""VQ-VAE and deterministic autoencoders: the quantiser's mathematics (nearest codes,
straight-through gradients, the two losses and where their gradients go, EMA updates in
closed form, dead-code restarts), the VQ-VAE as a distribution (the nested prior sums to
one, the bound decomposes and lies below the exact marginal, samples follow the exact
marginal), and the autoencoders' objectives."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

import probgen as pg
from probgen.autoregressive import CategoricalFamily, ChainRule, PixelCNN
from probgen.distributions.autoencoder import Autoencoder, GaussianNoise, MaskingNoise
from probgen.distributions.elements import GaussianFamily
from probgen.distributions.vq import VQVAE, VectorQuantized
from probgen.nn.autoencoder import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    VectorQuantizer,
    codebook_usage,
)
from probgen.testing import TEST_FAILURE_RATE

# Blocks


def test_conv_blocks_shapes_and_batch_dimensions():
    enc = ConvEncoder((1, 8, 8), out_channels=5, hidden=(4, 6, 8), downsample=2)
    assert enc.out_shape == (5, 2, 2)
    assert enc(torch.randn(3, 2, 1, 8, 8)).shape == (3, 2, 5, 2, 2)
    dec = ConvDecoder((3, 8, 8), in_channels=5, hidden=(8, 6, 4), upsample=2)
    assert dec.in_shape == (5, 2, 2)
    assert dec(torch.randn(3, 2, 5, 2, 2)).shape == (3, 2, 3, 8, 8)
    vec = ConvEncoder((1, 8, 8), out_features=7, hidden=(4, 4))
    assert vec(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    back = ConvDecoder((1, 8, 8), in_features=7, hidden=(4, 4))
    assert back(torch.randn(2, 7)).shape == (2, 1, 8, 8)
    assert MLPEncoder((1, 8, 8), 3, hidden=(8,))(torch.randn(4, 1, 8, 8)).shape == (4, 3)
    assert MLPDecoder(3, (1, 8, 8), hidden=(8,))(torch.randn(4, 3)).shape == (4, 1, 8, 8)


def test_blocks_reject_bad_configurations():
    with pytest.raises(ValueError, match="exactly one"):
        ConvEncoder((1, 8, 8), out_channels=2, out_features=3)
    with pytest.raises(ValueError, match="divisible"):
        ConvEncoder((1, 6, 6), out_channels=2, hidden=(4, 4, 4), downsample=2)
    with pytest.raises(ValueError, match="downsample"):
        ConvEncoder((1, 8, 8), out_channels=2, hidden=(4,), downsample=1)
    with pytest.raises(ValueError, match=r"\(\*, 1, 8, 8\)"):
        ConvEncoder((1, 8, 8), out_channels=2)(torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="codes >= 2"):
        VectorQuantizer(1, 3)


# The quantiser


def test_indices_are_the_nearest_codes_by_brute_force():
    vq = VectorQuantizer(7, 3)
    z_e = torch.randn(4, 3, 5, 2)
    q = vq(z_e)
    flat = z_e.movedim(1, -1).reshape(-1, 3)
    brute = (flat[:, None, :] - vq.codebook[None]).square().sum(-1).argmin(-1)
    assert q.indices.shape == (4, 5, 2) and q.indices.dtype == torch.long
    assert torch.equal(q.indices.reshape(-1), brute)
    assert q.indices.min() >= 0 and q.indices.max() < 7
    # The value of z_q is the nearest code itself.
    e = vq.codebook[brute].reshape(4, 5, 2, 3).movedim(-1, 1)
    torch.testing.assert_close(q.z_q, e)


def test_straight_through_gradient_is_the_identity_to_the_encoder():
    vq = VectorQuantizer(5, 2)
    z_e = torch.randn(6, 2, requires_grad=True)
    w = torch.randn(6, 2)
    (g,) = torch.autograd.grad((vq(z_e).z_q * w).sum(), z_e)
    torch.testing.assert_close(g, w)


def test_straight_through_gradient_reaches_every_encoder_parameter():
    vq = VQVAE.small((1, 4, 4), codes=4, dim=3, hidden=4, prior_layers=1,
                     likelihood=CategoricalFamily(5))  # fmt: skip
    x = torch.randint(5, (8, 1, 4, 4)).double()
    q = vq.quantize(x)
    # The reconstruction term alone: its gradient reaches the encoder only through z_q.
    vq.reconstruction_error(vq.params(q.z_q), x).mean().backward()
    for name, p in vq.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert vq.quantizer.codebook.grad is None  # the codebook moves by its own loss only


def test_commitment_and_codebook_losses_values_and_gradients():
    beta = 0.3
    vq = VectorQuantizer(4, 2, beta=beta)
    z_e = torch.randn(5, 2, 3, requires_grad=True)
    q = vq(z_e)
    e = vq.codebook[q.indices].movedim(-1, 1).detach()
    sq = (z_e.detach() - e).square().flatten(1).sum(-1)
    torch.testing.assert_close(q.commitment_loss, beta * sq)
    torch.testing.assert_close(q.codebook_loss, sq)
    assert (q.commitment_loss >= 0).all()
    # Commitment: gradient 2 beta (z_e - e) on z_e, none on the codebook.
    g_z, g_e = torch.autograd.grad(q.commitment_loss.sum(), [z_e, vq.codebook], allow_unused=True)
    torch.testing.assert_close(g_z, 2 * beta * (z_e.detach() - e))
    assert g_e is None
    # Codebook: gradient on the codebook only, sum over assigned vectors of 2 (e_k - z_e).
    g_z, g_e = torch.autograd.grad(q.codebook_loss.sum(), [z_e, vq.codebook], allow_unused=True)
    assert g_z is None
    flat = z_e.detach().movedim(1, -1).reshape(-1, 2)
    idx = q.indices.reshape(-1)
    expected = torch.zeros(4, 2).index_add_(0, idx, 2 * (vq.codebook.detach()[idx] - flat))
    torch.testing.assert_close(g_e, expected)


def test_codebook_loss_moves_codes_toward_encoder_outputs_and_not_vice_versa():
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 2)
    encoder = nn.Linear(2, 2)
    x = torch.randn(64, 2)
    before_codes, before_encoder = vq.codebook.detach().clone(), encoder.weight.detach().clone()
    q = vq(encoder(x))
    opt = torch.optim.SGD([*vq.parameters(), *encoder.parameters()], lr=0.01)
    q.codebook_loss.mean().backward()
    opt.step()
    assert torch.equal(encoder.weight, before_encoder)  # no gradient reached the encoder
    z = encoder(x).detach()
    for k in q.indices.unique().tolist():
        mean = z[q.indices == k].mean(0)
        assert (vq.codebook[k] - mean).norm() < (before_codes[k] - mean).norm()
    unused = [k for k in range(3) if k not in q.indices.tolist()]
    for k in unused:
        assert torch.equal(vq.codebook[k], before_codes[k])


def test_ema_update_matches_the_closed_form():
    gamma, eps = 0.9, 1e-5
    vq = VectorQuantizer(3, 2, ema=True, decay=gamma, eps=eps)
    e0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    vq.codebook.copy_(e0)
    vq.embed_sum.copy_(e0)
    z = torch.tensor([[0.1, -0.1], [0.2, 0.0], [0.9, 1.2], [-0.3, 0.1]])
    q = vq(z)
    assert q.indices.tolist() == [0, 0, 1, 0]
    torch.testing.assert_close(q.z_q, e0[q.indices])  # quantised with the old codebook
    assert torch.equal(q.codebook_loss, torch.zeros(4))
    # Eqs. (6)-(8) by hand: N_k, m_k by EMA from N = 1, m = e; Laplace-smoothed N_k.
    n = torch.tensor([3.0, 1.0, 0.0])
    s = torch.stack([z[[0, 1, 3]].sum(0), z[2], torch.zeros(2)])
    size = gamma * torch.ones(3) + (1 - gamma) * n
    m = gamma * e0 + (1 - gamma) * s
    smoothed = (size + eps) / (size.sum() + 3 * eps) * size.sum()
    torch.testing.assert_close(vq.cluster_size, size)
    torch.testing.assert_close(vq.embed_sum, m)
    torch.testing.assert_close(vq.codebook, m / smoothed[:, None])
    # Unused code 2 keeps (almost) its value: its count and sum decay together.
    torch.testing.assert_close(vq.codebook[2], e0[2], rtol=1e-4, atol=0)
    # Eval mode changes nothing.
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq.eval()
    vq(z)
    assert all(torch.equal(state[k], v) for k, v in vq.state_dict().items())


def test_dead_codes_restart_at_encoder_outputs():
    vq = VectorQuantizer(4, 2, decay=0.0, restart=1.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
    z = torch.randn(16, 2)
    q = vq(z)
    assert (q.indices == 0).all()
    assert torch.equal(vq.codebook[0], torch.zeros(2))
    for k in (1, 2, 3):  # unused: moved onto one of the batch's encoder outputs
        assert ((z - vq.codebook[k]).abs().sum(-1) == 0).any()
    torch.testing.assert_close(vq.share, torch.tensor([1.0, 0.25, 0.25, 0.25]))


def test_codebook_usage_and_perplexity():
    u = codebook_usage(torch.arange(8).repeat(3), 8)
    assert u.used == 1.0 and math.isclose(u.perplexity, 8.0)
    u = codebook_usage(torch.zeros(10, dtype=torch.long), 8)
    assert u.used == 1 / 8 and math.isclose(u.perplexity, 1.0)
    assert u.counts.tolist() == [10.0] + [0.0] * 7


# The VQ-VAE as a distribution


def _tiny(context: int = 0, likelihood=None) -> VQVAE:
    # x: (1, 2, 2) with 3 levels (81 values); a 2x2 grid of 2 codes (16 code grids).
    likelihood = likelihood if likelihood is not None else CategoricalFamily(3)
    p = likelihood.params
    model = VQVAE(
        ConvEncoder((1, 2, 2), out_channels=2, hidden=(4,), downsample=0),
        ConvDecoder((p, 2, 2), in_channels=2, hidden=(4,), upsample=0),
        VectorQuantizer(2, 2),
        PixelCNN((1, 2, 2), CategoricalFamily(2), context, channels=4, layers=2),
        likelihood,
        context,
    )
    return pg.testing.perturb(model, 0.3)


def _joint_likelihood(vq: VQVAE, grids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # log p(x | e_z) for every code grid z (rows) and every value x (columns).
    p = vq.params(vq.quantizer.lookup(grids.reshape(len(grids), *vq.grid)))
    p = p[:, None].expand(len(grids), len(x), *p.shape[1:])
    lp = vq.likelihood.log_prob(p, x[None].expand(len(grids), *x.shape))
    return lp.flatten(2).sum(-1)


def _all(values: int, shape: tuple[int, ...]) -> torch.Tensor:
    grid = itertools.product(range(values), repeat=math.prod(shape))
    return torch.tensor(list(grid), dtype=torch.float64).reshape(-1, *shape)


@pytest.mark.parametrize("context", [0, 3])
def test_the_nested_prior_sums_to_one_over_every_code_grid(context):
    vq = _tiny(context)
    c = torch.randn(context) if context else None
    d = vq(c)
    assert isinstance(vq.prior, PixelCNN) and isinstance(d.prior, ChainRule)
    z = _all(2, (1, 2, 2))
    lp = d.prior.log_prob(z)
    torch.testing.assert_close(lp.logsumexp(0), torch.tensor(0.0, dtype=lp.dtype))
    torch.testing.assert_close(lp, (vq.prior(c) if context else vq.prior()).log_prob(z))


@pytest.mark.parametrize("context", [0, 3])
def test_bound_decomposes_and_lies_below_the_exact_marginal(context):
    vq = _tiny(context)
    c = torch.randn(context) if context else None
    d = vq(c)
    assert d.log_prob_kind == "bound"
    x = _all(3, (1, 2, 2))  # every value
    with torch.no_grad():
        bound = d.log_prob(x)
        # The bound is log p(x | e_{z_q(x)}) + log p(z_q(x)).
        z = vq.encode(x)
        params = vq.params(vq.quantizer.lookup(z.reshape(-1, 2, 2)))
        lp_x = CategoricalFamily(3).log_prob(params, x).flatten(1).sum(-1)
        torch.testing.assert_close(bound, lp_x + d.prior.log_prob(z))
        # The exact marginal log sum_z p(z) p(x | z), by enumerating the 16 code grids.
        grids = _all(2, (1, 2, 2))
        p_z = d.prior.log_prob(grids)
        marginal = (p_z[:, None] + _joint_likelihood(vq, grids, x)).logsumexp(0)
    torch.testing.assert_close(marginal.logsumexp(0), torch.tensor(0.0, dtype=marginal.dtype))
    assert (bound <= marginal + 1e-12).all()
    assert bound.logsumexp(0) < 0  # a bound's mass is below one
    # It is the joint at the encoder's codes: tight where those carry the posterior mass.
    assert (bound < marginal - 1e-3).any()


def test_samples_follow_the_exact_marginal():
    # z ~ prior, x ~ p(x | e_z): a chi-square test over all 81 values against the exact
    # marginal; fails by chance with probability TEST_FAILURE_RATE.
    vq = _tiny()
    d = vq()
    n = 20_000
    with torch.no_grad():
        xs = d.sample((n,))
        x = _all(3, (1, 2, 2))
        grids = _all(2, (1, 2, 2))
        lp_xz = _joint_likelihood(vq, grids, x)
        probs = (d.prior.log_prob(grids)[:, None] + lp_xz).logsumexp(0).exp()
    index = (xs.reshape(n, 4) * torch.tensor([27.0, 9.0, 3.0, 1.0])).sum(-1).long()
    counts = torch.bincount(index, minlength=81).double()
    assert multinomial_goodness_of_fit(probs, counts, total_count=n) > TEST_FAILURE_RATE


def test_gaussian_likelihood_gives_a_real_valued_bound():
    vq = _tiny(likelihood=GaussianFamily())
    d = vq()
    x = d.sample((5,))
    assert x.shape == (5, 1, 2, 2) and not torch.equal(x, x.round())
    assert d.log_prob(x).shape == (5,) and torch.isfinite(d.log_prob(x)).all()


def test_deterministic_decoder_has_no_density():
    vq = VQVAE.small((1, 4, 4), codes=4, dim=3, hidden=4, prior_layers=1)
    d = vq()
    assert d.log_prob_kind == "none" and pg.distributions.log_prob_kind(d) == "none"
    with pytest.raises(NotImplementedError, match="reconstruct"):
        d.log_prob(torch.zeros(1, 4, 4))
    # A sample is the decoder's output at the prior's codes.
    with torch.random.fork_rng():
        torch.manual_seed(3)
        x = d.sample((4,))
    with torch.random.fork_rng():
        torch.manual_seed(3)
        z = d.prior.sample((4,))
    torch.testing.assert_close(x, vq.decode(z))


def test_encode_decode_with_batch_dimensions():
    vq = _tiny()
    x = _all(3, (1, 2, 2))[:12].reshape(3, 4, 1, 2, 2)
    z = vq.encode(x)
    assert z.shape == (3, 4, 1, 2, 2) and set(z.unique().tolist()) <= {0.0, 1.0}
    assert vq.decode(z).shape == x.shape
    assert vq.reconstruct(x).shape == x.shape
    assert ((vq.reconstruct(x) >= 0) & (vq.reconstruct(x) <= 2)).all()  # expected levels


def test_construction_checks_the_prior_against_the_codes():
    enc = ConvEncoder((1, 4, 4), out_channels=3, hidden=(4, 4))
    dec = ConvDecoder((1, 4, 4), in_channels=3, hidden=(4, 4))
    with pytest.raises(ValueError, match="4 values"):
        VQVAE(enc, dec, VectorQuantizer(4, 3), PixelCNN((1, 2, 2), CategoricalFamily(5)))
    with pytest.raises(ValueError, match="4 elements"):
        VQVAE(enc, dec, VectorQuantizer(4, 3), PixelCNN((1, 3, 3), CategoricalFamily(4)))
    with pytest.raises(ValueError, match="context 2"):
        VQVAE(enc, dec, VectorQuantizer(4, 3), PixelCNN((1, 2, 2), CategoricalFamily(4)),
              context=2)  # fmt: skip
    with pytest.raises(ValueError, match="size 5"):
        VQVAE(enc, dec, VectorQuantizer(4, 5), PixelCNN((1, 2, 2), CategoricalFamily(4)))
    # A decoder with the wrong number of likelihood parameters is named when used.
    vq = VQVAE(enc, dec, VectorQuantizer(4, 3), PixelCNN((1, 2, 2), CategoricalFamily(4)),
               likelihood=CategoricalFamily(5))  # fmt: skip
    with pytest.raises(ValueError, match=r"\(1, 5, 4, 4\)"):
        vq().sample()


def _digits(n: int) -> torch.Tensor:
    x, _ = pg.data.digits("train")
    return x[:n].to(torch.get_default_dtype())


def test_two_stage_training_reduces_reconstruction_error_and_prior_nll():
    x = _digits(256)
    vq = VQVAE.small(codes=8, dim=4, hidden=8, prior_layers=2, likelihood=CategoricalFamily(17))

    def error() -> float:
        with torch.no_grad():
            return float((vq.reconstruct(x) - x).square().mean())

    before = error()
    pg.fit(vq, x, steps=100, batch_size=32, lr=1e-2, progress=False, seed=0)
    # Below the error of the best constant image (the per-pixel mean): the codes carry
    # information about each image.
    assert error() < min(before, float((x - x.mean(0)).square().mean()))
    codes = vq.encode(x)
    with torch.no_grad():
        nll = -vq.prior().log_prob(codes).mean()
    pg.fit(vq.prior, codes, steps=30, batch_size=64, lr=1e-2, progress=False, seed=0)
    with torch.no_grad():
        assert -vq.prior().log_prob(codes).mean() < nll - 1.0
    assert isinstance(vq(), VectorQuantized)


def test_ema_codebook_is_trained_without_gradients():
    x = _digits(128) / 16
    vq = VQVAE.small(codes=8, dim=4, hidden=8, prior_layers=1, ema=True)
    assert "quantizer.codebook" not in dict(vq.named_parameters())
    before = vq.quantizer.codebook.clone()
    pg.fit(vq, x, steps=5, batch_size=32, progress=False, seed=0)
    assert not torch.equal(before, vq.quantizer.codebook)


# Deterministic autoencoders


def _autoencoder(**kwargs) -> Autoencoder:
    enc = ConvEncoder((1, 8, 8), out_features=6, hidden=(4, 8))
    dec = ConvDecoder((1, 8, 8), in_features=6, hidden=(8, 4))
    return Autoencoder(enc, dec, **kwargs)


def test_autoencoders_are_not_distributions():
    ae = _autoencoder()
    for name in ("sample", "log_prob", "log_prob_kind"):
        assert not hasattr(ae, name)
    with pytest.raises(ValueError, match="no context"):
        ae.default_objective(torch.rand(2, 1, 8, 8), torch.zeros(2, 3))


def test_denoising_corrupts_inputs_only_in_the_training_objective():
    ae = _autoencoder(noise=MaskingNoise(0.5))
    x = torch.rand(16, 1, 8, 8)
    # encode / reconstruct never corrupt: deterministic and equal to the clean pass.
    torch.testing.assert_close(ae.reconstruct(x), ae.decode(ae.encode(x)))
    torch.testing.assert_close(ae.reconstruct(x), ae.reconstruct(x))
    torch.testing.assert_close(ae.reconstruct(x), ae.decoder(ae.encoder(x)))
    # The objective corrupts the input, not the target.
    with torch.random.fork_rng():
        torch.manual_seed(5)
        loss = pg.objectives.autoencoder(ae, x)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        x_tilde = x * (torch.rand_like(x) >= 0.5)
    expected = (ae.decoder(ae.encoder(x_tilde)) - x).square().flatten(1).sum(-1).mean()
    torch.testing.assert_close(loss, expected)
    clean = (ae.reconstruct(x) - x).square().flatten(1).sum(-1).mean()
    assert not torch.isclose(loss, clean)
    g = GaussianNoise(0.1)(torch.zeros(10_000))
    assert abs(g.std().item() - 0.1) < 0.005  # 5 standard errors of the sample std


def test_sparse_penalty_is_lambda_times_mean_absolute_code():
    lam = 0.37
    ae = _autoencoder(sparsity=lam)
    x = torch.rand(16, 1, 8, 8)
    loss = pg.objectives.autoencoder(ae, x)
    ae.sparsity = 0.0
    plain = pg.objectives.autoencoder(ae, x)
    torch.testing.assert_close(loss - plain, lam * ae.encode(x).abs().mean())


def test_autoencoder_likelihood_reads_parameters_per_channel():
    # Channel c's P parameters are decoder outputs cP, ..., cP + P - 1.
    from probgen.distributions.autoencoder import output_params

    out = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 6, 2, 2)
    params = output_params(out, CategoricalFamily(3), torch.Size((2, 2, 2)))
    assert params.shape == (1, 2, 2, 2, 3)
    assert params[0, 1, 0, 1].tolist() == [out[0, 3, 0, 1], out[0, 4, 0, 1], out[0, 5, 0, 1]]


def test_autoencoder_training_reduces_reconstruction_error():
    x = _digits(256) / 16
    ae = _autoencoder()

    def error() -> float:
        with torch.no_grad():
            return float((ae.reconstruct(x) - x).square().mean())

    before = error()
    pg.fit(ae, x, steps=80, batch_size=64, lr=3e-3, progress=False, seed=0)
    assert error() < 0.5 * before
