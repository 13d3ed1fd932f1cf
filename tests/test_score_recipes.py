r"""Smoke test of the score-model recipe."""

from __future__ import annotations

import json
import math

import pytest
import torch
from probgen.recipes import score_2d


def test_score_2d_smoke(tmp_path):
    torch.set_default_dtype(torch.float32)  # as the command runs it
    args = [
        "--steps", "2", "--batch-size", "32", "--hidden", "8", "--densities", "8gaussians",
        "--levels", "3", "--langevin-steps", "2", "--ssm-steps", "3", "--samples", "50",
        "--permutations", "9", "--tol", "1e-3",
    ]  # fmt: skip
    results = score_2d.main([*args, "--out", str(tmp_path)])
    rows = results["results"]
    assert [r["model"] for r in rows] == ["ncsn", "ssm", "diffusion"]
    assert all(math.isfinite(r["energy_distance"]) and 0 < r["p_value"] <= 1 for r in rows)
    assert rows[0]["nfe"] == 3 * 2 + 1 and rows[1]["nfe"] == 3
    assert math.isfinite(rows[0]["pf_test_nll"]) and math.isfinite(rows[2]["pf_test_nll"])
    assert rows[2]["nfe"] > 0  # the diffusion's samples come from its ODE solve
    assert json.loads((tmp_path / "results.json").read_text())["results"] == rows
    assert (tmp_path / "8gaussians.png").exists()


def test_score_2d_rejects_unknown_models(capsys):
    with pytest.raises(SystemExit):
        score_2d.main(["--models", "ncsn,gan"])
    assert "unknown model gan" in capsys.readouterr().err
