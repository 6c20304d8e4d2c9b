"""Estimation: maximise the simulated log-likelihood, then compute the Hessian and the
covariance of the estimates.

Optimisers: ``"lbfgs"`` (optax's L-BFGS with a zoom line search, the default) and
``"trust-exact"`` (scipy's exact-Hessian trust region, fed the jitted gradient and Hessian:
fewer iterations, each costing one Hessian).
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from ._data import Panel
from ._hessian import HESSIANS, SymmetricHessian, symmetrize
from ._inference import COVARIANCES, check_clusters, covariance
from ._problem import Problem, objective
from ._results import Results, Status

__all__ = ["estimate", "EstimationError", "OPTIMIZERS"]

OPTIMIZERS = ("lbfgs", "trust-exact")


class EstimationError(RuntimeError):
    """Raised by ``estimate(..., throw=True)`` when the estimation did not converge;
    ``results`` holds everything that was computed."""

    def __init__(self, message: str, results: Results):
        super().__init__(message)
        self.results = results


def _progress_to_stderr(iteration: int, llf: float, gradient_norm: float) -> None:
    sys.stderr.write(f"iteration {iteration:5d}   LL {llf:.6f}   max|grad| {gradient_norm:.3e}\n")


def _relative_gradient(grad, theta, llf) -> float:
    """``max_p |g_p| max(|theta_p|, 1) / max(|LL|, 1)``: scale-free convergence measure."""
    return float(np.max(np.abs(grad) * np.maximum(np.abs(theta), 1.0)) / max(abs(llf), 1.0))


_SOLVER = optax.lbfgs()


@functools.partial(jax.jit, static_argnames=("gradient", "chunk_size"))
def _lbfgs_step(space, data, draws, theta, state, gradient, chunk_size):
    """One L-BFGS iteration on ``-LL / N`` (the scale of the objective does not grow with the
    sample); returns the new point, the state, and ``-LL / N`` and its gradient at ``theta``."""
    n = draws.shape[0]
    value_fn = lambda t: -objective(space, t, data, draws, gradient, chunk_size) / n
    value, grad = optax.value_and_grad_from_state(value_fn)(theta, state=state)
    updates, state = _SOLVER.update(grad, state, theta, value=value, grad=grad, value_fn=value_fn)
    return optax.apply_updates(theta, updates), state, value, grad


def _lbfgs(problem: Problem, max_iter, gtol, report, every):
    n = problem.panel.n_individuals
    step = functools.partial(_lbfgs_step, problem.space, problem.data, problem.draws,
                             gradient=problem.gradient, chunk_size=problem.chunk_size)
    theta = last_finite = problem.theta0
    state = _SOLVER.init(theta)
    history, status, stall = [], Status.MAX_ITERATIONS, 0
    for iteration in range(1, max_iter + 1):
        new_theta, state, value, grad = step(theta, state)
        llf, grad = -float(value) * n, -np.asarray(grad) * n  # LL and its gradient at theta
        history.append(llf)
        if report and (iteration % every == 0 or iteration == 1):
            report(iteration, llf, float(np.max(np.abs(grad))))
        if not (np.isfinite(llf) and np.all(np.isfinite(grad))):
            status, theta = Status.NON_FINITE, last_finite  # back to the last finite point
            break
        last_finite = theta
        if _relative_gradient(grad, np.asarray(theta), llf) <= gtol:
            status = Status.CONVERGED
            break
        stall = stall + 1 if len(history) > 1 and history[-1] <= history[-2] else 0
        if stall >= 5:
            status = Status.STALLED
            break
        theta = new_theta
    return theta, status, history, iteration


class _HessianFailed(Exception):
    """The trust region's Hessian at ``theta`` is not finite or not symmetric."""

    def __init__(self, theta):
        super().__init__()
        self.theta = theta


def _trust_exact(problem: Problem, max_iter, gtol, report, every, hessian_method):
    n = problem.panel.n_individuals
    history, evaluated, completed = [], {}, []  # evaluated: theta bytes -> (LL, gradient)

    def fun(theta):
        llf, grad = problem.loglik_and_grad(jnp.asarray(theta))
        llf, grad = float(llf), np.asarray(grad)
        evaluated.clear()
        evaluated[theta.tobytes()] = (llf, grad)
        history.append(llf)
        if report and (len(history) % every == 0 or len(history) == 1):
            report(len(history), llf, float(np.max(np.abs(grad))))
        return -llf / n, -grad / n

    def hess(theta):
        try:
            matrix = symmetrize(problem.hessian(jnp.asarray(theta), hessian_method), hessian_method)
        except FloatingPointError as error:  # non-finite or asymmetric: stop, keep the point
            raise _HessianFailed(theta) from error
        return -matrix.matrix / n

    def converged(intermediate_result):
        completed.append(None)  # one per iteration
        theta = intermediate_result.x
        if theta.tobytes() not in evaluated:
            fun(theta)
        llf, grad = evaluated[theta.tobytes()]
        if _relative_gradient(grad, theta, llf) <= gtol:
            raise StopIteration

    try:
        out = optimize.minimize(fun, np.asarray(problem.theta0), jac=True, hess=hess,
                                method="trust-exact", callback=converged,
                                options={"maxiter": max_iter, "gtol": 0.0})
        x, iterations, failed = out.x, int(out.nit), False
    except _HessianFailed as stop:
        x, iterations, failed = stop.theta, len(completed), True
    theta = jnp.asarray(x, dtype=problem.dtype)
    llf, grad = problem.loglik_and_grad(theta)
    if not (np.isfinite(float(llf)) and np.all(np.isfinite(np.asarray(grad)))):
        status = Status.NON_FINITE
    elif failed:
        status = Status.HESSIAN_FAILED
    elif _relative_gradient(np.asarray(grad), x, float(llf)) <= gtol:
        status = Status.CONVERGED
    elif iterations >= max_iter:
        status = Status.MAX_ITERATIONS
    else:
        status = Status.STALLED
    return theta, status, history, iterations


def estimate(model, panel: Panel, draws=None, *, fixed: Iterable[str] = (),
             optimizer: str = "lbfgs", max_iter: int = 2000, gtol: float = 1e-6,
             gradient: str = "analytic", hessian: str = "structured", cov_type: str = "robust",
             clusters=None, compare_hessians: bool = False, chunk_size: int | str | None = "auto",
             dtype=jnp.float64,
             progress: bool | Callable[[int, float, float], None] = False,
             progress_every: int = 25, throw: bool = False) -> Results:
    """Estimate ``model`` on ``panel`` by simulated maximum likelihood.

    Parameters
    ----------
    model: an :class:`ICLV` whose parameter values are the starting values.
    panel: a :class:`Panel`.
    draws: a draw generator (default ``Halton(100, seed=0)``) or an ``(N, R, D)`` array of
        standard normals.
    fixed: names of parameters held at their starting values (beyond the normalisations).
    optimizer: ``"lbfgs"`` (default) or ``"trust-exact"`` (Newton trust region with the
        exact Hessian).
    max_iter: iteration limit.
    gtol: convergence when the relative gradient
        ``max_p |g_p| max(|theta_p|, 1) / max(|LL|, 1)`` falls to ``gtol`` or below.
    gradient: ``"analytic"`` (hand-derived, default), ``"autodiff"`` or ``"finite-difference"``;
        used by the optimiser, the Hessian and the scores.
    hessian: ``"structured"`` (default: exact, assembled from per-draw scores and the sparse
        per-draw second derivatives), ``"jacfwd"`` (exact, forward mode over the gradient),
        ``"fd-forward"`` or ``"fd-central"`` (finite differences of the gradient).
    cov_type: ``"robust"`` (sandwich, the default, as in Apollo and Biogeme), ``"classical"``,
        ``"bhhh"`` or ``"cluster"`` (then ``clusters`` gives one label per individual, in the
        order of ``panel.ids``, or a mapping / Series from id to cluster).
    compare_hessians: also compute the Hessian by every method and attach the comparison
        (``result.hessian_comparison``).
    chunk_size: evaluate the likelihood over blocks of this many individuals (bounded memory,
        better cache use); ``"auto"`` (default): 40 on CPU, all at once on an accelerator.
    dtype: ``jnp.float64`` (default) or ``jnp.float32``.
    progress: ``True`` writes a line to stderr every ``progress_every`` iterations; a callable
        ``f(iteration, llf, max_abs_gradient)`` is called instead.
    throw: raise an :class:`EstimationError` (which carries the results) unless the status is
        ``CONVERGED``. By default (``False``) every outcome after the first evaluation comes
        back as a :class:`Results` with its status and message: an optimiser that stopped
        early, a non-finite log-likelihood on the way (the estimates are then the last finite
        point), a Hessian that is not finite or not symmetric (NaN standard errors).

    Errors before any work is done: bad arguments, a model that does not fit the data, every
    parameter fixed, and a log-likelihood that is not finite at the starting values (the message
    says where) raise at once.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if cov_type not in COVARIANCES:
        raise ValueError(f"cov_type must be one of {COVARIANCES}, got {cov_type!r}")
    if cov_type == "cluster":
        if clusters is not None and not isinstance(clusters, np.ndarray | list | tuple):
            clusters = np.array([clusters[i] for i in panel.ids])
        clusters = check_clusters(clusters, panel.n_individuals)
    started = time.perf_counter()
    problem = Problem(model, panel, draws, fixed, chunk_size, dtype, gradient)
    if not problem.space.names:
        raise ValueError("every parameter is fixed: there is nothing to estimate (to evaluate "
                         "the log-likelihood at these values, use Problem(...).loglik)")
    report = _progress_to_stderr if progress is True else (progress or None)
    llf_start = float(problem.loglik(problem.theta0))
    if not np.isfinite(llf_start):
        raise FloatingPointError(
            f"the log-likelihood at the starting values is {llf_start}: "
            f"{problem.explain_nonfinite(problem.theta0) or 'its sum over individuals overflows'}"
            f"; choose other starting values or check the data")
    if optimizer == "lbfgs":
        theta, status, history, iterations = _lbfgs(problem, max_iter, gtol, report, progress_every)
    else:
        theta, status, history, iterations = _trust_exact(problem, max_iter, gtol, report,
                                                          progress_every, hessian)
    llf, grad = problem.loglik_and_grad(theta)
    llf, grad = float(llf), np.asarray(grad)
    hess, scores, cov, cov_message, status = _inference(problem, theta, hessian, cov_type,
                                                        clusters, status)
    message = (f"{status.value}; relative gradient {_relative_gradient(grad, np.asarray(theta), llf):.2e}"
               f" (tolerance {gtol:.0e})")
    if cov_message:
        warnings.warn(cov_message, RuntimeWarning, stacklevel=2)
    fitted = problem.space.unflatten(theta)
    natural_names, natural_values, natural_jacobian = problem.natural(theta)
    comparison = None
    if compare_hessians:
        try:
            comparison = problem.compare_hessians(theta)
        except FloatingPointError as error:
            cov_message = "; ".join(m for m in (cov_message, f"Hessian comparison: {error}") if m)
    results = Results(
        model=fitted, names=problem.space.names, estimates=np.asarray(theta), cov=cov,
        cov_type=cov_type, cov_message=cov_message, hessian=hess.matrix,
        hessian_method=hessian, hessian_asymmetry=hess.asymmetry, scores=scores,
        fixed={k: v for k, v in problem.space.values(fitted).items() if k in problem.space.fixed_names},
        llf=llf, llf_start=llf_start, n_individuals=panel.n_individuals,
        n_observations=panel.n_observations, n_draws=int(problem.draws.shape[1]),
        iterations=iterations, seconds=time.perf_counter() - started, status=status,
        message=message, gradient_norm=float(np.max(np.abs(grad))), history=np.asarray(history),
        optimizer=optimizer, gradient=gradient, natural_names=natural_names,
        natural_estimates=natural_values, natural_jacobian=natural_jacobian,
        hessian_comparison=comparison,
        missing_answers={k: int(v) for k, v in panel.missing_counts.items()
                         if v and any(k in block.indicators for block in fitted.measurement)})
    if throw and status is not Status.CONVERGED:
        raise EstimationError(f"{message}; {cov_message}" if cov_message else message, results)
    return results


def _inference(problem: Problem, theta, method: str, cov_type: str, clusters, status: Status):
    """``(Hessian, scores, covariance, message, status)`` at ``theta``; a Hessian that is not
    finite or not symmetric gives NaN standard errors and ``Status.HESSIAN_FAILED`` (after a
    converged optimiser; another status stays), never an exception that would lose the
    estimates."""
    scores = np.asarray(problem.scores(theta))
    raw = np.asarray(problem.hessian(theta, method))  # its dtype sets the asymmetry tolerance
    try:
        hess = symmetrize(raw, method)
    except FloatingPointError as error:
        hess = SymmetricHessian(raw.astype(np.float64), method, float("nan"))
        nan = np.full(raw.shape, np.nan)
        failed = Status.HESSIAN_FAILED if status is Status.CONVERGED else status
        return hess, scores, nan, f"{error}; no standard errors", failed
    cov, message = covariance(hess.matrix, scores, cov_type, problem.space.names, clusters)
    return hess, scores, cov, message, status
