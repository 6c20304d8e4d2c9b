"""A model, a panel and fixed draws as functions of the free-parameter vector.

Estimation, standard errors and benchmarks all call these functions; one switch,
``gradient``, selects the gradient everywhere:

- ``"analytic"``: the hand-derived gradient (:func:`loglik_and_grad`), registered with
  ``custom_vjp`` on the log-likelihood (the default);
- ``"autodiff"``: ``jax.grad`` of the same log-likelihood without the custom rule;
- ``"finite-difference"``: central differences of the log-likelihood, step
  ``h_p = eps^(1/3) max(|theta_p|, 1)`` (for reference only: error ``O(h^2)`` plus rounding
  ``O(eps |LL| / h)``).

The jitted functions live at module level and take the :class:`ParameterSpace`, the data and
the draws as pytree arguments, so problems of the same shapes share their compiled code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._data import Panel
from ._draws import default_draws, problem_draws
from ._gradients import loglik_and_grad_per_individual, simulated_loglik_analytic
from ._kernels import check_dtype
from ._hessian import HESSIANS, compare_hessians, finite_difference_steps, hessian
from ._individuals import (Blocks, chunk_size_for_directions, for_each_individual,
                           gather_individuals, individual_mesh, per_draw_width, place_individuals,
                           resolve_chunk_size)
from ._likelihood import SUMS, individual_loglik, simulated_loglik
from ._model import PULLBACKS
from ._parameters import ParameterSpace
from ._structured_hessian import structured_hessian

__all__ = ["Problem", "GRADIENTS", "central_difference_gradient", "objective", "check_gradient"]

GRADIENTS = ("analytic", "autodiff", "finite-difference")


def central_difference_gradient(f, theta, batch_size: int = 32):
    """Central differences of the scalar ``f`` at ``theta``, all ``2P`` evaluations batched."""
    step = finite_difference_steps(theta, 1.0 / 3.0)
    value = lambda shift: f(theta + shift) - f(theta - shift)
    return jax.lax.map(value, jnp.diag(step), batch_size=batch_size) / (2.0 * step)


def _with_gradient(value_and_grad):
    """A scalar function of ``theta`` whose ``jax.grad`` is the given gradient."""
    @jax.custom_vjp
    def f(theta):
        return value_and_grad(theta)[0]

    f.defvjp(value_and_grad, lambda grad, cotangent: (cotangent * grad,))
    return f


def objective(space: ParameterSpace, theta, data, draws, gradient: str, chunk_size=None,
              pullbacks: str = "hand-derived"):
    """The simulated log-likelihood at ``theta``, whose ``jax.grad`` is the selected gradient
    (``pullbacks`` selects the components' pullbacks of the analytic one)."""
    if gradient == "analytic":
        return simulated_loglik_analytic(space.unflatten(theta), data, draws, chunk_size,
                                         pullbacks)
    plain = lambda t: simulated_loglik(space.unflatten(t), data, draws, chunk_size)
    if gradient == "autodiff":
        return plain(theta)
    if gradient == "finite-difference":
        return _with_gradient(lambda t: (plain(t), central_difference_gradient(plain, t)))(theta)
    raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")


_static = ("gradient", "blocks", "pullbacks")


@functools.partial(jax.jit, static_argnames=("blocks",))
def _loglik(space, theta, data, draws, blocks):
    return simulated_loglik(space.unflatten(theta), data, draws, blocks)


@functools.partial(jax.jit, static_argnames=_static)
def _loglik_and_grad(space, theta, data, draws, gradient, blocks, pullbacks):
    return jax.value_and_grad(objective, argnums=1)(space, theta, data, draws, gradient,
                                                    blocks, pullbacks)


@functools.partial(jax.jit, static_argnames=_static)
def _scores(space, theta, data, draws, gradient, blocks, pullbacks):
    """``w_i s_i`` ``(N, P)``: each individual's weighted score (they sum to the gradient)."""
    if gradient == "analytic":
        _, grads = loglik_and_grad_per_individual(space.unflatten(theta), data, draws, blocks,
                                                  pullbacks)
        scores = jax.vmap(space.flatten_gradient)(grads)
    else:
        individual = lambda t, x, eta: individual_loglik(space.unflatten(t), x, eta)
        scores = for_each_individual(jax.grad(individual), theta, data, draws, blocks)
    return data.weights[:, None] * scores


def _hessian_of(space, theta, data, draws, gradient, blocks, pullbacks, method, batch_size):
    if method == "structured":  # exact, from the components' pullbacks whatever the gradient
        return structured_hessian(space, theta, data, draws, blocks, batch_size,
                                  pullbacks)[2]
    gradient_of = jax.grad(objective, argnums=1)
    block = chunk_size_for_directions(blocks, min(batch_size, theta.shape[0]))
    return hessian(lambda t: gradient_of(space, t, data, draws, gradient, block, pullbacks),
                   theta, method, batch_size)


_hessian = jax.jit(_hessian_of, static_argnames=(*_static, "method", "batch_size"))


@functools.partial(jax.jit, static_argnames=(*_static, "method", "batch_size"))
def _second_order(space, theta, data, draws, gradient, blocks, pullbacks, method,
                  batch_size):
    """``(LL, gradient, scores (N, P), Hessian)`` at ``theta``, one compiled program: with the
    analytic gradient, the structured Hessian's per-draw scores give the rest on the way."""
    if method == "structured" and gradient == "analytic":
        loglik, gradients, hess = structured_hessian(space, theta, data, draws, blocks,
                                                     batch_size, pullbacks)
        scores = data.weights[:, None] * gradients
        weights = data.weights.astype(SUMS)
        return (jnp.sum(weights * loglik),
                jnp.sum(scores.astype(SUMS), axis=0).astype(theta.dtype), scores, hess)
    static = (gradient, blocks, pullbacks)
    llf, grad = jax.value_and_grad(objective, argnums=1)(space, theta, data, draws, *static)
    return (llf, grad, _scores(space, theta, data, draws, *static),
            _hessian_of(space, theta, data, draws, *static, method, batch_size))


@jax.jit
def _natural(space, theta):
    stacked = lambda t: jnp.stack(list(space.unflatten(t).natural_values().values()))
    return stacked(theta), jax.jacfwd(stacked)(theta)


@functools.partial(jax.jit, static_argnames=("blocks",))
def _diagnostics(space, theta, data, draws, blocks):
    return for_each_individual(lambda model, x, eta: model.draw_diagnostics(x, eta),
                               space.unflatten(theta), data, draws, blocks)


def _first_bad(values: np.ndarray, mask: np.ndarray | None = None):
    bad = ~np.isfinite(values)
    if mask is not None:
        bad &= mask
    return tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else None


class Problem:
    """``model`` on ``panel`` with fixed ``draws``, as functions of the free parameters.

    ``loglik(theta)``, ``loglik_and_grad(theta)``, ``scores(theta)`` (per-individual gradients
    times the sampling weights, ``(N, P)``) and ``hessian(theta, method)`` (of the selected
    gradient) are jitted.
    ``chunk_size``: individuals per block on each device (``None``: all at once; ``"auto"``:
    as many as fit the working-set budget, :func:`jaxiclv._individuals.auto_chunk_size`).
    ``devices``: the individuals are sharded over these (:mod:`jaxiclv._individuals`):
    ``None`` (default), every device JAX sees (every process's under ``jax.distributed``:
    every process passes the whole panel and holds its own devices' individuals); an integer
    ``k``, the first ``k`` of this process's devices (``1`` switches sharding off); or a list
    of devices. ``data`` and ``draws`` are then the
    sharded arrays, padded to a multiple of the number of devices with individuals of
    sampling weight 0; ``scores`` and every per-individual result have the panel's
    ``n_individuals`` rows. ``pullbacks``: ``"hand-derived"`` (default: the built-in
    kernels' own, ``jax.vjp`` for user-written components) or ``"autodiff"`` (``jax.vjp`` for
    every component), for the analytic gradient and the structured Hessian.
    ``draws_on_the_fly``: a built-in generator's draws are made inside the compiled functions
    for the block of individuals being evaluated (:class:`~jaxiclv._draws.OnTheFly`: memory
    holds one block's draws; the values are those of the materialised array bit for bit)
    with ``True``; materialised as an ``(N, R, D)`` array with ``False``; ``"auto"``
    (default) makes them on the fly when the array would hold more than
    :data:`~jaxiclv._draws.ON_THE_FLY_ABOVE` (``2^27``, 1 GiB in float64) values.
    ``draws`` is then the :class:`~jaxiclv._draws.OnTheFly` draws or the array.
    ``dtype``: the parameters', data's and draws' dtype, float64 (default) or float32; the
    sums over draws and individuals are float64 whatever it is
    (:data:`~jaxiclv._likelihood.SUMS`): the log-likelihood comes back in float64, the
    gradient and Hessian in ``dtype``.
    """

    def __init__(self, model, panel: Panel, draws=None, fixed: Iterable[str] = (),
                 chunk_size: int | str | None = "auto", dtype=jnp.float64,
                 gradient: str = "analytic", pullbacks: str = "hand-derived", devices=None,
                 draws_on_the_fly: bool | str = "auto"):
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if pullbacks not in PULLBACKS:
            raise ValueError(f"pullbacks must be one of {PULLBACKS}, got {pullbacks!r}")
        check_dtype(dtype)
        panel = model.aligned(panel)  # checked, alternatives in the model's order
        self.panel = panel
        self.n_individuals = panel.n_individuals
        self.gradient = gradient
        self.pullbacks = pullbacks
        self.dtype = dtype
        self.space = ParameterSpace.from_model(model, fixed)
        mesh = individual_mesh(devices)
        self.draws_on_the_fly = draws_on_the_fly
        draws = problem_draws(default_draws(draws), panel.n_individuals, model.n_draw_dims,
                              model.draw_dimensions, draws_on_the_fly, dtype)
        data = jax.tree.map(lambda a: np.asarray(a, dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                            else np.asarray(a), panel.arrays)
        per_device = -(-panel.n_individuals // mesh.size)
        size = resolve_chunk_size(chunk_size, per_device, draws.shape[1],
                                  per_draw_width(data, model.n_draw_dims))
        self.devices = tuple(mesh.devices.flat)
        self.blocks = Blocks(size, mesh if mesh.size > 1 else None)  # one device: no mesh
        self.data, self.draws = place_individuals(data, draws, mesh)

    @property
    def chunk_size(self) -> int | None:
        """Individuals per block on each device (``None``: all of them at once)."""
        return self.blocks.size

    @property
    def n_draws(self) -> int:
        return int(self.draws.shape[1])

    @property
    def theta0(self) -> jax.Array:
        return self.space.flatten(self.space.template).astype(self.dtype)

    def individual_rows(self, rows):
        """The panel's individuals' rows of per-individual results (leading axis the placed
        individuals), without the padding, gathered from every process under
        ``jax.distributed``."""
        return gather_individuals(rows, self.n_individuals)

    def objective(self, theta):
        """The traceable log-likelihood whose ``jax.grad`` is the selected gradient."""
        return objective(self.space, theta, self.data, self.draws, self.gradient, self.blocks,
                         self.pullbacks)

    def loglik(self, theta):
        return _loglik(self.space, theta, self.data, self.draws, self.blocks)

    def loglik_and_grad(self, theta):
        return _loglik_and_grad(self.space, theta, self.data, self.draws, self.gradient,
                                self.blocks, self.pullbacks)

    def scores(self, theta):
        return self.individual_rows(_scores(self.space, theta, self.data, self.draws,
                                            self.gradient, self.blocks, self.pullbacks))

    def hessian(self, theta, method: str = "structured", batch_size: int = 32):
        """The unsymmetrised Hessian by ``method``: ``"structured"`` (exact, from per-draw
        scores and compressed directions: :mod:`jaxiclv._structured_hessian`; it uses the
        hand-derived pullbacks whatever ``gradient`` is), or ``"jacfwd"``, ``"fd-forward"``,
        ``"fd-central"`` of the selected gradient (:func:`jaxiclv.hessian`). ``batch_size``
        directions (or perturbed points) go through at a time, over blocks of
        ``chunk_size // batch_size`` individuals (fewer directions in flight, larger blocks).
        Pass it through :func:`jaxiclv.symmetrize` before use."""
        return _hessian(self.space, theta, self.data, self.draws, self.gradient, self.blocks,
                        self.pullbacks, method, batch_size)

    def second_order(self, theta, method: str = "structured", batch_size: int = 32):
        """``(LL, gradient, scores, Hessian)`` at ``theta`` in one call (one compiled program):
        what the Newton optimiser and the standard errors need; the Hessian as
        :meth:`hessian` gives it."""
        llf, grad, scores, hess = _second_order(self.space, theta, self.data, self.draws,
                                                self.gradient, self.blocks, self.pullbacks,
                                                method, batch_size)
        return llf, grad, self.individual_rows(scores), hess

    def compare_hessians(self, theta, methods=HESSIANS, batch_size: int = 32):
        """A :class:`HessianComparison` of the Hessian methods at ``theta``."""
        blocks = self.space.template.parameter_blocks()
        return compare_hessians(lambda method: self.hessian(theta, method, batch_size),
                                self.space.names, [blocks[n] for n in self.space.names], methods)

    def explain_nonfinite(self, theta) -> str:
        """Where the log-likelihood at ``theta`` stops being finite: the first individual and
        draw at which a latent variable, a utility or a component's log-likelihood is not
        finite, naming the component and its parameter values; ``""`` if all are finite."""
        model = self.space.unflatten(theta)
        lv, terms, utilities = map(np.asarray, self.individual_rows(
            _diagnostics(self.space, theta, self.data, self.draws, self.blocks)))
        ids = [i.item() if isinstance(i, np.generic) else i for i in self.panel.ids]
        where = _first_bad(lv)
        if where is not None:
            n, l, r = where
            return (f"latent variable {model.latent.names[l]!r} is {lv[where]} for individual "
                    f"{ids[n]!r} at draw {r}: {model.describe(model.latent)}")
        if utilities.size:
            tasks = np.asarray(self.panel.arrays.task_mask)[:, :, None, None]
            where = _first_bad(utilities, np.broadcast_to(tasks, utilities.shape))
            if where is not None:
                n, t, j, r = where
                return (f"the utility of alternative {model.choice.alternatives[j]!r} is "
                        f"{utilities[where]} in task {t + 1} of individual {ids[n]!r} at draw "
                        f"{r}: {model.describe(model.choice)}")
        where = _first_bad(terms)
        if where is not None:
            n, c, r = where
            component = model.terms[c]
            reads = (f"indicators {list(component.indicators)}" if c < len(model.measurement)
                     else "choices")
            return (f"the log-likelihood of individual {ids[n]!r}'s {reads} is {terms[where]} "
                    f"at draw {r} (an observed outcome has probability zero): "
                    f"{model.describe(component)}")
        return ""

    def natural(self, theta):
        """``(names, values, Jacobian d values / d theta)`` of the parameters on their natural
        scale (``sigma`` for ``log_sigma``, thresholds for their increments)."""
        names = tuple(self.space.template.natural_values())
        values, jacobian = _natural(self.space, theta)
        return names, np.asarray(values), np.asarray(jacobian)

    def named(self, vector) -> dict[str, float]:
        return dict(zip(self.space.names, np.asarray(vector).tolist()))


def check_gradient(model, panel: Panel, draws=None, theta=None, fixed: Iterable[str] = (),
                   chunk_size: int | str | None = "auto"):
    """The analytic, autodiff and central finite-difference gradients of the simulated
    log-likelihood side by side, one row per free parameter, with the absolute and relative
    (to ``max(|autodiff|, 1)``) differences of the analytic gradient from the other two.
    ``theta`` defaults to the model's own values."""
    problems = {g: Problem(model, panel, draws, fixed, chunk_size, gradient=g) for g in GRADIENTS}
    theta = problems["analytic"].theta0 if theta is None else jnp.asarray(theta)
    grads = {g: np.asarray(p.loglik_and_grad(theta)[1]) for g, p in problems.items()}
    scale = np.maximum(np.abs(grads["autodiff"]), 1.0)
    table = pd.DataFrame(grads, index=list(problems["analytic"].space.names))
    for other in ("autodiff", "finite-difference"):
        difference = np.abs(grads["analytic"] - grads[other])
        table[f"abs err vs {other}"] = difference
        table[f"rel err vs {other}"] = difference / scale
    return table
