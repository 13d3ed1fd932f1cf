r"""Score and diffusion models on toy 2-D densities: an NCSN (denoising score matching over
a geometric noise ladder, annealed Langevin sampling), a score model trained by sliced
score matching (Langevin sampling) and a VP diffusion (DDPM's noise prediction, sampled by
its probability-flow ODE), judged by two-sample tests against held-out data.

Each model learns :math:`\nabla_x \log p` from fresh samples of each toy density
(``probgen.data``). Neither has a tractable density for its Langevin samples, so the
samples are compared with held-out data: the energy distance and the MMD (RBF kernel,
median bandwidth) with its permutation p-value, next to the noise floor of the same
statistics between two held-out samples. The NCSN also reports the exact test NLL of its
ladder's probability-flow ODE (``model.probability_flow()``), a *different* distribution
from its Langevin samples, with the entropy of the data for scale. The diffusion's samples
and its exact test NLL come from one and the same probability-flow ODE.

A single score (sliced score matching) cannot weigh well-separated modes: Langevin
dynamics started broadly settles each chain in the nearest mode, whatever the modes'
masses (Song and Ermon, 2019, Sec. 3.2); the table shows what that costs next to the
NCSN's annealing.

Prints a table, writes ``<density>.png`` (held-out data and each model's samples) and
``results.json``. Run it as ``probgen run score_2d`` (``--help`` for options) or
``python -m probgen.recipes.score_2d``.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import probgen as pg
from probgen.data import TOYS, toy
from probgen.metrics import energy_distance, mmd_test


def _densities(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in TOYS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown density {', '.join(unknown) or '(none)'}; expected a comma-separated "
            f"list of {', '.join(TOYS)}"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run score_2d",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--densities", type=_densities, default=["8gaussians", "checkerboard"])
    parser.add_argument(
        "--models", type=_names, default=list(MODELS), help=f"any of {','.join(MODELS)}"
    )
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--sigma-max", type=float, default=8.0, help="NCSN's largest level")
    parser.add_argument("--sigma-min", type=float, default=0.1, help="NCSN's smallest level")
    parser.add_argument("--levels", type=int, default=10, help="NCSN's number of levels")
    parser.add_argument("--langevin-steps", type=int, default=100, help="NCSN steps per level")
    parser.add_argument(
        "--step-size", type=float, default=2e-3, help="NCSN's epsilon at the smallest level"
    )
    parser.add_argument("--ssm-steps", type=int, default=1000, help="score model Langevin steps")
    parser.add_argument("--ssm-step-size", type=float, default=5e-3)
    parser.add_argument("--samples", type=int, default=2000, help="samples per two-sample test")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--tol", type=float, default=1e-5, help="dopri5 rtol = atol of the NLL")
    parser.add_argument("--out", type=Path, default=Path("outputs/score_2d"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


MODELS = ("ncsn", "ssm", "diffusion")


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(unknown) or '(none)'}; expected a comma-separated "
            f"list of {', '.join(MODELS)}"
        )
    return names


def _models(args: argparse.Namespace) -> dict[str, nn.Module]:
    sigmas = pg.diffusion.geometric_sigmas(args.sigma_max, args.sigma_min, args.levels)
    tol = dict(rtol=args.tol, atol=args.tol)
    models = {
        "ncsn": lambda: pg.diffusion.NCSN(
            2, sigmas=sigmas, hidden=args.hidden, steps=args.langevin_steps,
            step_size=args.step_size, denoise=True,
        ),
        "ssm": lambda: pg.diffusion.ScoreModel(
            2, hidden=args.hidden, steps=args.ssm_steps, step_size=args.ssm_step_size,
            init_std=args.sigma_max / 2,
        ),
        # VP with DDPM's linear schedule, noise prediction; the ODE at the recipe's tolerance.
        "diffusion": lambda: pg.diffusion.Diffusion(2, hidden=args.hidden, **tol),
    }  # fmt: skip
    return {name: models[name]() for name in args.models}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: the configuration, the noise floors and
        one row per model and density.
    """
    args = _parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"score_2d: expected --steps >= 1, got {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    floors: dict[str, dict[str, float]] = {}
    g = torch.Generator().manual_seed(args.seed)
    n = args.samples
    try:
        print(
            f"{'model':<9} {'density':<12} {'energy dist':>11} {'MMD^2':>9} {'p-value':>8} "
            f"{'NFE':>5} {'PF NLL':>8} {'entropy':>8} {'ms/step':>8} {'sample s':>8}"
        )
        for i, name in enumerate(args.densities):
            d = toy(name)
            torch.manual_seed(args.seed + 10_000 + i)
            held, other = d.sample((n,)), d.sample((n,))
            floor = mmd_test(held, other, permutations=args.permutations, generator=g)
            floors[name] = {
                "energy_distance": energy_distance(held, other).item(),
                "mmd2": floor.statistic,
                "p_value": floor.p_value,
            }
            print(
                f"{'floor':<9} {name:<12} {floors[name]['energy_distance']:>11.4f} "
                f"{floor.statistic:>9.5f} {floor.p_value:>8.3f}"
            )
            samples = {"held-out": held}
            for label, model in _models(args).items():
                torch.manual_seed(args.seed)
                tic = time.perf_counter()
                history = pg.fit(
                    model, d.sample, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    seed=args.seed, progress=args.progress,
                )  # fmt: skip
                ms = 1e3 * (time.perf_counter() - tic) / args.steps
                tic = time.perf_counter()
                with torch.no_grad():
                    x, nfe = model().sample_and_nfe((n,))
                seconds = time.perf_counter() - tic
                x = x.nan_to_num(0.0, 1e6, -1e6)  # a diverged chain counts against, not NaN
                test = mmd_test(x, held, permutations=args.permutations, generator=g)
                ed = energy_distance(x, held).item()
                row = {
                    "model": label,
                    "density": name,
                    "steps": args.steps,
                    "energy_distance": ed,
                    "mmd2": test.statistic,
                    "p_value": test.p_value,
                    "nfe": nfe,
                    "ms_per_step": ms,
                    "sample_seconds": seconds,
                    "final_train_loss": history.loss[-1],
                }
                nll = ""
                if label in ("ncsn", "diffusion"):
                    # The probability-flow ODE's exact density, on 1000 held-out points.
                    if label == "ncsn":
                        flow = model.probability_flow(rtol=args.tol, atol=args.tol)
                    else:
                        flow = model()
                    with torch.no_grad():
                        lp = flow.log_prob(held[:1000])
                    row["pf_test_nll"] = -lp.mean().item()
                    row["pf_test_nll_stderr"] = (lp.std() / len(lp) ** 0.5).item()
                    row["entropy"] = d.entropy_estimate().value
                    nll = f"{row['pf_test_nll']:>8.3f} {row['entropy']:>8.3f}"
                else:
                    nll = f"{'':>8} {'':>8}"
                print(
                    f"{label:<9} {name:<12} {ed:>11.4f} {test.statistic:>9.5f} "
                    f"{test.p_value:>8.3f} {nfe:>5} {nll} {ms:>8.2f} {seconds:>8.1f}",
                    flush=True,
                )
                rows.append(row)
                samples[label] = x
            if args.plots:
                _plot(args.out / f"{name}.png", name, samples)
    finally:
        torch.set_num_threads(threads)
    total = time.perf_counter() - start
    print(f"total {total:.1f}s; outputs in {args.out}")
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"config": config, "noise_floor": floors, "results": rows, "total_seconds": total}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _plot(path: Path, name: str, samples: dict[str, torch.Tensor], reach: float = 5.0) -> None:
    from matplotlib.figure import Figure

    extent = (-reach, reach, -reach, reach)
    fig = Figure(figsize=(2.8 * len(samples), 3.0), layout="constrained")
    axes = fig.subplots(1, len(samples), squeeze=False)[0]
    for ax, (label, x) in zip(axes, samples.items(), strict=True):
        ax.hist2d(
            x[:, 0].numpy(), x[:, 1].numpy(), bins=80, range=[extent[:2], extent[2:]],
            cmap="viridis",
        )  # fmt: skip
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(name)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
