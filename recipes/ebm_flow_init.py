r"""An energy-based model whose chains start from a normalizing flow (nesting), against noise.

A flow (RealNVP) is first fitted to a toy 2-D density by maximum likelihood. Then the same
EBM as in ``ebm_2d`` (an MLP energy with a weak quadratic confinement) is trained twice by
short-run contrastive divergence, every update running ``--mcmc-steps`` MALA transitions
from fresh samples of its initial distribution: once from Gaussian noise, once from the
trained flow, passed as the EBM's ``init`` (any probgen model is one).

In 2-D every normaliser is exact (quadrature for the EBMs), so the recipe measures two
things: the exact test NLL of the flow and of both EBMs against the density's entropy
(the energy as a density), and the mean :math:`-\log p` of each model's samples under the
true density (the samples' quality, for the EBMs after ``--mcmc-steps`` transitions from
their init; the data score the entropy). With the defaults on 8gaussians the chains from
the flow give the best samples of the three (3.67 nats against an entropy of 3.53; the
flow alone 4.64, the chains from noise 4.60), while neither short-run energy is a better
density than the flow (test NLL 4.27 from the flow, 4.09 from noise, 3.89 for the flow):
short-run CD learns a sampler more than a density (Nijkamp et al., 2019); ``ebm_2d``'s
persistent chains learn the density (gap 0.07 nats).

Writes ``NAME.png`` (the densities and the samples of each model) and ``results.json``.
Run it as ``probgen run ebm_flow_init``; the defaults take about five minutes on two CPU
cores.

References:
    | Learning Non-Convergent Non-Persistent Short-Run MCMC Toward Energy-Based Model
      (Nijkamp et al., 2019) https://arxiv.org/abs/1904.09770
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import probgen as pg
from probgen.data import TOYS, toy
from probgen.distributions import DiagNormal
from probgen.lazy import UnconditionalDistribution
from probgen.samplers import MALA


class Confined(nn.Module):
    # An MLP energy plus |x|^2 / (2 4^2): exp(-E) stays integrable where the MLP is flat.
    def __init__(self, hidden: int = 128, scale: float = 4.0) -> None:
        super().__init__()
        self.net = pg.nn.MLP(2, 1, (hidden, hidden, hidden), activation=nn.SiLU)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + (x**2).sum(-1) / (2 * self.scale**2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run ebm_flow_init",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--density", choices=list(TOYS), default="8gaussians")
    parser.add_argument("--flow-steps", type=int, default=500, help="the flow's NLL steps")
    parser.add_argument("--steps", type=int, default=1000, help="each EBM's CD steps")
    parser.add_argument("--mcmc-steps", type=int, default=20, help="MALA steps per update")
    parser.add_argument("--step-size", type=float, default=0.01, help="MALA's time step")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--regularization", type=float, default=0.01, help="energy penalty")
    parser.add_argument("--test-size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("outputs/ebm_flow_init"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--progress", action="store_true")
    return parser


def _cd(model: nn.Module, x: torch.Tensor, c: Any, regularization: float) -> torch.Tensor:
    # Short-run CD: chains from the EBM's own init, every update.
    return pg.objectives.contrastive_divergence(
        model, x, c, start="init", regularization=regularization
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        What ``results.json`` holds: the configuration and one row per model.
    """
    args = _parser().parse_args(argv)
    if min(args.flow_steps, args.steps, args.mcmc_steps) < 1:
        raise SystemExit("ebm_flow_init: expected positive --flow-steps, --steps, --mcmc-steps")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows, models = [], {}
    try:
        torch.manual_seed(args.seed)
        d = toy(args.density)
        reach = float(d.sample((10_000,)).abs().max()) * 1.1
        test = d.sample((args.test_size,))
        entropy = d.entropy_estimate().value

        flow = pg.flows.RealNVP(2, transforms=6, hidden=(64, 64))
        tic = time.perf_counter()
        pg.fit(flow, d.sample, steps=args.flow_steps, batch_size=args.batch_size, lr=5e-3,
               seed=args.seed, progress=args.progress)  # fmt: skip
        for p in flow.parameters():
            p.requires_grad_(False)  # the init is fixed: only the energy trains
        with torch.no_grad():
            nll = -flow().log_prob(test)
        rows.append(_row("flow", nll, entropy, time.perf_counter() - tic, None))
        rows[-1]["sample_cross_entropy"] = _cross_entropy(d, flow())
        models["flow"] = flow()

        noise = UnconditionalDistribution(DiagNormal, torch.zeros(2), reach / 2 * torch.ones(2))
        for name, init in [("ebm-noise-init", noise), ("ebm-flow-init", flow)]:
            torch.manual_seed(args.seed)
            ebm = pg.energy.EBM(
                Confined(), 2, init=init, kernel=MALA(args.step_size), steps=args.mcmc_steps
            )
            tic = time.perf_counter()
            pg.fit(
                ebm, d.sample, objective=lambda m, x, c: _cd(m, x, c, args.regularization),
                steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                progress=args.progress,
            )  # fmt: skip
            seconds = time.perf_counter() - tic
            e = ebm()
            log_z = e.log_normalizer("quadrature", bounds=(-reach - 12, reach + 12), points=401)
            with torch.no_grad():
                nll = e.energy(test) + log_z.value
            rows.append(_row(name, nll, entropy, seconds, log_z.value.item()))
            rows[-1]["sample_cross_entropy"] = _cross_entropy(d, e)
            models[name] = e.normalized(log_z)
        for r in rows:
            print(
                f"{r['model']:<15} test NLL {r['test_nll']:.3f} ± {r['test_nll_stderr']:.3f}  "
                f"entropy {entropy:.3f}  gap {r['gap']:.3f}  samples' -log p "
                f"{r['sample_cross_entropy']:.3f}  {r['train_seconds']:.0f}s",
                flush=True,
            )
        if args.plots:
            _plot(args.out / f"{args.density}.png", args.density, models, reach)
    finally:
        torch.set_num_threads(threads)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"config": config, "results": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


@torch.no_grad()
def _cross_entropy(truth: Any, model: Any, n: int = 5000) -> float:
    # -E_q[log p] of the model's samples under the true density: the samples' quality
    # (the data score the entropy; samples piled on the modes score lower, stray ones higher).
    return -truth.log_prob(model.sample((n,))).mean().item()


def _row(name: str, nll: torch.Tensor, entropy: float, seconds: float, log_z: Any) -> dict:
    return {
        "model": name,
        "test_nll": nll.mean().item(),
        "test_nll_stderr": (nll.std() / math.sqrt(len(nll))).item(),
        "entropy": entropy,
        "gap": nll.mean().item() - entropy,
        "log_z": log_z,
        "train_seconds": seconds,
    }


@torch.no_grad()
def _plot(path: Path, name: str, models: dict[str, Any], reach: float) -> None:
    from matplotlib.figure import Figure

    n = 150
    t = torch.linspace(-reach, reach, n)
    grid = torch.cartesian_prod(t, t).flip(-1)
    extent = (-reach, reach, -reach, reach)
    columns = [("true", toy(name, validate_args=False))] + list(models.items())
    fig = Figure(figsize=(2.6 * len(columns), 5.4), layout="constrained")
    axes = fig.subplots(2, len(columns))
    for j, (label, d) in enumerate(columns):
        axes[0, j].imshow(
            d.log_prob(grid).exp().reshape(n, n).numpy(), origin="lower", extent=extent
        )
        axes[0, j].set_title(f"{label}")
        x = d.sample((5000,))
        axes[1, j].scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=1, alpha=0.3)
        axes[1, j].set_xlim(-reach, reach)
        axes[1, j].set_ylim(-reach, reach)
        axes[1, j].set_title("samples" if j < 2 else "samples (its MALA steps)")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(f"{name}: EBMs trained by short-run CD from noise and from a flow")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
