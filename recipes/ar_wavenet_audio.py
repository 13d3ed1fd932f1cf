r"""WaveNet on synthetic audio (sines and chirps, 8-bit mu-law): test NLL, a waveform plot,
WAV files, and cached against naive sampling.

A WaveNet (:class:`probgen.autoregressive.WaveNet`: dilated causal convolutions, gated
activations, residual and skip connections, a 256-way softmax) models clips of
:func:`probgen.data.synthetic_audio` quantised by :func:`probgen.data.mu_law_encode`.
The test NLL is in nats and bits per sample (8 bits is the uniform model's). Samples are
drawn with the fast-WaveNet queues (``cache=True``, the default), plainly and with
top-p 0.9; a short naive run (the whole network per sample) checks that both paths give
the same samples for the same seed and times them.

Run::

    python recipes/ar_wavenet_audio.py                  # a few minutes on 2 CPU cores
    python recipes/ar_wavenet_audio.py --steps 2        # a smoke test, seconds

Outputs in ``--out``: ``waveforms.png`` (data, samples, top-p samples), ``data.wav``,
``sample.wav``, ``sample_top_p.wav`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import probgen as pg
from probgen.autoregressive import WaveNet
from probgen.data.audio import mu_law_decode, mu_law_encode, save_wav, synthetic_audio


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--length", type=int, default=512, help="training clip length")
    p.add_argument("--clips", type=int, default=512, help="training clips")
    p.add_argument("--sample-rate", type=int, default=8000)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--skip", type=int, default=64)
    p.add_argument("--cycles", type=int, default=2, help="dilation cycles 1, 2, ..., 2^(L-1)")
    p.add_argument("--layers-per-cycle", type=int, default=8)
    p.add_argument("--generate", type=int, default=4000, help="samples per generated clip")
    p.add_argument("--naive-length", type=int, default=200, help="naive vs cached check")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="outputs/ar_wavenet_audio")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def plot(waves: list[torch.Tensor], titles: list[str], rate: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(waves), 1, figsize=(10, 2 * len(waves)), sharex=True)
    for ax, w, title in zip(axes, waves, titles, strict=True):
        t = torch.arange(len(w)) / rate * 1000
        ax.plot(t.numpy(), w.cpu().numpy(), lw=0.6)
        ax.set_ylim(-1, 1)
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("time (ms)")
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
    rate = args.sample_rate
    # Train and test clips come from different seeds of the generator.
    x_train = mu_law_encode(synthetic_audio(args.clips, args.length, rate, seed=1)).float()
    x_test = mu_law_encode(synthetic_audio(64, args.length, rate, seed=2)).float()
    x_train, x_test = x_train.to(device), x_test.to(device)

    dilations = tuple(2**i for i in range(args.layers_per_cycle)) * args.cycles
    model = WaveNet(args.length, channels=args.channels, skip=args.skip, dilations=dilations)
    model = model.to(device)
    start = time.perf_counter()
    pg.fit(
        model, x_train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        ell = -model().log_prob(x_test).double() / args.length
    nll = ell.mean().item()

    with torch.no_grad():
        long = model(length=args.generate)
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        plain = long.sample()
        cached_seconds = time.perf_counter() - start
        nucleus = long.sample(top_p=0.9)
        short = model(length=args.naive_length)
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        a = short.sample((2,), cache=True)
        t1 = time.perf_counter()
        torch.manual_seed(args.seed)
        b = short.sample((2,), cache=False)
        t2 = time.perf_counter()
    data = mu_law_decode(x_test[0])
    waves = [mu_law_decode(plain), mu_law_decode(nucleus)]
    save_wav(out / "data.wav", data, rate)
    save_wav(out / "sample.wav", waves[0], rate)
    save_wav(out / "sample_top_p.wav", waves[1], rate)
    span = min(len(data), args.generate)
    plot(
        [data[:span], waves[0][:span], waves[1][:span]],
        ["test clip (mu-law decoded)", "WaveNet sample", "WaveNet sample, top-p 0.9"],
        rate,
        out / "waveforms.png",
    )
    results = {
        "test_nll_nats_per_sample": nll,
        "test_bits_per_sample": nll / math.log(2),
        "test_nll_stderr": (ell.std() / math.sqrt(len(ell))).item(),
        "reference_uniform_bits_per_sample": 8.0,
        "receptive_field": model.receptive_field,
        "train_seconds": seconds,
        "generate_seconds_cached": cached_seconds,
        "generated_samples": args.generate,
        "naive_check": {
            "length": args.naive_length,
            "identical": bool(torch.equal(a, b)),
            "cached_seconds": t1 - t0,
            "naive_seconds": t2 - t1,
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "args": vars(args),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    check = results["naive_check"]
    print(
        f"WaveNet: test NLL {nll:.3f} nats/sample ({nll / math.log(2):.3f} bits; uniform 8), "
        f"{seconds:.0f} s of training; {args.generate} samples in {cached_seconds:.1f} s "
        f"(cached); length {args.naive_length}: cached {check['cached_seconds']:.2f} s, naive "
        f"{check['naive_seconds']:.2f} s, identical {check['identical']}; wrote {out}"
    )
    return results


if __name__ == "__main__":
    main()
