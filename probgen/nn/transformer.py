r"""Causal transformer blocks (GPT), with a key/value cache for incremental decoding."""

from __future__ import annotations

__all__ = ["KVCache", "CausalSelfAttention", "TransformerBlock"]

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class KVCache:
    r"""The keys and values of the positions decoded so far, for one attention layer.

    The buffers are allocated once for the longest sequence and filled in place, one
    position per :meth:`CausalSelfAttention.step`; ``length`` positions are valid.

    Attributes:
        keys: With shape :math:`(N, H, L_{max}, D_h)`.
        values: With shape :math:`(N, H, L_{max}, D_h)`.
        length: The number of positions written.
    """

    keys: Tensor
    values: Tensor
    length: int = 0


class CausalSelfAttention(nn.Module):
    r"""Multi-head self-attention where position :math:`t` attends to positions
    :math:`\leq t`,

    .. math:: \mathrm{softmax}\left(\frac{Q K^T}{\sqrt{D_h}} + M\right) V, \qquad
        M_{ts} = -\infty \ \text{for}\ s > t ,

    through :func:`torch.nn.functional.scaled_dot_product_attention` with
    ``is_causal=True``.

    Arguments:
        features: The model width :math:`D`.
        heads: The number of heads :math:`H` (dividing :math:`D`).

    References:
        | Attention Is All You Need (Vaswani et al., 2017)
        | https://arxiv.org/abs/1706.03762

    Example:
        >>> import torch
        >>> attn = CausalSelfAttention(16, heads=4)
        >>> attn(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, features: int, heads: int = 4) -> None:
        super().__init__()
        if features % heads != 0:
            raise ValueError(f"expected heads dividing features, got {heads} and {features}")
        self.features, self.heads = features, heads
        self.qkv = nn.Linear(features, 3 * features)
        self.out = nn.Linear(features, features)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # (N, T, 3D) -> three (N, H, T, D_h)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        shape = (*h.shape[:-1], self.heads, self.features // self.heads)
        return tuple(t.reshape(shape).transpose(-2, -3) for t in (q, k, v))

    def _merge(self, y: Tensor) -> Tensor:
        return self.out(y.transpose(-2, -3).flatten(-2))

    def forward(self, h: Tensor) -> Tensor:
        r"""
        Arguments:
            h: The inputs, with shape :math:`(N, T, D)`.

        Returns:
            The outputs, with shape :math:`(N, T, D)`.
        """
        q, k, v = self._split(h)
        return self._merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def init_cache(self, n: int, length: int, like: Tensor) -> KVCache:
        r"""An empty cache for ``n`` sequences of up to ``length`` positions, on the
        device and in the dtype of ``like``."""
        shape = (n, self.heads, length, self.features // self.heads)
        return KVCache(like.new_zeros(shape), like.new_zeros(shape))

    def step(self, h: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        r"""Attends from the next position to itself and every cached position: one row
        of :meth:`forward` in :math:`O(t D)` work instead of a whole pass.

        Arguments:
            h: The input at position :math:`t` = ``cache.length``, with shape :math:`(N, D)`.
            cache: The keys and values of positions :math:`< t`; written in place.

        Returns:
            The output at position :math:`t`, with shape :math:`(N, D)`, and the cache
            holding :math:`t + 1` positions.
        """
        t = cache.length
        if t >= cache.keys.shape[-2]:
            raise ValueError(f"the cache holds {cache.keys.shape[-2]} positions, all used")
        q, k, v = self._split(h.unsqueeze(-2))
        cache.keys[:, :, t : t + 1] = k
        cache.values[:, :, t : t + 1] = v
        # No mask: every cached position precedes the query.
        y = F.scaled_dot_product_attention(
            q, cache.keys[:, :, : t + 1], cache.values[:, :, : t + 1]
        )
        return self._merge(y).squeeze(-2), KVCache(cache.keys, cache.values, t + 1)


class TransformerBlock(nn.Module):
    r"""A pre-norm GPT block,

    .. math:: h \leftarrow h + \mathrm{Attn}(\mathrm{LN}(h)), \qquad
        h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h)) .

    Arguments:
        features: The model width :math:`D`.
        heads: The number of attention heads.
        expansion: The MLP's hidden width, as a multiple of :math:`D`.

    References:
        | Language Models are Unsupervised Multitask Learners (Radford et al., 2019)

    Example:
        >>> import torch
        >>> block = TransformerBlock(16, heads=2)
        >>> block(torch.randn(3, 7, 16)).shape
        torch.Size([3, 7, 16])
    """

    def __init__(self, features: int, heads: int = 4, expansion: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(features)
        self.attn = CausalSelfAttention(features, heads)
        self.ln2 = nn.LayerNorm(features)
        self.mlp = nn.Sequential(
            nn.Linear(features, expansion * features),
            nn.GELU(),
            nn.Linear(expansion * features, features),
        )

    def forward(self, h: Tensor) -> Tensor:
        r"""
        Arguments:
            h: With shape :math:`(N, T, D)`.

        Returns:
            With shape :math:`(N, T, D)`.
        """
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))

    def step(self, h: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        r"""The block at the next position only (see :meth:`CausalSelfAttention.step`).

        Arguments:
            h: With shape :math:`(N, D)`.
            cache: This block's key/value cache.

        Returns:
            The output with shape :math:`(N, D)` and the updated cache.
        """
        a, cache = self.attn.step(self.ln1(h), cache)
        h = h + a
        return h + self.mlp(self.ln2(h)), cache
