"""Recipes: smoke runs of a couple of steps, and (slow) the quality the defaults reach."""

from __future__ import annotations

import json
import math

import pytest
import torch
from probgen.recipes import flows_2d


def test_flows_2d_smoke(tmp_path):
    # Every default flow on one density (the plots dominate the time), in float32 as the
    # command runs it.
    torch.set_default_dtype(torch.float32)
    args = ["--steps", "2", "--test-size", "500", "--densities", "rings"]
    results = flows_2d.main([*args, "--out", str(tmp_path)])
    rows = results["results"]
    assert [(r["flow"], r["density"]) for r in rows] == [
        (f, "rings") for f in flows_2d.DEFAULT_FLOWS
    ]
    assert all(math.isfinite(r["test_nll"]) and r["steps"] == 2 for r in rows)
    assert json.loads((tmp_path / "results.json").read_text())["results"] == rows
    assert (tmp_path / "rings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flows_2d_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        flows_2d.main(["--flows", "glow"])
    assert "unknown flow glow" in capsys.readouterr().err


@pytest.mark.slow
def test_flows_2d_nsf_reaches_the_entropy(tmp_path):
    # The recipe's promise: with its defaults NSF comes within 0.05 nats of the entropy
    # on 8gaussians and rings (the gap is a KL divergence, so it is >= 0 up to noise).
    torch.set_default_dtype(torch.float32)  # as the command runs it
    args = ["--flows", "nsf", "--densities", "8gaussians,rings", "--no-plots"]
    results = flows_2d.main([*args, "--out", str(tmp_path)])
    for row in results["results"]:
        assert -4.4 * row["test_nll_stderr"] < row["gap"] < 0.05, row
