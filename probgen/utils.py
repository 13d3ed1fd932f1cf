r"""Small tensor helpers shared by every layer.

Nothing here knows about probability: shapes, broadcasting and input checks.
"""

from __future__ import annotations

__all__ = [
    "sum_rightmost",
    "broadcast_context",
    "check_event",
    "check_finite",
    "check_context",
    "unpack",
]

from collections.abc import Sequence

import torch
from torch import Tensor


def sum_rightmost(x: Tensor, dims: int) -> Tensor:
    r"""Sums the ``dims`` rightmost dimensions of ``x``."""
    return x.sum(dim=tuple(range(-dims, 0))) if dims > 0 else x


def check_finite(x: Tensor, name: str = "value") -> None:
    r"""Raises a :class:`ValueError` when ``x`` holds NaN or infinite entries."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(
            f"{name} holds {bad} non-finite entries (NaN or inf) out of {x.numel()}; "
            "expected finite values"
        )


def check_event(x: Tensor, event_shape: Sequence[int], name: str = "value") -> None:
    r"""Checks that the rightmost dimensions of ``x`` are ``event_shape``."""
    event_shape = tuple(event_shape)
    k = len(event_shape)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != event_shape:
        raise ValueError(
            f"expected {name} with event_shape {event_shape} (shape (*, "
            f"{', '.join(map(str, event_shape))})), got shape {tuple(x.shape)}"
        )


def check_context(c: Tensor | None, context: int, name: str = "context") -> None:
    r"""Checks a context tensor against the number of context features a model expects."""
    if context == 0:
        if c is not None:
            raise ValueError(
                f"this model is unconditional (context=0) but a {name} of shape "
                f"{tuple(c.shape)} was given"
            )
        return
    if c is None:
        raise ValueError(f"this model expects a {name} with shape (*, {context}), got None")
    if not isinstance(c, Tensor) or c.dim() < 1 or c.shape[-1] != context:
        shape = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
        raise ValueError(f"expected {name} with shape (*, {context}), got {shape}")
    check_finite(c, name)


def broadcast_context(x: Tensor, c: Tensor | None, event_dims: int = 1) -> Tensor | None:
    r"""Expands ``c`` with shape ``(*B, C)`` to the batch dimensions of ``x`` ``(*S, *B, *E)``."""
    if c is None:
        return None
    batch = x.shape[: x.dim() - event_dims]
    return c.expand(*batch, c.shape[-1]) if tuple(c.shape[:-1]) != tuple(batch) else c


def unpack(x: Tensor, shapes: Sequence[tuple[int, ...]]) -> tuple[Tensor, ...]:
    r"""Splits the last dimension of ``x`` into tensors of the given trailing ``shapes``.

    Arguments:
        x: A tensor with shape :math:`(*, \sum_i \prod shapes_i)`.
        shapes: The trailing shape of each output.

    Returns:
        Tensors with shapes :math:`(*, *shapes_i)`.
    """
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    chunks = x.split(sizes, dim=-1)
    return tuple(c.reshape(*c.shape[:-1], *s) for c, s in zip(chunks, shapes, strict=True))
