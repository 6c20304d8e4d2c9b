"""After the estimate: functions of the parameters, posterior latent variables, predictions,
market shares, elasticities and tests between models.

Everything here is computed from a :class:`~jaxiclv.Results` at its estimates, with the
draws the estimation used (or, for new data, the same generator's draws for the new
individuals), and the posterior draw weights the analytic gradient uses:
``w_ir = L_ir / sum_r L_ir``, ``L_ir`` the likelihood of everything individual ``i``
answered and chose at draw ``r``.

- :func:`delta_method`: ``g(theta)`` of the named parameters, with the standard error
  ``sqrt(J V J')`` (``J = jax.jacfwd(g)``), t, p and a confidence interval; :func:`wtp` the
  ratio of two coefficients.
- :func:`posterior`: each individual's posterior mean, standard deviation and quantiles of
  every latent variable, ``sum_r w_ir LV_ir``, and the unconditional ones (equal weights).
- :func:`predict`: choice probabilities per task, unconditional ``(1/R) sum_r P_itr`` and
  conditional on the individual's choices and indicators ``sum_r w_ir P_itr``; on the
  estimation data or on new data (:meth:`Panel.with_data`).
- :func:`shares`: the weighted sample average of the unconditional probabilities, with delta
  method standard errors, or Krinsky-Robb draws of the parameters.
- :func:`elasticities`: aggregate elasticities of every share with respect to one attribute
  of each alternative, ``d log S_j / d log x_k`` (point, by forward mode) or the arc
  elasticity ``(S_j(x_k (1 + c)) / S_j(x_k) - 1) / c`` of a relative change ``c``.
- :func:`lr_test`: the likelihood-ratio test of nested models, or Ben-Akiva and Swait's bound
  for non-nested ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import logsumexp
from scipy import stats

from ._data import Panel
from ._individuals import for_each_individual
from ._problem import Problem

__all__ = ["delta_method", "wtp", "posterior", "predict", "shares", "elasticities", "lr_test",
           "TestResult"]


# --------------------------------------------------------------------------------------------
# functions of the parameters


class _Parameters(dict):
    """The parameters by name; an unknown name is a ``KeyError`` that names it and the
    closest known names."""

    def __missing__(self, name):
        close = difflib.get_close_matches(str(name), list(self), n=3)
        raise KeyError(f"the function uses parameter {name!r}, which the model does not have"
                       + (f"; did you mean {close}?" if close else
                          f"; its parameters are {list(self)}"))


def _named(result, theta) -> _Parameters:
    """The free parameters at ``theta`` and the fixed ones (constants), by name."""
    values = _Parameters({name: jnp.asarray(value) for name, value in result.fixed.items()})
    values.update({name: theta[p] for p, name in enumerate(result.names)})
    return values


def _inference_table(values, se, index, alpha, interval=None) -> pd.DataFrame:
    """estimate, std err, t, p and the ``1 - alpha`` interval (default: normal,
    ``estimate -/+ z se``)."""
    t = values / se
    if interval is None:
        half = stats.norm.ppf(1.0 - alpha / 2.0) * se
        interval = values - half, values + half
    return pd.DataFrame({"estimate": values, "std err": se, "t": t,
                         "p": 2.0 * stats.norm.sf(np.abs(t)), "lower": interval[0],
                         "upper": interval[1]}, index=index)


def _delta_se(jacobian, cov) -> np.ndarray:
    """``sqrt(diag(J V J'))``."""
    return np.sqrt(np.einsum("ip,pq,iq->i", jacobian, cov, jacobian))


def delta_method(result, f: Callable[[Mapping[str, jax.Array]], object],
                 cov_type: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """``f(p)`` of the estimates with delta-method inference.

    ``f`` takes the parameters by name (``p["beta.time"]``; fixed parameters are constants)
    and returns a scalar, an array, or a mapping of names to scalars, written in jax.numpy.
    The result has one row per output: ``estimate``, ``std err`` (``sqrt(J V J')`` with
    ``J = jax.jacfwd`` of ``f`` and ``V`` the ``cov_type`` covariance, default the
    result's), ``t``, ``p`` and the ``1 - alpha`` interval. A name the model does not have is
    a ``KeyError`` naming it.
    """
    cov = result.cov_params(cov_type).to_numpy()
    theta = jnp.asarray(result.estimates)
    outputs = f(_named(result, theta))
    keys = list(outputs) if isinstance(outputs, Mapping) else None

    def flat(t):
        out = f(_named(result, t))
        if keys is not None:
            out = jnp.stack([jnp.asarray(out[k]) for k in keys])
        return jnp.ravel(jnp.asarray(out, dtype=t.dtype))

    values = np.asarray(flat(theta))
    jacobian = np.asarray(jax.jacfwd(flat)(theta))
    index = keys if keys is not None else (["value"] if np.ndim(outputs) == 0
                                            else [f"value[{i}]" for i in range(values.size)])
    return _inference_table(values, _delta_se(jacobian, cov), index, alpha)


def wtp(result, numerator: str | Sequence[str], denominator: str,
        cov_type: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Willingness to pay ``beta_numerator / beta_denominator`` (e.g. ``"beta.time"`` over
    ``"beta.cost"``: the money value of a unit of time when both are disutilities), one row per
    numerator, by :func:`delta_method`."""
    names = [numerator] if isinstance(numerator, str) else list(numerator)
    return delta_method(result, lambda p: {f"{n} / {denominator}": p[n] / p[denominator]
                                           for n in names}, cov_type, alpha)


# --------------------------------------------------------------------------------------------
# per-individual quantities at the draws


def _problem_of(result):
    if result.problem is None:
        raise ValueError("this result has no problem (model, data and draws) to compute from: "
                         "load it with Results.load(path, model=..., panel=..., draws=...)")
    return result.problem


def _evaluate(problem, f, theta, extra=()):
    """``f(model, extra, x, eta)`` of every individual (leading axis ``N``), mapped in the
    problem's chunks; ``extra``: arrays every individual uses."""
    return problem.individual_rows(_mapped(problem.space, theta, problem.data, problem.draws,
                                           problem.blocks, f, extra))


@functools.partial(jax.jit, static_argnames=("blocks", "f"))
def _mapped(space, theta, data, draws, blocks, f, extra=()):
    return for_each_individual(lambda params, x, eta: f(*params, x, eta),
                               (space.unflatten(theta), extra), data, draws, blocks)


def _posterior_weights(model, x, eta):
    """``(latent variables (L, R), w_ir (R,))``."""
    lv, terms, _ = model.draw_diagnostics(x, eta)
    log_l = jnp.sum(terms, axis=0)
    return lv, jnp.exp(log_l - logsumexp(log_l))


def _weighted_quantiles(values, weights, quantiles):
    """Quantiles ``(L, Q)`` of each row of ``values`` ``(L, R)`` under ``weights`` ``(R,)``:
    the smallest value whose cumulative weight reaches the quantile."""
    order = jnp.argsort(values, axis=1)
    cumulative = jnp.cumsum(weights[order], axis=1)  # (L, R)
    at = jax.vmap(lambda c: jnp.searchsorted(c, quantiles * c[-1]))(cumulative)  # (L, Q)
    at = jnp.minimum(at, values.shape[1] - 1)
    return jnp.take_along_axis(jnp.take_along_axis(values, order, axis=1), at, axis=1)


def _individual_posterior(model, quantiles, x, eta):
    lv, w = _posterior_weights(model, x, eta)
    mean = lv @ w
    sd = jnp.sqrt(jnp.maximum(((lv - mean[:, None]) ** 2) @ w, 0.0))
    equal = jnp.full_like(w, 1.0 / w.shape[0])
    return (mean, sd, _weighted_quantiles(lv, w, quantiles), lv.mean(axis=1), lv.std(axis=1),
            _weighted_quantiles(lv, equal, quantiles))


def posterior(result, data: pd.DataFrame | Panel | None = None, draws=None,
              quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
    """Each individual's latent variables given everything they chose and answered.

    One row per individual and latent variable (index ``(id, latent variable)``): the
    posterior ``mean`` ``sum_r w_ir LV_ir``, ``sd`` and the ``q{quantile}`` columns (over
    the draws, weighted by ``w_ir``), and the unconditional (structural) ``prior mean``,
    ``prior sd`` and quantiles (equal weights: the distribution given the covariates only).
    ``data``, ``draws``: other people's data at the estimates, as in :func:`predict`.
    """
    problem = _problem_for(result, data, draws)
    names = problem.space.template.latent.names
    if not names:
        raise ValueError("the model has no latent variables")
    quantiles = tuple(float(q) for q in quantiles)
    if not all(0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
    out = [np.asarray(a) for a in _evaluate(
        problem, _individual_posterior, jnp.asarray(result.estimates, problem.dtype),
        jnp.asarray(quantiles, problem.dtype))]
    mean, sd, q, prior_mean, prior_sd, prior_q = out
    columns = {"mean": mean, "sd": sd,
               **{f"q{x:g}": q[:, :, k] for k, x in enumerate(quantiles)},
               "prior mean": prior_mean, "prior sd": prior_sd,
               **{f"prior q{x:g}": prior_q[:, :, k] for k, x in enumerate(quantiles)}}
    index = pd.MultiIndex.from_product([list(problem.panel.ids), list(names)],
                                       names=[problem.panel.id_column, "latent variable"])
    return pd.DataFrame({k: v.reshape(-1) for k, v in columns.items()}, index=index)


# --------------------------------------------------------------------------------------------
# predictions


def _individual_probabilities(model, _, x, eta):
    """``(unconditional (T, K), conditional (T, K))`` choice probabilities."""
    _, w = _posterior_weights(model, x, eta)
    p = model.draw_probabilities(x, eta)  # (T, K, R)
    return jnp.mean(p, axis=2), p @ w


def _problem_for(result, data: pd.DataFrame | Panel | None, draws):
    """The result's problem, or one on new data at the estimates (the same model, fixed
    parameters and chunks; the result's draw generator unless ``draws`` is given)."""
    if data is None:
        if draws is not None:
            raise ValueError("draws= is for new data; the estimation data use the estimation's "
                             "draws")
        return _problem_of(result)
    problem = _problem_of(result)
    panel = data if isinstance(data, Panel) else problem.panel.with_data(data)
    generator = result.draws if draws is None else draws
    if generator is None:
        raise ValueError("the estimation used an array of draws: give draws= for the new data "
                         "(an array (N, R, D) or a generator)")
    return Problem(result.model, panel, generator, fixed=result.fixed, chunk_size="auto",
                   dtype=problem.dtype, gradient=problem.gradient,
                   devices=list(problem.devices), draws_on_the_fly=problem.draws_on_the_fly)


def _require_choice(result):
    if _problem_of(result).space.template.choice is None:
        raise ValueError("the model has no choice model: there is nothing to predict")


def _outcome_labels(problem) -> list[str]:
    return [str(a) for a in problem.panel.alternatives]


def predict(result, data: pd.DataFrame | Panel | None = None, draws=None) -> pd.DataFrame:
    """Choice probabilities of every task, one row per observed task (index ``(id, task)``,
    tasks numbered from 1 in the order of the data), one column per alternative
    (``panel.alternatives``; a binary model's two codes): ``unconditional`` (averaged over the
    draws) and ``conditional`` (weighted by each individual's posterior draw weights, given
    their choices and indicators), as a two-level column index.

    ``data``: new data (a DataFrame with the estimation's columns, coded by
    :meth:`Panel.with_data`, or a :class:`Panel`); the conditional probabilities then use
    the choices and indicators in it. ``draws``: their draws (default: the estimation's
    generator for the new individuals)."""
    _require_choice(result)
    problem = _problem_for(result, data, draws)
    unconditional, conditional = (np.asarray(a) for a in _evaluate(
        problem, _individual_probabilities, jnp.asarray(result.estimates, problem.dtype)))
    mask = np.asarray(problem.panel.arrays.task_mask)
    n, t = np.nonzero(mask)
    index = pd.MultiIndex.from_arrays([problem.panel.ids[n], t + 1],
                                      names=[problem.panel.id_column, "task"])
    labels = _outcome_labels(problem)
    columns = pd.MultiIndex.from_product([["unconditional", "conditional"], labels])
    return pd.DataFrame(np.concatenate([unconditional[mask], conditional[mask]], axis=1),
                        index=index, columns=columns)


def _shares_at(space, theta, data, draws, blocks):
    """Weighted sample shares ``sum_it w_i P_itk / sum_it w_i`` ``(K,)``."""
    unconditional, _ = _mapped(space, theta, data, draws, blocks, _individual_probabilities)
    mask = data.task_mask.astype(unconditional.dtype)
    weight = data.weights[:, None] * mask  # (N, T)
    return jnp.einsum("nt,ntk->k", weight, unconditional) / jnp.sum(weight)


@functools.partial(jax.jit, static_argnames=("blocks",))
def _shares_and_jacobian(space, theta, data, draws, blocks):
    f = lambda t: _shares_at(space, t, data, draws, blocks)
    return f(theta), jax.jacfwd(f)(theta)


@functools.partial(jax.jit, static_argnames=("blocks",))
def _shares_of_draws(space, thetas, data, draws, blocks):
    return jax.lax.map(lambda t: _shares_at(space, t, data, draws, blocks), thetas)


def shares(result, data: pd.DataFrame | Panel | None = None, draws=None,
           method: str = "delta", n_draws: int = 1000, seed: int = 0,
           cov_type: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Predicted market shares (the weighted sample average of the unconditional
    probabilities over every observed task) with standard errors and a ``1 - alpha``
    interval: ``method="delta"`` (``J = jax.jacfwd`` of the shares) or ``"krinsky-robb"``
    (``n_draws`` parameter vectors from ``N(estimates, V)``: their standard deviation and
    percentile interval). ``data``, ``draws``: as in :func:`predict` (a scenario)."""
    _require_choice(result)
    if method not in ("delta", "krinsky-robb"):
        raise ValueError(f"method must be 'delta' or 'krinsky-robb', got {method!r}")
    problem = _problem_for(result, data, draws)
    theta = jnp.asarray(result.estimates, problem.dtype)
    cov = result.cov_params(cov_type).to_numpy()
    args = (problem.space, problem.data, problem.draws)
    labels = _outcome_labels(problem)
    if method == "delta":
        values, jacobian = _shares_and_jacobian(args[0], theta, *args[1:], problem.blocks)
        return _inference_table(np.asarray(values), _delta_se(np.asarray(jacobian), cov), labels,
                                alpha)
    if not np.all(np.isfinite(cov)):
        raise ValueError("the covariance has NaN entries (an unidentified direction): "
                         "Krinsky-Robb draws need a finite covariance")
    rng = np.random.default_rng(seed)
    thetas = rng.multivariate_normal(np.asarray(result.estimates), cov, size=n_draws)
    values = np.asarray(_shares_at(problem.space, theta, problem.data, problem.draws,
                                   problem.blocks))
    drawn = np.asarray(_shares_of_draws(problem.space, jnp.asarray(thetas, problem.dtype),
                                        problem.data, problem.draws, problem.blocks))
    return _inference_table(values, drawn.std(axis=0, ddof=1), labels, alpha,
                            np.quantile(drawn, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0))


@functools.partial(jax.jit, static_argnames=("blocks", "alternative", "column"))
def _scaled_shares(space, theta, data, draws, blocks, alternative, column, factor):
    scaled = data.attributes.at[:, :, alternative, column].multiply(factor)
    return _shares_at(space, theta, eqx.tree_at(lambda d: d.attributes, data, scaled), draws,
                      blocks)


def elasticities(result, attribute: str, data: pd.DataFrame | Panel | None = None,
                 draws=None, change: float | None = None) -> pd.DataFrame:
    """Aggregate elasticities of the predicted shares with respect to ``attribute``: rows
    the shares, columns the alternative whose attribute changes (direct elasticities on the
    diagonal, cross elasticities off it); a binary model's one column is its attribute.

    ``change=None``: point elasticities ``d log S_j / d log x_k`` (forward mode: the
    probability-weighted average of the individual elasticities); a number ``c``: arc
    elasticities ``(S_j(x_k (1 + c)) / S_j(x_k) - 1) / c``."""
    _require_choice(result)
    problem = _problem_for(result, data, draws)
    names = problem.data.attribute_names
    if attribute not in names:
        close = difflib.get_close_matches(attribute, names, n=3)
        raise KeyError(f"{attribute!r} is not an attribute of the data"
                       + (f"; did you mean {close}?" if close else f"; they are {list(names)}"))
    column = names.index(attribute)
    theta = jnp.asarray(result.estimates, problem.dtype)
    args = (problem.space, theta, problem.data, problem.draws, problem.blocks)
    one = jnp.asarray(1.0, problem.dtype)
    changed = problem.panel.alternatives if not problem.space.template.choice.binary else (
        attribute,)
    out = {}
    for k, label in enumerate(changed):
        at = lambda factor: _scaled_shares(*args, k, column, factor)
        base = at(one)
        if change is None:
            derivative = jax.jvp(at, (one,), (one,))[1]
            out[str(label)] = np.asarray(derivative / base)
        else:
            out[str(label)] = np.asarray((at(one + change) / base - 1.0) / change)
    return pd.DataFrame(out, index=_outcome_labels(problem))


# --------------------------------------------------------------------------------------------
# tests between models


@dataclasses.dataclass(frozen=True)
class TestResult:
    """A test between two models: ``statistic``, its ``df`` and ``pvalue``, and what it is."""

    statistic: float
    df: int
    pvalue: float
    method: str

    __test__ = False  # not a pytest class


def _same_data(a, b) -> None:
    if (a.n_individuals, a.n_observations) != (b.n_individuals, b.n_observations):
        raise ValueError(f"the models were estimated on different data ({a.n_individuals} "
                         f"individuals and {a.n_observations} tasks against {b.n_individuals} "
                         f"and {b.n_observations}): their log-likelihoods cannot be compared")


def lr_test(restricted, unrestricted, nested: bool = True) -> TestResult:
    """The likelihood-ratio test ``2 (LL_u - LL_r) ~ chi2(P_u - P_r)`` of a restricted model
    against one that nests it: every free parameter of the restricted model must be a free
    parameter of the unrestricted one (a ``ValueError`` names those that are not).

    ``nested=False``: Ben-Akiva and Swait's test for non-nested models on the same data:
    with ``z`` the difference of the adjusted rho-squares against LL(0) (the second model's
    minus the first's), ``P(z or more | the first is the true model) <= Phi(-sqrt(-2 z LL(0)
    + (P_2 - P_1)))``; the statistic is ``z``."""
    _same_data(restricted, unrestricted)
    if not nested:
        llf_0 = unrestricted.llnull
        if not np.isfinite(llf_0) or not np.isclose(llf_0, restricted.llnull, rtol=1e-12):
            raise ValueError(f"Ben-Akiva and Swait's test needs one LL(0) for both models, got "
                             f"{restricted.llnull} and {llf_0}")
        z = unrestricted.rho2_adj - restricted.rho2_adj
        extra = unrestricted.n_params - restricted.n_params
        bound = float(stats.norm.cdf(-np.sqrt(max(-2.0 * z * llf_0 + extra, 0.0))))
        return TestResult(float(z), extra, bound if z > 0 else 1.0, "Ben-Akiva and Swait")
    df = unrestricted.n_params - restricted.n_params
    if df < 1:
        raise ValueError(f"the unrestricted model has {unrestricted.n_params} free parameters, "
                         f"not more than the restricted model's {restricted.n_params}: pass the "
                         f"restricted model first")
    outside = [n for n in restricted.names if n not in unrestricted.names]
    if outside:
        raise ValueError(f"the models are not nested by their parameters: the restricted model's "
                         f"{outside} are not free parameters of the unrestricted model")
    statistic = 2.0 * (unrestricted.llf - restricted.llf)
    return TestResult(float(statistic), df, float(stats.chi2.sf(statistic, df)),
                      "likelihood ratio")
