r"""VQ-VAE: a discrete latent code grid with an autoregressive prior, as a distribution.

The generative model draws a grid of code indices :math:`z \in \{1, \dots, K\}^S` from a
prior (a chain rule, e.g. a :class:`~probgen.autoregressive.PixelCNN` over the
:math:`K`-valued grid) and decodes the codebook vectors :math:`e_z` into the parameters
of a per-element likelihood,

.. math:: z \sim p_\psi(z | c), \qquad x \sim p_\theta(x | e_z) ,

so :math:`p(x | c) = \sum_z p_\psi(z | c) \, p_\theta(x | e_z)`. The encoder quantises
data to their nearest codes, :math:`z_q(x)` (:class:`~probgen.nn.VectorQuantizer`).

**What log_prob means.** With a likelihood, :class:`VectorQuantized` scores

.. math:: \log p_\theta(x | e_{z_q(x)}) + \log p_\psi(z_q(x) | c)
    = \log p(x, z_q(x) | c) \leq \log \sum_z p(x, z | c) = \log p(x | c) ,

a lower bound (``log_prob_kind == "bound"``): the ELBO of the deterministic posterior
:math:`q(z | x) = \delta_{z_q(x)}`, whose entropy is 0. It is tight when one code grid
carries all the posterior mass. For discrete data (grey levels) it bounds a log-mass, for
real data a log-density. Without a likelihood the decoder is deterministic,
:math:`x = g(e_z)`: :math:`x` lies on at most :math:`K^{|S|}` points and has no density;
``log_prob_kind == "none"`` and ``log_prob`` raises.

**Training is two stages**, as in the paper:

.. code-block:: python

    vq = VQVAE(encoder, decoder, VectorQuantizer(32, 16), PixelCNN((1, 4, 4),
               CategoricalFamily(32)), likelihood=CategoricalFamily(17))
    pg.fit(vq, x, steps=2000)                   # 1. reconstruction + codebook + commitment
    pg.fit(vq.prior, vq.encode(x), steps=1000)  # 2. the prior, by likelihood, on the codes

The first stage's objective (:func:`probgen.objectives.vq_vae`) does not touch the prior;
the second trains the nested chain rule alone, by its own exact likelihood, on the codes
of the (now fixed) encoder; a class-conditional prior takes ``context=c`` there.
"""

from __future__ import annotations

__all__ = ["VQVAE", "VectorQuantized", "NO_DENSITY"]

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

from ..lazy import LazyDistribution
from ..nn.autoencoder import ConvDecoder, ConvEncoder, VectorQuantizer
from .autoencoder import network_input, output_mean, output_params, reconstruction_error
from .base import GenerativeDistribution
from .elements import CategoricalFamily, ElementFamily
from .pixelcnn import PixelCNN

NO_DENSITY = (
    "this VQ-VAE has a deterministic decoder (likelihood=None): x = decoder(e_z) lies on "
    "at most K^|grid| points and has no density, so log_prob is not defined "
    "(log_prob_kind 'none'). Use VQVAE.reconstruct or reconstruction_error for "
    "reconstructions, the sample-based metrics of probgen.metrics (mmd_test, fid, kid, "
    "...) for samples, the prior's exact log_prob of vq.encode(x) for the codes, or give "
    "the decoder a likelihood (e.g. CategoricalFamily(17) over grey levels) for a bound"
)


class VectorQuantized(GenerativeDistribution):
    r"""The distribution of a VQ-VAE: a prior over code grids, decoded.

    ``sample`` draws codes from the prior, decodes them and draws :math:`x` from the
    likelihood (or returns the decoder's output when it is deterministic); ``log_prob``
    is :math:`\log p(x | e_{z_q(x)}) + \log p(z_q(x) | c)`, a lower bound on
    :math:`\log p(x | c)` (``"bound"``), or raises without a likelihood (``"none"``).
    There is no ``rsample``: the codes are discrete.

    Arguments:
        prior: The prior over codes, a distribution with ``batch_shape`` :math:`B` and
            event shape :math:`P` holding the indices (as floats, the chain rules' values).
        decoder: The map from codes :math:`(N, *P)` to the likelihood's parameters
            :math:`(N, *E, P_\theta)` (or to :math:`x`, :math:`(N, *E)`, when deterministic).
        encoder: The map from data :math:`(N, *E)` to their codes :math:`(N, *P)`.
        event_shape: The data's event shape :math:`E`.
        likelihood: The per-element family of :math:`p(x | e_z)`, or ``None``.

    Example:
        >>> import probgen as pg
        >>> vq = VQVAE.small((1, 4, 4), codes=4, likelihood=CategoricalFamily(5))
        >>> d = vq()
        >>> x = d.sample((3,))
        >>> x.shape, d.log_prob(x).shape, d.log_prob_kind
        (torch.Size([3, 1, 4, 4]), torch.Size([3]), 'bound')
    """

    has_rsample = False

    def __init__(
        self,
        prior: Distribution,
        decoder: Callable[[Tensor], Tensor],
        encoder: Callable[[Tensor], Tensor],
        event_shape: Sequence[int],
        likelihood: ElementFamily | None = None,
    ) -> None:
        self.prior, self.decoder, self.encoder = prior, decoder, encoder
        self.likelihood = likelihood
        super().__init__(prior.batch_shape, Size(event_shape))

    @property
    def log_prob_kind(self) -> str:  # type: ignore[override]
        return "none" if self.likelihood is None else "bound"

    @property
    def support(self) -> constraints.Constraint:
        if self.likelihood is None:
            return constraints.real
        return constraints.independent(self.likelihood.support, len(self.event_shape))

    def __repr__(self) -> str:
        return (
            f"VectorQuantized(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, likelihood={self.likelihood!r})"
        )

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> VectorQuantized:
        return VectorQuantized(
            self.prior.expand(Size(batch_shape)),
            self.decoder,
            self.encoder,
            self.event_shape,
            self.likelihood,
        )

    def sample(self, sample_shape: Sequence[int] = Size()) -> Tensor:
        shape = Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            z = self.prior.sample(Size(sample_shape))
            params = self.decoder(z.reshape(shape.numel(), *self.prior.event_shape))
            x = params if self.likelihood is None else self.likelihood.sample(params)
        return x.reshape(*shape, *self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        if self.likelihood is None:
            raise NotImplementedError(NO_DENSITY)
        self.check_value(x)
        k = len(self.event_shape)
        shape = torch.broadcast_shapes(x.shape[: x.dim() - k], self.batch_shape)
        flat = x.expand(*shape, *self.event_shape).reshape(-1, *self.event_shape)
        # The codes are an argmin of the encoder's outputs: piecewise constant in x and
        # in the encoder's parameters, so no gradient flows through them.
        with torch.no_grad():
            z = self.encoder(flat)
        params = self.decoder(z)
        lp_x = self.likelihood.log_prob(params, flat.to(params.dtype)).flatten(1).sum(-1)
        lp_z = self.prior.log_prob(z.reshape(*shape, *self.prior.event_shape))
        return lp_x.reshape(shape) + lp_z


class VQVAE(LazyDistribution):
    r"""A vector-quantised variational autoencoder with an autoregressive prior.

    An encoder maps data to vectors :math:`z_e` on a grid; a
    :class:`~probgen.nn.VectorQuantizer` replaces each by its nearest code :math:`e_k`;
    a decoder maps the codes back to :math:`x` (or to the parameters of a per-element
    likelihood); a nested chain-rule model over the :math:`K`-valued grid of indices is
    the prior (a :class:`~probgen.autoregressive.PixelCNN` with a
    :class:`~probgen.autoregressive.CategoricalFamily` of :math:`K` values, typically).
    Calling the module builds the distribution :class:`VectorQuantized` (see the module
    docstring for what its ``log_prob`` bounds, and the two training stages).

    The first stage minimises (:func:`probgen.objectives.vq_vae`, the default objective)

    .. math:: \ell = \frac1N \sum_i \Big[ -\log p_\theta(x_i | z_q(x_i))
        + \|\mathrm{sg}[z_e(x_i)] - e\|^2 + \beta \|z_e(x_i) - \mathrm{sg}[e]\|^2 \Big]

    with straight-through gradients (the squared error, summed over elements, in place of
    :math:`-\log p_\theta` for a deterministic decoder; the norms sum over the grid). The
    second fits the prior on the codes ``vq.encode(x)`` with :func:`probgen.fit`.

    Arguments:
        encoder: Maps data :math:`(N, *E)` to vectors :math:`(N, D, *S)` on a grid
            :math:`S` (:class:`~probgen.nn.ConvEncoder` with ``out_channels=D``).
        decoder: Maps codes :math:`(N, D, *S)` to :math:`(N, *E)`, or to
            :math:`(N, C P, H, W)` for :math:`P` likelihood parameters per element
            (:class:`~probgen.nn.ConvDecoder` with ``in_channels=D``).
        quantizer: The :class:`~probgen.nn.VectorQuantizer` (:math:`K` codes of size
            :math:`D`).
        prior: A lazy chain-rule model over the indices, with :math:`K` values per element,
            as many elements as grid positions, and ``context`` features.
        likelihood: The per-element family of :math:`p(x | e_z)` (e.g.
            ``CategoricalFamily(17)`` over grey levels, ``GaussianFamily()``); ``None``
            for a deterministic decoder (no density).
        context: The number of context features :math:`C` (the prior's; the encoder and
            the decoder are unconditional).
        shape: The data's event shape :math:`E` (default: ``encoder.in_shape``).

    References:
        | Neural Discrete Representation Learning (van den Oord et al., 2017)
        | https://arxiv.org/abs/1711.00937

    Example:
        >>> vq = VQVAE.small((1, 4, 4), codes=4, likelihood=CategoricalFamily(5))
        >>> x = torch.randint(5, (8, 1, 4, 4)).float()
        >>> vq.encode(x).shape, vq.reconstruct(x).shape
        (torch.Size([8, 1, 2, 2]), torch.Size([8, 1, 4, 4]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        quantizer: VectorQuantizer,
        prior: LazyDistribution,
        likelihood: ElementFamily | None = None,
        context: int = 0,
        shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        shape = shape if shape is not None else getattr(encoder, "in_shape", None)
        if shape is None:
            raise ValueError("give the data's shape: the encoder has no in_shape")
        if not isinstance(quantizer, VectorQuantizer):
            raise ValueError(f"expected a VectorQuantizer, got {type(quantizer).__name__}")
        self.encoder, self.decoder, self.quantizer, self.prior = encoder, decoder, quantizer, prior
        self.likelihood, self.context, self.event_shape = likelihood, context, Size(shape)
        self.grid = self._grid()
        family = getattr(prior, "family", None)
        values = getattr(family, "values", None)
        codes_shape = Size(getattr(prior, "event_shape", ()))
        if values != quantizer.codes or codes_shape.numel() != self.grid.numel():
            raise ValueError(
                f"expected a prior over {self.grid.numel()} elements (the code grid "
                f"{tuple(self.grid)}) with {quantizer.codes} values (the codes), got "
                f"event_shape {tuple(codes_shape)} and {family!r}"
            )
        if getattr(prior, "context", 0) != context:
            raise ValueError(
                f"expected a prior with context {context}, got {getattr(prior, 'context', 0)}"
            )
        self.codes_shape = codes_shape

    @torch.no_grad()
    def _grid(self) -> Size:
        # One pass in eval mode on zeros finds the grid of code vectors.
        training = self.training
        self.eval()
        try:
            like = next(self.encoder.parameters())
            z = self.encoder(like.new_zeros(1, *self.event_shape))
        finally:
            self.train(training)
        if z.dim() < 2 or z.shape[1] != self.quantizer.dim:
            raise ValueError(
                f"expected the encoder to return vectors of size {self.quantizer.dim} along "
                f"dimension 1, got shape {tuple(z.shape)}"
            )
        return Size(z.shape[2:])

    @classmethod
    def small(
        cls,
        shape: Sequence[int] = (1, 8, 8),
        codes: int = 32,
        dim: int = 16,
        likelihood: ElementFamily | None = None,
        context: int = 0,
        hidden: int = 32,
        prior_layers: int = 4,
        **quantizer: Any,
    ) -> VQVAE:
        r"""A small convolutional VQ-VAE for small images (8x8 digits): a
        :class:`~probgen.nn.ConvEncoder` and :class:`~probgen.nn.ConvDecoder` halving
        the image once (an :math:`H/2 \times W/2` grid of codes), and a gated PixelCNN
        prior over the grid.

        Arguments:
            shape: The image shape :math:`(C, H, W)`.
            codes: The codebook size :math:`K`.
            dim: The code dimension :math:`D`.
            likelihood: The per-element family of :math:`p(x | e_z)` (e.g.
                ``CategoricalFamily(17)``), or ``None`` for a deterministic decoder.
            context: The prior's context features.
            hidden: The channel width of the networks.
            prior_layers: The gated layers of the PixelCNN prior.
            quantizer: Keyword arguments of :class:`~probgen.nn.VectorQuantizer`
                (``beta``, ``ema``, ``decay``, ``restart``).
        """
        c, h, w = shape
        out = (c * (likelihood.params if likelihood is not None else 1), h, w)
        return cls(
            ConvEncoder(shape, out_channels=dim, hidden=(hidden, 2 * hidden)),
            ConvDecoder(out, in_channels=dim, hidden=(2 * hidden, hidden)),
            VectorQuantizer(codes, dim, **quantizer),
            PixelCNN((1, h // 2, w // 2), CategoricalFamily(codes), context, hidden, prior_layers),
            likelihood,
            context,
            shape,
        )

    # The distribution

    def forward(self, c: Tensor | None = None) -> VectorQuantized:
        self.check_context(c)
        return VectorQuantized(
            self.prior(c), self._decode_params, self.encode, self.event_shape, self.likelihood
        )

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The first stage's loss, :func:`probgen.objectives.vq_vae`."""
        from ..objectives import vq_vae  # objectives sit one layer above

        return vq_vae(self, x, c)

    # Encoding and decoding

    def _check(self, x: Tensor) -> tuple[Tensor, Size]:
        k = len(self.event_shape)
        if x.dim() < k or x.shape[x.dim() - k :] != self.event_shape:
            raise ValueError(
                f"expected x with event_shape {tuple(self.event_shape)}, got shape "
                f"{tuple(x.shape)}"
            )
        return x.reshape(-1, *self.event_shape), x.shape[: x.dim() - k]

    def encode(self, x: Tensor) -> Tensor:
        r"""The codes :math:`z_q(x)`: the nearest code of each encoder vector, in the
        prior's format (indices as floats, the prior's event shape), ready for
        ``pg.fit(vq.prior, vq.encode(x))``.

        Arguments:
            x: Data with shape :math:`(*, *E)`.

        Returns:
            The indices, with shape :math:`(*, *P)`, :math:`P` the prior's event shape.
        """
        flat, batch = self._check(x)
        with torch.no_grad():  # an argmin: no gradient to keep
            z = self.quantizer.nearest(self.encoder(network_input(flat, self.likelihood)))
        like = next(self.prior.parameters(), None)
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        return z.reshape(*batch, *self.codes_shape).to(dtype)

    def _decode_params(self, z: Tensor) -> Tensor:
        # Codes (N, *P) -> likelihood parameters (N, *E, P_theta), or x (N, *E).
        e = self.quantizer.lookup(z.reshape(len(z), *self.grid))
        return output_params(self.decoder(e), self.likelihood, self.event_shape)

    def decode(self, z: Tensor) -> Tensor:
        r"""The decoder's mean :math:`\mathbb{E}[x | e_z]` (its output when deterministic).

        Arguments:
            z: Codes with shape :math:`(*, *P)`, :math:`P` the prior's event shape.

        Returns:
            The decoded data, with shape :math:`(*, *E)`.
        """
        k = len(self.codes_shape)
        batch = z.shape[: z.dim() - k]
        params = self._decode_params(z.reshape(-1, *self.codes_shape))
        return output_mean(params, self.likelihood).reshape(*batch, *self.event_shape)

    def reconstruct(self, x: Tensor) -> Tensor:
        r"""The reconstruction :math:`\mathbb{E}[x | e_{z_q(x)}]`, with the shape of ``x``."""
        return self.decode(self.encode(x))

    def quantize(self, x: Tensor):
        r"""The quantiser's output for data :math:`(N, *E)` (a
        :class:`~probgen.nn.Quantized`: straight-through vectors, indices, losses); in
        training mode it updates an EMA codebook and the usage shares."""
        flat, _ = self._check(x)
        return self.quantizer(self.encoder(network_input(flat, self.likelihood)))

    def params(self, z_q: Tensor) -> Tensor:
        r"""The decoder's output for code vectors :math:`(N, D, *S)`, read as likelihood
        parameters :math:`(N, *E, P_\theta)` (or :math:`x`, :math:`(N, *E)`)."""
        return output_params(self.decoder(z_q), self.likelihood, self.event_shape)

    def reconstruction_error(self, params: Tensor, x: Tensor) -> Tensor:
        r"""The error of each example, :math:`(N,)`: :math:`-\log p(x | \theta)` with a
        likelihood, the squared error summed over elements without."""
        flat, _ = self._check(x)
        return reconstruction_error(params, flat, self.likelihood)
