r"""The public surface: every exported name exists and is documented; import is light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "probgen",
    "probgen.lazy",
    "probgen.utils",
    "probgen.nn",
    "probgen.transforms",
    "probgen.distributions",
    "probgen.flows",
    "probgen.testing",
    "probgen.objectives",
    "probgen.train",
    "probgen.data",
    "probgen.metrics",
    "probgen.samplers",
    "probgen.autoregressive",
    "probgen.energy",
    "probgen.implicit",
    "probgen.ode",
    "probgen.diffusion",
    "probgen.latent",
]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists_and_has_a_docstring(name: str):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    for attr in getattr(module, "__all__", []):
        obj = getattr(module, attr)
        if callable(obj) and not isinstance(obj, str):
            assert obj.__doc__, f"{name}.{attr} has no docstring"


def test_import_is_light():
    # Importing probgen must not pull plotting or scikit-learn.
    code = "import sys, probgen; print(any(m in sys.modules for m in ('matplotlib', 'sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
