"""Energy recipes: smoke runs of a couple of steps (PNG and JSON written), and (slow) what
the defaults promise."""

from __future__ import annotations

import json
import math

import pytest
import torch
from probgen.recipes import ebm_2d, ebm_flow_init, mcmc_kernels, rbm_digits

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _float32():
    # The recipes run in float32, as the command runs them.
    torch.set_default_dtype(torch.float32)


def test_ebm_2d_smoke(tmp_path):
    args = ["--steps", "2", "--densities", "8gaussians", "--sample-steps", "10"]
    results = ebm_2d.main([*args, "--test-size", "500", "--out", str(tmp_path)])
    (row,) = results["results"]
    assert row["density"] == "8gaussians" and math.isfinite(row["test_nll"])
    assert json.loads((tmp_path / "results.json").read_text())["results"] == [row]
    assert (tmp_path / "8gaussians.png").read_bytes()[:8] == PNG


def test_ebm_flow_init_smoke(tmp_path):
    args = ["--steps", "2", "--flow-steps", "2", "--test-size", "500"]
    results = ebm_flow_init.main([*args, "--out", str(tmp_path)])
    names = [r["model"] for r in results["results"]]
    assert names == ["flow", "ebm-noise-init", "ebm-flow-init"]
    assert all(math.isfinite(r["test_nll"]) for r in results["results"])
    assert (tmp_path / "8gaussians.png").read_bytes()[:8] == PNG


def test_rbm_digits_smoke(tmp_path):
    # A small hidden layer: AIS is checked against exact enumeration on the way.
    args = ["--steps", "2", "--hidden", "8", "--ais-betas", "50", "--ais-chains", "100"]
    results = rbm_digits.main([*args, "--sample-steps", "5", "--out", str(tmp_path)])["results"]
    assert abs(results["ais_error"]) < 5 * results["log_z_ais_stderr"] + 1e-3
    assert math.isfinite(results["test_log_likelihood"])
    assert (tmp_path / "samples.png").read_bytes()[:8] == PNG


def test_mcmc_kernels_smoke(tmp_path):
    args = ["--steps", "8", "--chains", "20", "--warmup", "5"]
    results = mcmc_kernels.main([*args, "--out", str(tmp_path)])
    rows = results["results"]
    assert [r["kernel"] for r in rows] == list(mcmc_kernels.DEFAULT_KERNELS)
    assert all(r["ess_per_second"] > 0 and 0 < r["accept"] < 1 for r in rows)
    assert (tmp_path / "kernels.png").read_bytes()[:8] == PNG


def test_mcmc_kernels_rejects_unknown_kernels():
    with pytest.raises(SystemExit, match="unknown kernels"):
        mcmc_kernels.main(["--kernels", "nuts2"])


@pytest.mark.slow
def test_rbm_digits_beats_independent_pixels(tmp_path):
    # The promise: a 64-16 RBM trained briefly beats independent pixels by nats per image,
    # and AIS agrees with exact enumeration within its error.
    args = ["--steps", "1000", "--hidden", "16", "--no-plots", "--out", str(tmp_path)]
    results = rbm_digits.main(args)["results"]
    assert abs(results["ais_error"]) < 5 * results["log_z_ais_stderr"] + 1e-3
    gain = results["test_log_likelihood"] - results["independent_pixels_log_likelihood"]
    assert gain > 2.0, results
