r"""DDPM on 8x8 digits with a U-Net, and class-conditional digits with classifier-free
guidance: samples, FID/KID and classifier accuracy in probgen's own digits feature space,
and the test bits/dim through the probability-flow ODE.

Data are scikit-learn's digits (``probgen.data.digits``), 17 grey levels, uniformly
dequantised, :math:`v = x + u \in [0, 17)^{64}`, and mapped to
:math:`y = 2 v / 17 - 1 \in [-1, 1)^{64}` (flat vectors; :class:`~probgen.nn.UNet` reshapes
to 1x8x8 inside). Both models are :class:`~probgen.diffusion.Diffusion` on the VP SDE with
DDPM's linear schedule, noise prediction and the denoising loss; the conditional one sees
one-hot labels, dropped to the null (zero) context with probability ``--p-uncond``.

- **Unconditional**: DDPM ancestral samples (``--sample-steps``) scored by FID and KID
  against the test split with :func:`probgen.metrics.features.digits_classifier`'s
  features (comparable only with other probgen digits FIDs), and the test NLL through the
  PF-ODE with Hutchinson's trace estimator (``--nll-images`` test images):

  .. math:: \text{bits/dim} = -\frac{\log p_y(y) + D \log(2/17)}{D \ln 2}, \quad D = 64,

  an estimate (unbiased in nats per image) of an upper bound on the discrete bits/dim, as
  in ``flows_digits`` (a uniform model scores :math:`\log_2 17 = 4.087`).
- **Conditional**: for each guidance scale ``w`` in ``--guidance``,
  :math:`\tilde\epsilon = (1 + w) \hat\epsilon(x, c) - w \hat\epsilon(x, \varnothing)`,
  DDPM samples with the labels of the test split scored by FID/KID and by the classifier's
  accuracy on the class asked for, and one PNG grid (a row per class).

Writes ``results.json`` and PNGs to ``--out``. Run it as ``probgen run diffusion_digits``
or ``python recipes/diffusion_digits.py``.
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
from probgen.data import digits
from probgen.diffusion import Diffusion, ddpm, uniform_grid
from probgen.metrics import fid, kid
from probgen.metrics.features import digits_classifier
from probgen.nn import UNet
from probgen.transforms.continuous import Hutchinson

LEVELS, D = 17, 64


def _floats(value: str) -> list[float]:
    return [float(v) for v in value.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probgen run diffusion_digits",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", default="uncond,cond", help="uncond, cond or both")
    p.add_argument("--steps", type=int, default=800, help="training steps per model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam, cosine-annealed to 0")
    p.add_argument("--channels", default="16,32", help="U-Net widths, finest first")
    p.add_argument("--p-uncond", type=float, default=0.1, help="condition dropout")
    p.add_argument("--guidance", type=_floats, default=[0.0, 1.0, 3.0], help="scales w")
    p.add_argument("--sample-steps", type=int, default=50, help="DDPM steps")
    p.add_argument("--samples", type=int, default=297, help="samples scored (test size)")
    p.add_argument("--nll-images", type=int, default=32, help="test images for NLL (0: off)")
    p.add_argument("--nll-tol", type=float, default=1e-3, help="PF-ODE rtol = atol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=Path("outputs/diffusion_digits"))
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--progress", action="store_true")
    return p


def _to_model(levels: torch.Tensor) -> torch.Tensor:
    # Uniform dequantisation of integer levels (N, 1, 8, 8), then [0, 17) -> [-1, 1).
    v = levels + torch.rand_like(levels)
    return (2 * v / LEVELS - 1).flatten(1)


def _to_images(y: torch.Tensor) -> torch.Tensor:
    # The level a dequantised sample falls in, scaled to [0, 1] (the classifier's input).
    v = (y + 1) * LEVELS / 2
    return (v.floor().clamp(0, LEVELS - 1) / (LEVELS - 1)).reshape(-1, 1, 8, 8)


@torch.no_grad()
def _scores(fake: torch.Tensor, test: torch.Tensor, net: nn.Module) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    size = min(200, len(fake), len(test))
    mean, std = kid(test, fake, net.features, subsets=10, subset_size=size, generator=g)
    return {"fid": fid(test, fake, net.features), "kid": mean, "kid_std": std}


def _train(model: Diffusion, x: torch.Tensor, y: torch.Tensor | None, args) -> float:
    def batch(n: int):
        i = torch.randint(len(x), (n,))
        if y is None:
            return _to_model(x[i])
        return _to_model(x[i]), nn.functional.one_hot(y[i], 10).to(x.dtype)

    tic = time.perf_counter()
    steps = args.steps
    pg.fit(
        model, batch, steps=steps, batch_size=args.batch_size, lr=args.lr,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
        seed=args.seed, progress=args.progress, clip_grad=1.0,
    )  # fmt: skip
    return time.perf_counter() - tic


@torch.no_grad()
def _sample(model: Diffusion, n: int, c: torch.Tensor | None, w: float, steps: int):
    d = model() if c is None else model(c, guidance=w)
    z = d.base.sample((n,) if c is None else ())
    y, nfe = ddpm(d.eps, d.sde, z, uniform_grid(steps, d.t_max, dtype=z.dtype))
    return _to_images(y), nfe


def _nll(model: Diffusion, test: torch.Tensor, args) -> dict[str, float]:
    # log p of the dequantised test images through the PF-ODE, Hutchinson's trace.
    d = Diffusion(
        D, network=model.network, sde=model.sde, divergence=Hutchinson(1),
        rtol=args.nll_tol, atol=args.nll_tol,
    )()  # fmt: skip
    y = _to_model(test[: args.nll_images])
    tic = time.perf_counter()
    with torch.no_grad():
        log_p, nfe = d.log_prob_and_nfe(y)
    nats = -(log_p + D * math.log(2 / LEVELS))
    bpd = nats / (D * math.log(2))
    return {
        "test_bits_per_dim": float(bpd.mean()),
        "test_bits_per_dim_stderr": float(bpd.std() / math.sqrt(len(bpd))),
        "nll_images": len(bpd),
        "nll_nfe": nfe,
        "nll_seconds": time.perf_counter() - tic,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    r"""Runs the recipe.

    Arguments:
        argv: Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns:
        The results written to ``results.json``.
    """
    args = _parser().parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.steps < 1 or not models or set(models) - {"uncond", "cond"}:
        raise SystemExit(f"diffusion_digits: bad --steps {args.steps} or --models {models}")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    channels = tuple(int(c) for c in args.channels.split(","))
    x, y = digits("train")  # integer levels 0..16, as floats
    test, test_y = digits("test")
    test_images = test / (LEVELS - 1)
    net = digits_classifier()
    results: dict[str, Any] = {}
    grids: dict[str, torch.Tensor] = {}
    n = args.samples
    try:
        ref = _scores(x[:n] / (LEVELS - 1), test_images, net)
        results["train_split_reference"] = ref
        print(f"train split vs test: FID {ref['fid']:.3f} KID {ref['kid']:.4f}", flush=True)
        if "uncond" in models:
            torch.manual_seed(args.seed)
            model = Diffusion(D, network=UNet((1, 8, 8), channels=channels))
            seconds = _train(model, x, None, args)
            torch.manual_seed(args.seed)
            fake, nfe = _sample(model, n, None, 0.0, args.sample_steps)
            row = {**_scores(fake, test_images, net), "sample_nfe": nfe, "train_seconds": seconds}
            if args.nll_images:
                torch.manual_seed(args.seed)
                row.update(_nll(model, test, args))
            grids["uncond"] = fake[:100]
            results["uncond"] = row
            print(
                f"uncond: FID {row['fid']:.3f} KID {row['kid']:.4f}"
                + (f" test {row['test_bits_per_dim']:.3f} bits/dim" if args.nll_images else "")
                + f" ({seconds:.0f}s training)",
                flush=True,
            )
        if "cond" in models:
            torch.manual_seed(args.seed)
            model = Diffusion(D, 10, network=UNet((1, 8, 8), 10, channels), p_uncond=args.p_uncond)
            seconds = _train(model, x, y, args)
            labels = test_y.repeat(math.ceil(n / len(test_y)))[:n]
            c = nn.functional.one_hot(labels, 10).to(x.dtype)
            rows = []
            for w in args.guidance:
                torch.manual_seed(args.seed)
                fake, nfe = _sample(model, n, c, w, args.sample_steps)
                acc = float((net(fake).argmax(-1) == labels).to(x.dtype).mean())
                row = {"guidance": w, **_scores(fake, test_images, net), "label_accuracy": acc,
                       "sample_nfe": nfe}  # fmt: skip
                rows.append(row)
                grids[f"cond_w{w:g}"] = _by_class(fake, labels)
                print(
                    f"cond w={w:g}: FID {row['fid']:.3f} KID {row['kid']:.4f} accuracy {acc:.3f}",
                    flush=True,
                )
            results["cond"] = {"train_seconds": seconds, "guidance": rows}
    finally:
        torch.set_num_threads(threads)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["seconds"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.plots:
        _plot(args.out, grids)
    return results


def _by_class(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # Up to ten samples of each class, a row per class (blank where there are fewer).
    grid = images.new_zeros(10, 10, 1, 8, 8)
    for k in range(10):
        row = images[labels == k][:10]
        grid[k, : len(row)] = row
    return grid.reshape(100, 1, 8, 8)


def _plot(out: Path, grids: dict[str, torch.Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, images in grids.items():
        k = int(math.sqrt(len(images)))
        tiles = images[: k * k].reshape(k, k, 8, 8).permute(0, 2, 1, 3).reshape(8 * k, 8 * k)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(tiles.numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(name + (" (a row per class)" if name.startswith("cond") else ""))
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    main()
