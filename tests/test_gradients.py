"""The hand-derived ("analytic") gradient against JAX autodiff and finite differences.

What is compared, and why the tolerances are what they are (all float64, from conftest, with
``jax_numpy_rank_promotion="raise"``):

1. Components. Every built-in component's hand-derived ``vjp`` (measurement blocks, choice
   models, utilities, structural models, and the kernels under user-written equations)
   against two references, with random cotangents, at five random parameter points (every
   element of every parameter array random) and at extreme points: the default pullback
   ``autodiff_vjp`` (``jax.vjp`` of the whole forward function), to 1e-12 of each leaf's
   largest element, so that the fast path is proven equal to the default; and ``jax.vjp`` of
   the forward function at one draw vmapped over the draws, a reference that cannot share a
   mistake in the draws axis, to 1e-9. Both sides evaluate the same float64 closed forms of
   O(1) inputs and differ only in the order of the chain rule and of the sums over draws,
   tasks and indicators (tens of terms), so they agree to a few ulp; a wrong term (sign,
   factor, index) gives errors of 1e-2..1.
2. Whole models, through ``Problem(..., gradient=...)``: analytic vs autodiff per element,
   ``|g_an - g_ad| <= 1e-8 (|g_ad| + S)``, with the floor ``S = sum_i |s_i| / N`` from the
   per-individual scores ``s_i``: the gradient is a sum over individuals of terms of size
   ``|s_i|``, and where they cancel (an element near zero) the rounding error of the sum is set
   by the terms, not by the sum. Both sides are good to ~1e-15 of that scale; 1e-8 is margin.
   Central differences (``gradient="finite-difference"``): the error of
   ``(f(t+h) - f(t-h)) / 2h`` is ``h^2 |f'''| / 6`` (truncation) plus ``delta / h``
   (rounding; ``delta`` the absolute error of one evaluation of ``f``), with
   ``h = eps^(1/3) max(|t|, 1)`` as in ``Problem`` (which makes the step exactly
   representable). ``f'''`` along each coordinate is measured by a third difference with steps
   1e-2 (its own rounding, ~1e6 eps |f|, is negligible), ``delta`` is taken as ``64 eps |f|``
   (a sum over individuals of logs of well-conditioned probabilities), and the bound is twice
   the sum; it is also checked to be small enough (<= 1e-6 of the typical gradient element) to
   catch a wrong gradient.
3. Hessians: ``jax.jacfwd(jax.grad(f))`` through the custom-VJP log-likelihood vs
   ``jax.hessian`` of the plain one: second derivatives, a few more roundings; 1e-8 of the
   largest entry.
4. Extreme but valid points, with high-precision references (scipy's Mills ratio, adaptive
   quadrature) where autodiff breaks down or where both lose digits to conditioning.
5. Hypothesis over random model shapes and parameter points.

Compilation dominates the run time, so everything is compiled once per model structure:
parameter values and data are arguments (``Problem``'s jitted functions take the parameter
space and the data as pytrees), and the extreme scenarios reuse the grid's structures and
shapes. The full grid, more Hypothesis examples and a few costlier checks are marked slow.
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special as sc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxiclv as jic
from helpers import (EPS, N_DRAWS, RANGES, SharedScaleNormal, assert_trees_close,
                     check_gradients, check_pullbacks, check_second_order, fd_bound,
                     gradient_tolerance, panel_from_frame, problems_for,
                     pullbacks_against_autodiff, random_values, randomize, simulated_frame,
                     simulated_panel, third_differences, with_random_values)
from jaxiclv._example import reference_panel, reference_truth


# --------------------------------------------------------------------------------------------
# 1. Components: hand-derived pullbacks against jax.vjp
# --------------------------------------------------------------------------------------------

N_POINTS = 5
R_COMPONENT = 7


def _quadratic_index(p, z, lv):
    """A mean nonlinear in two latent variables, with a covariate."""
    return {"y1": p["a1"] + p["z1"] * lv["a"] * jnp.exp(p["c"] * lv["b"]) + p["d"] * z["z1"],
            "y2": p["a2"] + p["z2"] * lv["b"] ** 2}


def _user_index(**kinds):
    return jic.IndexEquation(_quadratic_index, {"a1": 0.1, "z1": 1.0, "c": 0.2, "d": 0.3,
                                                "a2": -0.2, "z2": 0.5},
                             indicators=["y1", "y2"], latent=["a", "b"], covariates=["z1"],
                             **kinds)


MEASUREMENT_BLOCKS = {
    # y2 loads on both latent variables
    "normal": lambda: jic.NormalIndicators({"a": ["y1", "y2"], "b": ["y3", "y2"]}),
    "oprobit": lambda: jic.OrderedProbit({"a": ["q1", "q2"], "b": ["q3", "q2"]}, levels=5),
    "ologit": lambda: jic.OrderedLogit({"a": ["q1"], "b": ["q2", "q3"]}, levels=4),
    "oprobit-2-levels": lambda: jic.OrderedProbit({"a": ["q1"], "b": ["q2"]}, levels=2),
    "ologit-2-levels": lambda: jic.OrderedLogit({"a": ["q1", "q2"]}, levels=2),
    # item intercepts and scales, thresholds shared by the items
    "oprobit-shared": lambda: jic.OrderedProbit({"a": ["q1", "q2"], "b": ["q3", "q2"]},
                                                levels=5, shared_thresholds="s",
                                                intercepts=True, scales=True),
    "ologit-shared-symmetric": lambda: jic.OrderedLogit(
        {"a": ["q1"], "b": ["q2", "q3"]}, levels=4, shared_thresholds="s", symmetric=True,
        intercepts=True, scales=True),
    "oprobit-symmetric": lambda: jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5,
                                                   symmetric=True, intercepts=True),
    "oprobit-symmetric-2-levels": lambda: jic.OrderedProbit({"a": ["q1", "q2"]}, levels=2,
                                                            symmetric=True, intercepts=True),
    # user-written index equations under the built-in kernels
    "normal-equation": lambda: jic.NormalIndicators(equation=_user_index()),
    "oprobit-equation": lambda: jic.OrderedProbit(equation=_user_index(), levels=4,
                                                  shared_thresholds="t", scales=True),
}


def _measurement_inputs(block, point, rng, scale=1.0):
    n_items, n_lv = len(block.indicators), len(block.latent)
    if isinstance(block, jic.NormalIndicators):
        values = rng.normal(size=n_items) * 2.0
    else:  # every level, both open ends included, over the points
        values = ((np.arange(n_items) + point) % block.levels + 1).astype(np.float64)
    covariates = rng.normal(size=len(block.covariates))
    lv = scale * rng.normal(size=(n_lv, R_COMPONENT))  # draws last
    return (values, covariates), lv, rng.normal(size=R_COMPONENT)


@pytest.mark.parametrize("name", list(MEASUREMENT_BLOCKS))
def test_measurement_pullback_matches_autodiff(name):
    rng = np.random.default_rng(list(MEASUREMENT_BLOCKS).index(name))
    block = MEASUREMENT_BLOCKS[name]()
    for point in range(N_POINTS):
        block = randomize(block, rng)
        check_pullbacks(block, *_measurement_inputs(block, point, rng), f"{name} point {point}")
    # a missing answer (NaN) adds nothing to the output or to any derivative
    (values, covariates), lv, cotangent = _measurement_inputs(block, 0, rng)
    values[0] = np.nan
    d_block = check_pullbacks(block, (values, covariates), lv, cotangent, f"{name} missing")[1]
    terms = block.parameter_terms()  # per indicator, unless a user's equation is one term
    own = set(terms[0]) - {n for term in terms[1:] for n in term} if len(terms) > 1 else set()
    assert own or isinstance(block.index, jic.IndexEquation), name
    for labels, grads in zip(jax.tree.leaves(block.labels()), jax.tree.leaves(d_block)):
        for label, grad in zip(np.ravel(labels), np.ravel(grads)):
            assert label not in own or grad == 0.0, (name, label, grad)


def _task_inputs(rng, n_tasks, n_alt, n_attr, binary):
    x = rng.normal(size=(n_tasks, n_alt, n_attr))
    if binary:
        available = np.ones((n_tasks, 1), dtype=bool)
        chosen = rng.integers(0, 2, n_tasks)
    else:
        available = rng.uniform(size=(n_tasks, n_alt)) < 0.7
        chosen = rng.integers(0, n_alt, n_tasks)
        available[np.arange(n_tasks), chosen] = True
        available[0] = True
    task_mask = np.ones(n_tasks, dtype=bool)
    task_mask[-1] = False  # a padded task: its (garbage) inputs must not matter
    return x, chosen.astype(np.int32), available, task_mask


def _time_scaled_utility(p, x, lv):
    """``b_time exp(lambda LV) time + b_cost cost / income``, alternative-specific constants."""
    return (jnp.stack([0.0, p["asc_B"], p["asc_C"], p["asc_D"]])
            + p["b_time"] * jnp.exp(p["lambda"] * lv["a"]) * x["x1"]
            + p["b_cost"] * x["x2"] / (1.5 + x["x3"] ** 2)
            + p["theta"] * lv["b"] * jnp.array([0.0, 1.0, 0.0, 1.0]))


def _probit_index(p, x, lv):
    return p["c"] + p["b1"] * x["x1"] * jnp.exp(p["l"] * lv["a"]) + p["b2"] * x["x2"] * lv["b"]


CHOICE_MODELS = {
    "binary-probit": lambda: jic.BinaryProbit(attributes=["x1", "x2", "x3"], latent=["a", "b"],
                                              interactions={"x1": ["b"], "x3": ["a", "b"]}),
    "mnl": lambda: jic.MultinomialLogit(["A", "B", "C", "D"], attributes=["x1", "x2"],
                                        latent={"a": ["B", "C"], "b": ["D"]},
                                        interactions={"x1": ["a"], "x2": ["a", "b"]}),
    "mnl-specific-scaled": lambda: jic.MultinomialLogit(
        ["A", "B", "C", "D"], attributes=["x1", "x2", "x3"], latent={"a": ["B", "C"]},
        alternative_specific={"x2": ["A", "C"], "x3": ["A", "B", "C", "D"]}, scale=True),
    "binary-scaled": lambda: jic.BinaryProbit(attributes=["x1"], latent=["a"], scale=True),
    "mnl-utility": lambda: jic.MultinomialLogit(["A", "B", "C", "D"], utility=jic.Utility(
        _time_scaled_utility, {"asc_B": 0.1, "asc_C": -0.2, "asc_D": 0.3, "b_time": -0.5,
                               "lambda": 0.2, "b_cost": -1.0, "theta": 0.4},
        attributes=["x1", "x2", "x3"], latent=["a", "b"])),
    # nests {A}, {B, C}, {D, E}: a singleton nest (no parameter), and nests that lose every
    # alternative in some tasks (random availability)
    "nested": lambda: jic.NestedLogit(["A", "B", "C", "D", "E"],
                                      {"a": ["A"], "bc": ["B", "C"], "de": ["D", "E"]},
                                      attributes=["x1", "x2"], latent={"a": ["B", "D"]},
                                      interactions={"x1": ["a"]}),
    "nested-scaled-utility": lambda: jic.NestedLogit(
        ["A", "B", "C", "D"], {"ab": ["A", "B"], "cd": ["C", "D"]}, scale=True,
        utility=jic.Utility(_time_scaled_utility, {
            "asc_B": 0.1, "asc_C": -0.2, "asc_D": 0.3, "b_time": -0.5, "lambda": 0.2,
            "b_cost": -1.0, "theta": 0.4}, attributes=["x1", "x2", "x3"], latent=["a", "b"])),
    # random coefficients (normal, both lognormals) and error components next to latent
    # variables, an interaction and an alternative-specific coefficient
    "mnl-random": lambda: jic.MultinomialLogit(
        ["A", "B", "C", "D"], attributes=["x1", "x2", "x3"], latent={"a": ["B", "C"]},
        interactions={"x1": ["a"]}, alternative_specific={"x3": ["A", "B"]},
        random={"x1": "normal", "x2": "-lognormal"}, error_components={"bc": ["B", "C"],
                                                                       "d": ["D"]}),
    "nested-random": lambda: jic.NestedLogit(
        ["A", "B", "C"], {"a": ["A"], "bc": ["B", "C"]}, attributes=["x1", "x2"],
        random={"x2": "lognormal"}, error_components={"ab": ["A", "B"]}, scale=True),
    "binary-random": lambda: jic.BinaryProbit(attributes=["x1", "x2"], latent=["a"],
                                              random={"x1": "normal", "x2": "-lognormal"}),
    "binary-utility": lambda: jic.BinaryProbit(utility=jic.Utility(
        _probit_index, {"c": 0.1, "b1": -0.5, "l": 0.3, "b2": 0.7}, attributes=["x1", "x2"],
        latent=["a", "b"]), scale=True),
}


def _choice_inputs(choice, rng, n_tasks=5, scale=1.0):
    """Tasks, and the inputs: latent variables, then the model's own draws (random terms)."""
    data = _task_inputs(rng, n_tasks, choice.n_alternatives, len(choice.attributes),
                        choice.binary)
    n_inputs = len(choice.latent) + len(choice.draw_names)
    return data, scale * rng.normal(size=(n_inputs, R_COMPONENT)), rng.normal(size=R_COMPONENT)


@pytest.mark.parametrize("name", list(CHOICE_MODELS))
def test_choice_pullback_matches_autodiff(name):
    rng = np.random.default_rng(list(CHOICE_MODELS).index(name) + 7)
    choice = CHOICE_MODELS[name]()
    for point in range(N_POINTS):
        choice = randomize(choice, rng)
        check_pullbacks(choice, *_choice_inputs(choice, rng), f"{name} point {point}")


@pytest.mark.parametrize("name", ["binary-probit", "mnl", "mnl-specific-scaled", "mnl-utility"])
def test_utility_pullback_matches_autodiff(name):
    """The utility inside a choice model on its own: ``V`` ``(T, J, R)`` and its pullback for a
    random cotangent of ``V``."""
    rng = np.random.default_rng(30 + list(CHOICE_MODELS).index(name))
    choice = CHOICE_MODELS[name]()
    utility = choice.utility
    for point in range(N_POINTS):
        utility = randomize(utility, rng)
        (x, *_), lv, _ = _choice_inputs(choice, rng)
        cotangent = rng.normal(size=(x.shape[0], choice.n_alternatives, R_COMPONENT))
        check_pullbacks(utility, x, lv, cotangent, f"{name} utility point {point}")


def _chain_structural():
    # Declared out of topological order; a -> b -> c and a -> c; free scales for b and c.
    return jic.Structural({"c": ["z1"], "a": ["z1", "z2"], "b": ["z2", "z3"]},
                          parents={"b": ["a"], "c": ["b", "a"]}, free_scale=["b", "c"],
                          intercepts=["c"])


def _squared_path(p, z, eta):
    a = p["g"] * z["z1"] + eta["a"]
    return {"a": a, "b": p["m"] + p["b"] * a ** 2 + jnp.exp(p["log_s"]) * eta["b"]}


STRUCTURAL_MODELS = {
    "linear-chain": _chain_structural,
    "user-equations": lambda: jic.LatentEquations(
        _squared_path, {"g": 0.5, "m": 0.1, "b": 0.3, "log_s": 0.0}, names=["a", "b"],
        covariates=["z1"], log_parameters=["log_s"]),
}


@pytest.mark.parametrize("name", list(STRUCTURAL_MODELS))
def test_structural_pullback_matches_autodiff(name):
    rng = np.random.default_rng(11)
    structural = STRUCTURAL_MODELS[name]()
    n_lv, n_cov = structural.n_latent, len(structural.covariates)
    for point in range(N_POINTS):
        structural = randomize(structural, rng)
        z, eta = rng.normal(size=n_cov), rng.normal(size=(R_COMPONENT, n_lv))
        g = rng.normal(size=(n_lv, R_COMPONENT))  # d loglik / d LV, draws last
        # every element of gamma, b (paths and not: b[l, m] off the paths does not enter, so
        # its derivative is 0), the intercepts and log_sigma of every latent variable
        check_pullbacks(structural, z, eta, g, f"{name} point {point}")


def test_structural_pullback_is_zero_for_paths_not_in_the_model():
    """``b[l, m]`` for a pair that is not a path (and the diagonal) does not enter the forward
    function, so its derivative is 0; ``loglik_and_grad`` returns a model-shaped pytree that
    should be ``dLL/d model`` for every leaf, as ``jax.grad`` of ``simulated_loglik`` is."""
    rng = np.random.default_rng(12)
    structural = randomize(_chain_structural(), rng)
    z, eta, g = rng.normal(size=3), rng.normal(size=(4, 3)), rng.normal(size=(3, 4))
    ours = check_pullbacks(structural, z, eta, g, "structural")
    not_a_path = np.asarray(structural.labels().b, dtype=str) == ""
    np.testing.assert_array_equal(np.asarray(ours[1].b)[not_a_path], 0.0,
                                  err_msg="analytic d/db at entries that are not paths")


# Extreme but valid points for every built-in kernel: the default autodiff pullback and the
# hand-derived one are the same closed forms in another order, so they agree to rounding here
# too (the probit kernel's derivative is a custom_jvp of density ratios on both sides; the MNL's
# y - P against autodiff of logsumexp).
EXTREME = {
    # probit and logit far tails: indices of +-30 against thresholds near 0
    "oprobit-index-30": ("oprobit", dict(zeta=(20.0, 30.0)), 1.0),
    "ologit-index-30": ("ologit", dict(zeta=(20.0, 30.0)), 1.0),
    "oprobit-shared-tiny-scales": ("oprobit-shared", dict(log_scale=(-6.0, -5.0)), 1.0),
    "normal-sigma-1e-4": ("normal", dict(log_sigma=(-9.3, -9.1)), 1.0),
    "normal-sigma-1e4": ("normal", dict(log_sigma=(9.1, 9.3)), 1.0),
    # utilities of +-40
    "mnl-utilities-40": ("mnl", dict(beta=(-20.0, 20.0), theta=(-10.0, 10.0)), 2.0),
    "binary-utilities-38": ("binary-probit", dict(beta=(-13.0, 13.0), asc=(-4.0, 4.0)), 1.0),
    "mnl-utility-40": ("mnl-utility", {}, 8.0),
    # alternative-specific coefficients and a choice scale of ~4, utilities of +-40
    "mnl-scaled-utilities-40": ("mnl-specific-scaled", dict(beta=(-8.0, 8.0), log_scale=(1.3, 1.5)),
                                2.0),
    "binary-scaled-utilities-38": ("binary-scaled", dict(beta=(-9.0, 9.0), log_scale=(1.3, 1.5)),
                                   1.0),
    # random coefficients with standard deviations of 3 to 5 (lognormal: exp(+-15))
    "mnl-random-sd-5": ("mnl-random", dict(sd=(3.0, 5.0), mu=(-1.0, 1.0)), 1.0),
    # utilities of +-40 in nests with lambda ~ 0.02: V / lambda of +-2000
    "nested-utilities-40-lambda-0.02": ("nested", dict(beta=(-20.0, 20.0), theta=(-10.0, 10.0),
                                                       log_lambda=(-4.0, -3.8)), 2.0),
}


@pytest.mark.parametrize("name", list(EXTREME))
def test_pullbacks_at_extreme_points(name):
    base, ranges, lv_scale = EXTREME[name]
    rng = np.random.default_rng(list(EXTREME).index(name) + 40)
    registry = MEASUREMENT_BLOCKS if base in MEASUREMENT_BLOCKS else CHOICE_MODELS
    component = randomize(registry[base](), rng, {**RANGES, **ranges})
    if registry is MEASUREMENT_BLOCKS:
        data, lv, w = _measurement_inputs(component, 1, rng, scale=lv_scale)
    else:
        data, lv, w = _choice_inputs(component, rng, scale=lv_scale)
    ours = check_pullbacks(component, data, lv, w, name)
    assert np.all(np.isfinite(np.asarray(ours[0])))


def _small_model(paths=True):
    latent = jic.Structural({"a": ["z1"], "b": ["z1", "z2"]},
                            parents={"b": ["a"]} if paths else None, free_scale=["b"])
    return jic.ICLV(latent, [jic.OrderedLogit({"a": ["q1"], "b": ["q2"]}, levels=3),
                             jic.NormalIndicators({"a": ["y1"], "b": ["y1", "y2"]})],
                    jic.MultinomialLogit(["A", "B", "C"], attributes=["x"],
                                         latent={"a": ["B"], "b": ["C"]},
                                         interactions={"x": ["b"]}))


def test_check_grads_of_the_custom_vjp_loglik():
    rng = np.random.default_rng(5)
    model = with_random_values(_small_model(), rng)
    panel = simulated_panel(model, 4, [2, 1, 3, 2], seed=1)
    problem = jic.Problem(model, panel, draws=jic.Halton(4, seed=1))
    space, data, draws = problem.space, problem.data, problem.draws
    f = jax.jit(lambda t: jic.simulated_loglik_analytic(space.unflatten(t), data, draws))
    theta = jnp.asarray(random_values(space.names, model.latent.names, rng))
    # Reverse mode against central differences (step 1e-4) in a random direction: truncation
    # ~1e-8 |f'''|, rounding ~eps |f| / 1e-4 ~ 1e-10; the projection is O(10..100).
    check_grads(f, (theta,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)




# --------------------------------------------------------------------------------------------
# 2. Whole models through Problem: analytic vs autodiff vs finite differences
# --------------------------------------------------------------------------------------------

N_INDIVIDUALS = 6
BALANCED = 3
UNBALANCED = [1, 3, 2, 3, 1, 2]  # the same padded shape (6 individuals x 3 tasks) as BALANCED


def grid_model(measurement, choice, paths):
    latent = jic.Structural({"a": ["z1", "z2"], "b": ["z2"]},
                            parents={"b": ["a"]} if paths else None,
                            free_scale=["b"] if paths else ())
    block = {"normal": lambda: jic.NormalIndicators({"a": ["y1", "y2"], "b": ["y3", "y2"]}),
             "oprobit": lambda: jic.OrderedProbit({"a": ["q1", "q2"], "b": ["q3"]}, levels=4),
             "ologit": lambda: jic.OrderedLogit({"a": ["q1"], "b": ["q2", "q3"]}, levels=5),
             }[measurement]()
    if choice == "probit":
        choice_model = jic.BinaryProbit(attributes=["x1", "x2"], latent=["a", "b"],
                                        interactions={"x1": ["b"]})
    else:
        choice_model = jic.MultinomialLogit(["A", "B", "C"], attributes=["x1", "x2"],
                                            latent={"a": ["B", "C"], "b": ["C"]},
                                            interactions={"x1": ["a"], "x2": ["b"]})
    return jic.ICLV(latent, block, choice_model)


# Each measurement x choice cell with and without LV-on-LV paths (the paths come with a free
# structural scale), each on a balanced and on an unbalanced panel of the same padded shape,
# at two random points each. Two structures run by default (between them: ordered probit and
# normal indicators, both choice models, with and without paths); the other ten are slow.
GRID = [(m, c, paths) for m in ("normal", "oprobit", "ologit") for c in ("probit", "mnl")
        for paths in (False, True)]
FAST = {("oprobit", "mnl", True), ("normal", "probit", False)}


def grid_case(measurement, choice, paths, n_tasks, seed_offset=0):
    seed = GRID.index((measurement, choice, paths))
    model = with_random_values(grid_model(measurement, choice, paths),
                               np.random.default_rng(100 + seed))
    panel = simulated_panel(model, N_INDIVIDUALS, n_tasks, seed + seed_offset)
    return model, panel


@pytest.mark.parametrize(
    ("measurement", "choice", "paths"),
    [pytest.param(*case, marks=() if case in FAST else pytest.mark.slow) for case in GRID],
    ids=[f"{m}-{c}-{'paths' if p else 'no-paths'}" for m, c, p in GRID])
def test_whole_model_gradients(measurement, choice, paths):
    rng = np.random.default_rng(GRID.index((measurement, choice, paths)))
    for panel_name, n_tasks, offset in (("balanced", BALANCED, 0), ("unbalanced", UNBALANCED, 50)):
        model, panel = grid_case(measurement, choice, paths, n_tasks, offset)
        assert np.asarray(panel.arrays.task_mask).all() == (panel_name == "balanced")
        problems = problems_for(model, panel)
        for point in range(2):
            theta = jnp.asarray(random_values(problems["analytic"].space.names,
                                              model.latent.names, rng))
            check_gradients(problems, theta, f"{panel_name} point {point}")


@pytest.mark.parametrize("chunk_size", [4, pytest.param(1, marks=pytest.mark.slow),
                                        pytest.param(6, marks=pytest.mark.slow)])
def test_chunked_equals_unchunked(chunk_size):
    # N = 6: chunk 4 leaves a remainder of 2; 1 and 6 are the two extremes.
    model, panel = grid_case("oprobit", "mnl", True, UNBALANCED, 50)
    gradients = ("analytic", "autodiff")
    whole = problems_for(model, panel, gradients=gradients)
    chunked = problems_for(model, panel, gradients=gradients, chunk_size=chunk_size)
    theta = jnp.asarray(random_values(whole["analytic"].space.names, model.latent.names,
                                      np.random.default_rng(3)))
    value, grad = whole["analytic"].loglik_and_grad(theta)
    atol = 1e-13 * np.abs(np.asarray(grad)).max()
    # the same per-individual computations, batched differently (~1e-16 relative)
    for gradient in gradients:
        chunked_value, chunked_grad = chunked[gradient].loglik_and_grad(theta)
        assert float(chunked_value) == pytest.approx(float(value), rel=1e-13, abs=0)
        np.testing.assert_allclose(chunked_grad, grad, rtol=1e-12, atol=atol, err_msg=gradient)
    np.testing.assert_allclose(chunked["analytic"].scores(theta), whole["analytic"].scores(theta),
                               rtol=1e-12, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [1, 4, 6])
def test_chunked_functional_api(chunk_size):
    model, panel = grid_case("oprobit", "mnl", True, UNBALANCED, 50)
    problem = jic.Problem(model, panel, draws=jic.Halton(N_DRAWS))
    model = problem.space.unflatten(jnp.asarray(random_values(
        problem.space.names, model.latent.names, np.random.default_rng(4))))
    run = jax.jit(jic.loglik_and_grad, static_argnames="chunk_size")
    value, grad = run(model, problem.data, problem.draws)
    chunked_value, chunked_grad = run(model, problem.data, problem.draws, chunk_size=chunk_size)
    assert float(chunked_value) == pytest.approx(float(value), rel=1e-13, abs=0)
    assert_trees_close(chunked_grad, grad, 1e-12, what=f"chunk {chunk_size}")


def test_reference_model_analytic_equals_autodiff():
    model, panel = reference_truth(), reference_panel()
    problems = problems_for(model, panel, n_draws=3, gradients=("analytic", "autodiff"))
    space = problems["analytic"].space
    assert space.size == 219
    truth = space.flatten(model)
    noise = np.random.default_rng(0).normal(size=space.size)
    for what, theta in (("truth", truth), ("perturbed", truth + 0.05 * jnp.asarray(noise))):
        check_gradients(problems, theta, what, finite_differences=False, autodiff_scores=False)


@pytest.mark.slow
def test_reference_model_finite_differences_and_autodiff_scores():
    model, panel = reference_truth(), reference_panel()
    problems = problems_for(model, panel, n_draws=3)
    space = problems["analytic"].space
    theta = space.flatten(model) + 0.05 * jnp.asarray(
        np.random.default_rng(1).normal(size=space.size))
    check_gradients(problems, theta, "perturbed")


# --------------------------------------------------------------------------------------------
# 3. Hessians: forward-over-reverse through the custom VJP
# --------------------------------------------------------------------------------------------

def _tiny_probit_model():
    latent = jic.Structural({"a": ["z1"], "b": ["z1"]}, parents={"b": ["a"]}, free_scale=["b"])
    return jic.ICLV(latent, jic.OrderedProbit({"a": ["q1"], "b": ["q2"]}, levels=3),
                    jic.BinaryProbit(attributes=["x"], latent=["a", "b"], interactions={"x": ["b"]}))


def _hessians(model, seed, problem_hessian=False):
    rng = np.random.default_rng(seed)
    model = with_random_values(model, rng)
    problem = jic.Problem(model, simulated_panel(model, 4, [2, 1, 3, 2], seed), draws=jic.Halton(3))
    space, data, draws = problem.space, problem.data, problem.draws
    analytic = lambda t: jic.simulated_loglik_analytic(space.unflatten(t), data, draws)
    plain = lambda t: jic.simulated_loglik(space.unflatten(t), data, draws)
    theta = jnp.asarray(random_values(space.names, model.latent.names, rng))

    # jax.jacfwd of the custom-VJP function itself cannot work: JAX has no JVP rule for a
    # custom_vjp function and says so (forward-over-reverse, below, is the supported route).
    # Under jit it raises while tracing (eagerly, only after seconds of op-by-op work).
    with pytest.raises(TypeError, match="forward-mode autodiff .* custom_vjp"):
        jax.jit(jax.jacfwd(analytic))(theta)

    h_analytic, h_autodiff = jax.jit(
        lambda t: (jax.jacfwd(jax.grad(analytic))(t), jax.hessian(plain)(t)))(theta)
    h_analytic, h_autodiff = np.asarray(h_analytic), np.asarray(h_autodiff)
    assert np.all(np.isfinite(h_analytic))
    # Second derivatives, each a sum of N R terms computed two ways in float64: agreement to
    # ~1e-13 of the largest entry; 1e-8 leaves ample room.
    scale = np.abs(h_autodiff).max()
    assert np.abs(h_analytic - h_autodiff).max() <= 1e-8 * scale
    assert np.abs(h_analytic - h_analytic.T).max() <= 1e-10 * scale
    if problem_hessian:  # what Problem.hessian runs: batched jvps of the gradient, and the
        # structured Hessian (per-draw scores + compressed directions), against autodiff
        for method in ("jacfwd", "structured"):
            np.testing.assert_allclose(problem.hessian(theta, method), h_autodiff, rtol=0,
                                       atol=1e-10 * scale, err_msg=method)
    return h_analytic


def test_hessian_forward_over_reverse_through_the_custom_vjp():
    _hessians(_tiny_probit_model(), seed=1, problem_hessian=True)


def test_structured_hessian_without_choice_with_fixed_parameters():
    """A MIMIC model (no choice model) with two measurement blocks, an indicator loading on
    two latent variables and user-fixed parameters: the structured Hessian equals autodiff's."""
    latent = jic.Structural({"a": ["z1", "z2"], "b": ["z2"]})
    model = jic.ICLV(latent, [jic.OrderedProbit({"a": ["q1", "q2"], "b": ["q2", "q3"]}, levels=4),
                              jic.NormalIndicators({"b": ["y1", "y2"]})])
    rng = np.random.default_rng(8)
    model = with_random_values(model, rng)
    problem = jic.Problem(model, simulated_panel(model, 7, 1, 8), draws=jic.Halton(4),
                          fixed=["q1.zeta.a", "q3.log_dtau2", "y1.alpha"])
    plain = jax.jit(jax.hessian(lambda t: jic.simulated_loglik(
        problem.space.unflatten(t), problem.data, problem.draws)))
    for _ in range(2):
        theta = jnp.asarray(random_values(problem.space.names, model.latent.names, rng))
        expected = np.asarray(plain(theta))
        got = np.asarray(problem.hessian(theta, "structured"))
        # sums of N R terms two ways in float64 (see _hessians)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_structured_hessian_with_a_shared_parameter_block():
    """A user-written block (default pullback) whose per-indicator terms share a parameter:
    the colouring joins the terms through it, and the Hessian stays exact."""
    model = jic.ICLV(jic.Structural({"a": ["z1"]}),
                     [SharedScaleNormal("a", ["y1", "y2", "y3"]),
                      jic.OrderedProbit({"a": ["q1", "q2"]}, levels=3)],
                     jic.BinaryProbit(attributes=["x1"], latent=["a"]))
    terms = model.parameter_terms()
    assert len(terms["shared.log_sigma"]) == 3 and terms["a.gamma.z1"] is None
    assert len(terms["y2.alpha"]) == 1 and terms["q2.tau1"] != terms["beta.x1"]
    rng = np.random.default_rng(4)
    model = with_random_values(model, rng)
    problem = jic.Problem(model, simulated_panel(model, 6, 2, 4), draws=jic.Halton(4))
    plain = jax.jit(jax.hessian(lambda t: jic.simulated_loglik(
        problem.space.unflatten(t), problem.data, problem.draws)))
    theta = jnp.asarray(random_values(problem.space.names, model.latent.names, rng))
    expected, got = np.asarray(plain(theta)), np.asarray(problem.hessian(theta, "structured"))
    # sums of N R terms two ways in float64 (see _hessians)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def _random_pattern_hessian(terms, rng):
    """A random symmetric matrix with the interaction pattern of ``terms``: structural
    parameters (None) dense, the others nonzero only with parameters of a common term."""
    h = rng.standard_normal((len(terms), len(terms)))
    h = h + h.T
    return h * np.array([[a is None or b is None or bool(a & b) for b in terms] for a in terms])


@pytest.mark.parametrize("case", ["partition", "overlapping"])
def test_compressed_directions_recover_a_sparse_hessian_exactly(case):
    """Colouring and read-back on random symmetric matrices with the pattern of
    ICLV.parameter_terms: disjoint terms (the built-in blocks) and terms joined by shared
    parameters."""
    from jaxiclv._structured_hessian import _recover, compressed_directions
    f = frozenset
    if case == "partition":
        terms = [None, f("1"), f("1"), f("2"), f("c"), None, f("2"), f("2"), f("c"), f("3")]
        expected_colors = 2 + 3  # two structural parameters + the largest term (2)
    else:  # p1 joins terms 1 and 2 (a shared threshold), p8 terms 3 and c
        terms = [None, f("12"), f("1"), f("1"), f("2"), f("3"), f("3"), f("c"), f("3c"), f("4")]
        expected_colors = None
    terms = [None if t is None else f(t) for t in terms]
    colors, n_colors = compressed_directions(terms)
    if expected_colors is not None:
        assert n_colors == expected_colors
    assert n_colors < len(terms)
    rng = np.random.default_rng(0)
    for _ in range(3):
        h = _random_pattern_hessian(terms, rng)
        directions = np.eye(n_colors)[:, colors]  # (C, P)
        np.testing.assert_array_equal(np.asarray(_recover(directions @ h, terms, colors)), h)


@pytest.mark.slow
def test_hessian_forward_over_reverse_logit_normal_mnl():
    _hessians(_small_model(), seed=2, problem_hessian=True)


# --------------------------------------------------------------------------------------------
# 4. Extreme but valid points
# --------------------------------------------------------------------------------------------
# The model-level scenarios reuse the structures and shapes of the grid above (normal-probit
# without paths, ordered-probit-MNL with paths), so Problem's compiled functions are reused.

def _extreme_case(structure, values, edit_frame, n_tasks=BALANCED):
    """The grid model ``structure`` with the named ``values`` set, on a panel whose frame
    ``edit_frame(df)`` changes; returns (problems, theta, model, panel, frame)."""
    model = grid_model(*structure)
    model = with_random_values(model, np.random.default_rng(GRID.index(structure)))
    model = jic.set_values(model, values)
    df = simulated_frame(model, N_INDIVIDUALS, n_tasks, seed=GRID.index(structure))
    df = edit_frame(df)
    panel = panel_from_frame(model, df)
    problems = problems_for(model, panel)
    return problems, problems["analytic"].space.flatten(model), model, panel, df


NORMAL_PROBIT = ("normal", "probit", False)
OPROBIT_MNL = ("oprobit", "mnl", True)
# Per-task multipliers of beta.x1: utilities of about +-25 and +-30 (both sides of the probit
# kernel's far-tail switch, at -25 now and at -30 before), +-35 and +-38, chosen on the likely
# and on the unlikely side.
UTILITY_MULTIPLIERS = np.array([24.99, 25.01, 29.99, 30.01, 35.0, 38.0,
                                -24.99, -30.01, -35.0, -38.0]) / 35.0


def _large_utilities(df):
    df = df.copy()
    rows = np.arange(len(df))
    df["x1"] = UTILITY_MULTIPLIERS[rows % len(UTILITY_MULTIPLIERS)]
    df["choice"] = (rows // len(UTILITY_MULTIPLIERS) + rows) % 2
    return df


def _binary_utilities(model, df):
    utility = model.choice.utility
    x = df[list(model.choice.attributes)].to_numpy()
    return float(utility.asc[0]) + x @ np.asarray(utility.beta)[0]  # without LV terms


def test_binary_probit_utilities_at_35():
    values = {"beta.x1": 35.0, "beta.x2": 0.3, "asc": 0.2, "theta.a": 0.01, "theta.b": -0.02,
              "kappa.x1.b": 0.001}
    problems, theta, model, _, df = _extreme_case(NORMAL_PROBIT, values, _large_utilities)
    v = _binary_utilities(model, df)
    assert np.abs(v).max() > 37.0 and (v < -30.0).any() and (v > 30.0).any()
    # Here both gradients are accurate: the kernel's far-tail branch and its derivatives stay
    # finite for utilities down to about -49 (see the next test).
    check_gradients(problems, theta, "utilities at +-35")


def test_binary_probit_utilities_far_in_the_tail():
    """Utilities down to -65: the analytic gradient (``d log Phi(sV) / dV = s phi(V) / Phi(sV)``,
    the inverse Mills ratio, evaluated as ``exp(log phi - log Phi)``) is finite and matches
    scipy's Mills ratio to 1e-11, and central differences of the (accurate) log-likelihood.

    Autodiff of the same log-likelihood goes through the kernel's far-tail branch, whose
    masked dummy arguments are what keep its reverse-mode derivative finite: up to commit
    63780e5 that branch overflowed beyond V ~ -49.4 and autodiff returned NaN here, while the
    analytic gradient did not. So autodiff is compared only where it is finite (today:
    everywhere, and it agrees), and the references above are what establish the analytic
    gradient in this region."""
    # No LV in the utility, so V does not depend on the draws and d LL / d beta is exactly
    # sum_it x_it s_it phi(V_it) / Phi(s_it V_it), whatever the draw weights.
    values = {"beta.x1": 60.0, "beta.x2": 0.3, "asc": 0.2, "theta.a": 0.0, "theta.b": 0.0,
              "kappa.x1.b": 0.0}
    problems, theta, model, _, df = _extreme_case(NORMAL_PROBIT, values, _large_utilities)
    v = _binary_utilities(model, df)
    sign = np.where(df["choice"].to_numpy() == 1, 1.0, -1.0)
    assert (sign * v).min() < -60.0 and (sign * v).max() > 60.0  # unlikely and likely choices
    an = problems["analytic"]
    value, grad = map(np.asarray, an.loglik_and_grad(theta))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # the reference: scipy's log_ndtr is accurate far into the tail
    mills = sign * np.exp(-0.5 * v * v - 0.5 * math.log(2.0 * math.pi) - sc.log_ndtr(sign * v))
    names = an.space.names
    for name, column in (("asc", None), ("beta.x1", "x1"), ("beta.x2", "x2")):
        x = 1.0 if column is None else df[column].to_numpy()
        expected = float(np.sum(x * mills))
        # |V| <= 65: the Mills ratio's relative condition number is ~V^2, so rounding V
        # (~1e-16 relative) moves it by ~1e-13; 1e-11 leaves room for the sum's cancellation.
        assert grad[names.index(name)] == pytest.approx(expected, rel=1e-11,
                                                       abs=1e-12 * np.abs(x * mills).sum())
    # central differences of the (finite, accurate) log-likelihood values: every element
    fd_value, fd_grad = map(np.asarray, problems["finite-difference"].loglik_and_grad(theta))
    bound = fd_bound(theta, fd_value, third_differences(an.loglik, theta))
    scores = np.asarray(an.scores(theta))
    tolerance = bound + gradient_tolerance(grad, scores, 1e-8)
    assert np.all(np.abs(fd_grad - grad) <= tolerance), (fd_grad - grad, tolerance)
    # autodiff: wherever it is finite, it agrees
    ad_value, ad_grad = map(np.asarray, problems["autodiff"].loglik_and_grad(theta))
    assert ad_value == pytest.approx(float(value), rel=1e-13)
    finite = np.isfinite(ad_grad)
    assert np.all(np.abs(ad_grad - grad)[finite] <= gradient_tolerance(grad, scores, 1e-8)[finite])


@pytest.mark.parametrize("scenario", ["one-hot draw weights", "utilities at 35"])
def test_structured_hessian_at_extreme_points(scenario):
    """The structured Hessian (per-draw scores, compressed directions) against autodiff's
    ``jax.hessian`` where the draw weights are one-hot (sigma = 1e-2, see below: the centred
    outer products vanish and the second-derivative term is all) and where probit utilities
    reach +-38 (the kernel's far-tail branch); there, ``second_order``'s LL, gradient, scores
    and Hessian (one program) equal the separate calls to rounding."""
    if scenario == "one-hot draw weights":
        values, edit = {f"{y}.log_sigma": math.log(1e-2) for y in ("y1", "y2", "y3")}, None
    else:
        values = {"beta.x1": 35.0, "beta.x2": 0.3, "asc": 0.2, "theta.a": 0.01,
                  "theta.b": -0.02, "kappa.x1.b": 0.001}
        edit = _large_utilities
    problems, theta, _, _, _ = _extreme_case(NORMAL_PROBIT, values, edit or (lambda df: df))
    an = problems["analytic"]
    plain = jax.jit(jax.hessian(lambda t: jic.simulated_loglik(an.space.unflatten(t), an.data,
                                                               an.draws)))
    expected, got = np.asarray(plain(theta)), np.asarray(an.hessian(theta, "structured"))
    assert np.all(np.isfinite(got))
    # sums of N R terms two ways in float64 (see _hessians)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    check_second_order(an, theta, scenario)


def _draw_logliks(model, problem):
    """``log L_ir`` ``(N, R)``."""
    return np.asarray(jax.jit(jax.vmap(model.draw_logliks))(problem.data, problem.draws))


@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1e4])
def test_normal_indicators_with_extreme_scales(sigma):
    """``sigma = 1e-4``: z-scores ~1e4, per-draw log-likelihoods ~-1e8 that differ by ~1e7
    between draws, so the draw weights are exactly one-hot in float64 and |LL| ~ 1e9;
    ``sigma = 1e-2``: weights one-hot up to ~1e-80; ``sigma = 1e4``: the indicators carry
    almost no information and the weights are nearly uniform."""
    values = {f"{y}.log_sigma": math.log(sigma) for y in ("y1", "y2", "y3")}
    problems, theta, model, _, _ = _extreme_case(NORMAL_PROBIT, values, lambda df: df)
    log_l = _draw_logliks(model, problems["analytic"])
    weights = np.exp(log_l - sc.logsumexp(log_l, axis=1, keepdims=True))
    second = np.sort(weights, axis=1)[:, -2]
    if sigma < 1.0:
        assert np.all(second < 1e-60)  # one draw dominates each individual
    else:
        assert np.all(weights.max(axis=1) < 0.99)  # the choices alone: no draw dominates
    # |LL| ~ 1e9 at sigma = 1e-4: central differences cannot resolve the O(1) elements
    # (rounding ~eps |LL| / h ~ 0.04), so they are compared for the other two scales only.
    out = check_gradients(problems, theta, f"sigma {sigma:g}", finite_differences=sigma > 1e-4)
    if sigma == 1e-4:
        assert np.abs(out["grad"]).max() > 1e7


def _narrow_thresholds(df):
    df = df.copy()
    df["q1"] = 2.0  # (tau_1, tau_1 + 1e-6]
    df["q2"] = 3.0  # (tau_2, tau_2 + 1e-6]
    return df


def test_ordered_probit_thresholds_1e6_apart_in_a_whole_model():
    """Probabilities ~4e-7, each a difference of two CDF values near 1/2: evaluated so, P is
    good to ~kappa eps only, kappa = F / P ~ 1 / width (the CDF difference's condition
    number), in every code path; so the values of the three paths agree to ~16 eps N / width
    (8 ulp per CDF value, N individuals), not to 1e-13. The derivatives with respect to the two
    ends, +-f/P ~ +-1e6, cancel to O(1) in the derivative with respect to the index (and so in
    every loading, LV and structural gradient); both gradients form those O(1) sums from the
    +-1e6 terms, so both are good to ~eps / width per term: the tolerance adds
    64 eps N / width. Central differences are not compared: with the log-likelihood noisy at
    ~1e-10, their rounding error (~1e-10 / h ~ 1e-5) swamps the comparison; the quadrature
    test below is the high-precision reference for this case."""
    width = 1e-6
    values = {"q1.log_dtau2": math.log(width), "q2.log_dtau3": math.log(width),
              "q1.tau1": -0.3, "q2.tau1": -0.8}
    problems, theta, *_ = _extreme_case(OPROBIT_MNL, values, _narrow_thresholds)
    check_gradients(problems, theta, "thresholds 1e-6 apart", finite_differences=False,
                    extra_atol=64.0 * EPS * N_INDIVIDUALS / width,
                    value_atol=16.0 * EPS * N_INDIVIDUALS / width)


# The ordered blocks alone, against a high-precision reference: scipy quadrature for both the
# probability P = int_lo^hi f and the cancelling sum f(hi) - f(lo) = int_lo^hi f' (so neither is
# a difference of nearly equal numbers), each to 1e-13 relative.

def _log_density(link, t):
    if link == "probit":
        return -0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
    t = abs(t)
    return -t - 2.0 * math.log1p(math.exp(-t))


def _density_slope_ratio(link, t):
    """``f'(t) / f(t)``."""
    return -t if link == "probit" else math.tanh(-0.5 * t)


def _quad(g, a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, error = scipy.integrate.quad(g, a, b, epsabs=0.0, epsrel=1e-13, limit=200)
    return value


def _ordered_terms(link, a, b):
    """``(d log P / d lower, d log P / d upper, their sum, kappa)`` for ``P = F(b) - F(a)``;
    ``kappa`` is the condition number of evaluating ``P`` as a difference of two CDF values
    (after reflecting the interval into the lower half), as the probit kernel does: 1 for an
    open interval, ``F(b) / P`` otherwise. The logit kernel forms ``P`` as
    ``F(b) F(-a) (1 - exp(a - b))`` with ``expm1``, without cancellation: kappa 1."""
    log_cdf = sc.log_ndtr if link == "probit" else sc.log_expit
    if math.isinf(a) and math.isinf(b):
        return 0.0, 0.0, 0.0, 1.0
    if math.isinf(a):
        d_hi = math.exp(_log_density(link, b) - log_cdf(b))
        return 0.0, d_hi, d_hi, 1.0
    if math.isinf(b):
        d_lo = -math.exp(_log_density(link, a) - log_cdf(-a))
        return d_lo, 0.0, d_lo, 1.0
    c = min(max(0.0, a), b)  # the density's largest value on [a, b]
    scaled = lambda t: math.exp(_log_density(link, t) - _log_density(link, c))
    p = _quad(scaled, a, b)
    slope = _quad(lambda t: _density_slope_ratio(link, t) * scaled(t), a, b)
    d_lo = -math.exp(_log_density(link, a) - _log_density(link, c)) / p
    d_hi = math.exp(_log_density(link, b) - _log_density(link, c)) / p
    kappa = 1.0
    if link == "probit":
        upper = -a if a + b > 0 else b
        kappa = max(1.0, math.exp(float(log_cdf(upper)) - _log_density(link, c) - math.log(p)))
    return d_lo, d_hi, slope / p, kappa


def _ordered_reference(block, values, lv, w):
    """The weighted gradients of an ordered block, and the scale of their inherent rounding
    errors: the same sums over ``|d_lo| (1 + g(lo)) + |d_hi| (1 + g(hi))`` (the cancelling
    terms ``+-f(x) / P``, each with the relative error ``~eps g(x)`` of a float64 evaluation of
    ``f(x)`` through ``log f(x)``: ``g(x) = x^2 / 2`` for the normal, ``|x|`` for the
    logistic density), plus ``kappa / 4`` times
    the sums over the terms themselves (``P``'s relative error is ``~kappa eps``: 16 eps kappa
    allowed against 64 eps for the rest)."""
    tau = np.asarray(block.thresholds)  # the very floats the block uses
    zeta = np.asarray(block.index.zeta)
    n_items, n_levels = tau.shape[0], tau.shape[1] + 1
    edges = np.concatenate([np.full((n_items, 1), -np.inf), tau, np.full((n_items, 1), np.inf)], 1)
    d_edges, d_edges_abs = np.zeros_like(edges), np.zeros_like(edges)
    d_zeta, d_zeta_abs = np.zeros_like(zeta), np.zeros_like(zeta)
    d_lv, d_lv_abs = np.zeros_like(lv), np.zeros_like(lv)
    for r in range(lv.shape[0]):
        for k in range(n_items):
            index = float(zeta[k] @ lv[r])  # exact: dyadic inputs
            j = int(values[k])
            lo, hi = edges[k, j - 1] - index, edges[k, j] - index
            d_lo, d_hi, total, kappa = _ordered_terms(block.link, lo, hi)
            # each term f(x) / P carries the rounding of log f(x): absolute ~eps x^2 / 2
            # (probit) or ~eps |x| (logit)
            growth = ((lambda x: 0.5 * x * x) if block.link == "probit" else abs)
            size_lo = abs(d_lo) * (1.0 + (growth(lo) if np.isfinite(lo) else 0.0))
            size_hi = abs(d_hi) * (1.0 + (growth(hi) if np.isfinite(hi) else 0.0))
            size = size_lo + size_hi + 0.25 * kappa * abs(total)
            d_edges[k, j - 1] += w[r] * d_lo
            d_edges[k, j] += w[r] * d_hi
            d_edges_abs[k, j - 1] += abs(w[r]) * (size_lo + 0.25 * kappa * abs(d_lo))
            d_edges_abs[k, j] += abs(w[r]) * (size_hi + 0.25 * kappa * abs(d_hi))
            d_zeta[k] -= w[r] * total * lv[r]
            d_zeta_abs[k] += abs(w[r]) * size * np.abs(lv[r])
            d_lv[r] -= w[r] * total * zeta[k]
            d_lv_abs[r] += abs(w[r]) * size * np.abs(zeta[k])
    assert n_levels == block.levels

    def thresholds(d):
        tail = np.cumsum(d[:, 1:-1][:, ::-1], axis=1)[:, ::-1]
        return tail[:, 0], np.exp(np.asarray(block.log_increments)) * tail[:, 1:]

    (tau1, log_dtau), (tau1_abs, log_dtau_abs) = thresholds(d_edges), thresholds(d_edges_abs)
    return (dict(tau1=tau1, log_dtau=log_dtau, zeta=d_zeta, lv=d_lv),
            dict(tau1=tau1_abs, log_dtau=log_dtau_abs, zeta=d_zeta_abs, lv=d_lv_abs))


@pytest.mark.parametrize("name", ["oprobit", "ologit"])
@pytest.mark.parametrize("centre", [0.3, -4.0, -25.0])
def test_ordered_block_with_thresholds_1e6_apart_against_quadrature(name, centre):
    """Every interval 1e-6 wide (levels 2 and 3), or open-ended, around ``centre``; the
    gradients of the block alone (the same compiled pullbacks as in section 1) against the
    quadrature reference. Both the analytic and the autodiff gradient sum +-f/P ~ 1e6 terms
    into O(1) results, so both are good to ~eps times the sum of the absolute terms (and not
    better: rounding of those terms, not of the inputs, which are identical on all sides);
    we allow 64 eps times that sum, plus 1e-12 relative."""
    block = MEASUREMENT_BLOCKS[name]()
    n_items, n_lv = len(block.indicators), len(block.latent)
    rng = np.random.default_rng(21)
    log_dtau = np.log(np.tile([1e-6, 1e-6] + [0.5] * (block.levels - 4), (n_items, 1)))
    zeta = rng.integers(-12, 13, size=(n_items, n_lv)) / 16.0  # dyadic: the index is exact
    block = eqx.tree_at(lambda m: (m.index.zeta, m.tau1, m.log_increments), block,
                        (jnp.asarray(zeta), jnp.full(n_items, centre),
                         jnp.asarray(log_dtau)))
    values = np.array([(2.0, 3.0, 1.0, float(block.levels))[k % 4] for k in range(n_items)])
    lv = rng.integers(-8, 9, size=(R_COMPONENT, n_lv)) / 8.0  # (R, L) here, draws last below
    w = rng.normal(size=R_COMPONENT)
    ours, default, one_draw = pullbacks_against_autodiff(
        block, (jnp.asarray(values), jnp.zeros(0)), jnp.asarray(lv.T), jnp.asarray(w))
    reference, scale = _ordered_reference(block, values, lv, w)
    assert scale["tau1"].max() > 1e5  # the scenario does reach the cancelling sums
    for what, (_, g, dl) in (("analytic", ours), ("autodiff", default),
                             ("one-draw autodiff", one_draw)):
        for field, value in (("tau1", g.tau1), ("log_dtau", g.log_increments),
                             ("zeta", g.index.zeta), ("lv", np.asarray(dl).T)):
            value, expected = np.asarray(value), reference[field]
            tolerance = 1e-12 * np.abs(expected) + 64.0 * EPS * scale[field]
            assert np.all(np.isfinite(value)), (what, field)
            assert np.all(np.abs(value - expected) <= tolerance), (
                what, field, value - expected, tolerance)


# --------------------------------------------------------------------------------------------
# 5. Property-based: random model shapes and parameter points
# --------------------------------------------------------------------------------------------

@jax.jit
def _analytic_and_autodiff(space, theta, data, draws):
    """``(LL, analytic gradient, analytic per-individual gradients, autodiff LL, autodiff
    gradient)`` over the free parameters, from the functional API."""
    model = space.unflatten(theta)
    value, grad = jic.loglik_and_grad(model, data, draws)
    _, per_individual = jic.loglik_and_grad_per_individual(model, data, draws)
    ad_value, ad_grad = jax.value_and_grad(
        lambda t: jic.simulated_loglik(space.unflatten(t), data, draws))(theta)
    return (value, space.flatten_gradient(grad), jax.vmap(space.flatten_gradient)(per_individual),
            ad_value, ad_grad)


@st.composite
def random_problems(draw):
    n_lv = draw(st.integers(1, 3))
    names = ("a", "b", "c")[:n_lv]
    covariates = {lv: draw(st.lists(st.sampled_from(["z1", "z2"]), unique=True, max_size=2))
                  for lv in names}
    covariates[names[0]] = covariates[names[0]] or ["z1"]
    parents = {}
    for i, lv in enumerate(names[1:], start=1):
        chosen = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=i))
        if chosen:
            parents[lv] = chosen
    free_scale = draw(st.lists(st.sampled_from(names), unique=True, max_size=n_lv))
    latent = jic.Structural(covariates, parents=parents, free_scale=free_scale)

    kinds = {lv: draw(st.sampled_from(["normal", "oprobit", "ologit"])) for lv in names}
    blocks = []
    for kind in ("normal", "oprobit", "ologit"):
        lvs = [lv for lv in names if kinds[lv] == kind]
        if not lvs:
            continue
        items = {lv: [f"{kind}_{lv}{k}" for k in range(draw(st.integers(1, 3)))] for lv in lvs}
        if len(lvs) > 1 and draw(st.booleans()):  # a cross-loading
            items[lvs[1]].append(items[lvs[0]][0])
        if kind == "normal":
            blocks.append(jic.NormalIndicators(items))
        else:
            cls = jic.OrderedProbit if kind == "oprobit" else jic.OrderedLogit
            blocks.append(cls(items, levels=draw(st.integers(2, 5))))

    attributes = [f"x{k}" for k in range(draw(st.integers(1, 2)))]
    choice_lvs = draw(st.lists(st.sampled_from(names), unique=True, max_size=n_lv))
    interactions = {a: draw(st.lists(st.sampled_from(choice_lvs), unique=True))
                    for a in attributes} if choice_lvs else {}
    if draw(st.booleans()):
        choice = jic.BinaryProbit(attributes=attributes, latent=choice_lvs,
                                  interactions=interactions)
    else:
        alts = [f"alt{j}" for j in range(draw(st.integers(2, 4)))]
        choice = jic.MultinomialLogit(
            alts, attributes=attributes, interactions=interactions,
            latent={lv: draw(st.lists(st.sampled_from(alts), unique=True, min_size=1))
                    for lv in choice_lvs})
    model = jic.ICLV(latent, blocks, choice)
    n = draw(st.integers(2, 5))
    n_tasks = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    n_draws = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    model = with_random_values(model, rng)
    panel = simulated_panel(model, n, n_tasks, seed)
    problem = jic.Problem(model, panel, draws=jic.PseudoRandom(n_draws, seed=seed))
    theta = jnp.asarray(random_values(problem.space.names, names, rng))
    return problem, theta


def _check_random_problem(problem, theta):
    value, grad, scores, ad_value, ad_grad = map(
        np.asarray, _analytic_and_autodiff(problem.space, theta, problem.data, problem.draws))
    assert value == pytest.approx(ad_value, rel=1e-13, abs=0)
    assert np.all(np.isfinite(grad))
    tolerance = gradient_tolerance(ad_grad, scores, 1e-8)
    bad = ~(np.abs(grad - ad_grad) <= tolerance)
    assert not bad.any(), ([problem.space.names[p] for p in np.flatnonzero(bad)],
                           (grad - ad_grad)[bad], tolerance[bad])
    np.testing.assert_allclose(scores.sum(axis=0), grad, rtol=0,
                               atol=1e-12 * np.abs(scores).sum(axis=0).max())


# Every example is a new model structure, hence one compilation (~4 s on 2 cores): 3 by default,
# 2 x 6 in the slow run, in two tests with their own seeds so that the two test processes share
# them (the CI budget of 25 minutes sets the number).
_HYPOTHESIS = dict(deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=3, derandomize=True, **_HYPOTHESIS)
@given(random_problems())
def test_random_models_analytic_equals_autodiff(case):
    _check_random_problem(*case)


def _many_random_models(shard: int):
    @pytest.mark.slow
    @seed(shard)
    @settings(max_examples=6, **_HYPOTHESIS)
    @given(random_problems())
    def test(case):
        _check_random_problem(*case)
        jax.clear_caches()  # every example is a new structure; keep compiled code from piling up
    return test


test_random_models_analytic_equals_autodiff_many_1 = _many_random_models(1)
test_random_models_analytic_equals_autodiff_many_2 = _many_random_models(2)


def test_check_gradient_table_compares_the_three_gradients():
    model = jic.ICLV(jic.Structural({"a": ["z"]}),
                     jic.OrderedProbit({"a": ["q1", "q2"]}, levels=3),
                     jic.BinaryProbit(attributes=["x"], latent=["a"]))
    truth = jic.set_values(model, {"a.gamma.z": 0.4, "beta.x": 0.8, "theta.a": 0.5})
    sim = jic.simulate(truth, 30, 2, seed=4)
    table = jic.check_gradient(truth, sim.panel, jic.Halton(10))
    assert list(table.index) == list(jic.ParameterSpace.from_model(truth).names)
    assert {"analytic", "autodiff", "finite-difference", "rel err vs autodiff",
            "rel err vs finite-difference"} <= set(table.columns)
    # analytic vs autodiff: rounding only; vs central differences: O(eps^(2/3)) relative
    assert table["rel err vs autodiff"].max() < 1e-10
    assert table["rel err vs finite-difference"].max() < 1e-6
    assert table["analytic"].abs().max() > 1.0  # a real gradient away from the optimum
