r"""Trains tiny models with probgen.fit in several processes; run by tests/test_ddp.py as

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/_ddp_script.py OUT

Each process saves what it ends with to ``OUT/rank{r}.pt``; the test compares them.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

import probgen as pg
from probgen.objectives import nll, unwrap


def sampler(n: int) -> torch.Tensor:
    return torch.randn(n, 2) * 0.5 + 1.0


def flow(seed: int) -> nn.Module:
    # A different initialisation in each process: DDP must start every one from rank 0's.
    torch.manual_seed(seed + 100 * int(os.environ["RANK"]))
    return pg.flows.MAF(2, transforms=2, hidden=(16,))


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3))
        self.b = nn.Parameter(torch.tensor(-0.2))


def main(out: str) -> None:
    rank = int(os.environ["RANK"])
    kwargs = dict(batch_size=64, lr=1e-2, seed=0, progress=False)
    results = {}

    # 1. Fresh samples in each process, 30 steps; DDP averages the gradients.
    first = []

    def recording(n: int) -> torch.Tensor:
        x = sampler(n)
        if not first:
            first.append(x)
        return x

    model = flow(0)
    history = pg.fit(model, recording, steps=30, **kwargs)
    results["sampler"] = {"params": params(model), "loss": history.loss, "first": first[0]}

    # 2. The same run cut at 15 steps and resumed from the checkpoint by a new model.
    path = os.path.join(out, "ckpt.pt")
    pg.fit(flow(0), sampler, steps=15, checkpoint=path, checkpoint_every=5, **kwargs)
    resumed = flow(2)
    history = pg.fit(resumed, sampler, steps=30, checkpoint=path, resume=True, **kwargs)
    results["resumed"] = {"params": params(resumed), "loss": history.loss}

    # 3. A tensor, sharded: one epoch of 200 rows in batches of 25 is 4 steps.
    x = torch.arange(400.0).reshape(200, 2)
    seen = []

    def record(model: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        seen.append(x)
        return nll(model, x / 400, c)

    pg.fit(flow(3), x, objective=record, steps=4, batch_size=25, seed=0, progress=False)
    results["shard"] = torch.cat(seen)

    # 4. An objective that reaches the model only through unwrap: fit averages by hand.
    model = flow(4)

    def direct(model: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return -unwrap(model)().log_prob(x).mean()

    pg.fit(model, sampler, objective=direct, steps=10, **kwargs)
    results["unwrapped"] = params(model)

    # 5. Two players stepped in turn, each on its own parameter.
    pair = Pair()
    pg.fit(
        pair, sampler, steps=5, batch_size=8, schedule={"a": 2},
        objective={
            "a": lambda m, x, c: (unwrap(m).a * unwrap(m).b - x.mean()) ** 2,
            "b": lambda m, x, c: (unwrap(m).a - 2 * unwrap(m).b + x.mean()) ** 2,
        },
        optimizer={
            "a": torch.optim.SGD([pair.a], lr=0.1),
            "b": torch.optim.SGD([pair.b], lr=0.1),
        },
        seed=0, progress=False,
    )  # fmt: skip
    results["players"] = params(pair)

    # 6. A VAE by its default objective, Pyro's ELBO over the inner module's model / guide
    # pair (it bypasses DDP's forward: fit averages by hand), from different initialisations.
    torch.manual_seed(6 + 100 * rank)
    vae = pg.latent.VAE(
        pg.nn.ContextMLP(2, 4, hidden=(8,)), pg.nn.ContextMLP(2, 4, hidden=(8,)), latent=2,
        event_shape=2,
    )  # fmt: skip
    history = pg.fit(vae, sampler, steps=10, **kwargs)
    results["vae"] = {"params": params(vae), "loss": history.loss}

    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
