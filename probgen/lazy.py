r"""The module-builds-distribution layer.

A *lazy* object is an :class:`torch.nn.Module` that owns parameters and, when called with an
optional context :math:`c`, returns a fresh distribution or transform value. Values are never
cached across calls, so a model can be moved, saved, trained or nested freely.

For a context with shape :math:`(*B, C)` the distribution returned has ``batch_shape ==
B``; without a context it has ``batch_shape == ()``.
"""

from __future__ import annotations

__all__ = [
    "LazyDistribution",
    "LazyTransform",
    "LazyInverse",
    "UnconditionalDistribution",
    "UnconditionalTransform",
]

import abc
from collections.abc import Callable
from typing import Any

import torch.nn as nn
from torch import Tensor
from torch.distributions import Distribution, Transform

from .utils import check_context


class LazyDistribution(nn.Module, abc.ABC):
    r"""Abstract lazy distribution: a module whose call returns a distribution.

    Subclasses set ``self.context`` (the number of context features, 0 when
    unconditional) and implement :meth:`forward`. The alias :meth:`condition` makes every
    lazy distribution a Pyro ``ConditionalDistribution`` by duck typing.
    """

    context: int = 0

    @abc.abstractmethod
    def forward(self, c: Tensor | None = None) -> Distribution:
        r"""
        Arguments:
            c: A context :math:`c` with shape :math:`(*B, C)`, or ``None``.

        Returns:
            A distribution :math:`p(X | c)` with ``batch_shape`` :math:`B`.
        """

    def condition(self, c: Tensor | None = None) -> Distribution:
        r"""Alias of :meth:`__call__`, for Pyro's ``ConditionalDistribution`` interface."""
        return self(c)

    def check_context(self, c: Tensor | None) -> None:
        r"""Raises :class:`ValueError` if ``c`` does not match ``self.context``."""
        check_context(c, self.context)


class LazyTransform(nn.Module, abc.ABC):
    r"""Abstract lazy transform: a module whose call returns a transform :math:`y = f(x)`."""

    context: int = 0

    @abc.abstractmethod
    def forward(self, c: Tensor | None = None) -> Transform:
        r"""
        Arguments:
            c: A context :math:`c` with shape :math:`(*, C)`, or ``None``.

        Returns:
            A transform :math:`y = f(x | c)`.
        """

    @property
    def inv(self) -> LazyTransform:
        r"""The lazy inverse :math:`x = f^{-1}(y)`."""
        return LazyInverse(self)


class LazyInverse(LazyTransform):
    r"""The inverse of a lazy transform.

    Arguments:
        transform: A lazy transform :math:`f`.
    """

    def __init__(self, transform: LazyTransform) -> None:
        super().__init__()
        self.transform = transform
        self.context = transform.context

    def forward(self, c: Tensor | None = None) -> Transform:
        return self.transform(c).inv

    @property
    def inv(self) -> LazyTransform:
        return self.transform


def _register(
    module: nn.Module, meta: Callable, args: tuple[Tensor, ...], buffer: bool, kwargs: dict
) -> None:
    # Positional tensors become `_0`, `_1`, ...: buffers follow `.to()` and `state_dict`,
    # parameters are trained as well.
    module.meta, module.kwargs = meta, kwargs
    for i, arg in enumerate(args):
        if buffer:
            module.register_buffer(f"_{i}", arg)
        else:
            module.register_parameter(f"_{i}", nn.Parameter(arg))


def _repr(module: nn.Module) -> str:
    return f"{module.__class__.__name__}({getattr(module.meta, '__name__', module.meta)})"


class UnconditionalDistribution(LazyDistribution):
    r"""A distribution with no context, built from constructor arguments on each call.

    Tensor arguments are registered as buffers (or parameters when ``buffer=False``), so
    they follow ``.to(device)`` and ``state_dict``.

    Arguments:
        meta: A constructor returning a distribution, e.g. :class:`probgen.distributions.DiagNormal`.
        args: Positional tensor arguments of ``meta``.
        buffer: Whether tensors are buffers (fixed) or parameters (trained).
        kwargs: Keyword arguments of ``meta``.

    Example:
        >>> import torch
        >>> from probgen.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2))
        >>> base().sample((5,)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self, meta: Callable[..., Distribution], *args: Tensor, buffer: bool = True, **kwargs: Any
    ) -> None:
        super().__init__()
        _register(self, meta, args, buffer, kwargs)

    __repr__ = _repr

    def forward(self, c: Tensor | None = None) -> Distribution:
        self.check_context(c)
        return self.meta(*_arguments(self), **self.kwargs)


class UnconditionalTransform(LazyTransform):
    r"""A transform with no context, built from constructor arguments on each call.

    Arguments:
        meta: A constructor returning a transform.
        args: Positional tensor arguments of ``meta``.
        buffer: Whether tensors are buffers (fixed) or parameters (trained).
        kwargs: Keyword arguments of ``meta``.
    """

    def __init__(
        self, meta: Callable[..., Transform], *args: Tensor, buffer: bool = False, **kwargs: Any
    ) -> None:
        super().__init__()
        _register(self, meta, args, buffer, kwargs)

    __repr__ = _repr

    def forward(self, c: Tensor | None = None) -> Transform:
        return self.meta(*_arguments(self), **self.kwargs)


def _arguments(module: nn.Module) -> list[Tensor]:
    # Tensors registered as `_0`, `_1`, ... (buffers or parameters), in positional order.
    items = [*module._buffers.items(), *module._parameters.items()]
    return [t for _, t in sorted(items, key=lambda kv: int(kv[0][1:]))]
