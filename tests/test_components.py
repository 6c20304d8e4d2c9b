"""Open components: user-written utilities, index and structural equations and whole blocks;
shared parameters; the built-in ordered block with item intercepts, scales and shared (or
symmetric) thresholds; parameter names, kinds and the natural scale; bad input.

Tolerances: a user-written linear utility evaluates the built-in one's closed form in another
order, so the two models' log-likelihoods, gradients and Hessians agree to rounding (1e-12 of
the largest element here; the issue asks for 1e-10); their estimates agree to the optimiser's
tolerance (Newton to a relative gradient of 1e-12: ~1e-12 of the parameters, 1e-10 allowed).
The analytic gradients of the nonlinear models against autodiff and central differences use
``check_gradients`` (see test_gradients), the Hessians the bounds of test_hessian: exact methods
1e-10 of the largest entry (sums of N R terms two ways), forward differences 100 sqrt(eps),
central differences 100 eps^(2/3); ``Problem.second_order`` equals the separate calls to
rounding (1e-12 of the largest element, ``helpers.check_second_order``).
"""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.nn import log_sigmoid
from scipy import special, stats

import jaxiclv as jic
from helpers import (EPS, SharedScaleNormal, check_gradients, check_second_order,
                     panel_from_frame, problems_for, random_values, simulated_frame,
                     simulated_panel, with_random_values)

HESSIAN_BOUND = {"structured": 1e-10, "jacfwd": 1e-10, "fd-forward": 100 * np.sqrt(EPS),
                 "fd-central": 100 * EPS ** (2 / 3)}


def plain_hessian(problem):
    """``jax.hessian`` of the plain likelihood (no custom rule anywhere)."""
    return jax.jit(jax.hessian(lambda t: jic.simulated_loglik(
        problem.space.unflatten(t), problem.data, problem.draws)))


def check_every_hessian(problem, theta, what):
    """Every Hessian method against ``jax.hessian``, and ``second_order`` (the structured
    Hessian's one program) against the separate calls."""
    expected = np.asarray(plain_hessian(problem)(theta))
    scale = np.abs(expected).max()
    for method in jic.HESSIANS:
        got = np.asarray(problem.hessian(theta, method))
        assert np.all(np.isfinite(got)), (what, method)
        np.testing.assert_allclose(got, expected, rtol=0, atol=HESSIAN_BOUND[method] * scale,
                                   err_msg=f"{what}: {method}")
    check_second_order(problem, theta, what)


# --------------------------------------------------------------------------------------------
# A user-written utility that is linear equals the built-in linear specification
# --------------------------------------------------------------------------------------------

def _linear_utility(p, x, lv):
    """The built-in MNL utility of the model below, written by hand, with its names."""
    return (jnp.stack([0.0, p["asc.B"], p["asc.C"]]) + p["beta.x1"] * x["x1"]
            + p["beta.x2"] * x["x2"] + lv["a"] * jnp.stack([0.0, p["theta.a.B"], p["theta.a.C"]])
            + p["kappa.x1.a"] * x["x1"] * lv["a"])


LINEAR_START = {"asc.B": 0.0, "asc.C": 0.0, "beta.x1": 0.0, "beta.x2": 0.0, "theta.a.B": 0.0,
                "theta.a.C": 0.0, "kappa.x1.a": 0.0}


def _built_in_and_user_models():
    latent = jic.Structural({"a": ["z1"]})
    block = jic.OrderedProbit({"a": ["q1", "q2"]}, levels=4)
    built_in = jic.ICLV(latent, block, jic.MultinomialLogit(
        ["A", "B", "C"], attributes=["x1", "x2"], latent={"a": ["B", "C"]},
        interactions={"x1": ["a"]}))
    user = jic.ICLV(latent, block, jic.MultinomialLogit(["A", "B", "C"], utility=jic.Utility(
        _linear_utility, LINEAR_START, attributes=["x1", "x2"], latent=["a"])))
    return built_in, user


def _by_name(problem, vector):
    return dict(zip(problem.space.names, np.asarray(vector)))


def test_linear_user_utility_equals_the_built_in_one():
    built_in, user = _built_in_and_user_models()
    assert set(built_in.parameter_names()) == set(user.parameter_names())
    rng = np.random.default_rng(3)
    truth = with_random_values(built_in, rng)
    values = jic.ParameterSpace.from_model(truth).values(truth)
    user_truth = jic.set_values(user, values)
    panel = simulated_panel(truth, 40, 3, seed=3)
    draws = jic.Halton(8, seed=2)
    a, b = jic.Problem(truth, panel, draws), jic.Problem(user_truth, panel, draws)
    order = [b.space.names.index(n) for n in a.space.names]  # b's parameters in a's order
    for point in range(2):
        theta = jnp.asarray(random_values(a.space.names, ["a"], rng))
        theta_b = jnp.zeros_like(theta).at[np.asarray(order)].set(theta)
        (la, ga), (lb, gb) = a.loglik_and_grad(theta), b.loglik_and_grad(theta_b)
        assert float(lb) == pytest.approx(float(la), rel=1e-12)
        np.testing.assert_allclose(np.asarray(gb)[order], ga, rtol=0,
                                   atol=1e-12 * np.abs(np.asarray(ga)).max())
        ha, hb = (np.asarray(a.hessian(theta, "structured")),
                  np.asarray(b.hessian(theta_b, "structured")))
        np.testing.assert_allclose(hb[np.ix_(order, order)], ha, rtol=0,
                                   atol=1e-12 * np.abs(ha).max())
    # estimates on data simulated from the model (the panel above has every Likert level
    # forced to occur, which leaves some thresholds unidentified in so few individuals)
    panel = jic.simulate(truth, 150, 3, seed=4).panel
    fits = [jic.estimate(m, panel, draws, optimizer="trust-exact", gtol=1e-12)
            for m in (truth, user_truth)]
    for fit in fits:
        assert fit.status in (jic.Status.CONVERGED, jic.Status.STALLED), fit.message
    estimates = [fit.params[list(a.space.names)].to_numpy() for fit in fits]
    errors = [fit.bse[list(a.space.names)].to_numpy() for fit in fits]
    assert fits[1].llf == pytest.approx(fits[0].llf, rel=1e-13)
    error = np.abs(estimates[1] - estimates[0]) / np.maximum(np.abs(estimates[0]), 1.0)
    assert error.max() <= 1e-10, error.max()
    np.testing.assert_allclose(errors[1], errors[0], rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Nonlinear user equations: analytic gradients and every Hessian against autodiff
# --------------------------------------------------------------------------------------------

def _time_scaled(p, x, lv):
    """``beta_time exp(lambda LV)`` on time, cost divided by income, LV x attribute."""
    time_coefficient = p["b_time"] * jnp.exp(p["lambda"] * lv["a"])
    return (jnp.stack([0.0, p["asc_B"], p["asc_C"]]) + time_coefficient * x["time"]
            + p["b_cost"] * x["cost"] / x["income"]
            + p["kappa"] * x["time"] * lv["b"] * jnp.array([0.0, 1.0, 1.0]))


def _wtp_space(p, x, lv):
    """Willingness-to-pay space: ``V = exp(log_mu) (-cost + wtp_time time + theta LV)``."""
    return jnp.exp(p["log_mu"]) * (-x["cost"] + p["wtp_time"] * x["time"]
                                   + jnp.stack([0.0, p["asc_B"], p["asc_C"]])
                                   + p["theta"] * lv["a"] * jnp.array([0.0, 0.0, 1.0]))


def _interaction_mean(p, z, lv):
    """Indicator means nonlinear in two latent variables, one with a covariate."""
    return {"y1": p["m1"] + p["l1"] * lv["a"] * jnp.exp(p["c"] * lv["b"]) + p["d"] * z["z2"],
            "y2": p["m2"] + p["l2"] * lv["a"] + p["l3"] * lv["b"] ** 2}


def _quadratic_structural(p, z, eta):
    a = p["g1"] * z["z1"] + eta["a"]
    return {"a": a, "b": p["g2"] * z["z2"] + p["b"] * jnp.tanh(a) + jnp.exp(p["log_s"]) * eta["b"]}


def _nonlinear_model(utility: str, structural: str):
    latent = (jic.Structural({"a": ["z1"], "b": ["z2"]}, parents={"b": ["a"]})
              if structural == "linear" else
              jic.LatentEquations(_quadratic_structural, {"g1": 0.3, "g2": -0.2, "b": 0.5,
                                                          "log_s": 0.0},
                                  names=["a", "b"], covariates=["z1", "z2"],
                                  fixed=["log_s"], log_parameters=["log_s"]))
    blocks = [jic.OrderedLogit({"a": ["q1"], "b": ["q2"]}, levels=4),
              jic.NormalIndicators(equation=jic.IndexEquation(
                  _interaction_mean, {"m1": 0.0, "l1": 1.0, "c": 0.1, "d": 0.0, "m2": 0.0,
                                      "l2": 0.5, "l3": 0.2},
                  indicators=["y1", "y2"], latent=["a", "b"], covariates=["z2"]))]
    fn, start, attributes = {
        "time-scaled": (_time_scaled, {"asc_B": 0.1, "asc_C": -0.1, "b_time": -0.5,
                                       "lambda": 0.2, "b_cost": -1.0, "kappa": 0.1},
                        ["time", "cost", "income"]),
        "wtp-space": (_wtp_space, {"log_mu": 0.0, "wtp_time": -0.5, "asc_B": 0.1,
                                   "asc_C": -0.1, "theta": 0.2}, ["time", "cost"]),
    }[utility]
    choice = jic.MultinomialLogit(["A", "B", "C"], utility=jic.Utility(
        fn, start, attributes=attributes, latent=["a", "b"],
        log_parameters=["log_mu"] if utility == "wtp-space" else ()))
    return jic.ICLV(latent, blocks, choice)


def _positive_income(df):
    for alt in ("A", "B", "C"):
        df[f"income_{alt}"] = 1.0 + df[f"income_{alt}"] ** 2
    return df


@pytest.mark.parametrize(("utility", "structural"),
                         [("time-scaled", "linear"), ("wtp-space", "user")])
def test_nonlinear_user_equations_gradients_and_every_hessian(utility, structural):
    model = _nonlinear_model(utility, structural)
    rng = np.random.default_rng(5)
    names = model.parameter_names()
    model = jic.set_values(model, dict(zip(names, 0.5 * random_values(names, ["a", "b"], rng))))
    df = simulated_frame(model, 6, [3, 1, 2, 3, 2, 1], seed=5)
    panel = panel_from_frame(model, _positive_income(df) if utility == "time-scaled" else df)
    problems = problems_for(model, panel)
    theta = problems["analytic"].theta0
    check_gradients(problems, theta, f"{utility} / {structural}")
    check_every_hessian(problems["analytic"], theta, f"{utility} / {structural}")


class BinaryLogit(jic.AbstractChoice):
    """A user-written kernel: ``log P`` only; its derivative is the default ``jax.vjp``."""

    utility: jic.AbstractUtility
    log_scale: jax.Array
    scaled: bool = eqx.field(static=True)

    binary = True

    def __init__(self, attributes, latent):
        self.utility = jic.BinaryProbit(attributes=attributes, latent=latent).utility
        self.log_scale, self.scaled = jnp.zeros(()), False

    def log_prob(self, utility, choice, available):
        return log_sigmoid(jnp.where(choice[:, None] == 1, 1.0, -1.0) * utility[:, 0])

    def sample_choice(self, rng, utility, available):
        return (utility[..., 0] + rng.logistic(size=utility.shape[:-1]) > 0).astype(np.int32)


def test_user_written_kernel_and_block_with_every_gradient_and_hessian():
    """A choice kernel and a measurement block written by the user with forward functions
    only: every gradient option and every Hessian method work and agree with autodiff."""
    model = jic.ICLV(jic.Structural({"a": ["z1"]}), SharedScaleNormal("a", ["y1", "y2"]),
                     BinaryLogit(attributes=["x1"], latent=["a"]))
    rng = np.random.default_rng(6)
    model = with_random_values(model, rng)
    problems = problems_for(model, simulated_panel(model, 6, 2, seed=6))
    theta = problems["analytic"].theta0
    check_gradients(problems, theta, "user kernel and block")
    check_every_hessian(problems["analytic"], theta, "user kernel and block")


# --------------------------------------------------------------------------------------------
# Shared parameters
# --------------------------------------------------------------------------------------------

def _sharing_model():
    latent = jic.Structural({"a": ["z1"]})
    return jic.ICLV(latent, [jic.NormalIndicators({"a": ["y1", "y2"]}),
                             jic.OrderedProbit({"a": ["q1", "q2"]}, levels=4,
                                               shared_thresholds="t1"),
                             jic.OrderedProbit({"a": ["q3"]}, levels=4, shared_thresholds="t2")],
                    jic.MultinomialLogit(["A", "B", "C"], attributes=["x1"],
                                         latent={"a": ["B", "C"]}))


SHARED = {"lambda": ["theta.a.B", "theta.a.C"], "zeta": ["y1.zeta.a", "y2.zeta.a"],
          # the thresholds of two blocks: one set under the first block's names
          "t1.tau1": ["t2.tau1"], "t1.log_dtau2": ["t2.log_dtau2"],
          "t1.log_dtau3": ["t2.log_dtau3"]}


def test_shared_parameter_gradient_is_the_sum_over_its_places():
    unshared = _sharing_model()
    shared = jic.share(unshared, SHARED)
    assert shared.parameter_names().count("lambda") == 1
    assert len(shared.parameter_names()) == len(unshared.parameter_names()) - 5
    rng = np.random.default_rng(8)
    shared = with_random_values(shared, rng)
    values = jic.ParameterSpace.from_model(shared).values(shared)
    copies = {old: new for new, olds in SHARED.items() for old in olds}
    unshared = jic.set_values(unshared, {name: values[copies.get(name, name)]
                                         for name in unshared.parameter_names()})
    panel = simulated_panel(shared, 6, 2, seed=8)
    draws = jic.Halton(4)
    a, b = jic.Problem(unshared, panel, draws), jic.Problem(shared, panel, draws)
    (la, ga), (lb, gb) = a.loglik_and_grad(a.theta0), b.loglik_and_grad(b.theta0)
    assert float(lb) == pytest.approx(float(la), rel=1e-14)
    ga, gb = _by_name(a, ga), _by_name(b, gb)
    for name in b.space.names:
        expected = sum(ga[p] for p in [name, *SHARED.get(name, [])] if p in ga)
        assert gb[name] == pytest.approx(expected, rel=1e-12, abs=1e-12), name
    # the shared model's Hessians: the structured one keeps its compression (the shared
    # loadings join two indicators, the shared thresholds three) and is exact
    check_every_hessian(b, b.theta0, "shared")
    scores = np.asarray(b.scores(b.theta0))
    np.testing.assert_allclose(scores.sum(0), np.asarray(b.loglik_and_grad(b.theta0)[1]),
                               rtol=0, atol=1e-12 * np.abs(scores).sum(0).max())


def test_shared_parameters_keep_the_structured_compression():
    from jaxiclv._structured_hessian import compressed_directions
    model = jic.share(_sharing_model(), SHARED)
    space = jic.ParameterSpace.from_model(model)
    terms = model.parameter_terms()
    _, n_colors = compressed_directions([terms[n] for n in space.names])
    # structural: a.gamma.z1, its own direction; the other terms share directions unless a
    # parameter joins them: y1 and y2 are joined by the shared loading (their alpha and
    # log_sigma, and zeta: 5 directions), q1, q2 and q3 by the shared thresholds (3 loadings
    # and 3 thresholds: 6); the choice model's 4 parameters fit in those 6
    assert n_colors == 1 + 6
    assert n_colors < space.size


def test_share_errors_name_the_parameters():
    model = _sharing_model()
    with pytest.raises(KeyError, match=re.escape("'theta.a.D'")):
        jic.share(model, {"lambda": ["theta.a.B", "theta.a.D"]})
    moved = jic.set_values(model, {"theta.a.B": 0.5})
    with pytest.raises(ValueError, match="different starting values"):
        jic.share(moved, {"lambda": ["theta.a.B", "theta.a.C"]})
    with pytest.raises(ValueError, match="two meanings"):  # a log sd and an intercept
        jic.share(model, {"s": ["y1.log_sigma", "y2.alpha"]})
    with pytest.raises(ValueError, match="two shared names"):
        jic.share(model, {"l1": ["theta.a.B"], "l2": ["theta.a.B"]})


def test_user_equations_share_by_name_and_check_their_declarations():
    def utility(p, x, lv):
        return jnp.stack([0.0, p["b"] * x["x1"][1] + p["shared"] * lv["a"]])

    def mean(p, z, lv):
        return [p["shared"] * lv["a"]]

    make = lambda start: jic.ICLV(
        jic.Structural({"a": []}),
        jic.NormalIndicators(equation=jic.IndexEquation(mean, {"shared": start},
                                                        indicators=["y1"], latent=["a"])),
        jic.MultinomialLogit(["A", "B"], utility=jic.Utility(
            utility, {"b": 0.0, "shared": 1.0}, attributes=["x1"], latent=["a"])))
    assert make(1.0).parameter_names().count("shared") == 1
    with pytest.raises(ValueError, match=r"'shared' is used in several places with different "
                                         r"starting values"):
        make(2.0)
    # the same name as a log in one equation and a coefficient in the other
    with pytest.raises(ValueError, match="two meanings"):
        jic.ICLV(jic.Structural({"a": []}),
                 jic.NormalIndicators(equation=jic.IndexEquation(
                     mean, {"shared": 1.0}, indicators=["y1"], latent=["a"],
                     log_parameters=["shared"])),
                 jic.MultinomialLogit(["A", "B"], utility=jic.Utility(
                     utility, {"b": 0.0, "shared": 1.0}, attributes=["x1"], latent=["a"])))


# --------------------------------------------------------------------------------------------
# Ordered indicators with item intercepts and scales, thresholds shared: brute force
# --------------------------------------------------------------------------------------------

ORDERED_VARIANTS = {"probit-increasing": ("probit", False), "logit-increasing": ("logit", False),
                    "probit-symmetric": ("probit", True), "logit-symmetric": ("logit", True)}


@pytest.mark.parametrize("variant", list(ORDERED_VARIANTS))
def test_shared_threshold_ordered_model_against_brute_force(variant):
    """``P(I_k = j) = F((tau_j - mu_k - zeta_k LV) / s_k) - F((tau_{j-1} - ...) / s_k)`` with
    the thresholds shared by the items, computed with scipy in a loop over individuals, draws
    and items: the same numbers to 1e-12 relative."""
    link, symmetric = ORDERED_VARIANTS[variant]
    levels = 5
    items = ["q1", "q2", "q3"]
    block = jic.OrderedMeasurement({"a": items}, levels, link=link, shared_thresholds="att",
                                   symmetric=symmetric, intercepts=True, scales=True)
    model = jic.ICLV(jic.Structural({"a": ["z1"]}), block)
    values = {"a.gamma.z1": 0.4, "q2.alpha": 0.3, "q3.alpha": -0.5, "q1.zeta.a": 1.2,
              "q2.zeta.a": -0.7, "q3.zeta.a": 0.9, "q2.log_scale": 0.4, "q3.log_scale": -0.3}
    tau = np.array([-1.3, -0.4, 0.4, 1.3]) if symmetric else np.array([-1.5, -0.2, 0.6, 1.1])
    values.update({f"att.tau{j + 1}": t for j, t in enumerate(tau)})
    if symmetric:
        values["q1.alpha"] = 0.2  # symmetric thresholds fix the location: every alpha is free
    model = jic.set_values(model, values)
    assert ("q1.alpha" in model.parameter_names()) == symmetric
    assert "q1.log_scale" not in model.parameter_names()
    derived = model.natural_values()
    np.testing.assert_allclose([float(derived[f"att.tau{j}"]) for j in range(1, levels)], tau,
                               rtol=1e-14)
    panel = jic.simulate(model, 5, 1, seed=2).panel
    draws = jic.make_draws(jic.Halton(3, seed=1), 5, 1)
    got = float(jic.simulated_loglik(model, panel.arrays, jnp.asarray(draws)))
    cdf = stats.norm.cdf if link == "probit" else special.expit
    edges = np.concatenate([[-np.inf], tau, [np.inf]])
    z = np.asarray(panel.arrays.covariates)[:, 0]
    answers = np.asarray(panel.arrays.indicators).astype(int)
    alpha = [values.get(f"{i}.alpha", 0.0) for i in items]
    zeta = [values[f"{i}.zeta.a"] for i in items]
    scale = [math.exp(values.get(f"{i}.log_scale", 0.0)) for i in items]
    expected = 0.0
    for n in range(5):
        likelihoods = []
        for r in range(3):
            lv = 0.4 * z[n] + draws[n, r, 0]
            p = 1.0
            for k in range(3):
                j = answers[n, k]
                mean = alpha[k] + zeta[k] * lv
                p *= cdf((edges[j] - mean) / scale[k]) - cdf((edges[j - 1] - mean) / scale[k])
            likelihoods.append(p)
        expected += math.log(np.mean(likelihoods))
    assert got == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Names, natural scale, normalisations
# --------------------------------------------------------------------------------------------

def test_parameter_names_and_thresholds_on_their_own_scale():
    model = jic.ICLV(jic.Structural({"a": ["z1"]}),
                     [jic.OrderedProbit({"a": ["q1"]}, levels=4),
                      jic.NormalIndicators({"a": ["y1"]})],
                     jic.BinaryProbit(attributes=["x1"], latent=["a"], scale=True))
    assert model.parameter_names() == (
        "a.gamma.z1", "q1.zeta.a", "q1.tau1", "q1.log_dtau2", "q1.log_dtau3", "y1.alpha",
        "y1.zeta.a", "y1.log_sigma", "asc", "beta.x1", "theta.a", "choice.log_scale")
    assert model.parameter_names(fixed=["asc"])[8] == "beta.x1"
    model = jic.set_values(model, {"q1.tau2": -0.5, "q1.tau3": 1.5, "y1.sigma": 2.0,
                                   "choice.scale": 0.5})
    natural = model.natural_values()
    assert [float(natural[f"q1.tau{j}"]) for j in (1, 2, 3)] == pytest.approx([-2.0, -0.5, 1.5])
    assert float(natural["y1.sigma"]) == pytest.approx(2.0)
    assert float(natural["choice.scale"]) == pytest.approx(0.5)
    values = jic.ParameterSpace.from_model(model).values(model)
    assert values["q1.log_dtau3"] == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError, match=re.escape("thresholds of 'q1' must be finite and "
                                                   "increasing, got [-2.0, 1.0, 0.5]")):
        jic.set_values(model, {"q1.tau2": 1.0, "q1.tau3": 0.5})
    with pytest.raises(ValueError, match="y1.sigma must be positive"):
        jic.set_values(model, {"y1.sigma": -1.0})
    with pytest.raises(KeyError, match="did you mean"):
        jic.set_values(model, {"q1.tau9": 1.0})


def test_symmetric_thresholds_set_on_their_own_scale():
    block = jic.OrderedLogit({"a": ["q1", "q2"]}, levels=4, shared_thresholds="s",
                             symmetric=True, intercepts=True)
    model = jic.ICLV(jic.Structural({"a": []}), block)
    assert [n for n in model.parameter_names() if n.startswith("s.")] == ["s.log_delta1"]
    model = jic.set_values(model, {"s.tau1": -0.7, "s.tau2": 0.0, "s.tau3": 0.7})
    assert float(model.natural_values()["s.tau3"]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="symmetric around 0"):
        jic.set_values(model, {"s.tau1": -0.5, "s.tau3": 0.7})


def test_identification_rules_of_the_ordered_block():
    with pytest.raises(ValueError, match="item intercepts are not identified"):
        jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5, intercepts=True)
    with pytest.raises(ValueError, match="item scales are not identified"):
        jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5, symmetric=True, scales=True)
    with pytest.raises(ValueError, match="link must be one of"):
        jic.OrderedMeasurement({"a": ["q1"]}, 5, link="cloglog")
    block = jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5, shared_thresholds="s",
                              intercepts=True, scales=True)
    assert set(block.fixed_labels()) == {"q1.alpha", "q1.log_scale"}


def test_normalising_on_an_indicator_gives_the_same_fit():
    """Biogeme's normalisation (a latent variable with an intercept and a free scale, one
    indicator's intercept and loading fixed) is a reparameterisation of the default one (the
    latent variable's mean 0 and scale 1): the same maximum of the log-likelihood."""
    def model(biogeme):
        latent = jic.Structural({"a": ["z1"]}, intercepts=["a"] if biogeme else (),
                                free_scale=["a"] if biogeme else ())
        return jic.ICLV(latent, jic.NormalIndicators({"a": ["y1", "y2", "y3"]}),
                        jic.BinaryProbit(attributes=["x1"], latent=["a"]))
    truth = jic.set_values(model(False), {"a.gamma.z1": 0.5, "y1.alpha": 1.0, "y1.zeta.a": 0.8,
                                          "y2.zeta.a": 0.6, "y3.zeta.a": -0.7, "theta.a": 0.6,
                                          "beta.x1": -1.0})
    panel = jic.simulate(truth, 200, 3, seed=4).panel
    draws = jic.Halton(30)
    default = jic.estimate(model(False), panel, draws, optimizer="trust-exact", gtol=1e-10)
    start = jic.set_values(model(True), {"y1.zeta.a": 1.0})
    biogeme = jic.estimate(start, panel, draws, fixed=["y1.alpha", "y1.zeta.a"],
                           optimizer="trust-exact", gtol=1e-10)
    assert default.converged and biogeme.converged
    assert biogeme.llf == pytest.approx(default.llf, rel=1e-10)
    # the mapping between the two: LV_biogeme = alpha_1 + zeta_1 LV_default
    assert biogeme.params["a.intercept"] == pytest.approx(default.params["y1.alpha"], rel=1e-5)
    assert math.exp(biogeme.params["a.log_sigma"]) == pytest.approx(
        abs(default.params["y1.zeta.a"]), rel=1e-5)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def _user_model(fn, start, **utility):
    return jic.ICLV(jic.Structural({"a": []}), jic.NormalIndicators({"a": ["y1"]}),
                    jic.MultinomialLogit(["A", "B", "C"], utility=jic.Utility(
                        fn, start, attributes=["x1"], latent=["a"], **utility)))


def _panel_for(model, n=4):
    truth = jic.ICLV(model.latent, model.measurement,
                     jic.MultinomialLogit(["A", "B", "C"], attributes=["x1"]))
    return jic.simulate(truth, n, 2, seed=1).panel


def test_user_utility_errors_name_the_function_and_the_name():
    def short(p, x, lv):
        return jnp.stack([0.0, p["b"] * x["x1"][1]])

    def missing(p, x, lv):
        return {"A": 0.0, "B": p["b"] * x["x1"][1]}

    def undeclared_parameter(p, x, lv):
        return p["b"] * x["x1"] + p["beta"]

    def undeclared_attribute(p, x, lv):
        return p["b"] * x["x2"]

    cases = [(short, ValueError, r"Utility 'short' must return 3 values \(one for each of "
                                 r"\['A', 'B', 'C'\]\), got shape \(2,\)"),
             (missing, ValueError, r"Utility 'missing' must return a value for each of .*"
                                   r"missing: \['C'\]"),
             (undeclared_parameter, KeyError, r"Utility 'undeclared_parameter' uses parameter "
                                              r"'beta', which it does not declare"),
             (undeclared_attribute, KeyError, r"Utility 'undeclared_attribute' uses attribute "
                                              r"'x2', which it does not declare")]
    for fn, error, message in cases:
        model = _user_model(fn, {"b": 0.0})
        problem = jic.Problem(model, _panel_for(model), jic.Halton(3))
        with pytest.raises(error, match=message):
            problem.loglik(problem.theta0)
    with pytest.raises(KeyError, match=r"fixed parameter 'c' is not declared"):
        jic.Utility(short, {"b": 0.0}, fixed=["c"])
    with pytest.raises(ValueError, match=r"starting value of parameter 'b' must be one finite"):
        jic.Utility(short, {"b": np.nan})
    with pytest.raises(TypeError, match="attributes must be a list of names"):
        jic.Utility(short, {"b": 0.0}, attributes="x1")
    with pytest.raises(TypeError, match="a user utility writes its own terms"):
        jic.MultinomialLogit(["A", "B"], attributes=["x1"], utility=jic.Utility(short, {}))


def test_non_finite_user_utility_is_reported_with_the_component_and_individual():
    def overflowing(p, x, lv):
        return jnp.stack([0.0, p["b"] * x["x1"][1], jnp.log(p["c"] - x["x1"][2] ** 2)])

    model = _user_model(overflowing, {"b": 0.5, "c": 0.0})
    panel = _panel_for(model)
    with pytest.raises(FloatingPointError) as info:
        jic.estimate(model, panel, jic.Halton(3))
    message = str(info.value)
    assert "the utility of alternative 'C' is " in message
    assert f"in task 1 of individual {panel.ids[0].item()!r}" in message
    assert "MultinomialLogit with Utility 'overflowing'" in message and "c = 0" in message
