r"""Autoregressive benchmarks: cached against naive sampling (WaveNet, Transformer), and the
test NLL of MADE, NADE and PixelCNN on binarised digits side by side.

Sampling: for each model and length, one seeded draw through the incremental network
(fast-WaveNet queues, key/value cache; ``cache=True``) and one through the naive loop
(the whole network per element; ``cache=False``), timed, and checked to be identical.
The models are untrained (sampling cost does not depend on the weights).

NLL: runs ``recipes/ar_made_nade_digits.py`` and ``recipes/ar_pixelcnn_digits.py`` with
their defaults (and the given ``--steps`` when set) and prints one table.

Run::

    python benchmarks/autoregressive.py sampling
    python benchmarks/autoregressive.py nll
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from probgen.autoregressive import CategoricalFamily, Transformer, WaveNet


def time_sampling(model: torch.nn.Module, length: int, batch: int, seed: int) -> dict:
    d = model(length=length)
    with torch.no_grad():
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        cached = d.sample((batch,), cache=True)
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        naive = d.sample((batch,), cache=False)
        t2 = time.perf_counter()
    return {
        "length": length,
        "batch": batch,
        "cached_seconds": t1 - t0,
        "naive_seconds": t2 - t1,
        "speedup": (t2 - t1) / (t1 - t0),
        "identical": bool(torch.equal(cached, naive)),
    }


def sampling(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    models = {
        "WaveNet (16 layers, 32 channels, 256-way)": WaveNet(
            max(args.wavenet_lengths), dilations=tuple(2**i for i in range(8)) * 2
        ),
        "Transformer (4 layers, width 128, 96 tokens)": Transformer(
            max(args.transformer_lengths), CategoricalFamily(96), features=128, heads=4,
            layers=4,
        ),
    }  # fmt: skip
    rows = []
    for name, model in models.items():
        model.eval()
        lengths = args.wavenet_lengths if name.startswith("WaveNet") else args.transformer_lengths
        for length in lengths:
            row = {"model": name, **time_sampling(model, length, args.batch, args.seed)}
            rows.append(row)
            print(
                f"{name:46s} L={length:5d} batch={args.batch}: "
                f"cached {row['cached_seconds']:7.2f} s"
                f", naive {row['naive_seconds']:8.2f} s, speed-up {row['speedup']:6.1f}x, "
                f"identical {row['identical']}",
                flush=True,
            )
    return rows


def nll(args: argparse.Namespace) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from recipes import ar_made_nade_digits, ar_pixelcnn_digits

    extra = ["--quiet", "--seed", str(args.seed)]
    if args.steps is not None:
        extra += ["--steps", str(args.steps)]
    out = Path(args.out)
    rows = ar_made_nade_digits.main([*extra, "--out", str(out / "made_nade")])["results"]
    pixel = ar_pixelcnn_digits.main([*extra, "--out", str(out / "pixelcnn")])
    rows.append({"model": pixel["model"], **{k: pixel[k] for k in (
        "test_nll_nats", "test_nll_stderr", "test_bits_per_dim", "train_nll_nats",
        "train_seconds", "parameters")}})  # fmt: skip
    print(f"\n{'model':28s} {'test NLL (nats)':>18s} {'bits/dim':>9s} {'train NLL':>10s}")
    for r in rows:
        print(
            f"{r['model']:28s} {r['test_nll_nats']:10.2f} ± {r['test_nll_stderr']:4.2f} "
            f"{r['test_bits_per_dim']:9.4f} {r['train_nll_nats']:10.2f}"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=("sampling", "nll"))
    p.add_argument("--wavenet-lengths", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--transformer-lengths", type=int, nargs="+", default=[128, 512])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="training steps (recipe default)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/benchmarks_autoregressive")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = sampling(args) if args.part == "sampling" else nll(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.part}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
