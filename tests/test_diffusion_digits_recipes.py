r"""Smoke test of the diffusion digits recipe: two training steps of both models, every
output written."""

from __future__ import annotations

import json
import math

from probgen.recipes import diffusion_digits


def test_diffusion_digits_runs(tmp_path):
    argv = ["--steps", "2", "--channels", "8,16", "--sample-steps", "2", "--samples", "20",
            "--nll-images", "3", "--nll-tol", "1e-2", "--guidance", "0,2", "--out",
            str(tmp_path)]  # fmt: skip
    results = diffusion_digits.main(argv)
    assert json.loads((tmp_path / "results.json").read_text())["config"]["steps"] == 2
    assert math.isfinite(results["uncond"]["fid"])
    assert math.isfinite(results["uncond"]["test_bits_per_dim"])
    rows = results["cond"]["guidance"]
    assert [r["guidance"] for r in rows] == [0.0, 2.0]
    assert all(0 <= r["label_accuracy"] <= 1 for r in rows)
    for name in ("uncond", "cond_w0", "cond_w2"):
        assert (tmp_path / f"{name}.png").exists()
