"""Estimation: maximise the simulated log-likelihood with L-BFGS (optax), then compute the
Hessian and the covariance of the estimates."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._data import Panel
from ._inference import covariance
from ._problem import Problem
from ._results import Results, Status

__all__ = ["estimate"]


def _progress_to_stderr(iteration: int, llf: float, gradient_norm: float) -> None:
    sys.stderr.write(f"iteration {iteration:5d}   LL {llf:.6f}   max|grad| {gradient_norm:.3e}\n")


def estimate(model, panel: Panel, draws=None, *, fixed: Iterable[str] = (), max_iter: int = 2000,
             gtol: float = 1e-6, cov_type: str = "robust", chunk_size: int | None = None,
             dtype=jnp.float64, gradient: str = "analytic",
             progress: bool | Callable[[int, float, float], None] = False,
             progress_every: int = 25) -> Results:
    """Estimate ``model`` on ``panel`` by simulated maximum likelihood.

    Parameters
    ----------
    model: an :class:`ICLV` whose parameter values are the starting values.
    panel: a :class:`Panel`.
    draws: a draw generator (default ``Halton(100, seed=0)``) or an ``(N, R, D)`` array of
        standard normals.
    fixed: names of parameters held at their starting values (beyond the normalisations).
    max_iter: L-BFGS iteration limit.
    gtol: convergence when the relative gradient
        ``max_p |g_p| max(|theta_p|, 1) / max(|LL|, 1)`` falls to ``gtol`` or below.
    cov_type: ``"robust"`` (sandwich, the default, as in Apollo and Biogeme), ``"classical"``
        or ``"bhhh"``.
    chunk_size: evaluate the likelihood over chunks of this many individuals.
    dtype: ``jnp.float64`` (default) or ``jnp.float32``.
    gradient: ``"analytic"`` (hand-derived, default), ``"autodiff"`` or ``"finite-difference"``;
        used by the optimiser, the Hessian and the scores.
    progress: ``True`` writes a line to stderr every ``progress_every`` iterations; a callable
        ``f(iteration, llf, max_abs_gradient)`` is called instead.
    """
    started = time.perf_counter()
    problem = Problem(model, panel, draws, fixed, chunk_size, dtype, gradient)
    report = _progress_to_stderr if progress is True else (progress or None)
    n = panel.n_individuals

    # minimise -LL / N: the scale of the objective does not grow with the sample
    def objective(theta):
        return -problem.objective(theta, problem.data, problem.draws) / n

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    @jax.jit
    def step(theta, state):
        value, grad = value_and_grad(theta, state=state)
        updates, state = solver.update(grad, state, theta, value=value, grad=grad,
                                       value_fn=objective)
        return optax.apply_updates(theta, updates), state, value, grad

    theta = problem.theta0
    state = solver.init(theta)
    history, status, stall = [], Status.MAX_ITERATIONS, 0
    llf_start = float(problem.loglik(theta))
    if not np.isfinite(llf_start):
        raise FloatingPointError(
            f"the log-likelihood at the starting values is {llf_start}: some individual's data "
            f"have zero probability under the starting values; choose other starting values")
    iterations = 0
    for iterations in range(1, max_iter + 1):
        new_theta, state, value, grad = step(theta, state)
        llf = -float(value) * n
        history.append(llf)
        gradient = np.asarray(grad) * n  # gradient of -LL at theta
        relative = np.max(np.abs(gradient) * np.maximum(np.abs(np.asarray(theta)), 1.0)) / max(abs(llf), 1.0)
        if report and (iterations % progress_every == 0 or iterations == 1):
            report(iterations, llf, float(np.max(np.abs(gradient))))
        if not (np.isfinite(llf) and np.all(np.isfinite(gradient))):
            status = Status.NON_FINITE
            break
        if relative <= gtol:
            status = Status.CONVERGED
            break
        stall = stall + 1 if len(history) > 1 and history[-1] <= history[-2] else 0
        if stall >= 5:
            status = Status.STALLED
            break
        theta = new_theta

    llf, grad = problem.loglik_and_grad(theta)
    llf, grad = float(llf), np.asarray(grad)
    message = f"{status.value}; relative gradient {relative:.2e} (tolerance {gtol:.0e})"
    hess = np.asarray(problem.hessian(theta))
    scores = np.asarray(problem.scores(theta))
    cov, cov_message = covariance(hess, scores, cov_type, problem.space.names)
    if cov_message:
        warnings.warn(cov_message, RuntimeWarning, stacklevel=2)
    fitted = problem.space.unflatten(theta)
    return Results(
        model=fitted, names=problem.space.names, estimates=np.asarray(theta), cov=cov,
        cov_type=cov_type, cov_message=cov_message, hessian=hess,
        fixed={k: v for k, v in problem.space.values(fitted).items() if k in problem.space.fixed_names},
        llf=llf, llf_start=llf_start, n_individuals=n, n_observations=panel.n_observations,
        n_draws=int(problem.draws.shape[1]), iterations=iterations,
        seconds=time.perf_counter() - started, status=status, message=message,
        gradient_norm=float(np.max(np.abs(grad))), history=np.asarray(history),
        optimizer=f"L-BFGS (optax, zoom line search), {gradient} gradient")
