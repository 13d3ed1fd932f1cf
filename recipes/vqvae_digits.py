r"""VQ-VAE on 8x8 digits: a 4x4 grid of codes, a PixelCNN prior over it, codebook usage,
reconstruction error, test bound, reconstructions and samples.

A convolutional encoder maps each image to a :math:`4 \times 4` grid of vectors, a
vector quantiser (:class:`probgen.nn.VectorQuantizer`, :math:`K` codes) replaces each by
its nearest code, and a convolutional decoder gives a 17-way categorical distribution
over the grey levels of every pixel. Two stages, as in van den Oord et al. (2017):

1. ``pg.fit(vq, x)``: reconstruction (:math:`-\log p(x | z_q(x))`) + codebook +
   :math:`\beta` commitment (:func:`probgen.objectives.vq_vae`), with straight-through
   gradients; the codebook by gradients (``vqvae``) or by EMA updates (``vqvae_ema``);
2. ``pg.fit(vq.prior, vq.encode(x))``: a gated PixelCNN over the :math:`K`-valued code
   grid, by its exact likelihood, on the codes of the trained encoder.

Reported on the test split: the codebook's usage (fraction of codes used, perplexity), the
reconstruction error (mean squared error of the decoder's mean, images in [0, 1]), the
prior's NLL of the codes against a uniform prior (:math:`16 \log K` nats), and the bound
:math:`-\log p(x | z_q(x)) - \log p(z_q(x)) \geq -\log p(x)` in nats and bits/dim (the
VQ-VAE's ``log_prob``, ``log_prob_kind == "bound"``; a uniform model scores
:math:`\log_2 17 = 4.09` bits/dim).

Run::

    python recipes/vqvae_digits.py              # 21 min on 2 cores under a load of ~10
    python recipes/vqvae_digits.py --steps 2    # a smoke test, seconds

Outputs in ``--out``: ``reconstructions.png`` (test images, then each model's
reconstructions), ``samples.png`` (the decoder's mean at codes drawn from each PixelCNN
prior) and ``results.json``.
"""

from __future__ import annotations

__all__ = ["MODELS", "main"]

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import probgen as pg
from probgen.autoregressive import CategoricalFamily
from probgen.data import digits
from probgen.distributions.vq import VQVAE
from probgen.nn import codebook_usage

LEVELS = 17
MODELS = {"vqvae": False, "vqvae_ema": True}  # name -> EMA codebook


def _names(value: str) -> list[str]:
    names = list(MODELS) if value == "all" else [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(unknown) or '(none)'}; expected a comma-separated list "
            f"of {', '.join(MODELS)}, or all"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probgen run vqvae_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--models",
        type=_names,
        default=list(MODELS),
        help=f"comma-separated models among {', '.join(MODELS)}, or all",
    )
    p.add_argument("--steps", type=int, default=1500, help="stage-1 steps (VQ-VAE)")
    p.add_argument(
        "--prior-steps",
        type=int,
        default=None,
        help="stage-2 steps (PixelCNN prior; default: --steps)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (both stages)")
    p.add_argument("--codes", type=int, default=32, help="codebook size K")
    p.add_argument("--dim", type=int, default=16, help="code dimension D")
    p.add_argument("--beta", type=float, default=0.25, help="commitment weight")
    p.add_argument("--decay", type=float, default=0.99, help="EMA decay (vqvae_ema)")
    p.add_argument(
        "--restart",
        type=float,
        default=0.1,
        help="dead-code restart threshold, a fraction of the uniform share",
    )
    p.add_argument("--hidden", type=int, default=32, help="channel width of the networks")
    p.add_argument("--prior-layers", type=int, default=4, help="gated PixelCNN layers")
    p.add_argument("--samples", type=int, default=64, help="samples per grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 is fastest on a busy machine)",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/vqvae_digits"))
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


@torch.no_grad()
def _evaluate(vq: VQVAE, x: torch.Tensor) -> dict[str, float]:
    vq.eval()
    z = vq.encode(x)
    usage = codebook_usage(z, vq.quantizer.codes)
    bound = -vq().log_prob(x)
    prior_nll = -vq.prior().log_prob(z)
    mse = ((vq.reconstruct(x) - x) / (LEVELS - 1)).square().mean()
    vq.train()
    dims = x[0].numel()
    return {
        "codes_used": usage.used,
        "perplexity": usage.perplexity,
        "reconstruction_mse": float(mse),
        "prior_nll": float(prior_nll.mean()),
        "uniform_prior_nll": z[0].numel() * math.log(vq.quantizer.codes),
        "bound_nll": float(bound.mean()),
        "bound_nll_stderr": float(bound.std() / math.sqrt(len(bound))),
        "bound_bits_per_dim": float(bound.mean()) / (dims * math.log(2)),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: the configuration and one row per model.
    """
    args = _parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"vqvae_digits: expected --steps >= 1, got {args.steps}")
    prior_steps = args.steps if args.prior_steps is None else args.prior_steps
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x, _ = digits("train")  # integer levels 0..16 as floats
    test, _ = digits("test")
    rows: list[dict[str, Any]] = []
    pictures: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    try:
        print(f"{'model':<10} {'used':>5} {'perp':>6} {'mse':>7} {'prior':>7} {'unif':>6} "
              f"{'bound':>7} {'b/dim':>6} {'s':>6}")  # fmt: skip
        for name in args.models:
            torch.manual_seed(args.seed)
            vq = VQVAE.small(
                (1, 8, 8), args.codes, args.dim, CategoricalFamily(LEVELS),
                hidden=args.hidden, prior_layers=args.prior_layers, beta=args.beta,
                ema=MODELS[name], decay=args.decay, restart=args.restart,
            )  # fmt: skip
            tic = time.perf_counter()
            # 1. The autoencoder: reconstruction + codebook + commitment (the prior idle).
            h1 = pg.fit(vq, x, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, progress=args.progress)  # fmt: skip
            # 2. The prior, a PixelCNN over the code grid, on the encoder's codes.
            with torch.no_grad():
                vq.eval()
                codes = vq.encode(x)
                vq.train()
            h2 = pg.fit(vq.prior, codes, steps=prior_steps, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, progress=args.progress)  # fmt: skip
            seconds = time.perf_counter() - tic
            row = {
                "model": name,
                "ema": MODELS[name],
                **_evaluate(vq, test),
                "train": _evaluate(vq, x[: len(test)]),
                "stage1_final_loss": h1.loss[-1],
                "stage2_final_loss": h2.loss[-1],
                "parameters": sum(p.numel() for p in vq.parameters()),
                "steps": args.steps,
                "prior_steps": prior_steps,
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"{name:<10} {row['codes_used']:>5.2f} {row['perplexity']:>6.2f} "
                f"{row['reconstruction_mse']:>7.4f} {row['prior_nll']:>7.2f} "
                f"{row['uniform_prior_nll']:>6.1f} {row['bound_nll']:>7.2f} "
                f"{row['bound_bits_per_dim']:>6.3f} {seconds:>6.1f}",
                flush=True,
            )
            with torch.no_grad():
                vq.eval()
                recon = vq.reconstruct(test[:16]) / (LEVELS - 1)
                z = vq.prior().sample((args.samples,))
                pictures[name] = (recon, vq.decode(z) / (LEVELS - 1))
    finally:
        torch.set_num_threads(threads)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.plots:
        _plot(args.out, test[:16] / (LEVELS - 1), pictures)
    return results


def _tile(images: torch.Tensor, cols: int) -> torch.Tensor:
    n = images.shape[0] // cols * cols
    rows = n // cols
    return images[:n].reshape(rows, cols, 8, 8).permute(0, 2, 1, 3).reshape(rows * 8, cols * 8)


def _plot(out: Path, originals: torch.Tensor, pictures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pictures)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(8, 1.2 * (len(names) + 1)))
    for ax, (title, images) in zip(
        axes, [("test images", originals)] + [(n, pictures[n][0]) for n in names], strict=True
    ):
        ax.imshow(_tile(images, 16).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "reconstructions.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4.3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        samples = pictures[name][1]
        cols = max(1, int(math.sqrt(len(samples))))
        ax.imshow(_tile(samples, cols).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{name}: PixelCNN prior samples (decoder mean)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
