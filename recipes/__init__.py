r"""Runnable recipes, one script per family or hybrid (``probgen list`` shows them).

The top-level ``recipes/`` folder is installed as the package ``probgen.recipes``; each
module has a ``main(argv=None)`` that parses ``argv`` with argparse and runs the recipe.
"""
