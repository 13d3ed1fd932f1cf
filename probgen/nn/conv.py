r"""Convolutional blocks for image hyper-networks (coupling layers of image flows)."""

from __future__ import annotations

__all__ = ["ConvNet"]

from collections.abc import Sequence

import torch.nn as nn
from torch import Tensor


class ConvNet(nn.Sequential):
    r"""A shape-preserving convolutional network :math:`(C_{in}, H, W) \to (C_{out}, H, W)`.

    The first and the last convolutions have a ``kernel_size`` receptive field and the
    ones in between are :math:`1 \times 1`, as in Glow's coupling networks
    (:math:`3 \times 3 \to 1 \times 1 \to 3 \times 3`). Padding keeps the spatial size.
    Inputs may carry any number of leading batch dimensions.

    Arguments:
        in_channels: The number of input channels :math:`C_{in}`.
        out_channels: The number of output channels :math:`C_{out}`.
        hidden: The channel widths of the hidden layers.
        kernel_size: The (odd) size of the first and last kernels.
        activation: The activation constructor (default :class:`torch.nn.ReLU`).
        zero_init: Whether the last layer starts at zero, so that a coupling's
            hyper-network outputs zero parameters (the identity transform) at first.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> import torch
        >>> net = ConvNet(2, 4, hidden=(16, 16))
        >>> net(torch.randn(5, 3, 2, 8, 8)).shape
        torch.Size([5, 3, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = False,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"expected an odd kernel_size, got {kernel_size}")
        sizes = [in_channels, *hidden, out_channels]
        layers: list[nn.Module] = []
        n = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            k = kernel_size if i in (0, n - 1) else 1
            layers.append(nn.Conv2d(a, b, k, padding=k // 2))
            if i < n - 1:
                layers.append(activation())
        super().__init__(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: The input, with shape :math:`(*, C_{in}, H, W)`.

        Returns:
            The output, with shape :math:`(*, C_{out}, H, W)`.
        """
        batch = x.shape[:-3]
        y = super().forward(x.reshape(-1, *x.shape[-3:]))
        return y.reshape(*batch, *y.shape[-3:])
