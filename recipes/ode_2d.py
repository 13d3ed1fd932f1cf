r"""ODE flows on toy 2-D densities: flow matching (independent and minibatch-OT coupling)
and a CNF (FFJORD), exact test NLL through the ODE against entropy, with NFE.

Each model is trained on fresh samples of each toy density (``probgen.data``): flow
matching by regression onto the straight-path velocity (no ODE solve in training), the
CNF by maximum likelihood through the ODE. All are then scored exactly (dopri5, exact
trace) on a held-out test set; the gap

.. math:: \text{NLL} - H(p) = \mathrm{KL}(p \| p_\phi) \geq 0

is in nats. The recipe prints a table (model, density, test NLL with its standard error,
entropy, gap, training ms per step, NFE of the scoring and of the sampling solve), writes
one PNG per density (densities on a grid, samples) and ``results.json``.

Run it as ``probgen run ode_2d`` (``--help`` for options) or
``python -m probgen.recipes.ode_2d``.
"""

from __future__ import annotations

__all__ = ["MODELS", "main"]

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import probgen as pg
from probgen.data import TOYS, toy
from probgen.metrics import nll

# torchcfm's reference configuration: an MLP 3 x 64 on (x, t).
HIDDEN = (64, 64, 64)

# name -> (builder, default steps). The CNF solves an ODE (forward and backward) per
# step, at a looser tolerance in training: it gets fewer steps.
MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "fm": (lambda: pg.ode.FlowMatching(2, hidden=HIDDEN), 3000),
    "fm-ot": (lambda: pg.ode.FlowMatching(2, hidden=HIDDEN, coupling=pg.ode.OTCoupling()), 3000),
    "cnf": (lambda: pg.ode.CNF(2, hidden=HIDDEN, rtol=1e-3, atol=1e-3), 300),
}
DEFAULT_MODELS = ("fm", "fm-ot", "cnf")
DEFAULT_DENSITIES = ("8gaussians", "checkerboard")


def _names(value: str, valid: Sequence[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none)'}; expected a comma-separated "
            f"list of {', '.join(valid)}"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run ode_2d",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        type=lambda s: _names(s, list(MODELS), "model"),
        default=list(DEFAULT_MODELS),
        help=f"comma-separated models among {', '.join(MODELS)}",
    )
    parser.add_argument(
        "--densities",
        type=lambda s: _names(s, list(TOYS), "density"),
        default=list(DEFAULT_DENSITIES),
        help=f"comma-separated toy densities among {', '.join(TOYS)}",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps of every model (default: "
        + ", ".join(f"{k} {v[1]}" for k, v in MODELS.items())
        + ")",
    )
    parser.add_argument("--batch-size", type=int, default=512, help="samples per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--test-size", type=int, default=20_000, help="fresh test samples")
    parser.add_argument("--tol", type=float, default=1e-5, help="dopri5 rtol = atol to score")
    parser.add_argument("--out", type=Path, default=Path("outputs/ode_2d"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: the configuration and one row per model
        and density.
    """
    args = _parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"ode_2d: expected --steps >= 1, got {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        print(
            f"{'model':<7} {'density':<12} {'test NLL':>17} {'entropy':>8} {'gap':>8} "
            f"{'ms/step':>8} {'NFE lp':>6} {'NFE x':>6}"
        )
        for i, name in enumerate(args.densities):
            d = toy(name)
            entropy = d.entropy_estimate()
            torch.manual_seed(args.seed + 10_000 + i)
            test = d.sample((args.test_size,))
            models = {}
            for label in args.models:
                build, default_steps = MODELS[label]
                steps = args.steps if args.steps is not None else default_steps
                torch.manual_seed(args.seed)
                model = build()
                tic = time.perf_counter()
                history = pg.fit(
                    model,
                    d.sample,
                    steps=steps,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=args.seed,
                    progress=args.progress,
                )
                ms = 1e3 * (time.perf_counter() - tic) / steps
                # Scored exactly, at the scoring tolerance whatever the training one was.
                model.solver.update(rtol=args.tol, atol=args.tol)
                result = nll(model, test)
                with torch.no_grad():
                    _, nfe_lp = model().log_prob_and_nfe(test[:1000])
                    _, nfe_x = model().sample_and_nfe((1000,))
                gap = result.value - entropy.value
                print(
                    f"{label:<7} {name:<12} {result.value:>8.4f} ± {result.stderr:.4f} "
                    f"{entropy.value:>8.4f} {gap:>8.4f} {ms:>8.2f} {nfe_lp:>6} {nfe_x:>6}",
                    flush=True,
                )
                rows.append(
                    {
                        "model": label,
                        "density": name,
                        "steps": steps,
                        "test_nll": result.value,
                        "test_nll_stderr": result.stderr,
                        "entropy": entropy.value,
                        "gap": gap,
                        "ms_per_step": ms,
                        "nfe_log_prob": nfe_lp,
                        "nfe_sample": nfe_x,
                        "final_train_loss": history.loss[-1],
                    }
                )
                models[label] = model
            if args.plots:
                _plot(args.out / f"{name}.png", name, models)
    finally:
        torch.set_num_threads(threads)
    total = time.perf_counter() - start
    print(f"total {total:.1f}s; outputs in {args.out}")
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"config": config, "results": rows, "total_seconds": total}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return results


@torch.no_grad()
def _plot(path: Path, name: str, models: dict[str, nn.Module], reach: float = 5.0) -> None:
    from matplotlib.figure import Figure

    n = 100
    t = torch.linspace(-reach, reach, n)
    grid = torch.cartesian_prod(t, t).flip(-1)  # rows are y, columns x: image layout
    columns = [("true", toy(name, validate_args=False))]
    columns += [(label, model()) for label, model in models.items()]
    extent = (-reach, reach, -reach, reach)
    fig = Figure(figsize=(2.6 * len(columns), 5.4), layout="constrained")
    axes = fig.subplots(2, len(columns), squeeze=False)
    for j, (label, d) in enumerate(columns):
        density = d.log_prob(grid).exp().reshape(n, n)
        axes[0, j].imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis")
        axes[0, j].set_title(f"{label} density")
        x = d.sample((5000,))
        axes[1, j].hist2d(
            x[:, 0].numpy(), x[:, 1].numpy(), bins=80, range=[extent[:2], extent[2:]],
            cmap="viridis",
        )  # fmt: skip
        axes[1, j].set_title(f"{label} samples")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.suptitle(name)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
