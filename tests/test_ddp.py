r"""probgen.fit under torchrun: two CPU processes (gloo) train as one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

SCRIPT = Path(__file__).with_name("_ddp_script.py")


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        str(SCRIPT), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    # Only rank 0 writes the checkpoint, atomically: no temporary file is left.
    assert sorted(os.listdir(out)) == ["ckpt.pt", "rank0.pt", "rank1.pt"]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo"
)


def test_processes_train_as_one(ranks):
    r0, r1 = ranks[0]["sampler"], ranks[1]["sampler"]
    assert same(r0["params"], r1["params"])
    assert r0["loss"] == r1["loss"] and len(r0["loss"]) == 30
    first, last = sum(r0["loss"][:5]) / 5, sum(r0["loss"][-5:]) / 5
    assert last < first - 0.1
    # Each process draws its own samples.
    assert not torch.equal(r0["first"], r1["first"])


def test_resume_is_bit_identical(ranks):
    for r in ranks:
        assert same(r["resumed"]["params"], r["sampler"]["params"])
        assert r["resumed"]["loss"] == r["sampler"]["loss"]


def test_tensor_data_is_sharded(ranks):
    s0, s1 = ranks[0]["shard"], ranks[1]["shard"]
    assert s0.shape == s1.shape == (100, 2)
    # One epoch: the processes split the rows between them, each row once.
    rows = torch.cat([s0, s1])[:, 0].sort().values
    assert torch.equal(rows, torch.arange(0.0, 400.0, 2.0))


def test_gradients_are_averaged_without_ddp_forward(ranks):
    assert same(ranks[0]["unwrapped"], ranks[1]["unwrapped"])
    assert same(ranks[0]["players"], ranks[1]["players"])


def test_vae_elbo_is_averaged(ranks):
    # Each process draws its own samples and starts from its own initialisation: equal
    # parameters after training mean that rank 0's were broadcast and gradients averaged.
    r0, r1 = ranks[0]["vae"], ranks[1]["vae"]
    assert same(r0["params"], r1["params"])
    assert r0["loss"] == r1["loss"] and len(r0["loss"]) == 10
