r"""Multi-layer perceptrons, plain and masked (MADE)."""

from __future__ import annotations

__all__ = ["MLP", "MaskedLinear", "MaskedMLP"]

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import BoolTensor, LongTensor, Tensor


class MLP(nn.Sequential):
    r"""A multi-layer perceptron :math:`\mathbb{R}^{in} \to \mathbb{R}^{out}`.

    Arguments:
        in_features: The number of input features.
        out_features: The number of output features.
        hidden: The widths of the hidden layers.
        activation: The activation constructor (default :class:`torch.nn.ReLU`).
        zero_init: Whether the last layer starts at zero, so that a hyper-network outputs
            zero parameters (an identity transform) at initialisation.

    Example:
        >>> net = MLP(3, 2, hidden=(16, 16))
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden, out_features]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(_activation(activation))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)


def _activation(activation: type[nn.Module]) -> nn.Module:
    # Every activation here follows a linear layer, whose backward does not need its output:
    # ReLU can overwrite it, which saves a fresh buffer per layer (page faults at large batch).
    return nn.ReLU(inplace=True) if activation is nn.ReLU else activation()


class MaskedLinear(nn.Linear):
    r"""A linear layer whose weight is multiplied by a fixed binary mask,

    .. math:: y = x (W \odot M)^T + b .

    Arguments:
        mask: The binary mask :math:`M`, with shape :math:`(out, in)`.
        bias: Whether the layer has a bias.
    """

    def __init__(self, mask: BoolTensor, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MaskedMLP(nn.Module):
    r"""A masked multi-layer perceptron (MADE) whose outputs respect an ordering.

    Output block :math:`i` (``params`` outputs per feature) depends only on the input
    features :math:`j` with ``order[j] < order[i]`` and on every context feature.

    Arguments:
        features: The number of autoregressive features :math:`D`.
        params: The number of outputs per feature.
        context: The number of context features, appended after the features in the input.
        hidden: The widths of the hidden layers.
        order: The autoregressive order, a permutation of :math:`0, ..., D-1`; the identity
            by default.
        activation: The activation constructor.
        zero_init: Whether the last layer starts at zero.

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509

    Example:
        >>> made = MaskedMLP(4, params=2, hidden=(32,))
        >>> made(torch.randn(7, 4)).shape
        torch.Size([7, 4, 2])
    """

    def __init__(
        self,
        features: int,
        params: int = 1,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
        order: LongTensor | None = None,
        activation: type[nn.Module] = nn.ReLU,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if order is None:
            order = torch.arange(features)
        order = torch.as_tensor(order, dtype=torch.long)
        if sorted(order.tolist()) != list(range(features)):
            raise ValueError(f"order must be a permutation of 0..{features - 1}, got {order}")
        self.features, self.params, self.context = features, params, context
        self.register_buffer("order", order)

        # Degrees: context inputs have degree -1 (they reach every output); hidden units
        # cycle over 0..D-2 so every output i is reached by the inputs ranked below it.
        d_in = torch.cat([order, order.new_full((context,), -1)])
        layers: list[nn.Module] = []
        d_prev = d_in
        for width in hidden:
            d_hid = torch.arange(width) % max(features - 1, 1)
            if features == 1:
                d_hid = torch.full((width,), -1)
            layers += [MaskedLinear(d_hid[:, None] >= d_prev[None, :]), _activation(activation)]
            d_prev = d_hid
        d_out = order.repeat_interleave(params)
        last = MaskedLinear(d_out[:, None] > d_prev[None, :])
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            x: The features, with shape :math:`(*, D)`.
            c: The context, with shape :math:`(*, C)`, or ``None``.

        Returns:
            The outputs, with shape :math:`(*, D, params)`.
        """
        if c is not None:
            x = torch.cat([x, c.expand(*x.shape[:-1], c.shape[-1])], dim=-1)
        y = self.net(x)
        return y.unflatten(-1, (self.features, self.params))
