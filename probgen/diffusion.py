r"""Diffusion and score models (``pg.diffusion``).

:class:`Diffusion` is an :class:`torch.nn.Module` whose call returns a fresh
:class:`DiffusionDistribution`: the prior pushed by the probability-flow ODE of an SDE
(:class:`VP` with DDPM's linear or the cosine schedule, :class:`SubVP`, :class:`VE`), so
``log_prob`` is exact through that ODE. Time runs from :math:`t = 0` (noise) to
:math:`t = 1` (data). The samplers are functions over explicit grids
(:func:`uniform_grid`, :func:`logsnr_grid`): DDPM ancestral, DDIM with :math:`\eta`,
Euler-Maruyama on the reverse SDE, predictor-corrector, Heun on the probability-flow ODE,
DPM-Solver++(2M) (good at 10-20 steps on the log-SNR grid); each takes the distribution's
``eps`` and ``sde`` and returns the samples and the number of evaluations:

.. code-block:: python

    d = model()
    grid = pg.diffusion.uniform_grid(50, d.t_max)
    x, nfe = pg.diffusion.ddim(d.eps, d.sde, d.base.sample((1000,)), grid)
    grid = pg.diffusion.logsnr_grid(d.sde, 15, d.t_max)
    x, nfe = pg.diffusion.dpm_solver_pp(d.eps, d.sde, d.base.sample((1000,)), grid)

Score models (:mod:`probgen.distributions.score`): :class:`NCSN`, a noise-conditional
score network over a geometric ladder (:func:`geometric_sigmas`) trained by denoising
score matching and sampled by :func:`annealed_langevin`, whose ``probability_flow()`` is
the ladder's VE probability-flow ODE with an exact ``log_prob``; :class:`ScoreModel`,
trained by sliced score matching and sampled by Langevin dynamics.

Classifier-free guidance is a property of the distribution, ``model(c, guidance=w)``
(:math:`(1 + w) \hat\epsilon(x, t, c) - w \hat\epsilon(x, t, \varnothing)`, the null
context the zero vector), so every sampler and the probability-flow ODE are guided;
``Diffusion(p_uncond=p)`` trains with condition dropout. Images go through :class:`UNet`
on flat vectors.
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
    "dpm_solver_pp",
    "uniform_grid",
    "logsnr_grid",
    "NCSN",
    "ScoreModel",
    "AnnealedLangevin",
    "geometric_sigmas",
    "annealed_langevin",
    "UNet",
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
from .distributions.score import NCSN, AnnealedLangevin, ScoreModel, geometric_sigmas
from .nn.unet import UNet
from .samplers.sde import (
    SDE,
    VE,
    VP,
    CosineSchedule,
    LinearSchedule,
    Schedule,
    SubVP,
    annealed_langevin,
    ddim,
    ddpm,
    dpm_solver_pp,
    euler_maruyama,
    heun,
    logsnr_grid,
    predictor_corrector,
    uniform_grid,
)
