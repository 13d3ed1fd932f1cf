r"""Energy-based models and their samplers: kernel throughput and AIS accuracy.

Run by hand (results go in ``benchmarks/RESULTS.md``):

    python benchmarks/energy.py kernels --threads 1   # ESS/s per kernel on the banana,
                                                      # and MALA's ESS/s against the chains
    python benchmarks/energy.py ais --threads 1       # AIS log Z against exact values

``kernels``: Haario's banana (``recipes/mcmc_kernels.py``); each kernel adapted by dual
averaging from exact samples, then 1000 kept transitions; ESS is Geyer's, pooled over
chains, the worse coordinate. ``ais``: repeated AIS runs on (a) anisotropic Gaussian
energies in 2, 10 and 50 dimensions (exact :math:`\log Z` in closed form; HMC transitions
from a standard normal) and (b) an RBM with 64 visible and 16 hidden units trained on
binarised digits (exact :math:`\log Z` by enumerating :math:`2^{16}` hidden states; block
Gibbs from the base-rate RBM). For each setting: the mean error, the root-mean-square
error over repeats, and the mean standard error AIS reported (calibrated when the two
agree).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

import probgen as pg
from probgen.data import digits
from probgen.samplers import HMC, ReplayBuffer, dual_averaging, run_chain

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipes"))
from mcmc_kernels import KERNELS, Banana  # noqa: E402


def kernels(args: argparse.Namespace) -> dict:
    target = Banana(0.03)
    rows = []
    for name in ["rwm", "mala", "hmc", "hmc-fixed"]:
        for chains in [100, 1000, 10_000] if name == "mala" else [1000]:
            g = torch.Generator().manual_seed(0)
            torch.manual_seed(0)
            kernel, state = dual_averaging(
                KERNELS[name](), target.sample(chains), target.log_prob, 300, generator=g
            )
            tic = time.perf_counter()
            chain = run_chain(kernel, state, target.log_prob, args.samples, generator=g)
            seconds = time.perf_counter() - tic
            ess = pg.samplers.effective_sample_size(chain.samples).min().item()
            row = {
                "kernel": name, "chains": chains, "step_size": kernel.step_size,
                "accept": chain.accept_prob.mean().item(), "ess": ess, "seconds": seconds,
                "ess_per_second": ess / seconds,
                "gradients_per_transition": {"rwm": 0, "mala": 1}.get(name, 10),
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"kernels": rows}


def _gaussian_ais(dims: int, betas: int, chains: int, seed: int) -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    scales = torch.logspace(-0.5, 0.5, dims)  # standard deviations 0.32 to 3.2
    mean = torch.linspace(-1, 1, dims)

    def log_f(x: torch.Tensor) -> torch.Tensor:
        return -(((x - mean) / scales) ** 2).sum(-1) / 2

    def log_p0(x: torch.Tensor) -> torch.Tensor:
        return -(x**2).sum(-1) / 2 - dims * math.log(2 * math.pi) / 2

    exact = dims * math.log(2 * math.pi) / 2 + scales.log().sum().item()
    path = pg.samplers.geometric_path(log_p0, log_f)
    kernel = HMC(0.25, steps=5, jitter=0.5)
    est = pg.samplers.ais(path, torch.randn(chains, dims), kernel, betas, generator=g)
    return est.log_z.item() - exact, est.stderr.item(), est.ess.item()


def _trained_rbm(hidden: int, steps: int) -> pg.energy.RBM:
    torch.manual_seed(0)
    train = digits("train", binarize=True)[0].flatten(1)
    model = pg.energy.RBM(64, hidden, steps=1)
    marginals = train.mean(0).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        model.visible_bias.copy_(torch.logit(marginals))
    objective = partial(pg.objectives.persistent_contrastive_divergence,
                        buffer=ReplayBuffer(500, reinit=0.0))  # fmt: skip
    pg.fit(model, train, objective=objective, steps=steps, batch_size=100, lr=3e-3,
           progress=False, seed=0)  # fmt: skip
    model.base_bias = torch.logit(marginals)
    return model


def ais(args: argparse.Namespace) -> dict:
    rows = []

    def record(setting: dict, runs: list[tuple[float, float, float, float]]) -> None:
        errors = [r[0] for r in runs]
        row = setting | {
            "repeats": len(runs),
            "mean_error": statistics.fmean(errors),
            "rms_error": math.sqrt(statistics.fmean(e * e for e in errors)),
            "mean_reported_stderr": statistics.fmean(r[1] for r in runs),
            "mean_ess": statistics.fmean(r[2] for r in runs),
            "seconds_per_run": statistics.fmean(r[3] for r in runs),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    for dims in [2, 10, 50]:
        for betas in [10, 100, 1000]:
            runs = []
            for seed in range(args.repeats):
                tic = time.perf_counter()
                runs.append((*_gaussian_ais(dims, betas, 1000, seed), time.perf_counter() - tic))
            record({"target": f"gaussian-{dims}d", "betas": betas, "chains": 1000}, runs)

    model = _trained_rbm(16, args.rbm_steps)
    d = model()
    exact = d.log_normalizer("enumeration").value.item()
    for betas in [100, 1000, 10_000]:
        runs = []
        for seed in range(args.repeats):
            g = torch.Generator().manual_seed(seed)
            tic = time.perf_counter()
            est = d.log_normalizer("ais", chains=500, betas=betas, base_bias=model.base_bias,
                                   generator=g)  # fmt: skip
            seconds = time.perf_counter() - tic
            runs.append((est.value.item() - exact, est.stderr.item(), est.ess.item(), seconds))
        record({"target": "rbm-64x16-digits", "betas": betas, "chains": 500, "log_z": exact}, runs)
    return {"ais": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["kernels", "ais"])
    parser.add_argument("--samples", type=int, default=1000, help="kept transitions")
    parser.add_argument("--repeats", type=int, default=5, help="AIS runs per setting")
    parser.add_argument("--rbm-steps", type=int, default=2000, help="the RBM's PCD steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="a JSON file for the rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = kernels(args) if args.what == "kernels" else ais(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
