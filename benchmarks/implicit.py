r"""Implicit models on 8gaussians: the adversarial losses and a GMMN measured side by side.

Run by hand (results go in ``benchmarks/RESULTS.md``):

    python benchmarks/implicit.py --seeds 0,1,2 --out benchmarks/results/implicit.json

Every model of ``recipes/gan_2d.py`` (minimax GAN, non-saturating GAN, WGAN-GP with 5
critic steps, hinge loss with a spectrally normalised critic, and the GMMN) is built as the
recipe builds it, from the same seed, and trained on fresh samples of
``probgen.data.toy("8gaussians")``. The models of one seed are stepped in turn, in chunks
of ``--chunk`` generator steps, so that all of them meet the same machine load. Per model
and seed:

- ms per generator step: wall-clock (and process CPU) time of :func:`probgen.fit` over all
  steps, divided by the steps; a GAN's step includes its critic steps;
- modes hit, high-quality share and the KL divergence from the high-quality samples' spread
  over the modes to the uniform one (:func:`probgen.metrics.mode_coverage`, 2,500
  samples; 0 when balanced, log 8 = 2.08 on one mode);
- MMD² to held-out data: the unbiased :func:`probgen.metrics.mmd2` between 2,000 samples
  and 2,000 held-out points, with a mixture of RBF kernels whose bandwidths are fixed once
  from the held-out data (so every model is measured with the same kernel). The same
  statistic between fresh data and the held-out points is the reference row (0 in
  expectation); a uniform distribution on the circle through the means (no modes at all)
  is a second reference: what a generator that has not separated the modes can score.

The JSON holds every row and the configuration; a markdown table (mean and range over
seeds) is written beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import probgen as pg
from probgen.data import toy
from probgen.metrics import MixtureRBF, eight_gaussians_modes, mmd2, mode_coverage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipes"))
from gan_2d import MODELS  # noqa: E402

NAMES = {
    "gan": "minimax GAN",
    "nsgan": "non-saturating GAN",
    "wgan_gp": "WGAN-GP (5 critic steps)",
    "hinge_sn": "hinge + spectral norm",
    "gmmn": "GMMN (MMD, RBF mixture)",
}


@torch.no_grad()
def _measure(
    x: torch.Tensor, test: torch.Tensor, kernel: MixtureRBF, radius: float, scale: float
) -> dict[str, float]:
    means, std = eight_gaussians_modes(radius, scale)
    mc = mode_coverage(x[:2500], means, std)
    return {
        "modes": mc.modes,
        "high_quality": mc.high_quality,
        "kl_modes": mc.kl,
        "mmd2": float(mmd2(x[:2000].double(), test, kernel)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = toy("8gaussians", radius=args.radius, scale=args.scale)
    torch.manual_seed(12345)
    test = data.sample((2000,)).double()
    kernel = MixtureRBF().fit(test)
    rows: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(54321)
        ref = _measure(data.sample((2500,)), test, kernel, args.radius, args.scale)
    rows.append({"model": "data (reference)", "seed": None, **ref})
    print(json.dumps(rows[-1]), flush=True)
    # A distribution with no modes at all, uniform on the circle through the means: what
    # the mode statistics and the MMD give a generator that has not separated the modes.
    g = torch.Generator().manual_seed(54321)
    angle = 2 * torch.pi * torch.rand(2500, generator=g, dtype=torch.float64)
    ring = args.radius * torch.stack([angle.cos(), angle.sin()], -1)
    rows.append({"model": "circle through the means (no modes)", "seed": None,
                 **_measure(ring, test, kernel, args.radius, args.scale)})  # fmt: skip
    print(json.dumps(rows[-1]), flush=True)
    for seed in args.seeds:
        players = {}
        for name in args.models:
            torch.manual_seed(seed)
            players[name] = MODELS[name](args)
        wall = dict.fromkeys(args.models, 0.0)
        cpu = dict.fromkeys(args.models, 0.0)
        done = 0
        while done < args.steps:
            chunk = min(args.chunk, args.steps - done)
            for name, (model, kwargs) in players.items():
                tic, c0 = time.perf_counter(), time.process_time()
                pg.fit(model, data.sample, steps=chunk, batch_size=args.batch_size,
                       seed=seed * 1_000_003 + done, progress=False, **kwargs)  # fmt: skip
                wall[name] += time.perf_counter() - tic
                cpu[name] += time.process_time() - c0
            done += chunk
        for name, (model, _) in players.items():
            with torch.no_grad():
                x = model().sample((2500,))
            row = {
                "model": name,
                "seed": seed,
                "ms_per_step": 1e3 * wall[name] / args.steps,
                "cpu_ms_per_step": 1e3 * cpu[name] / args.steps,
                **_measure(x, test, kernel, args.radius, args.scale),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"rows": rows}


def _span(rs: list[dict[str, Any]], key: str, scale: float = 1.0, fmt: str = ".3f") -> str:
    # The mean over seeds, and the range when there are several.
    v = [scale * r[key] for r in rs]
    mean = f"{statistics.fmean(v):{fmt}}"
    return f"{mean} ({min(v):{fmt}} to {max(v):{fmt}})" if len(v) > 1 else mean


def markdown(rows: list[dict[str, Any]], steps: int) -> str:
    refs = [r for r in rows if r["seed"] is None]
    lines = [
        f"| model ({steps} generator steps) | seeds | ms/step | CPU ms/step | modes hit "
        "(per seed) | high-quality share | KL(modes ‖ uniform) | MMD² to held-out (x1e-3) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ] + [
        f"| {ref['model']} | | | | {ref['modes']} | {ref['high_quality']:.3f} | "
        f"{ref['kl_modes']:.3f} | {1e3 * ref['mmd2']:.2f} |"
        for ref in refs
    ]
    trained = [r for r in rows if r["seed"] is not None]
    for name in dict.fromkeys(r["model"] for r in trained):
        rs = [r for r in trained if r["model"] == name]
        lines.append(
            f"| {NAMES.get(name, name)} | {len(rs)} | {_span(rs, 'ms_per_step', fmt='.1f')} | "
            f"{_span(rs, 'cpu_ms_per_step', fmt='.1f')} | "
            f"{', '.join(str(r['modes']) for r in rs)} | {_span(rs, 'high_quality')} | "
            f"{_span(rs, 'kl_modes')} | {_span(rs, 'mmd2', 1e3, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated among {', '.join(MODELS)}"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=600, help="generator steps")
    parser.add_argument("--chunk", type=int, default=100, help="steps per turn of a model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--radius", type=float, default=4.0, help="8gaussians' radius")
    parser.add_argument("--scale", type=float, default=0.5, help="8gaussians' standard deviation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="a JSON file; .md beside it")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODELS)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    tic = time.perf_counter()
    result = run(args)
    table = markdown(result["rows"], args.steps)
    print(table)
    result["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["machine"] = {
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "seconds": time.perf_counter() - tic,
        "torch": torch.__version__,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
