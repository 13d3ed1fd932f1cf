r"""Plain, denoising and sparse autoencoders on 8x8 digits: reconstruction of clean and
corrupted inputs, code sparsity and a linear probe of the codes.

The three models share one architecture (:class:`probgen.nn.ConvEncoder` to a code of
``--features`` numbers, :class:`probgen.nn.ConvDecoder` back) and one loss,
:func:`probgen.objectives.autoencoder`: the squared error summed over pixels (images in
[0, 1]), with

- ``plain``: nothing else;
- ``denoising``: inputs corrupted by masking noise (each pixel zeroed with probability
  ``--mask``) during training only, the clean image as the target;
- ``sparse``: an L1 penalty ``--sparsity`` :math:`\times` mean :math:`|h|` on the codes.

Autoencoders are not distributions (no sampling, no density); they are judged by what
they reconstruct and what their codes hold. Reported on the test split: the mean squared
error per pixel of reconstructions of clean inputs, of masked inputs and of inputs with
Gaussian noise (``--noise``), always against the clean image; the mean :math:`|h|` and
the fraction of code entries below 0.01 in magnitude; and the test accuracy of a
multinomial logistic regression fitted on the training codes (a linear probe of the
representation; on the raw pixels for reference).

Run::

    python recipes/autoencoders_digits.py              # 12 min on 2 cores under a load of ~10
    python recipes/autoencoders_digits.py --steps 2    # a smoke test, seconds

Outputs in ``--out``: ``reconstructions.png`` (clean and masked test images, and each
model's reconstructions of the masked ones) and ``results.json``.
"""

from __future__ import annotations

__all__ = ["MODELS", "main"]

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import probgen as pg
from probgen.data import digits
from probgen.distributions.autoencoder import Autoencoder, MaskingNoise
from probgen.nn import ConvDecoder, ConvEncoder

MODELS = ("plain", "denoising", "sparse")


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
        prog="probgen run autoencoders_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--models",
        type=_names,
        default=list(MODELS),
        help=f"comma-separated models among {', '.join(MODELS)}, or all",
    )
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--features", type=int, default=32, help="code size")
    p.add_argument("--hidden", type=int, default=32, help="channel width of the networks")
    p.add_argument(
        "--mask",
        type=float,
        default=0.3,
        help="masking probability (denoising training and the masked test)",
    )
    p.add_argument("--noise", type=float, default=0.2, help="Gaussian noise std (test)")
    p.add_argument("--sparsity", type=float, default=0.1, help="L1 weight of the sparse model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 is fastest on a busy machine)",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/autoencoders_digits"))
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


def build(name: str, args: argparse.Namespace) -> Autoencoder:
    r"""One of the three autoencoders, on the same blocks."""
    h = args.hidden
    enc = ConvEncoder((1, 8, 8), out_features=args.features, hidden=(h, 2 * h))
    dec = ConvDecoder((1, 8, 8), in_features=args.features, hidden=(2 * h, h))
    if name == "denoising":
        return Autoencoder(enc, dec, noise=MaskingNoise(args.mask))
    if name == "sparse":
        return Autoencoder(enc, dec, sparsity=args.sparsity)
    return Autoencoder(enc, dec)


def linear_probe(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor,
                 steps: int = 200, weight_decay: float = 1e-3) -> float:  # fmt: skip
    r"""Test accuracy of a multinomial logistic regression (L-BFGS, L2 penalty) on
    standardised features."""
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    a, b = (train - mean) / std, (test - mean) / std
    w = torch.zeros(a.shape[1], 10, requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w + bias, y)
        loss = loss + weight_decay * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(-1) == y_test).float().mean())


@torch.no_grad()
def _evaluate(ae: Autoencoder, test: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    ae.eval()
    g = torch.Generator().manual_seed(1)  # the same corrupted test set for every model
    masked = test * (torch.rand(test.shape, generator=g) >= args.mask)
    noisy = test + args.noise * torch.randn(test.shape, generator=g)
    h = ae.encode(test)
    out = {
        "mse_clean": float((ae.reconstruct(test) - test).square().mean()),
        "mse_masked": float((ae.reconstruct(masked) - test).square().mean()),
        "mse_noisy": float((ae.reconstruct(noisy) - test).square().mean()),
        "mean_abs_code": float(h.abs().mean()),
        "fraction_small_codes": float((h.abs() < 0.01).float().mean()),
    }
    ae.train()
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: the configuration, the reference rows
        (identity map, raw-pixel probe) and one row per model.
    """
    args = _parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"autoencoders_digits: expected --steps >= 1, got {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x, y = digits("train", scale=True)
    test, y_test = digits("test", scale=True)
    g = torch.Generator().manual_seed(1)
    masked = test * (torch.rand(test.shape, generator=g) >= args.mask)
    noisy = test + args.noise * torch.randn(test.shape, generator=g)
    reference = {
        # The corrupted inputs themselves, as "reconstructions": what a model must beat.
        "mse_masked_input": float((masked - test).square().mean()),
        "mse_noisy_input": float((noisy - test).square().mean()),
        "probe_accuracy_pixels": linear_probe(x.flatten(1), y, test.flatten(1), y_test),
    }
    rows: list[dict[str, Any]] = []
    pictures: dict[str, torch.Tensor] = {}
    try:
        print(f"inputs: masked mse {reference['mse_masked_input']:.4f}, noisy mse "
              f"{reference['mse_noisy_input']:.4f}; probe on pixels "
              f"{reference['probe_accuracy_pixels']:.3f}")  # fmt: skip
        print(f"{'model':<10} {'clean':>7} {'masked':>7} {'noisy':>7} {'|h|':>6} "
              f"{'small':>6} {'probe':>6} {'s':>6}")  # fmt: skip
        for name in args.models:
            torch.manual_seed(args.seed)
            ae = build(name, args)
            tic = time.perf_counter()
            history = pg.fit(ae, x, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed, progress=args.progress)  # fmt: skip
            seconds = time.perf_counter() - tic
            with torch.no_grad():
                ae.eval()
                codes, codes_test = ae.encode(x), ae.encode(test)
                pictures[name] = ae.reconstruct(masked[:16])
            row = {
                "model": name,
                **_evaluate(ae, test, args),
                "probe_accuracy": linear_probe(codes, y, codes_test, y_test),
                "final_loss": history.loss[-1],
                "steps": args.steps,
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"{name:<10} {row['mse_clean']:>7.4f} {row['mse_masked']:>7.4f} "
                f"{row['mse_noisy']:>7.4f} {row['mean_abs_code']:>6.3f} "
                f"{row['fraction_small_codes']:>6.3f} {row['probe_accuracy']:>6.3f} "
                f"{seconds:>6.1f}",
                flush=True,
            )
    finally:
        torch.set_num_threads(threads)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "reference": reference,
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.plots:
        _plot(args.out, test[:16], masked[:16], pictures)
    return results


def _plot(out: Path, clean: torch.Tensor, masked: torch.Tensor, pictures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("test images", clean), ("masked inputs", masked)]
    panels += [(f"{name}: reconstruction of the masked input", v) for name, v in pictures.items()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.2 * len(panels)))
    for ax, (title, images) in zip(axes, panels, strict=True):
        tiles = images[:16].reshape(1, 16, 8, 8).permute(0, 2, 1, 3).reshape(8, 128)
        ax.imshow(tiles.clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "reconstructions.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
