"""The probgen command: list, run, the main job, errors."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import probgen
from probgen import cli


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "flows_2d" in out and "Normalizing flows" in out
    assert "flows_2d" in cli.recipes()
    assert all(not name.startswith("_") for name in cli.recipes())
    # A summary wrapped over several docstring lines is listed on one.
    assert all(d and "\n" not in d for d in cli.recipes().values())


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"probgen {probgen.__version__}"


def test_unknown_recipe(capsys):
    assert cli.main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'nope'" in err and "flows_2d" in err


def test_bad_command(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["frobnicate"])
    assert exit.value.code == 2


def test_run_passes_arguments(tmp_path, capsys):
    args = ["--steps", "2", "--flows", "maf", "--densities", "8gaussians", "--test-size", "200"]
    assert cli.main(["run", "flows_2d", *args, "--no-plots", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["flow"], r["density"], r["steps"]) for r in results["results"]] == [
        ("maf", "8gaussians", 2)
    ]
    assert "maf" in capsys.readouterr().out


def test_default_is_the_main_job(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "_run", lambda name, args: calls.append((name, args)) or 0)
    assert cli.main([]) == 0
    assert calls == [(cli.DEFAULT_RECIPE, [])]


def test_recipes_found_without_the_installed_package(monkeypatch):
    # An install that cannot import probgen.recipes falls back on the recipes/ folder.
    real = importlib.import_module

    def refuse(name, *args):
        if name == "probgen.recipes":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    for name in [m for m in sys.modules if m.startswith("probgen.recipes")]:
        monkeypatch.delitem(sys.modules, name)
    assert "flows_2d" in cli.recipes()
    assert sys.modules["probgen.recipes"].__path__


def test_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "probgen.cli", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "flows_2d" in out
