r"""scikit-learn's bundled 8x8 handwritten digits, as image tensors with a fixed split.

The data set (UCI optical recognition of handwritten digits, as shipped inside
scikit-learn, no download) holds 1,797 images of :math:`8 \times 8` pixels with 17 grey
levels :math:`\{0, \dots, 16\}` and their labels :math:`\{0, \dots, 9\}`. A fixed random
permutation (seed 0, independent of the global RNG) puts 1,500 images in ``"train"`` and the
remaining 297 in ``"test"``, so that results are comparable across runs and machines.

scikit-learn is an optional dependency: ``pip install probgen[recipes]``.
"""

from __future__ import annotations

__all__ = ["LEVELS", "TRAIN_SIZE", "digits"]

from typing import Literal

import torch
from torch import Tensor

LEVELS = 17
TRAIN_SIZE = 1500
_SPLIT_SEED = 0


def digits(
    split: Literal["train", "test", "all"] = "train",
    *,
    binarize: bool = False,
    scale: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Loads the 8x8 digits as images.

    Arguments:
        split: ``"train"`` (1,500 images), ``"test"`` (297) or ``"all"`` (1,797, in the
            original order).
        binarize: Whether to threshold the levels, :math:`x \geq 8 \mapsto 1`, else 0.
        scale: Whether to divide by the largest level (16, or 1 when binarised), giving
            values in :math:`[0, 1]`.
        dtype: The floating dtype of ``x`` (the default dtype when ``None``).

    Returns:
        The images ``x`` with shape :math:`(N, 1, 8, 8)`, floats holding the integer levels
        :math:`\{0, \dots, 16\}` (or :math:`\{0, 1\}` when binarised, or those divided by
        the largest level when scaled), and the labels ``y`` with shape :math:`(N,)`, long.

    Example:
        >>> x, y = digits("test")
        >>> x.shape, y.shape, int(x.max())
        (torch.Size([297, 1, 8, 8]), torch.Size([297]), 16)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "probgen.data.digits needs scikit-learn, which ships the data set: "
            "pip install probgen[recipes] (or pip install scikit-learn)"
        ) from e
    if split not in ("train", "test", "all"):
        raise ValueError(f"expected split 'train', 'test' or 'all', got {split!r}")
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=dtype or torch.get_default_dtype())[:, None]
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    if split != "all":
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SPLIT_SEED))
        idx = perm[:TRAIN_SIZE] if split == "train" else perm[TRAIN_SIZE:]
        x, y = x[idx], y[idx]
    top = LEVELS - 1
    if binarize:
        x, top = (x >= top / 2).to(x.dtype), 1
    if scale:
        x = x / top
    return x, y
