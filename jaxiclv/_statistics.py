"""Fit statistics: the log-likelihood of each component at the estimates, and the reference
log-likelihoods LL(0) and LL(C).

Each component's log-likelihood is simulated on its own, as Apollo prints it:
``LL_c = sum_i w_i log((1/R) sum_r L_cir)`` for the choice model and for each indicator
(an indicator of a built-in block is that block with the other items dropped, as missing
answers are); they add up to the model's log-likelihood only with one draw, since the
components are joined through the latent variables.

Reference log-likelihoods, weighted as the log-likelihood is:

- choice, LL(0): every available alternative equally likely, ``sum_t log(1 / J_t)`` (a binary
  task: ``log 1/2``); LL(C): the maximum of a multinomial logit with a full set of constants
  and nothing else, under the same availability (the sample shares ``sum_j n_j log(n_j / n)``
  when every alternative is always available);
- an ordered item, LL(0): every level equally likely, ``log(1 / M)`` per answer; LL(C): the
  sample frequencies ``sum_m n_m log(n_m / n)``;
- a normal indicator: LL(0) is not defined (NaN); LL(C): a normal with the sample mean and
  variance, ``-n/2 (log(2 pi s^2) + 1)``;
- a user-written block: NaN for both.

The model's LL(0) (LL(C)) is the sum over its components, NaN when a component has none.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import logsumexp
from scipy import optimize, special

from ._individuals import for_each_individual
from ._measurement import NormalIndicators, OrderedMeasurement

__all__ = ["component_table", "constants_only_loglik"]


@functools.partial(jax.jit, static_argnames=("blocks",))
def _component_logliks(space, theta, data, draws, blocks):
    """``sum_i w_i log((1/R) sum_r L_cir)`` of each row of ``model.item_rows``."""
    model = space.unflatten(theta)
    log_r = jnp.log(draws.shape[1])
    per_individual = for_each_individual(
        lambda m, x, eta: logsumexp(m.draw_item_logliks(x, eta), axis=1) - log_r, model, data,
        draws, blocks)  # (N, rows)
    return data.weights @ per_individual


def _ordered_null(values: np.ndarray, observed: np.ndarray, weights: np.ndarray, levels: int):
    n_level = np.array([weights @ (observed & (values == m)) for m in range(1, levels + 1)])
    n = n_level.sum()
    seen = n_level > 0
    return n * np.log(1.0 / levels), float(n_level[seen] @ np.log(n_level[seen] / n))


def _normal_null(values: np.ndarray, observed: np.ndarray, weights: np.ndarray):
    w = weights * observed
    n = w.sum()
    y = np.where(observed, values, 0.0)
    mean = (w @ y) / n
    variance = (w @ (y - mean) ** 2) / n
    return np.nan, float(-0.5 * n * (np.log(2.0 * np.pi * variance) + 1.0))


def constants_only_loglik(choice: np.ndarray, available: np.ndarray, weight: np.ndarray) -> float:
    """The maximum log-likelihood of a multinomial logit with one constant per alternative,
    ``sum weight log P(choice)`` (concave: scipy's exact-Hessian trust region); an
    alternative never chosen has probability tending to 0 at the supremum, so it is left out.

    ``choice`` ``(n,)`` indices; ``available`` ``(n, J)``; ``weight`` ``(n,)``."""
    n_alternatives = available.shape[1]
    counts = np.bincount(choice, weights=weight, minlength=n_alternatives)
    available = available & (counts > 0)[None, :]
    free = np.flatnonzero(counts > 0)[1:]  # the first chosen alternative's constant is 0
    rows = np.arange(len(choice))

    def log_p(c):  # (n, J)
        constants = np.zeros(n_alternatives)
        constants[free] = c
        logits = np.where(available, constants[None, :], -np.inf)
        return logits - special.logsumexp(logits, axis=1, keepdims=True)

    def negative_and_gradient(c):
        lp = log_p(c)
        return -(weight @ lp[rows, choice]), -(counts - weight @ np.exp(lp))[free]

    def negative_hessian(c):
        p = np.exp(log_p(c))
        return (np.diag(weight @ p) - (p * weight[:, None]).T @ p)[np.ix_(free, free)]

    if free.size == 0:
        return float(-negative_and_gradient(np.zeros(0))[0])
    best = optimize.minimize(negative_and_gradient, np.zeros(free.size), jac=True,
                             hess=negative_hessian, method="trust-exact",
                             options={"gtol": 1e-10})
    return float(-best.fun)


def _choice_null(model, arrays, weights):
    mask = np.asarray(arrays.task_mask)
    task_weight = np.broadcast_to(weights[:, None], mask.shape)[mask]
    choice = np.asarray(arrays.choice)[mask]
    if model.choice.binary:
        available = np.ones((choice.size, 2), dtype=bool)
    else:
        available = np.asarray(arrays.available)[mask]
    llf_0 = float(task_weight @ -np.log(available.sum(axis=1)))
    return llf_0, constants_only_loglik(choice, available, task_weight)


def _null_logliks(model, arrays) -> list[tuple[float, float]]:
    """``(LL(0), LL(C))`` of each row of ``model.item_rows``."""
    weights = np.asarray(arrays.weights, dtype=np.float64)
    observed = (np.ones(np.shape(arrays.indicators), dtype=bool)
                if arrays.indicator_observed is None else np.asarray(arrays.indicator_observed))
    out = []
    for block in model.measurement:
        columns = arrays.indicator_columns(block.indicators)
        values = np.asarray(arrays.indicators)[:, columns]
        seen = observed[:, columns]
        if isinstance(block, OrderedMeasurement):
            out += [_ordered_null(values[:, k], seen[:, k], weights, block.levels)
                    for k in range(len(columns))]
        elif isinstance(block, NormalIndicators):
            out += [_normal_null(values[:, k], seen[:, k], weights) for k in range(len(columns))]
        else:
            out += [(np.nan, np.nan)] * (len(columns) if block.drops_missing else 1)
    if model.choice is not None:
        out.append(_choice_null(model, arrays, weights))
    return out


def component_table(problem, theta) -> pd.DataFrame:
    """One row per component (the choice model, each indicator) with its LL(0), LL(C) and
    its own simulated log-likelihood at ``theta``; a last row ``model`` with the model's LL(0)
    and LL(C) (sums, NaN if a component has none) and its log-likelihood."""
    model = problem.space.unflatten(theta)
    rows = list(model.item_rows)
    null = np.array(_null_logliks(model, problem.panel.arrays), dtype=np.float64).reshape(-1, 2)
    llf = np.asarray(_component_logliks(problem.space, theta, problem.data, problem.draws,
                                        problem.blocks), dtype=np.float64)
    table = pd.DataFrame({"LL(0)": null[:, 0], "LL(C)": null[:, 1], "LL": llf}, index=rows)
    total = pd.DataFrame({"LL(0)": [table["LL(0)"].sum(skipna=False)],
                          "LL(C)": [table["LL(C)"].sum(skipna=False)],
                          "LL": [float(problem.loglik(theta))]}, index=["model"])
    return pd.concat([table, total])
