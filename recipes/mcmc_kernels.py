r"""MCMC kernels compared on a hard 2-D target: effective samples per second of RWM, MALA, HMC.

The target is Haario's twisted Gaussian ("banana"): :math:`x \sim \mathcal{N}(0,
\mathrm{diag}(100, 1))` bent by :math:`y = (x_1, x_2 + b (x_1^2 - 100))`, a volume-preserving
map, so

.. math:: \log p(y) = -\frac{y_1^2}{200} - \frac{(y_2 - b (y_1^2 - 100))^2}{2}
    - \log(20 \pi)

with exact samples, :math:`\mathbb{E}[y] = 0` and :math:`\mathrm{Var}[y_2] = 1 + 2 \cdot
10^4 b^2`. Its scales differ by 10 and its curvature changes along the arms, which is what
defeats a single step size. Every kernel runs many chains started from exact samples (so
there is no burn-in to argue about), adapts its step size by dual averaging, then runs
``--samples`` transitions (HMC with 10 leapfrog steps and its step jittered by
:math:`\pm 50\%` per chain and transition; ``hmc-fixed`` without jitter); the effective
sample size (Geyer's estimator pooled over chains, the worse of the two coordinates) per
second of sampling is the score. Pyro's NUTS (``--kernels pyro-nuts``), one chain at a
time, gives an outside reference.

Writes ``kernels.png`` (samples of each kernel over the density, a trace, ESS per second)
and ``results.json``. Run it as ``probgen run mcmc_kernels``; the defaults take about a
minute on two CPU cores.
"""

from __future__ import annotations

__all__ = ["Banana", "KERNELS", "DEFAULT_KERNELS", "main"]

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import probgen as pg
from probgen.samplers import HMC, MALA, RandomWalk, dual_averaging, run_chain


class Banana:
    r"""Haario's twisted Gaussian with bend :math:`b`, a log-density with exact samples."""

    def __init__(self, b: float = 0.03) -> None:
        self.b = b

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[..., 0], y[..., 1]
        x2 = y2 - self.b * (y1**2 - 100.0)
        return -(y1**2) / 200.0 - x2**2 / 2.0 - math.log(20 * math.pi)

    def sample(self, n: int) -> torch.Tensor:
        x = torch.randn(n, 2) * torch.tensor([10.0, 1.0])
        return torch.stack([x[:, 0], x[:, 1] + self.b * (x[:, 0] ** 2 - 100.0)], -1)

    def variance(self) -> torch.Tensor:
        return torch.tensor([100.0, 1.0 + 2e4 * self.b**2])


# name -> initial kernel (dual averaging tunes the step size from there).
KERNELS: dict[str, Callable[[], Any]] = {
    "rwm": lambda: RandomWalk(1.0),
    "mala": lambda: MALA(0.1),
    "hmc": lambda: HMC(0.1, steps=10, jitter=0.5),
    # The same without jitter: a fixed trajectory length, for comparison.
    "hmc-fixed": lambda: HMC(0.1, steps=10),
}
DEFAULT_KERNELS = ("rwm", "mala", "hmc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run mcmc_kernels",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--kernels",
        type=lambda s: [k for k in s.split(",") if k],
        default=list(DEFAULT_KERNELS),
        help=f"comma-separated kernels among {', '.join(KERNELS)}, pyro-nuts",
    )
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument(
        "--warmup", type=int, default=None, help="adaptation steps (default: 300, fewer for "
        "runs of fewer than 30 kept steps: 10 per kept step)",
    )  # fmt: skip
    parser.add_argument("--samples", "--steps", type=int, default=1000, help="kept steps")
    parser.add_argument("--bend", type=float, default=0.03, help="the banana's b")
    parser.add_argument("--out", type=Path, default=Path("outputs/mcmc_kernels"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        What ``results.json`` holds: the configuration and one row per kernel.
    """
    args = _parser().parse_args(argv)
    unknown = [k for k in args.kernels if k not in (*KERNELS, "pyro-nuts")]
    if unknown or args.samples < 1 or args.chains < 1:
        raise SystemExit(
            f"mcmc_kernels: unknown kernels {unknown} (expected {', '.join(KERNELS)}, "
            "pyro-nuts), or --samples < 1, or --chains < 1"
        )
    if args.warmup is None:
        args.warmup = min(300, 10 * args.samples)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    target = Banana(args.bend)
    rows, draws = [], {}
    try:
        for name in args.kernels:
            torch.manual_seed(args.seed)
            g = torch.Generator().manual_seed(args.seed)
            row, samples = _run(name, target, args, g)
            rows.append(row)
            draws[name] = samples
            print(
                f"{name:<10} ESS/s {row['ess_per_second']:>9.1f}  ESS {row['ess']:>8.0f}  "
                f"{row['seconds']:>6.2f}s  accept {row['accept']:.2f}  step {row['step_size']}"
                f"  z(mean) {max(abs(z) for z in row['z_mean']):.1f}",
                flush=True,
            )
    finally:
        torch.set_num_threads(threads)
    if args.plots:
        _plot(args.out / "kernels.png", target, draws, rows)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"config": config, "results": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _run(name: str, target: Banana, args: Any, g: torch.Generator) -> tuple[dict, torch.Tensor]:
    if name == "pyro-nuts":
        # A few chains, one after another, as Pyro runs them; its own warm-up adapts.
        chains = min(args.chains, 4)
        x0 = target.sample(chains)
        tic = time.perf_counter()
        samples = pg.samplers.sample_with_pyro(
            target.log_prob, x0, args.samples, warmup_steps=args.warmup
        )
        seconds, accept, step = time.perf_counter() - tic, math.nan, None
    else:
        kernel, state = dual_averaging(
            KERNELS[name](), target.sample(args.chains), target.log_prob, args.warmup, generator=g
        )
        tic = time.perf_counter()
        chain = run_chain(kernel, state, target.log_prob, args.samples, generator=g)
        seconds = time.perf_counter() - tic
        samples, accept, step = chain.samples, chain.accept_prob.mean().item(), kernel.step_size
    if len(samples) >= 4:
        ess = pg.samplers.effective_sample_size(samples)
        r_hat = pg.samplers.split_r_hat(samples).tolist()
    else:  # too short a run to estimate autocorrelations (a smoke run)
        ess, r_hat = torch.full((2,), math.nan), [math.nan, math.nan]
    # The mean is exactly 0: z-scores of the chains' means with the ESS-based error.
    z = samples.mean((0, 1)) / (target.variance().sqrt() / ess.sqrt())
    row = {
        "kernel": name,
        "chains": samples.shape[1],
        "samples": samples.shape[0],
        "ess": ess.min().item(),
        "ess_per_coordinate": ess.tolist(),
        "seconds": seconds,
        "ess_per_second": ess.min().item() / seconds,
        "accept": accept,
        "step_size": None if step is None else round(float(step), 5),
        "z_mean": z.tolist(),
        "r_hat": r_hat,
    }
    return row, samples


@torch.no_grad()
def _plot(path: Path, target: Banana, draws: dict[str, torch.Tensor], rows: list[dict]) -> None:
    from matplotlib.figure import Figure

    ref = target.sample(100_000)
    q = torch.quantile(ref, torch.tensor([0.001, 0.999]), dim=0)
    lo, hi = (q[0, 0].item(), q[1, 0].item()), (q[0, 1].item(), q[1, 1].item())
    a, b = torch.linspace(*lo, 200), torch.linspace(*hi, 200)
    grid = torch.stack(torch.meshgrid(a, b, indexing="xy"), -1)
    density = target.log_prob(grid).exp()
    n = len(draws)
    fig = Figure(figsize=(3.0 * (n + 2), 3.2), layout="constrained")
    axes = fig.subplots(1, n + 2)
    for ax, (name, x) in zip(axes, draws.items(), strict=False):
        ax.contour(a.numpy(), b.numpy(), density.numpy(), levels=6, colors="k", linewidths=0.5)
        pts = x[-1]
        ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), s=1, alpha=0.4)
        ax.set_xlim(*lo)
        ax.set_ylim(*hi)
        ax.set_title(f"{name}: last step of every chain")
    for name, x in draws.items():
        axes[n].plot(x[:300, 0, 0].numpy(), lw=0.7, label=name)
    axes[n].set_title("one chain's y1, 300 steps")
    axes[n].legend(fontsize=7)
    names = [r["kernel"] for r in rows]
    axes[n + 1].bar(names, [r["ess_per_second"] for r in rows])
    axes[n + 1].set_yscale("log")
    axes[n + 1].set_title("effective samples / second")
    fig.suptitle(f"banana (b = {target.b}): RWM, MALA, HMC with dual averaging")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
