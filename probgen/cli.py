r"""The ``probgen`` command: list and run the recipes.

.. code-block:: text

    probgen                      run the main job (the flows_2d recipe with its defaults)
    probgen list                 list the recipes, one line each
    probgen run NAME [ARGS...]   run a recipe; ARGS go to its own argument parser
    probgen run NAME --help      a recipe's options
    probgen --version

Recipes are the modules of the top-level ``recipes/`` folder, installed as the package
``probgen.recipes`` (``pyproject.toml`` maps it with ``package-dir``); each has a
``main(argv=None)``. When that package cannot be imported (an editable install made
before the folder existed, or a source checkout on ``sys.path`` without an install), the
folder next to the ``probgen`` package is loaded under the same name.
"""

from __future__ import annotations

__all__ = ["DEFAULT_RECIPE", "main", "recipes"]

import argparse
import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from . import __version__

DEFAULT_RECIPE = "flows_2d"

_PACKAGE = "probgen.recipes"


def _package() -> ModuleType:
    try:
        return importlib.import_module(_PACKAGE)
    except ImportError:
        pass
    # The source layout: recipes/ beside probgen/.
    folder = Path(__file__).resolve().parent.parent / "recipes"
    init = folder / "__init__.py"
    if not init.is_file():
        raise ImportError(
            f"cannot import {_PACKAGE} and there is no recipes/ folder at {folder}; "
            "reinstall probgen (pip install -e .)"
        )
    spec = importlib.util.spec_from_file_location(
        _PACKAGE, init, submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def recipes() -> dict[str, str]:
    r"""The recipes and their one-line descriptions (each module docstring's summary, its
    first paragraph).

    Docstrings are read from the source without importing the recipes, so listing them
    runs none of their imports.

    Returns:
        A dict ``{name: description}``, sorted by name.
    """
    found = {}
    for folder in _package().__path__:
        for path in sorted(Path(folder).glob("*.py")):
            if path.stem.startswith("_") or not path.stem.isidentifier():
                continue
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            # The summary is the first paragraph: a long one wraps over several lines.
            found[path.stem] = " ".join(doc.strip().split("\n\n")[0].split())
    return dict(sorted(found.items()))


def _run(name: str, args: Sequence[str]) -> int:
    available = recipes()
    if name not in available:
        names = ", ".join(available) or "(none)"
        print(f"probgen: unknown recipe {name!r}; expected one of: {names}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    result = module.main(list(args))
    # A recipe returns its results (or nothing); an int is an exit status.
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probgen",
        description="probgen: every generative model as a Pyro distribution. "
        f"Without a command, runs the main job (the {DEFAULT_RECIPE} recipe).",
    )
    parser.add_argument("--version", action="version", version=f"probgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{list,run}")
    commands.add_parser("list", help="list the recipes, one line each")
    run = commands.add_parser(
        "run",
        help="run a recipe: probgen run NAME [ARGS...]",
        description="Runs a recipe; ARGS go to the recipe (probgen run NAME --help).",
    )
    run.add_argument("name", help="the recipe (see probgen list)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the recipe's arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    r"""Runs the ``probgen`` command.

    Arguments:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for an unknown recipe or bad arguments, or the
        recipe's own status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = _parser().parse_args(argv)
    if ns.command == "list":
        available = recipes()
        width = max(map(len, available), default=0)
        for name, description in available.items():
            print(f"{name:<{width}}  {description}")
        return 0
    if ns.command == "run":
        return _run(ns.name, ns.args)
    print(f"probgen: running the main job: probgen run {DEFAULT_RECIPE}", file=sys.stderr)
    return _run(DEFAULT_RECIPE, [])


if __name__ == "__main__":
    sys.exit(main())
