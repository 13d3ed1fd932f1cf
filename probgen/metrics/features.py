r"""probgen's own feature extractor for 8x8 digits: a small classifier, trained here.

FID, KID and the Inception Score need a network that knows the data. No pretrained network
can be downloaded here, so probgen trains its own: :func:`train_digits_classifier` fits one
on the training split of :func:`probgen.data.digits` deterministically (seeded, one thread,
full-batch; a few seconds of CPU; about 97% test accuracy). Its weights ship beside this
module (``digits_classifier.pt``, 36 kB, loaded with ``torch.load(weights_only=True)``);
:func:`digits_classifier` loads them, or trains on first use when the file is missing, and
caches the network for the process. To rewrite the file:
``torch.save(train_digits_classifier().state_dict(), path)``.

Inputs are images with shape :math:`(N, 1, 8, 8)` (or :math:`(N, 64)`) with grey levels
scaled to :math:`[0, 1]` (``digits(scale=True)``); :meth:`DigitsClassifier.features` gives
the penultimate activations, the feature space of :func:`~probgen.metrics.fid`.
"""

from __future__ import annotations

__all__ = ["DigitsClassifier", "digits_classifier", "train_digits_classifier"]

import functools
import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

_SEED = 0


class DigitsClassifier(nn.Module):
    r"""An MLP classifier of 8x8 digits: :math:`64 \to 64 \to 64 \to 10`.

    Arguments:
        hidden: The widths of the two hidden layers; the second is the feature size.
    """

    def __init__(self, hidden: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden[1], 10)

    def _check(self, x: Tensor) -> Tensor:
        if x.shape[-3:] != (1, 8, 8) and x.shape[-1:] != (64,):
            raise ValueError(
                f"expected images with shape (N, 1, 8, 8) or (N, 64), got {tuple(x.shape)}"
            )
        p = next(self.parameters())
        return x.reshape(-1, 64).to(p)

    def features(self, x: Tensor) -> Tensor:
        r"""The penultimate activations, with shape :math:`(N, F)`, for images in [0, 1]."""
        return self.body(self._check(x))

    def forward(self, x: Tensor) -> Tensor:
        r"""The class logits, with shape :math:`(N, 10)`, for images in [0, 1]."""
        return self.head(self.features(x))


def train_digits_classifier(steps: int = 300, weight_decay: float = 1e-4) -> DigitsClassifier:
    r"""Trains :class:`DigitsClassifier` on the training split, deterministically.

    Full-batch Adam in float32 on one thread from a fixed seed, with small random shifts of
    the grey levels (uniform noise of one level) so that the classifier also reads the
    continuous values a generator outputs; the global RNG is left as it was.

    Arguments:
        steps: The number of full-batch steps.
        weight_decay: The Adam weight decay.

    Returns:
        The classifier, in eval mode, float32.
    """
    from ..data import digits  # data sit beside metrics; loaded only when training

    x, y = digits("train", scale=True, dtype=torch.float32)
    threads = torch.get_num_threads()
    # One thread: the same reductions in the same order on any machine, and no contention
    # for a job this small.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(_SEED)
            net = DigitsClassifier()
            opt = torch.optim.Adam(net.parameters(), lr=5e-3, weight_decay=weight_decay)
            for _ in range(steps):
                opt.zero_grad()
                noisy = (x + (torch.rand_like(x) - 0.5) / 16).clamp(0, 1)
                nn.functional.cross_entropy(net(noisy), y).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval().requires_grad_(False)


_WEIGHTS = Path(__file__).with_name("digits_classifier.pt")


@functools.cache
def _cached() -> DigitsClassifier:
    if _WEIGHTS.exists():
        net = DigitsClassifier()
        net.load_state_dict(torch.load(_WEIGHTS, weights_only=True))
        return net.eval().requires_grad_(False)
    return train_digits_classifier()


def digits_classifier(path: str | os.PathLike | None = None) -> DigitsClassifier:
    r"""The default digits feature extractor and classifier: the shipped weights, else
    trained on first use.

    Arguments:
        path: Another file to load the weights from, or to save them to when it does not
            exist yet (``None``: the shipped file).

    Returns:
        The :class:`DigitsClassifier`, in eval mode, without gradients.

    Example:
        >>> from probgen.data import digits
        >>> net = digits_classifier()
        >>> x, y = digits("test", scale=True)
        >>> float((net(x).argmax(-1) == y).double().mean()) > 0.93
        True
    """
    if path is None:
        return _cached()
    path = Path(path)
    if path.exists():
        net = DigitsClassifier()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval().requires_grad_(False)
    net = _cached()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net
