r"""A small U-Net over images for continuous-time models: ``net(x, t, c)`` on flat vectors.

Diffusion and flow-matching models work on vectors :math:`(*, D)` (their ODE transforms,
divergences and objectives are written once for vectors); the U-Net reads the same flat
vectors, :math:`D = C H W`, and reshapes to :math:`(C, H, W)` inside, so an image model is
``Diffusion(64, network=UNet((1, 8, 8)))`` with the data flattened once at the boundary.
It also accepts images :math:`(*, C, H, W)` and then returns images.
"""

from __future__ import annotations

__all__ = ["UNet"]

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .time import TimeEmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # The largest divisor of the width not above `groups`.
    g = max(d for d in range(1, groups + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


class _ResBlock(nn.Module):
    # GroupNorm, SiLU, 3x3 conv, plus the (time, class) embedding as a per-channel shift,
    # then GroupNorm, SiLU, 3x3 conv, and a residual (1x1 when the width changes).

    def __init__(self, cin: int, cout: int, emb: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        y = self.conv1(F.silu(self.norm1(h))) + self.emb(e)[:, :, None, None]
        return self.skip(h) + self.conv2(F.silu(self.norm2(y)))


class _Attention(nn.Module):
    # Multi-head self-attention over the H W positions, with a residual.

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"expected heads dividing the width {channels}, got {heads}")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv, self.proj = (
            nn.Conv2d(channels, 3 * channels, 1),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, h: Tensor) -> Tensor:
        n, c, hh, ww = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(n, 3, self.heads, c // self.heads, -1).unbind(1)
        # Written out rather than F.scaled_dot_product_attention: plain ops differentiate
        # twice (divergences of the ODE field under autograd) on every backend.
        w = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(c // self.heads), dim=-1)
        y = (v @ w.transpose(-1, -2)).reshape(n, c, hh, ww)
        return h + self.proj(y)


class _Level(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, heads: int | None) -> None:
        super().__init__()
        self.res = _ResBlock(cin, cout, emb, groups)
        self.attn = _Attention(cout, heads, groups) if heads else nn.Identity()

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        return self.attn(self.res(h, e))


class UNet(nn.Module):
    r"""A U-Net :math:`\epsilon_\phi(x, t, c)` with a time (and class) embedding, residual
    blocks, GroupNorm and self-attention at the coarsest resolution.

    Level :math:`i` works at :math:`(H / 2^i, W / 2^i)` with ``channels[i]`` feature maps:
    a residual block on the way down, one on the way up (reading the skip connection) and
    a self-attention block after each at the levels in ``attention`` (default the coarsest);
    the bottleneck is residual, attention, residual. The embedding
    :math:`e = \mathrm{MLP}(\gamma(t)) + W c` (sinusoidal :math:`\gamma`, a linear class
    embedding, so a one-hot class picks a learned vector and the zero context, the null of
    classifier-free guidance, picks none) shifts every residual block's feature maps.

    Arguments:
        shape: The image shape :math:`(C, H, W)`; :math:`H, W` divisible by
            :math:`2^{L - 1}` for :math:`L` levels.
        context: The number of context features (0 when unconditional).
        channels: The widths of the levels, finest first.
        attention: The levels with self-attention (default: the coarsest only).
        heads: The number of attention heads.
        groups: The largest number of GroupNorm groups.
        frequencies: The number of sinusoidal time frequencies.
        max_frequency: The highest time frequency (cycles per unit of :math:`t`).

    Example:
        >>> net = UNet((1, 8, 8), context=10, channels=(8, 16))
        >>> net(torch.randn(5, 64), torch.tensor(0.5), torch.eye(10)[:5]).shape
        torch.Size([5, 64])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 8, 8),
        context: int = 0,
        channels: Sequence[int] = (32, 64),
        attention: Sequence[int] | None = None,
        heads: int = 4,
        groups: int = 8,
        frequencies: int = 8,
        max_frequency: float = 16.0,
    ) -> None:
        super().__init__()
        shape, channels = tuple(shape), tuple(channels)
        if len(shape) != 3 or not channels:
            raise ValueError(f"expected shape (C, H, W) and channels, got {shape}, {channels}")
        levels = len(channels)
        if shape[1] % 2 ** (levels - 1) or shape[2] % 2 ** (levels - 1):
            raise ValueError(
                f"expected H and W divisible by 2^{levels - 1} for {levels} levels, got {shape}"
            )
        attention = (levels - 1,) if attention is None else tuple(attention)
        self.shape, self.context, self.features = shape, context, math.prod(shape)
        emb = 4 * channels[0]
        self.time = TimeEmbedding(frequencies, max_frequency)
        self.embed = nn.Sequential(
            nn.Linear(self.time.features, emb), nn.SiLU(), nn.Linear(emb, emb)
        )
        self.classes = nn.Linear(context, emb, bias=False) if context else None

        def heads_at(i: int) -> int | None:
            return heads if i in attention else None

        self.conv_in = nn.Conv2d(shape[0], channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        widths, c = [], channels[0]
        for i, w in enumerate(channels):
            self.down.append(_Level(c, w, emb, groups, heads_at(i)))
            widths.append(w)
            c = w
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList(
            [_ResBlock(c, c, emb, groups), _Attention(c, heads, groups),
             _ResBlock(c, c, emb, groups)]
        )  # fmt: skip
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            self.up.append(_Level(c + widths[i], channels[i], emb, groups, heads_at(i)))
            c = channels[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = _norm(c, groups)
        self.conv_out = nn.Conv2d(c, shape[0], 3, padding=1)

    def forward(self, x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            x: States with shape :math:`(*, C H W)` or images :math:`(*, C, H, W)`.
            t: Times, a scalar or with a shape that broadcasts to :math:`(*)`.
            c: A context with shape :math:`(*, K)`, or ``None``.

        Returns:
            The output, with the shape of ``x``.
        """
        image = x.shape[-3:] == self.shape
        if not image and x.shape[-1:] != (self.features,):
            image_shape = ", ".join(map(str, self.shape))
            raise ValueError(
                f"expected x with shape (*, {self.features}) or (*, {image_shape}), "
                f"got {tuple(x.shape)}"
            )
        batch = x.shape[:-3] if image else x.shape[:-1]
        h = x.reshape(-1, *self.shape)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(batch).reshape(-1)
        e = self.embed(self.time(t))
        if self.classes is not None:
            if c is None:
                raise ValueError(f"this network expects a context with shape (*, {self.context})")
            e = e + self.classes(c.expand(*batch, self.context).reshape(-1, self.context))
        h = self.conv_in(h)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid[2](self.mid[1](self.mid[0](h, e)), e)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), e)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv_out(F.silu(self.norm_out(h)))
        return h.reshape(*batch, *self.shape) if image else h.reshape(*batch, self.features)
