r"""Continuous-time models against torchcfm and diffusers on a 2-D toy density.

Flow matching: probgen's :class:`~probgen.ode.FlowMatching` objective against torchcfm's
``ConditionalFlowMatcher`` (independent coupling, :math:`\sigma = 0`) and
``ExactOptimalTransportConditionalFlowMatcher`` (minibatch OT), each training the *same*
network (``TimeMLP``, same initial weights from one seed) on the same batches for the
same number of steps. Diffusion: one network trained by probgen's denoising loss (VP SDE,
DDPM's linear schedule, noise prediction), then sampled by probgen's DDPM and DDIM and by
diffusers' ``DDPMScheduler`` and ``DDIMScheduler`` (linear betas 1e-4..0.02, 1000 training
steps, no clipping) at the same number of steps: diffusers' discrete step :math:`i` calls
the network at the probgen time whose :math:`\alpha_t^2` equals ``alphas_cumprod[i]``
exactly (the linear schedule's continuous limit, inverted in closed form), with
``timestep_spacing="trailing"`` so that its first step, like probgen's, starts at the
last training step (pure noise; the default "leading" spacing starts short of it).
diffusers has no training loss, so only its schedulers are compared.

Metrics: test NLL (nats) through probgen's ODE (exact trace, dopri5) for every trained
network, with its standard error and the density's entropy (the floor); the energy
distance of samples to held-out samples, next to its noise floor (held-out against
held-out); training ms/step (median, warm-up excluded); sampling seconds at equal NFE.

    nice -n 5 python benchmarks/continuous.py --out benchmarks/results/continuous.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

import probgen as pg
from probgen import objectives as O
from probgen.diffusion import VP, Diffusion, ddim, ddpm, uniform_grid
from probgen.metrics import energy_distance
from probgen.nn import TimeMLP
from probgen.ode import FlowMatching, OTCoupling
from probgen.transforms.continuous import ODETransform


def _train(step: Callable[[Tensor], Tensor], params, batches: Tensor, lr: float) -> float:
    # A plain loop, the same for every library; returns the median ms per step.
    opt = torch.optim.Adam(params, lr)
    times = []
    for x in batches:
        tic = time.perf_counter()
        opt.zero_grad()
        step(x).backward()
        opt.step()
        times.append(time.perf_counter() - tic)
    return 1000 * statistics.median(times[10:] or times)


def _nll(d, test: Tensor) -> tuple[float, float, int]:
    with torch.no_grad():
        log_p, nfe = d.log_prob_and_nfe(test)
    return float(-log_p.mean()), float(log_p.std() / math.sqrt(len(log_p))), nfe


def _timed(f: Callable[..., Tensor], *args) -> tuple[Tensor, float]:
    tic = time.perf_counter()
    with torch.no_grad():
        y = f(*args)
    return y, time.perf_counter() - tic


def _euler(field, z: Tensor, steps: int) -> Tensor:
    # A bare Euler loop on v(x, t): what a torchcfm user writes without torchdyn.
    t = torch.linspace(0, 1, steps + 1)
    for k in range(steps):
        z = z + (t[k + 1] - t[k]) * field(z, t[k])
    return z


def _solve(ode: ODETransform, z: Tensor) -> Tensor:
    return ode.solve(z, ladj=False).x


def _tau(alpha_bar: Tensor, lo: float, hi: float) -> Tensor:
    # tau with alpha_tau^2 = alpha_bar for beta(tau) = lo + tau (hi - lo): the root of
    # (hi - lo) tau^2 / 2 + lo tau + log alpha_bar = 0.
    return (-lo + torch.sqrt(lo**2 - 2 * (hi - lo) * alpha_bar.log())) / (hi - lo)


def _diffusers(net, scheduler, z: Tensor, steps: int, seed: int) -> Tensor:
    sde = VP()
    scheduler.set_timesteps(steps)
    ab = scheduler.alphas_cumprod.double()
    t_of = (1 - _tau(ab, sde.schedule.beta_min, sde.schedule.beta_max)).to(z.dtype)
    g = torch.Generator().manual_seed(seed)
    x = z
    for i in scheduler.timesteps:
        eps = net(x, t_of[int(i)], None)
        x = scheduler.step(eps, int(i), x, generator=g).prev_sample
    return x


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--density", default="8gaussians")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64, help="width of the 3 hidden layers")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--test", type=int, default=2000, help="test points for the NLL")
    p.add_argument("--samples", type=int, default=2000, help="samples per energy distance")
    p.add_argument("--nfe", default="10,50", help="sampler steps (NFE) compared")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON output path")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import DDIMScheduler, DDPMScheduler
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    start = time.perf_counter()
    toy = pg.data.toy(args.density)
    torch.manual_seed(args.seed)
    batches = toy.sample((args.steps, args.batch_size)).float()
    test, held = toy.sample((args.test,)).float(), toy.sample((args.samples,)).float()
    floor = float(energy_distance(toy.sample((args.samples,)).float(), held))
    entropy = toy.entropy_estimate().value
    nfes = [int(k) for k in args.nfe.split(",")]
    hidden = (args.hidden,) * 3
    rows: list[dict] = []

    def row(**kw):
        rows.append(kw)
        print(json.dumps(kw), flush=True)

    def quality(y: Tensor) -> float:
        return float(energy_distance(y, held))

    # Flow matching: probgen against torchcfm, the same network and batches.
    fm_cases = {
        ("probgen", "independent"): None,
        ("torchcfm", "independent"): ConditionalFlowMatcher(sigma=0.0),
        ("probgen", "minibatch OT"): None,
        ("torchcfm", "minibatch OT"): ExactOptimalTransportConditionalFlowMatcher(sigma=0.0),
    }
    for (lib, coupling), matcher in fm_cases.items():
        torch.manual_seed(args.seed)
        net = TimeMLP(2, hidden=hidden)
        model = FlowMatching(
            2, field=net, coupling=OTCoupling() if coupling == "minibatch OT" else None
        )
        if matcher is None:

            def step(x, model=model):
                return O.flow_matching(model, x)

        else:

            def step(x, net=net, matcher=matcher):
                t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x), x)
                return (net(xt, t) - ut).square().sum(-1).mean()

        torch.manual_seed(args.seed + 1)
        ms = _train(step, net.parameters(), batches, args.lr)
        nll, se, nfe_nll = _nll(model(), test)
        torch.manual_seed(args.seed + 2)
        z = torch.randn(args.samples, 2)
        y, seconds = _timed(_solve, model().transform, z)
        sampling = {"dopri5": {"energy": quality(y), "seconds": seconds}}
        for k in nfes:
            # Euler at k steps through probgen's ODETransform (torchdiffeq's fixed grid)
            # and as a bare loop on the same network: the same samples up to rounding.
            ode = ODETransform(net, None, 0.0, 1.0, method="euler", options={"step_size": 1 / k})
            y, seconds = _timed(_solve, ode, z)
            sampling[f"probgen euler {k}"] = {"energy": quality(y), "seconds": seconds}
            y, seconds = _timed(_euler, net, z, k)
            sampling[f"bare-loop euler {k}"] = {"energy": quality(y), "seconds": seconds}
        row(family="flow matching", library=lib, coupling=coupling, train_ms_per_step=ms,
            test_nll=nll, test_nll_se=se, nfe_log_prob=nfe_nll, sampling=sampling)  # fmt: skip

    # Diffusion: one network trained by probgen, sampled by probgen and by diffusers.
    torch.manual_seed(args.seed)
    model = Diffusion(2, hidden=hidden).float()
    torch.manual_seed(args.seed + 1)
    ms = _train(lambda x: O.denoising(model, x), model.parameters(), batches, args.lr)
    d = model()
    nll, se, nfe_nll = _nll(d, test)
    sampling = {}
    torch.manual_seed(args.seed + 2)
    z = torch.randn(args.samples, 2)
    schedulers = {
        "diffusers DDPM": lambda: DDPMScheduler(
            1000,
            beta_start=1e-4,
            beta_end=0.02,
            beta_schedule="linear",
            clip_sample=False,
            timestep_spacing="trailing",
        ),
        "diffusers DDIM": lambda: DDIMScheduler(
            1000,
            beta_start=1e-4,
            beta_end=0.02,
            beta_schedule="linear",
            clip_sample=False,
            timestep_spacing="trailing",
        ),
    }
    for k in nfes:
        grid = uniform_grid(k, d.t_max)
        for name, sampler in {"probgen DDPM": ddpm, "probgen DDIM": ddim}.items():
            torch.manual_seed(args.seed + 3)
            y, seconds = _timed(sampler, d.eps, d.sde, z, grid)
            y = y[0]
            sampling[f"{name} {k}"] = {"energy": quality(y), "seconds": seconds}
        for name, make in schedulers.items():
            y, seconds = _timed(_diffusers, model.network, make(), z, k, args.seed + 3)
            sampling[f"{name} {k}"] = {"energy": quality(y), "seconds": seconds}
    row(family="diffusion", library="probgen", coupling="-", train_ms_per_step=ms,
        test_nll=nll, test_nll_se=se, nfe_log_prob=nfe_nll, sampling=sampling)  # fmt: skip

    results = {
        "config": vars(args),
        "entropy": entropy,
        "energy_noise_floor": floor,
        "rows": rows,
        "seconds": time.perf_counter() - start,
        "versions": {"torch": torch.__version__, **_versions()},
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("probgen", "torchcfm", "diffusers")}


if __name__ == "__main__":
    main()
