"""After the estimate: fit statistics, covariances, functions of the parameters, posterior
latent variables, predictions, elasticities, tests between models, warm starts, files.

Two fitted models are shared by the module: an ICLV (one latent variable, two normal and two
ordered indicators, a multinomial logit with availability) and a plain multinomial logit with a
full set of constants (no random terms, so its likelihood is exact). Every reference is
computed independently: closed forms, scipy, NumPy loops over individuals, finite differences.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

import jaxiclv as jic
from helpers import panel_from_frame, simulated_frame
from jaxiclv import _postestimation as postestimation
from jaxiclv._statistics import component_table, constants_only_loglik

pytestmark = pytest.mark.xdist_group("test_postestimation")

ALTERNATIVES = ["car", "bus", "rail"]
N, TASKS, DRAWS = 80, 3, 20


def iclv_spec():
    return jic.ICLV(
        latent=jic.Structural({"a": ["z"]}),
        measurement=(jic.NormalIndicators({"a": ["y1", "y2"]}),
                     jic.OrderedProbit({"a": ["q1", "q2"]}, levels=4)),
        choice=jic.MultinomialLogit(ALTERNATIVES, attributes=["cost", "time"],
                                    latent={"a": ["bus", "rail"]}))


ICLV_TRUTH = {"a.gamma.z": 0.6, "y1.zeta.a": 1.0, "y2.zeta.a": 0.8, "q1.zeta.a": 1.2,
              "q2.zeta.a": 0.7, "asc.bus": 0.3, "asc.rail": -0.2, "beta.cost": -1.0,
              "beta.time": -0.5, "theta.a.bus": 0.5, "theta.a.rail": -0.4}


@pytest.fixture(scope="module")
def iclv():
    spec = iclv_spec()
    df = simulated_frame(jic.set_values(spec, ICLV_TRUTH), N, TASKS, seed=3)
    panel = panel_from_frame(spec, df)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = jic.estimate(spec, panel, jic.Halton(DRAWS, seed=0), optimizer="trust-exact")
    assert result.converged
    return spec, df, panel, result


def mnl_frame(seed=0, n=150, tasks=4):
    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 5.0, (n * tasks, 3))
    time = rng.uniform(0.2, 1.0, (n * tasks, 3))
    v = np.array([0.0, 0.5, -0.3]) - 0.8 * cost - 1.5 * time
    p = special.softmax(v, axis=1)
    choice = np.array([rng.choice(3, p=row) for row in p])
    df = pd.DataFrame({"id": np.repeat(np.arange(n), tasks),
                       "choice": np.array(ALTERNATIVES)[choice]})
    for j, alt in enumerate(ALTERNATIVES):
        df[f"cost_{alt}"], df[f"time_{alt}"] = cost[:, j], time[:, j]
    return df


def mnl_panel(df):
    return jic.Panel.from_dataframe(
        df, id="id", choice="choice", alternatives=ALTERNATIVES,
        attributes={a: [f"{a}_{alt}" for alt in ALTERNATIVES] for a in ("cost", "time")})


def mnl_spec():
    return jic.ICLV(choice=jic.MultinomialLogit(ALTERNATIVES, attributes=["cost", "time"]))


@pytest.fixture(scope="module")
def mnl():
    df = mnl_frame()
    panel = mnl_panel(df)
    result = jic.estimate(mnl_spec(), panel)
    assert result.converged
    return df, panel, result


# --------------------------------------------------------------------------------------------
# fit statistics


def test_reference_logliks_against_closed_forms(iclv):
    spec, df, panel, result = iclv
    table = result.components
    mask = np.asarray(panel.arrays.task_mask)
    available = np.asarray(panel.arrays.available)[mask]  # (tasks, J), some unavailable
    # LL(0) of the choices: every available alternative equally likely
    assert table.loc["choice", "LL(0)"] == pytest.approx(-np.log(available.sum(axis=1)).sum(),
                                                         rel=1e-14)
    # LL(C): a multinomial logit with constants only, maximised by scipy
    assert available.sum(axis=1).min() == 1 and not available.all()
    chosen = np.asarray(panel.arrays.choice)[mask]

    def negative(c):
        logits = np.where(available == 1, np.concatenate([[0.0], c])[None, :], -np.inf)
        return -(logits[np.arange(len(chosen)), chosen] - special.logsumexp(logits, axis=1)).sum()
    best = optimize.minimize(negative, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    assert table.loc["choice", "LL(C)"] == pytest.approx(-best.fun, rel=1e-10)
    people = df.drop_duplicates("id")
    for item in ("q1", "q2"):  # uniform levels; sample frequencies
        counts = people[item].value_counts().to_numpy()
        assert table.loc[item, "LL(0)"] == pytest.approx(N * np.log(1 / 4), rel=1e-14)
        assert table.loc[item, "LL(C)"] == pytest.approx(counts @ np.log(counts / N), rel=1e-14)
    for item in ("y1", "y2"):  # LL(0) undefined; a normal with the sample moments
        variance = people[item].var(ddof=0)
        assert np.isnan(table.loc[item, "LL(0)"])
        assert table.loc[item, "LL(C)"] == pytest.approx(
            stats.norm.logpdf(people[item], people[item].mean(), np.sqrt(variance)).sum(),
            rel=1e-13)
    assert np.isnan(result.llnull) and np.isnan(result.rho2)  # a normal indicator has no LL(0)
    assert result.llconst == pytest.approx(table["LL(C)"].iloc[:-1].sum(), rel=1e-14)
    assert result.rho2_const == pytest.approx(1 - result.llf / result.llconst, rel=1e-14)
    assert result.rho2_const_adj == pytest.approx(
        1 - (result.llf - result.n_params) / result.llconst, rel=1e-14)
    assert result.n_outcomes == panel.n_observations + 4 * N


def test_mnl_reference_logliks_and_rho_square(mnl):
    df, panel, result = mnl
    n = len(df)
    counts = df["choice"].value_counts().to_numpy()
    assert result.llnull == pytest.approx(n * np.log(1 / 3), rel=1e-14)
    assert result.llconst == pytest.approx(counts @ np.log(counts / n), rel=1e-13)
    assert result.rho2 == pytest.approx(1 - result.llf / (n * np.log(1 / 3)), rel=1e-14)
    assert result.rho2_adj == pytest.approx(1 - (result.llf - 4) / (n * np.log(1 / 3)),
                                            rel=1e-14)
    assert result.bic == pytest.approx(-2 * result.llf + 4 * np.log(150), rel=1e-14)
    assert result.draws_description == "none (the model has no random terms)"
    text = result.summary()
    assert f"{n * np.log(1 / 3):.6f}" in text and f"{result.llf:.6f}" in text  # to 1e-6
    assert "BIC (N = 150 individuals)" in text


def test_constants_only_loglik_never_chosen_alternative():
    choice = np.array([0, 0, 1, 1, 1])
    available = np.ones((5, 3), dtype=bool)  # the third is available and never chosen
    assert constants_only_loglik(choice, available, np.ones(5)) == pytest.approx(
        2 * np.log(2 / 5) + 3 * np.log(3 / 5), rel=1e-13)


def test_component_logliks_add_up_with_one_draw_and_match_each_component_alone(iclv):
    spec, _, panel, result = iclv
    fitted = result.model
    values = jic.ParameterSpace.from_model(fitted).values(fitted)
    one = jic.Problem(fitted, panel, jic.Halton(1, seed=0))
    table = component_table(one, one.theta0)
    assert table["LL"].iloc[:-1].sum() == pytest.approx(table.loc["model", "LL"], rel=1e-13)
    # with 20 draws, each component on its own against a model of that component alone
    components = result.components
    assert components.loc["model", "LL"] == pytest.approx(result.llf, rel=1e-14)
    assert components["LL"].iloc[:-1].sum() < result.llf  # joined through the LV
    alone = {
        "choice": jic.ICLV(latent=spec.latent, choice=spec.choice),
        "q2": jic.ICLV(latent=spec.latent, measurement=jic.OrderedProbit({"a": ["q2"]}, levels=4)),
        "y1": jic.ICLV(latent=spec.latent, measurement=jic.NormalIndicators({"a": ["y1"]})),
    }
    for row, sub in alone.items():
        names = jic.ParameterSpace.from_model(sub).names
        sub = jic.set_values(sub, {k: values[k] for k in names})
        problem = jic.Problem(sub, panel, jic.Halton(DRAWS, seed=0))
        assert components.loc[row, "LL"] == pytest.approx(float(problem.loglik(problem.theta0)),
                                                          rel=1e-12), row


# --------------------------------------------------------------------------------------------
# covariances


def test_finite_sample_factor(iclv):
    result = iclv[3]
    robust, _ = jic.covariance(result.hessian, result.scores, "robust", result.names,
                               finite_sample=True)
    np.testing.assert_allclose(robust, result.covariances["robust"] * N / (N - 1), rtol=1e-12)
    clusters = np.arange(N) % 40
    plain, _ = jic.covariance(result.hessian, result.scores, "cluster", result.names, clusters)
    corrected, _ = jic.covariance(result.hessian, result.scores, "cluster", result.names,
                                  clusters, finite_sample=True)
    np.testing.assert_allclose(corrected, plain * 40 / 39, rtol=1e-12)


def test_natural_scale_parameters_carry_every_covariance(iclv):
    result = iclv[3]
    robust, classical = result.natural(), result.natural("classical")
    sigma = "y1.sigma"
    value = np.exp(result.params["y1.log_sigma"])
    for table, kind in ((robust, "robust"), (classical, "classical")):
        assert table.loc[sigma, "estimate"] == pytest.approx(value, rel=1e-14)
        assert table.loc[sigma, "std err"] == pytest.approx(
            value * result.std_errors(kind)["y1.log_sigma"], rel=1e-12)
    assert classical.loc[sigma, "std err"] != robust.loc[sigma, "std err"]


# --------------------------------------------------------------------------------------------
# functions of the parameters


def test_delta_method_against_finite_difference_jacobian(iclv):
    result = iclv[3]
    names = ["beta.time", "beta.cost", "a.gamma.z", "y1.zeta.a"]

    def numpy_f(v):
        return np.array([v[0] / v[1], np.exp(v[2]) * v[3]])
    got = jic.delta_method(result, lambda p: {
        "ratio": p["beta.time"] / p["beta.cost"],
        "product": jnp.exp(p["a.gamma.z"]) * p["y1.zeta.a"]})
    theta = result.params[names].to_numpy()
    h = 1e-5 * np.maximum(np.abs(theta), 1.0)
    jacobian = np.stack([(numpy_f(theta + h[k] * np.eye(4)[k]) - numpy_f(theta - h[k] * np.eye(4)[k]))
                         / (2 * h[k]) for k in range(4)], axis=1)
    cov = result.cov_params().loc[names, names].to_numpy()
    se = np.sqrt(np.diag(jacobian @ cov @ jacobian.T))
    np.testing.assert_allclose(got["estimate"], numpy_f(theta), rtol=1e-14)
    np.testing.assert_allclose(got["std err"], se, rtol=1e-8)  # central differences: h^2 ~ 1e-10
    np.testing.assert_allclose(got["t"], got["estimate"] / got["std err"], rtol=1e-14)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(got["upper"] - got["lower"], 2 * z * got["std err"], rtol=1e-12)
    # a scalar and an array output
    scalar = jic.delta_method(result, lambda p: p["beta.time"] / p["beta.cost"])
    assert list(scalar.index) == ["value"]
    assert scalar["std err"].iloc[0] == pytest.approx(got.loc["ratio", "std err"], rel=1e-14)
    array = jic.delta_method(result, lambda p: jnp.stack([p["beta.time"], p["beta.cost"]]),
                             cov_type="classical")
    np.testing.assert_allclose(array["std err"],
                               result.std_errors("classical")[["beta.time", "beta.cost"]],
                               rtol=1e-14)


def test_wtp_against_the_analytic_formula(iclv):
    result = iclv[3]
    bt, bc = result.params["beta.time"], result.params["beta.cost"]
    v = result.cov_params()
    variance = (v.loc["beta.time", "beta.time"] / bc ** 2
                + bt ** 2 * v.loc["beta.cost", "beta.cost"] / bc ** 4
                - 2 * bt * v.loc["beta.time", "beta.cost"] / bc ** 3)
    got = jic.wtp(result, "beta.time", "beta.cost")
    assert got["estimate"].iloc[0] == pytest.approx(bt / bc, rel=1e-14)
    assert got["std err"].iloc[0] == pytest.approx(np.sqrt(variance), rel=1e-12)


def test_unknown_parameter_name_is_a_clear_error(iclv):
    with pytest.raises(KeyError, match=r"'beta.tme'.*did you mean \['beta.time'"):
        jic.delta_method(iclv[3], lambda p: p["beta.tme"] / p["beta.cost"])


# --------------------------------------------------------------------------------------------
# posteriors and predictions, against loops over individuals in NumPy


def _per_individual(result):
    """For each individual: (latent variables (L, R), log L_ir (R,), utilities (T, J, R)),
    one individual at a time through the model's own per-draw functions."""
    problem = result.problem
    model = result.model
    out = []
    for i in range(problem.panel.n_individuals):
        x = jax.tree.map(lambda a: a[i], problem.data)
        eta = problem.draws[i]
        lv, terms, utilities = model.draw_diagnostics(x, eta)
        out.append((np.asarray(lv), np.asarray(terms).sum(axis=0), np.asarray(utilities)))
    return out


def test_posterior_against_numpy(iclv):
    result = iclv[3]
    got = jic.posterior(result, quantiles=(0.1, 0.5))
    assert list(got.columns[:4]) == ["mean", "sd", "q0.1", "q0.5"]
    ids = result.problem.panel.ids
    for i, (lv, log_l, _) in enumerate(_per_individual(result)):
        w = np.exp(log_l - log_l.max())
        w /= w.sum()
        mean = w @ lv[0]
        row = got.loc[(ids[i], "a")]
        assert row["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-14)
        assert row["sd"] == pytest.approx(np.sqrt(w @ (lv[0] - mean) ** 2), rel=1e-10)
        assert row["prior mean"] == pytest.approx(lv[0].mean(), rel=1e-12, abs=1e-14)
        order = np.argsort(lv[0])
        cumulative = np.cumsum(w[order])
        median = lv[0][order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]
        assert row["q0.5"] == median
    # the posterior moves away from the prior with the data, and is narrower
    assert (got["sd"] < got["prior sd"]).mean() > 0.95


def test_predictions_against_numpy(iclv):
    result = iclv[3]
    got = jic.predict(result)
    mask = np.asarray(result.problem.data.task_mask)
    available = np.asarray(result.problem.data.available)
    rows = []
    for i, (_, log_l, utilities) in enumerate(_per_individual(result)):
        w = np.exp(log_l - log_l.max())
        w /= w.sum()
        logits = np.where(available[i][:, :, None], utilities, -np.inf)
        p = np.exp(logits - special.logsumexp(logits, axis=1, keepdims=True))  # (T, J, R)
        for t in np.flatnonzero(mask[i]):
            rows.append(np.concatenate([p[t].mean(axis=1), p[t] @ w]))
    np.testing.assert_allclose(got.to_numpy(), np.array(rows), rtol=1e-12, atol=1e-15)
    assert list(got.columns.get_level_values(1)[:3]) == ALTERNATIVES
    np.testing.assert_allclose(got["unconditional"].sum(axis=1), 1.0, rtol=1e-14)


def test_shares_jacobian_against_finite_differences(iclv):
    """The delta method's Jacobian of the shares (forward mode through the choice kernel, some
    alternatives unavailable) at the estimates and where the utilities are extreme (half the
    available alternatives' probabilities below 1e-10, down to 1e-43)."""
    result = iclv[3]
    problem = result.problem
    args = (problem.data, problem.draws, problem.chunk_size)
    shares_at = lambda t: np.asarray(postestimation._shares_at(problem.space, t, *args))
    extreme = result.params.copy()
    extreme[["beta.cost", "beta.time", "theta.a.bus"]] = [-25.0, 8.0, 6.0]
    for theta in (result.params.to_numpy(), extreme.to_numpy()):
        theta = jnp.asarray(theta)
        values, jacobian = postestimation._shares_and_jacobian(problem.space, theta, *args)
        jacobian = np.asarray(jacobian)
        h = 1e-6 * np.maximum(np.abs(theta), 1.0)
        fd = np.stack([(shares_at(theta + h[k] * np.eye(theta.size)[k])
                        - shares_at(theta - h[k] * np.eye(theta.size)[k])) / (2 * h[k])
                       for k in range(theta.size)], axis=1)
        assert np.all(np.isfinite(jacobian))
        # central differences: truncation ~h^2, rounding ~eps / h ~ 1e-10 of the shares
        np.testing.assert_allclose(jacobian, fd, rtol=0, atol=1e-7 * np.abs(jacobian).max())
        np.testing.assert_allclose(np.asarray(values), shares_at(theta), rtol=1e-14)


def test_predicted_shares_are_the_sample_shares_at_the_mnl_optimum(mnl):
    df, panel, result = mnl
    shares = jic.shares(result)
    sample = df["choice"].value_counts(normalize=True)[ALTERNATIVES].to_numpy()
    # the first-order conditions of the constants: sum_it (y_itj - P_itj) = 0 to ~gtol
    np.testing.assert_allclose(shares["estimate"], sample, rtol=1e-6)
    assert np.all(shares["std err"] > 0)
    krinsky_robb = jic.shares(result, method="krinsky-robb", n_draws=400, seed=1)
    np.testing.assert_allclose(krinsky_robb["estimate"], shares["estimate"], rtol=1e-14)
    # 400 draws: the standard deviation within ~10 % of the delta method's
    np.testing.assert_allclose(krinsky_robb["std err"], shares["std err"], rtol=0.15)


def test_scenario_and_elasticities_against_finite_differences(mnl):
    df, panel, result = mnl
    point = jic.elasticities(result, "cost")
    h = 1e-4
    for k, alt in enumerate(ALTERNATIVES):
        shifted = {}
        for sign in (1, -1):
            scenario = df.copy()
            scenario[f"cost_{alt}"] *= 1 + sign * h
            shifted[sign] = jic.shares(result, data=scenario)["estimate"].to_numpy()
        np.testing.assert_allclose(point[alt], (np.log(shifted[1]) - np.log(shifted[-1]))
                                   / (2 * h), rtol=1e-6)
        arc = jic.elasticities(result, "cost", change=h)
        np.testing.assert_allclose(arc[alt], (shifted[1] / jic.shares(result)["estimate"] - 1) / h,
                                   rtol=1e-9)
    assert np.all(np.diag(point.to_numpy()) < 0) and np.all(point.to_numpy()[~np.eye(3, dtype=bool)] > 0)
    # the MNL's elasticities by hand: direct beta x_j (1 - P_j), cross -beta x_k P_k, averaged
    # with weights P_j over the tasks
    beta = result.params["beta.cost"]
    v = (result.params.get("asc.bus", 0.0) * (np.arange(3) == 1)
         + result.params.get("asc.rail", 0.0) * (np.arange(3) == 2)
         + beta * df[[f"cost_{a}" for a in ALTERNATIVES]].to_numpy()
         + result.params["beta.time"] * df[[f"time_{a}" for a in ALTERNATIVES]].to_numpy())
    p = special.softmax(v, axis=1)
    x = df[[f"cost_{a}" for a in ALTERNATIVES]].to_numpy()
    for j in range(3):
        for k in range(3):
            individual = beta * x[:, k] * ((j == k) - p[:, k])
            assert point.iloc[j, k] == pytest.approx((p[:, j] @ individual) / p[:, j].sum(),
                                                     rel=1e-10)


def test_scenario_errors_name_the_problem(mnl):
    df, panel, result = mnl
    with pytest.raises(jic.DataError, match="time_bus"):
        jic.predict(result, data=df.drop(columns=["time_bus"]))
    with pytest.raises(KeyError, match="'price' is not an attribute"):
        jic.elasticities(result, "price")


def test_categorical_levels_outside_the_estimation_data_are_an_error():
    df = mnl_frame(n=20)
    df["brand_car"], df["brand_bus"], df["brand_rail"] = "A", "B", "C"
    panel = jic.Panel.from_dataframe(
        df, id="id", choice="choice", alternatives=ALTERNATIVES, categorical=["brand"],
        attributes={a: [f"{a}_{alt}" for alt in ALTERNATIVES] for a in ("cost", "brand")})
    assert panel.dummies("brand") == ["brand[B]", "brand[C]"]
    scenario = df.assign(brand_rail="B")  # level C absent: its dummy is 0
    again = panel.with_data(scenario)
    assert again.arrays.attribute_names == panel.arrays.attribute_names
    assert float(np.asarray(again.arrays.attributes)[..., 2, 2].max()) == 0.0  # brand[C] of rail
    with pytest.raises(jic.DataError, match="'brand_bus' holds a level outside its levels"):
        panel.with_data(df.assign(brand_bus="D"))


# --------------------------------------------------------------------------------------------
# tests between models, starting values


@pytest.fixture(scope="module")
def mnl_restricted(mnl):
    df, panel, _ = mnl
    return jic.estimate(jic.set_values(mnl_spec(), {"beta.time": 0.0}), panel,
                        fixed=["beta.time"])


def test_likelihood_ratio_test(mnl, mnl_restricted):
    _, _, full = mnl
    test = jic.lr_test(mnl_restricted, full)
    assert test.df == 1
    assert test.statistic == pytest.approx(2 * (full.llf - mnl_restricted.llf), rel=1e-14)
    assert test.pvalue == pytest.approx(stats.chi2.sf(test.statistic, 1), rel=1e-12)
    with pytest.raises(ValueError, match="restricted model first"):
        jic.lr_test(full, mnl_restricted)
    renamed = dataclasses.replace(mnl_restricted, names=("asc.bus", "asc.rail", "beta.price"))
    with pytest.raises(ValueError, match=r"not nested.*\['beta.price'\]"):
        jic.lr_test(renamed, full)
    # Ben-Akiva and Swait: the bound Phi(-sqrt(-2 z LL(0) + (P2 - P1)))
    bas = jic.lr_test(mnl_restricted, full, nested=False)
    z = full.rho2_adj - mnl_restricted.rho2_adj
    assert bas.statistic == pytest.approx(z, rel=1e-14)
    assert bas.pvalue == pytest.approx(stats.norm.cdf(-np.sqrt(-2 * z * full.llnull + 1)),
                                       rel=1e-12)


def test_warm_start_and_given_start(mnl, mnl_restricted):
    _, panel, full = mnl
    warm = jic.estimate(mnl_spec(), panel, start=full)
    assert warm.start.startswith("warm start: 4 estimates")
    assert warm.iterations <= 2 and warm.llf == pytest.approx(full.llf, rel=1e-12)
    partly = jic.estimate(mnl_spec(), panel, start=mnl_restricted)  # beta.time from it: 0
    assert partly.llf == pytest.approx(full.llf, rel=1e-10)
    given = jic.estimate(mnl_spec(), panel, start=dict(full.params))
    assert given.start == "given values of 4 parameters" and given.iterations <= 2
    with pytest.warns(RuntimeWarning, match="did not converge: maximum number of iterations"):
        stopped = jic.estimate(mnl_spec(), panel, max_iter=1)
    assert stopped.status is jic.Status.MAX_ITERATIONS


def test_sequential_start_reaches_the_same_optimum(iclv):
    spec, _, panel, result = iclv
    sequential = jic.estimate(spec, panel, jic.Halton(DRAWS, seed=0), optimizer="trust-exact",
                              start="sequential")
    assert sequential.converged
    assert sequential.start.startswith("sequential: the measurement and structural model (")
    assert "then the choice model given them (" in sequential.start
    assert sequential.llf_start > result.llf_start  # a better start than the model's values
    assert sequential.llf == pytest.approx(result.llf, rel=1e-10)
    np.testing.assert_allclose(sequential.estimates, result.estimates,
                               atol=1e-3 * result.bse.min())
    with pytest.raises(ValueError, match="sequential start needs"):
        jic.estimate(mnl_spec(), mnl_panel(mnl_frame(n=10)), start="sequential")


# --------------------------------------------------------------------------------------------
# files


def test_save_and_load_round_trip(iclv, tmp_path):
    spec, _, panel, result = iclv
    path = tmp_path / "result.npz"
    result.save(path)
    with np.load(path, allow_pickle=False) as archive:  # no pickled objects in the file
        assert "meta" in archive.files
    bare = jic.Results.load(path)
    again = jic.Results.load(path, model=spec, panel=panel, draws=jic.Halton(DRAWS, seed=0))
    for loaded in (bare, again):
        for field in dataclasses.fields(jic.Results):
            if field.name in ("model", "problem", "draws", "hessian_comparison", "_components"):
                continue
            want, got = getattr(result, field.name), getattr(loaded, field.name)
            if isinstance(want, np.ndarray):
                np.testing.assert_array_equal(got, want, err_msg=field.name)
            elif isinstance(want, dict) and want and isinstance(next(iter(want.values())),
                                                                np.ndarray):
                assert want.keys() == got.keys()
                for k in want:
                    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{field.name}.{k}")
            else:
                assert got == want, field.name
        pd.testing.assert_frame_equal(loaded.components, result.components)
        assert loaded.summary() == result.summary()
    pd.testing.assert_frame_equal(jic.posterior(again), jic.posterior(result))
    for got, want in zip(jax.tree.leaves(again.model), jax.tree.leaves(result.model)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="has no problem"):
        jic.posterior(bare)


def test_exports(mnl, tmp_path):
    result = mnl[2]
    table = result.table()
    for suffix in (".csv", ".json", ".tex", ".html"):
        result.export(tmp_path / f"t{suffix}")
    csv = pd.read_csv(tmp_path / "t.csv", index_col=0)
    np.testing.assert_allclose(csv.to_numpy(), table.to_numpy(), rtol=1e-14)
    records = pd.read_json(tmp_path / "t.json")
    assert list(records["parameter"]) == list(result.names)
    np.testing.assert_allclose(records["std err"], table["std err"], rtol=1e-13)
    tex = (tmp_path / "t.tex").read_text()
    assert "\\begin{tabular}" in tex and "beta.cost" in tex
    html = (tmp_path / "t.html").read_text()
    assert "<table" in html and "classical std err" in html
    with pytest.raises(ValueError, match="suffix"):
        result.export(tmp_path / "t.xlsx")
