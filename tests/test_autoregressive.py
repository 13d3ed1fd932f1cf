"""Autoregressive models: causality, exact normalisation by enumeration, samples against
log_prob, cached against naive sampling, decoding strategies, validation and data.

The conformance suite (test_conformance.py) runs every model of the registry as well.
"""

from __future__ import annotations

import itertools
import math
import wave

import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

from probgen.autoregressive import (
    MADE,
    NADE,
    BernoulliFamily,
    CategoricalFamily,
    ChainRule,
    GaussianFamily,
    LogisticMixtureFamily,
    PixelCNN,
    Temperature,
    TopK,
    TopP,
    Transformer,
    WaveNet,
)
from probgen.data.audio import mu_law_decode, mu_law_encode, save_wav, synthetic_audio
from probgen.data.text import VOCABULARY, decode, docstrings, encode, windows
from probgen.samplers.decoding import apply
from probgen.testing import TEST_FAILURE_RATE, perturb


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: intra-op threads only add synchronisation (10-100x slower on a busy
    # 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Small instances of every network and family, each with K values per element and a
# space of K^D configurations small enough to enumerate.
MODELS = {
    "MADE-bernoulli-10": lambda c: MADE(10, context=c, hidden=(32,)),
    "MADE-categorical-3masks": lambda c: MADE(4, CategoricalFamily(3), c, (16, 16), masks=3),
    "MADE-logistics": lambda c: MADE(4, LogisticMixtureFamily(2, 3), c, (16,)),
    "NADE-bernoulli-10": lambda c: NADE(10, context=c, hidden=8, order=torch.randperm(10)),
    "NADE-categorical": lambda c: NADE(4, CategoricalFamily(3), c, hidden=8),
    "PixelCNN-gated-bernoulli": lambda c: PixelCNN((1, 2, 5), None, c, channels=4, layers=4),
    "PixelCNN-gated-rgb": lambda c: PixelCNN((2, 2, 2), None, c, channels=8, layers=2),
    "PixelCNN-plain-categorical": lambda c: PixelCNN(
        (1, 2, 3), CategoricalFamily(3), c, channels=4, layers=2, gated=False
    ),
    "PixelCNN-gated-logistics": lambda c: PixelCNN(
        (1, 2, 2), LogisticMixtureFamily(2, 3), c, channels=4, layers=2
    ),
    "WaveNet": lambda c: WaveNet(4, CategoricalFamily(3), c, 4, 4, dilations=(1, 2)),
    "WaveNet-k3": lambda c: WaveNet(
        4, LogisticMixtureFamily(1, 3), c, 4, 4, dilations=(1, 2), kernel_size=3
    ),
    "Transformer": lambda c: Transformer(4, CategoricalFamily(3), c, 8, heads=2, layers=2),
}
INCREMENTAL = ["NADE-bernoulli-10", "NADE-categorical", "WaveNet", "WaveNet-k3", "Transformer"]


def build(name: str, context: int = 0, scale: float = 0.5):
    torch.manual_seed(1)
    model = MODELS[name](context).double()
    perturb(model, scale)
    return model


def all_values(model) -> torch.Tensor:
    k, shape = model.family.values, tuple(model.event_shape)
    grid = itertools.product(range(k), repeat=math.prod(shape))
    return torch.tensor(list(grid), dtype=torch.float64).reshape(-1, *shape)


def rank_of(order: torch.Tensor) -> torch.Tensor:
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank


def dependence(model, trials: int = 3) -> torch.Tensor:
    # dep[i, j]: some conditional parameter of element i moves when element j changes.
    shape, k = tuple(model.event_shape), model.family.values
    d = math.prod(shape)
    c = torch.randn(1, model.context) if model.context else None
    dep = torch.zeros(d, d, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(trials):
            x = torch.randint(k, (1, d)).double()
            base = model.conditionals(x.reshape(1, *shape), c).reshape(d, -1)
            for j in range(d):
                y = x.clone()
                y[0, j] = (y[0, j] + 1 + torch.randint(k - 1, ())) % k
                out = model.conditionals(y.reshape(1, *shape), c).reshape(d, -1)
                dep[:, j] |= (out - base).abs().amax(-1) > 1e-12
    return dep


@pytest.mark.parametrize("name", MODELS)
def test_causal_and_no_blind_spot(name):
    model = build(name)
    dep = dependence(model)
    rank = rank_of(model.order)
    before = rank[None, :] < rank[:, None]  # before[i, j]: j is generated before i
    assert not (dep & ~before).any(), f"{name}: a conditional sees a later element"
    if "plain" in name:
        # The masked-convolution stack's blind spot: an earlier pixel it never sees.
        assert (before & ~dep).any(), "expected the plain PixelCNN to have a blind spot"
    else:
        # Every earlier element reaches every conditional (receptive fields cover these
        # small events): in particular the gated PixelCNN has no blind spot.
        assert torch.equal(dep, before), f"{name}: misses earlier elements {before & ~dep}"


def test_gated_pixelcnn_sees_the_upper_right_pixel():
    # The pixel the plain stack misses first: one row up, to the right, at distance 2.
    for gated in (True, False):
        torch.manual_seed(0)
        model = perturb(PixelCNN((1, 5, 5), channels=4, layers=3, gated=gated).double(), 0.5)
        # Real-valued inputs and a batch: no dead ReLU hides a connection.
        x = torch.rand(8, 1, 5, 5, dtype=torch.float64, requires_grad=True)
        model.conditionals(x)[:, 0, 2, 1].sum().backward()
        assert (x.grad[:, 0, 1, 3].abs().sum() != 0) == gated


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("name", MODELS)
def test_normalized_by_enumeration(name, context):
    model = build(name, context)
    x = all_values(model)
    c = torch.randn(2, context) if context else None
    d = model(c) if c is not None else model()
    with torch.no_grad():
        if c is not None:
            x = x[:, None].expand(-1, 2, *x.shape[1:])
        total = d.log_prob(x).exp().sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6, rtol=0), total


def chi_square_p_value(probs: torch.Tensor, counts: torch.Tensor, n: int) -> float:
    # Pearson's chi-square over the configurations with expected count >= 5, truncated
    # (the others' counts leave the total): under agreement the p-value is uniform, so a
    # check `p > TEST_FAILURE_RATE` fails by chance with probability TEST_FAILURE_RATE.
    keep = probs * n >= 5
    return multinomial_goodness_of_fit(probs[keep], counts[keep], total_count=n)


@pytest.mark.parametrize("name", MODELS)
def test_samples_agree_with_log_prob(name):
    model = build(name, scale=0.3)
    d = model()
    x = all_values(model)
    n = 4000
    with torch.no_grad():
        probs = d.log_prob(x).exp()
        samples = d.sample((n,))
    k = model.family.values
    weights = k ** torch.arange(x[0].numel() - 1, -1, -1)
    index = (samples.reshape(n, -1).long() * weights).sum(-1)
    counts = torch.bincount(index, minlength=len(x)).double()
    assert chi_square_p_value(probs, counts, n) > TEST_FAILURE_RATE


@pytest.mark.parametrize("name", INCREMENTAL)
def test_cached_and_naive_sampling_agree(name):
    model = build(name, context=2)
    c = torch.randn(3, 2)
    d = model(c)
    for strategy in (None, [Temperature(0.7), TopK(2)]):
        torch.manual_seed(5)
        cached = d.sample((40,), strategy, cache=True)
        torch.manual_seed(5)
        naive = d.sample((40,), strategy, cache=False)
        assert torch.equal(cached, naive)
    # The incremental steps compute the teacher-forced conditionals.
    x = d.sample((4,)).reshape(12, -1)
    cc = c.expand(4, 3, 2).reshape(12, 2)
    full = model.conditionals(x.reshape(12, *model.event_shape), cc).reshape(12, x.shape[1], -1)
    state, prev, steps = model.init_state(12, cc, x.shape[1]), None, []
    for pos in model.order.tolist():
        params, state = model.step(prev, state)
        steps.append(params)
        prev = x[:, pos]
    steps = torch.stack(steps, 1)
    assert torch.allclose(steps, full[:, model.order], atol=1e-10)


def test_sequence_length_per_call():
    wavenet = build("WaveNet")
    transformer = build("Transformer")
    assert wavenet(length=9).sample((2,)).shape == (2, 9)
    assert transformer(length=3).sample().shape == (3,)
    with pytest.raises(ValueError, match="max_length = 4, got 5"):
        transformer(length=5)
    big = Transformer(4, CategoricalFamily(3), features=8, heads=2, layers=1, max_length=16)
    d = big(length=16)
    torch.manual_seed(0)
    a = d.sample((2,))
    torch.manual_seed(0)
    assert torch.equal(a, d.sample((2,), cache=False))


# Decoding strategies


def test_top_k_never_emits_a_value_outside_the_top_k():
    model = build("Transformer", scale=2.0)
    d = model()
    for k in (1, 2):
        x = d.sample((500,), top_k=k)
        logits = model.conditionals(x).log_softmax(-1)
        rank = (logits > logits.gather(-1, x.long()[..., None])).sum(-1)
        assert rank.max() < k  # fewer than k values are more probable than each sample


def test_top_p_keeps_the_smallest_set_with_mass_p():
    torch.manual_seed(0)
    logits = 3 * torch.randn(200, 12)
    for p in (0.1, 0.5, 0.9, 0.99):
        kept = torch.isfinite(TopP(p)(logits))
        probs = logits.softmax(-1)
        mass = (probs * kept).sum(-1)
        smallest = probs.masked_fill(~kept, math.inf).amin(-1)
        largest_dropped = probs.masked_fill(kept, -math.inf).amax(-1)
        assert (mass >= p - 1e-12).all()
        assert (mass - smallest < p).all()  # dropping any kept value falls below p
        assert (largest_dropped <= smallest).all()  # the most probable values are kept


def test_strategies_on_known_logits():
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    assert torch.isfinite(TopP(0.5)(logits)).tolist() == [True, False, False]
    assert torch.isfinite(TopP(0.51)(logits)).tolist() == [True, True, False]
    assert torch.isfinite(TopK(2)(logits)).tolist() == [True, True, False]
    # Ties at the boundary still keep exactly k.
    assert torch.isfinite(TopK(2)(torch.zeros(5))).sum() == 2
    assert torch.allclose(Temperature(0.5)(logits), 2 * logits)
    for bad in (lambda: TopK(0), lambda: TopP(0.0), lambda: TopP(1.5), lambda: Temperature(0)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize(
    "strategy", [Temperature(2.0), TopK(2), TopP(0.6), [Temperature(0.5), TopP(0.8)]], ids=repr
)
def test_strategy_samples_the_documented_distribution(strategy):
    # q(x) = prod_i softmax(s(logits_i(x_<i)))_{x_i}, computed by teacher forcing, while
    # log_prob stays the model's.
    model = build("Transformer", scale=1.0)
    d = model()
    x = all_values(model)
    with torch.no_grad():
        logits = apply(strategy, model.conditionals(x).log_softmax(-1))
        q = logits.log_softmax(-1).gather(-1, x.long()[..., None]).squeeze(-1).sum(-1).exp()
        n = 4000
        samples = d.sample((n,), strategy)
    assert torch.allclose(q.sum(), torch.ones(()))
    index = (samples.long() * 3 ** torch.arange(3, -1, -1)).sum(-1)
    counts = torch.bincount(index, minlength=len(x)).double()
    assert counts[q == 0].sum() == 0
    assert chi_square_p_value(q, counts, n) > TEST_FAILURE_RATE


def test_gaussian_family_only_tempers():
    d = MADE(3, GaussianFamily(), hidden=(8,)).double()()
    torch.manual_seed(0)
    assert d.sample((2,), temperature=0.5).shape == (2, 3)
    with pytest.raises(ValueError, match="supports Temperature only"):
        d.sample((2,), top_k=2)
    with pytest.raises(ValueError, match="not both"):
        d.sample((2,), TopK(1), temperature=1.0)


# Validation


def test_log_prob_validates_values():
    d = build("WaveNet", context=2)(torch.randn(2))
    for bad in (
        torch.tensor([0.0, 1.0, 0.5, 2.0]),
        torch.tensor([0.0, 3.0, 1.0, 2.0]),
        torch.tensor([0.0, -1.0, 1.0, 2.0]),
    ):
        with pytest.raises(ValueError, match="support"):
            d.log_prob(bad)
    with pytest.raises(ValueError, match=r"event_shape \(4,\).*got shape \(2, 5\)"):
        d.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="non-finite"):
        d.log_prob(torch.tensor([0.0, math.nan, 1.0, 2.0]))
    # Integer tensors are values too.
    assert d.log_prob(torch.tensor([0, 1, 2, 2])).shape == ()


def test_construction_errors():
    with pytest.raises(ValueError, match="continuous"):
        WaveNet(4, GaussianFamily())
    with pytest.raises(ValueError, match="permutes 0..2"):
        MADE(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="expected an order with shape"):
        ChainRule(lambda x, c: x[..., None], GaussianFamily(), (3,), order=torch.arange(2))
    with pytest.raises(ValueError, match="network returned parameters with shape"):
        ChainRule(lambda x, c: x[..., None], GaussianFamily(), (3,)).log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="incremental network"):
        MADE(3, hidden=(4,))().sample(cache=True)
    with pytest.raises(ValueError, match="divisible"):
        PixelCNN((3, 4, 4), channels=8)


def test_made_masks_share_weights_and_mix():
    one = MADE(5, hidden=(16,))
    three = MADE(5, hidden=(16,), masks=3)
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in three.parameters())
    d = three()
    assert type(d).__name__ == "OrderMixture" and len(d.components) == 3
    assert len({tuple(o.tolist()) for o in three.orders}) == 3


def test_bernoulli_family_matches_torch():
    theta, x = torch.randn(7, 1), torch.randint(2, (7,)).double()
    expected = torch.distributions.Bernoulli(logits=theta[:, 0]).log_prob(x)
    assert torch.allclose(BernoulliFamily().log_prob(theta, x), expected)
    assert torch.allclose(BernoulliFamily().logits(theta).exp().sum(-1), torch.ones(7))


def test_discretized_logistics_normalised_at_extremes_and_exact_in_the_middle():
    family = LogisticMixtureFamily(components=3, levels=256)
    torch.manual_seed(0)
    params = torch.cat(
        [
            torch.randn(6, 3),
            3 * torch.randn(6, 3),
            torch.tensor([[-7.0] * 3, [-20.0] * 3, [5.0] * 3, [0.0] * 3, [-3.0] * 3, [1.0] * 3]),
        ],
        -1,
    )
    logits = family.logits(params)
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits.exp().sum(-1), torch.ones(6), atol=1e-12)
    # Against sigmoid differences, where they do not cancel.
    d = family.distribution(params[3])
    x = torch.tensor(100.0)
    v, h = 2 * x / 255 - 1, 1 / 255
    s = d.log_scale.exp()
    mass = torch.sigmoid((v + h - d.loc) / s) - torch.sigmoid((v - h - d.loc) / s)
    assert torch.allclose(d.log_prob(x), (d.logits.softmax(-1) * mass).sum().log())


# Data


def test_mu_law():
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x)
    assert q.min() == 0 and q.max() == 255 and (q.diff() >= 0).all()
    # Half the widest level (next to +-1): ln(256) 256 / 255^2 = 0.0218.
    assert (mu_law_decode(q) - x).abs().max() < 0.022
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))


def test_synthetic_audio_and_wav(tmp_path):
    a, b = synthetic_audio(5, 400, seed=3), synthetic_audio(5, 400, seed=3)
    assert torch.equal(a, b) and a.shape == (5, 400)
    assert torch.allclose(a.abs().amax(-1), torch.full((5,), 0.9))
    save_wav(tmp_path / "x.wav", a[0], 8000)
    with wave.open(str(tmp_path / "x.wav")) as f:
        assert (f.getnframes(), f.getframerate(), f.getsampwidth()) == (400, 8000, 2)


def test_text_corpus():
    assert len(VOCABULARY) == 96
    assert decode(encode("def f(x):\n\treturn x")) == "def f(x):\n return x"
    train, test = docstrings("train", ("json",)), docstrings("test", ("json",))
    assert torch.equal(torch.cat([train, test]), docstrings("all", ("json",)))
    assert len(test) > 0 and int(train.max()) < 96
    w = windows(train, 32, stride=16)
    assert w.shape[1] == 32 and torch.equal(w[1, :16], w[0, 16:])
    with pytest.raises(ValueError, match="length"):
        windows(train[:10], 11)
