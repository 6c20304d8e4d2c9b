"""Hostile inputs: every class of input that once gave a wrong answer without a word, a false
alarm, or a crash after the fit, each in more than one variant. Each test asserts the clear
error (its type and the names it must contain) or the right answer (against a brute-force or
hand-made reference). The kernels in float32 and float64 over their whole range are in
test_kernels."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxiclv as jic
from helpers import MINI_TRUTH, mini_model
from jaxiclv._estimate import STALL_ITERATIONS

# one worker runs the whole module (pytest-xdist --dist loadgroup): its module-scoped fits are
# computed once
pytestmark = pytest.mark.xdist_group("test_hostile")

# --------------------------------------------------------------------------------------------
# small models
# --------------------------------------------------------------------------------------------

N, TASKS, DRAWS = 40, 3, 6


def mnl_model(alternatives=("car", "bus", "rail")):
    return jic.ICLV(jic.Structural({"a": ["z1"]}),
                    jic.OrderedProbit({"a": ["q1", "q2"]}, levels=4),
                    jic.MultinomialLogit(alternatives, attributes=["cost", "time"],
                                         latent={"a": list(alternatives[1:])}))


def mnl_frame(model, seed=0):
    second, third = model.choice.alternatives[1:3]
    values = {f"asc.{second}": 0.3, f"asc.{third}": -0.2, "beta.cost": -0.8, "beta.time": -0.4,
              f"theta.a.{second}": 0.5, f"theta.a.{third}": -0.3, "q1.zeta.a": 0.9,
              "q2.zeta.a": 0.7}
    return jic.simulate(jic.set_values(model, values), N, TASKS, seed=seed).data


def mnl_panel(df, alternatives):
    """The panel of ``df`` with the alternatives listed in the order ``alternatives``."""
    return jic.Panel.from_dataframe(
        df, id="id", choice="choice", indicators=["q1", "q2"], covariates=["z1"],
        alternatives=list(alternatives),
        attributes={a: [f"{a}_{alt}" for alt in alternatives] for a in ("cost", "time")})


def loglik_and_grad(model, panel, theta=None, **kwargs):
    problem = jic.Problem(model, panel, jic.Halton(DRAWS, seed=3), **kwargs)
    theta = problem.theta0 if theta is None else theta
    llf, grad = problem.loglik_and_grad(theta)
    return float(llf), dict(zip(problem.space.names, np.asarray(grad)))


@pytest.fixture(scope="module")
def mini():
    simulated = jic.simulate(jic.set_values(mini_model(), MINI_TRUTH), 60, 4, seed=1)
    return mini_model(), simulated.panel, simulated.data


@pytest.fixture(scope="module")
def mini_fit(mini):
    model, panel, _ = mini
    return jic.estimate(model, panel, jic.Halton(20, seed=0))


# --------------------------------------------------------------------------------------------
# 1. alternatives are matched by label, not by position
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [("rail", "car", "bus"), ("bus", "rail", "car")])
def test_alternatives_in_another_order_give_the_same_likelihood_by_name(order):
    model = mnl_model()
    df = mnl_frame(model)
    reference = loglik_and_grad(model, mnl_panel(df, ("car", "bus", "rail")))
    reordered = loglik_and_grad(model, mnl_panel(df, order))
    assert reordered[0] == pytest.approx(reference[0], rel=1e-14)
    assert reordered[1].keys() == reference[1].keys()
    for name, value in reference[1].items():
        assert reordered[1][name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_alternatives_in_another_order_give_the_same_estimates_by_name():
    model = mnl_model()
    df = mnl_frame(model, seed=1)
    fits = [jic.estimate(model, mnl_panel(df, order), jic.Halton(DRAWS, seed=3), max_iter=300)
            for order in (("car", "bus", "rail"), ("rail", "bus", "car"))]
    # the same optimiser path: the same status and iterations, the same estimates by name
    assert fits[0].status == fits[1].status and fits[0].iterations == fits[1].iterations
    assert fits[0].names == fits[1].names
    np.testing.assert_allclose(fits[1].params, fits[0].params, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fits[1].bse, fits[0].bse, rtol=1e-6)


def test_newton_stops_as_stalled_where_the_maximum_is_at_infinity():
    """On these 60 individuals the likelihood has no maximum at finite values: it rises
    towards a supremum as ``a.gamma.z1`` grows without bound while the loadings shrink (the
    latent variable becomes ``z1`` alone). Newton's decrement then stays near 1e-4, under
    ``gtol |LL|`` but far above its tolerance, without falling; the fit stops as stalled,
    says so, and does not spend its 300 iterations (it ran all 300 before the rule)."""
    model = mnl_model()
    panel = mnl_panel(mnl_frame(model, seed=1), ("car", "bus", "rail"))
    with pytest.warns(RuntimeWarning, match="did not converge: no further improvement"):
        fit = jic.estimate(model, panel, jic.Halton(DRAWS, seed=3), max_iter=300)
    assert fit.status == jic.Status.STALLED
    assert fit.iterations < 150
    # each step gains about half the decrement, under gtol |LL| (gtol = 1e-6)
    gains = np.diff(np.asarray(fit.history)[-STALL_ITERATIONS - 1:])
    assert np.all(gains >= 0) and gains.sum() < 1e-6 * abs(fit.llf) * STALL_ITERATIONS
    assert fit.params["a.gamma.z1"] > 100


@pytest.mark.parametrize("panel_alternatives, names", [
    (("car", "bus", "train"), ["'rail'", "'train'"]),
    (("Car", "bus", "rail"), ["'car'", "'Car'"]),
])
def test_alternatives_that_do_not_match_are_an_error_naming_them(panel_alternatives, names):
    model = mnl_model()
    df = mnl_frame(mnl_model(panel_alternatives))
    panel = mnl_panel(df, panel_alternatives)
    with pytest.raises(jic.DataError, match="do not match") as error:
        jic.Problem(model, panel, jic.Halton(DRAWS))
    for name in names:
        assert name in str(error.value)


def test_a_different_number_of_alternatives_is_an_error():
    df = mnl_frame(mnl_model(("car", "bus", "rail", "walk")))
    panel = mnl_panel(df, ("car", "bus", "rail", "walk"))
    with pytest.raises(jic.DataError, match=r"not in the model: \['walk'\]"):
        jic.Problem(mnl_model(), panel, jic.Halton(DRAWS))


def test_integer_alternatives_survive_the_round_trip_through_simulate():
    model = mnl_model((1, 2, 3))
    df = mnl_frame(model)
    assert df["choice"].dtype.kind == "i" and set(df["choice"]) <= {1, 2, 3}
    panel = mnl_panel(df, (1, 2, 3))  # the user's own codes read the simulated data back
    assert panel.alternatives == (1, 2, 3)
    again = mnl_panel(df, (3, 1, 2))
    assert loglik_and_grad(model, again)[0] == pytest.approx(loglik_and_grad(model, panel)[0],
                                                             rel=1e-14)


# --------------------------------------------------------------------------------------------
# 2. repeated names
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: jic.Structural({"a": ["z1"], "b": ["z1"]}, parents={"b": ["a", "a"]}),
     "parents of 'b' repeat"),
    (lambda: jic.Structural({"a": ["z1", "z1"]}), "covariates of 'a' repeat"),
    (lambda: jic.NormalIndicators({"a": ["y1", "y1"]}), "repeat"),
    (lambda: jic.BinaryProbit(attributes=["x1", "x1"]), "attributes repeat"),
    (lambda: jic.BinaryProbit(attributes=["x1"], latent=["a", "a"]), "latent variables repeat"),
    (lambda: jic.MultinomialLogit(["a", "b", "a"], attributes=["x"]), "alternatives repeat"),
    (lambda: jic.MultinomialLogit([1, "1"], attributes=["x"]), "the same label"),
    (lambda: jic.MultinomialLogit(["a", "b"], attributes=["x", "x"]), "attributes repeat"),
])
def test_repeated_names_are_an_error(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_an_indicator_in_two_blocks_is_an_error():
    with pytest.raises(ValueError, match="y1"):
        jic.ICLV(jic.Structural({"a": ["z1"]}), (jic.NormalIndicators({"a": ["y1", "y2"]}),
                                                jic.NormalIndicators({"a": ["y1"]})),
                 jic.BinaryProbit(attributes=["x1"], latent=["a"]))


# --------------------------------------------------------------------------------------------
# 3. float32 far tails inside a model
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [12.0, 30.0])
def test_float32_likelihood_with_utilities_in_the_far_tail(mini, beta):
    """Utilities of about +-beta: in float32 log Phi was -inf for -25 < V < -13 (and its
    derivative infinite earlier). Now LL and gradient are finite and agree with float64 to
    float32 precision (relative to sum_i |LL_i| and to the scores' scale)."""
    model, panel, _ = mini
    model = jic.set_values(model, {**MINI_TRUTH, "beta.x1": beta})
    results = {}
    for dtype in (jnp.float32, jnp.float64):
        problem = jic.Problem(model, panel, jic.Halton(DRAWS, seed=0), dtype=dtype)
        llf, grad = problem.loglik_and_grad(problem.theta0)
        results[dtype] = float(llf), np.asarray(grad, dtype=np.float64)
    (llf32, grad32), (llf64, grad64) = results[jnp.float32], results[jnp.float64]
    assert np.isfinite(llf32) and np.all(np.isfinite(grad32))
    assert llf64 < -100.0  # the tail is reached: the probit's log-probabilities are large
    assert llf32 == pytest.approx(llf64, rel=1e-5)
    np.testing.assert_allclose(grad32, grad64, rtol=0, atol=1e-4 * np.abs(grad64).max())


# --------------------------------------------------------------------------------------------
# 4. identification judged scale-free; NaN only on the unidentified directions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [1e5, 1e-6])
def test_a_parameter_in_other_units_keeps_every_standard_error(mini_fit, factor):
    """Measuring x1 in units `factor` times smaller multiplies beta by `factor`: H and S change
    by the diagonal D = diag(1, .., 1 / factor, ..); the covariance must change by D^-1 .. D^-1
    exactly, with no identification warning (the raw eigenvalues spread by 1e10 or more)."""
    result = mini_fit
    scale = np.ones(result.n_params)
    scale[result.names.index("beta.x1")] = 1.0 / factor
    for kind in ("robust", "classical", "bhhh"):
        reference, message = jic.covariance(result.hessian, result.scores, kind, result.names)
        assert message == ""
        cov, message = jic.covariance(result.hessian * np.outer(scale, scale),
                                      result.scores * scale, kind, result.names)
        assert message == ""
        np.testing.assert_allclose(cov, reference / np.outer(scale, scale), rtol=1e-9)


@pytest.mark.parametrize("copied", ["beta.x1", "y1.zeta.a"])
def test_an_unidentified_direction_gives_nan_to_its_parameters_only(mini_fit, copied):
    """A copy of a parameter that enters only through the sum of the two is unidentified in
    the direction (1, -1): the Hessian and scores of the augmented problem repeat that row and
    column. The two get NaN; every other parameter's variance is the original one (they are
    estimable: orthogonal to the null direction)."""
    result = mini_fit
    p = result.names.index(copied)
    take = [*range(result.n_params), p]
    names = [*result.names, f"{copied} (copy)"]
    hess = result.hessian[np.ix_(take, take)]
    scores = result.scores[:, take]
    for kind in ("robust", "classical", "bhhh"):
        reference, _ = jic.covariance(result.hessian, result.scores, kind, result.names)
        cov, message = jic.covariance(hess, scores, kind, names)
        assert copied in message and f"{copied} (copy)" in message
        nan = np.isnan(np.diag(cov))
        assert nan[p] and nan[-1] and nan.sum() == 2
        others = [q for q in range(result.n_params) if q != p]
        np.testing.assert_allclose(cov[np.ix_(others, others)],
                                   reference[np.ix_(others, others)], rtol=1e-6)


def test_unidentified_scale_gives_nan_only_on_its_direction(mini):
    """A free scale of `a` with all loadings free: the scale direction mixes gamma, sigma, the
    loadings and theta; the indicators' intercepts and scales and the choice's asc and beta
    stay identified."""
    _, panel, _ = mini
    with pytest.warns(RuntimeWarning, match="a.log_sigma"):
        result = jic.estimate(mini_model(free_scale=["a"]), panel, jic.Halton(20, seed=0))
    bse = result.bse
    for name in ("a.log_sigma", "a.gamma.z1", "y1.zeta.a", "theta.a"):
        assert np.isnan(bse[name]), name
    for name in ("y1.alpha", "y2.alpha", "asc", "beta.x1"):
        assert np.isfinite(bse[name]) and bse[name] > 0, name
    natural = result.natural()
    assert np.isnan(natural.loc["a.sigma", "std err"])
    assert np.isfinite(natural.loc["y2.sigma", "std err"])


# --------------------------------------------------------------------------------------------
# 5. too few clusters
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("clusters", [lambda n: np.zeros(n), lambda n: ["x"] * n])
def test_one_cluster_is_an_error_before_the_fit(mini, clusters):
    model, panel, _ = mini
    with pytest.raises(ValueError, match="at least two clusters, got 1"):
        jic.estimate(model, panel, cov_type="cluster", clusters=clusters(panel.n_individuals))


def test_clusters_of_the_wrong_length_are_an_error(mini):
    model, panel, _ = mini
    with pytest.raises(ValueError, match="one cluster label per individual"):
        jic.estimate(model, panel, cov_type="cluster", clusters=[1, 2, 3])


@pytest.mark.parametrize("n_clusters", [2, 5])
def test_fewer_clusters_than_parameters_say_so(mini_fit, n_clusters):
    result = mini_fit
    clusters = np.arange(result.n_individuals) % n_clusters
    cov, message = jic.covariance(result.hessian, result.scores, "cluster", result.names,
                                  clusters)
    assert f"only {n_clusters} clusters for {result.n_params} parameters" in message
    enough = np.arange(result.n_individuals) % 30
    _, message = jic.covariance(result.hessian, result.scores, "cluster", result.names, enough)
    assert message == ""


# --------------------------------------------------------------------------------------------
# 6. estimate hands back a result, whatever happens after the first evaluation
# --------------------------------------------------------------------------------------------

@jax.custom_jvp
def _square_with_undefined_curvature(t):
    return t * t


@_square_with_undefined_curvature.defjvp
def _square_jvp(primals, tangents):
    (t,), (dt,) = primals, tangents
    return t * t, _nan_derivative(t) * dt


@jax.custom_jvp
def _nan_derivative(t):
    return 2.0 * t


_nan_derivative.defjvp(lambda primals, tangents: (2.0 * primals[0], jnp.nan * tangents[0]))


class CurvaturelessPrior(jic.AbstractMeasurement):
    """A user block adding ``-(m - 1)^2 / 2`` to every draw, through a function whose value and
    first derivative are right but whose second derivative is NaN: the fit converges, and the
    Hessian at the optimum is not finite."""

    m: jax.Array
    indicators: tuple[str, ...] = eqx.field(static=True, default=())
    latent: tuple[str, ...] = eqx.field(static=True, default=("a",))

    def __init__(self):
        self.m = jnp.zeros(())

    def forward(self, data, lv):
        return jnp.full(lv.shape[-1:], -0.5 * _square_with_undefined_curvature(self.m - 1.0))

    def labels(self):
        return eqx.tree_at(lambda b: b.m, self, np.array("prior.m", dtype=object))


@pytest.mark.parametrize("optimizer", ["lbfgs", "trust-exact"])
def test_a_non_finite_hessian_comes_back_as_a_status_not_an_exception(mini, optimizer):
    model, panel, _ = mini
    model = jic.ICLV(model.latent, (*model.measurement, CurvaturelessPrior()), model.choice)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        result = jic.estimate(model, panel, jic.Halton(DRAWS, seed=0), optimizer=optimizer)
    assert result.status is jic.Status.HESSIAN_FAILED
    assert not result.converged
    assert np.isfinite(result.llf) and np.all(np.isfinite(result.estimates))
    assert np.all(np.isnan(result.bse))
    if optimizer == "lbfgs":  # the optimiser finished: m at its optimum 1
        assert result.params["prior.m"] == pytest.approx(1.0, abs=1e-4)
    assert "Hessian" in result.summary()
    with pytest.raises(jic.EstimationError) as error:
        jic.estimate(model, panel, jic.Halton(DRAWS, seed=0), optimizer=optimizer, throw=True)
    assert error.value.results.status is jic.Status.HESSIAN_FAILED


def test_an_iteration_limit_comes_back_as_a_status_and_throw_raises(mini):
    model, panel, _ = mini
    with pytest.warns(RuntimeWarning, match="did not converge: maximum number of iterations"):
        result = jic.estimate(model, panel, jic.Halton(DRAWS, seed=0), max_iter=2)
    assert result.status is jic.Status.MAX_ITERATIONS and np.isfinite(result.llf)
    with pytest.raises(jic.EstimationError, match="maximum number of iterations"), \
            pytest.warns(RuntimeWarning, match="did not converge"):
        jic.estimate(model, panel, jic.Halton(DRAWS, seed=0), max_iter=2, throw=True)


# --------------------------------------------------------------------------------------------
# 7. degenerate calls
# --------------------------------------------------------------------------------------------

def test_every_parameter_fixed_is_a_clear_error(mini):
    model, panel, _ = mini
    problem = jic.Problem(model, panel, jic.Halton(DRAWS))
    with pytest.raises(ValueError, match="every parameter is fixed"):
        jic.estimate(model, panel, jic.Halton(DRAWS), fixed=list(problem.space.names))


@pytest.mark.parametrize("call", ["estimate", "Problem"])
def test_fixed_as_a_string_is_a_clear_error(mini, call):
    model, panel, _ = mini
    function = jic.estimate if call == "estimate" else jic.Problem
    with pytest.raises(TypeError, match=r"write \['asc'\]"):
        function(model, panel, jic.Halton(DRAWS), fixed="asc")


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float16, jnp.bfloat16, np.int64])
def test_unsupported_dtypes_are_a_clear_error(mini, dtype):
    model, panel, _ = mini
    with pytest.raises(TypeError, match="dtype must be float64"):
        jic.Problem(model, panel, jic.Halton(DRAWS), dtype=dtype)


@pytest.mark.parametrize("uniform", [
    lambda rng, shape: rng.uniform(size=shape),
    lambda rng, shape: stats.qmc.Halton(shape[2], seed=rng).random(shape[0] * shape[1]).reshape(
        shape),
])
def test_uniform_numbers_passed_as_draws_are_a_clear_error(mini, uniform):
    model, panel, _ = mini
    draws = uniform(np.random.default_rng(0), (panel.n_individuals, 10, model.n_draw_dims))
    with pytest.raises(ValueError, match="uniform"):
        jic.Problem(model, panel, draws)
    jic.Problem(model, panel, jic.make_draws(jic.Halton(10), panel.n_individuals,
                                             model.n_draw_dims))  # normals are fine


def _hand_built(panel, **changes):
    return eqx.tree_at(lambda a: [getattr(a, k) for k in changes], panel.arrays,
                       list(changes.values()))


@pytest.mark.parametrize("function", [jic.simulated_loglik, jic.loglik_and_grad,
                                      jic.simulated_loglik_analytic, jic.loglik_per_individual])
def test_low_level_functions_check_data_built_by_hand(function):
    model = jic.ICLV(jic.Structural({"a": ["z1"]}), jic.OrderedProbit({"a": ["q1"]}, levels=3),
                     jic.BinaryProbit(attributes=["x1"], latent=["a"]))
    panel = jic.simulate(model, 10, 2, seed=0).panel
    draws = jnp.asarray(jic.make_draws(jic.Halton(4), 10, model.n_draw_dims))
    function(model, panel.arrays, draws)  # valid data pass
    likert = panel.arrays.indicators.at[3, 0].set(2.7)
    with pytest.raises(jic.DataError, match=r"indicator 'q1', individual 3: value 2.7"):
        function(model, _hand_built(panel, indicators=likert), draws)
    attributes = panel.arrays.attributes.at[2, 1, 0, 0].set(jnp.nan)
    with pytest.raises(jic.DataError, match="attribute 'x1' .* task 2 of individual 2"):
        function(model, _hand_built(panel, attributes=attributes), draws)
    choice = panel.arrays.choice.at[5, 0].set(2)
    with pytest.raises(jic.DataError, match="choice 2 in task 1 of individual 5"):
        function(model, _hand_built(panel, choice=choice), draws)
    with pytest.raises(ValueError, match=r"draws must have shape \(N, R, D\) = \(10, R, 1\)"):
        function(model, panel.arrays, draws[:5])


# --------------------------------------------------------------------------------------------
# 8. draw assignment and derivatives
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("relabel", [str, lambda i: f"person {100 - i}", lambda i: 10.0 * i])
def test_ids_of_another_type_or_order_give_the_same_likelihood(mini, relabel):
    """Individuals take their draws in the order of their first row (as in Apollo and
    Biogeme), whatever the ids' type or sort order."""
    model, panel, df = mini
    other = df.assign(id=df["id"].map(relabel))
    relabelled = jic.Panel.from_dataframe(other, id="id", choice="choice", attributes=["x1"],
                                          indicators=["y1", "y2", "y3"], covariates=["z1"])
    assert list(relabelled.ids) == list(dict.fromkeys(other["id"]))
    draws = jic.Halton(DRAWS, seed=0)
    reference = jic.Problem(model, panel, draws)
    problem = jic.Problem(model, relabelled, draws)
    assert float(problem.loglik(problem.theta0)) == pytest.approx(
        float(reference.loglik(reference.theta0)), rel=1e-14)


def test_derivatives_in_the_draws_or_data_of_the_analytic_likelihood_are_an_error(mini):
    model, panel, _ = mini
    draws = jnp.asarray(jic.make_draws(jic.Halton(DRAWS), panel.n_individuals,
                                       model.n_draw_dims))
    with pytest.raises(TypeError, match="not the draws"):
        jax.grad(lambda d: jic.simulated_loglik_analytic(model, panel.arrays, d))(draws)
    with pytest.raises(TypeError, match="not the data"):
        jax.grad(lambda x: jic.simulated_loglik_analytic(
            model, eqx.tree_at(lambda a: a.attributes, panel.arrays, x), draws))(
            panel.arrays.attributes)
    # automatic differentiation of the plain likelihood does give them
    by_draws = jax.grad(lambda d: jic.simulated_loglik(model, panel.arrays, d))(draws)
    assert np.all(np.isfinite(np.asarray(by_draws))) and np.any(np.asarray(by_draws) != 0)
    # and the parameters' gradient still runs the hand-derived rule
    grad = jax.grad(lambda m: jic.simulated_loglik_analytic(m, panel.arrays, draws))(model)
    reference = jax.grad(lambda m: jic.simulated_loglik(m, panel.arrays, draws))(model)
    for g, r in zip(jax.tree.leaves(grad), jax.tree.leaves(reference)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-10, atol=1e-10)
