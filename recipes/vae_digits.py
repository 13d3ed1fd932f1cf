r"""VAE, beta-VAE (with KL warm-up), conditional VAE and a VAE with a flow prior on 8x8
digits: test NLL estimated with K = 1000 importance particles (nats), reconstruction
error, active units, and PNG grids of samples, reconstructions, interpolations, latent
traversals and class-conditional samples.

Images are scikit-learn's digits with their 17 grey levels (``probgen.data.digits``); the
decoder's likelihood is a discretised logistic over the levels (``--likelihood
categorical`` for a categorical over them), so every NLL is of the discrete data, in nats
per image. Encoders and decoders are MLPs; the prior is a standard normal, or a neural
spline flow (``vae_flow``). The VAEs train by :func:`probgen.fit` on Pyro's ELBO (their
default objective); the beta-VAE by :class:`probgen.objectives.KLWarmup` to
:math:`\beta = 4`; the conditional VAE gets one-hot labels in its encoder, decoder and a
conditional (one-layer MAF) prior; it reports :math:`-\log \hat p(x | y)` at the true
label (K = 1000) and the NLL of :math:`x` alone, :math:`-\log \sum_y \pi_y \hat p(x | y)`
with the training label frequencies :math:`\pi` (K = 100 per label). Sample grids show
the decoder's mean at prior draws.
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
import torch.nn as nn

import probgen as pg
from probgen import latent as lt
from probgen.data import digits
from probgen.nn import ContextMLP

LEVELS = 17
EVENT = (1, 8, 8)
MODELS = ("vae", "beta_vae", "cvae", "vae_flow")


class Encoder(nn.Module):
    r"""Images (scaled to [0, 1]) and an optional context to means and raw scales."""

    def __init__(self, latent: int, hidden: int, context: int = 0) -> None:
        super().__init__()
        self.net = ContextMLP(64, 2 * latent, context, hidden=(hidden, hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.flatten(1) / (LEVELS - 1), c)


class Decoder(nn.Module):
    r"""Latents and an optional context to P parameters per pixel (parameter-major)."""

    def __init__(self, latent: int, hidden: int, params: int, context: int = 0) -> None:
        super().__init__()
        self.net = ContextMLP(latent, params * 64, context, hidden=(hidden, hidden))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, c)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen run vae_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--latent", type=int, default=8, help="latent dimension")
    parser.add_argument("--hidden", type=int, default=256, help="MLP width")
    parser.add_argument(
        "--likelihood", choices=("logistic", "categorical"), default="logistic",
        help="decoder likelihood over the 17 grey levels",
    )  # fmt: skip
    parser.add_argument("--beta", type=float, default=4.0, help="the beta-VAE's KL weight")
    parser.add_argument("--particles", type=int, default=1000, help="K of the test NLL")
    parser.add_argument(
        "--label-particles", type=int, default=100,
        help="K per label of the conditional VAE's log p(x) = log sum_y pi_y p(x | y)",
    )  # fmt: skip
    parser.add_argument("--eval-size", type=int, default=297, help="test images scored")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (one is fastest for these small MLPs on a shared machine)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("outputs/vae_digits"))
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip PNGs")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser


def _family(name: str) -> pg.distributions.ElementFamily:
    if name == "categorical":
        return lt.CategoricalFamily(LEVELS)
    return lt.LogisticMixtureFamily(1, LEVELS)


def build(name: str, args: argparse.Namespace) -> lt.VAE:
    r"""One of :data:`MODELS`."""
    family = _family(args.likelihood)
    L, H, P = args.latent, args.hidden, family.params
    context = 10 if name == "cvae" else 0
    prior = None
    if name == "vae_flow":
        prior = pg.flows.NSF(L, transforms=3, hidden=(64, 64))
    elif name == "cvae":
        prior = pg.flows.MAF(L, context, transforms=1, hidden=(64,))
    return lt.VAE(
        Encoder(L, H, context),
        Decoder(L, H, P, context),
        prior,
        latent=L,
        event_shape=EVENT,
        likelihood=family,
        context=context,
        beta=args.beta if name == "beta_vae" else 1.0,
    )


@torch.no_grad()
def log_likelihood(
    vae: lt.VAE, x: torch.Tensor, c: torch.Tensor | None, particles: int, chunk: int = 8
) -> torch.Tensor:
    r"""The importance-weighted :math:`\log \hat p_K(x | c)` of each image, in chunks."""
    out = []
    for i in range(0, len(x), chunk):
        ci = None if c is None else c[i : i + chunk]
        lw = vae(ci).log_weights(x[i : i + chunk], particles)
        out.append(torch.logsumexp(lw, 0) - math.log(particles))
    return torch.cat(out)


def save_grid(x: torch.Tensor, path: Path, title: str = "") -> None:
    r"""Saves images with shape (rows, cols, 1, 8, 8) as one PNG grid (one tiled image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = x.shape[:2]
    tiles = torch.nn.functional.pad(x[:, :, 0].detach().cpu().float(), (1, 1, 1, 1))
    image = tiles.permute(0, 2, 1, 3).reshape(rows * 10, cols * 10)
    fig, ax = plt.subplots(figsize=(cols * 0.5, rows * 0.5 + 0.3))
    ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=LEVELS - 1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``: one row per model, and the flow prior's
        NLL gain over the Gaussian prior.
    """
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or args.steps < 1:
        raise SystemExit(f"vae_digits: unknown models {unknown} or --steps {args.steps} < 1")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x, y = digits("train")
    test, test_y = digits("test")
    test, test_y = test[: args.eval_size], test_y[: args.eval_size]
    onehot = nn.functional.one_hot(y, 10).to(x.dtype)
    freq = torch.bincount(y, minlength=10).to(x.dtype) / len(y)
    rows: list[dict[str, Any]] = []
    per_image: dict[str, torch.Tensor] = {}
    try:
        print(f"{'model':<10} {'NLL':>8} {'-ELBO':>8} {'MSE':>7} {'KL':>6} {'AU':>3} {'s':>6}")
        for name in names:
            torch.manual_seed(args.seed)
            vae = build(name, args)
            objective = None
            if name == "beta_vae":
                objective = pg.objectives.KLWarmup(max(1, args.steps // 4), beta=args.beta)
            tic = time.perf_counter()
            history = pg.fit(
                vae, (x, onehot) if vae.context else x, objective=objective, steps=args.steps,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=args.progress,
            )  # fmt: skip
            seconds = time.perf_counter() - tic
            vae.eval()
            torch.manual_seed(args.seed)
            if vae.context:
                # log p(x | y) with K particles at the true label; log p(x) = log sum_y
                # pi_y p(x | y) with --label-particles per label (ten times the work).
                c = nn.functional.one_hot(test_y, 10).to(x.dtype)
                ll_given_y = log_likelihood(vae, test, c, args.particles)
                per_label = torch.stack([
                    log_likelihood(vae, test, nn.functional.one_hot(
                        torch.full((len(test),), k), 10).to(x.dtype), args.label_particles)
                    for k in range(10)
                ])  # fmt: skip
                ll = torch.logsumexp(per_label + freq.log()[:, None], 0)
            else:
                ll, ll_given_y, c = log_likelihood(vae, test, None, args.particles), None, None
            with torch.no_grad():
                elbo = vae(c).elbo(test, particles=100).mean().item()
                rec = lt.reconstruct(vae, test, c)
                au = lt.active_units(vae, test, c, warn=False)
                kl = lt.kl_per_dimension(vae, test, c) if vae.prior_distribution(
                    c).__class__.__name__ == "DiagNormal" else None  # fmt: skip
            row = {
                "model": name,
                "prior": "standard normal"
                if name in ("vae", "beta_vae")
                else type(vae.prior).__name__,
                "beta": vae.beta if objective is None else args.beta,
                "test_nll_nats": -ll.mean().item(),
                "test_nll_stderr": ll.std().item() / math.sqrt(len(ll)),
                "test_nll_given_label_nats": None
                if ll_given_y is None
                else -ll_given_y.mean().item(),
                "test_elbo_nats": elbo,
                "particles": args.particles,
                "label_particles": args.label_particles if vae.context else None,
                "reconstruction_mse_levels": (rec - test).square().mean().item(),
                "active_units": au.count,
                "kl_per_dimension": None if kl is None else kl.tolist(),
                "final_train_loss": history.loss[-1],
                "train_seconds": seconds,
                "parameters": sum(p.numel() for p in vae.parameters()),
            }
            rows.append(row)
            per_image[name] = ll
            print(
                f"{name:<10} {row['test_nll_nats']:>8.2f} {-elbo:>8.2f} "
                f"{row['reconstruction_mse_levels']:>7.3f} "
                f"{'' if kl is None else f'{kl.sum().item():.2f}':>6} {au.count:>3} "
                f"{seconds:>6.0f}"
            )
            if args.plots:
                _figures(name, vae, test, test_y, c, args.out, args.seed)
    finally:
        torch.set_num_threads(threads)
    gain = gain_stderr = None
    if {"vae", "vae_flow"} <= per_image.keys():
        # Paired over the test images: both models score the same ones.
        diff = per_image["vae_flow"] - per_image["vae"]
        gain, gain_stderr = diff.mean().item(), diff.std().item() / math.sqrt(len(diff))
    results: dict[str, Any] = {
        "rows": rows,
        "flow_prior_gain_nats": gain,
        "flow_prior_gain_stderr": gain_stderr,
        "likelihood": args.likelihood,
        "total_seconds": time.perf_counter() - start,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if results["flow_prior_gain_nats"] is not None:
        print(f"flow prior gain over the Gaussian prior: {gain:.2f} ± {gain_stderr:.2f} nats")
    return results


@torch.no_grad()
def _figures(
    name: str,
    vae: lt.VAE,
    test: torch.Tensor,
    test_y: torch.Tensor,
    c: torch.Tensor | None,
    out: Path,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    if vae.context:
        # A row per class: decoder means at prior draws given the label.
        labels = nn.functional.one_hot(torch.arange(10).repeat_interleave(10), 10)
        labels = labels.to(test.dtype)
        z = vae.prior_distribution(labels).sample()
        grid = vae.decode(z, labels).mean.reshape(10, 10, *EVENT)
        save_grid(grid, out / f"{name}_class_samples.png", f"{name}: a row per class")
    else:
        z = vae.prior_distribution().sample((64,))
        grid = vae.decode(z).mean.reshape(8, 8, *EVENT)
        save_grid(grid, out / f"{name}_samples.png", f"{name}: decoder means at prior draws")
    rec = lt.reconstruct(vae, test[:16], None if c is None else c[:16])
    save_grid(torch.stack([test[:16], rec]), out / f"{name}_reconstructions.png",
              f"{name}: test images (top) and reconstructions")  # fmt: skip
    cc = None if c is None else c[:6]
    path = lt.interpolate(vae, test[:6], test[6:12], steps=10, c=cc).transpose(0, 1)
    save_grid(path, out / f"{name}_interpolations.png", f"{name}: latent interpolations")
    trav = lt.traverse(vae, test[0], c=None if c is None else c[0])
    save_grid(trav, out / f"{name}_traversals.png", f"{name}: a row per latent unit, -3 to 3")


if __name__ == "__main__":
    main()
