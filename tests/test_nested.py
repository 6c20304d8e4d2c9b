"""The nested logit: its kernel against a brute-force evaluation of the formula, the
multinomial logit at lambda = 1, recovery of known parameters from simulated data (slow), and
nests that do not partition the alternatives. Its pullback is checked against ``jax.vjp`` in
``test_gradients`` (CHOICE_MODELS, EXTREME), and the whole model's gradients and every Hessian
against autodiff in ``test_missing`` (every feature in one model)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jaxiclv as jic
from jaxiclv._kernels import multinomial_logit_log_prob, nested_logit_log_prob

NEST_OF = np.array([0, 1, 1, 2, 2, 2])  # {0}, {1, 2}, {3, 4, 5}


def _brute_force(utility, chosen, available, lam):
    """``log P(chosen)`` by the textbook formula, task by task and draw by draw."""
    n_tasks, n_alternatives, n_draws = utility.shape
    out = np.empty((n_tasks, n_draws))
    for t in range(n_tasks):
        for r in range(n_draws):
            v = utility[t, :, r]
            inclusive = {}
            for m in range(len(lam)):
                members = [j for j in range(n_alternatives) if NEST_OF[j] == m and available[t, j]]
                if members:
                    inclusive[m] = np.log(sum(np.exp(v[j] / lam[m]) for j in members))
            c, m = chosen[t], NEST_OF[chosen[t]]
            p_in_nest = np.exp(v[c] / lam[m] - inclusive[m])
            p_nest = np.exp(lam[m] * inclusive[m]) / sum(np.exp(lam[k] * inclusive[k])
                                                         for k in inclusive)
            out[t, r] = np.log(p_in_nest * p_nest)
    return out


def _kernel_inputs(rng, n_tasks=8, n_draws=3):
    utility = 2.0 * rng.normal(size=(n_tasks, len(NEST_OF), n_draws))
    available = rng.uniform(size=(n_tasks, len(NEST_OF))) < 0.7
    chosen = rng.integers(0, len(NEST_OF), n_tasks)
    chosen[0] = 0
    available[0] = [True, False, False, True, True, True]  # nest {1, 2} empty
    available[1] = [False, True, True, False, False, False]  # only nest {1, 2}
    chosen[1] = 2
    available[np.arange(n_tasks), chosen] = True
    return utility, chosen, available


def test_kernel_equals_the_formula_and_the_multinomial_logit_at_lambda_one():
    rng = np.random.default_rng(0)
    utility, chosen, available = _kernel_inputs(rng)
    for log_lambda in (rng.uniform(-1.5, 0.0, 3), np.array([0.0, -3.0, -0.01])):
        got = nested_logit_log_prob(jnp.asarray(utility), jnp.asarray(chosen),
                                    jnp.asarray(available), jnp.asarray(log_lambda), NEST_OF)
        # log-probabilities of size ~10 by two summation orders: ~1e-15 absolute
        np.testing.assert_allclose(got, _brute_force(utility, chosen, available,
                                                     np.exp(log_lambda)), rtol=1e-13, atol=1e-13)
    # every alternative's probability, summed over the available ones, is 1
    log_lambda = jnp.asarray(rng.uniform(-1.5, 0.0, 3))
    total = sum(np.where(available[:, j, None], np.exp(nested_logit_log_prob(
        jnp.asarray(utility), jnp.full(len(chosen), j), jnp.asarray(available), log_lambda,
        NEST_OF)), 0.0) for j in range(len(NEST_OF)))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-14)
    mnl = multinomial_logit_log_prob(jnp.asarray(utility), jnp.asarray(chosen)[:, None],
                                     jnp.asarray(available)[:, :, None], axis=1)
    np.testing.assert_allclose(nested_logit_log_prob(
        jnp.asarray(utility), jnp.asarray(chosen), jnp.asarray(available), jnp.zeros(3), NEST_OF),
        mnl, rtol=1e-14, atol=1e-14)


def nested_model():
    return jic.ICLV(
        jic.Structural({"a": ["z1"]}),
        jic.OrderedProbit({"a": ["q1", "q2"]}, levels=3),
        jic.NestedLogit(["car", "bus", "rail", "walk"],
                        {"car": ["car"], "public": ["bus", "rail"], "walk": ["walk"]},
                        attributes=["cost", "time"], latent={"a": ["bus", "rail"]},
                        interactions={"cost": ["a"]}))


def test_names_and_the_natural_scale():
    model = nested_model()
    names = jic.ParameterSpace.from_model(model).names
    # one log-sum parameter: the singleton nests have none
    assert [n for n in names if "lambda" in n] == ["public.log_lambda"]
    model = model.set_natural({"public.lambda": 0.5})
    assert float(model.natural_values()["public.lambda"]) == pytest.approx(0.5, rel=1e-15)


@pytest.mark.slow
def test_estimates_recover_the_simulated_parameters():
    """A nested logit without latent variables (a structural model the choice model does not
    use): 1,500 individuals x 4 tasks from known values, lambda = 0.5; every estimate within
    3.5 standard errors of the truth (each fails with probability 5e-4 by chance)."""
    choice = jic.NestedLogit(["car", "bus", "rail"], {"car": ["car"], "pt": ["bus", "rail"]},
                             attributes=["cost", "time"])
    model = jic.ICLV(jic.Structural({"unused": []}), choice=choice)
    truth = {"asc.bus": -0.3, "asc.rail": 0.2, "beta.cost": -1.0, "beta.time": -0.5,
             "pt.log_lambda": float(np.log(0.5))}
    sim = jic.simulate(jic.set_values(model, truth), 1500, 4, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = jic.estimate(model, sim.panel, jic.PseudoRandom(1), optimizer="trust-exact")
    assert result.converged
    z = (result.params - np.array([truth[n] for n in result.names])) / result.bse
    assert np.all(np.abs(z) < 3.5), z


def test_nests_must_partition_the_alternatives():
    alternatives = ["car", "bus", "rail"]
    with pytest.raises(ValueError, match=r"alternatives \['rail'\] are in no nest"):
        jic.NestedLogit(alternatives, {"car": ["car"], "pt": ["bus"]})
    with pytest.raises(ValueError, match="alternative 'bus' is in two nests, 'car' and 'pt'"):
        jic.NestedLogit(alternatives, {"car": ["car", "bus"], "pt": ["bus", "rail"]})
    with pytest.raises(ValueError, match="alternative 'tram' of nest 'pt' is not one of"):
        jic.NestedLogit(alternatives, {"car": ["car"], "pt": ["bus", "rail", "tram"]})
    with pytest.raises(ValueError, match="nest 'pt' has no alternatives"):
        jic.NestedLogit(alternatives, {"car": ["car", "bus", "rail"], "pt": []})
    with pytest.raises(TypeError, match="nests must be a mapping"):
        jic.NestedLogit(alternatives, [["car"], ["bus", "rail"]])
