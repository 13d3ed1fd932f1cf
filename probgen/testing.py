r"""Reusable conformance checks for probgen families (and users' own).

Each ``check_*`` function raises :class:`AssertionError` with a message when a contract of
``docs/design.md`` fails. They test mathematics, never stored numbers: shapes, inverses,
log-determinants against autograd Jacobians, normalisation by quadrature, agreement of
samples with ``log_prob`` (goodness of fit), gradients, save / load, Pyro interop and
bad-input errors.

Example:
    >>> import probgen as pg
    >>> from probgen.testing import check_shapes
    >>> check_shapes(pg.flows.MAF(2, transforms=1, hidden=(8,)))
"""

from __future__ import annotations

__all__ = [
    "TEST_FAILURE_RATE",
    "perturb",
    "check_shapes",
    "check_transform",
    "check_normalized",
    "check_goodness_of_fit",
    "check_gradients",
    "check_train_eval",
    "check_state_dict",
    "check_pyro",
    "check_bad_input",
]

import io
import math
from collections.abc import Callable

import pyro
import torch
import torch.nn as nn
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from torch import Size, Tensor
from torch.distributions import Distribution, Transform

from .distributions.base import log_prob_kind
from .transforms import call_and_ladj, inv_call_and_ladj

# Chance of a spurious failure per goodness-of-fit check: with ~50 such checks in a suite,
# about one run in 200 fails by chance (none with the fixed seeds of the test suite).
TEST_FAILURE_RATE = 1e-4


def _call(model: nn.Module, c: Tensor | None) -> Distribution:
    return model(c) if c is not None else model()


def _score(d: Distribution, x: Tensor) -> Tensor:
    # What the checks score: log_prob, or the unnormalised log-density of an energy model
    # (whose log_prob raises until a normaliser is estimated).
    if log_prob_kind(d) == "unnormalized":
        return d.unnormalized_log_prob(x)
    return d.log_prob(x)


def _seeded_log_prob(model: nn.Module, c: Tensor | None, x: Tensor) -> Tensor:
    # Estimates and bounds draw noise inside log_prob: compare them under the same seed.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        d = _call(model, c)
        if log_prob_kind(d) == "none":
            # No density (implicit models): compare what defines them, seeded samples.
            return d.sample(x.shape[: x.dim() - len(d.batch_shape) - len(d.event_shape)])
        return _score(d, x)


def _tol(x: Tensor) -> float:
    return 1e-8 if x.dtype == torch.float64 else 1e-4


@torch.no_grad()
def perturb(model: nn.Module, scale: float = 0.1, generator: torch.Generator | None = None):
    r"""Adds Gaussian noise to every floating parameter, in place.

    Models often start at the identity (zero-initialised last layers), where many checks
    would pass trivially and some gradients vanish; a perturbed model is a generic one.
    """
    for p in model.parameters():
        if p.is_floating_point():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def check_shapes(model: nn.Module, c: Tensor | None = None, sample_shape: Size = Size((3,))):
    r"""Checks the shape contract of ``model(c)``.

    ``sample(s)`` has shape ``s + batch_shape + event_shape``, ``log_prob`` of it
    ``s + batch_shape``, ``rsample_and_log_prob`` agrees with ``log_prob``, ``expand``
    prepends batch dimensions, and the batch shape is the context's.
    """
    sample_shape = Size(sample_shape)
    d = _call(model, c)
    if c is not None:
        assert d.batch_shape == c.shape[:-1], (
            f"context of shape {tuple(c.shape)} gave batch_shape {tuple(d.batch_shape)}"
        )
    full = sample_shape + d.batch_shape + d.event_shape
    x = d.sample(sample_shape)
    assert x.shape == full, f"sample{tuple(sample_shape)} has shape {tuple(x.shape)}, not {full}"
    kind = log_prob_kind(d)
    if kind != "none":
        lp = _score(d, x)
        assert lp.shape == sample_shape + d.batch_shape, (
            f"log_prob has shape {tuple(lp.shape)}, expected {sample_shape + d.batch_shape}"
        )
    if d.has_rsample:
        x = d.rsample(sample_shape)
        assert x.shape == full
        if kind != "none" and hasattr(d, "rsample_and_log_prob"):
            x, lp = d.rsample_and_log_prob(sample_shape)
            assert x.shape == full and lp.shape == sample_shape + d.batch_shape
            err = (lp - d.log_prob(x)).abs().max().item()
            assert err < 1e3 * _tol(x), f"rsample_and_log_prob differs from log_prob by {err}"
    e = d.expand(Size((2,)) + d.batch_shape)
    x = e.sample()
    assert x.shape == (2, *d.batch_shape, *d.event_shape), f"expand gave {tuple(x.shape)}"
    if kind != "none":
        assert _score(e, x).shape == (2, *d.batch_shape)


def check_transform(t: Transform, x: Tensor, atol: float | None = None):
    r"""Checks a bijective transform at the points ``x`` with shape ``(N, *event)``.

    - ``t.inv(t(x)) == x``;
    - ``log_abs_det_jacobian``, ``call_and_ladj`` and ``inv_call_and_ladj`` agree, and equal
      :math:`\log |\det J|` of the autograd Jacobian of each event's flattened map;
    - the inverse's ladj is the negative of the forward's.
    """
    atol = atol if atol is not None else 1e3 * _tol(x)
    event_dim = t.domain.event_dim
    y = t(x)
    x2 = t.inv(y)
    err = (x2 - x).abs().max().item()
    assert err < atol, f"inv(t(x)) differs from x by {err}"

    y1, ladj = call_and_ladj(t, x)
    assert (y1 - y).abs().max().item() < atol, "call_and_ladj's y differs from t(x)"
    batch = x.shape[: x.dim() - event_dim]
    assert ladj.shape == batch, f"ladj has shape {tuple(ladj.shape)}, expected {tuple(batch)}"
    lad = t.log_abs_det_jacobian(x, y)
    assert (lad - ladj).abs().max().item() < atol, "log_abs_det_jacobian != call_and_ladj"
    x3, ladj_inv = inv_call_and_ladj(t, y)
    assert (x3 - x).abs().max().item() < atol, "inv_call_and_ladj's x differs from x"
    assert (ladj_inv - ladj).abs().max().item() < atol, "inv_call_and_ladj's ladj differs"
    _, ladj_of_inverse = call_and_ladj(t.inv, y)
    assert (ladj_of_inverse + ladj).abs().max().item() < atol, "ladj of t.inv != -ladj of t"

    # Against autograd, one event at a time, evaluated in place: a conditional transform's
    # parameters may differ between batch elements.
    assert event_dim >= 1, "wrap elementwise transforms in IndependentTransform(t, 1)"
    events = x.reshape(-1, *x.shape[x.dim() - event_dim :])
    flat_ladj = ladj.reshape(-1)
    for i in range(min(len(events), 8)):

        def f(v: Tensor, i: int = i) -> Tensor:
            full = events.clone()
            full[i] = v
            return t(full.reshape(x.shape)).reshape(len(events), -1)[i]

        jac = torch.autograd.functional.jacobian(f, events[i]).reshape(events[i].numel(), -1)
        sign, logdet = torch.linalg.slogdet(jac)
        assert sign.item() != 0, "the autograd Jacobian is singular"
        err = abs(logdet.item() - flat_ladj[i].item())
        assert err < atol, f"ladj {flat_ladj[i].item():.6g} != log|det J| {logdet.item():.6g}"


def check_normalized(
    d: Distribution, low: float = -10.0, high: float = 10.0, n: int = 400, atol: float = 1e-2
):
    r"""Checks that :math:`\int \exp \log p(x) dx = 1` by quadrature on a grid (1-D or 2-D).

    The box :math:`[low, high]^D` must hold all but a negligible part of the mass.
    """
    dims = d.event_shape.numel()
    assert dims in (1, 2), f"check_normalized integrates 1-D or 2-D events, got {dims}"
    dtype = torch.float64
    t = torch.linspace(low, high, n, dtype=dtype)
    if dims == 1:
        grid = t[:, None].reshape(n, *d.event_shape)
    else:
        grid = torch.cartesian_prod(t, t).reshape(n * n, *d.event_shape)
    grid = grid.reshape(-1, *[1] * len(d.batch_shape), *d.event_shape)
    grid = grid.expand(-1, *d.batch_shape, *d.event_shape).to(_dtype_of(d))
    with torch.no_grad():
        p = d.log_prob(grid).double().exp().reshape(*[n] * dims, *d.batch_shape)
    for _ in range(dims):
        p = torch.trapezoid(p, t, dim=0)
    err = (p - 1).abs().max().item()
    assert err < atol, f"the density integrates to {p.flatten().tolist()}, not 1 (atol {atol})"


def _dtype_of(d: Distribution) -> torch.dtype:
    with torch.no_grad():
        return d.sample().dtype


def check_goodness_of_fit(
    d: Distribution, n: int = 100_000, bins: int = 16, rate: float = TEST_FAILURE_RATE
):
    r"""Checks that samples and ``log_prob`` describe the same distribution (1-D or 2-D).

    Samples are binned on a grid spanning their 0.5% to 99.5% quantiles; each bin's
    probability is the integral of ``exp(log_prob)`` by a 10-point midpoint rule per axis;
    Pearson's :math:`\chi^2` test (truncated to the bins with at least 20 expected samples)
    compares the two. Under agreement its p-value is uniform, so the check fails by chance
    with probability ``rate``. The first batch element is tested.

    (Pyro's nearest-neighbour density test is not used: in 2-D its p-values are far from
    uniform even for a Gaussian at a few thousand samples.)
    """
    dims = d.event_shape.numel()
    assert dims in (1, 2), f"check_goodness_of_fit bins 1-D or 2-D events, got {dims}"
    with torch.no_grad():
        x = d.sample(Size((n,))).reshape(n, -1, dims)[:, 0].double()
    lo, hi = torch.quantile(x, 0.005, dim=0), torch.quantile(x, 0.995, dim=0)
    m = 10
    edges = [torch.linspace(lo[i].item(), hi[i].item(), bins + 1) for i in range(dims)]
    mids = [(e[:-1, None] + (e[1:] - e[:-1])[:, None] * (torch.arange(m) + 0.5) / m).flatten()
            for e in edges]
    cell = math.prod(((e[1] - e[0]) / m).item() for e in edges)
    grid = torch.cartesian_prod(*mids) if dims == 2 else mids[0][:, None]
    batch = d.batch_shape
    grid = grid.reshape(-1, *[1] * len(batch), *d.event_shape).expand(-1, *batch, *d.event_shape)
    with torch.no_grad():
        dens = d.log_prob(grid.to(_dtype_of(d))).reshape(grid.shape[0], -1)[:, 0].double().exp()
    probs = (dens * cell).reshape(*[bins, m] * dims)
    probs = probs.sum(dim=(1, 3)) if dims == 2 else probs.sum(dim=1)
    idx = [((x[:, i] - lo[i]) / (hi[i] - lo[i]) * bins).floor().long() for i in range(dims)]
    inside = torch.stack([(j >= 0) & (j < bins) for j in idx]).all(0)
    flat = idx[0][inside] * bins + idx[1][inside] if dims == 2 else idx[0][inside]
    counts = torch.bincount(flat, minlength=bins**dims).double()
    keep = probs.flatten() * n >= 20
    gof = multinomial_goodness_of_fit(probs.flatten()[keep], counts[keep], total_count=n)
    assert gof > rate, f"samples disagree with log_prob: chi-square p-value {gof:.3g}"


def check_gradients(model: nn.Module, x: Tensor, c: Tensor | None = None):
    r"""Checks that the gradient of the mean log-density reaches every parameter, finite."""
    model.zero_grad()
    loss = -_score(_call(model, c), x).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"the gradient of {name} is exactly zero"


def check_train_eval(model: nn.Module, x: Tensor, c: Tensor | None = None):
    r"""Checks that ``log_prob`` is the same in train and eval modes."""
    training = model.training
    with torch.no_grad():
        model.train()
        a = _seeded_log_prob(model, c, x)
        model.eval()
        b = _seeded_log_prob(model, c, x)
    model.train(training)
    assert torch.allclose(a, b, atol=1e3 * _tol(x)), "log_prob differs between train and eval"


def check_state_dict(
    model: nn.Module, factory: Callable[[], nn.Module], x: Tensor, c: Tensor | None = None
):
    r"""Checks that a ``state_dict`` saved with :func:`torch.save` and loaded with
    ``weights_only=True`` into a fresh model gives the same ``log_prob``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = factory().to(x.dtype)
    fresh.load_state_dict(state)
    with torch.no_grad():
        a, b = _seeded_log_prob(model, c, x), _seeded_log_prob(fresh, c, x)
    assert torch.equal(a, b), f"log_prob differs after a state_dict round trip by {(a - b).abs().max()}"


def check_pyro(model: nn.Module, c: Tensor | None = None, plate: int = 4):
    r"""Checks that ``model(c)`` works as a Pyro sample site, under a plate and as an
    observation, and that its ``log_prob`` is what Pyro's trace scores."""
    d = _call(model, c)

    def program(obs: Tensor | None = None):
        with pyro.plate("data", plate, dim=-1 - len(d.batch_shape)):
            return pyro.sample("x", d, obs=obs)

    with pyro.poutine.trace() as tr:
        x = program()
    assert x.shape == (plate, *d.batch_shape, *d.event_shape), f"plate sample {tuple(x.shape)}"
    if log_prob_kind(d) == "none":
        return
    if log_prob_kind(d) == "unnormalized":
        # No normalised density for Pyro to score: the unnormalised one has its shape.
        assert _score(d, x.detach()).shape == (plate, *d.batch_shape)
        return
    trace = tr.trace
    trace.compute_log_prob()
    site = trace.nodes["x"]
    assert site["log_prob"].shape == (plate, *d.batch_shape)
    if log_prob_kind(d) == "exact":  # estimates and bounds are random: compare exact ones
        expected = d.log_prob(x.detach().clone())
        assert torch.allclose(site["log_prob"], expected, atol=1e3 * _tol(x))
    cond = pyro.poutine.trace(pyro.condition(program, data={"x": x.detach()})).get_trace()
    total = cond.log_prob_sum()
    assert torch.isfinite(total), "observed log_prob_sum is not finite"


def check_bad_input(model: nn.Module, c: Tensor | None = None):
    r"""Checks that bad input raises a :class:`ValueError`: a wrong event shape, NaN or
    infinite values, and a context of the wrong size."""
    d = _call(model, c)
    if log_prob_kind(d) == "none":
        return
    x = d.sample()
    wrong = torch.zeros(*x.shape[:-1], x.shape[-1] + 1, dtype=x.dtype)
    for bad, what in [
        (wrong, "a wrong event shape"),
        (torch.full_like(x, math.nan), "NaN"),
        (torch.full_like(x, math.inf), "inf"),
    ]:
        try:
            _score(d, bad)
        except ValueError:
            continue
        raise AssertionError(f"log_prob accepted {what} without a ValueError")
    context = getattr(model, "context", 0)
    if context:
        try:
            model(torch.zeros(context + 1, dtype=x.dtype))
        except ValueError:
            pass
        else:
            raise AssertionError("a context of the wrong size was accepted")
    elif context == 0:
        try:
            model(torch.zeros(3, dtype=x.dtype))
        except ValueError:
            pass
        else:
            raise AssertionError("an unconditional model accepted a context")
