r"""Synthetic audio (sums of sines and chirps), mu-law quantisation and WAV files.

WaveNet models audio as 8-bit mu-law codes: the companding

.. math:: F(x) = \mathrm{sign}(x) \frac{\ln(1 + \mu |x|)}{\ln(1 + \mu)}, \qquad
    x \in [-1, 1], \ \mu = 255 ,

followed by uniform quantisation of :math:`F(x) \in [-1, 1]` to 256 levels spends more
levels near zero, where speech and music spend most of their time.

References:
    | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
    | https://arxiv.org/abs/1609.03499
"""

from __future__ import annotations

__all__ = ["mu_law_encode", "mu_law_decode", "synthetic_audio", "save_wav"]

import math
import os
import wave

import torch
from torch import Tensor


def mu_law_encode(x: Tensor, channels: int = 256) -> Tensor:
    r"""Quantises audio in :math:`[-1, 1]` to mu-law codes :math:`\{0, \dots, Q - 1\}`.

    Arguments:
        x: Audio with values in :math:`[-1, 1]` (clamped), with any shape.
        channels: The number of codes :math:`Q` (:math:`\mu = Q - 1`).

    Returns:
        The codes, a long tensor with the shape of ``x``.

    Example:
        >>> mu_law_encode(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([  0, 128, 255])
    """
    mu = channels - 1
    x = x.clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mu_law_decode(q: Tensor, channels: int = 256) -> Tensor:
    r"""Maps mu-law codes back to audio in :math:`[-1, 1]` (the inverse companding of
    each level's centre).

    Arguments:
        q: Codes in :math:`\{0, \dots, Q - 1\}` (any dtype), with any shape.
        channels: The number of codes :math:`Q`.

    Returns:
        The audio, a floating tensor with the shape of ``q``.

    Example:
        >>> x = torch.linspace(-1, 1, 5)
        >>> (mu_law_decode(mu_law_encode(x)) - x).abs().max() < 0.02
        tensor(True)
    """
    mu = channels - 1
    dtype = q.dtype if q.is_floating_point() else torch.get_default_dtype()
    y = 2 * q.to(dtype) / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def synthetic_audio(
    n: int,
    length: int,
    sample_rate: int = 8000,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Clips of synthetic audio: sums of sines and linear chirps, with peak 0.9.

    Each clip sums 1 to 3 sines (frequencies log-uniform in 110-880 Hz, random amplitudes
    and phases) and, with probability 1/2, a chirp sweeping linearly between two such
    frequencies over the clip,

    .. math:: s(t) = \sin\left(2 \pi \left(f_0 t + \frac{f_1 - f_0}{2 T} t^2\right)\right) .

    The clips depend only on ``seed`` (a private generator), not on the global RNG.

    Arguments:
        n: The number of clips.
        length: The number of samples per clip.
        sample_rate: Samples per second.
        seed: The seed of the clips.
        dtype: The floating dtype (the default dtype when ``None``).

    Returns:
        The clips, with shape :math:`(n, \text{length})` and values in :math:`[-0.9, 0.9]`.

    Example:
        >>> synthetic_audio(4, 100).shape
        torch.Size([4, 100])
    """
    if n < 1 or length < 1 or sample_rate < 1:
        raise ValueError(f"expected n, length, sample_rate >= 1, got {n}, {length}, {sample_rate}")
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.get_default_dtype()
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    duration = length / sample_rate

    def freq(size: tuple[int, ...]) -> Tensor:
        return 110.0 * 8.0 ** torch.rand(size, generator=g, dtype=torch.float64)

    count = torch.randint(1, 4, (n, 1), generator=g)
    on = (torch.arange(3)[None, :] < count).double()  # (n, 3): which of 3 sines sound
    f = freq((n, 3))
    amp = on * (0.3 + 0.7 * torch.rand(n, 3, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.rand(n, 3, generator=g, dtype=torch.float64)
    x = (amp[..., None] * torch.sin(2 * math.pi * f[..., None] * t + phase[..., None])).sum(1)
    f0, f1 = freq((n, 1)), freq((n, 1))
    chirp = torch.sin(2 * math.pi * (f0 * t + (f1 - f0) / (2 * duration) * t**2))
    x = x + (torch.rand(n, 1, generator=g) < 0.5).double() * chirp
    x = 0.9 * x / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
    return x.to(dtype)


def save_wav(path: str | os.PathLike, x: Tensor, sample_rate: int = 8000) -> None:
    r"""Writes mono audio in :math:`[-1, 1]` as a 16-bit PCM WAV file (standard library
    :mod:`wave`).

    Arguments:
        path: The file to write.
        x: The audio, with shape :math:`(T,)`; values are clamped to :math:`[-1, 1]`.
        sample_rate: Samples per second.
    """
    if x.dim() != 1:
        raise ValueError(f"expected mono audio with shape (T,), got {tuple(x.shape)}")
    pcm = (x.detach().cpu().double().clamp(-1, 1) * 32767).round().to(torch.int16)
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.numpy().astype("<i2").tobytes())
