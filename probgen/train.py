r"""Training: :func:`fit` minimises objectives over data, with the plumbing a long run needs.

One call trains any model of the library (or any :class:`torch.nn.Module`) on a tensor, a
pair :math:`(x, c)`, a dataset, a data loader or a sampler, with one player (a loss and an
optimizer) or several stepped in turn (a generator and a critic). It shows a progress bar,
validates, writes atomic checkpoints that resume bit for bit, seeds, moves to a device,
and runs unchanged under ``torchrun`` with
:class:`~torch.nn.parallel.DistributedDataParallel`.
"""

from __future__ import annotations

__all__ = ["fit", "History", "NonFiniteLossError"]

import contextlib
import math
import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate
from tqdm.auto import tqdm

from . import objectives
from .objectives import unwrap

Objective = Callable[[nn.Module, Tensor | None, Tensor | None], Tensor]
Batch = tuple[Tensor | None, Tensor | None]
Data = Tensor | tuple[Tensor, Tensor] | Dataset | DataLoader | Callable[[int], Any] | None
Scheduler = Callable[[torch.optim.Optimizer], Any]

# The name of the only player when `objective` is not a dict.
_SINGLE = "loss"
_FORMAT = 1


@dataclass
class History:
    r"""What a run of :func:`fit` recorded.

    A *step* is one round: every player takes its scheduled number of optimizer steps.

    Attributes:
        losses: For each player, the loss of each of its optimizer steps (``k`` per step
            for a player scheduled ``k`` times a round); in a distributed run, the mean
            over processes. The only player of a one-objective run is ``"loss"``.
        val_steps: The steps after which validation ran.
        val_losses: For each player, its objective on the validation data at those steps.
        step: The number of steps taken, resumed runs included.
        schedule: Each player's optimizer steps per round.

    Example:
        >>> h = History({"loss": [2.0, 1.5, 1.2]}, [3], {"loss": [1.3]}, step=3)
        >>> h.loss
        [2.0, 1.5, 1.2]
    """

    losses: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val_losses: dict[str, list[float]] = field(default_factory=dict)
    step: int = 0
    schedule: dict[str, int] = field(default_factory=dict)

    @property
    def loss(self) -> list[float]:
        r"""The losses of a one-player run."""
        return self.losses[self._only()]

    @property
    def val_loss(self) -> list[float]:
        r"""The validation losses of a one-player run, at :attr:`val_steps`."""
        return self.val_losses.get(self._only(), [])

    def _only(self) -> str:
        if len(self.losses) != 1:
            raise ValueError(
                f"this run had players {sorted(self.losses)}; read history.losses[name]"
            )
        return next(iter(self.losses))

    def plot(self, ax: Any = None) -> Any:
        r"""Plots every player's loss against the step, and the validation losses.

        Arguments:
            ax: A matplotlib ``Axes``; a new figure's when ``None``.

        Returns:
            The ``Axes``.
        """
        # matplotlib is an optional dependency that only this method needs.
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        for name, values in self.losses.items():
            # A player stepped k times a round puts k points in each step.
            k = self.schedule.get(name, 1)
            ax.plot(np.arange(1, len(values) + 1) / k, values, label=name, alpha=0.8)
        for name, values in self.val_losses.items():
            ax.plot(self.val_steps, values, "o-", label=f"{name} (validation)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def state_dict(self) -> dict[str, Any]:
        r"""The history as plain lists and dicts (what checkpoints store)."""
        return {
            "losses": {k: list(v) for k, v in self.losses.items()},
            "val_steps": list(self.val_steps),
            "val_losses": {k: list(v) for k, v in self.val_losses.items()},
            "step": self.step,
            "schedule": dict(self.schedule),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> History:
        r"""The history :meth:`state_dict` describes."""
        return cls(
            {k: list(v) for k, v in state["losses"].items()},
            list(state["val_steps"]),
            {k: list(v) for k, v in state["val_losses"].items()},
            int(state["step"]),
            dict(state["schedule"]),
        )


class NonFiniteLossError(FloatingPointError):
    r"""A loss (or a gradient norm) was NaN or infinite; the optimizer did not step.

    Attributes:
        step: The step that failed (the model holds the parameters of ``step - 1``).
        player: The player whose loss it was.
        loss: The non-finite value.
    """

    def __init__(self, message: str, step: int, player: str, loss: float) -> None:
        super().__init__(message)
        self.step, self.player, self.loss = step, player, loss


def fit(
    model: nn.Module,
    data: Data = None,
    *,
    objective: Objective | Mapping[str, Objective] | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
    schedule: Mapping[str, int] | None = None,
    scheduler: Scheduler | Mapping[str, Scheduler] | None = None,
    context: Tensor | None = None,
    val_data: Data = None,
    val_every: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    device: str | torch.device | None = None,
    clip_grad: float | None = None,
    progress: bool = True,
) -> History:
    r"""Trains a model by stochastic gradient descent on one or several objectives.

    Each step draws a batch :math:`(x, c)` per player step, computes the player's loss
    ``objective(model, x, c)``, checks it is finite, back-propagates and steps that
    player's optimizer. With several players, a step (a *round*) steps them in the order of
    the ``objective`` dict, each ``schedule[name]`` times, and every gradient is cleared
    before each player's loss, so a player's parameters move only by its own loss.

    Arguments:
        model: The module to train; ``model(c)`` returns a distribution for the default
            objective. It is trained in place, in train mode, and handed to the objective
            (wrapped by :class:`~torch.nn.parallel.DistributedDataParallel` in a
            distributed run: use :func:`probgen.objectives.unwrap` to reach its
            attributes).
        data: The training data, one of

            - a tensor :math:`x` with shape :math:`(N, *E)`, shuffled each epoch;
            - a pair ``(x, c)`` of tensors with shapes :math:`(N, *E)` and :math:`(N, C)`;
            - a map-style :class:`~torch.utils.data.Dataset` whose items are ``x`` or
              ``(x, c)``, shuffled and collated by ``fit`` (an iterable dataset is
              wrapped in a :class:`~torch.utils.data.DataLoader`);
            - a :class:`~torch.utils.data.DataLoader`, used as it is (``batch_size`` does
              not apply); give it a :class:`~torch.utils.data.DistributedSampler` in a
              distributed run;
            - a callable ``n -> x`` or ``n -> (x, c)`` drawing ``n`` fresh samples from
              the global torch RNG (``steps`` required);
            - ``None``, for objectives that need no data (e.g. a reverse KL to a known
              density); the objective gets ``x = c = None`` (``steps`` required).
        objective: A callable ``objective(model, x, c) -> loss`` with a scalar loss, or
            a dict ``{name: objective}`` of players. Default: the model's
            ``default_objective`` (a function of the same signature; a method gets the
            possibly wrapped model as ``self``), else :func:`probgen.objectives.nll`.
        steps: The number of steps (rounds).
        epochs: The number of passes over finite data instead; give one of ``steps`` and
            ``epochs``. With several players, every player step uses a batch.
        batch_size: The batch size of each player step (per process when distributed).
        lr: The learning rate of the default optimizer,
            :class:`~torch.optim.Adam` over ``model.parameters()`` (unused when
            ``optimizer`` is given).
        optimizer: An optimizer, or with several players a dict ``{name: optimizer}``
            with the keys of ``objective``, each over its player's parameters.
        schedule: With several players, ``{name: k}``: player ``name`` takes ``k``
            optimizer steps a round (default 1), e.g. 5 critic steps per generator step.
        scheduler: A learning-rate schedule: a function ``optimizer -> LRScheduler``
            (e.g. ``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)``),
            stepped once after every step (round); with several players, a dict of them
            for some of the players. Its state is checkpointed and restored on resume.
        context: The context :math:`c` with shape :math:`(N, C)` of a tensor ``data``,
            instead of the pair form.
        val_data: Validation data in the same forms as ``data`` but finite (no callable,
            no ``None``); a conditional model's as a pair ``(x, c)``. Each player's
            objective is averaged over it without gradients, in eval mode, with the same
            random numbers each time (the training RNG is left untouched), every
            ``val_every`` steps and at the end.
        val_every: Steps between validations (only at the end when ``None``).
        checkpoint: The path of the checkpoint file, written atomically every
            ``checkpoint_every`` steps and at the end; it holds the model's and the
            optimizers' states, the step, the history and every RNG state (torch, CUDA,
            numpy, Python, the data order), and loads with
            ``torch.load(path, weights_only=True)``.
        checkpoint_every: Steps between checkpoints (only at the end when ``None``).
        resume: Whether to continue from ``checkpoint`` when the file exists. A resumed
            run ends bit-identical to an uninterrupted one, given the same arguments (a
            ``DataLoader`` is replayed from the start of its epoch to get there).
        seed: Seeds torch, numpy and Python's ``random`` at the start of a fresh run (plus
            the rank in a distributed run, so that samplers draw different samples in
            each process) and the data order. A resumed run restores the states instead.
        device: The device to move the model and every batch to (default: the model's).
        clip_grad: The maximum norm of each player's gradient; a non-finite norm also
            stops training.
        progress: Whether to show a progress bar (only ever on rank 0).

    Returns:
        The :class:`History` of the losses.

    Raises:
        ValueError: When the arguments do not fit together or the data is malformed.
        NonFiniteLossError: When a loss or a clipped gradient norm is NaN or infinite;
            raised before the optimizer steps, so the model keeps its last good
            parameters and the last checkpoint stays as it was.

    Distributed training:
        Launched by ``torchrun`` (``WORLD_SIZE > 1``), ``fit`` starts the process group if
        none is (NCCL on CUDA, gloo on CPU; it is left running), places each process on
        ``cuda:LOCAL_RANK`` when the device is CUDA, wraps the model in
        :class:`~torch.nn.parallel.DistributedDataParallel` and gives each process its
        shard of tensor and dataset data (a common shuffle, padded to equal shards).
        Samplers draw different samples in each process: the global RNGs are seeded with
        ``seed + rank`` (without a seed, rank 0 draws one for all). Recorded losses are
        averaged over processes; only rank 0 shows progress and writes checkpoints, to a
        path every process can read. Gradients are averaged by DDP when the objective
        calls the model and every parameter gets a gradient; otherwise (several players,
        or objectives that reach the model only through ``unwrap``) ``fit`` averages them
        itself, so either way the processes stay equal.

    Example:
        >>> import torch, probgen as pg
        >>> flow = pg.flows.MAF(2, transforms=2, hidden=(16,))
        >>> x = torch.randn(512, 2) * 0.5 + 1.0
        >>> history = pg.fit(flow, x, steps=20, progress=False, seed=0)
        >>> len(history.loss)
        20
    """
    # 1. Normalise the arguments once, then one path for every form.
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    module = unwrap(model)
    objective_, optimizer_, schedule_ = _players(module, objective, optimizer, schedule, lr)
    schedulers = _schedulers(scheduler, optimizer_)
    _check_positive(batch_size=batch_size, val_every=val_every, checkpoint_every=checkpoint_every)
    if clip_grad is not None and not clip_grad > 0:
        raise ValueError(f"expected clip_grad > 0, got {clip_grad}")
    if checkpoint is None and (checkpoint_every is not None or resume):
        raise ValueError("checkpoint_every and resume need a checkpoint path")
    if val_data is None and val_every is not None:
        raise ValueError("val_every needs val_data")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"expected an int seed, got {type(seed).__name__}")
    path = Path(checkpoint) if checkpoint is not None else None

    # 2. Processes and devices.
    rank, world, device_ = _distributed(module, device)
    if device_ is not None:
        module.to(device_)
    if seed is None and world > 1:
        # Every process needs the same data order; rank 0 draws it for all.
        seed = _broadcast_int(int(torch.randint(2**62, ()).item()), device_)

    stream = _stream(data, context, batch_size, rank, world, train=True)
    stream.seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    val_stream = None if val_data is None else _stream(val_data, None, batch_size, rank, world)
    steps = _steps(steps, epochs, stream, sum(schedule_.values()))

    # 3. A fresh start or a resumed one.
    history = History({k: [] for k in objective_}, [], {}, 0, dict(schedule_))
    if resume and path is not None and path.exists():
        history = _load(path, module, optimizer_, schedulers, stream, rank, world, seed)
    elif seed is not None:
        _seed_all(seed + rank)

    net: nn.Module = module
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            module, device_ids=[device_.index] if device_ and device_.type == "cuda" else None
        )
    run = _Run(
        net, module, objective_, optimizer_, stream, device_, path, seed, rank, world,
        clip_grad, saved=history.step, schedulers=schedulers,
    )  # fmt: skip

    # 4. The loop.
    training = module.training
    bar = tqdm(total=steps, initial=history.step, disable=not progress or rank != 0, unit="step")
    try:
        module.train()
        while history.step < steps:
            step = history.step + 1
            for name, k in schedule_.items():
                for _ in range(k):
                    history.losses[name].append(run.player_step(name, step))
            for sched in schedulers.values():
                sched.step()
            history.step = step
            bar.update(1)
            bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.losses.items()}, refresh=False)
            if val_stream is not None and val_every is not None and step % val_every == 0:
                _record(history, run.evaluate(val_stream))
            if path is not None and checkpoint_every is not None and step % checkpoint_every == 0:
                run.save(history)
        # The end of the run is validated and saved, unless it just was.
        final = val_stream is not None and history.val_steps[-1:] != [history.step]
        if final:
            _record(history, run.evaluate(val_stream))
        if path is not None and (final or run.saved != history.step or not path.exists()):
            run.save(history)
    finally:
        bar.close()
        module.train(training)
        run.close()
    return history


@dataclass(eq=False)
class _Run:
    # What every step of one call of fit uses, and the little state it keeps.
    net: nn.Module  # the model the objectives get: `module`, or its DDP wrapper
    module: nn.Module
    objectives: dict[str, Objective]
    optimizers: dict[str, torch.optim.Optimizer]
    stream: _Stream
    device: torch.device | None
    path: Path | None
    seed: int | None
    rank: int
    world: int
    clip_grad: float | None = None
    saved: int = 0  # the step of the last checkpoint
    # Whether DDP's own gradient averaging works: it needs DDP's forward to run and every
    # parameter to get a gradient. Unknown until the first step, which fit averages itself.
    native: bool | None = None
    called: bool = False
    schedulers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._hook = None
        if self.world > 1:
            self._hook = self.net.register_forward_pre_hook(self._forward_ran)

    def _forward_ran(self, *_: Any) -> None:
        self.called = True

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()

    def player_step(self, name: str, step: int) -> float:
        r"""One optimizer step of player ``name``; returns its loss."""
        manual = self.world > 1 and not self.native
        optimizer = self.optimizers[name]
        # Clear every gradient, not only this player's: another player's loss may have
        # reached these parameters, and they must move by their own loss only.
        self.module.zero_grad(set_to_none=True)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        x, c = (_to(t, self.device) for t in next(self.stream))
        self.called = False
        with self.net.no_sync() if manual else contextlib.nullcontext():
            loss = self.objectives[name](self.net, x, c)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"the objective of {name!r} must return a scalar tensor, got {shape}")
        if not loss.requires_grad:
            raise ValueError(f"the loss of {name!r} does not depend on any trainable parameter")
        value = loss.detach().clone()
        if self.world > 1:
            # Every process sees the same mean loss, so all of them stop together.
            dist.all_reduce(value)
            value /= self.world
        value = float(value)
        if not math.isfinite(value):
            raise self._non_finite("loss", value, name, step)
        loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if manual:
            _all_reduce_grads(params, self.world)
            if self.native is None:
                self.native = len(self.objectives) == 1 and self.called and _all_grads(self.module)
        if self.clip_grad is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip_grad))
            if not math.isfinite(norm):
                raise self._non_finite("gradient norm", norm, name, step)
        optimizer.step()
        return value

    def _non_finite(self, what: str, value: float, name: str, step: int) -> NonFiniteLossError:
        where = ""
        if self.path is not None and self.saved:
            where = f"; the last checkpoint, {self.path}, holds step {self.saved}"
        return NonFiniteLossError(
            f"non-finite {what} {value} for player {name!r} at step {step}; the optimizer "
            f"did not step, the model holds the parameters of step {step - 1}{where}",
            step,
            name,
            value,
        )

    def evaluate(self, stream: _Stream) -> dict[str, float]:
        r"""Each player's objective averaged over ``stream``'s epoch, without gradients."""
        cuda = [self.device] if self.device is not None and self.device.type == "cuda" else []
        totals = torch.zeros(len(self.objectives) + 1, dtype=torch.float64)
        training = self.module.training
        self.module.eval()
        # Forked RNGs: validation must not shift the training run's random numbers, and
        # the same numbers each time make its curve show the model, not the noise.
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(0)
            if cuda:
                torch.cuda.manual_seed(0)
            for x, c in stream.epoch():
                x, c = _to(x, self.device), _to(c, self.device)
                n = len(x) if x is not None else 1
                # The bare module: DDP's forward would sync buffers, a collective that
                # processes with shards of different lengths would call unevenly.
                for i, f in enumerate(self.objectives.values()):
                    totals[i] += float(f(self.module, x, c)) * n
                totals[-1] += n
        self.module.train(training)
        if self.world > 1:
            totals = totals.to(self.device or "cpu")
            dist.all_reduce(totals)
            totals = totals.cpu()
        return {k: float(totals[i] / totals[-1]) for i, k in enumerate(self.objectives)}

    def save(self, history: History) -> None:
        r"""Writes the checkpoint (rank 0), with every process's RNG and data states."""
        local = {"rng": _rng_state(), "data": self.stream.state_dict()}
        if self.world > 1:
            ranks: list[Any] = [None] * self.world
            dist.all_gather_object(ranks, local)
        else:
            ranks = [local]
        if self.rank == 0:
            state = {
                "format": _FORMAT,
                "step": history.step,
                "seed": self.seed,
                "world_size": self.world,
                "model": self.module.state_dict(),
                "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
                "schedulers": {k: sch.state_dict() for k, sch in self.schedulers.items()},
                "history": history.state_dict(),
                "ranks": ranks,
            }
            _save_atomic(state, self.path)
        if self.world > 1:
            # No process reads the file (a resume) before it is whole.
            dist.barrier()
        self.saved = history.step


def _record(history: History, losses: Mapping[str, float]) -> None:
    history.val_steps.append(history.step)
    for k, v in losses.items():
        history.val_losses.setdefault(k, []).append(v)


# Players


def _players(
    module: nn.Module,
    objective: Objective | Mapping[str, Objective] | None,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None,
    schedule: Mapping[str, int] | None,
    lr: float,
) -> tuple[dict[str, Objective], dict[str, torch.optim.Optimizer], dict[str, int]]:
    if isinstance(objective, Mapping):
        if not objective:
            raise ValueError("expected at least one player in the objective dict, got none")
        if not isinstance(optimizer, Mapping):
            raise ValueError(
                f"several players {list(objective)} need a dict of optimizers with the same "
                f"keys, got {type(optimizer).__name__}"
            )
        if set(optimizer) != set(objective):
            raise ValueError(
                f"expected optimizers for the players {sorted(objective)}, got {sorted(optimizer)}"
            )
        objectives_ = dict(objective)
        optimizers = {k: optimizer[k] for k in objective}
    else:
        if isinstance(optimizer, Mapping):
            raise ValueError("a dict of optimizers needs a dict of objectives with the same keys")
        if schedule is not None:
            raise ValueError("schedule needs several players: a dict of objectives")
        objectives_ = {_SINGLE: _default_objective(module) if objective is None else objective}
        if optimizer is None:
            if not any(p.requires_grad for p in module.parameters()):
                raise ValueError("the model has no trainable parameters")
            optimizer = torch.optim.Adam(module.parameters(), lr=lr)
        optimizers = {_SINGLE: optimizer}
    for name, f in objectives_.items():
        if not callable(f):
            raise ValueError(f"the objective of {name!r} is not callable: {f!r}")
    for name, opt in optimizers.items():
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(
                f"expected a torch.optim.Optimizer for {name!r}, got {type(opt).__name__}"
            )
    schedule = dict(schedule or {})
    if set(schedule) - set(objectives_):
        raise ValueError(
            f"schedule names {sorted(set(schedule) - set(objectives_))}, "
            f"which are not players {sorted(objectives_)}"
        )
    for name, k in schedule.items():
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"expected schedule[{name!r}] to be an int >= 1, got {k!r}")
    return objectives_, optimizers, {k: schedule.get(k, 1) for k in objectives_}


def _schedulers(
    scheduler: Scheduler | Mapping[str, Scheduler] | None,
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    if scheduler is None:
        return {}
    if not isinstance(scheduler, Mapping):
        if len(optimizers) != 1:
            raise ValueError(
                f"several players {sorted(optimizers)} need a dict of schedulers (or none)"
            )
        scheduler = {next(iter(optimizers)): scheduler}
    unknown = set(scheduler) - set(optimizers)
    if unknown:
        raise ValueError(f"schedulers name {sorted(unknown)}, which are not players")
    built = {}
    for name, make in scheduler.items():
        if not callable(make):
            raise ValueError(f"expected a function optimizer -> LRScheduler for {name!r}")
        built[name] = make(optimizers[name])
        if not hasattr(built[name], "step") or not hasattr(built[name], "state_dict"):
            raise ValueError(
                f"the scheduler of {name!r} returned {type(built[name]).__name__}, "
                "not a learning-rate scheduler"
            )
    return built


def _default_objective(module: nn.Module) -> Objective:
    f = getattr(module, "default_objective", None)
    if f is None:
        return objectives.nll
    # A method is called unbound, so that `self` is the model fit hands over (the DDP
    # wrapper in a distributed run), like a plain function's first argument.
    return getattr(f, "__func__", f) if getattr(f, "__self__", None) is module else f


def _all_grads(module: nn.Module) -> bool:
    return all(p.grad is not None for p in module.parameters() if p.requires_grad)


def _all_reduce_grads(params: list[Tensor], world: int) -> None:
    # One collective per dtype and device. A presence flag per parameter rides along, so
    # that processes agree on which gradients exist (a missing one counts as zero).
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), ps in groups.items():
        flags = torch.tensor([p.grad is not None for p in ps], dtype=dtype, device=device)
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in ps]
        flat = torch.cat([flags, *grads])
        dist.all_reduce(flat)
        flags, *grads = flat.split([len(ps), *(p.numel() for p in ps)])
        for p, flag, g in zip(ps, flags.tolist(), grads, strict=True):
            if flag > 0:
                p.grad = (g / world).view_as(p)


# Data


class _Stream:
    # An endless stream of batches whose position is a small state for checkpoints.
    per_epoch: int | None = None

    def __next__(self) -> Batch:
        raise NotImplementedError

    def seed(self, seed: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

    def epoch(self) -> Iterator[Batch]:
        raise ValueError(f"{type(self).__name__} has no epochs")


class _Nothing(_Stream):
    def __next__(self) -> Batch:
        return None, None


class _Sampler(_Stream):
    # Fresh samples from the global torch RNG, which checkpoints save and restore.
    def __init__(self, fn: Callable[[int], Any], n: int) -> None:
        self.fn, self.n = fn, n

    def __next__(self) -> Batch:
        return _split(self.fn(self.n), "a batch of the sampler")


class _Indexed(_Stream):
    # Shuffled batches of indices into `n` items, drawn from a private generator; each
    # process takes every `world`-th index of the shuffle padded to a multiple of `world`
    # (what DistributedSampler does), so that all of them take the same number of steps.
    def __init__(
        self, fetch: Callable[[Tensor], Batch], n: int, batch_size: int, rank: int, world: int
    ) -> None:
        self.fetch, self.n, self.batch_size, self.rank, self.world = (
            fetch,
            n,
            batch_size,
            rank,
            world,
        )
        self.generator = torch.Generator()
        self.per_epoch = math.ceil(math.ceil(n / world) / batch_size)
        self._epoch, self._index = 0, 0
        self._start: Tensor | None = None
        self._batches: tuple[Tensor, ...] = ()

    def seed(self, seed: int) -> None:
        # Decorrelated from the global RNG, which a seeded run starts from the same seed.
        self.generator.manual_seed((seed * 6364136223846793005 + 1442695040888963407) % 2**63)

    def _shuffle(self) -> None:
        self._start = self.generator.get_state()
        perm = torch.randperm(self.n, generator=self.generator)
        total = math.ceil(self.n / self.world) * self.world
        perm = perm.repeat(math.ceil(total / self.n))[:total]
        self._batches = perm[self.rank :: self.world].split(self.batch_size)

    def __next__(self) -> Batch:
        if self._start is None:
            self._shuffle()
        elif self._index == len(self._batches):
            self._epoch, self._index = self._epoch + 1, 0
            self._shuffle()
        self._index += 1
        return self.fetch(self._batches[self._index - 1])

    def state_dict(self) -> dict[str, Any]:
        # The generator state at the start of the epoch and the position in it: replaying
        # the shuffle from there restores the epoch's order and the generator.
        started = self._start is not None
        return {
            "kind": type(self).__name__,
            "generator": self._start if started else self.generator.get_state(),
            "started": started,
            "epoch": self._epoch,
            "index": self._index,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._epoch, self._index, self._start = state["epoch"], state["index"], None
        if state["started"]:
            self._shuffle()

    def epoch(self) -> Iterator[Batch]:
        # In order, without padding, for validation.
        for idx in torch.arange(self.rank, self.n, self.world).split(self.batch_size):
            yield self.fetch(idx)


class _Loader(_Stream):
    # A user's DataLoader, epoch after epoch. Its order comes from the RNGs at the start of
    # each epoch (the global one, or its own generators); a resumed run restores those,
    # replays the epoch up to its position, then restores the RNGs of the checkpoint.
    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        try:
            self.per_epoch = len(loader)
        except TypeError:
            self.per_epoch = None
        if self.per_epoch == 0:
            raise ValueError("the DataLoader is empty")
        self._epoch, self._index = 0, 0
        self._start: dict[str, Any] | None = None
        self._it: Iterator[Any] | None = None

    def _generators(self) -> list[torch.Generator]:
        found: list[torch.Generator] = []
        sampler = getattr(self.loader.batch_sampler, "sampler", None)
        for owner in (self.loader, self.loader.sampler, sampler):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not h for h in found):
                found.append(g)
        return found

    def _begin(self) -> None:
        self._start = {
            "torch": torch.get_rng_state(),
            "generators": [g.get_state() for g in self._generators()],
        }
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(self._epoch)
        self._it = iter(self.loader)

    def __next__(self) -> Batch:
        if self._it is None:
            self._begin()
        while True:
            try:
                batch = next(self._it)
                break
            except StopIteration:
                if self._index == 0:
                    raise ValueError("the DataLoader yielded no batch in an epoch") from None
                self._epoch, self._index = self._epoch + 1, 0
                self._begin()
        self._index += 1
        return _split(batch, "a batch of the DataLoader")

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "start": self._start,
            "epoch": self._epoch,
            "index": self._index,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._epoch, self._index, self._it = state["epoch"], 0, None
        if state["start"] is None:
            return
        torch.set_rng_state(state["start"]["torch"])
        for g, s in zip(self._generators(), state["start"]["generators"], strict=True):
            g.set_state(s)
        self._begin()
        for _ in range(state["index"]):
            next(self._it)
        self._index = state["index"]

    def epoch(self) -> Iterator[Batch]:
        for batch in self.loader:
            yield _split(batch, "a batch of the DataLoader")


def _stream(
    data: Data, context: Tensor | None, batch_size: int, rank: int, world: int, train=False
) -> _Stream:
    what = "data" if train else "val_data"
    if context is not None and isinstance(data, (tuple, list)):
        raise ValueError("the context is given twice: in the pair (x, c) and as context=")
    if context is not None and not isinstance(data, Tensor):
        raise ValueError(
            f"context= goes with a tensor data, got {type(data).__name__}; "
            "give (x, c) pairs in the dataset, loader or sampler instead"
        )
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
            raise ValueError(f"expected {what} as a pair (x, c) of tensors, got {_describe(data)}")
        data, context = data
    if isinstance(data, Tensor):
        x, c = data, context
        if x.dim() < 1 or len(x) == 0:
            raise ValueError(f"expected {what} with shape (N, *) and N >= 1, got {tuple(x.shape)}")
        if c is not None and (not isinstance(c, Tensor) or c.dim() < 1 or len(c) != len(x)):
            raise ValueError(
                f"expected a context with shape ({len(x)}, *) to match {what} of shape "
                f"{tuple(x.shape)}, got {_describe(c)}"
            )
        return _Indexed(
            lambda i: (x[i], None if c is None else c[i]), len(x), batch_size, rank, world
        )
    if isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size)
    if isinstance(data, DataLoader):
        if world > 1 and not isinstance(data.sampler, torch.utils.data.DistributedSampler):
            warnings.warn(
                "a DataLoader without a DistributedSampler gives every process the same "
                "batches in a distributed run",
                stacklevel=3,
            )
        return _Loader(data)
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError(f"the {what} Dataset has no len(); wrap it in a DataLoader") from None
        if n == 0:
            raise ValueError(f"the {what} Dataset is empty")

        def fetch(idx: Tensor) -> Batch:
            return _split(default_collate([data[i] for i in idx.tolist()]), f"an item of {what}")

        return _Indexed(fetch, n, batch_size, rank, world)
    if data is None or callable(data):
        if not train:
            raise ValueError(
                "val_data must be finite: a tensor, a pair, a Dataset or a DataLoader "
                "(draw a fixed validation set from a sampler once)"
            )
        return _Nothing() if data is None else _Sampler(data, batch_size)
    raise ValueError(
        f"expected {what} as a tensor, a pair (x, c), a Dataset, a DataLoader or a "
        f"callable n -> batch, got {type(data).__name__}"
    )


def _split(batch: Any, what: str) -> Batch:
    if isinstance(batch, Tensor):
        return batch, None
    if (
        isinstance(batch, (tuple, list))
        and len(batch) in (1, 2)
        and isinstance(batch[0], Tensor)
        and (len(batch) == 1 or batch[1] is None or isinstance(batch[1], Tensor))
    ):
        return batch[0], batch[1] if len(batch) == 2 else None
    raise ValueError(
        f"expected {what} to be x or a pair (x, c) of tensors, got {_describe(batch)}"
    )


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of ({', '.join(_describe(t) for t in x)})"
    return type(x).__name__


def _to(t: Tensor | None, device: torch.device | None) -> Tensor | None:
    return t if t is None or device is None else t.to(device, non_blocking=True)


def _steps(steps: int | None, epochs: int | None, stream: _Stream, per_round: int) -> int:
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps and epochs, got {steps=} and {epochs=}")
    if steps is not None:
        _check_positive(steps=steps)
        return steps
    _check_positive(epochs=epochs)
    if stream.per_epoch is None:
        raise ValueError(
            "epochs need finite data of known length (a tensor, a pair, a Dataset or a "
            "sized DataLoader); give steps instead"
        )
    return math.ceil(epochs * stream.per_epoch / per_round)


def _check_positive(**values: int | None) -> None:
    for name, v in values.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"expected {name} to be an int >= 1, got {v!r}")


# Processes


def _distributed(
    module: nn.Module, device: str | torch.device | None
) -> tuple[int, int, torch.device | None]:
    if device is None:
        first = next(iter([*module.parameters(), *module.buffers()]), None)
        device_ = first.device if first is not None else None
    else:
        device_ = torch.device(device)
    if not dist.is_available():
        return 0, 1, device_
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1, device_
        cuda = device_ is not None and device_.type == "cuda"
        if cuda and device_.index is None:
            device_ = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if cuda:
            torch.cuda.set_device(device_)
        dist.init_process_group("nccl" if cuda else "gloo")
    elif device_ is not None and device_.type == "cuda" and device_.index is None:
        device_ = torch.device("cuda", torch.cuda.current_device())
    return dist.get_rank(), dist.get_world_size(), device_


def _broadcast_int(value: int, device: torch.device | None) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# Checkpoints


def _rng_state() -> dict[str, Any]:
    # Only tensors, lists and scalars, so that the checkpoint loads with weights_only.
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    # Asking for CUDA states would start CUDA in a run that never used it.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn(
                "the checkpoint's CUDA RNG states are for another device count", stacklevel=4
            )


def _save_atomic(obj: Any, path: Path) -> None:
    r"""Writes ``obj`` with :func:`torch.save` so that ``path`` is always whole: the old
    file or the new one, never a torn write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable.
    if hasattr(os, "O_DIRECTORY"):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _load(
    path: Path,
    module: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
    stream: _Stream,
    rank: int,
    world: int,
    seed: int | None,
) -> History:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a checkpoint of probgen.fit (format {_FORMAT})")
    if set(state["optimizers"]) != set(optimizers):
        raise ValueError(
            f"{path} holds the players {sorted(state['optimizers'])}, "
            f"this run has {sorted(optimizers)}"
        )
    module.load_state_dict(state["model"])
    for k, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][k])
    saved = state.get("schedulers", {})
    if set(saved) != set(schedulers):
        raise ValueError(
            f"{path} holds learning-rate schedules for {sorted(saved)}, "
            f"this run has them for {sorted(schedulers)}"
        )
    for k, sch in schedulers.items():
        sch.load_state_dict(saved[k])
    history = History.from_state_dict(state["history"])
    ranks = state["ranks"]
    local = ranks[rank] if len(ranks) == world else ranks[0]
    if local["data"]["kind"] != type(stream).__name__:
        raise ValueError(
            f"{path} was written for another form of data ({local['data']['kind']}, "
            f"this run has {type(stream).__name__})"
        )
    # The data first: replaying a DataLoader moves the global RNG, restored after.
    stream.load_state_dict(local["data"])
    if len(ranks) == world:
        _set_rng_state(local["rng"])
    else:
        warnings.warn(
            f"{path} was written by {len(ranks)} processes and {world} resume it: the run "
            "goes on, but not bit-identical to an uninterrupted one",
            stacklevel=3,
        )
        _seed_all((seed or 0) + 1_000_003 * history.step + rank)
    return history
