r"""Smoke tests of the implicit-model recipes (a couple of steps each, every output written),
and two slow ones that check what the recipes demonstrate."""

from __future__ import annotations

import json

import pytest
import torch
from probgen.recipes import gan_2d, gan_digits

from probgen.data import digits


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


@pytest.mark.slow
def test_gan_2d_wgan_gp_and_gmmn_cover_every_mode(tmp_path):
    # Both reached all 8 modes by step 150 in each of 3 seeds; 300 steps leave a margin.
    results = gan_2d.main(
        ["--models", "wgan_gp,gmmn", "--steps", "300", "--eval-every", "300", "--no-plots",
         "--out", str(tmp_path)]
    )  # fmt: skip
    for run in results["runs"]:
        assert run["curve"][-1]["modes"] == 8, run["model"]
        assert run["curve"][-1]["high_quality"] > 0.5, run["model"]


@pytest.mark.slow
def test_gan_digits_gmmn_beats_noise_by_far(tmp_path):
    from probgen.metrics import fid
    from probgen.metrics.features import digits_classifier

    results = gan_digits.main(
        ["--models", "gmmn", "--steps", "150", "--no-plots", "--out", str(tmp_path)]
    )  # fmt: skip
    test, _ = digits("test", scale=True)
    noise = fid(test, torch.rand(len(test), 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                digits_classifier().features)  # fmt: skip
    ref, gmmn = results["rows"][0]["fid"], results["rows"][1]["fid"]
    assert ref < gmmn < noise / 3
