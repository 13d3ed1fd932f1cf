r"""Smoke tests of the implicit-model recipes: a couple of steps each, every output written."""

from __future__ import annotations

import json

import torch
from probgen.recipes import gan_2d, gan_digits


def test_gan_2d_smoke(tmp_path):
    threads = torch.get_num_threads()
    results = gan_2d.main(
        ["--steps", "2", "--eval-every", "1", "--samples", "200", "--hidden", "8",
         "--models", "gan,hinge_sn,gmmn", "--out", str(tmp_path)]
    )  # fmt: skip
    assert torch.get_num_threads() == threads
    assert [r["model"] for r in results["runs"]] == ["gan", "hinge_sn", "gmmn"]
    assert all(len(r["curve"]) == 2 for r in results["runs"])
    assert json.loads((tmp_path / "results.json").read_text())["runs"]
    assert (tmp_path / "modes.png").exists() and (tmp_path / "samples.png").exists()


def test_gan_digits_smoke(tmp_path):
    results = gan_digits.main(
        [
            "--steps",
            "2",
            "--channels",
            "4",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert [r["model"] for r in results["rows"]][1:] == list(gan_digits.MODELS)
    assert results["rows"][0]["fid"] < results["rows"][1]["fid"]  # data beat a 2-step GAN
    for name in gan_digits.MODELS:
        assert (tmp_path / f"{name}.png").exists()
