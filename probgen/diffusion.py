r"""Diffusion and score models (``pg.diffusion``).

:class:`Diffusion` is an :class:`torch.nn.Module` whose call returns a fresh
:class:`DiffusionDistribution`: the prior pushed by the probability-flow ODE of an SDE
(:class:`VP` with DDPM's linear or the cosine schedule, :class:`SubVP`, :class:`VE`), so
``log_prob`` is exact through that ODE. Time runs from :math:`t = 0` (noise) to
:math:`t = 1` (data). The samplers are functions over explicit grids
(:func:`uniform_grid`): DDPM ancestral, DDIM with :math:`\eta`, Euler-Maruyama on the
reverse SDE, predictor-corrector, Heun on the probability-flow ODE; each takes the
distribution's ``eps`` and ``sde`` and returns the samples and the number of evaluations:

.. code-block:: python

    d = model()
    grid = pg.diffusion.uniform_grid(50, d.t_max)
    x, nfe = pg.diffusion.ddim(d.eps, d.sde, d.base.sample((1000,)), grid)
"""

from __future__ import annotations

__all__ = [
    "Diffusion",
    "DiffusionDistribution",
    "Parameterization",
    "NoisePrediction",
    "DataPrediction",
    "VelocityPrediction",
    "ScorePrediction",
    "SDE",
    "VP",
    "SubVP",
    "VE",
    "Schedule",
    "LinearSchedule",
    "CosineSchedule",
    "ddpm",
    "ddim",
    "euler_maruyama",
    "predictor_corrector",
    "heun",
    "uniform_grid",
]

from .distributions.diffusion import (
    DataPrediction,
    Diffusion,
    DiffusionDistribution,
    NoisePrediction,
    Parameterization,
    ScorePrediction,
    VelocityPrediction,
)
from .samplers.sde import (
    SDE,
    VE,
    VP,
    CosineSchedule,
    LinearSchedule,
    Schedule,
    SubVP,
    ddim,
    ddpm,
    euler_maruyama,
    heun,
    predictor_corrector,
    uniform_grid,
)
