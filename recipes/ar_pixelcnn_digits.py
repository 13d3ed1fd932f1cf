r"""Gated PixelCNN on 8x8 digits (binarised, or all 17 grey levels): test NLL and samples.

A gated PixelCNN (:class:`probgen.autoregressive.PixelCNN`: vertical and horizontal
stacks, no blind spot) is an exact chain-rule distribution over the pixels in raster
order. On binarised digits (the default) each pixel is Bernoulli, and the test NLL is
comparable with MADE's and NADE's (``recipes/ar_made_nade_digits.py``); with
``--levels 17`` each pixel is a 17-way categorical (``--family categorical``) or a
discretised mixture of logistics (``--family logistics``, PixelCNN++):

.. math:: \text{NLL} = -\frac{1}{N} \sum_n \log p(x_n) \ \text{nats}, \qquad
    \text{bits/dim} = \frac{\text{NLL}}{64 \ln 2} .

Uniform models score 1 bit/dim (binary) and :math:`\log_2 17 = 4.09` bits/dim (17 levels).

Run::

    python recipes/ar_pixelcnn_digits.py                    # a few minutes on 2 CPU cores
    python recipes/ar_pixelcnn_digits.py --levels 17        # grey levels
    python recipes/ar_pixelcnn_digits.py --steps 2          # a smoke test, seconds

Outputs in ``--out``: ``samples.png`` (plain, top-p 0.9 and temperature 0.8 samples side
by side) and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import probgen as pg
from probgen.autoregressive import CategoricalFamily, LogisticMixtureFamily, PixelCNN
from probgen.data import digits


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--levels", type=int, default=2, choices=(2, 17), help="grey levels")
    p.add_argument("--family", default="categorical", choices=("categorical", "logistics"),
                   help="per-pixel family with 17 levels")  # fmt: skip
    p.add_argument("--components", type=int, default=5, help="logistic mixture components")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--plain", action="store_true", help="masked A/B stack (blind spot)")
    p.add_argument("--samples", type=int, default=36, help="samples per grid")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="outputs/ar_pixelcnn_digits")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> PixelCNN:
    family = None  # Bernoulli
    if args.levels > 2:
        if args.family == "logistics":
            family = LogisticMixtureFamily(args.components, args.levels)
        else:
            family = CategoricalFamily(args.levels)
    return PixelCNN(
        (1, 8, 8), family, channels=args.channels, layers=args.layers, gated=not args.plain
    )


@torch.no_grad()
def test_nll(model: PixelCNN, x: torch.Tensor) -> tuple[float, float]:
    model.eval()
    ell = torch.cat([-model().log_prob(b).double() for b in x.split(512)])
    model.train()
    return ell.mean().item(), (ell.std() / math.sqrt(len(ell))).item()


def save_grids(grids: list[torch.Tensor], titles: list[str], top: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 4.4))
    for ax, x, title in zip(axes, grids, titles, strict=True):
        n = len(x)
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        canvas = torch.ones(rows * 9 + 1, cols * 9 + 1)
        for i in range(n):
            r, c = divmod(i, cols)
            canvas[r * 9 + 1 : r * 9 + 9, c * 9 + 1 : c * 9 + 9] = 1 - x[i, 0].cpu() / top
        ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    binary = args.levels == 2
    x_train = digits("train", binarize=binary)[0].to(device)
    x_test = digits("test", binarize=binary)[0].to(device)

    model = build(args).to(device)
    start = time.perf_counter()
    history = pg.fit(
        model, x_train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    nll, se = test_nll(model, x_test)
    bpd = nll / (64 * math.log(2))
    d = model()
    with torch.no_grad():
        start = time.perf_counter()
        plain = d.sample((args.samples,))
        sample_seconds = time.perf_counter() - start
        nucleus = d.sample((args.samples,), top_p=0.9)
        cold = d.sample((args.samples,), temperature=0.8)
    save_grids(
        [plain, nucleus, cold], ["samples", "top-p 0.9", "temperature 0.8"], args.levels - 1,
        out / "samples.png",
    )  # fmt: skip
    family = "Bernoulli" if binary else args.family
    results = {
        "model": f"{'PixelCNN (plain)' if args.plain else 'gated PixelCNN'}, {family}",
        "levels": args.levels,
        "test_nll_nats": nll,
        "test_nll_stderr": se,
        "test_bits_per_dim": bpd,
        "train_nll_nats": test_nll(model, x_train[: len(x_test)])[0],
        "reference_uniform_bits_per_dim": math.log2(args.levels),
        "final_train_loss_nats": history.loss[-1] if history.loss else None,
        "train_seconds": seconds,
        "sample_seconds": sample_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "args": vars(args),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"{results['model']}: test NLL {nll:.2f} ± {se:.2f} nats ({bpd:.4f} bits/dim; uniform "
        f"{math.log2(args.levels):.3f}), {seconds:.0f} s of training; wrote {out}"
    )
    return results


if __name__ == "__main__":
    main()
