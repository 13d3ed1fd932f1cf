r"""Data sets: toy 2-D densities with exact ``log_prob`` and entropy; scikit-learn's 8x8
digits."""

from .audio import mu_law_decode, mu_law_encode, save_wav, synthetic_audio
from .digits import digits
from .text import docstrings
from .toy import (
    TOYS,
    Checkerboard,
    EightGaussians,
    Entropy,
    Moons,
    Pinwheel,
    Rings,
    Spirals,
    ToyDistribution,
    toy,
)

__all__ = [
    "TOYS",
    "Entropy",
    "ToyDistribution",
    "EightGaussians",
    "Checkerboard",
    "Rings",
    "Moons",
    "Pinwheel",
    "Spirals",
    "toy",
    "digits",
    "synthetic_audio",
    "mu_law_encode",
    "mu_law_decode",
    "save_wav",
    "docstrings",
]
