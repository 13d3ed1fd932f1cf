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
        ["--steps", "2", "--channels", "4", "--batch-size", "16", "--mmd-batch-size", "16",
         "--models", "all", "--threads", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    assert [r["model"] for r in results["rows"]][1:] == list(gan_digits.MODELS)
    ref = results["rows"][0]["fid"]
    assert all(ref < r["fid"] for r in results["rows"][1:])  # data beat a 2-step model
    assert results["rows"][2]["label_accuracy"] is not None  # cgan: labels asked for
    for name in gan_digits.MODELS:
        assert (tmp_path / f"{name}.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["rows"]


def test_gan_digits_hinge_smoke(tmp_path):
    results = gan_digits.main(
        ["--steps", "2", "--channels", "4", "--batch-size", "16", "--models", "dcgan",
         "--loss", "hinge", "--no-plots", "--out", str(tmp_path)]
    )  # fmt: skip
    assert results["config"]["loss"] == "hinge" and results["rows"][1]["model"] == "dcgan"
