r"""Smoke test of the VAE recipe: a couple of steps per model, every output written."""

from __future__ import annotations

import json

import torch
from probgen.recipes import vae_digits


def test_vae_digits_smoke(tmp_path):
    threads = torch.get_num_threads()
    results = vae_digits.main(
        ["--steps", "2", "--particles", "4", "--eval-size", "12", "--hidden", "16",
         "--latent", "2", "--threads", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    assert torch.get_num_threads() == threads
    assert [r["model"] for r in results["rows"]] == list(vae_digits.MODELS)
    assert all(r["test_nll_nats"] > 0 for r in results["rows"])
    assert results["flow_prior_gain_nats"] is not None
    assert json.loads((tmp_path / "results.json").read_text())["rows"]
    for name in ("vae", "beta_vae", "vae_flow"):
        assert (tmp_path / f"{name}_samples.png").exists()
    for kind in ("class_samples", "reconstructions", "interpolations", "traversals"):
        assert (tmp_path / f"cvae_{kind}.png").exists()
