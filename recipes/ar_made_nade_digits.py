r"""MADE and NADE on binarised 8x8 digits: test NLL side by side and sample grids.

Both are exact chain-rule distributions over the 64 binary pixels
(:class:`probgen.autoregressive.MADE`, :class:`probgen.autoregressive.NADE`), trained by
maximum likelihood with :func:`probgen.fit` on the fixed 1,500-image train split of
:func:`probgen.data.digits` (thresholded at level 8) and scored on the 297 test images:

.. math:: \text{NLL} = -\frac{1}{N} \sum_n \log p(x_n) \ \text{nats}, \qquad
    \text{bits/dim} = \frac{\text{NLL}}{64 \ln 2} .

A uniform model scores :math:`64 \ln 2 = 44.36` nats (1 bit/dim).

Run::

    python recipes/ar_made_nade_digits.py              # a few minutes on 2 CPU cores
    python recipes/ar_made_nade_digits.py --steps 2    # a smoke test, seconds

Outputs in ``--out``: ``samples_made.png``, ``samples_nade.png`` (plain samples beside
top-p 0.9 samples) and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import probgen as pg
from probgen.autoregressive import MADE, NADE
from probgen.data import digits

MODELS = ("made", "nade")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="made,nade", help="comma-separated: made, nade")
    p.add_argument("--steps", type=int, default=3000, help="training steps per model")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=500, help="MADE hidden width (2 layers)")
    p.add_argument("--masks", type=int, default=1, help="MADE order/connectivity ensemble")
    p.add_argument("--nade-hidden", type=int, default=500)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--samples", type=int, default=32, help="samples per grid half")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="outputs/ar_made_nade_digits")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m}; choose from {', '.join(MODELS)}")
    return args


def build(name: str, args: argparse.Namespace) -> torch.nn.Module:
    if name == "made":
        return MADE(64, hidden=(args.hidden, args.hidden), masks=args.masks)
    return NADE(64, hidden=args.nade_hidden)


@torch.no_grad()
def test_nll(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    model.eval()
    ell = -model().log_prob(x).double()
    model.train()
    return ell.mean().item(), (ell.std() / math.sqrt(len(ell))).item()


def save_grid(halves: list[torch.Tensor], titles: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(halves), figsize=(4 * len(halves), 4.4))
    for ax, x, title in zip(axes, halves, titles, strict=True):
        n = len(x)
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        grid = torch.ones(rows * 9 + 1, cols * 9 + 1)
        for i in range(n):
            r, c = divmod(i, cols)
            grid[r * 9 + 1 : r * 9 + 9, c * 9 + 1 : c * 9 + 9] = 1 - x[i].reshape(8, 8).cpu()
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
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
    x_train = digits("train", binarize=True)[0].flatten(1).to(device)
    x_test = digits("test", binarize=True)[0].flatten(1).to(device)

    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = build(name, args).to(device)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=args.lr, weight_decay=args.weight_decay
        )
        start = time.perf_counter()
        pg.fit(
            model, x_train, steps=args.steps, batch_size=args.batch_size, optimizer=optimizer,
            seed=args.seed, progress=not args.quiet,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        nll, se = test_nll(model, x_test)
        d = model()
        with torch.no_grad():
            plain = d.sample((args.samples,))
            nucleus = d.sample((args.samples,), top_p=0.9)
        save_grid([plain, nucleus], ["samples", "top-p 0.9"], out / f"samples_{name}.png")
        row = {
            "model": name.upper(),
            "test_nll_nats": nll,
            "test_nll_stderr": se,
            "test_bits_per_dim": nll / (64 * math.log(2)),
            "train_nll_nats": test_nll(model, x_train[: len(x_test)])[0],
            "train_seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        rows.append(row)
        print(
            f"{row['model']}: test NLL {nll:.2f} ± {se:.2f} nats "
            f"({row['test_bits_per_dim']:.4f} bits/dim), {seconds:.0f} s of training"
        )
    results = {
        "results": rows,
        "reference_uniform_nats": 64 * math.log(2),
        "args": {k: v for k, v in vars(args).items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
