r"""Smoke tests of the diffusion recipes."""

from __future__ import annotations

import math

from probgen.recipes import diffusion_samplers


def test_diffusion_samplers_smoke(tmp_path):
    args = ["--samples", "100", "--runs", "1", "--steps", "30", "--out", str(tmp_path)]
    results = diffusion_samplers.main(args)
    assert len(results["results"]) == 7
    assert all(math.isfinite(r["energy_distance"]) for r in results["results"])
