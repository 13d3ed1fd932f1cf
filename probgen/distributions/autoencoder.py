r"""Deterministic autoencoders (plain, denoising, sparse): representation learning and
baselines, **not** distributions.

An autoencoder is an encoder :math:`h = f(x)` and a decoder :math:`\hat x = g(h)` trained
to reconstruct its input,

.. math:: \ell = \frac1N \sum_i \mathrm{err}\big(g(f(\tilde x_i)), x_i\big)
    + \lambda \frac{1}{N H} \sum_{i, j} |h_{ij}| , \qquad \tilde x_i \sim C(\tilde x | x_i),

where the corruption :math:`C` is the identity (plain) or a noise (denoising), and
:math:`\lambda > 0` adds an L1 activity penalty on the codes :math:`h = f(\tilde x)`
(sparse). It defines no distribution over :math:`x`: there is no prior over :math:`h` to
sample from and no density, so an :class:`Autoencoder` has no ``sample``, ``log_prob``
or ``log_prob_kind``. It is an :class:`torch.nn.Module` with ``encode``, ``decode``,
``reconstruct`` and a ``default_objective`` (:func:`probgen.objectives.autoencoder`), so
:func:`probgen.fit` trains it. For a generative model with the same blocks, see
:class:`probgen.distributions.vq.VQVAE` (a discrete latent with a learned prior) or the
variational autoencoder of :mod:`probgen.latent`.

The reconstruction error is the squared error summed over the elements of each example
(a Gaussian likelihood with unit variance, up to constants) or, when a per-element
``likelihood`` family is given, the negative log-likelihood
:math:`-\log p(x | \theta = g(h))` of the decoder's parameters (e.g. Bernoulli
cross-entropy for binary images, as in the denoising autoencoders of Vincent et al.).
"""

from __future__ import annotations

__all__ = ["Autoencoder", "GaussianNoise", "MaskingNoise"]

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch import Size, Tensor

from .elements import ElementFamily


class GaussianNoise:
    r"""Additive Gaussian corruption, :math:`\tilde x = x + \sigma \epsilon`,
    :math:`\epsilon \sim \mathcal{N}(0, I)`.

    Arguments:
        std: The noise scale :math:`\sigma > 0`.

    Example:
        >>> GaussianNoise(0.5)(torch.zeros(3)).shape
        torch.Size([3])
    """

    def __init__(self, std: float) -> None:
        if not std > 0:
            raise ValueError(f"expected std > 0, got {std}")
        self.std = float(std)

    def __call__(self, x: Tensor) -> Tensor:
        return x + self.std * torch.randn_like(x)

    def __repr__(self) -> str:
        return f"GaussianNoise({self.std})"


class MaskingNoise:
    r"""Masking corruption: each element is set to 0 with probability :math:`p`,
    independently (Vincent et al., 2008).

    Arguments:
        p: The masking probability, in :math:`[0, 1)`.

    Example:
        >>> MaskingNoise(0.5)(torch.ones(4)).unique().tolist() in ([0.0, 1.0], [0.0], [1.0])
        True
    """

    def __init__(self, p: float) -> None:
        if not 0 <= p < 1:
            raise ValueError(f"expected 0 <= p < 1, got {p}")
        self.p = float(p)

    def __call__(self, x: Tensor) -> Tensor:
        keep = torch.rand_like(x) >= self.p
        return x * keep

    def __repr__(self) -> str:
        return f"MaskingNoise({self.p})"


# What the autoencoders and VQ-VAE share: the decoder's output read as the parameters of a
# per-element likelihood (or as the reconstruction itself), and the reconstruction error.


def network_input(x: Tensor, family: ElementFamily | None) -> Tensor:
    r"""Discrete levels :math:`\{0, \dots, K - 1\}` enter networks rescaled to
    :math:`[-1, 1]` (as in :class:`~probgen.autoregressive.PixelCNN`); other values as
    they are."""
    values = getattr(family, "values", None)
    return x * (2.0 / (values - 1)) - 1.0 if values else x


def output_params(out: Tensor, family: ElementFamily | None, event_shape: Size) -> Tensor:
    r"""The decoder's output :math:`(N, C P, *R)` read as :math:`P` parameters per element,
    :math:`(N, C, *R, P)` (channel :math:`c`'s parameters are outputs
    :math:`cP, \dots, cP + P - 1`); the output itself, :math:`(N, *E)`, without a family."""
    p = 1 if family is None else family.params
    c, rest = event_shape[0], event_shape[1:]
    expected = (out.shape[0], c * p, *rest)
    if tuple(out.shape) != expected:
        what = "" if family is None else f" ({family!r} takes {p} per element)"
        raise ValueError(
            f"expected the decoder to return shape {expected}{what}, got {tuple(out.shape)}"
        )
    if family is None:
        return out
    return out.reshape(out.shape[0], c, p, *rest).movedim(2, -1)


def output_mean(params: Tensor, family: ElementFamily | None) -> Tensor:
    r"""The mean of :math:`p(x | \theta)` per element: the expected level of a discrete
    family, the first parameter (the location) of a continuous one."""
    if family is None:
        return params
    if family.values is not None:
        levels = torch.arange(family.values, dtype=params.dtype, device=params.device)
        return (family.logits(params).exp() * levels).sum(-1)
    return params[..., 0]


def reconstruction_error(params: Tensor, x: Tensor, family: ElementFamily | None) -> Tensor:
    r"""The reconstruction error of each example, :math:`(N,)`: the squared error summed
    over elements without a family, :math:`-\log p(x | \theta)` with one."""
    if family is None:
        return (params - x).square().flatten(1).sum(-1)
    return -family.log_prob(params, x.to(params.dtype)).flatten(1).sum(-1)


class Autoencoder(nn.Module):
    r"""A deterministic autoencoder: plain, denoising (``noise``) or sparse (``sparsity``).

    Not a distribution (no ``sample``, ``log_prob`` or ``log_prob_kind``): an
    :class:`torch.nn.Module` for representation learning and reconstruction baselines,
    trained by :func:`probgen.fit` with its ``default_objective``,
    :func:`probgen.objectives.autoencoder`:

    .. math:: \ell = \frac1N \sum_i \mathrm{err}\big(g(f(\tilde x_i)), x_i\big)
        + \lambda \, \mathrm{mean}_{i,j} |f(\tilde x_i)_j| .

    The corruption :math:`\tilde x = \mathrm{noise}(x)` applies only inside the training
    objective: :meth:`encode`, :meth:`decode` and :meth:`reconstruct` never corrupt.

    .. code-block:: python

        enc = pg.nn.ConvEncoder((1, 8, 8), out_features=16)
        dec = pg.nn.ConvDecoder((1, 8, 8), in_features=16)
        plain = Autoencoder(enc, dec)
        denoising = Autoencoder(enc, dec, noise=MaskingNoise(0.3))
        sparse = Autoencoder(enc, dec, sparsity=1e-2)
        pg.fit(denoising, x, steps=1000)

    Arguments:
        encoder: The encoder :math:`f`, mapping :math:`(N, *E)` to codes :math:`(N, *H)`.
        decoder: The decoder :math:`g`, mapping codes to :math:`(N, *E)` (or to
            :math:`(N, C P, *R)`: :math:`P` parameters per element of a ``likelihood``).
        likelihood: A per-element family (e.g.
            :class:`~probgen.distributions.elements.BernoulliFamily`) whose negative
            log-likelihood is the reconstruction error; the squared error when ``None``.
        noise: The corruption of a denoising autoencoder (:class:`GaussianNoise`,
            :class:`MaskingNoise`, or any callable ``x -> x_tilde``).
        sparsity: The weight :math:`\lambda \geq 0` of the L1 activity penalty.
        shape: The data's event shape :math:`E` (default: ``encoder.in_shape``).

    References:
        | Reducing the Dimensionality of Data with Neural Networks (Hinton and
          Salakhutdinov, 2006)
        | Extracting and Composing Robust Features with Denoising Autoencoders (Vincent et
          al., 2008)
        | Sparse Autoencoder (Ng, 2011), CS294A lecture notes

    Example:
        >>> from probgen.nn import MLPEncoder, MLPDecoder
        >>> ae = Autoencoder(MLPEncoder((4,), 2, hidden=(8,)), MLPDecoder(2, (4,), hidden=(8,)))
        >>> ae.reconstruct(torch.randn(5, 4)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: ElementFamily | None = None,
        noise: Callable[[Tensor], Tensor] | None = None,
        sparsity: float = 0.0,
        shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if sparsity < 0:
            raise ValueError(f"expected sparsity >= 0, got {sparsity}")
        if noise is not None and not callable(noise):
            raise ValueError(f"expected a callable noise, got {type(noise).__name__}")
        shape = shape if shape is not None else getattr(encoder, "in_shape", None)
        if shape is None:
            raise ValueError("give the data's shape: the encoder has no in_shape")
        self.encoder, self.decoder = encoder, decoder
        self.likelihood, self.noise, self.sparsity = likelihood, noise, float(sparsity)
        self.event_shape = Size(shape)

    def _check(self, x: Tensor) -> Tensor:
        k = len(self.event_shape)
        if x.dim() < k or x.shape[x.dim() - k :] != self.event_shape:
            raise ValueError(
                f"expected x with event_shape {tuple(self.event_shape)}, got shape "
                f"{tuple(x.shape)}"
            )
        return x.reshape(-1, *self.event_shape)

    def encode(self, x: Tensor) -> Tensor:
        r"""The codes :math:`h = f(x)`, uncorrupted.

        Arguments:
            x: Data with shape :math:`(*, *E)`.

        Returns:
            The codes, with shape :math:`(*, *H)`.
        """
        flat = self._check(x)
        h = self.encoder(network_input(flat, self.likelihood))
        return h.reshape(*x.shape[: x.dim() - len(self.event_shape)], *h.shape[1:])

    def params(self, h: Tensor) -> Tensor:
        r"""The decoder's output for codes with shape :math:`(N, *H)`, read as per-element
        likelihood parameters :math:`(N, *E, P)`, or the reconstruction :math:`(N, *E)`
        without a likelihood."""
        return output_params(self.decoder(h), self.likelihood, self.event_shape)

    def decode(self, h: Tensor) -> Tensor:
        r"""The reconstruction :math:`\hat x = g(h)` (the likelihood's mean, if any).

        Arguments:
            h: Codes with shape :math:`(*, *H)`.

        Returns:
            Reconstructions with shape :math:`(*, *E)`.
        """
        k = len(getattr(self.decoder, "in_shape", h.shape[-1:]))
        batch = h.shape[: h.dim() - k]
        out = output_mean(self.params(h.reshape(-1, *h.shape[h.dim() - k :])), self.likelihood)
        return out.reshape(*batch, *self.event_shape)

    def reconstruct(self, x: Tensor) -> Tensor:
        r"""The reconstruction :math:`g(f(x))` of (uncorrupted) inputs, shape of ``x``."""
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        r"""Alias of :meth:`reconstruct` (an autoencoder is no distribution builder)."""
        return self.reconstruct(x)

    def reconstruction_error(self, params: Tensor, x: Tensor) -> Tensor:
        r"""The error of each example, :math:`(N,)`, between decoder parameters
        :math:`(N, *E[, P])` (from :meth:`params`) and data :math:`(N, *E)`."""
        return reconstruction_error(params, self._check(x), self.likelihood)

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The autoencoder's loss, :func:`probgen.objectives.autoencoder`."""
        from ..objectives import autoencoder  # objectives sit one layer above

        return autoencoder(self, x, c)
