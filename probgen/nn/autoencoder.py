r"""Encoder and decoder blocks for autoencoders (plain, denoising, sparse, variational,
vector-quantised), and the vector quantiser of VQ-VAE.

The blocks are plain networks with no probability in them. Each takes inputs with any
number of leading batch dimensions and says its shapes (``in_shape``, ``out_shape``), so
that a model can check that an encoder, a decoder and a quantiser fit together:

- :class:`MLPEncoder` / :class:`MLPDecoder`: images (or vectors) to features and back;
- :class:`ConvEncoder` / :class:`ConvDecoder`: small images (8x8 digits) to a feature
  vector or a coarser feature grid (stride-2 convolutions) and back (stride-2 transposed
  convolutions);
- :class:`VectorQuantizer`: the nearest-code bottleneck of VQ-VAE, with straight-through
  gradients, the codebook and commitment losses, optional EMA codebook updates and
  dead-code restarts; :func:`codebook_usage` reports how many codes are in use.
"""

from __future__ import annotations

__all__ = [
    "MLPEncoder",
    "MLPDecoder",
    "ConvEncoder",
    "ConvDecoder",
    "VectorQuantizer",
    "Quantized",
    "CodebookUsage",
    "codebook_usage",
]

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
from torch import LongTensor, Size, Tensor

from .mlp import MLP


def _check_shape(shape: Sequence[int], what: str) -> Size:
    shape = Size(shape)
    if len(shape) == 0 or min(shape) < 1:
        raise ValueError(f"expected a non-empty {what} of positive sizes, got {tuple(shape)}")
    return shape


def _apply(net: nn.Module, x: Tensor, in_shape: Size, name: str) -> Tensor:
    # Flatten leading batch dimensions into one for the network, then restore them.
    k = len(in_shape)
    if x.dim() < k or x.shape[x.dim() - k :] != in_shape:
        raise ValueError(
            f"{name} expected input with shape (*, {', '.join(map(str, in_shape))}), got "
            f"{tuple(x.shape)}"
        )
    batch = x.shape[: x.dim() - k]
    y = net(x.reshape(-1, *in_shape))
    return y.reshape(*batch, *y.shape[1:])


class MLPEncoder(nn.Module):
    r"""A multi-layer perceptron from inputs of any shape to a feature vector,
    :math:`h = \mathrm{MLP}(\mathrm{flatten}(x))`.

    Arguments:
        in_shape: The input shape, e.g. :math:`(1, 8, 8)`.
        out_features: The number of output features (e.g. a code size, or twice a VAE's
            latent dimension for a mean and a scale).
        hidden: The widths of the hidden layers.
        activation: The activation constructor.

    Example:
        >>> enc = MLPEncoder((1, 8, 8), 16, hidden=(64,))
        >>> enc(torch.randn(5, 3, 1, 8, 8)).shape
        torch.Size([5, 3, 16])
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_features: int,
        hidden: Sequence[int] = (256, 128),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.in_shape = _check_shape(in_shape, "in_shape")
        self.out_shape = Size((out_features,))
        self.net = MLP(self.in_shape.numel(), out_features, hidden, activation)

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: Inputs with shape :math:`(*, *I)`, :math:`I` the input shape.

        Returns:
            Features with shape :math:`(*, F)`.
        """
        return _apply(lambda v: self.net(v.flatten(1)), x, self.in_shape, "MLPEncoder")


class MLPDecoder(nn.Module):
    r"""A multi-layer perceptron from a feature vector to outputs of any shape.

    Arguments:
        in_features: The number of input features.
        out_shape: The output shape, e.g. :math:`(1, 8, 8)` for an image, or
            :math:`(C P, H, W)` for :math:`P` likelihood parameters per pixel.
        hidden: The widths of the hidden layers.
        activation: The activation constructor.
        output: An optional module applied to the output (e.g. ``nn.Sigmoid()``).

    Example:
        >>> dec = MLPDecoder(16, (1, 8, 8), hidden=(64,))
        >>> dec(torch.randn(5, 16)).shape
        torch.Size([5, 1, 8, 8])
    """

    def __init__(
        self,
        in_features: int,
        out_shape: Sequence[int],
        hidden: Sequence[int] = (128, 256),
        activation: type[nn.Module] = nn.ReLU,
        output: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = Size((in_features,))
        self.out_shape = _check_shape(out_shape, "out_shape")
        self.net = MLP(in_features, self.out_shape.numel(), hidden, activation)
        self.output = output if output is not None else nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        r"""
        Arguments:
            h: Features with shape :math:`(*, F)`.

        Returns:
            Outputs with shape :math:`(*, *O)`, :math:`O` the output shape.
        """

        def net(v: Tensor) -> Tensor:
            return self.output(self.net(v).reshape(-1, *self.out_shape))

        return _apply(net, h, self.in_shape, "MLPDecoder")


def _check_head(a: int | None, b: int | None, names: str) -> None:
    if (a is None) == (b is None):
        raise ValueError(f"give exactly one of {names}, got {a} and {b}")


def _check_levels(hidden: Sequence[int], steps: int, what: str) -> None:
    if len(hidden) < 1 or min(hidden) < 1:
        raise ValueError(f"expected at least one positive hidden width, got {tuple(hidden)}")
    if not 0 <= steps <= len(hidden) - 1:
        raise ValueError(
            f"{what} happens between hidden layers: expected 0 <= {what} <= "
            f"len(hidden) - 1 = {len(hidden) - 1}, got {steps}"
        )


def _check_image(shape: Size, kernel_size: int, steps: int, what: str) -> tuple[int, int, int]:
    # An image shape (C, H, W), an odd kernel, and H, W that `steps` halvings divide; returns
    # C and the size of the grid after them.
    if len(shape) != 3:
        raise ValueError(f"expected an image shape (C, H, W), got {tuple(shape)}")
    if kernel_size % 2 != 1:
        raise ValueError(f"expected an odd kernel_size, got {kernel_size}")
    c, h, w = shape
    if h % 2**steps or w % 2**steps:
        raise ValueError(f"{steps} {what} need H and W divisible by {2**steps}, got {(h, w)}")
    return c, h // 2**steps, w // 2**steps


class ConvEncoder(nn.Module):
    r"""A small convolutional encoder from an image to a feature grid or a feature vector.

    A :math:`k \times k` convolution maps the image to ``hidden[0]`` channels; each next
    width follows a convolution, the first ``downsample`` of them :math:`4 \times 4` with
    stride 2 (halving the height and width), the others :math:`k \times k`; ReLUs
    in between. The head is a :math:`1 \times 1` convolution to ``out_channels`` (a grid
    of shape :math:`(C_{out}, H / 2^d, W / 2^d)`, e.g. VQ-VAE's code vectors) or a linear
    layer on the flattened grid to ``out_features``. No normalisation layers: train and
    eval modes agree.

    Arguments:
        in_shape: The image shape :math:`(C, H, W)`; :math:`H` and :math:`W` divisible by
            :math:`2^d`.
        out_channels: The channels of the output grid.
        out_features: The size of the output vector (give one of the two).
        hidden: The channel widths.
        downsample: The number :math:`d` of stride-2 convolutions.
        kernel_size: The odd size :math:`k` of the other convolutions.
        activation: The activation constructor.

    Example:
        >>> ConvEncoder((1, 8, 8), out_channels=16, hidden=(32, 64)).out_shape
        torch.Size([16, 4, 4])
        >>> enc = ConvEncoder((1, 8, 8), out_features=10, hidden=(8, 16), downsample=0)
        >>> enc(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 8, 8),
        out_channels: int | None = None,
        out_features: int | None = None,
        hidden: Sequence[int] = (32, 64),
        downsample: int = 1,
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.in_shape = _check_shape(in_shape, "in_shape")
        _check_head(out_channels, out_features, "out_channels and out_features")
        _check_levels(hidden, downsample, "downsample")
        c, h, w = _check_image(self.in_shape, kernel_size, downsample, "stride-2 convolutions")
        layers: list[nn.Module] = [nn.Conv2d(c, hidden[0], kernel_size, padding=kernel_size // 2)]
        for i, (a, b) in enumerate(zip(hidden[:-1], hidden[1:], strict=True)):
            layers.append(activation())
            if i < downsample:
                layers.append(nn.Conv2d(a, b, 4, stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2))
        layers.append(activation())
        if out_channels is not None:
            layers.append(nn.Conv2d(hidden[-1], out_channels, 1))
            self.out_shape = Size((out_channels, h, w))
        else:
            layers += [nn.Flatten(), nn.Linear(hidden[-1] * h * w, out_features)]
            self.out_shape = Size((out_features,))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: Images with shape :math:`(*, C, H, W)`.

        Returns:
            Features with shape :math:`(*, *O)`, :math:`O` the output shape.
        """
        return _apply(self.net, x, self.in_shape, "ConvEncoder")


class ConvDecoder(nn.Module):
    r"""A small convolutional decoder from a feature grid or a feature vector to an image,
    the mirror of :class:`ConvEncoder`.

    The input (a grid of ``in_channels`` at :math:`(H / 2^u, W / 2^u)`, or a vector of
    ``in_features`` mapped linearly to such a grid of ``hidden[0]`` channels) goes through
    a :math:`k \times k` convolution (grid input) then one layer per next width, the last
    ``upsample`` of them :math:`4 \times 4` transposed convolutions with stride 2
    (doubling the height and width), the others :math:`k \times k`; ReLUs in between; a
    :math:`k \times k` convolution to the output channels, and ``output``.

    Arguments:
        out_shape: The output shape :math:`(C_{out}, H, W)`: the image, or :math:`C P`
            channels for :math:`P` likelihood parameters per pixel.
        in_channels: The channels of an input grid.
        in_features: The size of an input vector (give one of the two).
        hidden: The channel widths.
        upsample: The number :math:`u` of stride-2 transposed convolutions.
        kernel_size: The odd size :math:`k` of the other convolutions.
        activation: The activation constructor.
        output: An optional module applied to the output (e.g. ``nn.Sigmoid()``).

    Example:
        >>> dec = ConvDecoder((1, 8, 8), in_channels=16, hidden=(64, 32))
        >>> dec.in_shape, dec(torch.randn(3, 16, 4, 4)).shape
        (torch.Size([16, 4, 4]), torch.Size([3, 1, 8, 8]))
    """

    def __init__(
        self,
        out_shape: Sequence[int] = (1, 8, 8),
        in_channels: int | None = None,
        in_features: int | None = None,
        hidden: Sequence[int] = (64, 32),
        upsample: int = 1,
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU,
        output: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.out_shape = _check_shape(out_shape, "out_shape")
        _check_head(in_channels, in_features, "in_channels and in_features")
        _check_levels(hidden, upsample, "upsample")
        c, h, w = _check_image(
            self.out_shape, kernel_size, upsample, "stride-2 transposed convolutions"
        )
        pad = kernel_size // 2
        layers: list[nn.Module]
        if in_channels is not None:
            self.in_shape = Size((in_channels, h, w))
            layers = [nn.Conv2d(in_channels, hidden[0], kernel_size, padding=pad)]
        else:
            self.in_shape = Size((in_features,))
            layers = [
                nn.Linear(in_features, hidden[0] * h * w),
                nn.Unflatten(1, (hidden[0], h, w)),
            ]
        n = len(hidden) - 1
        for i, (a, b) in enumerate(zip(hidden[:-1], hidden[1:], strict=True)):
            layers.append(activation())
            if i >= n - upsample:
                layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(a, b, kernel_size, padding=pad))
        layers += [activation(), nn.Conv2d(hidden[-1], c, kernel_size, padding=pad)]
        if output is not None:
            layers.append(output)
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        r"""
        Arguments:
            h: Features with shape :math:`(*, *I)`, :math:`I` the input shape.

        Returns:
            Outputs with shape :math:`(*, C_{out}, H, W)`.
        """
        return _apply(self.net, h, self.in_shape, "ConvDecoder")


# Vector quantisation


class Quantized(NamedTuple):
    r"""What :class:`VectorQuantizer` returns.

    Attributes:
        z_q: The quantised vectors with straight-through gradients,
            :math:`z_e + \mathrm{sg}(e_{k} - z_e)`: the value of the nearest codes, the
            gradient of the identity with respect to :math:`z_e`; shape of :math:`z_e`,
            :math:`(N, D, *S)`.
        indices: The nearest codes :math:`k`, long, with shape :math:`(N, *S)`.
        codebook_loss: :math:`\|\mathrm{sg}(z_e) - e_k\|^2` summed over the positions of
            each example, shape :math:`(N,)`; gradients reach only the codebook (zero,
            with no gradient, for EMA codebooks, which are not trained by gradients).
        commitment_loss: :math:`\beta \|z_e - \mathrm{sg}(e_k)\|^2` summed likewise,
            shape :math:`(N,)`; gradients reach only :math:`z_e`.
    """

    z_q: Tensor
    indices: LongTensor
    codebook_loss: Tensor
    commitment_loss: Tensor

    @property
    def loss(self) -> Tensor:
        r"""The vector-quantisation loss per example, codebook plus commitment, :math:`(N,)`."""
        return self.codebook_loss + self.commitment_loss


class CodebookUsage(NamedTuple):
    r"""How a batch of indices uses a codebook of :math:`K` codes.

    Attributes:
        counts: How often each code is used, with shape :math:`(K,)`.
        used: The fraction of codes used at least once.
        perplexity: :math:`\exp(-\sum_k p_k \log p_k)` of the empirical frequencies
            :math:`p_k`: :math:`K` when every code is equally used, 1 when one code is.
    """

    counts: Tensor
    used: float
    perplexity: float


def codebook_usage(indices: Tensor, codes: int) -> CodebookUsage:
    r"""The usage of a codebook: counts, the fraction of codes used, and the perplexity.

    Arguments:
        indices: Code indices, any shape, values in :math:`\{0, \dots, K - 1\}`.
        codes: The codebook size :math:`K`.

    Returns:
        A :class:`CodebookUsage`.

    Example:
        >>> codebook_usage(torch.tensor([0, 1, 2, 3]), 8).perplexity
        4.0
    """
    counts = torch.bincount(indices.reshape(-1).long(), minlength=codes)[:codes].double()
    p = counts / counts.sum().clamp(min=1)
    entropy = -(p * p.clamp(min=1e-300).log()).sum()
    return CodebookUsage(counts, float((counts > 0).double().mean()), float(entropy.exp()))


class VectorQuantizer(nn.Module):
    r"""The vector-quantisation bottleneck of VQ-VAE: each vector :math:`z_e` becomes its
    nearest code of a codebook :math:`\{e_1, \dots, e_K\} \subset \mathbb{R}^D`,

    .. math:: k = \arg\min_j \|z_e - e_j\|_2, \qquad z_q = e_k ,

    with straight-through gradients (the decoder's gradient at :math:`z_q` is copied to
    :math:`z_e`) and the two losses of van den Oord et al. (2017), eq. (3),

    .. math:: \|\mathrm{sg}[z_e] - e_k\|_2^2 + \beta \|z_e - \mathrm{sg}[e_k]\|_2^2

    (codebook, then commitment; sg stops gradients). With ``ema=True`` the codebook is not
    trained by gradients but by exponential moving averages of the assignments (their
    appendix A.1, eqs. 6-8, with Laplace smoothing of the counts),

    .. math:: N_k \leftarrow \gamma N_k + (1 - \gamma) n_k, \quad
        m_k \leftarrow \gamma m_k + (1 - \gamma) \textstyle\sum_{j: k_j = k} z_{e,j}, \quad
        e_k = m_k / \tilde N_k, \quad
        \tilde N_k = \frac{N_k + \epsilon}{\sum_l N_l + K \epsilon} \sum_l N_l ,

    applied in the forward pass in training mode (like batch normalisation's statistics),
    after the batch was quantised with the previous codebook.

    Dead codes: the quantiser keeps a running share of assignments per code (an EMA with
    the same ``decay``, starting uniform, updated in training mode). With ``restart > 0``,
    codes whose share falls below ``restart / K`` are moved to randomly chosen encoder
    outputs of the batch (and their share reset to :math:`1/K`), so that no code stays
    unused for long.

    Vectors are along dimension 1, as convolutions give them: :math:`z_e` has shape
    :math:`(N, D, *S)` for a grid :math:`S` of positions (:math:`(N, D)` for one code per
    example).

    Arguments:
        codes: The codebook size :math:`K`.
        dim: The code dimension :math:`D`.
        beta: The commitment weight :math:`\beta` (0.25 in the paper).
        ema: Whether the codebook follows EMAs instead of gradients.
        decay: The EMA decay :math:`\gamma` (EMA codebook and usage shares).
        eps: The Laplace smoothing :math:`\epsilon` of the EMA counts.
        restart: The dead-code threshold, as a fraction of the uniform share (0 disables).

    References:
        | Neural Discrete Representation Learning (van den Oord et al., 2017)
        | https://arxiv.org/abs/1711.00937

    Example:
        >>> vq = VectorQuantizer(8, 4)
        >>> q = vq(torch.randn(2, 4, 3, 3))
        >>> q.z_q.shape, q.indices.shape, q.loss.shape
        (torch.Size([2, 4, 3, 3]), torch.Size([2, 3, 3]), torch.Size([2]))
    """

    def __init__(
        self,
        codes: int,
        dim: int,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart: float = 0.0,
    ) -> None:
        super().__init__()
        if codes < 2 or dim < 1:
            raise ValueError(f"expected codes >= 2 and dim >= 1, got {codes} and {dim}")
        if beta < 0:
            raise ValueError(f"expected beta >= 0, got {beta}")
        if not 0 <= decay < 1:
            raise ValueError(f"expected 0 <= decay < 1, got {decay}")
        if eps <= 0 or restart < 0:
            raise ValueError(f"expected eps > 0 and restart >= 0, got {eps} and {restart}")
        self.codes, self.dim, self.beta = codes, dim, float(beta)
        self.ema, self.decay, self.eps, self.restart = ema, float(decay), float(eps), restart
        init = torch.empty(codes, dim).uniform_(-1 / math.sqrt(dim), 1 / math.sqrt(dim))
        if ema:
            self.register_buffer("codebook", init)
            # N_k = 1 and m_k = e_k: consistent with the initial codes, so that a code no
            # batch has used yet keeps its value instead of collapsing to 0.
            self.register_buffer("cluster_size", torch.ones(codes))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("share", torch.full((codes,), 1.0 / codes))

    def extra_repr(self) -> str:
        return f"codes={self.codes}, dim={self.dim}, beta={self.beta}, ema={self.ema}"

    def _flat(self, z: Tensor) -> Tensor:
        if z.dim() < 2 or z.shape[1] != self.dim:
            raise ValueError(
                f"expected vectors along dimension 1, shape (N, {self.dim}, *S), got "
                f"{tuple(z.shape)}"
            )
        return z.movedim(1, -1).reshape(-1, self.dim)

    def nearest(self, z_e: Tensor) -> LongTensor:
        r"""The index of the nearest code of each vector (no gradient, no side effect).

        Arguments:
            z_e: Vectors with shape :math:`(N, D, *S)`.

        Returns:
            The indices, with shape :math:`(N, *S)`.
        """
        flat = self._flat(z_e).detach()
        e = self.codebook.detach().to(flat.dtype)
        # ||z||^2 is the same for every code: the argmin needs -2 z.e + ||e||^2 only.
        d = e.square().sum(-1) - 2 * flat @ e.T
        return d.argmin(-1).reshape(z_e.shape[0], *z_e.shape[2:])

    def lookup(self, indices: Tensor) -> Tensor:
        r"""The codes of indices, vectors along dimension 1 (differentiable in the codebook).

        Arguments:
            indices: Indices with shape :math:`(N, *S)` (integers, any dtype).

        Returns:
            The codes :math:`e_k`, with shape :math:`(N, D, *S)`.
        """
        indices = indices.long()
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codes):
            raise ValueError(f"expected indices in [0, {self.codes - 1}]")
        return self.codebook[indices].movedim(-1, 1)

    def forward(self, z_e: Tensor) -> Quantized:
        r"""Quantises :math:`z_e`; in training mode, updates the EMA codebook, the usage
        shares and dead codes afterwards.

        Arguments:
            z_e: Encoder outputs with shape :math:`(N, D, *S)`.

        Returns:
            A :class:`Quantized` (straight-through vectors, indices, the two losses).
        """
        indices = self.nearest(z_e)
        e = self.lookup(indices).to(z_e.dtype)
        z_q = z_e + (e - z_e).detach()
        commitment = self.beta * (z_e - e.detach()).square().flatten(1).sum(-1)
        if self.ema:
            codebook = z_e.new_zeros(z_e.shape[0])
        else:
            codebook = (z_e.detach() - e).square().flatten(1).sum(-1)
        if self.training:
            self._update(self._flat(z_e).detach(), indices.reshape(-1))
        return Quantized(z_q, indices, codebook, commitment)

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor) -> None:
        one_hot = nn.functional.one_hot(indices, self.codes).to(flat.dtype)
        counts = one_hot.sum(0)
        g = self.decay
        self.share.mul_(g).add_((1 - g) * counts / max(len(indices), 1))
        if self.ema:
            # 1. N_k and m_k by EMA (eqs. 6-7); 2. Laplace-smoothed counts; 3. e_k (eq. 8).
            self.cluster_size.mul_(g).add_((1 - g) * counts)
            self.embed_sum.mul_(g).add_((1 - g) * one_hot.T @ flat)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codes * self.eps) * total
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.restart > 0:
            dead = self.share < self.restart / self.codes
            n = int(dead.sum())
            if n:
                pick = torch.randint(len(flat), (n,), device=flat.device)
                self.codebook.data[dead] = flat[pick].to(self.codebook.dtype)
                self.share[dead] = 1.0 / self.codes
                if self.ema:
                    self.cluster_size[dead] = 1.0
                    self.embed_sum[dead] = self.codebook[dead]
