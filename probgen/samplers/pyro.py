r"""Pyro interop, both ways.

- :class:`ToPyroKernel` runs a probgen kernel under :class:`pyro.infer.MCMC` on an
  ordinary Pyro model (or a potential function): one chain, Pyro's unconstrained space,
  Pyro's progress bar, diagnostics and ``get_samples``.
- :func:`sample_with_pyro` runs Pyro's own HMC or NUTS over any probgen log-density (an
  energy model's ``unnormalized_log_prob``), a few chains one after another.
"""

from __future__ import annotations

__all__ = ["ToPyroKernel", "sample_with_pyro"]

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer.mcmc import MCMC, NUTS
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from torch import Tensor

from .adaptation import DualAveraging
from .base import Kernel, KernelState
from .importance import log_density


class ToPyroKernel(MCMCKernel):
    r"""A probgen kernel as a :class:`pyro.infer.mcmc.MCMCKernel`.

    The latent sites of the model, in Pyro's unconstrained space, are flattened into one
    vector :math:`x`, and the kernel targets :math:`\log \tilde\pi(x) = -U(x)`, :math:`U`
    Pyro's potential energy (the negative log joint, Jacobians included). During warm-up
    a kernel with a ``step_size`` adapts it by dual averaging; the adapted kernel (a new
    value) is used for the samples.

    Arguments:
        kernel: A probgen kernel (``RandomWalk``, ``MALA``, ``HMC``, ``ULA``).
        model: A Pyro model; or ``None`` with ``potential_fn`` and ``initial_params``.
        potential_fn: A potential :math:`U` of a dict of unconstrained tensors.
        initial_params: The initial dict of unconstrained tensors (with ``potential_fn``).
        transforms: Transforms to the unconstrained space, as Pyro's kernels take them.
        adapt_step_size: Whether to adapt the step size during warm-up.
        schedule: The dual averaging's constants and target acceptance (default: the
            kernel's ``optimal_accept``).
        generator: The random number generator (Pyro's seeded global RNG by default).

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> from probgen.samplers import MALA
        >>> def model():
        ...     pyro.sample("z", dist.Normal(0.0, 1.0))
        >>> mcmc = MCMC(ToPyroKernel(MALA(0.5), model), num_samples=20, warmup_steps=10,
        ...             disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["z"].shape
        torch.Size([20])
    """

    def __init__(
        self,
        kernel: Kernel,
        model: Callable[..., Any] | None = None,
        potential_fn: Callable[[dict[str, Tensor]], Tensor] | None = None,
        initial_params: dict[str, Tensor] | None = None,
        *,
        transforms: dict | None = None,
        adapt_step_size: bool = True,
        schedule: DualAveraging | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("expected exactly one of model and potential_fn")
        if potential_fn is not None and initial_params is None:
            raise ValueError("a potential_fn needs initial_params")
        self.kernel, self.model, self.potential_fn = kernel, model, potential_fn
        self.transforms = transforms
        self._initial_params = initial_params
        fields = {f.name for f in dataclasses.fields(kernel)}
        self.adapt_step_size = adapt_step_size and "step_size" in fields
        accept = getattr(kernel, "optimal_accept", 0.8)
        self.schedule, self.generator = schedule or DualAveraging(accept), generator
        self._state: KernelState | None = None
        self._last: dict[str, Tensor] | None = None
        self._t, self._warmup, self._accept_sum = 0, 0, 0.0

    # Pyro's protocol

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        if self.model is not None:
            params, self.potential_fn, self.transforms, _ = initialize_model(
                self.model, model_args=args, model_kwargs=kwargs, transforms=self.transforms
            )
            if self._initial_params is None:
                self._initial_params = params
        self._names = sorted(self._initial_params)
        self._shapes = [self._initial_params[k].shape for k in self._names]
        self._warmup, self._t, self._accept_sum = warmup_steps, 0, 0.0
        self._state, self._last = None, None

    @property
    def initial_params(self) -> dict[str, Tensor]:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, Tensor]) -> None:
        self._initial_params = params

    def sample(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._state is None or params is not self._last:
            # A fresh start, or Pyro handed back other parameters than we returned.
            self._state = self.kernel.init(self._flatten(params), self._target)
            if self.adapt_step_size and self._t == 0:
                self._avg, self._mu = self.schedule.init(self.kernel.step_size, self._state.log_p)
        kernel = self.kernel
        if self.adapt_step_size and self._t < self._warmup:
            kernel = dataclasses.replace(kernel, step_size=self._avg.log_step.exp())
        self._state = kernel.step(self._state, self._target, self.generator)
        self._t += 1
        if self.adapt_step_size and self._t <= self._warmup:
            self._avg = self.schedule.update(self._avg, self._mu, self._state.accept_prob)
            if self._t == self._warmup:
                step = float(self._avg.log_step_bar.exp())
                self.kernel = dataclasses.replace(self.kernel, step_size=step)
        if self._t > self._warmup:
            self._accept_sum = self._accept_sum + self._state.accept_prob.detach()
        self._last = self._unflatten(self._state.x)
        return self._last

    def logging(self) -> OrderedDict:
        step = getattr(self.kernel, "step_size", None)
        accept = float(self._state.accept_prob) if self._state is not None else math.nan
        out = OrderedDict([("acc. prob", f"{accept:.3f}")])
        if step is not None:
            out["step size"] = f"{float(step):.2e}"
        return out

    def diagnostics(self) -> dict[str, Any]:
        n = max(self._t - self._warmup, 1)
        out: dict[str, Any] = {"acceptance rate": float(self._accept_sum) / n}
        if hasattr(self.kernel, "step_size"):
            out["step size"] = float(self.kernel.step_size)
        return out

    # The flat vector

    def _target(self, x: Tensor) -> Tensor:
        return -self.potential_fn(self._unflatten(x))

    def _flatten(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[k].detach().reshape(-1) for k in self._names])

    def _unflatten(self, x: Tensor) -> dict[str, Tensor]:
        sizes = [math.prod(s) for s in self._shapes]
        parts = x.split(sizes)
        return {k: p.reshape(s) for k, p, s in zip(self._names, parts, self._shapes, strict=True)}


def sample_with_pyro(
    target: Any,
    x: Tensor,
    num_samples: int,
    *,
    warmup_steps: int = 100,
    kernel: Callable[..., MCMCKernel] = NUTS,
    progress: bool = False,
    **kernel_kwargs: Any,
) -> Tensor:
    r"""Samples a probgen log-density with Pyro's HMC or NUTS, one chain per row of ``x``.

    Each chain is its own :class:`pyro.infer.MCMC` run (one process, one after another):
    this is for a few chains, as a reference; the batched kernels of
    :mod:`probgen.samplers` are for thousands.

    Arguments:
        target: A log-density, or a distribution (an energy model's
            ``unnormalized_log_prob`` is used) over unconstrained :math:`x`.
        x: The chains' initial points, with shape :math:`(C, *E)`.
        num_samples: The samples kept per chain.
        warmup_steps: Pyro's warm-up (step size and mass matrix adaptation).
        kernel: Pyro's kernel class, :class:`~pyro.infer.mcmc.NUTS` or
            :class:`~pyro.infer.mcmc.HMC`.
        progress: Whether to show Pyro's progress bar.
        kernel_kwargs: Keyword arguments of the kernel (``step_size``, ``num_steps``, ...).

    Returns:
        The samples, with shape :math:`(T, C, *E)` as :func:`~probgen.samplers.run_chain`
        gives them.

    Example:
        >>> log_p = lambda x: -(x**2).sum(-1) / 2
        >>> sample_with_pyro(log_p, torch.zeros(2, 3), 10, warmup_steps=10).shape
        torch.Size([10, 2, 3])
    """
    log_p = log_density(target)

    def potential(params: dict[str, Tensor]) -> Tensor:
        return -log_p(params["x"])

    chains = []
    for x0 in x:
        mcmc = MCMC(
            kernel(potential_fn=potential, **kernel_kwargs),
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            initial_params={"x": x0.detach().clone()},
            disable_progbar=not progress,
        )
        mcmc.run()
        chains.append(mcmc.get_samples()["x"])
    return torch.stack(chains, dim=1)
