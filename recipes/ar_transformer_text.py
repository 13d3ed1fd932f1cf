r"""A character-level causal transformer on the standard library's docstrings: test
perplexity and generated text (plain, temperature, top-k, top-p).

The corpus (:func:`probgen.data.docstrings`) needs no download: the docstrings of a fixed
list of standard-library modules, as 96 character tokens, split 90/10 by position. A
GPT-style :class:`probgen.autoregressive.Transformer` models windows of ``--length``
characters; the test NLL per character gives the perplexity

.. math:: \mathrm{PPL} = \exp\left(-\frac{1}{N L} \sum_n \log p(x_n)\right)

(a uniform model scores 96). Text is generated with the key/value cache, plainly and with
each decoding strategy, which change the distribution sampled (not ``log_prob``).

Run::

    python recipes/ar_transformer_text.py               # a few minutes on 2 CPU cores
    python recipes/ar_transformer_text.py --steps 2     # a smoke test, seconds

Outputs in ``--out``: ``samples.txt`` (generated text per strategy) and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import probgen as pg
from probgen.autoregressive import CategoricalFamily, Transformer
from probgen.data.text import VOCABULARY, decode, docstrings, windows

STRATEGIES = {
    "plain": {},
    "temperature 0.7": {"temperature": 0.7},
    "top-k 10": {"top_k": 10},
    "top-p 0.9": {"top_p": 0.9},
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--length", type=int, default=128, help="training window length")
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--test-windows", type=int, default=256, help="test windows scored")
    p.add_argument("--generate", type=int, default=256, help="characters per sample")
    p.add_argument("--samples", type=int, default=2, help="samples per strategy")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="outputs/ar_transformer_text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    train, test = docstrings("train"), docstrings("test")
    # Overlapping training windows (stride L/2); disjoint test windows, the first ones.
    x_train = windows(train, args.length, args.length // 2).float().to(device)
    x_test = windows(test, args.length)[: args.test_windows].float().to(device)

    model = Transformer(
        args.length, CategoricalFamily(len(VOCABULARY)), features=args.features,
        heads=args.heads, layers=args.layers, max_length=max(args.length, args.generate),
    ).to(device)  # fmt: skip
    start = time.perf_counter()
    pg.fit(
        model, x_train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        ell = torch.cat([-model().log_prob(b).double() for b in x_test.split(64)])
    nll = ell.mean().item() / args.length
    ppl = math.exp(nll)

    d = model(length=args.generate)
    texts: dict[str, list[str]] = {}
    with torch.no_grad():
        for name, kwargs in STRATEGIES.items():
            torch.manual_seed(args.seed)
            x = d.sample((args.samples,), **kwargs)
            texts[name] = [decode(row) for row in x]
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        a = d.sample((args.samples,), cache=True)
        t1 = time.perf_counter()
        torch.manual_seed(args.seed)
        b = d.sample((args.samples,), cache=False)
        t2 = time.perf_counter()
    with open(out / "samples.txt", "w", encoding="utf-8") as f:
        for name, rows in texts.items():
            for i, text in enumerate(rows):
                f.write(f"===== {name} #{i} =====\n{text}\n\n")
    results = {
        "test_nll_nats_per_char": nll,
        "test_bits_per_char": nll / math.log(2),
        "test_perplexity": ppl,
        "reference_uniform_perplexity": len(VOCABULARY),
        "train_chars": len(train),
        "test_chars_scored": x_test.numel(),
        "train_seconds": seconds,
        "naive_check": {
            "length": args.generate,
            "identical": bool(torch.equal(a, b)),
            "cached_seconds": t1 - t0,
            "naive_seconds": t2 - t1,
        },
        "samples": texts,
        "parameters": sum(p.numel() for p in model.parameters()),
        "args": vars(args),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    check = results["naive_check"]
    print(
        f"Transformer: test perplexity {ppl:.2f} ({nll / math.log(2):.3f} bits/char; uniform "
        f"{len(VOCABULARY)}), {seconds:.0f} s of training; {args.generate} characters: cached "
        f"{check['cached_seconds']:.2f} s, naive {check['naive_seconds']:.2f} s, identical "
        f"{check['identical']}; wrote {out}"
    )
    print(f"--- top-p 0.9 sample ---\n{texts['top-p 0.9'][0][:400]}")
    return results


if __name__ == "__main__":
    main()
