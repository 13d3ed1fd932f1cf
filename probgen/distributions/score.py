r"""Score models: networks of :math:`\nabla_x \log p`, sampled by (annealed) Langevin dynamics.

- :class:`NCSN` (Song and Ermon, 2019): a noise-conditional score network
  :math:`s_\theta(x, \sigma) \approx \nabla_x \log p_\sigma(x)` for the data smoothed by
  :math:`\mathcal{N}(0, \sigma^2 I)` at every level of a geometric ladder
  :math:`\sigma_1 > \dots > \sigma_L` (:func:`geometric_sigmas`), trained by denoising score
  matching (:func:`probgen.objectives.denoising_score_matching`) and sampled by annealed
  Langevin dynamics (:func:`probgen.samplers.sde.annealed_langevin`).
- :class:`ScoreModel`: a score network of the data alone, trained by sliced score matching
  (:func:`probgen.objectives.sliced_score_matching`) and sampled by Langevin dynamics.

**What log_prob means.** A Langevin chain's output has no tractable density, so the
distribution these models build (:class:`AnnealedLangevin`) has ``log_prob_kind ==
"none"`` and its ``log_prob`` raises. For an NCSN there is an honest likelihood of a
*different*, closely related distribution: the ladder is a discretised variance-exploding
SDE with noise level :math:`s(t) = \sigma_1 (\sigma_L / \sigma_1)^t` (time 0 at
:math:`\sigma_1`, 1 at :math:`\sigma_L`; the network's time input is this :math:`t`), and
its probability-flow ODE

.. math:: \frac{dx}{dt} = \tfrac12 \frac{d s^2}{d\tau} \, s_\theta(x, s(t)), \quad
    x(0) \sim \mathcal{N}(0, \sigma_1^2 I) ,

carries the prior to the same target as annealed Langevin, the data smoothed at
:math:`\sigma_L`. :meth:`NCSN.probability_flow` returns that pushforward as a
:class:`~probgen.distributions.DiffusionDistribution`: its samples (one ODE solve) and its
``log_prob`` (exact through the ODE) belong to each other; the Langevin samples do not.

References:
    | Generative Modeling by Estimating Gradients of the Data Distribution (Song and Ermon,
    | 2019) https://arxiv.org/abs/1907.05600
    | Improved Techniques for Training Score-Based Generative Models (Song and Ermon, 2020)
    | https://arxiv.org/abs/2006.09011
    | Sliced Score Matching: A Scalable Approach to Density and Score Estimation
    | (Song et al., 2019) https://arxiv.org/abs/1905.07088
"""

from __future__ import annotations

__all__ = [
    "geometric_sigmas",
    "AnnealedLangevin",
    "NCSN",
    "ScoreModel",
]

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor

from ..lazy import LazyDistribution
from ..nn.gan import ContextMLP
from ..nn.time import TimeMLP
from ..samplers.sde import VE, annealed_langevin
from ..transforms.continuous import EXACT_TRACE, Divergence
from ..utils import broadcast_context
from .base import GenerativeDistribution
from .diffusion import DiffusionDistribution, Parameterization

NO_DENSITY = (
    "{name} is the law of a Langevin chain (log_prob_kind 'none'): its density is "
    "intractable. For an NCSN, model.probability_flow(c) is the distribution of its "
    "probability-flow ODE, with an exact log_prob (and its own samples); otherwise "
    "evaluate samples with probgen.metrics (mmd_test, energy_distance, sliced_wasserstein)"
)


def geometric_sigmas(sigma_max: float, sigma_min: float, levels: int) -> Tensor:
    r"""The geometric ladder :math:`\sigma_i = \sigma_{max} (\sigma_{min} /
    \sigma_{max})^{(i - 1) / (L - 1)}`, :math:`i = 1, \dots, L` (Song and Ermon, 2019).

    Example:
        >>> geometric_sigmas(1.0, 0.01, 3)
        tensor([1.0000, 0.1000, 0.0100])
    """
    if not 0 < sigma_min < sigma_max or levels < 2:
        raise ValueError(
            f"expected 0 < sigma_min < sigma_max and levels >= 2, got {sigma_min}, "
            f"{sigma_max}, {levels}"
        )
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), levels)


class AnnealedLangevin(GenerativeDistribution):
    r"""The law of annealed Langevin dynamics from :math:`\mathcal{N}(0, \sigma_1^2 I)`
    (:func:`~probgen.samplers.sde.annealed_langevin`): samples, no density.

    Arguments:
        score: The score ``score(x, sigma, c)`` for ``x`` with shape :math:`(*, D)`, a
            scalar ``sigma`` and ``c`` broadcast to :math:`(*, C)` or ``None``.
        sigmas: The decreasing noise levels with shape :math:`(L,)` (one level: plain
            Langevin dynamics from :math:`\mathcal{N}(0, \sigma_1^2 I)`).
        features: The number of features :math:`D`.
        c: A context with shape :math:`(*B, C)`, or ``None``.
        steps: Langevin steps per level.
        step_size: :math:`\epsilon`, the step at the smallest level.
        denoise: Whether to end with a Tweedie denoising step.
        batch_shape: The batch shape (default the context's).
    """

    has_rsample = False
    log_prob_kind = "none"

    def __init__(
        self,
        score: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        sigmas: Tensor,
        features: int,
        c: Tensor | None = None,
        steps: int = 100,
        step_size: float = 2e-5,
        denoise: bool = False,
        batch_shape: Sequence[int] | None = None,
    ) -> None:
        if batch_shape is None:
            batch_shape = c.shape[:-1] if c is not None else Size()
        self.score, self.sigmas, self.c = score, sigmas, c
        self.steps, self.step_size, self.denoise = steps, step_size, denoise
        super().__init__(Size(batch_shape), Size((features,)))

    def expand(self, batch_shape: Size, _instance: Any = None) -> AnnealedLangevin:
        batch_shape = Size(batch_shape)
        c = None if self.c is None else self.c.expand(*batch_shape, self.c.shape[-1])
        return AnnealedLangevin(
            self.score, self.sigmas, self.event_shape[0], c, self.steps, self.step_size,
            self.denoise, batch_shape,
        )  # fmt: skip

    def sample_and_nfe(self, sample_shape: Size | tuple[int, ...] = ()) -> tuple[Tensor, int]:
        r"""Returns samples with shape ``sample_shape + batch_shape + event_shape`` and the
        number of score evaluations."""
        shape = Size(sample_shape) + self.batch_shape + self.event_shape
        x = self.sigmas[0] * torch.randn(shape, dtype=self.sigmas.dtype, device=self.sigmas.device)
        c = broadcast_context(x, self.c)
        with torch.no_grad():
            return annealed_langevin(
                lambda x, sigma: self.score(x, sigma, c), x, self.sigmas, self.steps,
                self.step_size, self.denoise,
            )  # fmt: skip

    def sample(self, sample_shape: Size | tuple[int, ...] = ()) -> Tensor:
        return self.sample_and_nfe(sample_shape)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError(NO_DENSITY.format(name=type(self).__name__))


@dataclass(frozen=True)
class _LadderVE(VE):
    # The VE SDE of an NCSN ladder: noise level s(t) itself (not sqrt(s^2 - s_min^2)),
    # because the ladder's last level smooths the data by sigma_min; same f and g as VE.

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self._s(1 - t)
        return torch.ones_like(s), s


class _ScaledScore(Parameterization):
    # The NCSN network predicts sigma * score = -eps (Song and Ermon, 2020, technique 3).

    def eps(self, out, x, a, s):
        return -out

    def target(self, x0, e, a, s):
        return -e


class NCSN(LazyDistribution):
    r"""A noise-conditional score network over a geometric ladder of noise levels,
    sampled by annealed Langevin dynamics (Song and Ermon, 2019).

    The network's output is :math:`\sigma \, s_\theta(x, \sigma)` (Song and Ermon, 2020,
    technique 3), read at the time :math:`t = \log(\sigma_1 / \sigma) / \log(\sigma_1 /
    \sigma_L) \in [0, 1]`; the training loss is

    .. math:: \mathcal{L} = \frac{1}{L} \sum_{i=1}^L \sigma_i^2 \, \tfrac12
        \mathbb{E} \big\| s_\theta(x + \sigma_i z, \sigma_i) + z / \sigma_i \big\|^2

    (:func:`~probgen.objectives.denoising_score_matching`). ``model(c)`` is an
    :class:`AnnealedLangevin` (``log_prob_kind "none"``); :meth:`probability_flow` is the
    distribution of the ladder's probability-flow ODE, with an exact ``log_prob``.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features.
        sigmas: The decreasing noise levels (default :func:`geometric_sigmas` from 10 to
            0.01 in 10 levels: :math:`\sigma_1` should reach the data's largest pairwise
            distance).
        hidden: The widths of the default :class:`~probgen.nn.TimeMLP`.
        network: A network ``network(x, t, c)`` to use instead.
        steps: Langevin steps per level (:math:`T`).
        step_size: :math:`\epsilon`, the Langevin step at the smallest level.
        denoise: Whether sampling ends with a Tweedie denoising step.

    Example:
        >>> model = NCSN(2, sigmas=geometric_sigmas(1.0, 0.1, 3), hidden=(8,), steps=2)
        >>> model().sample((4,)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        sigmas: Sequence[float] | Tensor | None = None,
        hidden: Sequence[int] = (64, 64, 64),
        network: nn.Module | None = None,
        steps: int = 100,
        step_size: float = 2e-5,
        denoise: bool = False,
    ) -> None:
        super().__init__()
        if features < 1 or context < 0:
            raise ValueError(f"expected features >= 1 and context >= 0, got {features}, {context}")
        sigmas = geometric_sigmas(10.0, 0.01, 10) if sigmas is None else torch.as_tensor(sigmas)
        if sigmas.dim() != 1 or len(sigmas) < 2 or not bool((sigmas[1:] < sigmas[:-1]).all()):
            raise ValueError(f"expected at least two decreasing noise levels, got {sigmas}")
        if not bool((sigmas > 0).all()):
            raise ValueError(f"expected positive noise levels, got {sigmas}")
        self.features, self.context = features, context
        self.register_buffer("sigmas", sigmas.to(torch.get_default_dtype()))
        self.network = (
            TimeMLP(features, context, hidden, frequencies=4) if network is None else network
        )
        self.steps, self.step_size, self.denoise = steps, step_size, denoise

    def time(self, sigma: Tensor) -> Tensor:
        r"""The network's time input :math:`t = \log(\sigma_1 / \sigma) / \log(\sigma_1 /
        \sigma_L)`: 0 at the largest level, 1 at the smallest."""
        s1, sl = self.sigmas[0], self.sigmas[-1]
        return torch.log(s1 / sigma) / torch.log(s1 / sl)

    def score(self, x: Tensor, sigma: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The score :math:`s_\theta(x, \sigma, c)`.

        Arguments:
            x: Points with shape :math:`(*, D)`.
            sigma: Noise levels, a scalar or with a shape that broadcasts to :math:`(*)`.
            c: A context with shape :math:`(*, C)`, or ``None``.
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return self.network(x, self.time(sigma), c) / sigma[..., None]

    def forward(self, c: Tensor | None = None) -> AnnealedLangevin:
        self.check_context(c)
        return AnnealedLangevin(
            self.score, self.sigmas, self.features, c, self.steps, self.step_size, self.denoise
        )

    def sde(self) -> VE:
        r"""The ladder's SDE: VE with noise level :math:`s(t)` from :math:`\sigma_1` at
        :math:`t = 0` to :math:`\sigma_L` at :math:`t = 1`."""
        return _LadderVE(float(self.sigmas[-1]), float(self.sigmas[0]))

    def probability_flow(
        self, c: Tensor | None = None, divergence: Divergence = EXACT_TRACE, **solver: Any
    ) -> DiffusionDistribution:
        r"""The distribution of the ladder's probability-flow ODE from
        :math:`\mathcal{N}(0, \sigma_1^2 I)` at :math:`t = 0` to :math:`t = 1`, where the
        noise level is :math:`\sigma_L`: ``log_prob`` exact through the ODE
        (``"estimate"`` with a Hutchinson divergence), ``sample`` the same solve, and the
        samplers of :mod:`probgen.samplers.sde` (``dpm_solver_pp``, ``heun``, ...) on its
        ``eps`` and ``sde``.

        Arguments:
            c: A context with shape :math:`(*B, C)`, or ``None``.
            divergence: The divergence of the ODE transform.
            solver: Keyword arguments of :class:`~probgen.transforms.ODETransform`.
        """
        self.check_context(c)
        return DiffusionDistribution(
            self.network, self.sde(), _ScaledScore(), self.features, c, 1.0, divergence,
            **solver,
        )  # fmt: skip

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        from ..objectives import denoising_score_matching  # objectives sit one layer above

        return denoising_score_matching(self, x, c)


class ScoreModel(LazyDistribution):
    r"""A score network :math:`s_\theta(x, c) \approx \nabla_x \log p(x | c)`, trained by
    sliced score matching and sampled by Langevin dynamics

    .. math:: x \leftarrow x + \tfrac12 \epsilon \, s_\theta(x, c) + \sqrt{\epsilon} \, z,
        \quad x_0 \sim \mathcal{N}(0, \sigma_0^2 I) .

    ``model(c)`` is an :class:`AnnealedLangevin` with a single level (``log_prob_kind
    "none"``). A single score is blind to the weights of well-separated modes (Song and
    Ermon, 2019, Sec. 3.2): prefer :class:`NCSN` for multimodal data.

    Arguments:
        features: The number of features :math:`D`.
        context: The number of context features.
        hidden: The widths of the default network (a SiLU MLP: smooth, as the loss
            differentiates its Jacobian).
        network: A network ``network(x)`` (``network(x, c)`` with a context) instead.
        steps: Langevin steps.
        step_size: The Langevin step :math:`\epsilon`.
        init_std: :math:`\sigma_0`, the spread of the chains' start.

    Example:
        >>> model = ScoreModel(2, hidden=(8,), steps=3)
        >>> model().sample((4,)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
        network: nn.Module | None = None,
        steps: int = 1000,
        step_size: float = 1e-2,
        init_std: float = 4.0,
    ) -> None:
        super().__init__()
        if features < 1 or context < 0:
            raise ValueError(f"expected features >= 1 and context >= 0, got {features}, {context}")
        self.features, self.context = features, context
        self.network = (
            ContextMLP(features, features, context, hidden, nn.SiLU)
            if network is None
            else network
        )
        self.register_buffer("init_std", torch.tensor([float(init_std)]))
        self.steps, self.step_size = steps, step_size

    def score(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""The score :math:`s_\theta(x, c)` for ``x`` with shape :math:`(*, D)` and ``c``
        with shape :math:`(*, C)` or ``None``."""
        if not self.context:
            return self.network(x)
        batch = x.shape[:-1]
        c = c.expand(*batch, c.shape[-1]).reshape(-1, c.shape[-1])
        return self.network(x.reshape(-1, x.shape[-1]), c).reshape(x.shape)

    def forward(self, c: Tensor | None = None) -> AnnealedLangevin:
        self.check_context(c)
        return AnnealedLangevin(
            lambda x, sigma, c: self.score(x, c), self.init_std, self.features, c, self.steps,
            self.step_size,
        )  # fmt: skip

    def default_objective(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        from ..objectives import sliced_score_matching  # objectives sit one layer above

        return sliced_score_matching(self, x, c)
