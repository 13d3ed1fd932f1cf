r"""Masked convolutions (PixelCNN type A / B) and the gated PixelCNN's vertical and
horizontal stacks, which have no blind spot.

Pixels are generated in raster order (row by row, left to right) and, within a pixel,
channel group by channel group (e.g. R, then G, then B). A feature channel belongs to a
*group*; at the centre pixel a connection from input group :math:`g'` to output group
:math:`g` is kept when :math:`g' < g` (type A, the first layer: a pixel never sees
itself) or :math:`g' \leq g` (type B, later layers).
"""

from __future__ import annotations

__all__ = ["channel_groups", "MaskedConv2d", "GatedMaskedConv2d"]

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def channel_groups(channels: int, groups: int, repeats: int = 1) -> Tensor:
    r"""The group of each of ``repeats * channels`` channels: each block of ``channels``
    is split into ``groups`` contiguous runs.

    Example:
        >>> channel_groups(4, 2, repeats=2)
        tensor([0, 0, 1, 1, 0, 0, 1, 1])
    """
    if channels % groups != 0:
        raise ValueError(f"expected channels divisible by {groups} groups, got {channels}")
    return (torch.arange(channels) // (channels // groups)).repeat(repeats)


def _centre_mask(out_groups: Tensor, in_groups: Tensor, mask_type: str) -> Tensor:
    if mask_type not in ("A", "B"):
        raise ValueError(f"expected mask_type 'A' or 'B', got {mask_type!r}")
    if mask_type == "A":
        return in_groups[None, :] < out_groups[:, None]
    return in_groups[None, :] <= out_groups[:, None]


class MaskedConv2d(nn.Conv2d):
    r"""A :math:`k \times k` convolution that sees only the pixels before the centre in
    raster order, and at the centre only earlier (type A) or earlier-or-equal (type B)
    channel groups,

    .. math:: y = (W \odot M) * x + b .

    A stack of these has a *blind spot* (a triangle of earlier pixels to the upper right
    that no layer reaches); :class:`GatedMaskedConv2d` has none.

    Arguments:
        in_channels: The input channels (divisible by ``groups``).
        out_channels: The output channels (divisible by ``groups``).
        kernel_size: The odd kernel size :math:`k`.
        mask_type: ``"A"`` (the first layer) or ``"B"``.
        groups: The number of channel groups (the data's channels, e.g. 3 for RGB).
        in_groups: The group of every input channel (overrides ``groups``), with shape
            :math:`(C_{in},)`.
        out_groups: The group of every output channel, with shape :math:`(C_{out},)`.

    References:
        | Pixel Recurrent Neural Networks (van den Oord et al., 2016)
        | https://arxiv.org/abs/1601.06759

    Example:
        >>> conv = MaskedConv2d(1, 8, 3, mask_type="A")
        >>> conv(torch.randn(2, 1, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        mask_type: Literal["A", "B"] = "B",
        groups: int = 1,
        in_groups: Tensor | None = None,
        out_groups: Tensor | None = None,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"expected an odd kernel_size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        in_groups = channel_groups(in_channels, groups) if in_groups is None else in_groups
        out_groups = channel_groups(out_channels, groups) if out_groups is None else out_groups
        k = kernel_size // 2
        mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
        mask[:, :, :k, :] = 1
        mask[:, :, k, :k] = 1
        mask[:, :, k, k] = _centre_mask(out_groups, in_groups, mask_type).to(mask.dtype)
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: With shape :math:`(N, C_{in}, H, W)`.

        Returns:
            With shape :math:`(N, C_{out}, H, W)`.
        """
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedMaskedConv2d(nn.Module):
    r"""One layer of the gated PixelCNN: a vertical stack that sees the rows above and a
    horizontal stack that sees the pixels to the left in the current row,

    .. math:: y = \tanh(W_f * x + V_f c) \odot \sigma(W_g * x + V_g c) .

    The vertical stack's :math:`(\lfloor k/2 \rfloor + 1) \times k` kernel covers the rows
    up to the current one; shifted down by one row before it feeds the horizontal stack,
    it contributes only rows strictly above. The horizontal stack's
    :math:`1 \times (\lfloor k/2 \rfloor + 1)` kernel covers the current row up to the
    centre, masked at the centre by channel group (type A in the first layer, B after).
    Together the receptive field is every earlier pixel within reach: no blind spot.
    After the first layer the horizontal stack is residual.

    Arguments:
        in_channels: The input channels of both stacks (the data's channels in the first
            layer).
        channels: The output channels :math:`F` of both stacks.
        kernel_size: The odd kernel size :math:`k`.
        first: Whether this is the first layer (type A centre mask, no residual).
        groups: The number of channel groups.
        context: The number of conditioning features :math:`c` (0 for none).

    References:
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328

    Example:
        >>> layer = GatedMaskedConv2d(1, 8, first=True)
        >>> x = torch.randn(2, 1, 5, 5)
        >>> v, h = layer(x, x)
        >>> v.shape, h.shape
        (torch.Size([2, 8, 5, 5]), torch.Size([2, 8, 5, 5]))
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        first: bool = False,
        groups: int = 1,
        context: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"expected an odd kernel_size, got {kernel_size}")
        if first is False and in_channels != channels:
            raise ValueError(
                f"a residual layer needs in_channels == channels, got {in_channels}, {channels}"
            )
        k = kernel_size // 2
        self.k, self.first = k, first
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (k + 1, kernel_size))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, k + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(context, 2 * channels, bias=False) if context else None

        in_g = channel_groups(in_channels, groups)
        gate_g = channel_groups(channels, groups, repeats=2)  # the tanh half, the gate half
        out_g = channel_groups(channels, groups)
        # Horizontal kernel: every column left of the centre, the centre by channel group.
        h_mask = torch.ones(2 * channels, in_channels, 1, k + 1)
        h_mask[:, :, 0, k] = _centre_mask(gate_g, in_g, "A" if first else "B").float()
        self.register_buffer("h_mask", h_mask)
        # The 1x1 output convolution stays within a pixel: type B between channel groups.
        h_out_mask = _centre_mask(out_g, out_g, "B").float()[..., None, None]
        self.register_buffer("h_out_mask", h_out_mask)

    def _gate(self, a: Tensor, c: Tensor | None) -> Tensor:
        if self.cond is not None and c is not None:
            a = a + self.cond(c)[..., None, None]
        f, g = a.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""
        Arguments:
            v: The vertical stack, with shape :math:`(N, C_{in}, H, W)`.
            h: The horizontal stack, with shape :math:`(N, C_{in}, H, W)`.
            c: The context, with shape :math:`(N, C_c)`, or ``None``.

        Returns:
            The new vertical and horizontal stacks, each with shape :math:`(N, F, H, W)`.
        """
        k = self.k
        v_pre = self.vertical(F.pad(v, (k, k, k, 0)))
        # Shift down one row: the horizontal stack sees only rows strictly above.
        v_shift = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]
        w = self.horizontal.weight * self.h_mask
        h_pre = F.conv2d(F.pad(h, (k, 0, 0, 0)), w, self.horizontal.bias)
        h_pre = h_pre + F.conv2d(v_shift, self.v_to_h.weight, self.v_to_h.bias)
        v_new = self._gate(v_pre, c)
        h_gated = self._gate(h_pre, c)
        h_new = F.conv2d(h_gated, self.h_out.weight * self.h_out_mask, self.h_out.bias)
        return v_new, h_new if self.first else h + h_new
