r"""Implicit models: the Implicit value, GAN and GMMN, the adversarial losses against their
closed forms (the optimal discriminator, the gradient penalty), and short training runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from registry import CASES, build

import probgen as pg
from probgen import objectives as O
from probgen.distributions import log_prob_kind
from probgen.implicit import GAN, GMMN, ContextMLP, Implicit

IMPLICIT = [c for c in CASES if c.name.split("|")[0] in ("GAN", "GMMN", "DCGAN", "StyleGAN")]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks: one thread is several times faster than two on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gan(context: int = 0, **kwargs) -> GAN:
    return GAN(
        ContextMLP(4, 2, context, hidden=(16,)), ContextMLP(2, 1, context, hidden=(16,)), 4,
        context, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("case", IMPLICIT, ids=repr)
def test_rsample_gradients_reach_every_generator_parameter(case):
    model = build(case)
    c = torch.randn(5, case.context) if case.context else None
    d = model(c) if c is not None else model()
    x = d.rsample((3,))
    assert x.requires_grad
    (x.square().sum() + x.sum()).backward()
    skip = set()
    if isinstance(model, GAN):
        skip = {id(p) for p in model.discriminator.parameters()}
    for name, p in model.named_parameters():
        if id(p) in skip:
            assert p.grad is None, f"a sample reached the discriminator's {name}"
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert not d.sample((2,)).requires_grad


@pytest.mark.parametrize("case", IMPLICIT, ids=repr)
def test_log_prob_raises_and_names_the_metrics(case):
    model = build(case)
    c = torch.randn(2, case.context) if case.context else None
    d = model(c) if c is not None else model()
    assert log_prob_kind(d) == "none" and log_prob_kind(d.expand((3, *d.batch_shape))) == "none"
    with pytest.raises(NotImplementedError, match="mmd_test.*fid"):
        d.log_prob(d.sample())
    # Pyro's wrappers keep the meaning: still no density.
    assert log_prob_kind(d.to_event(len(d.batch_shape))) == "none"


def test_context_batch_shapes_and_validation():
    gan = _gan(3)
    d = gan(torch.randn(4, 2, 3))
    assert d.batch_shape == (4, 2) and d.sample((5,)).shape == (5, 4, 2, 2)
    # The same context row gives the same distribution: samples depend on c.
    c = torch.randn(3).expand(1000, 3)
    x = gan(c).sample()
    assert x.shape == (1000, 2)
    with pytest.raises(ValueError, match=r"shape \(\*, 3\)"):
        gan(torch.randn(4, 2))
    with pytest.raises(ValueError, match="unconditional"):
        _gan()(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expects a context"):
        gan.critic(torch.randn(4, 2))
    assert gan.critic(torch.randn(6, 5, 2), torch.randn(5, 3)).shape == (6, 5)


def test_bad_generators_and_latents_are_refused():
    with pytest.raises(ValueError, match=r"expected the generator to return shape \(3, 5\)"):
        GAN(nn.Linear(4, 2), nn.Linear(2, 1), 4, event_shape=(5,))().sample((3,))
    with pytest.raises(ValueError, match="latent dimension >= 1"):
        GMMN(nn.Linear(4, 2), latent=0)
    with pytest.raises(ValueError, match=r"discriminator to return shape \(3,\)"):
        GAN(nn.Linear(4, 2), nn.Linear(2, 2), 4).critic(torch.randn(3, 2))
    # Inferred event shapes: from the generator's attribute, else from one sample.
    assert GAN(nn.Linear(4, 3), nn.Linear(3, 1), 4).event_shape == (3,)
    dc = pg.nn.DCGenerator(8, (1, 8, 8))
    assert GAN(dc, pg.nn.DCDiscriminator(), 8).event_shape == (1, 8, 8)


def test_pyro_sample_site_under_a_plate():
    import pyro

    gan = _gan()

    def program():
        with pyro.plate("n", 7):
            return pyro.sample("x", gan())

    assert program().shape == (7, 2)


def test_fit_needs_two_players_for_a_gan():
    gan = _gan()
    with pytest.raises(ValueError, match="two players"):
        pg.fit(gan, torch.randn(64, 2), steps=1, progress=False)


def test_adversarial_losses_closed_forms():
    zero = torch.zeros(4)
    assert torch.allclose(O.minimax.critic(zero, zero), torch.tensor(2 * math.log(2)))
    assert torch.allclose(O.minimax.generator(zero), torch.tensor(-math.log(2)))
    assert torch.allclose(O.non_saturating.generator(zero), torch.tensor(math.log(2)))
    assert float(O.hinge.critic(zero, zero)) == 2.0
    r, f = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 0.0])
    assert float(O.wasserstein.critic(r, f)) == -2.5 and float(O.wasserstein.generator(f)) == 0.5
    # Hinge: margins beyond 1 cost nothing.
    assert float(O.hinge.critic(torch.tensor([2.0]), torch.tensor([-3.0]))) == 0.0
    assert float(O.least_squares.critic(torch.ones(3), torch.zeros(3))) == 0.0
    with pytest.raises(ValueError, match="AdversarialLoss"):
        O.adversarial("hinge")


@pytest.mark.parametrize("loss", [O.minimax, O.non_saturating])
def test_optimal_discriminator_is_p_over_p_plus_q(loss):
    # Real p = N(0, 1), fake q = N(1, 1.5^2): log p/q is quadratic, so a quadratic logistic
    # discriminator contains the optimum D*(x) = p / (p + q), and minimising the critic
    # loss on n samples each is logistic regression: its logit error is O(1/sqrt(n)),
    # about 0.02 at n = 20,000 on [-2, 3], i.e. at most 0.005 in D; tolerance 0.03.
    g = torch.Generator().manual_seed(0)
    n = 20_000
    real = torch.randn(n, generator=g)
    fake = 1 + 1.5 * torch.randn(n, generator=g)
    w = torch.zeros(3, requires_grad=True)

    def D(x):
        return w[0] * x**2 + w[1] * x + w[2]

    opt = torch.optim.LBFGS([w], lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss.critic(D(real), D(fake))
        value.backward()
        return value

    opt.step(closure)
    x = torch.linspace(-2, 3, 101)
    p = torch.distributions.Normal(0.0, 1.0).log_prob(x).exp()
    q = torch.distributions.Normal(1.0, 1.5).log_prob(x).exp()
    err = (torch.sigmoid(D(x)) - p / (p + q)).abs().max()
    assert err < 0.03, f"D differs from p / (p + q) by {float(err)}"


def test_gradient_penalty_is_zero_for_a_1_lipschitz_critic():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g) + 2
    w = torch.randn(5, generator=g)
    unit = nn.Linear(5, 1)
    with torch.no_grad():
        unit.weight.copy_(w / w.norm())
    assert O.gradient_penalty(lambda x: unit(x).squeeze(-1), real, fake).item() < 1e-12
    # Twice as steep: ||grad|| = 2 everywhere, penalty (2 - 1)^2 = 1.
    two = lambda x: 2 * unit(x).squeeze(-1)  # noqa: E731
    assert abs(O.gradient_penalty(two, real, fake).item() - 1.0) < 1e-10
    # Through a GAN's critic (with a context), and differentiable in the critic.
    gan = GAN(ContextMLP(4, 5, 2, hidden=(8,)), ContextMLP(5, 1, 2, hidden=(8,)), 4, 2)
    c = torch.randn(64, 2)
    r = O.gradient_penalty(gan.critic, real, fake, c)
    r.backward()
    # Every weight moves the critic's input gradient (the last bias does not).
    weights = [p for n, p in gan.discriminator.named_parameters() if "weight" in n]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_spectral_normalize_bounds_the_largest_singular_value():
    net = pg.nn.spectral_normalize(ContextMLP(3, 1, hidden=(32, 32)))
    with torch.no_grad():
        for _ in range(30):  # power iterations run in train-mode forward passes
            net(torch.randn(2, 3))
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            s = torch.linalg.matrix_norm(layer.weight.detach(), 2)
            assert abs(s.item() - 1) < 1e-3


def test_minibatch_std_reads_the_spread_within_each_group_only():
    torch.manual_seed(0)
    D = pg.nn.DCDiscriminator((1, 8, 8), channels=4, minibatch_std=4).double().eval()
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    y = x.clone()
    y[5] = 0.0
    changed = (D(x) - D(y)).abs() > 0
    assert changed.tolist() == [False] * 4 + [True] * 4
    # A group of one image repeated has no spread: each logit is the image's own, as
    # scored alone.
    same = x[:1].expand(4, 1, 8, 8)
    assert torch.allclose(D(same), D(x[:1]).expand(4))
    # The weight on the spread feature moves the logits of a varied group, not of a
    # repeated one.
    varied, repeated = D(x[:4]), D(same)
    with torch.no_grad():
        D.linear.weight[0, -1] += 1.0
    assert (D(x[:4]) - varied).abs().min() > 1e-6
    assert torch.allclose(D(same), repeated)
    # A batch size the group does not divide is one group.
    assert D(x[:3]).shape == (3,)
    with pytest.raises(ValueError, match="minibatch_std >= 0"):
        pg.nn.DCDiscriminator(minibatch_std=-1)


def test_weight_clipping_and_critic_steps_per_generator_step():
    gan = _gan()
    players = O.adversarial(O.wasserstein, clip=0.01)
    opt = {
        "discriminator": torch.optim.RMSprop(gan.discriminator.parameters(), lr=5e-5),
        "generator": torch.optim.RMSprop(gan.generator_parameters(), lr=5e-5),
    }
    h = pg.fit(
        gan, torch.randn(256, 2), objective=players, optimizer=opt, steps=3, batch_size=32,
        schedule={"discriminator": 5}, progress=False,
    )  # fmt: skip
    assert len(h.losses["discriminator"]) == 15 and len(h.losses["generator"]) == 3
    O.clip_weights(gan.discriminator, 0.01)
    assert all(p.detach().abs().max().item() <= 0.01 for p in gan.discriminator.parameters())
    # The generator player holds every parameter but the discriminator's.
    ids = {id(p) for p in gan.generator_parameters()}
    assert ids.isdisjoint(id(p) for p in gan.discriminator.parameters())
    assert len(ids) == len(list(gan.generator.parameters()))


def test_generator_loss_moves_only_the_generator():
    gan = _gan(3)
    x, c = torch.randn(16, 2), torch.randn(16, 3)
    O.generator_loss(gan, x, c).backward()
    assert all(p.grad is not None for p in gan.generator.parameters())
    gan.zero_grad(set_to_none=True)
    O.discriminator_loss(gan, x, c, loss=O.hinge, penalty=1.0).backward()
    assert all(p.grad is None for p in gan.generator.parameters())
    with pytest.raises(ValueError, match="one row per data point"):
        O.generator_loss(gan, x, c[:4])


def test_gmmn_learns_a_shifted_gaussian():
    # 100 steps of the MMD loss move a GMMN from its initial distribution to N(m, 0.5^2 I):
    # its sample mean then lies within 0.25 of m (statistical error ~0.02 at 2,000 samples).
    torch.manual_seed(0)
    m = torch.tensor([2.0, -1.0])
    gmmn = GMMN(ContextMLP(2, 2, hidden=(32,)), latent=2)
    pg.fit(gmmn, lambda n: m + 0.5 * torch.randn(n, 2), steps=100, batch_size=64, lr=2e-2,
           progress=False, seed=0)  # fmt: skip
    with torch.no_grad():
        x = gmmn().sample((2000,))
    assert (x.mean(0) - m).norm() < 0.25
    assert (x.std(0) - 0.5).abs().max() < 0.2


def test_conditional_gmmn_and_gan_train_on_pairs():
    torch.manual_seed(0)
    c = torch.eye(2)[torch.randint(2, (256,))]
    x = torch.randn(256, 2) + 3 * c
    gmmn = GMMN(ContextMLP(2, 2, 2, hidden=(16,)), 2, 2)
    h = pg.fit(gmmn, (x, c), steps=3, batch_size=64, progress=False)
    assert len(h.loss) == 3
    gan = GAN(pg.nn.DCGenerator(4, (1, 8, 8), 2, channels=4), pg.nn.DCDiscriminator(
        (1, 8, 8), 2, channels=4, spectral=True), 4, 2)  # fmt: skip
    imgs = torch.rand(64, 1, 8, 8)
    opt = {
        "discriminator": torch.optim.Adam(gan.discriminator.parameters(), 1e-3),
        "generator": torch.optim.Adam(gan.generator_parameters(), 1e-3),
    }
    h = pg.fit(gan, (imgs, c[:64]), objective=O.adversarial(O.hinge), optimizer=opt, steps=2,
               batch_size=16, progress=False)  # fmt: skip
    assert len(h.losses["generator"]) == 2


@pytest.mark.slow
def test_wgan_gp_covers_a_bimodal_1d_distribution():
    # A WGAN-GP learns a two-mode mixture in 1-D: both modes get samples (more than 20%
    # each; collapse would put under 5% on one).
    torch.manual_seed(0)
    gan = GAN(ContextMLP(2, 1, hidden=(64, 64)), ContextMLP(1, 1, hidden=(64, 64)), 2)
    data = lambda n: torch.where(torch.rand(n, 1) < 0.5, -2.0, 2.0) + 0.3 * torch.randn(n, 1)  # noqa: E731
    opt = {
        "discriminator": torch.optim.Adam(gan.discriminator.parameters(), 1e-3, betas=(0.5, 0.9)),
        "generator": torch.optim.Adam(gan.generator_parameters(), 1e-3, betas=(0.5, 0.9)),
    }
    pg.fit(
        gan,
        data,
        objective=O.adversarial(O.wasserstein, penalty=1.0),
        optimizer=opt,
        schedule={"discriminator": 3},
        steps=600,
        batch_size=128,
        progress=False,
        seed=0,
    )
    with torch.no_grad():
        x = gan().sample((4000,)).squeeze(-1)
    share = float((x > 0).double().mean())
    assert 0.2 < share < 0.8, f"share of the right mode {share}"
    assert float(((x.abs() - 2).abs() < 1).double().mean()) > 0.8


def test_implicit_value_direct():
    latent = pg.distributions.DiagNormal(torch.zeros(3), torch.ones(3))
    d = Implicit(latent, nn.Linear(3, 2), (2,))
    assert d.expand((4,)).sample((5,)).shape == (5, 4, 2)
    with pytest.raises(ValueError, match="batch_shape \\(\\)"):
        Implicit(latent.expand((2,)), nn.Linear(3, 2), (2,))
