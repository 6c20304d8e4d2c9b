"""Random coefficients and error components (mixed logit, with and without latent variables):
the simulated likelihood against a brute-force evaluation, the draws' dimensions, bad
specifications, and coverage of 95 % intervals in a simulation (slow). The pullback is checked
against ``jax.vjp`` in ``test_gradients`` (CHOICE_MODELS, EXTREME), and the whole model's
gradients and every Hessian against autodiff in ``test_missing`` (every feature in one
model)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxiclv as jic
from helpers import (check_gradients, panel_from_frame, problems_for, random_values,
                     simulated_frame, simulated_panel)

TRUTH = {"asc.b": -0.2, "asc.c": 0.3, "beta.time": -0.6, "beta.time.sd": 0.5,
         "beta.cost.mu": -0.3, "beta.cost.sigma": 0.4, "ec.sd": 0.9}


def mixed_logit():
    """A panel mixed logit without latent variables: a normal time coefficient, a negative
    lognormal cost coefficient and an error component shared by b and c."""
    return jic.ICLV(choice=jic.MultinomialLogit(
        ["a", "b", "c"], attributes=["cost", "time"],
        random={"time": "normal", "cost": "-lognormal"}, error_components={"ec": ["b", "c"]}))


def test_loglik_equals_a_brute_force_simulated_likelihood():
    model = jic.set_values(mixed_logit(), TRUTH)
    assert model.draw_dimensions == ("eta.beta.time", "eta.beta.cost", "eta.ec")
    df = simulated_frame(model, 9, [3, 1, 4, 2, 3, 3, 1, 2, 4], seed=3)
    panel = panel_from_frame(model, df)  # with unavailable alternatives in some tasks
    assert not np.asarray(panel.arrays.available).all()
    draws = jic.make_draws(jic.Halton(6, seed=2), 9, 3)
    got = np.asarray(jax.jit(jic.loglik_per_individual)(model, panel.arrays, jnp.asarray(draws)))
    alternatives = ["a", "b", "c"]
    expected = []
    for n, ident in enumerate(panel.ids):
        rows = df[df["id"] == ident]
        available = np.asarray(panel.arrays.available)[n, :len(rows)]  # panel_from_frame's
        cost = rows[[f"cost_{a}" for a in alternatives]].to_numpy()
        time = rows[[f"time_{a}" for a in alternatives]].to_numpy()
        chosen = rows["choice"].map(alternatives.index).to_numpy()
        likelihood = []
        for eta_time, eta_cost, eta_ec in draws[n]:
            b_time = TRUTH["beta.time"] + TRUTH["beta.time.sd"] * eta_time
            b_cost = -np.exp(TRUTH["beta.cost.mu"] + TRUTH["beta.cost.sigma"] * eta_cost)
            v = (np.array([0.0, TRUTH["asc.b"], TRUTH["asc.c"]]) + b_time * time + b_cost * cost
                 + TRUTH["ec.sd"] * eta_ec * np.array([0.0, 1.0, 1.0]))
            p = np.where(available, np.exp(v), 0.0)
            p /= p.sum(axis=1, keepdims=True)
            likelihood.append(np.prod(p[np.arange(len(rows)), chosen]))
        expected.append(np.log(np.mean(likelihood)))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    # and its derivatives without latent variables (no structural directions): the analytic
    # gradient and scores against autodiff and central differences, the structured Hessian
    # against jax.hessian (as in test_missing's model of every feature, which has a normal
    # coefficient nowhere)
    problems = problems_for(model, panel)
    an = problems["analytic"]
    theta = jnp.asarray(random_values(an.space.names, (), np.random.default_rng(6)))
    check_gradients(problems, theta, "panel mixed logit")
    expected = np.asarray(jax.jit(jax.hessian(lambda t: jic.simulated_loglik(
        an.space.unflatten(t), an.data, an.draws)))(theta))
    np.testing.assert_allclose(an.hessian(theta, "structured"), expected, rtol=0,
                               atol=1e-10 * np.abs(expected).max())


def iclv_with_random_terms():
    return jic.ICLV(
        jic.Structural({"a": ["z1"]}),
        jic.OrderedProbit({"a": ["q1", "q2"]}, levels=3),
        jic.MultinomialLogit(["car", "bus", "rail"], attributes=["cost", "time"],
                             latent={"a": ["bus", "rail"]}, interactions={"time": ["a"]},
                             random={"time": "normal", "cost": "-lognormal"},
                             error_components={"pt": ["bus", "rail"]}))


def test_draws_without_the_random_terms_dimensions_are_an_error():
    model = iclv_with_random_terms()
    panel = simulated_panel(model, 5, 2, seed=1)
    with pytest.raises(ValueError, match=r"must have shape \(N, R, D\) = \(5, R, 4\), got "
                                         r"\(5, 10, 1\); the model's draw dimensions are "
                                         r"\['eta.a', 'eta.beta.time', 'eta.beta.cost', "
                                         r"'eta.pt'\]"):
        jic.Problem(model, panel, np.random.default_rng(0).normal(size=(5, 10, 1)))


def test_bad_random_terms_are_a_clear_error():
    alternatives = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"random coefficient of 'price', which is not one of"):
        jic.MultinomialLogit(alternatives, attributes=["cost"], random={"price": "normal"})
    with pytest.raises(ValueError, match=r"must be one of \('normal', 'lognormal', "
                                         r"'-lognormal'\), got 'uniform'"):
        jic.MultinomialLogit(alternatives, attributes=["cost"], random={"cost": "uniform"})
    with pytest.raises(ValueError, match=r"error component 'ec' needs alternatives of the "
                                         r"model"):
        jic.MultinomialLogit(alternatives, attributes=["cost"], error_components={"ec": ["d"]})
    with pytest.raises(ValueError, match="lognormal coefficient of 'cost' is generic"):
        jic.MultinomialLogit(alternatives, attributes=["cost"], random={"cost": "lognormal"},
                             alternative_specific=["cost"])
    with pytest.raises(TypeError, match=r"a user utility writes its own terms; \['random'\]"):
        jic.MultinomialLogit(alternatives, random={"cost": "normal"}, utility=jic.Utility(
            lambda p, x, lv: x["cost"] * p["b"], {"b": 0.0}, attributes=["cost"]))
    with pytest.raises(ValueError, match="needs a choice model or a measurement block"):
        jic.ICLV()


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth():
    """30 simulated panels (300 individuals x 5 tasks) from a mixed logit with a normal time
    coefficient, estimated with 200 antithetic MLHS draws: the robust 95 % intervals of the
    four parameters cover the truth at a rate within Monte Carlo error of 0.95."""
    model = jic.ICLV(choice=jic.MultinomialLogit(["a", "b", "c"], attributes=["cost", "time"],
                                                 random={"time": "normal"}))
    truth = {"asc.b": -0.2, "asc.c": 0.3, "beta.cost": -1.0, "beta.time": -0.6,
             "beta.time.sd": 0.8}
    covered = []
    for replication in range(30):
        sim = jic.simulate(jic.set_values(model, truth), 300, 5, seed=500 + replication)
        result = jic.estimate(model, sim.panel, jic.MLHS(200, seed=replication, antithetic=True),
                              optimizer="trust-exact")
        assert result.converged, result.message
        # the sign of the standard deviation is not identified (eta and -eta): compare |sd|
        estimates = result.params.copy()
        estimates["beta.time.sd"] = abs(estimates["beta.time.sd"])
        half = stats.norm.ppf(0.975) * result.bse
        covered.append(np.abs(estimates - np.array([truth[n] for n in result.names])) <= half)
    rate = np.mean(covered)
    # 150 intervals, correlated within a replication: with independent ones the rate's standard
    # error would be 0.018; [0.88, 0.99] is about four of those below and two above
    assert 0.88 <= rate <= 0.99, (rate, np.mean(covered, axis=0))
