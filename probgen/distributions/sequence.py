r"""Autoregressive sequence models over discrete values: WaveNet and a GPT-style causal
transformer.

Both read the sequence shifted right by one behind a start token,
:math:`(s, x_1, \dots, x_{L-1})`, so that output :math:`t` of a causal network is the
conditional :math:`p(x_t | x_{<t}, c)`. Both sample incrementally: WaveNet through the
cached convolution queues of fast WaveNet, the transformer through a key/value cache, so
that a sequence of length :math:`L` costs :math:`L` single-position steps instead of
:math:`L` passes over the whole sequence. A model is built for a sequence length; calling
it with ``length=`` gives the distribution of sequences of another length (up to the
transformer's ``max_length``).
"""

from __future__ import annotations

__all__ = ["WaveNet", "Transformer"]

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Size, Tensor

from ..nn.causal_conv import WaveNetBlock
from ..nn.transformer import KVCache, TransformerBlock
from .autoregressive import Autoregressive, ChainRule
from .elements import CategoricalFamily, ElementFamily


class _Sequence(Autoregressive):
    # Shared by the sequence models: a discrete family, a start token, a length per call.

    def _setup(self, length: int, family: ElementFamily, context: int) -> int:
        if length < 1 or context < 0:
            raise ValueError(f"expected length >= 1 and context >= 0, got {length}, {context}")
        if family.values is None:
            raise ValueError(
                f"{type(self).__name__} reads discrete values; {family!r} is continuous"
            )
        self.family, self.context = family, context
        self.length = length
        self.event_shape = Size((length,))
        self.register_buffer("order", torch.arange(length), persistent=False)
        return family.values

    def _shifted(self, x: Tensor) -> Tensor:
        # (s, x_1, ..., x_{L-1}) with s = K, the extra start token.
        start = x.new_full((len(x), 1), self.family.values)
        return torch.cat([start, x[:, :-1]], dim=1).long()

    def _token(self, x_prev: Tensor | None, n: int, like: Tensor) -> Tensor:
        if x_prev is None:
            return torch.full((n,), self.family.values, dtype=torch.long, device=like.device)
        return x_prev.long()

    def forward(self, c: Tensor | None = None, length: int | None = None) -> ChainRule:
        r"""
        Arguments:
            c: A context with shape :math:`(*B, C)`, or ``None``.
            length: The sequence length (the model's by default).

        Returns:
            The chain rule over sequences of that length, with ``batch_shape`` B.
        """
        self.check_context(c)
        length = self.length if length is None else length
        self._check_length(length)
        like = self._like()
        return ChainRule(
            self.conditionals,
            self.family,
            (length,),
            c,
            torch.arange(length),
            self,
            dtype=like.dtype,
            device=like.device,
        )

    def _check_length(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"expected length >= 1, got {length}")


class WaveNet(_Sequence):
    r"""WaveNet: stacks of dilated causal convolutions with gated activations, residual
    and skip connections, and a softmax over the values of each sample,

    .. math:: p(x | c) = \prod_{t=1}^L p(x_t | x_{<t}, c) .

    Audio is modelled as 8-bit mu-law codes (:func:`probgen.data.mu_law_encode`) with
    the 256-way :class:`~probgen.distributions.elements.CategoricalFamily` by default. A
    context is global conditioning (a bias on every gate). The receptive field is
    :math:`1 + (k - 1) \sum_l d_l` inputs.

    Sampling steps one time step at a time through each layer's queue of past inputs
    (fast WaveNet), :math:`O(\text{layers})` work per sample instead of a pass over the
    sequence.

    Arguments:
        length: The sequence length :math:`L`.
        family: The per-sample family over discrete values.
        context: The number of global conditioning features (0 for none).
        channels: The residual channels.
        skip: The skip channels.
        dilations: The dilation of each layer (by default 1, 2, ..., 128, twice).
        kernel_size: The causal convolutions' kernel size :math:`k`.

    References:
        | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
        | https://arxiv.org/abs/1609.03499
        | Fast Wavenet Generation Algorithm (Paine et al., 2016)
        | https://arxiv.org/abs/1611.09482

    Example:
        >>> model = WaveNet(32, CategoricalFamily(16), channels=8, skip=8, dilations=(1, 2, 4))
        >>> model().sample((2,)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        length: int,
        family: ElementFamily | None = None,
        context: int = 0,
        channels: int = 32,
        skip: int = 64,
        dilations: Sequence[int] = tuple(2**i for i in range(8)) * 2,
        kernel_size: int = 2,
    ) -> None:
        super().__init__()
        values = self._setup(length, family or CategoricalFamily(256), context)
        self.embed = nn.Embedding(values + 1, channels)
        last = len(dilations) - 1
        self.blocks = nn.ModuleList(
            WaveNetBlock(channels, skip, kernel_size, d, context, residual=i < last)
            for i, d in enumerate(dilations)
        )
        self.out1 = nn.Conv1d(skip, skip, 1)
        self.out2 = nn.Conv1d(skip, self.family.params, 1)

    @property
    def receptive_field(self) -> int:
        r"""The number of inputs each output sees (the start token included)."""
        return 1 + sum(b.conv.span for b in self.blocks)

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.embed(self._shifted(x)).transpose(1, 2)  # (N, channels, L)
        total = 0
        for block in self.blocks:
            h, s = block(h, c)
            total = total + s
        y = self.out2(F.relu(self.out1(F.relu(total))))
        return y.transpose(1, 2)

    def init_state(self, n: int, c: Tensor | None, size: int) -> tuple[list[Tensor], int, Any]:
        r"""Zero queues (the causal padding) for every layer, time 0 and the context."""
        like = self.embed.weight
        return [b.conv.init_queue(n, like) for b in self.blocks], 0, c

    def step(
        self, x_prev: Tensor | None, state: tuple[list[Tensor], int, Any]
    ) -> tuple[Tensor, Any]:
        r"""The conditional at the next time step (see
        :class:`~probgen.distributions.autoregressive.Incremental`)."""
        queues, t, c = state
        h = self.embed(self._token(x_prev, queues[0].shape[0], queues[0]))
        total = 0
        for block, queue in zip(self.blocks, queues, strict=True):
            h, s = block.step(h, queue, t, c)
            total = total + s
        y = F.linear(F.relu(total), self.out1.weight[:, :, 0], self.out1.bias)
        y = F.linear(F.relu(y), self.out2.weight[:, :, 0], self.out2.bias)
        return y, (queues, t + 1, c)


class Transformer(_Sequence):
    r"""A GPT-style causal transformer over tokens,

    .. math:: p(x | c) = \prod_{t=1}^L \mathrm{softmax}(f_\phi(s, x_{<t}, c)_t)_{x_t} ,

    with token and learned position embeddings, pre-norm blocks of causal self-attention
    (:func:`torch.nn.functional.scaled_dot_product_attention`, ``is_causal=True``) and
    MLPs, and a final layer norm. A context adds a learned vector to every position's
    embedding.

    Sampling uses a key/value cache: each step embeds one token and attends to the cached
    keys and values of the earlier positions.

    Arguments:
        length: The sequence length :math:`L`.
        family: The per-token family over discrete values (the vocabulary size is its
            number of values).
        context: The number of context features (0 when unconditional).
        features: The model width.
        heads: The number of attention heads.
        layers: The number of blocks.
        max_length: The longest sequence the position embeddings cover (``length`` by
            default).

    References:
        | Attention Is All You Need (Vaswani et al., 2017)
        | https://arxiv.org/abs/1706.03762
        | Language Models are Unsupervised Multitask Learners (Radford et al., 2019)

    Example:
        >>> model = Transformer(16, CategoricalFamily(10), features=16, heads=2, layers=1)
        >>> d = model()
        >>> d.log_prob(d.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(
        self,
        length: int,
        family: ElementFamily,
        context: int = 0,
        features: int = 128,
        heads: int = 4,
        layers: int = 4,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        values = self._setup(length, family, context)
        self.max_length = max(length, max_length or 0)
        self.tokens = nn.Embedding(values + 1, features)
        self.positions = nn.Parameter(0.02 * torch.randn(self.max_length, features))
        self.cond = nn.Linear(context, features, bias=False) if context else None
        self.blocks = nn.ModuleList(TransformerBlock(features, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(features)
        self.head = nn.Linear(features, self.family.params)

    def _check_length(self, length: int) -> None:
        if not 1 <= length <= self.max_length:
            raise ValueError(
                f"expected 1 <= length <= max_length = {self.max_length}, got {length}"
            )

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        length = x.shape[-1]
        self._check_length(length)
        h = self.tokens(self._shifted(x)) + self.positions[:length]
        if self.cond is not None and c is not None:
            h = h + self.cond(c).unsqueeze(1)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def init_state(self, n: int, c: Tensor | None, size: int) -> tuple[list[KVCache], Any]:
        r"""Empty key/value caches for ``size`` positions, and the context."""
        self._check_length(size)
        like = self.positions
        return [b.attn.init_cache(n, size, like) for b in self.blocks], c

    def step(self, x_prev: Tensor | None, state: tuple[list[KVCache], Any]) -> tuple[Tensor, Any]:
        r"""The conditional at the next position (see
        :class:`~probgen.distributions.autoregressive.Incremental`)."""
        caches, c = state
        t = caches[0].length
        h = self.tokens(self._token(x_prev, caches[0].keys.shape[0], self.positions))
        h = h + self.positions[t]
        if self.cond is not None and c is not None:
            h = h + self.cond(c)
        new = []
        for block, cache in zip(self.blocks, caches, strict=True):
            h, cache = block.step(h, cache)
            new.append(cache)
        return self.head(self.norm(h)), (new, c)
