r"""One MAF training run on a toy density: probgen's MAF, variants of it, or a peer's.

The seed sweeps of ``benchmarks/RESULTS.md`` ("MAF on rings across seeds") run this once
per (variant, seed), one process each, so that runs are independent and can go in
parallel. Same configuration as ``benchmarks/flows.py``: 5 transforms, 2 hidden layers of
64, batch 512 of fresh samples, Adam 1e-3; the gap to the entropy is measured on 50,000
test points. Prints one JSON line.

Variants: ``probgen`` (the library's MAF), ``sigmoid`` and ``softplus`` (its MADE with
nflows' scale parameterisations, ``sigmoid(s + 2) + 1e-3`` and ``softplus(s) + 1e-3``),
``zeroinit`` (the MADE's last layer starts at zero), ``onerelu`` (no nonlinearity after
the second hidden layer), ``nflows`` (nflows' MAF, one masked block: two hidden layers),
``nflows2`` (two masked blocks), ``zuko``.

    python benchmarks/maf_variants.py probgen rings 0
    for s in $(seq 10 19); do python benchmarks/maf_variants.py nflows rings $s; done
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import Tensor

import probgen as pg
from probgen.data import TOYS, toy
from probgen.transforms import MonotonicAffineTransform

VARIANTS = ("probgen", "sigmoid", "softplus", "zeroinit", "onerelu", "nflows", "nflows2", "zuko")


class _SigmoidAffine(MonotonicAffineTransform):
    # nflows' older choice: scale = sigmoid(s + 2) + 1e-3.
    def __init__(self, shift: Tensor, raw: Tensor) -> None:
        torch.distributions.Transform.__init__(self)
        self.shift = shift
        self.log_scale = torch.log(torch.sigmoid(raw + 2.0) + 1e-3)


class _SoftplusAffine(MonotonicAffineTransform):
    # nflows 0.14: scale = softplus(s) + 1e-3.
    def __init__(self, shift: Tensor, raw: Tensor) -> None:
        torch.distributions.Transform.__init__(self)
        self.shift = shift
        self.log_scale = torch.log(F.softplus(raw) + 1e-3)


def build(variant: str):
    r"""Returns the module and its ``log_prob`` function."""
    if variant in ("nflows", "nflows2"):
        from nflows.distributions import StandardNormal
        from nflows.flows import Flow
        from nflows.transforms import (
            CompositeTransform,
            MaskedAffineAutoregressiveTransform,
            ReversePermutation,
        )

        blocks = 1 if variant == "nflows" else 2
        layers = []
        for i in range(5):
            layers.append(
                MaskedAffineAutoregressiveTransform(
                    features=2, hidden_features=64, num_blocks=blocks, use_residual_blocks=False
                )
            )
            if i < 4:
                layers.append(ReversePermutation(features=2))
        m = Flow(CompositeTransform(layers), StandardNormal([2]))
        return m, m.log_prob
    if variant == "zuko":
        import zuko

        m = zuko.flows.MAF(2, transforms=5, hidden_features=(64, 64))
        return m, lambda x: m().log_prob(x)
    univariate = {"sigmoid": _SigmoidAffine, "softplus": _SoftplusAffine}
    kw = {"univariate": univariate[variant]} if variant in univariate else {}
    m = pg.flows.MAF(2, transforms=5, hidden=(64, 64), **kw)
    for t in m.transforms:
        if variant == "zeroinit":
            torch.nn.init.zeros_(t.hyper.net[-1].weight)
            torch.nn.init.zeros_(t.hyper.net[-1].bias)
        if variant == "onerelu":
            del t.hyper.net[3]  # the activation after the second hidden layer
    return m, lambda x: m().log_prob(x)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("density", choices=list(TOYS))
    p.add_argument("seed", type=int)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    m, log_prob = build(args.variant)
    density = toy(args.density)
    torch.manual_seed(args.seed + 1)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    t0 = time.time()
    for _ in range(args.steps):
        x = density.sample((512,)).float()
        opt.zero_grad()
        (-log_prob(x).mean()).backward()
        opt.step()
    torch.manual_seed(1234)
    x_test = density.sample((50_000,)).float()
    with torch.no_grad():
        log_q = log_prob(x_test).double()
    log_p = density.log_prob(x_test).double()
    ok = torch.isfinite(log_p)  # a test point of zero density is left out
    row = {
        "variant": args.variant,
        "density": args.density,
        "seed": args.seed,
        "gap": (log_p[ok] - log_q[ok]).mean().item(),
        "seconds": time.time() - t0,
    }
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
