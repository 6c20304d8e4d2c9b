"""Estimation: maximise the simulated log-likelihood, then compute the Hessian and the
covariance of the estimates.

Optimisers: ``"trust-exact"`` (the default: Newton's method in a trust region, scipy's
``trust-exact`` fed the jitted gradient and the exact Hessian; it stops when the Newton
decrement, which does not depend on the parameters' units, is small) and ``"lbfgs"`` (optax's
L-BFGS with a zoom line search; it stops on the relative gradient, which does). Newton needs
a Hessian per iteration, but few iterations, and the Hessian at the estimates is the one the
standard errors use; L-BFGS needs many iterations where parameters are badly scaled (1,443 on
Apollo's drug-choice study against Newton's 8).
"""

from __future__ import annotations

import functools
import logging
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
from ._draws import default_draws
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


logger = logging.getLogger("jaxiclv")


def _progress_to_stderr(iteration: int, llf: float, gradient_norm: float) -> None:
    sys.stderr.write(f"iteration {iteration:5d}   LL {llf:.6f}   max|grad| {gradient_norm:.3e}\n")


def _stages(to_stderr: bool):
    """Where the stages of an estimation (compiling, then each step) are announced: the
    ``jaxiclv`` logger (INFO), and stderr with ``progress=True``."""
    def stage(text: str) -> None:
        logger.info(text)
        if to_stderr:
            sys.stderr.write(text + "\n")
    return stage


def _announced(stage, what: str, fn):
    """``fn()``, announced as the compilation of ``what`` (its first call for these shapes
    compiles, or reads the compilation cache), with the seconds it took."""
    stage(f"compiling {what}, unless this process or the compilation cache has it for these "
          f"shapes...")
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    stage(f"{what}: ready in {time.perf_counter() - start:.1f} s")
    return out


def _relative_gradient(grad, theta, llf) -> float:
    """``max_p |g_p| max(|theta_p|, 1) / max(|LL|, 1)``: scale-free convergence measure."""
    return float(np.max(np.abs(grad) * np.maximum(np.abs(theta), 1.0)) / max(abs(llf), 1.0))


_SOLVER = optax.lbfgs()


@functools.partial(jax.jit, static_argnames=("gradient", "blocks", "n"))
def _lbfgs_step(space, data, draws, theta, state, gradient, blocks, n):
    """One L-BFGS iteration on ``-LL / N`` (``n`` individuals: the scale of the objective does
    not grow with the sample); returns the new point, the state, and ``-LL / N`` and its
    gradient at ``theta``."""
    value_fn = lambda t: -objective(space, t, data, draws, gradient, blocks) / n
    value, grad = optax.value_and_grad_from_state(value_fn)(theta, state=state)
    updates, state = _SOLVER.update(grad, state, theta, value=value, grad=grad, value_fn=value_fn)
    return optax.apply_updates(theta, updates), state, value, grad


def _lbfgs(problem: Problem, max_iter, gtol, report, every, stage):
    n = problem.panel.n_individuals
    step = functools.partial(_lbfgs_step, problem.space, problem.data, problem.draws,
                             gradient=problem.gradient, blocks=problem.blocks, n=n)
    theta = last_finite = problem.theta0
    state = _SOLVER.init(theta)
    history, status, stall = [], Status.MAX_ITERATIONS, 0
    for iteration in range(1, max_iter + 1):
        if iteration == 1:
            new_theta, state, value, grad = _announced(stage, "the L-BFGS step",
                                                       lambda: step(theta, state))
        else:
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
    return theta, status, history, iteration, None


class _HessianFailed(Exception):
    """The trust region's Hessian at ``theta`` is not finite or not symmetric."""

    def __init__(self, theta):
        super().__init__()
        self.theta = theta


def _newton_decrement(grad, hess) -> float:
    """``g' (-H)^-1 g``: twice the gain in LL that a Newton step predicts. Unlike the gradient
    it does not depend on the parameters' units (it is invariant under ``theta -> A theta``);
    ``inf`` where ``-H`` is not positive definite (not near a maximum). Solved in the
    correlation form of ``-H`` (scaled by its diagonal), which a badly scaled model needs."""
    diagonal = -np.diag(hess)
    if not np.all(diagonal > 0):
        return float("inf")
    scale = 1.0 / np.sqrt(diagonal)
    try:
        factor = np.linalg.cholesky(-hess * scale[:, None] * scale[None, :])
    except np.linalg.LinAlgError:
        return float("inf")
    half = np.linalg.solve(factor, grad * scale)
    return float(half @ half)


def _newton_converged(llf, grad, theta, hess, gtol, eps) -> tuple[bool, str]:
    """Converged when the Newton decrement ``g'(-H)^-1 g`` is at most
    ``max(gtol^2, eps) max(|LL|, 1)`` (the relative gradient's tolerance squared, as both are
    first-order small; no tighter than the precision ``eps`` of the computation allows); where
    ``-H`` is not positive definite (an unidentified direction), when the relative gradient is
    at most ``gtol``. ``(converged, what was measured)``."""
    relative = _relative_gradient(grad, theta, llf)
    decrement = _newton_decrement(grad, hess)
    if np.isfinite(decrement):
        tolerance = max(gtol ** 2, eps) * max(abs(llf), 1.0)
        return (decrement <= tolerance,
                f"Newton decrement g'(-H)^-1 g {decrement:.2e} (tolerance {tolerance:.1e}); "
                f"relative gradient {relative:.2e}")
    return (relative <= gtol,
            f"relative gradient {relative:.2e} (tolerance {gtol:.0e}; -H is not positive "
            f"definite there, so the Newton decrement is not defined)")


STALL_ITERATIONS = 5


def _stalled(history, decrements, gtol, eps) -> bool:
    """Newton has stalled when, over the last ``STALL_ITERATIONS`` iterations, either

    - the LL gained nothing beyond rounding, or
    - the Newton decrement stayed below ``gtol max(|LL|, 1)`` (a Newton step promises less
      than a ``gtol`` share of the LL) without falling tenfold or reaching the tolerance: the
      LL flattens out along a direction in which a parameter drifts away (an unidentified
      model). Newton's quadratic, or even a linear, convergence leaves that zone within a few
      iterations."""
    scale = max(abs(history[-1]), 1.0)
    if history[-1] - history[-1 - STALL_ITERATIONS] <= 10 * eps * scale:
        return True
    window = decrements[-STALL_ITERATIONS:]
    return (len(window) == STALL_ITERATIONS and max(window) <= gtol * scale
            and window[-1] >= window[0] / 10)


def _trust_exact(problem: Problem, max_iter, gtol, report, every, hessian_method, stage):
    """Newton's method in a trust region (scipy's ``trust-exact``) with the exact Hessian;
    every Hessian comes with the LL, gradient and scores of its point in one compiled call
    (:meth:`Problem.second_order`), and the one at the estimates is handed back for the
    standard errors."""
    n = problem.panel.n_individuals
    eps = float(jnp.finfo(problem.dtype).eps)
    history: list[float] = []  # LL after each iteration
    decrements: list[float] = []  # Newton decrement after each iteration
    at_point: dict = {}  # theta bytes -> (LL, gradient, scores, Hessian), the last point only

    def fun(theta):
        llf, grad = problem.loglik_and_grad(jnp.asarray(theta))
        return -float(llf) / n, -np.asarray(grad) / n

    def second_order(theta):
        key = theta.tobytes()
        if key not in at_point:
            call = lambda: problem.second_order(jnp.asarray(theta, dtype=problem.dtype),
                                                hessian_method)
            first = not at_point and not history
            at_point.clear()
            at_point[key] = tuple(map(np.asarray, _announced(
                stage, f"the {hessian_method} Hessian with the scores", call) if first
                else call()))
        return at_point[key]

    def symmetric(theta):
        try:  # non-finite or asymmetric: stop, keep the point
            return symmetrize(second_order(theta)[3], hessian_method).matrix
        except FloatingPointError as error:
            raise _HessianFailed(theta) from error

    def converged(intermediate_result):  # after each iteration
        theta = intermediate_result.x
        llf, grad = second_order(theta)[:2]
        history.append(float(llf))
        if report and (len(history) % every == 0 or len(history) == 1):
            report(len(history), float(llf), float(np.max(np.abs(grad))))
        matrix = symmetric(theta)
        if _newton_converged(float(llf), grad, theta, matrix, gtol, eps)[0]:
            raise StopIteration
        decrements.append(_newton_decrement(grad, matrix))
        if len(history) > STALL_ITERATIONS and _stalled(history, decrements, gtol, eps):
            raise StopIteration

    try:
        out = optimize.minimize(fun, np.asarray(problem.theta0), jac=True,
                                hess=lambda theta: -symmetric(theta) / n,
                                method="trust-exact", callback=converged,
                                options={"maxiter": max_iter, "gtol": 0.0})
        x, iterations, failed = out.x, int(out.nit), False
    except _HessianFailed as stop:
        x, iterations, failed = stop.theta, len(history), True
    x = np.asarray(x)
    llf, grad, scores, raw = second_order(x)
    if not (np.isfinite(float(llf)) and np.all(np.isfinite(grad))):
        status = Status.NON_FINITE
    elif failed:
        status = Status.HESSIAN_FAILED
    else:
        try:
            matrix = symmetric(x)
        except _HessianFailed:
            status = Status.HESSIAN_FAILED
        else:
            if _newton_converged(float(llf), grad, x, matrix, gtol, eps)[0]:
                status = Status.CONVERGED
            else:
                status = Status.MAX_ITERATIONS if iterations >= max_iter else Status.STALLED
    return (jnp.asarray(x, dtype=problem.dtype), status, history, iterations,
            (llf, grad, scores, raw))


def estimate(model, panel: Panel, draws=None, *, fixed: Iterable[str] = (),
             optimizer: str = "trust-exact", max_iter: int = 2000, gtol: float = 1e-6,
             gradient: str = "analytic", hessian: str = "structured", cov_type: str = "robust",
             clusters=None, finite_sample: bool = False, compare_hessians: bool = False,
             chunk_size: int | str | None = "auto", devices=None,
             draws_on_the_fly: bool | str = "auto", dtype=jnp.float64, start=None,
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
    optimizer: ``"trust-exact"`` (default: Newton's method in a trust region with the exact
        Hessian of ``hessian``) or ``"lbfgs"``.
    max_iter: iteration limit.
    gtol: convergence tolerance. Newton: the Newton decrement ``g'(-H)^-1 g`` (twice the
        gain in LL a Newton step predicts; the parameters' units do not change it) at most
        ``max(gtol^2, eps) max(|LL|, 1)`` (``eps`` of ``dtype``), or where ``-H`` is not
        positive definite the relative gradient at most ``gtol``; it stops as stalled when five
        iterations gain nothing beyond rounding, or keep a Newton decrement below
        ``gtol max(|LL|, 1)`` that does not fall (a parameter drifting away along a flat
        direction). L-BFGS: the relative gradient
        ``max_p |g_p| max(|theta_p|, 1) / max(|LL|, 1)`` at most ``gtol``.
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
    chunk_size: evaluate the likelihood over blocks of this many individuals on each device
        (bounded memory, better cache use); ``"auto"`` (default): as many as keep a block's
        per-draw values within a working-set budget (:mod:`jaxiclv._individuals`).
    devices: shard the individuals over these devices: ``None`` (default), every device JAX
        sees (every process's under ``jax.distributed``); an integer ``k``, the first ``k`` of
        this process's devices (``1``: one device, no sharding); or a list of devices. Every sum over individuals
        is reduced across them; the results do not depend on the number of devices beyond
        rounding.
    draws_on_the_fly: make a generator's draws inside the compiled loop, one block of
        individuals at a time (``True``), or hold them all as an ``(N, R, D)`` array
        (``False``); ``"auto"`` (default): on the fly when the array would exceed 2^27 values
        (1 GiB in float64). The draws, and so the results, are the same either way.
    dtype: ``jnp.float64`` (default) or ``jnp.float32`` (for accelerators): the per-draw
        work in that dtype, every sum over draws and individuals in float64, the
        log-likelihood reported in float64, the estimates in ``dtype``.
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
    draws = default_draws(draws)
    report = _progress_to_stderr if progress is True else (progress or None)
    stage = _stages(progress is True)
    fit = functools.partial(_maximise, panel=panel, fixed=fixed, chunk_size=chunk_size,
                            devices=devices, draws_on_the_fly=draws_on_the_fly,
                            dtype=dtype, gradient=gradient, optimizer=optimizer,
                            max_iter=max_iter, gtol=gtol, report=report, every=progress_every,
                            hessian=hessian, stage=stage)
    model, start_description = _starting_values(model, start, fit, draws, fixed)
    problem, theta, status, history, iterations, at_estimate, llf_start = fit(model, draws=draws)
    if at_estimate is None:
        at_estimate = tuple(map(np.asarray, _announced(
            stage, f"the {hessian} Hessian with the scores",
            lambda: problem.second_order(theta, hessian))))
    llf, grad, scores, raw = at_estimate
    llf, grad = float(llf), np.asarray(grad)
    hess, covariances, cov_messages, status = _inference(
        problem, raw, scores, hessian, clusters, finite_sample, status)
    cov_message = cov_messages[cov_type]
    message = f"{status.value}; {_convergence(optimizer, llf, grad, np.asarray(theta), hess, gtol)}"
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
        n_draws=problem.n_draws,
        draws_description=_describe_draws(draws, (panel.n_individuals, *problem.draws.shape[1:])),
        weighted=bool(np.any(weights != 1.0)),
        iterations=iterations, seconds=time.perf_counter() - started, status=status,
        message=message, gradient_norm=float(np.max(np.abs(grad))), history=np.asarray(history),
        optimizer=optimizer, gradient=gradient, start=start_description,
        natural_names=natural_names,
        natural_estimates=natural_values, natural_jacobian=natural_jacobian,
        hessian_comparison=comparison, missing_answers=missing, problem=problem,
        draws=None if isinstance(draws, np.ndarray | jax.Array) else draws)
    if throw and status is not Status.CONVERGED:
        raise EstimationError(f"{message}; {cov_message}" if cov_message else message, results)
    return results


def _maximise(model, *, panel, draws, fixed, chunk_size, devices, draws_on_the_fly, dtype,
              gradient, optimizer, max_iter, gtol, report, every, hessian, stage):
    """``(problem, theta, status, history, iterations, (LL, gradient, scores, Hessian) at theta
    or None, LL at the start)``: the optimiser's run from the model's values. A
    log-likelihood that is not finite at the start raises."""
    problem = Problem(model, panel, draws, fixed, chunk_size, dtype, gradient, devices=devices,
                      draws_on_the_fly=draws_on_the_fly)
    if not problem.space.names:
        raise ValueError("every parameter is fixed: there is nothing to estimate (to evaluate "
                         "the log-likelihood at these values, use Problem(...).loglik)")
    stage(f"{problem.space.size} parameters, {panel.n_individuals} individuals x "
          f"{problem.n_draws} draws, blocks of {problem.chunk_size or panel.n_individuals}"
          f" individuals" + (f" on each of {len(problem.devices)} devices"
                             if len(problem.devices) > 1 else ""))
    llf_start = float(_announced(  # the optimiser's own program
        stage, "the log-likelihood and its gradient",
        lambda: problem.loglik_and_grad(problem.theta0))[0])
    if not np.isfinite(llf_start):
        raise FloatingPointError(
            f"the log-likelihood at the starting values is {llf_start}: "
            f"{problem.explain_nonfinite(problem.theta0) or 'its sum over individuals overflows'}"
            f"; choose other starting values or check the data")
    if optimizer == "lbfgs":
        run = _lbfgs(problem, max_iter, gtol, report, every, stage)
    else:
        run = _trust_exact(problem, max_iter, gtol, report, every, hessian, stage)
    return (problem, *run, llf_start)


def _convergence(optimizer, llf, grad, theta, hess, gtol) -> str:
    """What the optimiser's stopping rule measured at the estimates."""
    if optimizer == "trust-exact" and np.all(np.isfinite(hess.matrix)):
        eps = float(np.finfo(theta.dtype).eps)
        return _newton_converged(llf, grad, theta, hess.matrix, gtol, eps)[1]
    return f"relative gradient {_relative_gradient(grad, theta, llf):.2e} (tolerance {gtol:.0e})"


def _sequential_start(model, fit, draws, fixed):
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
    user_fixed = set(fixed_names(fixed))

    def run(step, step_draws, held):
        names = set(ParameterSpace.from_model(step).names)
        problem, theta, status, _, iterations, _, _ = fit(
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


def _starting_values(model, start, fit, draws, fixed):
    """``(model at the starting values, how they were chosen)``."""
    if start is None:
        return model, "the model's values"
    if isinstance(start, str) and start == "sequential":
        return _sequential_start(model, fit, draws, fixed)
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
    return f"{shape[1]} per individual, {draws!r}"


def _inference(problem: Problem, raw, scores, method: str, clusters, finite_sample: bool,
               status: Status):
    """``(Hessian, covariances, messages, status)`` from the unsymmetrised Hessian ``raw`` and
    the scores at the estimates, every covariance type (cluster only with ``clusters``); a
    Hessian that is not finite or not symmetric gives NaN standard errors and
    ``Status.HESSIAN_FAILED`` (after a converged optimiser; another status stays), never an
    exception that would lose the estimates."""
    kinds = [k for k in COVARIANCES if k != "cluster" or clusters is not None]
    try:
        hess = symmetrize(raw, method)  # the raw dtype sets the asymmetry tolerance
    except FloatingPointError as error:
        hess = SymmetricHessian(raw.astype(np.float64), method, float("nan"))
        nan = np.full(raw.shape, np.nan)
        failed = Status.HESSIAN_FAILED if status is Status.CONVERGED else status
        return (hess, dict.fromkeys(kinds, nan),
                dict.fromkeys(kinds, f"{error}; no standard errors"), failed)
    out = {kind: covariance(hess.matrix, scores, kind, problem.space.names, clusters,
                            finite_sample) for kind in kinds}
    return (hess, {k: cov for k, (cov, _) in out.items()},
            {k: message for k, (_, message) in out.items()}, status)
