r"""DCGAN, conditional DCGAN, a style-based generator and a GMMN on 8x8 digits, scored by
FID, KID and Inception Score in the feature space of probgen's own digits classifier.

Images are scikit-learn's digits scaled to [0, 1] (``probgen.data.digits``). Every GAN has
a DCGAN discriminator (a projection discriminator when conditional on one-hot labels) and
is trained by WGAN-GP (5 critic steps per generator step, penalty 10), or with
``--loss hinge`` by the hinge loss with a spectrally normalised critic that also reads the
minibatch standard deviation; on these 1,500 images the hinge GAN (like the
non-saturating one) collapses to a few images within a few hundred steps, where WGAN-GP
does not. The generators are :class:`~probgen.nn.DCGenerator` and
:class:`~probgen.nn.StyleGenerator`.
The GMMN is the same DCGAN generator trained by the MMD to the data in pixel space, with no
discriminator (:class:`~probgen.implicit.GMMN`). The scores use
:func:`probgen.metrics.features.digits_classifier` (no download): FID and KID against the
test split, the Inception-Score-style :func:`~probgen.metrics.classifier_score`, and for
the conditional model the classifier's accuracy on the labels asked for. The recipe
writes one PNG grid per model (a row per class for the conditional one) and
``results.json``; as many training images as test images, scored the same way, are the
reference (the floor any model can reach at this sample size). The defaults take about
10 minutes on 2 busy cores; measured results are in ``benchmarks/RESULTS.md``.
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
from torch.optim import Adam

import probgen as pg
from probgen import objectives as O
from probgen.data import digits
from probgen.implicit import GAN, GMMN, DCDiscriminator, DCGenerator, ImplicitModel, StyleGenerator
from probgen.metrics import classifier_score, fid, kid
from probgen.metrics.features import digits_classifier

LATENT = 32
STEPS, CHANNELS = 250, 16  # the defaults: about 10 minutes in all on 2 busy cores


def _critic(a: argparse.Namespace, context: int = 0) -> DCDiscriminator:
    hinge = a.loss == "hinge"
    return DCDiscriminator(context=context, channels=a.channels, spectral=hinge,
                           minibatch_std=4 if hinge else 0)  # fmt: skip


def _players(gan: GAN, a: argparse.Namespace) -> dict[str, Any]:
    # pg.fit's arguments for the two players.
    if a.loss == "hinge":
        betas = (0.0, 0.9)
        return {
            "objective": O.adversarial(O.hinge),
            "optimizer": {
                # The critic at twice the generator's rate (two time-scale updates).
                "discriminator": Adam(gan.discriminator.parameters(), 2 * a.lr, betas=betas),
                "generator": Adam(gan.generator_parameters(), a.lr, betas=betas),
            },
        }
    betas = (0.5, 0.9)
    return {
        "objective": O.adversarial(O.wasserstein, penalty=10.0),
        "optimizer": {
            "discriminator": Adam(gan.discriminator.parameters(), a.lr, betas=betas),
            "generator": Adam(gan.generator_parameters(), a.lr, betas=betas),
        },
        "schedule": {"discriminator": 5},
    }


# name -> (the model, whether it is conditional on the labels).
MODELS: dict[str, Callable[[argparse.Namespace], tuple[ImplicitModel, bool]]] = {
    "dcgan": lambda a: (GAN(DCGenerator(LATENT, channels=a.channels), _critic(a), LATENT), False),
    "cgan": lambda a: (GAN(DCGenerator(LATENT, context=10, channels=a.channels),
                           _critic(a, 10), LATENT, context=10), True),
    "stylegan": lambda a: (GAN(StyleGenerator(LATENT, channels=a.channels), _critic(a), LATENT),
                           False),
    "gmmn": lambda a: (GMMN(DCGenerator(LATENT, channels=a.channels), LATENT), False),
}  # fmt: skip
DEFAULT_MODELS = ("dcgan", "cgan", "gmmn")


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
    parser = argparse.ArgumentParser(
        prog="probgen run gan_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        type=_names,
        default=list(DEFAULT_MODELS),
        help=f"comma-separated models among {', '.join(MODELS)}, or all",
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="generator steps")
    parser.add_argument("--batch-size", type=int, default=64, help="images per GAN player step")
    parser.add_argument(
        "--mmd-batch-size", type=int, default=256, help="images per GMMN step (MMD needs more)"
    )
    parser.add_argument(
        "--loss",
        choices=["wgan_gp", "hinge"],
        default="wgan_gp",
        help="the GANs' loss: WGAN-GP (5 critic steps), or hinge with a spectrally normalised "
        "critic reading the minibatch standard deviation",
    )
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (GANs)")
    parser.add_argument("--mmd-lr", type=float, default=1e-3, help="Adam learning rate (GMMN)")
    parser.add_argument("--channels", type=int, default=CHANNELS, help="feature maps at 8x8")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/gan_digits"), help="output folder"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (on 2 busy cores, 2 threads made a step 8 times slower)",
    )
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


@torch.no_grad()
def _scores(x: torch.Tensor, test: torch.Tensor, net: nn.Module) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    mean, std = kid(test, x, net.features, subsets=10, subset_size=200, generator=g)
    return {
        "fid": fid(test, x, net.features),
        "kid": mean,
        "kid_std": std,
        "inception_score": classifier_score(x, net),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: one row of scores per model, and the
        test split's own (the reference).
    """
    args = _parser().parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"gan_digits: expected --steps >= 1, got {args.steps}")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x, y = digits("train", scale=True)  # in the default dtype, as the models are
    test, _ = digits("test", scale=True)
    c = nn.functional.one_hot(y, 10).float()
    net = digits_classifier()
    rows: list[dict[str, Any]] = []
    grids: dict[str, torch.Tensor] = {}
    try:
        # The reference: the training split scored against the test split.
        ref = _scores(x[: len(test)], test, net)
        rows.append({"model": "train split (reference)", **ref})
        print(f"{'model':<24} {'FID':>8} {'KID':>8} {'IS':>6} {'acc':>6} {'s':>6}")
        print(
            f"{rows[0]['model']:<24} {ref['fid']:>8.3f} {ref['kid']:>8.3f} "
            f"{ref['inception_score']:>6.2f} {'':>6} {'':>6}"
        )
        for name in args.models:
            torch.manual_seed(args.seed)
            gan, conditional = MODELS[name](args)
            data = (x, c) if conditional else x
            tic = time.perf_counter()
            if isinstance(gan, GAN):
                pg.fit(gan, data, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                       progress=args.progress, **_players(gan, args))  # fmt: skip
            else:  # a GMMN: one player, its default objective (the MMD to the batch)
                pg.fit(gan, data, steps=args.steps, batch_size=args.mmd_batch_size,
                       optimizer=Adam(gan.parameters(), args.mmd_lr), seed=args.seed,
                       progress=args.progress)  # fmt: skip
            seconds = time.perf_counter() - tic
            with torch.no_grad():
                if conditional:
                    labels = torch.arange(10).repeat_interleave(len(test) // 10 + 1)[: len(test)]
                    fake = gan(nn.functional.one_hot(labels, 10).float()).sample()
                    acc = float((net(fake).argmax(-1) == labels).float().mean())
                    grids[name] = gan(torch.eye(10).repeat_interleave(10, 0)).sample()
                else:
                    fake = gan().sample((len(test),))
                    acc = None
                    grids[name] = fake[:100]
            row = {"model": name, **_scores(fake, test, net), "label_accuracy": acc,
                   "steps": args.steps, "seconds": seconds}  # fmt: skip
            rows.append(row)
            print(
                f"{name:<24} {row['fid']:>8.3f} {row['kid']:>8.3f} "
                f"{row['inception_score']:>6.2f} {'' if acc is None else f'{acc:.3f}':>6} "
                f"{seconds:>6.1f}",
                flush=True,
            )
    finally:
        torch.set_num_threads(threads)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.plots:
        _plot(args.out, grids)
    return results


def _plot(out: Path, grids: dict[str, torch.Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, images in grids.items():
        tiles = images[:100].reshape(10, 10, 8, 8).permute(0, 2, 1, 3).reshape(80, 80)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(tiles.numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(name + (" (a row per class)" if name == "cgan" else ""))
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    main()
