r"""An energy-based model on toy 2-D densities, trained by persistent CD with MALA chains.

The energy :math:`E_\theta(x) = \mathrm{MLP}_\theta(x) + \|x\|^2 / (2 \cdot 4^2)` (the
quadratic term keeps :math:`\exp(-E)` integrable wherever the network is flat) is trained
by persistent contrastive divergence: a replay buffer of chains, 5% reinitialised each
step, each moved by a few MALA transitions, and a small squared-energy penalty. In 2-D the
normaliser is exact by quadrature, so the recipe reports the *exact* test NLL of the
learned model, :math:`\mathbb{E}[E_\theta(x)] + \log Z_\theta`, against the density's
entropy (the gap is :math:`\mathrm{KL}(p \| p_\theta) \geq 0`).

One PNG per density: the true density, the learned :math:`\exp(-E_\theta)` (normalised),
samples of fresh MALA chains from the initial distribution, and those chains at several
times. ``results.json`` holds the numbers. Run it as ``probgen run ebm_2d``; the defaults
take about five minutes on two CPU cores (``--quick`` a tenth of the steps).
"""

from __future__ import annotations

__all__ = ["Confined", "build", "main"]

import argparse
import json
import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import probgen as pg
from probgen.data import TOYS, toy
from probgen.distributions import DiagNormal
from probgen.lazy import UnconditionalDistribution
from probgen.samplers import MALA, ReplayBuffer, run_chain

DEFAULT_DENSITIES = ("8gaussians", "rings")


class Confined(nn.Module):
    r"""An MLP energy plus a weak quadratic confinement :math:`\|x\|^2 / (2 s^2)`."""

    def __init__(self, features: int = 2, hidden: int = 128, scale: float = 4.0) -> None:
        super().__init__()
        self.net = pg.nn.MLP(features, 1, (hidden, hidden, hidden), activation=nn.SiLU)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + (x**2).sum(-1) / (2 * self.scale**2)


def build(hidden: int, step_size: float, mcmc_steps: int, init_scale: float) -> pg.energy.EBM:
    r"""The recipe's EBM: a confined MLP energy, MALA chains from :math:`N(0, s^2 I)`."""
    init = UnconditionalDistribution(DiagNormal, torch.zeros(2), init_scale * torch.ones(2))
    return pg.energy.EBM(
        Confined(2, hidden), 2, init=init, kernel=MALA(step_size), steps=mcmc_steps
    )


def _names(value: str) -> list[str]:
    names = list(TOYS) if value == "all" else [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in TOYS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown density {', '.join(unknown) or '(none)'}; expected some of "
            f"{', '.join(TOYS)}, or all"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run ebm_2d",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--densities", type=_names, default=list(DEFAULT_DENSITIES))
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--hidden", type=int, default=128, help="width of the energy's MLP")
    parser.add_argument("--mcmc-steps", type=int, default=10, help="MALA steps per update")
    parser.add_argument("--step-size", type=float, default=0.01, help="MALA's time step")
    parser.add_argument("--buffer", type=int, default=10_000, help="persistent chains")
    parser.add_argument("--reinit", type=float, default=0.05, help="chains reset per step")
    parser.add_argument("--regularization", type=float, default=0.01, help="energy penalty")
    parser.add_argument(
        "--sample-steps", type=int, default=None,
        help="MALA steps of the plotted chains (default: 500, or 50 per training step)",
    )  # fmt: skip
    parser.add_argument("--test-size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("outputs/ebm_2d"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        What ``results.json`` holds: the configuration and one row per density.
    """
    args = _parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"ebm_2d: expected --steps >= 1, got {args.steps}")
    steps = max(1, args.steps // 10) if args.quick else args.steps
    args.sample_steps = args.sample_steps or min(500, 50 * steps)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    start = time.perf_counter()
    try:
        for i, name in enumerate(args.densities):
            torch.manual_seed(args.seed + i)
            d = toy(name)
            reach = float(d.sample((10_000,)).abs().max()) * 1.1
            model = build(args.hidden, args.step_size, args.mcmc_steps, reach / 2)
            buffer = ReplayBuffer(args.buffer, reinit=args.reinit)
            objective = partial(
                pg.objectives.persistent_contrastive_divergence,
                buffer=buffer,
                regularization=args.regularization,
            )
            tic = time.perf_counter()
            history = pg.fit(
                model, d.sample, objective=objective, steps=steps, batch_size=args.batch_size,
                lr=args.lr, seed=args.seed, progress=args.progress,
            )  # fmt: skip
            seconds = time.perf_counter() - tic
            ebm = model()
            # Exact in 2-D: quadrature of exp(-E) on a box holding the mass (the
            # confinement's scale 4 makes +-(reach + 12) ample).
            log_z = ebm.log_normalizer("quadrature", bounds=(-reach - 12, reach + 12), points=401)
            test = d.sample((args.test_size,))
            with torch.no_grad():
                nll = ebm.energy(test) + log_z.value
            entropy = d.entropy_estimate()
            g = torch.Generator().manual_seed(args.seed)
            x0 = ebm.init.sample((2000,))
            snapshots = _snapshots(ebm, x0, args.sample_steps, g)
            row = {
                "density": name,
                "steps": steps,
                "test_nll": nll.mean().item(),
                "test_nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
                "entropy": entropy.value,
                "gap": nll.mean().item() - entropy.value,
                "log_z": log_z.value.item(),
                "final_loss": history.loss[-1],
                "train_seconds": seconds,
            }
            rows.append(row)
            print(
                f"{name:<12} test NLL {row['test_nll']:.3f} ± {row['test_nll_stderr']:.3f}"
                f"  entropy {row['entropy']:.3f}  gap {row['gap']:.3f}  {seconds:.0f}s",
                flush=True,
            )
            if args.plots:
                _plot(args.out / f"{name}.png", name, ebm, log_z.value, snapshots, reach)
    finally:
        torch.set_num_threads(threads)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"config": config, "results": rows, "total_seconds": time.perf_counter() - start}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _snapshots(
    ebm: Any, x0: torch.Tensor, steps: int, g: torch.Generator
) -> dict[int, torch.Tensor]:
    # The chains at a few times, from the initial distribution to the end.
    times = sorted({0, steps // 50, steps // 10, steps // 2, steps})
    out, state, done = {0: x0}, x0, 0
    for t in times[1:]:
        chain = run_chain(ebm.kernel, state, ebm.target, t - done, record=False, generator=g)
        state, done = chain.state, t
        out[t] = state.x
    return out


@torch.no_grad()
def _plot(path: Path, name: str, ebm: Any, log_z: torch.Tensor, snapshots: dict, reach: float):
    from matplotlib.figure import Figure

    n = 150
    t = torch.linspace(-reach, reach, n)
    grid = torch.cartesian_prod(t, t).flip(-1)
    truth = toy(name, validate_args=False).log_prob(grid).exp().reshape(n, n)
    learned = (-ebm.energy(grid) - log_z).exp().reshape(n, n)
    extent = (-reach, reach, -reach, reach)
    times = sorted(snapshots)
    fig = Figure(figsize=(2.6 * (2 + len(times)), 2.8), layout="constrained")
    axes = fig.subplots(1, 2 + len(times))
    axes[0].imshow(truth.numpy(), origin="lower", extent=extent, cmap="viridis")
    axes[0].set_title("true density")
    axes[1].imshow(learned.numpy(), origin="lower", extent=extent, cmap="viridis")
    axes[1].set_title("learned exp(-E) / Z")
    for ax, k in zip(axes[2:], times, strict=True):
        x = snapshots[k]
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=1, alpha=0.5)
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_title(f"MALA chains, step {k}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(f"EBM on {name}: persistent CD with MALA")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
