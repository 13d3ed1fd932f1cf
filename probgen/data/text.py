r"""A small real text corpus that needs no download: the Python standard library's own
documentation strings, as character tokens.

:func:`docstrings` gathers the docstrings of a fixed list of standard-library modules
(each module's, then those of its public functions, classes and methods, in sorted order,
each once), so the corpus is the same on every run of a given Python version. Characters
map to a fixed vocabulary of 96 tokens (newline and the 95 printable ASCII characters);
tabs become spaces and other characters are dropped. The first 90% of the characters
are the ``"train"`` split, the last 10% the ``"test"`` split.
"""

from __future__ import annotations

__all__ = ["VOCABULARY", "MODULES", "encode", "decode", "docstrings", "windows"]

import functools
import importlib
import inspect
import warnings
from typing import Literal

import torch
from torch import Tensor

VOCABULARY = "\n" + "".join(chr(i) for i in range(32, 127))
_INDEX = {ch: i for i, ch in enumerate(VOCABULARY)}

MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools",
    "gzip", "heapq", "html", "inspect", "io", "ipaddress", "itertools", "json", "logging",
    "math", "operator", "os", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "shutil", "statistics", "string", "struct", "tarfile", "tempfile", "textwrap",
    "threading", "typing", "unittest", "uuid", "warnings", "zipfile",
)  # fmt: skip

_TRAIN_FRACTION = 0.9


def encode(text: str) -> Tensor:
    r"""The tokens of ``text`` (tabs as spaces, characters outside the vocabulary dropped),
    a long tensor with shape :math:`(T,)`.

    Example:
        >>> decode(encode("Hello\tworld"))
        'Hello world'
    """
    text = text.replace("\t", " ")
    return torch.tensor([_INDEX[ch] for ch in text if ch in _INDEX], dtype=torch.long)


def decode(tokens: Tensor) -> str:
    r"""The text of tokens with shape :math:`(T,)` (any integer-valued dtype)."""
    return "".join(VOCABULARY[int(i)] for i in tokens.reshape(-1).tolist())


@functools.lru_cache(maxsize=4)
def _gather(modules: tuple[str, ...]) -> str:
    seen: set[str] = set()
    parts: list[str] = []

    def add(obj: object) -> None:
        doc = inspect.getdoc(obj)
        if doc and doc not in seen:
            seen.add(doc)
            parts.append(doc.strip())

    # Reading some attributes (typing.re, ...) warns of deprecations that do not concern us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in modules:
            module = importlib.import_module(name)
            add(module)
            for attr in sorted(vars(module)):
                obj = vars(module)[attr]
                if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                add(obj)
                if inspect.isclass(obj):
                    for meth in sorted(vars(obj)):
                        if not meth.startswith("_"):
                            add(vars(obj)[meth])
    return "\n\n".join(parts)


def docstrings(
    split: Literal["train", "test", "all"] = "train", modules: tuple[str, ...] = MODULES
) -> Tensor:
    r"""The standard library's docstrings as character tokens.

    Arguments:
        split: ``"train"`` (the first 90% of characters), ``"test"`` (the rest) or
            ``"all"``.
        modules: The modules whose docstrings are gathered, in order.

    Returns:
        The tokens, a long tensor with shape :math:`(T,)`, values in
        :math:`\{0, \dots, 95\}` (see :data:`VOCABULARY`).

    Example:
        >>> tokens = docstrings("test", modules=("json",))
        >>> tokens.dtype, int(tokens.max()) < len(VOCABULARY)
        (torch.int64, True)
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"expected split 'train', 'test' or 'all', got {split!r}")
    tokens = encode(_gather(tuple(modules)))
    cut = int(len(tokens) * _TRAIN_FRACTION)
    return tokens if split == "all" else tokens[:cut] if split == "train" else tokens[cut:]


def windows(tokens: Tensor, length: int, stride: int | None = None) -> Tensor:
    r"""Cuts a token stream into windows (training sequences).

    Arguments:
        tokens: With shape :math:`(T,)`.
        length: The window length :math:`L \leq T`.
        stride: The step between window starts (``length``: no overlap).

    Returns:
        The windows, with shape :math:`(N, L)`, :math:`N = \lfloor (T - L) / s \rfloor + 1`.

    Example:
        >>> windows(torch.arange(10), 4, stride=3)
        tensor([[0, 1, 2, 3],
                [3, 4, 5, 6],
                [6, 7, 8, 9]])
    """
    stride = length if stride is None else stride
    if tokens.dim() != 1 or not 1 <= length <= len(tokens) or stride < 1:
        raise ValueError(
            f"expected tokens with shape (T,), 1 <= length <= T and stride >= 1, got shape "
            f"{tuple(tokens.shape)}, length {length}, stride {stride}"
        )
    return tokens.unfold(0, length, stride)
