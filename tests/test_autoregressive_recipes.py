"""Autoregressive recipes: smoke runs of a couple of steps at tiny sizes."""

from __future__ import annotations

import json
import math
import wave

import pytest
import torch
from probgen.recipes import (
    ar_made_nade_digits,
    ar_pixelcnn_digits,
    ar_transformer_text,
    ar_wavenet_audio,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _float32_one_thread():
    # The recipes run in float32 as the command runs them; tiny models want one thread.
    threads = torch.get_num_threads()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_made_nade_digits(tmp_path):
    args = ["--steps", "2", "--hidden", "32", "--nade-hidden", "16", "--samples", "4"]
    results = ar_made_nade_digits.main([*args, "--masks", "2", "--quiet", "--out", str(tmp_path)])
    assert [r["model"] for r in results["results"]] == ["MADE", "NADE"]
    for r in results["results"]:
        assert 0 < r["test_bits_per_dim"] < 2 and math.isfinite(r["test_nll_stderr"])
    assert json.loads((tmp_path / "results.json").read_text())["results"] == results["results"]
    for name in ("made", "nade"):
        assert (tmp_path / f"samples_{name}.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("levels", ["2", "17"])
def test_pixelcnn_digits(tmp_path, levels):
    args = ["--steps", "2", "--channels", "8", "--layers", "2", "--samples", "4"]
    args += ["--levels", levels, "--family", "logistics", "--components", "2"]
    results = ar_pixelcnn_digits.main([*args, "--quiet", "--out", str(tmp_path)])
    assert 0 < results["test_bits_per_dim"] < 2 * math.log2(int(levels))
    assert (tmp_path / "samples.png").read_bytes()[:8] == PNG


def test_wavenet_audio(tmp_path):
    args = ["--steps", "2", "--clips", "8", "--length", "64", "--channels", "8", "--skip", "8"]
    args += ["--cycles", "1", "--layers-per-cycle", "3", "--generate", "80"]
    results = ar_wavenet_audio.main(
        [*args, "--naive-length", "12", "--quiet", "--out", str(tmp_path)]
    )
    assert 0 < results["test_bits_per_sample"] < 9
    assert results["naive_check"]["identical"]
    assert (tmp_path / "waveforms.png").read_bytes()[:8] == PNG
    with wave.open(str(tmp_path / "sample_top_p.wav")) as f:
        assert f.getnframes() == 80


def test_transformer_text(tmp_path):
    args = ["--steps", "2", "--length", "32", "--features", "16", "--heads", "2"]
    args += ["--layers", "1", "--generate", "40", "--test-windows", "4"]
    results = ar_transformer_text.main([*args, "--quiet", "--out", str(tmp_path)])
    assert 1 < results["test_perplexity"] < 200
    assert results["naive_check"]["identical"]
    assert set(results["samples"]) == set(ar_transformer_text.STRATEGIES)
    assert all(len(t) == 40 for rows in results["samples"].values() for t in rows)
    assert "top-p 0.9" in (tmp_path / "samples.txt").read_text()
