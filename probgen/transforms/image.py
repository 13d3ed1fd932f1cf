r"""Bijections of images, tensors with shape :math:`(*, C, H, W)` and ``event_dim == 3``.

These are the parts of Glow and of Real NVP's multi-scale architecture: activation
normalisation, squeezing, affine coupling over channels with a convolutional
hyper-network, and the multi-scale factor-out. The invertible :math:`1 \times 1`
convolution lives in :mod:`probgen.transforms.linear`.

As everywhere in probgen, each transform is a *generative* map :math:`x = f(z)` from the
base (noise) side to the data side; a flow scores data with the inverses, in reverse order.

Multi-scale design. Every transform here keeps the shape of its input, except
:class:`SqueezeTransform` and its inverse. A factored-out level is
:class:`FactorOutTransform`: an inner transform acts on the leading channels only while
the other channels pass through untouched, which is exactly what "half the channels exit
to the base" means once the base is a standard normal over the whole :math:`(C, H, W)`
tensor. A Glow level in generative order is then

.. math:: \text{squeeze} \to \text{factor-out}(\text{next level}) \to
    \text{steps} \to \text{unsqueeze} ,

a shape-preserving map of :math:`(C, H, W)`. The latent :math:`z` is stored in the data's
layout; it is a fixed permutation of Glow's list of per-level latents, which the
standard-normal base does not see. So the whole model is a single
:class:`~probgen.transforms.ComposedTransform` over a
:class:`~probgen.distributions.DiagNormal` base with event shape :math:`(C, H, W)`, and
:class:`~probgen.distributions.NormalizingFlow` needs nothing image-specific.
"""

from __future__ import annotations

__all__ = [
    "ActNormTransform",
    "ActNorm",
    "SqueezeTransform",
    "ChannelCouplingTransform",
    "ConvCoupling",
    "FactorOutTransform",
    "FactorOut",
]

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
from torch import BoolTensor, Size, Tensor
from torch.distributions import Transform, constraints

from ..lazy import LazyTransform
from ..nn import ConvNet
from ..utils import broadcast_context, sum_rightmost, unpack
from .base import ComposedTransform, call_and_ladj, inv_call_and_ladj
from .elementwise import MonotonicAffineTransform

_image = constraints.independent(constraints.real, 3)


def _check_image(x: Tensor, name: str = "input") -> None:
    if x.dim() < 3:
        raise ValueError(f"expected an image {name} with shape (*, C, H, W), got {tuple(x.shape)}")


class ActNormTransform(Transform):
    r"""Per-channel affine map (activation normalisation),

    .. math:: x_{c, h, w} = \mu_c + e^{s_c} z_{c, h, w} , \qquad
        \log |\det J| = H W \sum_c s_c .

    Arguments:
        shift: The shift :math:`\mu`, with shape :math:`(C,)`.
        log_scale: The log-scale :math:`s`, with shape :math:`(C,)`.
        initialize: A function called with the data-side tensor :math:`x` of the first
            inverse pass, before it is used, which sets ``shift`` and ``log_scale`` in place
            (see :class:`ActNorm`); ``None`` once the parameters are initialised.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039
    """

    domain = _image
    codomain = _image
    bijective = True

    def __init__(
        self,
        shift: Tensor,
        log_scale: Tensor,
        initialize: Callable[[Tensor], None] | None = None,
    ) -> None:
        super().__init__()
        if shift.shape != log_scale.shape or shift.dim() != 1:
            raise ValueError(
                "expected shift and log_scale with the same shape (C,), got "
                f"{tuple(shift.shape)} and {tuple(log_scale.shape)}"
            )
        self.shift, self.log_scale, self.initialize = shift, log_scale, initialize

    def __repr__(self) -> str:
        return f"ActNormTransform(channels={len(self.shift)})"

    def _ladj(self, x: Tensor) -> Tensor:
        return (x.shape[-2] * x.shape[-1]) * self.log_scale.sum().expand(x.shape[:-3])

    def _call(self, z: Tensor) -> Tensor:
        _check_image(z)
        return self.shift[:, None, None] + self.log_scale.exp()[:, None, None] * z

    def _inverse(self, x: Tensor) -> Tensor:
        _check_image(x)
        if self.initialize is not None:
            self.initialize(x)
        return (x - self.shift[:, None, None]) * torch.exp(-self.log_scale)[:, None, None]

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        return self._ladj(z)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(z), self._ladj(z)

    def inv_call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self._inverse(x)
        return z, self._ladj(x)


class ActNorm(LazyTransform):
    r"""A lazy activation normalisation with data-dependent initialisation.

    The first time data flows through its inverse (the scoring direction), the shift and
    log-scale are set from that batch so that its image :math:`z` has zero mean and unit
    variance per channel,

    .. math:: \mu_c = \operatorname{mean}(x_c) , \qquad s_c = \log \operatorname{std}(x_c) .

    Sampling before any scoring uses the identity parameters and does not initialise.
    Whether the initialisation happened is the buffer ``initialized``, so it is saved in
    the ``state_dict`` and a reloaded model is never re-initialised on its next batch
    (normflows keeps that flag outside the state and re-initialises after a reload).
    Under data parallelism, run one batch before wrapping the model, so that every
    replica starts from the same parameters.

    Arguments:
        channels: The number of channels :math:`C`.
        eps: The smallest standard deviation used by the initialisation.

    Example:
        >>> t = ActNorm(3)
        >>> z = t().inv(5 + 2 * torch.randn(64, 3, 4, 4))
        >>> bool(t.initialized), round(z.std().item())
        (True, 1)
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"expected channels >= 1, got {channels}")
        self.eps = eps
        self.shift = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        # A Python mirror of the buffer, so that building a transform never syncs a device.
        self._ready = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.initialized)

    def _initialize(self, x: Tensor) -> None:
        if self._ready:
            return
        with torch.no_grad():
            dims = [d for d in range(x.dim()) if d != x.dim() - 3]
            mean = x.mean(dim=dims)
            std = x.std(dim=dims, correction=0) if x[..., 0, :, :].numel() > 1 else None
            self.shift.copy_(mean.to(self.shift))
            if std is not None:
                self.log_scale.copy_(std.clamp(min=self.eps).log().to(self.log_scale))
            self.initialized.fill_(True)
        self._ready = True

    def forward(self, c: Tensor | None = None) -> Transform:
        initialize = None if self._ready else self._initialize
        return ActNormTransform(self.shift, self.log_scale, initialize)


class SqueezeTransform(Transform):
    r"""The space-to-channel reshape :math:`(C, H, W) \to (4C, H/2, W/2)`, with
    :math:`\log |\det J| = 0`.

    Each :math:`2 \times 2` patch becomes four channels: output channel
    :math:`4c + 2i + j` at :math:`(h, w)` is input channel :math:`c` at
    :math:`(2h + i, 2w + j)` (the layout of :func:`torch.nn.functional.pixel_unshuffle`).

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> t = SqueezeTransform()
        >>> t(torch.randn(5, 1, 8, 8)).shape, t.forward_shape((1, 8, 8))
        (torch.Size([5, 4, 4, 4]), (4, 4, 4))
    """

    domain = _image
    codomain = _image
    bijective = True

    def __repr__(self) -> str:
        return "SqueezeTransform()"

    def forward_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        *batch, C, H, W = _image_shape(shape)
        if H % 2 or W % 2:
            raise ValueError(f"squeezing needs an even height and width, got shape {tuple(shape)}")
        return (*batch, 4 * C, H // 2, W // 2)

    def inverse_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        *batch, C, H, W = _image_shape(shape)
        if C % 4:
            raise ValueError(
                f"unsqueezing needs a number of channels divisible by 4, got shape {tuple(shape)}"
            )
        return (*batch, C // 4, 2 * H, 2 * W)

    def _call(self, x: Tensor) -> Tensor:
        *batch, C, H, W = self.forward_shape(x.shape)
        x = x.reshape(*batch, C // 4, H, 2, W, 2)
        n = len(batch)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        return x.reshape(*batch, C, H, W)

    def _inverse(self, y: Tensor) -> Tensor:
        *batch, C, H, W = self.inverse_shape(y.shape)
        y = y.reshape(*batch, C, 2, 2, H // 2, W // 2)
        n = len(batch)
        y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        return y.reshape(*batch, C, H, W)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return x.new_zeros(x.shape[:-3])


def _image_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < 3:
        raise ValueError(f"expected an image shape (*, C, H, W), got {shape}")
    return shape


class ChannelCouplingTransform(Transform):
    r"""Coupling over channels: :math:`x_a = z_a`, :math:`x_b = \tau(z_b; \phi(z_a))`,

    .. math:: \log |\det J| = \sum_{c \in b, h, w} \log \tau'(z_{c, h, w}) .

    Both directions take one pass of the hyper-network :math:`\phi`.

    Arguments:
        meta: A function :math:`z_a \mapsto \tau` returning an elementwise transform of
            :math:`z_b`, with :math:`z_a` of shape :math:`(*, |a|, H, W)`.
        mask: The boolean mask of the conditioning channels :math:`a`, with shape :math:`(C,)`.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803
    """

    domain = _image
    codomain = _image
    bijective = True

    def __init__(self, meta: Callable[[Tensor], Transform], mask: BoolTensor) -> None:
        super().__init__()
        # Channel indices are bookkeeping: kept on the CPU, so building the transform never
        # waits for a device, and moved to the data's device only when not a prefix.
        mask = torch.as_tensor(mask, dtype=torch.bool, device="cpu")
        self.meta = meta
        self.idx_a = mask.nonzero().squeeze(-1)
        self.idx_b = (~mask).nonzero().squeeze(-1)
        perm = torch.cat([self.idx_a, self.idx_b])
        self.unperm = None if torch.equal(perm, torch.arange(len(perm))) else perm.argsort()
        self.channels = len(mask)

    def __repr__(self) -> str:
        return f"ChannelCouplingTransform(a={self.idx_a.tolist()}, b={self.idx_b.tolist()})"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            raise ValueError(
                f"expected an input with shape (*, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        if self.unperm is None:  # a is a prefix: views, no copies
            k = len(self.idx_a)
            return x[..., :k, :, :], x[..., k:, :, :]
        return (
            x.index_select(-3, self.idx_a.to(x.device)),
            x.index_select(-3, self.idx_b.to(x.device)),
        )

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        y = torch.cat([a, b], dim=-3)
        return y if self.unperm is None else y.index_select(-3, self.unperm.to(y.device))

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(z)
        b, ladj = call_and_ladj(self.meta(a), b)
        return self._merge(a, b), ladj.sum(dim=(-3, -2, -1))

    def inv_call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        b, ladj = inv_call_and_ladj(self.meta(a), b)
        return self._merge(a, b), ladj.sum(dim=(-3, -2, -1))

    def _call(self, z: Tensor) -> Tensor:
        return self.call_and_ladj(z)[0]

    def _inverse(self, x: Tensor) -> Tensor:
        return self.inv_call_and_ladj(x)[0]

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        return self.call_and_ladj(z)[1]


class ConvCoupling(LazyTransform):
    r"""A lazy coupling over channels whose elementwise parameters come from a
    convolutional network of :math:`z_a` (and of the context, as constant channels).

    The network's last layer starts at zero, so the coupling starts at the identity (for
    elementwise transforms that are the identity at zero parameters, as probgen's are).

    Arguments:
        channels: The number of channels :math:`C \geq 2`.
        context: The number of context features (0 when unconditional). A context with
            shape :math:`(*, K)` is broadcast to :math:`K` constant feature maps.
        mask: The conditioning channels :math:`a`, with shape :math:`(C,)`; the first
            :math:`\lfloor C / 2 \rfloor` by default.
        univariate: The elementwise transform constructor, called with unconstrained
            parameters of the given ``shapes`` (affine by default).
        shapes: The trailing shapes of the parameters of ``univariate``, per pixel.
        hidden: The channel widths of the network's hidden layers.
        kernel_size: The size of the network's first and last kernels.
        activation: The network's activation constructor.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = ConvCoupling(4, context=2)
        >>> z, c = torch.randn(3, 4, 8, 8), torch.randn(3, 2)
        >>> torch.allclose(t(c).inv(t(c)(z)), z, atol=1e-5)
        True
    """

    def __init__(
        self,
        channels: int,
        context: int = 0,
        mask: BoolTensor | None = None,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[tuple[int, ...]] = ((), ()),
        hidden: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a channel coupling needs at least 2 channels, got {channels}")
        if mask is None:
            mask = torch.arange(channels) < channels // 2
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (channels,) or mask.all() or not mask.any():
            raise ValueError(
                f"expected a mask with shape ({channels},) holding both True and False, "
                f"got {mask.tolist()}"
            )
        self.channels, self.context = channels, context
        # A constructor argument, not state: a CPU tensor, never moved (see the transform).
        self.mask = mask
        self.univariate = univariate
        self.shapes = [tuple(s) for s in shapes]
        self.params = sum(int(Size(s).numel()) for s in self.shapes)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        self.hyper = ConvNet(
            n_a + context, n_b * self.params, hidden, kernel_size, activation, zero_init=True
        )

    def _meta(self, c: Tensor | None, a: Tensor) -> Transform:
        if c is not None:
            c = broadcast_context(a, c, event_dims=3)
            c = c[..., None, None].expand(*c.shape, *a.shape[-2:])
            a = torch.cat([a, c.to(a.dtype)], dim=-3)
        phi = self.hyper(a)  # (*, |b| * P, H, W)
        phi = phi.unflatten(-3, (-1, self.params)).movedim(-3, -1)  # (*, |b|, H, W, P)
        return self.univariate(*unpack(phi, self.shapes))

    def forward(self, c: Tensor | None = None) -> Transform:
        return ChannelCouplingTransform(partial(self._meta, c), self.mask)


class FactorOutTransform(Transform):
    r"""The multi-scale factor-out: ``inner`` acts on the leading ``channels`` channels,
    the others pass through,

    .. math:: x_{:k} = g(z_{:k}) , \qquad x_{k:} = z_{k:} , \qquad
        \log |\det J| = \log |\det J_g(z_{:k})| .

    In the scoring direction (data to noise) the trailing channels leave the flow here and
    are scored by the base; only the leading ones go through the deeper levels :math:`g`.

    Arguments:
        inner: A shape-preserving image transform :math:`g` of :math:`(k, H, W)`.
        channels: The number :math:`k` of leading channels ``inner`` acts on.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016), section 3.6
        | https://arxiv.org/abs/1605.08803
    """

    domain = _image
    codomain = _image
    bijective = True

    def __init__(self, inner: Transform, channels: int) -> None:
        super().__init__()
        if inner.domain.event_dim > 3 or inner.codomain.event_dim > 3:
            raise ValueError(f"expected an inner transform with event_dim <= 3, got {inner}")
        self.inner, self.channels = inner, channels

    def __repr__(self) -> str:
        inner = repr(self.inner).replace("\n", "\n  ")
        return f"FactorOutTransform(channels={self.channels}, inner={inner})"

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() < 3 or x.shape[-3] <= self.channels:
            raise ValueError(
                f"expected an input with shape (*, C, H, W) and C > {self.channels}, "
                f"got {tuple(x.shape)}"
            )
        return x[..., : self.channels, :, :], x[..., self.channels :, :, :]

    def _ladj(self, ladj: Tensor) -> Tensor:
        # The inner ladj keeps the event dimensions the inner transform treats as batch.
        return sum_rightmost(ladj, 3 - self.inner.domain.event_dim)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(z)
        a, ladj = call_and_ladj(self.inner, a)
        return torch.cat([a, b], dim=-3), self._ladj(ladj)

    def inv_call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        a, ladj = inv_call_and_ladj(self.inner, a)
        return torch.cat([a, b], dim=-3), self._ladj(ladj)

    def _call(self, z: Tensor) -> Tensor:
        a, b = self._split(z)
        return torch.cat([self.inner(a), b], dim=-3)

    def _inverse(self, x: Tensor) -> Tensor:
        a, b = self._split(x)
        return torch.cat([self.inner.inv(a), b], dim=-3)

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        return self.call_and_ladj(z)[1]


class FactorOut(LazyTransform):
    r"""A lazy multi-scale factor-out: the composition of ``transforms`` (in generative
    order) acts on the leading ``channels`` channels only (see :class:`FactorOutTransform`).

    Parts with ``context > 0`` receive the context.

    Arguments:
        transforms: Lazy transforms or transform values :math:`g_1, \dots, g_n` of
            :math:`(k, H, W)` tensors, shape-preserving as a whole.
        channels: The number :math:`k` of leading channels they act on.

    Example:
        >>> t = FactorOut([SqueezeTransform(), ConvCoupling(8), SqueezeTransform().inv], 2)
        >>> t()(torch.randn(5, 4, 4, 4)).shape
        torch.Size([5, 4, 4, 4])
    """

    def __init__(self, transforms: Sequence[LazyTransform | Transform], channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"expected channels >= 1, got {channels}")
        self.transforms = nn.ModuleList([t for t in transforms if isinstance(t, nn.Module)])
        self._transforms = list(transforms)
        self.channels = channels
        self.context = max([getattr(t, "context", 0) for t in transforms], default=0)

    def forward(self, c: Tensor | None = None) -> Transform:
        parts = [
            (t(c) if t.context else t()) if isinstance(t, LazyTransform) else t
            for t in self._transforms
        ]
        return FactorOutTransform(ComposedTransform(*parts), self.channels)
