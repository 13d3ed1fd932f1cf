r"""Smoke tests of the diffusion recipes."""

from __future__ import annotations

import math

from probgen.recipes import diffusion_samplers


def test_diffusion_samplers_smoke(tmp_path):
    args = ["--samples", "100", "--runs", "1", "--steps", "30", "--nfe", "4", "10"]
    results = diffusion_samplers.main([*args, "--out", str(tmp_path)])
    assert len(results["results"]) == 9
    assert all(math.isfinite(r["energy_distance"]) for r in results["results"])
    assert [r["nfe"] for r in results["sweep"]["dpm-solver++ (log-SNR grid)"]] == [4, 10]
    assert (tmp_path / "quality_vs_nfe.png").exists()
