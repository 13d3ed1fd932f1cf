r"""ODE flows (``pg.ode``): continuous normalizing flows and flow matching.

Every model is an :class:`torch.nn.Module` whose call returns a fresh
:class:`ContinuousFlow` (a Pyro distribution): the pushforward of a standard normal by the
flow of a learned vector field from :math:`t = 0` (noise) to :math:`t = 1` (data), with an
exact ``log_prob`` through the ODE (``"estimate"`` with a Hutchinson trace).
"""

from __future__ import annotations

__all__ = [
    "ContinuousFlow",
    "CNF",
    "FlowMatching",
    "AffinePath",
    "LinearPath",
    "VPPath",
    "Coupling",
    "IndependentCoupling",
    "OTCoupling",
    "ExactTrace",
    "Hutchinson",
    "ODETransform",
    "reflow_pairs",
    "reflow",
]

from typing import Any

import torch
from torch import Tensor

from .distributions.continuous import (
    CNF,
    AffinePath,
    ContinuousFlow,
    Coupling,
    FlowMatching,
    IndependentCoupling,
    LinearPath,
    OTCoupling,
    VPPath,
    reflow_pairs,
)
from .objectives import flow_matching
from .train import History, fit
from .transforms.continuous import ExactTrace, Hutchinson, ODETransform


def reflow(model: FlowMatching, pairs: int, steps: int, **kwargs: Any) -> History:
    r"""One rectification (reflow) step: trains ``model`` in place by flow matching on
    coupled pairs :math:`(x_0, f(x_0))` drawn from its own current flow, which straightens
    its paths (fewer solver steps for the same samples).

    Arguments:
        model: A trained unconditional :class:`FlowMatching` (or :class:`CNF`) model.
        pairs: The number of pairs drawn once, before training.
        steps: The number of training steps.
        kwargs: Further arguments of :func:`probgen.fit` (``batch_size``, ``lr``, ...).

    Returns:
        The :class:`~probgen.train.History` of the run.

    References:
        | Flow Straight and Fast (Liu et al., 2022) https://arxiv.org/abs/2209.03003
    """
    if getattr(model, "context", 0):
        raise ValueError("reflow draws unconditional pairs; the model has a context")
    x0, x1 = reflow_pairs(model, pairs)
    path = getattr(model, "path", None) or LinearPath()

    def objective(m: torch.nn.Module, zx: Tensor, c: Tensor | None = None) -> Tensor:
        return flow_matching(m, zx[:, 1], c, path=path, x0=zx[:, 0])

    return fit(model, torch.stack([x0, x1], dim=1), objective=objective, steps=steps, **kwargs)
