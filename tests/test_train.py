r"""Tests of probgen.fit and the basic objectives."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import probgen as pg
from probgen import objectives
from probgen.train import History, NonFiniteLossError, _save_atomic


def flow(seed: int = 0, context: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return pg.flows.MAF(2, context=context, transforms=2, hidden=(16,))


def gaussian(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.5 + 1.0


def sampler(n: int) -> torch.Tensor:
    return torch.randn(n, 2) * 0.5 + 1.0


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


# Objectives


def test_nll_is_the_mean_negative_log_prob():
    model, x = flow(), gaussian(8)
    assert torch.equal(objectives.nll(model, x), -model().log_prob(x).mean())
    cmodel, c = flow(context=1), torch.randn(8, 1)
    assert torch.equal(objectives.nll(cmodel, x, c), -cmodel(c).log_prob(x).mean())


def test_reverse_kl_vanishes_at_the_target():
    # A flow initialised near the identity is near N(0, I); against log N(0, I) up to the
    # constant log Z = D/2 log(2 pi), KL(q || p) - log Z estimates -log Z with small error.
    model = flow()
    for p in model.parameters():
        nn.init.zeros_(p)
    log_target = lambda x: -(x**2).sum(-1) / 2  # noqa: E731
    loss = objectives.reverse_kl(model, log_target, 256)
    assert loss.item() == pytest.approx(-math.log(2 * math.pi), abs=1e-9)
    loss.backward()
    with pytest.raises(ValueError, match="n >= 1"):
        objectives.reverse_kl(model, log_target, 0)


def test_unwrap():
    model = flow()
    assert objectives.unwrap(model) is model
    assert objectives.unwrap(nn.DataParallel(model)) is model


# fit


def test_loss_decreases_on_a_gaussian():
    x = gaussian(1024)
    history = pg.fit(flow(), x, steps=100, lr=1e-2, batch_size=64, seed=0, progress=False)
    assert history.step == 100 and len(history.loss) == 100
    first, last = sum(history.loss[:10]) / 10, sum(history.loss[-10:]) / 10
    # The entropy of N(1, 0.25 I) in 2 D, the lowest expected loss, is log(2 pi e / 4).
    entropy = math.log(2 * math.pi * math.e * 0.25)
    assert last < first - 0.5
    assert last < entropy + 0.3


class Items(Dataset):
    def __init__(self, x: torch.Tensor, c: torch.Tensor | None = None) -> None:
        self.x, self.c = x, c

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] if self.c is None else (self.x[i], self.c[i])


def forms():
    x, c = gaussian(40), torch.randn(40, 1)
    return {
        "tensor": (0, lambda: {"data": x}),
        "pair": (1, lambda: {"data": (x, c)}),
        "context": (1, lambda: {"data": x, "context": c}),
        "dataset": (0, lambda: {"data": Items(x)}),
        "dataset-pair": (1, lambda: {"data": Items(x, c)}),
        "tensor-dataset": (1, lambda: {"data": TensorDataset(x, c)}),
        "loader": (1, lambda: {"data": DataLoader(TensorDataset(x, c), batch_size=16)}),
        "loader-x": (0, lambda: {"data": DataLoader(x, batch_size=16, shuffle=True)}),
        "sampler": (0, lambda: {"data": sampler}),
        "sampler-pair": (1, lambda: {"data": lambda n: (sampler(n), torch.randn(n, 1))}),
    }


@pytest.mark.parametrize("form", list(forms()))
def test_data_forms(form):
    context, kwargs = forms()[form]
    seen = []

    def objective(model, x, c):
        seen.append((tuple(x.shape), None if c is None else tuple(c.shape)))
        return objectives.nll(model, x, c)

    history = pg.fit(
        flow(context=context), **kwargs(), objective=objective, steps=5, batch_size=16,
        progress=False, device="cpu",
    )  # fmt: skip
    assert history.step == 5 and len(history.loss) == 5
    assert all(math.isfinite(v) for v in history.loss)
    # 40 items in batches of 16 give 16, 16, 8, then a new epoch.
    sizes = [16, 16, 8, 16, 16] if "sampler" not in form else [16] * 5
    assert [s[0][0] for s in seen] == sizes
    assert all(s[0][1:] == (2,) and (s[1] is None) == (context == 0) for s in seen)


def test_epochs_count_passes_over_the_data():
    history = pg.fit(flow(), gaussian(100), epochs=2, batch_size=32, progress=False)
    assert history.step == 8  # 4 batches an epoch, the last one of 4 items


def test_data_free_objective():
    log_target = lambda x: -((x - 1) ** 2).sum(-1) / 2  # noqa: E731
    history = pg.fit(
        flow(), objective=lambda m, x, c: objectives.reverse_kl(m, log_target, 64),
        steps=40, lr=1e-2, seed=0, progress=False,
    )  # fmt: skip
    assert sum(history.loss[-5:]) < sum(history.loss[:5])


def test_default_objective_of_the_model():
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Parameter(torch.zeros(()))
            self.calls = 0

        def default_objective(self, x, c=None):
            self.calls += 1
            return ((self.a - x) ** 2).mean()

    model = Model()
    pg.fit(model, torch.ones(8), steps=3, progress=False)
    assert model.calls == 3 and model.a.item() > 0


def bad_inputs() -> dict:
    x40 = gaussian(40)
    return {
        "no steps nor epochs": ({"data": x40}, "exactly one of steps and epochs"),
        "steps and epochs": ({"data": x40, "steps": 2, "epochs": 1}, "exactly one"),
        "zero steps": ({"data": x40, "steps": 0}, "steps to be an int >= 1"),
        "zero batch": ({"data": x40, "steps": 1, "batch_size": 0}, "batch_size"),
        "lengths": ({"data": (x40, torch.zeros(39, 1)), "steps": 1}, r"shape \(40, \*\)"),
        "context lengths": (
            {"data": x40, "context": torch.zeros(3, 1), "steps": 1},
            r"\(40, \*\)",
        ),
        "context twice": ({"data": (x40, x40), "context": x40, "steps": 1}, "given twice"),
        "context sampler": ({"data": sampler, "context": x40, "steps": 1}, "context="),
        "pair of three": ({"data": (x40, x40, x40), "steps": 1}, r"pair \(x, c\)"),
        "string data": ({"data": "x.csv", "steps": 1}, "got str"),
        "empty": ({"data": torch.zeros(0, 2), "steps": 1}, "N >= 1"),
        "epochs of a sampler": ({"data": sampler, "epochs": 1}, "finite data"),
        "val sampler": (
            {"data": x40, "steps": 1, "val_data": sampler},
            "val_data must be finite",
        ),
        "val_every alone": (
            {"data": x40, "steps": 1, "val_every": 1},
            "val_every needs val_data",
        ),
        "checkpoint_every alone": (
            {"data": x40, "steps": 1, "checkpoint_every": 1},
            "checkpoint",
        ),
        "resume alone": ({"data": x40, "steps": 1, "resume": True}, "checkpoint path"),
        "clip": ({"data": x40, "steps": 1, "clip_grad": 0.0}, "clip_grad > 0"),
        "schedule alone": (
            {"data": x40, "steps": 1, "schedule": {"loss": 2}},
            "several players",
        ),
        "optimizer dict": ({"data": x40, "steps": 1, "optimizer": {}}, "dict of objectives"),
        "players without optimizers": (
            {"data": x40, "steps": 1, "objective": {"g": objectives.nll}},
            "dict of optimizers",
        ),
        "malformed batch": ({"data": lambda n: {"x": sampler(n)}, "steps": 1}, "got dict"),
        "vector loss": (
            {"data": x40, "steps": 1, "objective": lambda m, x, c: -m().log_prob(x)},
            "scalar tensor, got",
        ),
    }


@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_inputs_raise(case):
    kwargs, match = bad_inputs()[case]
    with pytest.raises(ValueError, match=match):
        pg.fit(flow(), progress=False, **kwargs)


def test_bad_players_raise():
    model, x40 = flow(), gaussian(40)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    two = {"g": objectives.nll, "d": objectives.nll}
    with pytest.raises(ValueError, match="optimizers for the players"):
        pg.fit(model, x40, steps=1, objective=two, optimizer={"g": opt}, progress=False)
    with pytest.raises(ValueError, match="not players"):
        pg.fit(
            model, x40, steps=1, objective=two, optimizer={"g": opt, "d": opt},
            schedule={"c": 5}, progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"schedule\['d'\]"):
        pg.fit(
            model, x40, steps=1, objective=two, optimizer={"g": opt, "d": opt},
            schedule={"d": 0}, progress=False,
        )  # fmt: skip


# Several players


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.3))
        self.b = nn.Parameter(torch.tensor(-0.2))


def loss_a(model, x, c):
    return (model.a * model.b + x.mean() - 1) ** 2


def loss_b(model, x, c):
    return (model.a - 2 * model.b + x.mean()) ** 2


def test_players_step_in_turn_on_their_own_losses():
    # Each loss reaches both parameters, so a gradient left over from the other player
    # would move a parameter by the wrong loss.
    model, draws = Pair(), []

    def data(n):
        draws.append(n)
        return torch.full((n,), 0.1 * len(draws))

    history = pg.fit(
        model, data, steps=4, batch_size=3, schedule={"a": 3, "b": 1},
        objective={"a": loss_a, "b": loss_b},
        optimizer={
            "a": torch.optim.SGD([model.a], lr=0.1),
            "b": torch.optim.SGD([model.b], lr=0.05),
        },
        progress=False,
    )  # fmt: skip
    assert history.step == 4
    assert len(history.losses["a"]) == 12 and len(history.losses["b"]) == 4
    assert len(draws) == 16 and set(draws) == {3}

    # The same rounds by hand: each player's gradient of its own loss only.
    ref, k, expected = Pair(), 0, {"a": [], "b": []}
    for _ in range(4):
        for name, loss_fn, lr, times in (("a", loss_a, 0.1, 3), ("b", loss_b, 0.05, 1)):
            p = getattr(ref, name)
            for _ in range(times):
                k += 1
                loss = loss_fn(ref, torch.full((3,), 0.1 * k), None)
                (g,) = torch.autograd.grad(loss, p)
                with torch.no_grad():
                    p.add_(g, alpha=-lr)
                expected[name].append(loss.item())
    assert torch.equal(model.a, ref.a) and torch.equal(model.b, ref.b)
    assert history.losses == expected


# Failure, checkpoints and resume


def test_non_finite_loss_stops_before_the_step(tmp_path):
    path = tmp_path / "run.pt"
    calls = [0]

    def objective(model, x, c):
        calls[0] += 1
        loss = objectives.nll(model, x, c)
        return loss * math.nan if calls[0] == 13 else loss

    x, model = gaussian(64), flow()
    with pytest.raises(NonFiniteLossError, match="step 13") as info:
        pg.fit(
            model, x, objective=objective, steps=20, batch_size=16, seed=0,
            checkpoint=path, checkpoint_every=5, progress=False,
        )  # fmt: skip
    assert isinstance(info.value, FloatingPointError)
    assert info.value.step == 13 and math.isnan(info.value.loss)
    assert "holds step 10" in str(info.value)

    state = torch.load(path, weights_only=True)
    assert state["step"] == 10 and len(state["history"]["losses"]["loss"]) == 10
    assert os.listdir(tmp_path) == ["run.pt"]

    # The model holds the parameters of step 12, as a clean run of 12 steps leaves them.
    clean = flow()
    pg.fit(clean, x, steps=12, batch_size=16, seed=0, progress=False)
    assert same(params(model), params(clean))

    # And resuming from the checkpoint gets there too.
    resumed = flow(seed=5)
    pg.fit(
        resumed, x, steps=12, batch_size=16, seed=0, checkpoint=path, resume=True, progress=False
    )
    assert same(params(resumed), params(clean))


def test_non_finite_gradient_norm_stops_when_clipping():
    def objective(model, x, c):
        a = next(model.parameters())
        # Zero, with an infinite derivative: sqrt'(0).
        return objectives.nll(model, x, c) + (a - a.detach()).abs().sum().sqrt()

    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        pg.fit(flow(), gaussian(32), objective=objective, steps=2, clip_grad=1.0, progress=False)


def noisy_nll(model, x, c):
    # Consumes the global RNG at every step, as many objectives do.
    return objectives.nll(model, x + 1e-2 * torch.randn_like(x), c)


def resume_forms():
    x = gaussian(100)
    return {
        "tensor": lambda: x,
        "sampler": lambda: sampler,
        "dataset": lambda: Items(x),
        "loader": lambda: DataLoader(TensorDataset(x), batch_size=32, shuffle=True),
    }


@pytest.mark.parametrize("form", list(resume_forms()))
def test_resume_is_bit_identical(form, tmp_path):
    data = resume_forms()[form]
    kwargs = dict(
        objective=noisy_nll, batch_size=32, seed=3, val_data=gaussian(50, seed=1), val_every=5,
        progress=False,
    )  # fmt: skip
    straight = flow(seed=1)
    h1 = pg.fit(straight, data(), steps=20, **kwargs)

    path = tmp_path / "ckpt.pt"
    first = flow(seed=1)
    pg.fit(first, data(), steps=10, checkpoint=path, checkpoint_every=3, **kwargs)
    # A different initialisation and a different global RNG: the checkpoint restores all.
    torch.manual_seed(123)
    resumed = flow(seed=2)
    h2 = pg.fit(resumed, data(), steps=20, checkpoint=path, resume=True, **kwargs)

    assert same(params(straight), params(resumed))
    assert h1 == h2
    assert h1.val_steps == [5, 10, 15, 20]
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_resume_restores_the_learning_rate_schedule(tmp_path):
    def cosine(opt):
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)

    kwargs = dict(objective=noisy_nll, batch_size=32, seed=3, progress=False, scheduler=cosine)
    straight = flow(seed=1)
    h1 = pg.fit(straight, sampler, steps=20, **kwargs)
    path = tmp_path / "ckpt.pt"
    pg.fit(flow(seed=1), sampler, steps=10, checkpoint=path, **kwargs)
    resumed = flow(seed=2)
    h2 = pg.fit(resumed, sampler, steps=20, checkpoint=path, resume=True, **kwargs)
    assert same(params(straight), params(resumed)) and h1 == h2
    # A checkpoint with a schedule refuses a run without one.
    pg.fit(flow(seed=1), sampler, steps=10, checkpoint=tmp_path / "b.pt", **kwargs)
    with pytest.raises(ValueError, match="learning-rate schedules"):
        pg.fit(
            flow(seed=2), sampler, steps=20, checkpoint=tmp_path / "b.pt", resume=True,
            objective=noisy_nll, batch_size=32, seed=3, progress=False,
        )


def test_scheduler_changes_the_learning_rate():
    def step_lr(opt):
        return torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1)

    model = flow()
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    pg.fit(model, sampler, steps=10, optimizer=opt, scheduler=step_lr, progress=False)
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)
    with pytest.raises(ValueError, match="LRScheduler"):
        pg.fit(flow(), sampler, steps=1, scheduler=42, progress=False)


def test_validation_leaves_training_unchanged():
    x, val = gaussian(64), gaussian(32, seed=1)
    kwargs = dict(objective=noisy_nll, steps=6, batch_size=16, seed=0, progress=False)
    a, b = flow(), flow()
    h1 = pg.fit(a, x, **kwargs)
    h2 = pg.fit(b, x, val_data=val, val_every=1, **kwargs)
    assert same(params(a), params(b)) and h1.loss == h2.loss
    assert h2.val_steps == list(range(1, 7)) and len(h2.val_loss) == 6
    # The validation loss is the objective's mean over the validation data.
    h3 = pg.fit(b, x, val_data=val, **{**kwargs, "objective": objectives.nll})
    with torch.no_grad():
        assert h3.val_loss[-1] == pytest.approx(objectives.nll(b, val).item(), rel=1e-12)


def test_checkpoint_contents(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    model = flow()
    history = pg.fit(model, gaussian(64), steps=4, seed=0, checkpoint=path, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 4
    assert History.from_state_dict(state["history"]) == history
    assert set(state["optimizers"]) == {"loss"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    rng = state["ranks"][0]["rng"]
    assert set(rng) >= {"torch", "numpy", "python"}


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    _save_atomic({"step": 1}, path)
    before = path.read_bytes()

    def torn(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="disk full"):
        _save_atomic({"step": 2}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_history_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    history = History({"g": [1.0, 0.5], "d": [2.0, 1.0, 0.5, 0.2]}, [2], {"g": [0.4]}, 2)
    history.schedule = {"g": 1, "d": 2}
    ax = history.plot()
    assert len(ax.lines) == 3
    with pytest.raises(ValueError, match="players"):
        _ = history.loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("form", ["tensor", "sampler"])
def test_cuda_resume_is_bit_identical(form, tmp_path):
    data = resume_forms()[form]
    kwargs = dict(objective=noisy_nll, batch_size=32, seed=3, device="cuda", progress=False)
    straight = flow(seed=1)
    h1 = pg.fit(straight, data(), steps=12, **kwargs)
    assert next(straight.parameters()).is_cuda
    path = tmp_path / "ckpt.pt"
    pg.fit(flow(seed=1), data(), steps=6, checkpoint=path, **kwargs)
    resumed = flow(seed=2)
    h2 = pg.fit(resumed, data(), steps=12, checkpoint=path, resume=True, **kwargs)
    assert same(params(straight), params(resumed)) and h1 == h2
