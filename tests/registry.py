r"""Every family, as small instances the conformance suite runs over.

A new family adds one :class:`Case` per configuration (conditional and not); the suite in
``test_conformance.py`` picks its checks from the case and from ``log_prob_kind``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

import probgen as pg
import probgen.testing


@dataclass
class Case:
    name: str
    factory: Callable[[], nn.Module]
    context: int = 0
    event_shape: tuple[int, ...] = (2,)
    # Grid quadrature and goodness of fit apply to low-dimensional continuous events.
    quadrature: bool = True
    gof: bool = True
    # Checks to skip, each with its reason (e.g. a sequential log_prob too slow for gof).
    skip: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return self.name


def _flows() -> list[Case]:
    small = dict(transforms=2, hidden=(16, 16))
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(f"MAF{tag}", lambda c=context: pg.flows.MAF(2, c, **small), context),
            Case(
                f"MAF-1d{tag}",
                lambda c=context: pg.flows.MAF(1, c, **small),
                context,
                (1,),
                skip={} if context else {"gradients": "a 1-D MADE with no context has no "
                "inputs: its hidden layers are constant by construction"},
            ),
            Case(f"IAF{tag}", lambda c=context: pg.flows.IAF(2, c, **small), context),
            Case(f"RealNVP{tag}", lambda c=context: pg.flows.RealNVP(2, c, **small), context),
            Case(
                f"NSF{tag}",
                lambda c=context: pg.flows.NSF(2, c, bins=4, bound=4.0, **small),
                context,
            ),
            Case(
                f"NSF-coupling{tag}",
                lambda c=context: pg.flows.NSF(2, c, bins=4, bound=4.0, coupling=True, **small),
                context,
            ),
            Case(
                f"MAF-5d{tag}",
                lambda c=context: pg.flows.MAF(5, c, randperm=True, **small),
                context,
                (5,),
                quadrature=False,
                gof=False,
            ),
        ]
    return cases


def _autoregressive() -> list[Case]:
    # Discrete chain rules skip the grid checks: test_autoregressive.py sums them over
    # every configuration and runs chi-square tests on small spaces instead.
    ar = pg.autoregressive
    discrete = dict(quadrature=False, gof=False)
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(
                f"MADE-bernoulli{tag}",
                lambda c=context: ar.MADE(4, context=c, hidden=(16,)),
                context,
                (4,),
                **discrete,
            ),
            Case(
                f"MADE-categorical-3masks{tag}",
                lambda c=context: ar.MADE(
                    4, ar.CategoricalFamily(3), c, hidden=(16, 16), masks=3
                ),
                context,
                (4,),
                **discrete,
            ),
            Case(
                f"MADE-gaussian{tag}",
                lambda c=context: ar.MADE(2, ar.GaussianFamily(), c, hidden=(16,)),
                context,
                (2,),
            ),
            Case(
                f"NADE-bernoulli{tag}",
                lambda c=context: ar.NADE(4, context=c, hidden=8, order=[2, 0, 3, 1]),
                context,
                (4,),
                **discrete,
            ),
            Case(
                f"PixelCNN-gated{tag}",
                lambda c=context: ar.PixelCNN((1, 3, 3), context=c, channels=4, layers=2),
                context,
                (1, 3, 3),
                **discrete,
            ),
            Case(
                f"PixelCNN-plain-logistics{tag}",
                lambda c=context: ar.PixelCNN(
                    (2, 2, 2), ar.LogisticMixtureFamily(2, 5), c, channels=4, layers=2,
                    gated=False,
                ),
                context,
                (2, 2, 2),
                **discrete,
            ),
            Case(
                f"WaveNet{tag}",
                lambda c=context: ar.WaveNet(
                    5, ar.CategoricalFamily(4), c, channels=4, skip=4, dilations=(1, 2)
                ),
                context,
                (5,),
                **discrete,
            ),
            Case(
                f"Transformer{tag}",
                lambda c=context: ar.Transformer(
                    5, ar.CategoricalFamily(4), c, features=8, heads=2, layers=1
                ),
                context,
                (5,),
                **discrete,
            ),
        ]
    return cases


def _image_flows() -> list[Case]:
    cases = []
    for context in (0, 2):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(
                f"Glow{tag}",
                lambda c=context: pg.flows.Glow((1, 4, 4), c, levels=2, steps=1, hidden=8),
                context,
                (1, 4, 4),
                quadrature=False,
                gof=False,
            ),
            Case(
                f"Dequantized-uniform{tag}",
                lambda c=context: pg.flows.Dequantization(
                    pg.flows.MAF(2, c, transforms=2, hidden=(8,)), levels=4
                ),
                context,
                (2,),
                quadrature=False,
                gof=False,
            ),
        ]
    cases.append(
        Case(
            "Dequantized-variational",
            lambda: pg.flows.Dequantization(
                pg.flows.RealNVP(2, transforms=2, hidden=(8,)),
                levels=4,
                dequantizer=pg.flows.VariationalDequantizer((2,), 4, transforms=2, hidden=(8,)),
            ),
            0,
            (2,),
            quadrature=False,
            gof=False,
        )
    )
    return cases


def _energy() -> list[Case]:
    # Unnormalised densities: the suite scores unnormalized_log_prob and skips quadrature
    # and goodness of fit; test_energy.py checks the kernels and normalisers instead.
    kernel = pg.samplers.MALA(0.05)
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(
                f"EBM{tag}",
                lambda c=context: pg.energy.EBM(
                    features=2, context=c, hidden=(16,), kernel=kernel, steps=3
                ),
                context,
                (2,),
            ),
            Case(
                f"RBM{tag}",
                lambda c=context: pg.energy.RBM(5, 3, context=c, steps=3),
                context,
                (5,),
                quadrature=False,
                gof=False,
            ),
        ]
    return cases


def _implicit() -> list[Case]:
    # No density: the suite checks shapes, context batch shapes, expand, Pyro sample sites
    # and seeded samples (train/eval, state_dict); test_implicit.py checks that rsample
    # gradients reach every generator parameter and that log_prob raises.
    im = pg.implicit
    no_density = dict(quadrature=False, gof=False)
    skip = {"gradients": "no log_prob to differentiate; the discriminator is not part of "
            "the distribution: test_implicit.py checks rsample gradients instead"}
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(
                f"GAN{tag}",
                lambda c=context: im.GAN(
                    im.ContextMLP(4, 2, c, hidden=(16,)),
                    im.spectral_normalize(im.ContextMLP(2, 1, c, hidden=(16,))),
                    latent=4,
                    context=c,
                ),
                context,
                skip=skip,
                **no_density,
            ),
            Case(
                f"GMMN{tag}",
                lambda c=context: im.GMMN(im.ContextMLP(3, 2, c, hidden=(16,)), 3, c),
                context,
                skip=skip,
                **no_density,
            ),
        ]
    for context in (0, 2):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(
                f"DCGAN{tag}",
                lambda c=context: im.GAN(
                    im.DCGenerator(8, (1, 8, 8), c, channels=4, embedding=4),
                    im.DCDiscriminator((1, 8, 8), c, channels=4, spectral=True),
                    latent=8,
                    context=c,
                ),
                context,
                (1, 8, 8),
                skip=skip,
                **no_density,
            ),
            Case(
                f"StyleGAN{tag}",
                lambda c=context: im.GAN(
                    im.StyleGenerator(8, (1, 8, 8), c, style=8, channels=4, mapping=1),
                    im.DCDiscriminator((1, 8, 8), c, channels=4),
                    latent=8,
                    context=c,
                ),
                context,
                (1, 8, 8),
                skip=skip,
                **no_density,
            ),
        ]
    return cases


def _continuous() -> list[Case]:
    # ODE flows: exact trace and tight tolerances in float64, so that the transform checks
    # (inverse, ladj against the autograd Jacobian) hold to the solver's accuracy.
    ode = pg.ode
    solver = dict(hidden=(8,), rtol=1e-6, atol=1e-6)
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(f"CNF{tag}", lambda c=context: ode.CNF(2, c, **solver), context),
            Case(
                f"FlowMatching-OT{tag}",
                lambda c=context: ode.FlowMatching(2, c, coupling=ode.OTCoupling(), **solver),
                context,
            ),
        ]
    return cases


def _vq() -> list[Case]:
    # VQ-VAEs: with a likelihood, log_prob is the bound log p(x|z_q(x)) + log p(z_q(x))
    # ("bound"); with a deterministic decoder there is no density ("none"). Discrete or
    # image events: no grid quadrature or goodness of fit here; test_vq.py sums the bound
    # and the exact marginal over every value of a tiny model and tests samples against it.
    from probgen.distributions.vq import VQVAE

    ar = pg.autoregressive
    skip = {"gradients": "the codes z_q(x) are an argmin, piecewise constant in the "
            "encoder's parameters: no gradient of the bound reaches the encoder (training "
            "uses straight-through gradients; test_vq.py checks them)"}
    small = dict(codes=4, dim=3, hidden=4, prior_layers=2)
    cases = []
    for context in (0, 2):
        tag = "" if context == 0 else f"|c={context}"
        cases.append(
            Case(
                f"VQVAE-categorical{tag}",
                lambda c=context: VQVAE.small(
                    (1, 4, 4), likelihood=ar.CategoricalFamily(5), context=c, **small
                ),
                context,
                (1, 4, 4),
                quadrature=False,
                gof=False,
                skip=skip,
            )
        )
    cases += [
        Case(
            "VQVAE-gaussian-ema",
            lambda: VQVAE.small(
                (1, 4, 4), likelihood=ar.GaussianFamily(), ema=True, restart=0.5, **small
            ),
            0,
            (1, 4, 4),
            quadrature=False,
            gof=False,
            skip=skip,
        ),
        Case(
            "VQVAE-deterministic",
            lambda: VQVAE.small((1, 4, 4), **small),
            0,
            (1, 4, 4),
            quadrature=False,
            gof=False,
            skip={"gradients": "no density (log_prob_kind 'none'): no log_prob to "
                  "differentiate; test_vq.py checks the training objective's gradients"},
        ),
    ]
    return cases


def _latent() -> list[Case]:
    # Importance-weighted estimates (log_prob_kind "estimate"): the suite's grid quadrature
    # and goodness of fit need exact densities; test_latent.py integrates the unbiased
    # estimate exp(log_prob) by quadrature instead. The marginal has no rsample.
    lt, nn_ = pg.latent, pg.implicit
    cases = [
        Case(
            "VAE",
            lambda: lt.VAE(
                nn_.ContextMLP(2, 4, hidden=(16,)), nn_.ContextMLP(2, 4, hidden=(16,)),
                latent=2, event_shape=2, particles=4,
            ),
            quadrature=False,
            gof=False,
        ),
        Case(
            "VAE-NSF-prior-bernoulli",
            lambda: lt.VAE(
                nn_.ContextMLP(4, 4, hidden=(16,)), nn_.ContextMLP(2, 4, hidden=(16,)),
                pg.flows.NSF(2, transforms=1, hidden=(8,), bins=4, bound=4.0),
                event_shape=4, likelihood=lt.BernoulliFamily(), particles=4,
            ),
            event_shape=(4,),
            quadrature=False,
            gof=False,
        ),
        Case(
            "VAE-MAF-prior|c=3",
            lambda: lt.VAE(
                nn_.ContextMLP(2, 4, 3, hidden=(16,)), nn_.ContextMLP(2, 4, 3, hidden=(16,)),
                pg.flows.MAF(2, 3, transforms=1, hidden=(8,)),
                event_shape=2, context=3, particles=4,
            ),
            3,
            quadrature=False,
            gof=False,
        ),
    ]
    return cases


def _diffusion() -> list[Case]:
    # Diffusion: exact log_prob through the probability-flow ODE. The field of a perturbed
    # random network, -f x + g^2 eps / (2 sigma_t), expands errors near the noise end
    # (by 1 / alpha_0 ~ 150 for VP), so the transform checks (inverse, ladj against
    # autograd to 1e-5) need tolerances of 1e-8 with a small network (hidden 8).
    # Each solve costs hundreds of evaluations: one SDE (VP, the default) and no grid
    # checks. Quadrature (90,000 points) and goodness of fit (100,000 samples) each take
    # minutes through that ODE; test_diffusion.py and test_score.py check the density
    # against closed forms with the analytic score instead (VP, sub-VP, VE, the NCSN
    # ladder).
    # Score models (NCSN, ScoreModel) sample by Langevin dynamics: log_prob_kind "none"
    # (shapes, context, expand, Pyro sites and seeded samples run; the NCSN's own density
    # is its probability_flow(), a DiffusionDistribution, checked in test_score.py).
    df = pg.diffusion
    solver = dict(hidden=(8,), rtol=1e-8, atol=1e-8)
    slow = dict(quadrature=False, gof=False)
    skip = {"gradients": "no log_prob to differentiate: test_score.py trains score models "
            "through their objectives"}
    cases = []
    for context in (0, 3):
        tag = "" if context == 0 else f"|c={context}"
        cases += [
            Case(f"Diffusion-VP{tag}", lambda c=context: df.Diffusion(2, c, **solver), context,
                 **slow),
            Case(
                f"NCSN{tag}",
                lambda c=context: df.NCSN(
                    2, c, sigmas=df.geometric_sigmas(2.0, 0.1, 3), hidden=(8,), steps=3,
                    step_size=1e-3,
                ),
                context,
                skip=skip,
                **slow,
            ),
            Case(
                f"ScoreModel{tag}",
                lambda c=context: df.ScoreModel(2, c, hidden=(8,), steps=3),
                context,
                skip=skip,
                **slow,
            ),
        ]
    return cases


CASES: list[Case] = (
    _flows() + _image_flows() + _autoregressive() + _energy() + _implicit() + _continuous()
    + _latent() + _vq() + _diffusion()
)


def build(case: Case) -> nn.Module:
    r"""Builds a case in float64 with a fixed seed, perturbed away from its initialisation."""
    torch.manual_seed(1)
    model = case.factory().double()
    # Data-dependent initialisations (ActNorm) run on the first batch scored: score one
    # batch first, as training would, so that later checks see a fixed model.
    c = torch.randn(case.context) if case.context else None
    with torch.no_grad():
        d = model(c) if c is not None else model()
        if pg.distributions.log_prob_kind(d) not in ("none", "unnormalized"):
            d.log_prob(d.sample((16,)))
    pg.testing.perturb(model, scale=0.1)
    return model
