r"""Smoke tests of the ODE-flow recipes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from probgen.recipes import ode_2d


def test_ode_2d_smoke(tmp_path):
    torch.set_default_dtype(torch.float32)  # as the command runs it
    args = [
        "--steps",
        "2",
        "--batch-size",
        "64",
        "--test-size",
        "200",
        "--densities",
        "8gaussians",
    ]
    args += ["--no-plots"]
    results = ode_2d.main([*args, "--out", str(tmp_path)])
    rows = results["results"]
    assert [r["model"] for r in rows] == list(ode_2d.DEFAULT_MODELS)
    assert all(math.isfinite(r["test_nll"]) and r["nfe_log_prob"] > 0 for r in rows)
    assert json.loads((tmp_path / "results.json").read_text())["results"] == rows


def test_ode_2d_plots(tmp_path):
    torch.set_default_dtype(torch.float32)
    args = ["--steps", "1", "--models", "fm", "--densities", "rings", "--test-size", "100"]
    ode_2d.main([*args, "--out", str(tmp_path)])
    assert (tmp_path / "rings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ode_2d_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        ode_2d.main(["--models", "ddpm"])
    assert "unknown model ddpm" in capsys.readouterr().err
