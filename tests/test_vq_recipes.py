r"""Smoke tests of the VQ-VAE and autoencoder recipes: a couple of steps, every output."""

from __future__ import annotations

import json

import torch
from probgen.recipes import autoencoders_digits, vqvae_digits


def test_vqvae_digits_smoke(tmp_path):
    threads = torch.get_num_threads()
    results = vqvae_digits.main(
        ["--steps", "2", "--codes", "8", "--dim", "4", "--hidden", "4", "--prior-layers", "1",
         "--samples", "4", "--out", str(tmp_path)]
    )  # fmt: skip
    assert torch.get_num_threads() == threads
    rows = results["rows"]
    assert [r["model"] for r in rows] == list(vqvae_digits.MODELS)
    for r in rows:
        assert 0 < r["codes_used"] <= 1 and 1 <= r["perplexity"] <= 8
        # The bound's two terms: the prior's NLL of the codes is part of it.
        assert r["bound_nll"] > r["prior_nll"] > 0
    assert json.loads((tmp_path / "results.json").read_text())["rows"]
    assert (tmp_path / "reconstructions.png").exists() and (tmp_path / "samples.png").exists()


def test_autoencoders_digits_smoke(tmp_path):
    results = autoencoders_digits.main(
        ["--steps", "2", "--features", "4", "--hidden", "4", "--out", str(tmp_path)]
    )
    assert [r["model"] for r in results["rows"]] == list(autoencoders_digits.MODELS)
    assert 0 < results["reference"]["probe_accuracy_pixels"] <= 1
    assert json.loads((tmp_path / "results.json").read_text())["reference"]
    assert (tmp_path / "reconstructions.png").exists()
