r"""Diffusion SDEs as small objects, and their samplers as functions over explicit time grids.

Time runs from :math:`t = 0` (noise) to :math:`t = 1` (data), as everywhere in probgen.
An SDE object describes the *noising* process in diffusion time :math:`\tau = 1 - t`,

.. math:: dx = f(\tau) x \, d\tau + g(\tau) \, dW_\tau ,
    \qquad x_\tau | x_{data} \sim \mathcal{N}(\alpha_\tau x_{data}, \sigma_\tau^2 I) ,

and every method takes the generative time :math:`t`. Generation runs the reverse-time SDE
or the probability-flow ODE forwards in :math:`t`:

.. math:: dx = [-f x + g^2 \nabla \log p_t(x)] \, dt + g \, d\bar W_t , \qquad
    \frac{dx}{dt} = -f x + \tfrac12 g^2 \nabla \log p_t(x) .

Samplers take a *noise predictor* ``eps(x, t)`` (:math:`\hat\epsilon = -\sigma_t \nabla
\log p_t`), the SDE and a grid :math:`0 \le t_0 < \dots < t_K \le 1`; they return the
state at :math:`t_K` and the number of evaluations of ``eps``.

References:
    | Score-Based Generative Modeling through Stochastic Differential Equations
    | (Song et al., 2021) https://arxiv.org/abs/2011.13456
    | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
    | https://arxiv.org/abs/2006.11239
    | Denoising Diffusion Implicit Models (Song et al., 2021) https://arxiv.org/abs/2010.02502
    | DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models
    | (Lu et al., 2022) https://arxiv.org/abs/2211.01095
    | Generative Modeling by Estimating Gradients of the Data Distribution (Song and Ermon,
    | 2019) https://arxiv.org/abs/1907.05600
"""

from __future__ import annotations

__all__ = [
    "Schedule",
    "LinearSchedule",
    "CosineSchedule",
    "SDE",
    "VP",
    "SubVP",
    "VE",
    "NoisePredictor",
    "ddim",
    "ddpm",
    "euler_maruyama",
    "predictor_corrector",
    "heun",
    "dpm_solver_pp",
    "annealed_langevin",
    "uniform_grid",
    "logsnr_grid",
]

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

NoisePredictor = Callable[[Tensor, Tensor], Tensor]


# Schedules of beta(tau) for variance-preserving SDEs


class Schedule:
    r"""A noise rate :math:`\beta(\tau)` with :math:`\log \alpha_\tau = -\frac12
    \int_0^\tau \beta`, both in closed form."""

    def beta(self, tau: Tensor) -> Tensor:
        raise NotImplementedError

    def log_alpha(self, tau: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class LinearSchedule(Schedule):
    r"""DDPM's linear schedule as a continuous rate,
    :math:`\beta(\tau) = \beta_{min} + \tau (\beta_{max} - \beta_{min})`.

    The defaults (0.1, 20) are the limit of DDPM's 1000 steps with
    :math:`\beta_i` from :math:`10^{-4}` to :math:`0.02` (:math:`\beta(\tau) = N \beta_i`).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, tau: Tensor) -> Tensor:
        return self.beta_min + tau * (self.beta_max - self.beta_min)

    def log_alpha(self, tau: Tensor) -> Tensor:
        return -0.5 * (self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2)


@dataclass(frozen=True)
class CosineSchedule(Schedule):
    r"""The cosine schedule of improved DDPM,

    .. math:: \alpha_\tau = \frac{\cos \theta_\tau}{\cos \theta_0}, \quad
        \theta_\tau = \frac{\tau + s}{1 + s} \frac{\pi}{2} \, (1 - \delta)

    with :math:`\delta` keeping :math:`\alpha_1 > 0` (the discrete schedule clips
    :math:`\beta` instead).

    References:
        | Improved Denoising Diffusion Probabilistic Models (Nichol and Dhariwal, 2021)
        | https://arxiv.org/abs/2102.09672
    """

    s: float = 0.008
    delta: float = 1e-3

    def _theta(self, tau: Tensor) -> Tensor:
        return (tau + self.s) / (1 + self.s) * 0.5 * math.pi * (1 - self.delta)

    def beta(self, tau: Tensor) -> Tensor:
        dtheta = 0.5 * math.pi * (1 - self.delta) / (1 + self.s)
        return 2 * torch.tan(self._theta(tau)) * dtheta

    def log_alpha(self, tau: Tensor) -> Tensor:
        theta0 = self._theta(torch.zeros_like(tau))
        return torch.log(torch.cos(self._theta(tau)) / torch.cos(theta0))


# SDEs


class SDE:
    r"""A linear noising SDE, with its marginal in closed form.

    Subclasses define :meth:`alpha_sigma` (the marginal's scale and standard deviation at
    generative time :math:`t`) and :meth:`coefficients` (:math:`f` and :math:`g` at
    :math:`\tau = 1 - t`), and :attr:`prior_std` (the standard deviation at :math:`t = 0`,
    where generation starts).
    """

    prior_std: float = 1.0

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def score(self, eps: Tensor, t: Tensor) -> Tensor:
        r"""The score :math:`-\hat\epsilon / \sigma_t` of a noise prediction."""
        return -eps / self.alpha_sigma(t)[1]

    def pf_ode(self, eps: NoisePredictor) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        r"""The probability-flow ODE's vector field :math:`v(x, t) = -f x + \frac12 g^2
        \nabla \log p_t(x)`, as a field ``v(x, t, c)`` of an ODE transform."""

        def field(x: Tensor, t: Tensor, c: Tensor | None = None) -> Tensor:
            f, g = self.coefficients(t)
            return -f * x + 0.5 * g**2 * self.score(eps(x, t), t)

        return field


@dataclass(frozen=True)
class VP(SDE):
    r"""The variance-preserving SDE (the continuous DDPM),

    .. math:: dx = -\tfrac12 \beta(\tau) x \, d\tau + \sqrt{\beta(\tau)} \, dW, \quad
        \alpha_\tau = e^{-\frac12 \int_0^\tau \beta}, \quad \sigma_\tau^2 = 1 - \alpha_\tau^2 .

    Arguments:
        schedule: :class:`LinearSchedule` (DDPM) or :class:`CosineSchedule`.
    """

    schedule: Schedule = LinearSchedule()

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_a = self.schedule.log_alpha(1 - t)
        return log_a.exp(), torch.sqrt(-torch.expm1(2 * log_a))

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.schedule.beta(1 - t)
        return -0.5 * beta, beta.sqrt()


@dataclass(frozen=True)
class SubVP(SDE):
    r"""The sub-variance-preserving SDE, whose variance stays below the VP one,

    .. math:: dx = -\tfrac12 \beta x \, d\tau + \sqrt{\beta (1 - \alpha_\tau^4)} \, dW,
        \quad \sigma_\tau^2 = (1 - \alpha_\tau^2)^2 .
    """

    schedule: Schedule = LinearSchedule()

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_a = self.schedule.log_alpha(1 - t)
        return log_a.exp(), -torch.expm1(2 * log_a)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        tau = 1 - t
        beta = self.schedule.beta(tau)
        return -0.5 * beta, torch.sqrt(-beta * torch.expm1(4 * self.schedule.log_alpha(tau)))


@dataclass(frozen=True)
class VE(SDE):
    r"""The variance-exploding SDE (NCSN's continuous limit),

    .. math:: dx = \sqrt{\tfrac{d}{d\tau} s_\tau^2} \, dW, \quad
        s_\tau = \sigma_{min} (\sigma_{max} / \sigma_{min})^\tau, \quad
        \alpha_\tau = 1, \quad \sigma_\tau^2 = s_\tau^2 - \sigma_{min}^2 .

    Arguments:
        sigma_min: The smallest noise level.
        sigma_max: The largest (of the order of the data's diameter).
    """

    sigma_min: float = 0.01
    sigma_max: float = 10.0

    @property
    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 - self.sigma_min**2)

    def _s(self, tau: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** tau

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self._s(1 - t)
        return torch.ones_like(s), torch.sqrt(s**2 - self.sigma_min**2)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self._s(1 - t)
        g = s * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(s), g


# Samplers over explicit grids


def uniform_grid(steps: int, t_max: float = 1.0, dtype=None, device=None) -> Tensor:
    r"""The grid :math:`t_k = k \, t_{max} / K`, :math:`k = 0, \dots, K`."""
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    return torch.linspace(0.0, t_max, steps + 1, dtype=dtype, device=device)


def logsnr_grid(
    sde: SDE, steps: int, t_max: float = 1 - 1e-3, t_min: float = 0.0, dtype=None, device=None
) -> Tensor:
    r"""The grid uniform in the half log-SNR :math:`\lambda_t = \log(\alpha_t / \sigma_t)`
    from :math:`t_{min}` to :math:`t_{max}`, DPM-Solver's default (Lu et al., 2022, Sec. 3.3).

    :math:`\lambda_t` increases with :math:`t` for every SDE here; the grid inverts it by
    bisection (60 halvings: exact to the dtype), so any SDE object works.

    Example:
        >>> t = logsnr_grid(VP(), 10, dtype=torch.float64)
        >>> a, s = VP().alpha_sigma(t)
        >>> bool(torch.allclose((a / s).log().diff(), (a / s).log().diff()[0]))
        True
    """
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    ends = torch.tensor([t_min, t_max], dtype=dtype, device=device)
    lo_hi = _log_snr(sde, ends)
    target = torch.linspace(float(lo_hi[0]), float(lo_hi[1]), steps + 1, dtype=ends.dtype)
    lo, hi = torch.full_like(target, t_min), torch.full_like(target, t_max)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = _log_snr(sde, mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    t = 0.5 * (lo + hi)
    t[0], t[-1] = t_min, t_max
    return t


def _log_snr(sde: SDE, t: Tensor) -> Tensor:
    a, s = sde.alpha_sigma(t)
    return torch.log(a) - torch.log(s)


def _check_grid(t: Tensor) -> None:
    if t.dim() != 1 or len(t) < 2 or not bool((t[1:] > t[:-1]).all()):
        raise ValueError(f"expected an increasing time grid with shape (K + 1,), got {t}")


def ddim(
    eps: NoisePredictor,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""DDIM: from :math:`t_k` to :math:`t_{k+1}`,

    .. math:: \hat x_0 = \frac{x - \sigma_k \hat\epsilon}{\alpha_k}, \quad
        x \leftarrow \alpha_{k+1} \hat x_0 + \sqrt{\sigma_{k+1}^2 - s^2} \, \hat\epsilon
        + s z, \quad s = \eta \frac{\sigma_{k+1}}{\sigma_k}
        \sqrt{1 - \frac{\alpha_k^2}{\alpha_{k+1}^2}}

    (Song et al., 2021, eq. 12 and 16). :math:`\eta = 0` is deterministic (an integrator
    of the probability-flow ODE); :math:`\eta = 1` is DDPM's ancestral step.

    Arguments:
        eps: The noise predictor ``eps(x, t)``.
        sde: The SDE giving :math:`\alpha_t, \sigma_t`.
        x: The initial state at :math:`t_0`, with shape :math:`(*, *E)`.
        t: An increasing grid with shape :math:`(K + 1,)`.
        eta: The stochasticity :math:`\eta \in [0, 1]`.
        generator: The random generator of :math:`z`.

    Returns:
        The state at :math:`t_K` and the number of evaluations (:math:`K`).
    """
    _check_grid(t)
    t = t.to(dtype=x.dtype, device=x.device)
    for k in range(len(t) - 1):
        a0, s0 = sde.alpha_sigma(t[k])
        a1, s1 = sde.alpha_sigma(t[k + 1])
        e = eps(x, t[k])
        x0 = (x - s0 * e) / a0
        s = eta * s1 / s0 * torch.sqrt((1 - (a0 / a1) ** 2).clamp(min=0)) if eta else 0.0
        x = a1 * x0 + torch.sqrt((s1**2 - s**2).clamp(min=0) if eta else s1**2) * e
        if eta:
            x = x + s * _randn(x, generator)
    return x, len(t) - 1


def ddpm(
    eps: NoisePredictor,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""DDPM's ancestral sampler: a draw from the Gaussian posterior
    :math:`q(x_{t_{k+1}} | x_{t_k}, \hat x_0)` at each step (Ho et al., 2020, eq. 6-7),
    which is :func:`ddim` with :math:`\eta = 1`."""
    return ddim(eps, sde, x, t, eta=1.0, generator=generator)


def euler_maruyama(
    eps: NoisePredictor,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""Euler-Maruyama on the reverse-time SDE,

    .. math:: x \leftarrow x + [-f x + g^2 \nabla \log p_t(x)] \Delta t
        + g \sqrt{\Delta t} \, z .

    The last step adds no noise (Song et al.'s denoising step): the output is the mean.

    Returns:
        The state at :math:`t_K` and the number of evaluations (:math:`K`).
    """
    _check_grid(t)
    t = t.to(dtype=x.dtype, device=x.device)
    for k in range(len(t) - 1):
        x = _em_step(eps, sde, x, t[k], t[k + 1], k < len(t) - 2, generator)
    return x, len(t) - 1


def _em_step(eps, sde, x, t0, t1, noise, generator):
    dt = t1 - t0
    f, g = sde.coefficients(t0)
    x = x + (-f * x + g**2 * sde.score(eps(x, t0), t0)) * dt
    return x + g * dt.sqrt() * _randn(x, generator) if noise else x


def predictor_corrector(
    eps: NoisePredictor,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    snr: float = 0.16,
    corrector_steps: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""Predictor-corrector sampling: an Euler-Maruyama predictor step, then Langevin
    corrector steps at the new time (Song et al., 2021, Algorithm 4 and 5),

    .. math:: x \leftarrow x + \epsilon \nabla \log p_t(x) + \sqrt{2 \epsilon} \, z, \quad
        \epsilon = 2 a_k \left( r \frac{\|z\|}{\|\nabla \log p_t(x)\|} \right)^2 ,

    with the signal-to-noise ratio :math:`r` (``snr``), norms averaged over the batch, and
    :math:`a_k = \alpha_{t_{k+1}}^2 / \alpha_{t_k}^2` (DDPM's :math:`1 - \beta_i`; 1 for VE).

    Returns:
        The state at :math:`t_K` and the number of evaluations.
    """
    _check_grid(t)
    t = t.to(dtype=x.dtype, device=x.device)
    nfe = 0
    for k in range(len(t) - 1):
        x = _em_step(eps, sde, x, t[k], t[k + 1], k < len(t) - 2, generator)
        nfe += 1
        if k == len(t) - 2:
            break  # the last predictor step already returned the denoised mean
        # Song et al.'s alpha_i = 1 - beta_i, the per-step ratio of the squared scales
        # (1 for VE), not the marginal's alpha_t.
        a = (sde.alpha_sigma(t[k + 1])[0] / sde.alpha_sigma(t[k])[0]) ** 2
        for _ in range(corrector_steps):
            score = sde.score(eps(x, t[k + 1]), t[k + 1])
            z = _randn(x, generator)
            # Mean norms over the batch, as in Song et al.'s code: a per-sample ratio
            # explodes where the score vanishes (between modes) and biases the weights.
            ratio = z.norm(dim=-1).mean() / score.norm(dim=-1).mean().clamp(min=1e-12)
            step = 2 * a * (snr * ratio) ** 2
            x = x + step * score + torch.sqrt(2 * step) * z
            nfe += 1
    return x, nfe


def heun(field: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor) -> tuple[Tensor, int]:
    r"""Heun's second-order method on :math:`\frac{dx}{dt} = v(x, t)`,

    .. math:: \tilde x = x + \Delta t \, v(x, t_k), \quad
        x \leftarrow x + \tfrac{\Delta t}{2} [v(x, t_k) + v(\tilde x, t_{k+1})] ,

    good at :math:`\le 20` steps on the probability-flow ODE (Karras et al., 2022).

    Returns:
        The state at :math:`t_K` and the number of evaluations (:math:`2K`).
    """
    if t.dim() != 1 or len(t) < 2:
        raise ValueError(f"expected a time grid with shape (K + 1,), got {tuple(t.shape)}")
    t = t.to(dtype=x.dtype, device=x.device)
    for k in range(len(t) - 1):
        dt = t[k + 1] - t[k]
        v0 = field(x, t[k])
        v1 = field(x + dt * v0, t[k + 1])
        x = x + 0.5 * dt * (v0 + v1)
    return x, 2 * (len(t) - 1)


def dpm_solver_pp(eps: NoisePredictor, sde: SDE, x: Tensor, t: Tensor) -> tuple[Tensor, int]:
    r"""DPM-Solver++(2M): the second-order multistep solver of the probability-flow ODE in
    its data-prediction form (Lu et al., 2022, Algorithm 2).

    In the half log-SNR :math:`\lambda = \log(\alpha / \sigma)` the ODE's linear part is
    exact and only the data prediction :math:`\hat x_0 = (x - \sigma \hat\epsilon) /
    \alpha` is extrapolated: with :math:`h_k = \lambda_{k+1} - \lambda_k`,

    .. math:: x_{k+1} = \frac{\sigma_{k+1}}{\sigma_k} x_k
        - \alpha_{k+1} (e^{-h_k} - 1) D_k, \quad
        D_k = \big(1 + \tfrac{1}{2 r_k}\big) \hat x_0^{(k)}
        - \tfrac{1}{2 r_k} \hat x_0^{(k-1)}, \quad r_k = \frac{h_{k-1}}{h_k} ,

    and :math:`D_0 = \hat x_0^{(0)}` (a first-order, DDIM, first step). One evaluation per
    step. Any SDE with :math:`\sigma_t > 0` on the grid works: for VE
    (:math:`\alpha = 1`) :math:`\lambda = -\log \sigma`. Pair it with
    :func:`logsnr_grid`.

    Arguments:
        eps: The noise predictor ``eps(x, t)``.
        sde: The SDE giving :math:`\alpha_t, \sigma_t`.
        x: The initial state at :math:`t_0`, with shape :math:`(*, *E)`.
        t: An increasing grid with shape :math:`(K + 1,)`, :math:`t_K < 1`.

    Returns:
        The state at :math:`t_K` and the number of evaluations (:math:`K`).

    Example:
        >>> sde = VP()
        >>> x, nfe = dpm_solver_pp(lambda x, t: 0 * x, sde, torch.randn(5, 2),
        ...                        logsnr_grid(sde, 10))
        >>> x.shape, nfe
        (torch.Size([5, 2]), 10)
    """
    _check_grid(t)
    t = t.to(dtype=x.dtype, device=x.device)
    a, s = sde.alpha_sigma(t)
    lam = torch.log(a) - torch.log(s)
    if not bool(torch.isfinite(lam).all()):
        raise ValueError("expected sigma_t > 0 and alpha_t > 0 on the grid (keep t_K < 1)")
    d_prev, h_prev = None, None
    for k in range(len(t) - 1):
        # 1. The data prediction at t_k.
        d = (x - s[k] * eps(x, t[k])) / a[k]
        h = lam[k + 1] - lam[k]
        # 2. Second-order extrapolation in lambda from the previous prediction.
        if d_prev is None:
            big_d = d
        else:
            r = h_prev / h
            big_d = (1 + 0.5 / r) * d - (0.5 / r) * d_prev
        # 3. The exact solution of the linear part (Lu et al., 2022, eq. 9 and 10).
        x = (s[k + 1] / s[k]) * x - a[k + 1] * torch.expm1(-h) * big_d
        d_prev, h_prev = d, h
    return x, len(t) - 1


def annealed_langevin(
    score: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigmas: Tensor,
    steps: int = 100,
    step_size: float = 2e-5,
    denoise: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""Annealed Langevin dynamics (Song and Ermon, 2019, Algorithm 1): ``steps`` Langevin
    steps at each noise level :math:`\sigma_1 > \dots > \sigma_L`, each level starting
    where the last stopped,

    .. math:: x \leftarrow x + \tfrac12 \alpha_i s(x, \sigma_i)
        + \sqrt{\alpha_i} \, z, \quad
        \alpha_i = \epsilon \, \sigma_i^2 / \sigma_L^2 ,

    so that :math:`\alpha_i / \sigma_i^2`, the signal-to-noise ratio of a step, is the
    same at every level. In probgen's Langevin convention (``ULA``) the time step is
    :math:`\tau_i = \alpha_i / 2`. Without ``denoise`` the output approximates the data
    smoothed by :math:`\mathcal{N}(0, \sigma_L^2 I)`; with it, one last Tweedie step
    :math:`x + \sigma_L^2 s(x, \sigma_L)` returns the posterior mean of the clean data
    (Jolicoeur-Martineau et al., 2021).

    Arguments:
        score: The noise-conditional score ``score(x, sigma)`` :math:`\approx \nabla_x
            \log p_\sigma(x)`, for a scalar tensor ``sigma``.
        x: The initial state with shape :math:`(*, *E)` (e.g. uniform noise, or
            :math:`\mathcal{N}(0, \sigma_1^2 I)`).
        sigmas: The decreasing noise levels with shape :math:`(L,)`.
        steps: The Langevin steps :math:`T` per level.
        step_size: :math:`\epsilon`, the step :math:`\alpha_L` at the smallest level.
        denoise: Whether to end with the Tweedie denoising step.
        generator: The random generator of :math:`z`.

    Returns:
        The final state and the number of evaluations of ``score`` (:math:`L T`, plus one
        with ``denoise``).

    References:
        | Adversarial Score Matching and Improved Sampling for Image Generation
        | (Jolicoeur-Martineau et al., 2021) https://arxiv.org/abs/2009.05475
    """
    if sigmas.dim() != 1 or len(sigmas) < 1 or not bool((sigmas > 0).all()):
        raise ValueError(f"expected positive noise levels with shape (L,), got {sigmas}")
    if len(sigmas) > 1 and not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(f"expected decreasing noise levels, got {sigmas}")
    if steps < 1 or step_size <= 0:
        raise ValueError(f"expected steps >= 1 and step_size > 0, got {steps}, {step_size}")
    sigmas = sigmas.to(dtype=x.dtype, device=x.device)
    for sigma in sigmas:
        alpha = step_size * (sigma / sigmas[-1]) ** 2
        for _ in range(steps):
            x = x + 0.5 * alpha * score(x, sigma) + alpha.sqrt() * _randn(x, generator)
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, sigmas[-1])
    return x, len(sigmas) * steps + int(denoise)


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
