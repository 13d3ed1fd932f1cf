r"""PixelCNN: a chain-rule distribution over images in raster order.

.. math:: p(x | c) = \prod_{i=1}^{H}\prod_{j=1}^{W}\prod_{k=1}^{C}
    p(x_{k,i,j} | x_{<(i,j)}, x_{<k,i,j}, c) .

Masked convolutions give every conditional in one pass; sampling is ancestral, pixel by
pixel and channel by channel.
"""

from __future__ import annotations

__all__ = ["PixelCNN"]

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Size, Tensor

from ..nn.masked_conv import GatedMaskedConv2d, MaskedConv2d, channel_groups
from .autoregressive import Autoregressive
from .elements import BernoulliFamily, ElementFamily


def _raster_order(c: int, h: int, w: int) -> Tensor:
    # Pixel by pixel in raster order, channel by channel within a pixel, as flat indices
    # of a (C, H, W) tensor.
    idx = torch.arange(c * h * w).reshape(c, h, w)
    return idx.permute(1, 2, 0).reshape(-1)


class PixelCNN(Autoregressive):
    r"""A PixelCNN over images with shape :math:`(C, H, W)`.

    With ``gated=True`` (the default), the gated PixelCNN: vertical and horizontal stacks
    of :class:`~probgen.nn.GatedMaskedConv2d`, whose receptive field has no blind spot.
    With ``gated=False``, the original PixelCNN: a type-A masked convolution followed by
    residual type-B masked convolutions (:class:`~probgen.nn.MaskedConv2d`), which cannot
    see a triangle of earlier pixels to the upper right (the blind spot). Both end in
    :math:`1 \times 1` type-B convolutions to the per-element parameters; channels are
    generated in order within a pixel through channel-group masks.

    Discrete values enter the network rescaled to :math:`[-1, 1]`. A context
    :math:`c` adds a learned bias to every gate (conditional PixelCNN).

    Arguments:
        shape: The image shape :math:`(C, H, W)`.
        family: The per-element family (Bernoulli by default; e.g.
            :class:`~probgen.distributions.elements.CategoricalFamily` or
            :class:`~probgen.distributions.elements.LogisticMixtureFamily` for levels).
        context: The number of context features (0 when unconditional).
        channels: The feature channels :math:`F` (divisible by :math:`C`).
        layers: The number of masked (or gated) layers.
        kernel_size: The odd kernel size of the masked convolutions.
        gated: Whether to use the gated stacks (no blind spot).

    References:
        | Pixel Recurrent Neural Networks (van den Oord et al., 2016)
        | https://arxiv.org/abs/1601.06759
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328

    Example:
        >>> model = PixelCNN((1, 4, 4), channels=8, layers=2)
        >>> d = model()
        >>> d.log_prob(d.sample((2,))).shape
        torch.Size([2])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 8, 8),
        family: ElementFamily | None = None,
        context: int = 0,
        channels: int = 64,
        layers: int = 5,
        kernel_size: int = 3,
        gated: bool = True,
    ) -> None:
        super().__init__()
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"expected an image shape (C, H, W), got {tuple(shape)}")
        if layers < 1:
            raise ValueError(f"expected layers >= 1, got {layers}")
        c_in = shape[0]
        self.family = family if family is not None else BernoulliFamily()
        self.event_shape, self.context, self.gated = Size(shape), context, gated
        values = self.family.values
        self.scale = 2.0 / (values - 1) if values else 1.0
        self.shift = -1.0 if values else 0.0
        self.register_buffer("order", _raster_order(*shape))
        p = self.family.params
        if gated:
            self.layers = nn.ModuleList(
                GatedMaskedConv2d(
                    c_in if i == 0 else channels, channels, kernel_size, i == 0, c_in, context
                )
                for i in range(layers)
            )
        else:
            self.layers = nn.ModuleList(
                MaskedConv2d(
                    c_in if i == 0 else channels,
                    channels,
                    kernel_size,
                    "A" if i == 0 else "B",
                    c_in,
                )
                for i in range(layers)
            )
            self.cond = nn.Linear(context, layers * channels, bias=False) if context else None
        self.head = nn.ModuleList(
            [
                MaskedConv2d(channels, channels, 1, "B", c_in),
                MaskedConv2d(
                    channels,
                    c_in * p,
                    1,
                    "B",
                    in_groups=channel_groups(channels, c_in),
                    out_groups=channel_groups(c_in * p, c_in),
                ),
            ]
        )

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        x = x * self.scale + self.shift
        if self.gated:
            v = h = x
            for layer in self.layers:
                v, h = layer(v, h, c)
        else:
            bias = None
            if self.cond is not None and c is not None:
                bias = self.cond(c).unflatten(-1, (len(self.layers), -1))
            for i, layer in enumerate(self.layers):
                # The first layer (type A) maps the image to features; the rest are residual.
                out = layer(x if i == 0 else F.relu(h))
                if bias is not None:
                    out = out + bias[:, i, :, None, None]
                h = out if i == 0 else h + out
        y = self.head[1](F.relu(self.head[0](F.relu(h))))
        n, (ch, hh, ww) = len(x), self.event_shape
        return y.reshape(n, ch, -1, hh, ww).permute(0, 1, 3, 4, 2)
