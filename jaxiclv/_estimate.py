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
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from ._data import Panel
from ._draws import Halton
from ._hessian import HESSIANS, SymmetricHessian, symmetrize
from ._inference import COVARIANCES, check_clusters, covariance
from ._model import ICLV
from ._parameters import ParameterSpace, fixed_names, set_values
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
             clusters=None, finite_sample: bool = False, compare_hessians: bool = False,
             chunk_size: int | str | None = "auto", dtype=jnp.float64, start=None,
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
    cov_type: the covariance of ``bse``, ``cov_params()`` and the tests: ``"robust"``
        (sandwich, the default, as in Apollo and Biogeme), ``"classical"``, ``"bhhh"`` or
        ``"cluster"``. Every type is computed (``result.covariances``; cluster when
        ``clusters`` are given: one label per individual, in the order of ``panel.ids``, or a
        mapping / Series from id to cluster).
    finite_sample: multiply the sandwiches' middle matrix by ``N / (N - 1)`` (robust) and
        ``G / (G - 1)`` (cluster), as Stata does; default ``False`` (as Biogeme).
    compare_hessians: also compute the Hessian by every method and attach the comparison
        (``result.hessian_comparison``).
    chunk_size: evaluate the likelihood over blocks of this many individuals (bounded memory,
        better cache use); ``"auto"`` (default): 40 on CPU, all at once on an accelerator.
    dtype: ``jnp.float64`` (default) or ``jnp.float32``.
    start: where the optimiser starts: ``None`` (default: the model's values), a mapping of
        parameter names to values (:func:`set_values` names, natural scale included), a
        :class:`Results` (a warm start: its estimates of the parameters this model shares
        with it, by name; the others keep the model's values), or ``"sequential"``: first the
        measurement and structural model alone (a MIMIC model), then the choice model with
        those estimates held, each from the model's values with this call's optimiser
        settings, and the whole model from both (``result.start`` says how each step ended).
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
    if cov_type == "cluster" or clusters is not None:
        if clusters is not None and not isinstance(clusters, np.ndarray | list | tuple):
            clusters = np.array([clusters[i] for i in panel.ids])
        clusters = check_clusters(clusters, panel.n_individuals)
    started = time.perf_counter()
    report = _progress_to_stderr if progress is True else (progress or None)
    fit = functools.partial(_maximise, panel=panel, fixed=fixed, chunk_size=chunk_size,
                            dtype=dtype, gradient=gradient, optimizer=optimizer,
                            max_iter=max_iter, gtol=gtol, report=report, every=progress_every,
                            hessian=hessian)
    model, start_description = _starting_values(model, start, fit, draws)
    problem, theta, status, history, iterations, llf_start = fit(model, draws=draws)
    llf, grad = problem.loglik_and_grad(theta)
    llf, grad = float(llf), np.asarray(grad)
    hess, scores, covariances, cov_messages, status = _inference(
        problem, theta, hessian, clusters, finite_sample, status)
    cov_message = cov_messages[cov_type]
    message = (f"{status.value}; relative gradient {_relative_gradient(grad, np.asarray(theta), llf):.2e}"
               f" (tolerance {gtol:.0e})")
    if status in (Status.MAX_ITERATIONS, Status.STALLED, Status.NON_FINITE):
        warnings.warn(f"the estimation did not converge: {message}", RuntimeWarning,
                      stacklevel=2)
    if cov_message:
        warnings.warn(cov_message, RuntimeWarning, stacklevel=2)
    fitted = problem.space.unflatten(theta)
    natural_names, natural_values, natural_jacobian = problem.natural(theta)
    comparison = None
    if compare_hessians:
        try:
            comparison = problem.compare_hessians(theta)
        except FloatingPointError as error:
            cov_messages = {kind: "; ".join(m for m in (text, f"Hessian comparison: {error}") if m)
                            for kind, text in cov_messages.items()}
    indicators = [k for block in fitted.measurement for k in block.indicators]
    missing = {k: int(v) for k, v in panel.missing_counts.items() if v and k in indicators}
    weights = np.asarray(panel.arrays.weights)
    results = Results(
        model=fitted, names=problem.space.names, estimates=np.asarray(theta),
        covariances=covariances, cov_messages=cov_messages, cov_type=cov_type,
        finite_sample=finite_sample, hessian=hess.matrix,
        hessian_method=hessian, hessian_asymmetry=hess.asymmetry, scores=scores,
        fixed={k: v for k, v in problem.space.values(fitted).items() if k in problem.space.fixed_names},
        llf=llf, llf_start=llf_start,
        n_individuals=panel.n_individuals, n_observations=panel.n_observations,
        n_outcomes=(panel.n_observations if fitted.choice is not None else 0)
        + panel.n_individuals * len(indicators) - sum(missing.values()),
        n_draws=int(problem.draws.shape[1]), draws_description=_describe_draws(draws, problem.draws.shape),
        weighted=bool(np.any(weights != 1.0)),
        iterations=iterations, seconds=time.perf_counter() - started, status=status,
        message=message, gradient_norm=float(np.max(np.abs(grad))), history=np.asarray(history),
        optimizer=optimizer, gradient=gradient, start=start_description,
        natural_names=natural_names,
        natural_estimates=natural_values, natural_jacobian=natural_jacobian,
        hessian_comparison=comparison, missing_answers=missing, problem=problem,
        draws=None if isinstance(draws, np.ndarray | jax.Array) else draws or Halton(100))
    if throw and status is not Status.CONVERGED:
        raise EstimationError(f"{message}; {cov_message}" if cov_message else message, results)
    return results


def _maximise(model, *, panel, draws, fixed, chunk_size, dtype, gradient, optimizer, max_iter,
              gtol, report, every, hessian):
    """``(problem, theta, status, history, iterations, LL at the start)``: the optimiser's
    run from the model's values. A log-likelihood that is not finite at the start raises."""
    problem = Problem(model, panel, draws, fixed, chunk_size, dtype, gradient)
    if not problem.space.names:
        raise ValueError("every parameter is fixed: there is nothing to estimate (to evaluate "
                         "the log-likelihood at these values, use Problem(...).loglik)")
    llf_start = float(problem.loglik(problem.theta0))
    if not np.isfinite(llf_start):
        raise FloatingPointError(
            f"the log-likelihood at the starting values is {llf_start}: "
            f"{problem.explain_nonfinite(problem.theta0) or 'its sum over individuals overflows'}"
            f"; choose other starting values or check the data")
    if optimizer == "lbfgs":
        run = _lbfgs(problem, max_iter, gtol, report, every)
    else:
        run = _trust_exact(problem, max_iter, gtol, report, every, hessian)
    return (problem, *run, llf_start)


def _sequential_start(model, fit, draws):
    """The measurement and structural model on their own (a MIMIC model), then the choice
    model with the latent variables' distribution (and every parameter already estimated)
    held at those estimates: ``(model at both steps' estimates, what happened)``."""
    if model.choice is None or not model.measurement or not model.latent.names:
        raise ValueError("a sequential start needs latent variables, measurement blocks and a "
                         "choice model")
    mimic = ICLV(model.latent, model.measurement, None, model.aliases)
    choice = ICLV(model.latent, (), model.choice, model.aliases)
    mimic_draws = draws
    if isinstance(draws, np.ndarray | jax.Array):  # the latent variables' dimensions come first
        mimic_draws = np.asarray(draws)[:, :, :model.latent.n_draw_dims]
    user_fixed = set(fixed_names(fit.keywords["fixed"]))

    def run(step, step_draws, held):
        names = set(ParameterSpace.from_model(step).names)
        problem, theta, status, _, iterations, _ = fit(
            step, draws=step_draws, fixed=[*held, *(user_fixed & names)])
        estimated = problem.space.unflatten(theta)
        return (ParameterSpace.from_model(estimated).values(estimated),
                f"{iterations} iterations, {status.name.lower()}, "
                f"LL {float(problem.loglik(theta)):.6f}")

    first, first_report = run(mimic, mimic_draws, ())
    held = [k for k in ParameterSpace.from_model(choice).names if k in first]
    second, second_report = run(set_values(choice, {k: first[k] for k in held}), draws, held)
    mine = ParameterSpace.from_model(model).values(model)
    return (set_values(model, {k: v for k, v in {**first, **second}.items() if k in mine}),
            f"sequential: the measurement and structural model ({first_report}), then the "
            f"choice model given them ({second_report})")


def _starting_values(model, start, fit, draws):
    """``(model at the starting values, how they were chosen)``."""
    if start is None:
        return model, "the model's values"
    if isinstance(start, str) and start == "sequential":
        return _sequential_start(model, fit, draws)
    if isinstance(start, Results):
        mine = set(ParameterSpace.from_model(model).names) | set(model.fixed_labels())
        shared = {k: v for k, v in start.params.items() if k in mine}
        if not shared:
            raise ValueError("the warm-start result shares no parameter name with the model")
        return (set_values(model, shared),
                f"warm start: {len(shared)} estimates of an earlier result")
    if isinstance(start, Mapping):
        return set_values(model, dict(start)), f"given values of {len(start)} parameters"
    raise TypeError(f"start must be None, 'sequential', a mapping of names to values or a "
                    f"Results, got {type(start).__name__}")


def _describe_draws(draws, shape) -> str:
    if shape[2] == 0:
        return "none (the model has no random terms)"
    if isinstance(draws, np.ndarray | jax.Array):
        return f"{shape[1]} per individual, a user-supplied array {tuple(shape)}"
    return f"{shape[1]} per individual, {Halton(100) if draws is None else draws!r}"


def _inference(problem: Problem, theta, method: str, clusters, finite_sample: bool,
               status: Status):
    """``(Hessian, scores, covariances, messages, status)`` at ``theta``, every covariance
    type (cluster only with ``clusters``); a Hessian that is not finite or not symmetric gives
    NaN standard errors and ``Status.HESSIAN_FAILED`` (after a converged optimiser; another
    status stays), never an exception that would lose the estimates."""
    scores = np.asarray(problem.scores(theta))
    raw = np.asarray(problem.hessian(theta, method))  # its dtype sets the asymmetry tolerance
    kinds = [k for k in COVARIANCES if k != "cluster" or clusters is not None]
    try:
        hess = symmetrize(raw, method)
    except FloatingPointError as error:
        hess = SymmetricHessian(raw.astype(np.float64), method, float("nan"))
        nan = np.full(raw.shape, np.nan)
        failed = Status.HESSIAN_FAILED if status is Status.CONVERGED else status
        return (hess, scores, dict.fromkeys(kinds, nan),
                dict.fromkeys(kinds, f"{error}; no standard errors"), failed)
    out = {kind: covariance(hess.matrix, scores, kind, problem.space.names, clusters,
                            finite_sample) for kind in kinds}
    return (hess, scores, {k: cov for k, (cov, _) in out.items()},
            {k: message for k, (_, message) in out.items()}, status)
