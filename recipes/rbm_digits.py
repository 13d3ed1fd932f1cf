r"""A restricted Boltzmann machine on binarised 8x8 digits: Gibbs samples, AIS log-likelihood.

A Bernoulli-Bernoulli RBM with 64 visible units (the pixels of scikit-learn's digits,
thresholded at half intensity) is trained by persistent contrastive divergence (PCD:
block Gibbs chains that carry over between updates) or CD-k. Its normaliser
:math:`\log Z` is estimated by annealed importance sampling from a base-rate RBM fitted to
the data's pixel marginals (Salakhutdinov and Murray, 2008), with its standard error and
effective sample size; with ``--hidden 20`` or fewer it is also computed exactly by
enumerating the hidden states, which measures AIS's actual error. The test log-likelihood
in nats per image, :math:`-\overline{F(v)} - \log \hat Z`, is compared with independent
pixels (the data's marginals), a baseline any model should beat.

Writes ``samples.png`` (training images, samples of Gibbs chains, and chains over time)
and ``results.json``. Run it as ``probgen run rbm_digits``; the defaults take about two
minutes on two CPU cores.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

import probgen as pg
from probgen.data import digits
from probgen.samplers import BlockGibbs, ReplayBuffer, run_chain


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run rbm_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--method", choices=("pcd", "cd"), default="pcd")
    parser.add_argument("--gibbs", type=int, default=1, help="Gibbs sweeps per update (k)")
    parser.add_argument("--chains", type=int, default=500, help="persistent chains (PCD)")
    parser.add_argument("--steps", type=int, default=4000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--ais-chains", type=int, default=500)
    parser.add_argument(
        "--ais-betas", type=int, default=None,
        help="AIS temperatures (default: 5000, or 50 per training step for short runs)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-steps", type=int, default=None,
        help="Gibbs steps of the samples (default: 1000, or 50 per training step)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("outputs/rbm_digits"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        What ``results.json`` holds: the configuration and the results.
    """
    args = _parser().parse_args(argv)
    if args.steps < 1 or args.hidden < 1:
        raise SystemExit("rbm_digits: expected --steps >= 1 and --hidden >= 1")
    # Short (smoke) runs get budgets to match; the defaults apply from 100 steps on.
    args.ais_betas = args.ais_betas or min(5000, 50 * args.steps)
    args.sample_steps = args.sample_steps or min(1000, 50 * args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        torch.manual_seed(args.seed)
        train = digits("train", binarize=True)[0].flatten(1)
        test = digits("test", binarize=True)[0].flatten(1)
        model = pg.energy.RBM(64, args.hidden, kernel=BlockGibbs(args.gibbs), steps=args.gibbs)
        # Visible biases at the data's logit marginals: the usual start (Hinton, 2010).
        marginals = train.mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            model.visible_bias.copy_(torch.logit(marginals))
        if args.method == "pcd":
            buffer = ReplayBuffer(args.chains, reinit=0.0)
            objective = partial(pg.objectives.persistent_contrastive_divergence, buffer=buffer)
        else:
            objective = pg.objectives.contrastive_divergence
        tic = time.perf_counter()
        pg.fit(
            model, train, objective=objective, steps=args.steps, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, progress=args.progress,
        )  # fmt: skip
        train_seconds = time.perf_counter() - tic

        d = model()
        g = torch.Generator().manual_seed(args.seed)
        tic = time.perf_counter()
        ais = d.log_normalizer(
            "ais", chains=args.ais_chains, betas=args.ais_betas,
            base_bias=torch.logit(marginals), generator=g,
        )  # fmt: skip
        ais_seconds = time.perf_counter() - tic
        results: dict[str, Any] = {
            "log_z_ais": ais.value.item(),
            "log_z_ais_stderr": ais.stderr.item(),
            "ais_ess": ais.ess.item(),
            "ais_seconds": ais_seconds,
        }
        if args.hidden <= 20:
            exact = d.log_normalizer("enumeration").value.item()
            results["log_z_exact"] = exact
            results["ais_error"] = ais.value.item() - exact
        with torch.no_grad():
            free = d.free_energy(test)
        ll = -free - ais.value
        baseline = torch.distributions.Bernoulli(probs=marginals).log_prob(test).sum(-1)
        results |= {
            "test_log_likelihood": ll.mean().item(),
            # The data's spread and AIS's error, independent, added in quadrature.
            "test_log_likelihood_stderr": math.hypot(
                (ll.std() / math.sqrt(len(ll))).item(), ais.stderr.item()
            ),
            "independent_pixels_log_likelihood": baseline.mean().item(),
            "train_seconds": train_seconds,
        }
        print(
            f"RBM 64-{args.hidden} ({args.method}-{args.gibbs}, {args.steps} steps): "
            f"log Z {results['log_z_ais']:.2f} ± {results['log_z_ais_stderr']:.2f} (AIS, ESS "
            f"{results['ais_ess']:.0f})"
            + (f", exact {results['log_z_exact']:.2f}" if "log_z_exact" in results else ""),
            flush=True,
        )
        print(
            f"test log-likelihood {results['test_log_likelihood']:.2f} ± "
            f"{results['test_log_likelihood_stderr']:.2f} nats/image; independent pixels "
            f"{results['independent_pixels_log_likelihood']:.2f}",
            flush=True,
        )
        if args.plots:
            _plot(args.out / "samples.png", d, train, args.sample_steps, g)
    finally:
        torch.set_num_threads(threads)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out = {"config": config, "results": results, "total_seconds": time.perf_counter() - start}
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    return out


@torch.no_grad()
def _plot(path: Path, d: Any, train: torch.Tensor, steps: int, g: torch.Generator) -> None:
    from matplotlib.figure import Figure

    # 64 chains from random pixels; show p(v | h) of their last step (less noisy than v).
    v0 = (torch.rand(64, 64, generator=g) < 0.5).to(train.dtype)
    times = sorted({0, max(steps // 100, 1), max(steps // 10, 1), steps})
    frames, state, done = [], v0, 0
    for t in times:
        chain = run_chain(d.kernel, state, d.target, t - done, record=False, generator=g)
        state, done = chain.state, t
        h = d.target.sample_hidden(state.x, g)
        frames.append(torch.sigmoid(d.target.visible_logits(h)))

    def tile(x: torch.Tensor, rows: int = 8) -> torch.Tensor:
        x = x[: rows * rows].reshape(rows, rows, 8, 8)
        return x.permute(0, 2, 1, 3).reshape(rows * 8, rows * 8)

    fig = Figure(figsize=(3.0 * (1 + len(times)), 3.3), layout="constrained")
    axes = fig.subplots(1, 1 + len(times))
    axes[0].imshow(tile(train).numpy(), cmap="gray_r")
    axes[0].set_title("training images")
    for ax, t, frame in zip(axes[1:], times, frames, strict=True):
        ax.imshow(tile(frame).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"Gibbs chains, step {t}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
