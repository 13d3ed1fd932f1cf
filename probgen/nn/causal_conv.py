r"""Dilated causal convolutions and WaveNet's gated residual blocks, with the cached
queues of fast WaveNet for incremental generation."""

from __future__ import annotations

__all__ = ["CausalConv1d", "WaveNetBlock"]

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class CausalConv1d(nn.Conv1d):
    r"""A dilated convolution whose output at time :math:`t` sees inputs :math:`\leq t`,

    .. math:: y_t = b + \sum_{j=0}^{k-1} W_j \, x_{t - (k - 1 - j) d} ,

    with zeros before the start (left padding of :math:`(k - 1) d`).

    :meth:`step` computes one output from a queue of the :math:`(k - 1) d` last inputs
    (fast WaveNet): :math:`O(1)` work per time step instead of a pass over the sequence.

    Arguments:
        in_channels: The input channels.
        out_channels: The output channels.
        kernel_size: The kernel size :math:`k`.
        dilation: The dilation :math:`d`.

    References:
        | Fast Wavenet Generation Algorithm (Paine et al., 2016)
        | https://arxiv.org/abs/1611.09482

    Example:
        >>> conv = CausalConv1d(2, 3, kernel_size=2, dilation=4)
        >>> conv(torch.randn(5, 2, 10)).shape
        torch.Size([5, 3, 10])
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 2, dilation: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.span = (kernel_size - 1) * dilation

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: With shape :math:`(N, C_{in}, T)`.

        Returns:
            With shape :math:`(N, C_{out}, T)`.
        """
        return super().forward(F.pad(x, (self.span, 0)))

    def init_queue(self, n: int, like: Tensor) -> Tensor:
        r"""A queue of zeros (the left padding) for ``n`` sequences, with shape
        :math:`(N, C_{in}, (k - 1) d)`, on the device and in the dtype of ``like``."""
        return like.new_zeros(n, self.in_channels, max(self.span, 1))

    def step(self, x: Tensor, queue: Tensor, t: int) -> Tensor:
        r"""The output at time :math:`t`.

        Arguments:
            x: The input at time :math:`t`, with shape :math:`(N, C_{in})`.
            queue: The ring buffer of the last :math:`(k - 1) d` inputs (slot
                :math:`s \bmod (k - 1) d` holds time :math:`s`); time :math:`t` is written
                in place after the read.
            t: The time index.

        Returns:
            The output, with shape :math:`(N, C_{out})`.
        """
        k, d = self.kernel_size[0], self.dilation[0]
        y = F.linear(x, self.weight[:, :, k - 1], self.bias)
        if self.span == 0:
            return y
        size = queue.shape[-1]
        for j in range(k - 1):
            lag = (k - 1 - j) * d
            y = y + F.linear(queue[:, :, (t - lag) % size], self.weight[:, :, j])
        queue[:, :, t % size] = x
        return y


class WaveNetBlock(nn.Module):
    r"""A WaveNet residual block: a dilated causal convolution, a gated activation, and
    :math:`1 \times 1` convolutions to the residual and skip paths,

    .. math:: z = \tanh(W_f * h + V_f c) \odot \sigma(W_g * h + V_g c), \qquad
        h \leftarrow h + R z, \qquad s = S z .

    Arguments:
        channels: The residual channels.
        skip: The skip channels.
        kernel_size: The causal convolution's kernel size.
        dilation: Its dilation.
        context: The number of global conditioning features :math:`c` (0 for none).
        residual: Whether the block has a residual output (the last block of a stack
            feeds only the skip path: its residual would have no use and no gradient).

    References:
        | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
        | https://arxiv.org/abs/1609.03499

    Example:
        >>> block = WaveNetBlock(8, 4, dilation=2)
        >>> h, s = block(torch.randn(3, 8, 16))
        >>> h.shape, s.shape
        (torch.Size([3, 8, 16]), torch.Size([3, 4, 16]))
    """

    def __init__(
        self,
        channels: int,
        skip: int,
        kernel_size: int = 2,
        dilation: int = 1,
        context: int = 0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)
        self.cond = nn.Linear(context, 2 * channels, bias=False) if context else None
        self.res = nn.Conv1d(channels, channels, 1) if residual else None
        self.skip = nn.Conv1d(channels, skip, 1)

    def _gate(self, a: Tensor) -> Tensor:
        f, g = a.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""
        Arguments:
            h: The residual stream, with shape :math:`(N, C, T)`.
            c: The global context, with shape :math:`(N, C_c)`, or ``None``.

        Returns:
            The new residual stream :math:`(N, C, T)` and the skip output :math:`(N, S, T)`.
        """
        a = self.conv(h)
        if self.cond is not None and c is not None:
            a = a + self.cond(c).unsqueeze(-1)
        z = self._gate(a)
        return (h if self.res is None else h + self.res(z)), self.skip(z)

    def step(
        self, h: Tensor, queue: Tensor, t: int, c: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""The block at time :math:`t` only, from the convolution's queue.

        Arguments:
            h: With shape :math:`(N, C)`.
            queue: This block's queue (see :meth:`CausalConv1d.step`), written in place.
            t: The time index.
            c: The global context, with shape :math:`(N, C_c)`, or ``None``.

        Returns:
            The residual :math:`(N, C)` and skip :math:`(N, S)` outputs at time :math:`t`.
        """
        a = self.conv.step(h, queue, t)
        if self.cond is not None and c is not None:
            a = a + self.cond(c)
        z = self._gate(a.unsqueeze(-1)).squeeze(-1)
        skip = F.linear(z, self.skip.weight[:, :, 0], self.skip.bias)
        if self.res is None:
            return h, skip
        return h + F.linear(z, self.res.weight[:, :, 0], self.res.bias), skip
