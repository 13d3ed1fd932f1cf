r"""Generator and discriminator networks for implicit models.

- :class:`ContextMLP`: an MLP over :math:`(x, c)`, the generator or critic of vector data;
- :class:`DCGenerator` / :class:`DCDiscriminator`: DCGAN-style convolutional networks for
  small images (8x8 by default), conditional by a label embedding (a projection
  discriminator);
- :class:`StyleGenerator`: the StyleGAN idea at small scale: a mapping network
  :math:`z \to w`, a learned constant input, per-layer adaptive instance normalisation
  (AdaIN) driven by :math:`w`, and per-pixel noise inputs;
- :func:`spectral_normalize`: spectral normalisation of every linear and convolutional
  layer (torch's parametrisation), the usual way to keep a critic Lipschitz.

Contexts are float tensors with shape :math:`(N, C)` (one-hot labels for a conditional
GAN); an "embedding" is a bias-free linear map of them, which for one-hot labels is exactly
:class:`torch.nn.Embedding`.
"""

from __future__ import annotations

__all__ = [
    "ContextMLP",
    "DCGenerator",
    "DCDiscriminator",
    "StyleGenerator",
    "spectral_normalize",
]

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.nn.utils.parametrizations import spectral_norm

from .mlp import MLP


def spectral_normalize(module: nn.Module) -> nn.Module:
    r"""Spectrally normalises every linear and (transposed) convolutional layer, in place.

    Each weight :math:`W` is replaced by :math:`W / \sigma(W)`, :math:`\sigma` its largest
    singular value estimated by one power iteration per training forward pass, which makes
    each layer (and a network of 1-Lipschitz activations) 1-Lipschitz.

    Arguments:
        module: The network.

    Returns:
        The same network, its layers parametrised.

    References:
        | Spectral Normalization for Generative Adversarial Networks (Miyato et al., 2018)
        | https://arxiv.org/abs/1802.05957

    Example:
        >>> net = spectral_normalize(MLP(2, 1, hidden=(8,)))
        >>> torch.linalg.matrix_norm(net[0].weight, 2) <= 1.5
        tensor(True)
    """
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Conv1d)):
            # Transposed convolutions keep their output channels in dim 1.
            dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            spectral_norm(layer, dim=dim)
    return module


class ContextMLP(nn.Module):
    r"""A multi-layer perceptron over data and an optional context,
    :math:`y = \mathrm{MLP}([x, c])`.

    Arguments:
        in_features: The number of input features (without the context).
        out_features: The number of output features.
        context: The number of context features (0 when unconditional).
        hidden: The widths of the hidden layers.
        activation: The activation constructor.
        output: An optional module applied to the output (e.g. ``nn.Sigmoid()``).

    Example:
        >>> net = ContextMLP(3, 2, context=1, hidden=(8,))
        >>> net(torch.randn(5, 3), torch.randn(5, 1)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        context: int = 0,
        hidden: Sequence[int] = (128, 128),
        activation: type[nn.Module] = nn.ReLU,
        output: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.net = MLP(in_features + context, out_features, hidden, activation)
        self.output = output if output is not None else nn.Identity()

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            x: The input, with shape :math:`(N, in)`.
            c: The context, with shape :math:`(N, C)`, or ``None`` when ``context == 0``.

        Returns:
            The output, with shape :math:`(N, out)`.
        """
        if self.context and c is None:
            raise ValueError(f"expected a context with shape (N, {self.context}), got None")
        if not self.context and c is not None:
            raise ValueError(
                f"this network takes no context (context=0), got shape {tuple(c.shape)}"
            )
        h = x if c is None else torch.cat([x, c.to(x.dtype)], dim=-1)
        return self.output(self.net(h))


def _check_image(shape: Sequence[int]) -> Size:
    shape = Size(shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 4 or shape[1] & (shape[1] - 1):
        raise ValueError(
            f"expected an image shape (C, H, H) with H a power of 2 >= 4, got {tuple(shape)}"
        )
    return shape


def _levels(size: int) -> int:
    # The number of 2x up-samplings from 2x2 to size x size.
    return size.bit_length() - 2


class DCGenerator(nn.Module):
    r"""A DCGAN-style generator for small square images.

    :math:`z` (with the label embedding concatenated) is mapped linearly to a
    :math:`2 \times 2` feature map, then doubled in size by stride-2 transposed
    convolutions, each followed by group normalisation (the same in train and eval modes,
    unlike batch normalisation) and a ReLU, down to ``channels`` maps at full size; a
    :math:`3 \times 3` convolution and ``output`` give the image.

    Arguments:
        latent: The latent dimension :math:`L`.
        shape: The image shape :math:`(C, H, H)`, :math:`H` a power of 2.
        context: The number of context features (one-hot labels), 0 when unconditional.
        channels: The number of feature maps at full resolution (doubled per level up).
        embedding: The size of the context embedding.
        output: The output activation (default: a sigmoid, images in :math:`[0, 1]`).

    References:
        | Unsupervised Representation Learning with Deep Convolutional Generative
          Adversarial Networks (Radford et al., 2015) https://arxiv.org/abs/1511.06434

    Example:
        >>> G = DCGenerator(16, (1, 8, 8), context=10)
        >>> G(torch.randn(4, 16), torch.eye(10)[:4]).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        latent: int,
        shape: Sequence[int] = (1, 8, 8),
        context: int = 0,
        channels: int = 32,
        embedding: int = 16,
        output: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = _check_image(shape)
        self.context, self.latent = context, latent
        levels = _levels(self.event_shape[1])
        width = channels * 2**levels
        self.embed = nn.Linear(context, embedding, bias=False) if context else None
        self.stem = nn.Linear(latent + (embedding if context else 0), width * 4)
        self.norm = nn.GroupNorm(min(8, width), width)
        blocks: list[nn.Module] = []
        for i in range(levels):
            a, b = width // 2**i, width // 2 ** (i + 1)
            blocks += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.GroupNorm(min(8, b), b), nn.ReLU()]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(channels, self.event_shape[0], 3, padding=1)
        self.output = output if output is not None else nn.Sigmoid()
        self._width = width

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            z: Latents with shape :math:`(N, L)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.

        Returns:
            Images with shape :math:`(N, C_{img}, H, H)`.
        """
        h = z if self.embed is None else torch.cat([z, self.embed(c.to(z.dtype))], dim=-1)
        h = torch.relu(self.norm(self.stem(h).view(-1, self._width, 2, 2)))
        return self.output(self.head(self.blocks(h)))


class DCDiscriminator(nn.Module):
    r"""A DCGAN-style discriminator for small square images, conditional by projection.

    Stride-2 convolutions with leaky ReLUs halve the image down to :math:`2 \times 2`;
    the features :math:`h` give the logit

    .. math:: D(x, c) = w^T h + b + \langle E c, h \rangle

    where the last term (present with a context) projects the label embedding :math:`Ec`
    on the features: the projection discriminator.

    With ``minibatch_std = g > 0``, :math:`w^T h` also reads one more feature: the standard
    deviation of the features across each group of :math:`g` samples of the batch,
    averaged over features (ProGAN's minibatch standard deviation). A generator that
    collapses gives batches of low spread, which the critic can then see; without it,
    a per-sample critic cannot tell one good image repeated from a varied batch. The
    logits then depend on the batch the sample is in.

    Arguments:
        shape: The image shape :math:`(C, H, H)`, :math:`H` a power of 2.
        context: The number of context features (one-hot labels), 0 when unconditional.
        channels: The number of feature maps of the first convolution (doubled per level).
        spectral: Whether to spectrally normalise every layer.
        minibatch_std: The group size :math:`g` of the minibatch standard deviation
            feature (0: none; ProGAN uses 4); a batch whose size :math:`g` does not divide
            is one group.

    References:
        | cGANs with Projection Discriminator (Miyato and Koyama, 2018)
        | https://arxiv.org/abs/1802.05637
        | Progressive Growing of GANs for Improved Quality, Stability, and Variation
          (Karras et al., 2018), section 3 https://arxiv.org/abs/1710.10196

    Example:
        >>> D = DCDiscriminator((1, 8, 8), context=10, spectral=True)
        >>> D(torch.rand(4, 1, 8, 8), torch.eye(10)[:4]).shape
        torch.Size([4])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 8, 8),
        context: int = 0,
        channels: int = 32,
        spectral: bool = False,
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        if minibatch_std < 0:
            raise ValueError(f"expected minibatch_std >= 0, got {minibatch_std}")
        self.event_shape = _check_image(shape)
        self.context, self.minibatch_std = context, minibatch_std
        levels = _levels(self.event_shape[1])
        layers: list[nn.Module] = [
            nn.Conv2d(self.event_shape[0], channels, 3, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for i in range(levels):
            layers += [
                nn.Conv2d(channels * 2**i, channels * 2 ** (i + 1), 4, 2, 1),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers, nn.Flatten())
        width = channels * 2**levels * 4
        self.linear = nn.Linear(width + (1 if minibatch_std else 0), 1)
        self.embed = nn.Linear(context, width, bias=False) if context else None
        if spectral:
            spectral_normalize(self)

    def _spread(self, h: Tensor) -> Tensor:
        # (N, 1): the features' standard deviation within each group, averaged over them.
        n = h.shape[0]
        g = self.minibatch_std if n % self.minibatch_std == 0 else n
        std = h.reshape(n // g, g, -1).std(1, correction=0).mean(-1)
        return std.repeat_interleave(g)[:, None]

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            x: Images with shape :math:`(N, C_{img}, H, H)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.

        Returns:
            Logits with shape :math:`(N,)`.
        """
        h = self.features(x)
        features = torch.cat([h, self._spread(h)], -1) if self.minibatch_std else h
        out = self.linear(features).squeeze(-1)
        if self.embed is not None:
            out = out + (self.embed(c.to(h.dtype)) * h).sum(-1)
        return out


class _AdaIN(nn.Module):
    # Instance normalisation whose per-channel scale and bias come from the style w.
    def __init__(self, channels: int, style: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(style, 2 * channels)
        # Start at the identity modulation (scale 1, bias 0).
        nn.init.zeros_(self.affine.weight)
        with torch.no_grad():
            self.affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, h: Tensor, w: Tensor) -> Tensor:
        scale, bias = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return scale * self.norm(h) + bias


class _StyleBlock(nn.Module):
    def __init__(self, a: int, b: int, style: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity()
        self.conv = nn.Conv2d(a, b, 3, padding=1)
        # Per-channel strength of the per-pixel noise, learned from zero.
        self.noise = nn.Parameter(torch.zeros(1, b, 1, 1))
        self.adain = _AdaIN(b, style)

    def forward(self, h: Tensor, w: Tensor) -> Tensor:
        h = self.conv(self.upsample(h))
        h = h + self.noise * torch.randn(
            h.shape[0], 1, *h.shape[2:], dtype=h.dtype, device=h.device
        )
        return self.adain(nn.functional.leaky_relu(h, 0.2), w)


class StyleGenerator(nn.Module):
    r"""A style-based generator at small scale (the StyleGAN architecture's ideas).

    1. A mapping network turns :math:`z` (with the label embedding) into a style
       :math:`w = f(z)`, an intermediate latent that need not follow the data's
       entanglement.
    2. Synthesis starts from a learned constant :math:`2 \times 2` input, not from
       :math:`z`.
    3. Each layer (up-sampling, :math:`3 \times 3` convolution) adds per-pixel Gaussian
       noise scaled per channel (stochastic detail), then adaptive instance normalisation
       :math:`\mathrm{AdaIN}(h, w) = s(w) \frac{h - \mu(h)}{\sigma(h)} + b(w)` injects the
       style.

    The noise inputs make the sample a function of :math:`z` and extra noise: still an
    implicit distribution, reparameterised in both.

    Arguments:
        latent: The latent dimension :math:`L`.
        shape: The image shape :math:`(C, H, H)`, :math:`H` a power of 2.
        context: The number of context features (one-hot labels), 0 when unconditional.
        style: The dimension of :math:`w`.
        channels: The number of feature maps of every layer.
        mapping: The number of hidden layers of the mapping network.
        output: The output activation (default: a sigmoid).

    References:
        | A Style-Based Generator Architecture for Generative Adversarial Networks
          (Karras et al., 2019) https://arxiv.org/abs/1812.04948

    Example:
        >>> G = StyleGenerator(16, (1, 8, 8))
        >>> G(torch.randn(4, 16)).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        latent: int,
        shape: Sequence[int] = (1, 8, 8),
        context: int = 0,
        style: int = 64,
        channels: int = 32,
        mapping: int = 3,
        output: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = _check_image(shape)
        self.context, self.latent = context, latent
        self.embed = nn.Linear(context, style, bias=False) if context else None
        self.mapping = MLP(
            latent + (style if context else 0), style, (style,) * mapping, nn.LeakyReLU
        )
        self.constant = nn.Parameter(torch.randn(1, channels, 2, 2))
        levels = _levels(self.event_shape[1])
        self.blocks = nn.ModuleList(
            [_StyleBlock(channels, channels, style, upsample=False)]
            + [_StyleBlock(channels, channels, style, upsample=True) for _ in range(levels)]
        )
        self.head = nn.Conv2d(channels, self.event_shape[0], 1)
        self.output = output if output is not None else nn.Sigmoid()

    def style(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The style :math:`w = f(z, c)`, with shape :math:`(N, W)`."""
        # z is normalised to the sphere first, as StyleGAN's mapping network does.
        z = z * torch.rsqrt(z.square().mean(-1, keepdim=True) + 1e-8)
        h = z if self.embed is None else torch.cat([z, self.embed(c.to(z.dtype))], dim=-1)
        return self.mapping(h)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        r"""
        Arguments:
            z: Latents with shape :math:`(N, L)`.
            c: Contexts with shape :math:`(N, C)`, or ``None``.

        Returns:
            Images with shape :math:`(N, C_{img}, H, H)`.
        """
        w = self.style(z, c)
        h = self.constant.expand(z.shape[0], -1, -1, -1)
        for block in self.blocks:
            h = block(h, w)
        return self.output(self.head(h))
