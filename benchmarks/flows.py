r"""Same-size MAF and NSF in probgen, zuko and nflows on 2-D toy densities.

Every model sees the same batches (fresh samples each step, drawn once from a seeded
generator and shared), starts from the same seed and is stepped in turn inside one loop,
so that the timings of all libraries meet the same machine load. Run by hand:

    python benchmarks/flows.py --steps 3000 --threads 2 --out benchmarks/results/flows.json

Metrics per (library, flow, density):

- test NLL on fresh samples (nats), with its standard error;
- the gap to the entropy, estimated on the same samples as the mean of
  :math:`\log p(x) - \log q(x)` (a KL estimate; its standard error is paired, hence small);
- the median milliseconds per training step (zero_grad, log_prob, backward, Adam step),
  warm-up steps excluded;
- log_prob and sample throughput (samples/s, no grad) at one large batch.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from probgen.flows import NSF

# Toy densities ##########################################################################


class _Toy:
    r"""A 2-D toy density with an exact ``log_prob``; the fallback when ``probgen.data``
    has none."""

    def sample(self, sample_shape=()) -> Tensor:
        n = int(torch.Size(sample_shape).numel())
        return self._sample(n).reshape(*sample_shape, 2)


class EightGaussians(_Toy):
    r"""8 isotropic Gaussians (std 0.5) at angles :math:`2\pi k / 8` on a circle of radius 4."""

    def __init__(self, radius: float = 4.0, std: float = 0.5) -> None:
        angles = torch.arange(8) * (2 * math.pi / 8)
        self.centers = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        self.std = std

    def _sample(self, n: int) -> Tensor:
        k = torch.randint(8, (n,))
        return self.centers[k] + self.std * torch.randn(n, 2)

    def log_prob(self, x: Tensor) -> Tensor:
        d2 = ((x[..., None, :] - self.centers.to(x)) ** 2).sum(-1)
        log_n = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return log_n.logsumexp(-1) - math.log(8)

    def entropy(self) -> Tensor:
        # Quadrature on a fine grid (the mixture entropy has no closed form).
        g = torch.linspace(-7.0, 7.0, 2801, dtype=torch.float64)
        xy = torch.stack(torch.meshgrid(g, g, indexing="ij"), dim=-1).reshape(-1, 2)
        log_p = self.log_prob(xy)
        return -(log_p.exp() * log_p).sum() * (g[1] - g[0]) ** 2


class Checkerboard(_Toy):
    r"""Uniform on the 8 black cells of a 4x4 board over :math:`[-4, 4]^2`."""

    def _sample(self, n: int) -> Tensor:
        i = torch.randint(4, (n,))
        j = 2 * torch.randint(2, (n,)) + (i % 2)  # (i + j) even: a black cell
        low = 2 * torch.stack([i, j], dim=-1).to(torch.get_default_dtype()) - 4
        # low + 2u can round up onto the next cell's edge: keep it inside its own cell.
        return torch.minimum(low + 2 * torch.rand(n, 2), torch.nextafter(low + 2, low))

    def log_prob(self, x: Tensor) -> Tensor:
        ij = torch.floor(x / 2) + 2  # x / 2 is exact, x + 4 could round onto an edge
        inside = ((ij >= 0) & (ij <= 3)).all(-1) & ((ij.sum(-1) % 2) == 0)
        return torch.where(inside, -math.log(32.0), -math.inf)

    def entropy(self) -> Tensor:
        return torch.tensor(math.log(32.0))


class Rings(_Toy):
    r"""Three equally weighted rings of radii 1, 2, 3 with radial std 0.1, uniform angle."""

    def __init__(self, radii=(1.0, 2.0, 3.0), std: float = 0.1) -> None:
        self.radii, self.std = torch.tensor(radii), std

    def _sample(self, n: int) -> Tensor:
        r = self.radii[torch.randint(len(self.radii), (n,))] + self.std * torch.randn(n)
        theta = 2 * math.pi * torch.rand(n)
        # A negative radius (probability ~1e-23) lands opposite: log_prob counts both.
        return r[:, None] * torch.stack([theta.cos(), theta.sin()], dim=-1)

    def _log_p_radius(self, r: Tensor) -> Tensor:
        radii = self.radii.to(r)
        z = torch.stack([(r[..., None] - radii) / self.std, (r[..., None] + radii) / self.std])
        log_n = -0.5 * z**2 - math.log(self.std * math.sqrt(2 * math.pi))
        return log_n.logsumexp(0).logsumexp(-1) - math.log(len(self.radii))

    def log_prob(self, x: Tensor) -> Tensor:
        r = x.norm(dim=-1)
        return self._log_p_radius(r) - torch.log(2 * math.pi * r)

    def entropy(self) -> Tensor:
        # In polar coordinates H(x) = H(r) + log(2 pi) + E[log r], by 1-D quadrature.
        r = torch.linspace(1e-4, 5.0, 200001, dtype=torch.float64)
        log_p = self._log_p_radius(r)
        p, dr = log_p.exp(), r[1] - r[0]
        return (-(p * log_p).sum() + (p * r.log()).sum()) * dr + math.log(2 * math.pi)


FALLBACK = {"8gaussians": EightGaussians, "checkerboard": Checkerboard, "rings": Rings}


def toy(name: str):
    r"""``probgen.data.toy(name)`` when it exists, the definitions above otherwise."""
    try:
        from probgen.data import toy as pg_toy

        return pg_toy(name), "probgen.data.toy"
    except (ImportError, AttributeError):
        return FALLBACK[name](), "benchmarks/flows.py"


# Models #################################################################################


@dataclass
class Model:
    r"""A trained density behind a common interface."""

    library: str
    flow: str
    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]


class _ContextMLP(nn.Sequential):
    # nflows calls its coupling net as net(x, context).
    def __init__(self, i: int, o: int, hidden: tuple[int, ...]) -> None:
        sizes = [i, *hidden, o]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(*layers[:-1])

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().forward(x)


def build(library: str, flow: str, cfg: argparse.Namespace) -> Model:
    d, n, hidden, bins, bound = 2, cfg.transforms, tuple(cfg.hidden), cfg.bins, cfg.bound
    if library == "probgen":
        import probgen as pg

        if flow == "MAF":
            m = pg.flows.MAF(d, transforms=n, hidden=hidden)
        elif flow == "NSF":
            m = pg.flows.NSF(d, transforms=n, hidden=hidden, bins=bins, bound=bound)
        elif flow == "NSF-coupling":
            m = pg.flows.NSF(d, transforms=n, hidden=hidden, bins=bins, bound=bound, coupling=True)
        else:
            raise KeyError(flow)
        return Model(library, flow, m, lambda x: m().log_prob(x), lambda k: m().sample((k,)))
    if library == "zuko":
        import zuko

        if flow == "MAF":
            m = zuko.flows.MAF(d, transforms=n, hidden_features=hidden)
        elif flow == "NSF":
            # zuko's own spline bound (5) and slope: a library default.
            m = zuko.flows.NSF(d, transforms=n, hidden_features=hidden, bins=bins)
        else:
            raise KeyError(flow)
        return Model(library, flow, m, lambda x: m().log_prob(x), lambda k: m().sample((k,)))
    if library == "nflows":
        from nflows.distributions import StandardNormal
        from nflows.flows import Flow
        from nflows.transforms import (
            CompositeTransform,
            MaskedAffineAutoregressiveTransform,
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
            PiecewiseRationalQuadraticCouplingTransform,
            ReversePermutation,
        )

        if len(hidden) < 1 or len(set(hidden)) != 1:
            raise ValueError("nflows' MADE takes one hidden width")
        # A non-residual MADE with num_blocks = len(hidden) - 1 has len(hidden) hidden layers.
        made = dict(
            hidden_features=hidden[0], num_blocks=len(hidden) - 1, use_residual_blocks=False
        )
        layers: list[nn.Module] = []
        for i in range(n):
            if flow == "MAF":
                layers += [MaskedAffineAutoregressiveTransform(features=d, **made)]
            elif flow == "NSF":
                layers += [
                    MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                        features=d, num_bins=bins, tails="linear", tail_bound=bound, **made
                    )
                ]
            elif flow == "NSF-coupling":
                mask = torch.arange(d) % 2 == (i % 2)  # alternate the transformed half
                layers += [
                    PiecewiseRationalQuadraticCouplingTransform(
                        mask.int(),
                        lambda a, b: _ContextMLP(a, b, hidden),
                        num_bins=bins,
                        tails="linear",
                        tail_bound=bound,
                    )
                ]
            else:
                raise KeyError(flow)
            if flow != "NSF-coupling" and i < n - 1:
                layers += [ReversePermutation(features=d)]
        m = Flow(CompositeTransform(layers), StandardNormal([d]))
        return Model(library, flow, m, m.log_prob, m.sample)
    raise KeyError(library)


ALL = [
    ("probgen", "MAF"),
    ("zuko", "MAF"),
    ("nflows", "MAF"),
    ("probgen", "NSF"),
    ("zuko", "NSF"),
    ("nflows", "NSF"),
    ("probgen", "NSF-coupling"),
    ("nflows", "NSF-coupling"),
]


# Measurements ###########################################################################


def train(
    models: list[Model], density, cfg: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    r"""Trains every model on the same batches, one step each in turn; returns the wall-clock
    and the process CPU times of every step."""
    torch.manual_seed(cfg.seed + 1)
    batches = density.sample((cfg.steps * cfg.batch,)).reshape(cfg.steps, cfg.batch, 2)
    batches = batches.to(torch.get_default_dtype())
    opts = [torch.optim.Adam(m.module.parameters(), lr=cfg.lr) for m in models]
    times: dict[str, list[float]] = {key(m): [] for m in models}
    cpu: dict[str, list[float]] = {key(m): [] for m in models}
    losses: dict[str, float] = {}
    t_print = time.perf_counter()
    for step in range(cfg.steps):
        x = batches[step]
        for m, opt in zip(models, opts, strict=True):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad()
            loss = -m.log_prob(x).mean()
            loss.backward()
            opt.step()
            times[key(m)].append(time.perf_counter() - t0)
            cpu[key(m)].append(time.process_time() - c0)
            losses[key(m)] = loss.item()
        if time.perf_counter() - t_print > 30 or step == cfg.steps - 1:
            t_print = time.perf_counter()
            status = ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
            print(f"  step {step + 1}/{cfg.steps}: {status}", file=sys.stderr, flush=True)
    return times, cpu


@torch.no_grad()
def evaluate(m: Model, x: Tensor, log_p: Tensor, chunk: int = 65536) -> dict[str, float]:
    log_q = torch.cat([m.log_prob(x[i : i + chunk]) for i in range(0, len(x), chunk)])
    n = len(x)
    nll = -log_q.double()
    # log p - log q; a test point of zero density (an edge of the checkerboard) is left out.
    ok = torch.isfinite(log_p)
    diff = log_p.double()[ok] + nll[ok]
    return {
        "nll": nll.mean().item(),
        "nll_se": (nll.std() / math.sqrt(n)).item(),
        "gap": diff.mean().item(),
        "gap_se": (diff.std() / math.sqrt(len(diff))).item(),
        "nonfinite": int((~torch.isfinite(log_q)).sum()),
        "zero_density_test_points": int((~ok).sum()),
    }


@torch.no_grad()
def throughput(models: list[Model], x: Tensor, reps: int) -> dict[str, dict[str, float]]:
    r"""Samples/s of log_prob and sample at batch ``len(x)``, models interleaved per rep."""
    n = len(x)
    t_lp: dict[str, list[float]] = {key(m): [] for m in models}
    t_s: dict[str, list[float]] = {key(m): [] for m in models}
    for rep in range(reps + 1):  # the first rep is a warm-up
        for m in models:
            xc = x.clone()  # a fresh tensor: no library may answer from a cache
            t0 = time.perf_counter()
            m.log_prob(xc)
            t1 = time.perf_counter()
            m.sample(n)
            t2 = time.perf_counter()
            if rep > 0:
                t_lp[key(m)].append(t1 - t0)
                t_s[key(m)].append(t2 - t1)
    return {
        k: {
            "log_prob_per_s": n / statistics.median(t_lp[k]),
            "sample_per_s": n / statistics.median(t_s[k]),
        }
        for k in t_lp
    }


def key(m: Model) -> str:
    return f"{m.library}/{m.flow}"


# Main ###################################################################################


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--densities", default="8gaussians,checkerboard,rings")
    p.add_argument("--flows", default="MAF,NSF,NSF-coupling", help="any of MAF,NSF,NSF-coupling")
    p.add_argument("--libraries", default="probgen,zuko,nflows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--transforms", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--bins", type=int, default=8)
    p.add_argument(
        "--bound",
        type=float,
        default=inspect.signature(NSF).parameters["bound"].default,
        help="spline bound of probgen and nflows (default: probgen's NSF default)",
    )
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds to repeat the whole run over (overrides --seed); "
        "a summary table gives each model's mean gap and its spread across seeds",
    )
    p.add_argument("--test", type=int, default=100_000, help="test samples for the NLL")
    p.add_argument("--big-batch", type=int, default=65536, help="batch of the throughputs")
    p.add_argument("--reps", type=int, default=5, help="repetitions of the throughputs")
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the median")
    p.add_argument("--out", default=None, help="JSON path; a .md table is written beside it")
    p.add_argument(
        "--no-validation",
        action="store_true",
        help="turn off torch's and Pyro's argument validation in every library",
    )
    cfg = p.parse_args(argv)
    torch.set_num_threads(cfg.threads)
    if cfg.no_validation:
        import pyro

        torch.distributions.Distribution.set_default_validate_args(False)
        pyro.enable_validation(False)
    warmup = cfg.warmup if cfg.warmup is not None else max(10, cfg.steps // 20)
    flows = cfg.flows.split(",")
    libraries = cfg.libraries.split(",")
    chosen = [(lib, f) for lib, f in ALL if lib in libraries and f in flows]

    import nflows
    import zuko

    import probgen

    meta = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "config": {k: v for k, v in vars(cfg).items() if k != "out"} | {"warmup": warmup},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "probgen": probgen.__version__,
            "zuko": zuko.__version__,
            "nflows": getattr(nflows, "__version__", "?"),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_start": os.getloadavg(),
        },
    }
    results = []
    seeds = [int(v) for v in cfg.seeds.split(",")] if cfg.seeds else [cfg.seed]
    for seed, name in itertools.product(seeds, cfg.densities.split(",")):
        cfg.seed = seed  # train() and the model builders read it
        density, source = toy(name)
        entropy = float(density.entropy())
        print(
            f"{name} (from {source}), entropy {entropy:.4f}, seed {cfg.seed}",
            file=sys.stderr,
            flush=True,
        )
        models = []
        for lib, f in chosen:
            torch.manual_seed(cfg.seed)
            models.append(build(lib, f, cfg))
        t0 = time.perf_counter()
        times, cpu = train(models, density, cfg)
        wall = time.perf_counter() - t0
        torch.manual_seed(cfg.seed + 2)
        x_test = density.sample((cfg.test,)).to(torch.get_default_dtype())
        log_p = density.log_prob(x_test)
        torch.manual_seed(cfg.seed + 3)
        x_big = density.sample((cfg.big_batch,)).to(torch.get_default_dtype())
        speeds = throughput(models, x_big, cfg.reps)
        for m in models:
            k = key(m)
            steps = times[k][warmup:] or times[k]
            cpu_steps = cpu[k][warmup:] or cpu[k]
            row = {
                "density": name,
                "seed": cfg.seed,
                "library": m.library,
                "flow": m.flow,
                "entropy": entropy,
                "params": sum(q.numel() for q in m.module.parameters()),
                **evaluate(m, x_test, log_p),
                "ms_per_step": 1e3 * statistics.median(steps),
                "ms_per_step_iqr": 1e3 * _iqr(steps),
                "cpu_ms_per_step": 1e3 * statistics.median(cpu_steps),
                **speeds[k],
            }
            results.append(row)
            print("  " + _line(row), file=sys.stderr, flush=True)
        print(f"  {name}: {wall:.0f} s of training", file=sys.stderr, flush=True)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    report = {**meta, "results": results}
    table = markdown(results)
    if len(seeds) > 1:
        table += "\n\nAcross seeds " + ", ".join(map(str, seeds)) + ":\n\n" + summary(results)
    print(table)
    if cfg.out:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
        with open(cfg.out, "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.splitext(cfg.out)[0] + ".md", "w") as f:
            f.write(f"`{meta['command']}`\n\n{table}\n")
    return report


def _iqr(v: list[float]) -> float:
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [0, 0, 0]
    return q[2] - q[0]


def _line(r: dict) -> str:
    return (
        f"{r['library']:8s} {r['flow']:13s} nll {r['nll']:.4f}±{r['nll_se']:.4f} "
        f"gap {r['gap']:.4f}±{r['gap_se']:.4f} {r['ms_per_step']:.2f} ms/step "
        f"(CPU {r['cpu_ms_per_step']:.2f}) "
        f"log_prob {r['log_prob_per_s'] / 1e6:.2f} M/s sample {r['sample_per_s'] / 1e6:.2f} M/s"
    )


def summary(results: list[dict]) -> str:
    r"""Each model's gap across seeds (mean, standard deviation, the seeds it was best on)
    and its median time per step over the seeds' medians."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["density"], r["flow"], r["library"]), []).append(r)
    best: dict[tuple[str, str, int], float] = {}
    for r in results:
        k = (r["density"], r["flow"], r["seed"])
        best[k] = min(best.get(k, math.inf), r["gap"])
    head = (
        "| density | flow | library | seeds | gap mean ± sd | best of its flow on | "
        "ms/step (median) | log_prob /s (median) |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = []
    for (density, flow, library), rs in groups.items():
        gaps = [r["gap"] for r in rs]
        sd = statistics.stdev(gaps) if len(gaps) > 1 else float("nan")
        wins = sum(r["gap"] == best[(density, flow, r["seed"])] for r in rs)
        rows.append(
            f"| {density} | {flow} | {library} | {len(rs)} | {statistics.mean(gaps):.4f} ± "
            f"{sd:.4f} | {wins}/{len(rs)} | "
            f"{statistics.median(r['ms_per_step'] for r in rs):.2f} | "
            f"{statistics.median(r['log_prob_per_s'] for r in rs) / 1e6:.2f} M |"
        )
    return "\n".join([head, *rows])


def markdown(results: list[dict]) -> str:
    head = (
        "| density | library | flow | params | test NLL ± se | gap to entropy ± se | "
        "ms/step (IQR) | CPU ms/step | log_prob /s | sample /s |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = [
        f"| {r['density']} (H={r['entropy']:.4f}) | {r['library']} | {r['flow']} | {r['params']} "
        f"| {r['nll']:.4f} ± {r['nll_se']:.4f} | {r['gap']:.4f} ± {r['gap_se']:.4f} "
        f"| {r['ms_per_step']:.2f} ({r['ms_per_step_iqr']:.2f}) | {r['cpu_ms_per_step']:.2f} "
        f"| {r['log_prob_per_s'] / 1e6:.2f} M | {r['sample_per_s'] / 1e6:.2f} M |"
        for r in results
    ]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    main()
