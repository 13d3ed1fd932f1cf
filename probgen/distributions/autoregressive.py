r"""Autoregressive models: chain-rule distributions,

.. math:: p(x | c) = \prod_{i=1}^D p(x_{\pi_i} | x_{\pi_{<i}}, c) ,

in a generation order :math:`\pi`. A network maps :math:`x` (and a context :math:`c`) to
the parameters of every conditional in one pass, each depending only on the elements
before it, so ``log_prob`` is one teacher-forced pass and exact; ``sample`` is ancestral,
one element at a time. A per-element family (:mod:`probgen.distributions.elements`) turns
parameters into conditionals.

Naive ancestral sampling runs the whole network once per element. A model that can
compute the next conditional incrementally (NADE's running sum, WaveNet's convolution
queues, a transformer's key/value cache) implements :class:`Incremental`, and the
chain rule samples through it in :math:`D` cheap steps; both paths draw the same random
numbers in the same order, so they give the same samples for the same seed.
"""

from __future__ import annotations

__all__ = ["Incremental", "ChainRule", "OrderMixture", "Autoregressive", "MADE", "NADE"]

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
from pyro.distributions import constraints
from torch import LongTensor, Size, Tensor

from ..lazy import LazyDistribution
from ..nn import MaskedLinear
from ..samplers.decoding import Strategy, strategies
from .base import GenerativeDistribution
from .elements import BernoulliFamily, ElementFamily

Network = Callable[[Tensor, Tensor | None], Tensor]
StrategyLike = Strategy | Sequence[Strategy] | None


@runtime_checkable
class Incremental(Protocol):
    r"""A network that computes the conditionals one element at a time, in the chain
    rule's order, from an explicit state.

    ``init_state(n, c, size)`` returns the state before the first of ``size`` elements
    for ``n`` sequences (``c`` with shape :math:`(n, C)` or ``None``);
    ``step(x_prev, state)`` takes the value of the previous element (shape :math:`(n,)`,
    ``None`` before the first) and returns the next element's parameters, with shape
    :math:`(n, P)`, and the new state. A state may hold preallocated buffers that
    ``step`` fills in place: the returned state replaces the one passed.
    """

    def init_state(self, n: int, c: Tensor | None, size: int) -> Any: ...

    def step(self, x_prev: Tensor | None, state: Any) -> tuple[Tensor, Any]: ...


class ChainRule(GenerativeDistribution):
    r"""The chain-rule distribution of an autoregressive network,

    .. math:: \log p(x | c) = \sum_{i=1}^D \log f(x_i; \theta_i(x_{<i}, c)) ,

    where :math:`\theta = \mathrm{network}(x, c)` holds the parameters of every conditional
    and :math:`f` is the per-element family.

    ``log_prob`` is one teacher-forced pass of the network; it checks the value's shape,
    finiteness and support (integers in range for discrete families). ``sample`` is
    ancestral; ``sample(..., strategy=...)`` (or ``temperature``, ``top_k``, ``top_p``)
    draws from the distribution a decoding strategy makes of each conditional
    (:mod:`probgen.samplers.decoding`), which is *not* :math:`p`: ``log_prob`` stays the
    model's. ``rsample`` exists when the family is reparameterisable (Gaussian).

    Arguments:
        network: A callable mapping :math:`x` with shape :math:`(N, *E)` and a context
            with shape :math:`(N, C)` (or ``None``) to parameters with shape
            :math:`(N, *E, P)`, the parameters of element :math:`\pi_i` depending only on
            the elements :math:`\pi_{<i}`.
        family: The per-element family (P parameters per element).
        event_shape: The event shape :math:`E`.
        context: The context :math:`c` with shape :math:`(*B, C)`, or ``None``; it sets
            ``batch_shape`` to :math:`B`.
        order: The generation order :math:`\pi`: the flat indices of the elements, with
            shape :math:`(D,)`; raster order by default.
        incremental: An :class:`Incremental` network in the same order, used by
            ``sample`` unless ``cache=False``.
        batch_shape: The batch shape of an unconditional chain rule (``()`` by default).
        dtype: The floating dtype of samples (the default dtype when ``None``).
        device: The device of samples.

    Example:
        >>> from probgen.distributions.elements import BernoulliFamily
        >>> net = lambda x, c: torch.zeros(*x.shape, 1)  # every bit a fair coin
        >>> d = ChainRule(net, BernoulliFamily(), (3,))
        >>> d.log_prob(torch.tensor([0.0, 1.0, 1.0]))
        tensor(-2.0794)
    """

    log_prob_kind = "exact"

    def __init__(
        self,
        network: Network,
        family: ElementFamily,
        event_shape: Sequence[int],
        context: Tensor | None = None,
        order: LongTensor | None = None,
        incremental: Incremental | None = None,
        batch_shape: Sequence[int] = (),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        event_shape = Size(event_shape)
        numel = event_shape.numel()
        if order is None:
            order = torch.arange(numel)
        order = torch.as_tensor(order, dtype=torch.long)
        if order.shape != (numel,):
            raise ValueError(
                f"expected an order with shape ({numel},) for event_shape "
                f"{tuple(event_shape)}, got {tuple(order.shape)}"
            )
        if context is not None:
            batch_shape = context.shape[:-1]
            dtype = dtype or context.dtype
            device = device or context.device
        self.network, self.family, self.c = network, family, context
        self.order, self.incremental = order, incremental
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.has_rsample = family.has_rsample
        super().__init__(Size(batch_shape), event_shape)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(self.family.support, len(self.event_shape))

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> ChainRule:
        batch_shape = Size(batch_shape)
        c = None if self.c is None else self.c.expand(*batch_shape, self.c.shape[-1])
        return ChainRule(
            self.network,
            self.family,
            self.event_shape,
            c,
            self.order,
            self.incremental,
            batch_shape,
            self.dtype,
            self.device,
        )

    # Scoring

    def _flat_context(self, batch: Size) -> Tensor | None:
        if self.c is None:
            return None
        return self.c.expand(*batch, self.c.shape[-1]).reshape(-1, self.c.shape[-1])

    def conditionals(self, x: Tensor) -> Tensor:
        r"""The parameters of every conditional, teacher-forced on ``x``.

        Arguments:
            x: A value with shape :math:`(*, *B, *E)`.

        Returns:
            The parameters, with shape :math:`(*, *B, *E, P)`.
        """
        k = len(self.event_shape)
        batch = torch.broadcast_shapes(x.shape[: x.dim() - k], self.batch_shape)
        x = x.expand(*batch, *self.event_shape).to(self.dtype)
        n = batch.numel()
        params = self.network(x.reshape(n, *self.event_shape), self._flat_context(batch))
        expected = (n, *self.event_shape, self.family.params)
        if tuple(params.shape) != expected:
            raise ValueError(
                f"the network returned parameters with shape {tuple(params.shape)}, expected "
                f"{expected} ({self.family!r} takes {self.family.params} per element)"
            )
        return params.reshape(*batch, *self.event_shape, -1)

    def log_prob(self, x: Tensor) -> Tensor:
        memo = self._memoized(x)
        if memo is not None:
            return memo
        self.check_value(x)
        params = self.conditionals(x)
        k = len(self.event_shape)
        x = x.to(self.dtype).expand(params.shape[:-1])
        lp = self.family.log_prob(params, x)
        return lp.sum(dim=tuple(range(-k, 0))) if k else lp

    # Sampling

    def sample(
        self,
        sample_shape: Sequence[int] = Size(),
        strategy: StrategyLike = None,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        cache: bool | None = None,
    ) -> Tensor:
        r"""Draws samples by ancestral sampling.

        Arguments:
            sample_shape: The sample shape :math:`S`.
            strategy: A decoding strategy or a sequence of them (applied in order), which
                changes the distribution sampled; ``log_prob`` is unaffected.
            temperature: Shorthand for :class:`~probgen.samplers.Temperature`.
            top_k: Shorthand for :class:`~probgen.samplers.TopK`.
            top_p: Shorthand for :class:`~probgen.samplers.TopP`.
            cache: Whether to use the incremental network (default: when there is one).
                Both paths give the same samples for the same RNG state.

        Returns:
            Samples with shape :math:`S + B + E`.
        """
        shorthand = strategies(temperature, top_k, top_p)
        if shorthand and strategy is not None:
            raise ValueError("give either strategy or temperature / top_k / top_p, not both")
        strategy = shorthand or strategy
        with torch.no_grad():
            x, _ = self._ancestral(Size(sample_shape), strategy, cache, False)
        return x

    def rsample(self, sample_shape: Sequence[int] = Size()) -> Tensor:
        if not self.has_rsample:
            raise NotImplementedError(
                f"{self.family!r} is not reparameterisable; use sample (no gradient) instead"
            )
        return self._ancestral(Size(sample_shape), None, False, False)[0]

    def rsample_and_log_prob(self, sample_shape: Sequence[int] = Size()) -> tuple[Tensor, Tensor]:
        if not self.has_rsample:
            raise NotImplementedError(f"{self.family!r} is not reparameterisable")
        # The conditionals computed while sampling score the sample: no extra pass.
        return self._ancestral(Size(sample_shape), None, False, True)

    def _ancestral(
        self, sample_shape: Size, strategy: StrategyLike, cache: bool | None, score: bool
    ) -> tuple[Tensor, Tensor | None]:
        shape = sample_shape + self.batch_shape
        n, numel = shape.numel(), self.event_shape.numel()
        c = self._flat_context(shape)
        if cache and self.incremental is None:
            raise ValueError("cache=True needs an incremental network; this model has none")
        use_cache = self.incremental is not None and cache is not False
        x = torch.zeros(n, numel, dtype=self.dtype, device=self.device)
        log_p = x.new_zeros(n) if score else None
        state = self.incremental.init_state(n, c, numel) if use_cache else None
        prev = None
        grad = torch.is_grad_enabled()
        for pos in self.order.tolist():
            if use_cache:
                params, state = self.incremental.step(prev, state)
            else:
                params = self.network(x.reshape(n, *self.event_shape), c)
                params = params.reshape(n, numel, -1)[:, pos]
            xi = self.family.sample(params, strategy)
            if score:
                log_p = log_p + self.family.log_prob(params, xi)
            # The network saved x for backward: write into a copy when differentiating.
            x = x.clone() if grad else x
            x[:, pos] = xi
            prev = xi
        x = x.reshape(*shape, *self.event_shape)
        return x, (log_p.reshape(shape) if score else None)


class OrderMixture(GenerativeDistribution):
    r"""The uniform mixture of chain rules that differ in order or connectivity,

    .. math:: p(x) = \frac{1}{K} \sum_{k=1}^K p_k(x) ,

    MADE's order- and connectivity-agnostic ensemble: exact and normalised like each
    component; ``log_prob`` costs :math:`K` passes, ``sample`` picks a component per draw.

    Arguments:
        components: Chain rules with one batch and event shape.

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509
    """

    log_prob_kind = "exact"
    has_rsample = False

    def __init__(self, components: Sequence[ChainRule]) -> None:
        self.components = list(components)
        first = self.components[0]
        for d in self.components:
            if d.batch_shape != first.batch_shape or d.event_shape != first.event_shape:
                raise ValueError("expected components with one batch_shape and event_shape")
        super().__init__(first.batch_shape, first.event_shape)

    @property
    def support(self) -> constraints.Constraint:
        return self.components[0].support

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> OrderMixture:
        return OrderMixture([d.expand(batch_shape) for d in self.components])

    def log_prob(self, x: Tensor) -> Tensor:
        self.check_value(x)
        lp = torch.stack([d.log_prob(x) for d in self.components])
        return lp.logsumexp(dim=0) - math.log(len(self.components))

    def sample(
        self, sample_shape: Sequence[int] = Size(), strategy: StrategyLike = None, **kwargs: Any
    ) -> Tensor:
        r"""Draws from a uniformly chosen component per sample (see :meth:`ChainRule.sample`)."""
        sample_shape = Size(sample_shape)
        xs = torch.stack([d.sample(sample_shape, strategy, **kwargs) for d in self.components])
        shape = sample_shape + self.batch_shape
        k = torch.randint(len(self.components), shape, device=xs.device)
        idx = k.reshape(1, *shape, *[1] * len(self.event_shape)).expand(1, *xs.shape[1:])
        return xs.gather(0, idx).squeeze(0)


class Autoregressive(LazyDistribution):
    r"""Base class of autoregressive models: a module whose call builds a :class:`ChainRule`.

    Subclasses set ``family``, ``event_shape``, ``context`` and an ``order`` buffer (the
    flat generation order) and implement :meth:`conditionals`; those that can, also
    implement ``init_state`` and ``step`` (:class:`Incremental`) for fast sampling.
    """

    family: ElementFamily
    event_shape: Size
    order: Tensor

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The parameters of every conditional, in one pass.

        Arguments:
            x: With shape :math:`(N, *E)`.
            c: With shape :math:`(N, C)`, or ``None``.

        Returns:
            With shape :math:`(N, *E, P)`.
        """
        raise NotImplementedError

    def _like(self) -> Tensor:
        return next(self.parameters())

    def forward(self, c: Tensor | None = None) -> ChainRule:
        self.check_context(c)
        like = self._like()
        incremental = self if isinstance(self, Incremental) else None
        return ChainRule(
            self.conditionals,
            self.family,
            self.event_shape,
            c,
            self.order,
            incremental,
            dtype=like.dtype,
            device=like.device,
        )


def _check_sizes(features: int, context: int) -> None:
    if features < 1:
        raise ValueError(f"expected features >= 1, got {features}")
    if context < 0:
        raise ValueError(f"expected context >= 0, got {context}")


def _as_order(order: LongTensor | Sequence[int] | None, features: int) -> Tensor:
    if order is None:
        return torch.arange(features)
    order = torch.as_tensor(order, dtype=torch.long)
    if order.shape != (features,) or sorted(order.tolist()) != list(range(features)):
        raise ValueError(
            f"expected an order that permutes 0..{features - 1} (shape ({features},)), got "
            f"{order.tolist()}"
        )
    return order


def _input_scale(family: ElementFamily) -> float:
    # Discrete values enter the network in [0, 1]; real values as they are.
    return 1.0 / (family.values - 1) if family.values else 1.0


class MADE(Autoregressive):
    r"""A masked autoencoder for distribution estimation: a masked MLP gives every
    conditional in one pass.

    Hidden unit :math:`h` has a degree :math:`m(h) \in \{1, \dots, D - 1\}` and connects to
    units of lower or equal degree; output :math:`i` connects to hidden units of degree
    below :math:`i`'s rank, so :math:`\theta_i` depends on :math:`x_{<i}` only.
    With ``masks > 1`` the model is the uniform mixture (:class:`OrderMixture`) of
    ``masks`` MADEs that share every weight but differ in order and connectivity: mask set
    0 has the given order and MADE's deterministic degrees, the others a random order and
    random degrees (seeded by ``seed``).

    Arguments:
        features: The number of elements :math:`D`.
        family: The per-element family (Bernoulli by default).
        context: The number of context features (0 when unconditional).
        hidden: The widths of the hidden layers.
        order: The generation order of mask set 0 (a permutation of the features);
            the natural order by default.
        masks: The number of mask sets (orders and connectivities) in the ensemble.
        activation: The activation constructor.
        seed: The seed of the random orders and degrees (independent of the global RNG).

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509

    Example:
        >>> made = MADE(10, hidden=(32,))
        >>> d = made()
        >>> d.log_prob(d.sample((4,))).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        family: ElementFamily | None = None,
        context: int = 0,
        hidden: Sequence[int] = (256,),
        order: LongTensor | Sequence[int] | None = None,
        masks: int = 1,
        activation: type[nn.Module] = nn.ReLU,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_sizes(features, context)
        if masks < 1:
            raise ValueError(f"expected masks >= 1, got {masks}")
        self.family = family if family is not None else BernoulliFamily()
        self.event_shape, self.context = Size((features,)), context
        self.scale = _input_scale(self.family)
        params = self.family.params
        generator = torch.Generator().manual_seed(seed)
        orders, nets = [], []
        for k in range(masks):
            order_k = (
                _as_order(order, features)
                if k == 0
                else torch.randperm(features, generator=generator)
            )
            orders.append(order_k)
            nets.append(self._masked(order_k, hidden, params, activation, k, generator))
        # Every mask set shares the weights of set 0 (the same Parameter objects).
        for net in nets[1:]:
            for a, b in zip(nets[0], net, strict=True):
                if isinstance(a, MaskedLinear):
                    b.weight, b.bias = a.weight, a.bias
        self.nets = nn.ModuleList(nets)
        self.register_buffer("orders", torch.stack(orders))
        self.register_buffer("order", orders[0])

    def _masked(
        self,
        order: Tensor,
        hidden: Sequence[int],
        params: int,
        activation: type[nn.Module],
        k: int,
        generator: torch.Generator,
    ) -> nn.Sequential:
        d = len(order)
        # Degrees: the rank of each input in the order; context inputs -1 (reach all).
        rank = torch.empty_like(order)
        rank[order] = torch.arange(d)
        d_prev = torch.cat([rank, rank.new_full((self.context,), -1)])
        layers: list[nn.Module] = []
        for width in hidden:
            if d == 1:
                d_hid = torch.full((width,), -1)
            elif k == 0:
                d_hid = torch.arange(width) % (d - 1)
            else:
                low = int(d_prev.min().clamp(min=0))
                d_hid = torch.randint(low, d - 1, (width,), generator=generator)
            layers += [MaskedLinear(d_hid[:, None] >= d_prev[None, :]), activation()]
            d_prev = d_hid
        d_out = rank.repeat_interleave(params)
        layers.append(MaskedLinear(d_out[:, None] > d_prev[None, :]))
        return nn.Sequential(*layers)

    def _net(self, k: int) -> Callable[[Tensor, Tensor | None], Tensor]:
        def conditionals(x: Tensor, c: Tensor | None = None) -> Tensor:
            h = x * self.scale
            if c is not None:
                h = torch.cat([h, c], dim=-1)
            return self.nets[k](h).unflatten(-1, (self.event_shape[0], self.family.params))

        return conditionals

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The parameters of mask set 0's conditionals (see :class:`Autoregressive`)."""
        return self._net(0)(x, c)

    def forward(self, c: Tensor | None = None) -> ChainRule | OrderMixture:
        self.check_context(c)
        like = self._like()
        parts = [
            ChainRule(
                self._net(k),
                self.family,
                self.event_shape,
                c,
                order,
                dtype=like.dtype,
                device=like.device,
            )
            for k, order in enumerate(self.orders)
        ]
        return parts[0] if len(parts) == 1 else OrderMixture(parts)


class NADE(Autoregressive):
    r"""The neural autoregressive distribution estimator: one hidden layer whose weights
    are shared by every conditional,

    .. math:: h_i = \sigma\Big(b + V c + \sum_{j < i} W_{:, \pi_j} x_{\pi_j}\Big), \qquad
        \theta_{\pi_i} = U_{\pi_i} h_i + a_{\pi_i} .

    The pre-activations are a running sum, so one pass costs :math:`O(DH)` like a single
    layer, and sampling steps it incrementally (:class:`Incremental`) at :math:`O(H)` per
    element instead of a pass per element.

    Arguments:
        features: The number of elements :math:`D`.
        family: The per-element family (Bernoulli by default).
        context: The number of context features (0 when unconditional).
        hidden: The hidden width :math:`H`.
        order: The generation order :math:`\pi`; the natural order by default.
        activation: The activation constructor (sigmoid, as in the paper).

    References:
        | The Neural Autoregressive Distribution Estimator (Larochelle & Murray, 2011)
        | https://proceedings.mlr.press/v15/larochelle11a.html

    Example:
        >>> nade = NADE(10, hidden=16)
        >>> nade().sample((3,)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        features: int,
        family: ElementFamily | None = None,
        context: int = 0,
        hidden: int = 256,
        order: LongTensor | Sequence[int] | None = None,
        activation: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        _check_sizes(features, context)
        self.family = family if family is not None else BernoulliFamily()
        self.event_shape, self.context = Size((features,)), context
        self.scale = _input_scale(self.family)
        params = self.family.params
        self.register_buffer("order", _as_order(order, features))
        self.W = nn.Parameter(torch.randn(features, hidden) / math.sqrt(features))
        self.b = nn.Parameter(torch.zeros(hidden))
        self.U = nn.Parameter(torch.randn(features, hidden, params) / math.sqrt(hidden))
        self.a = nn.Parameter(torch.zeros(features, params))
        self.V = nn.Linear(context, hidden, bias=False) if context else None
        self.activation = activation()

    def _bias(self, n: int, c: Tensor | None) -> Tensor:
        b = self.b.expand(n, -1)
        return b + self.V(c) if self.V is not None and c is not None else b

    def conditionals(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        xo = x[:, self.order] * self.scale  # (N, D) in generation order
        w = self.W[self.order]  # (D, H)
        # Exclusive running sum: element i sees x_{<i} only.
        contrib = xo.unsqueeze(-1) * w
        a = contrib.cumsum(dim=1) - contrib + self._bias(len(x), c).unsqueeze(1)
        h = self.activation(a)  # (N, D, H)
        theta = torch.einsum("ndh,dhp->ndp", h, self.U[self.order]) + self.a[self.order]
        out = torch.empty_like(theta)
        out[:, self.order] = theta
        return out

    def init_state(self, n: int, c: Tensor | None, size: int) -> tuple[Tensor, int]:
        r"""The pre-activation before the first element, and the step index 0."""
        return self._bias(n, c), 0

    def step(self, x_prev: Tensor | None, state: tuple[Tensor, int]) -> tuple[Tensor, Any]:
        r"""Adds the previous element to the running sum and returns the next element's
        parameters (see :class:`Incremental`)."""
        a, t = state
        if x_prev is not None:
            a = a + (x_prev * self.scale).unsqueeze(-1) * self.W[self.order[t - 1]]
        i = self.order[t]
        theta = self.activation(a) @ self.U[i] + self.a[i]
        return theta, (a, t + 1)
