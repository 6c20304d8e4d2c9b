"""Estimation end to end: parameter recovery from simulated data, the Results object,
standard errors checked against independent finite differences, and float32.

Every ``jic.estimate`` call compiles the likelihood, its gradient and its Hessian, so the
fast tests share a few estimates of one tiny, well-identified model (module-scoped fixtures)
and the recovery tests, which estimate 30-40 parameters on 1000 individuals, are marked slow.
"""

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxiclv as jic
from helpers import MINI_TRUTH, mini_model

# one worker runs the whole module (pytest-xdist --dist loadgroup): its module-scoped fits are
# computed once
pytestmark = pytest.mark.xdist_group("test_estimate")

# --------------------------------------------------------------------------------------------
# A tiny, well-identified model: two latent variables (b depends on a), two continuous and one
# four-level ordered-probit indicator per latent variable, a binary probit with one attribute.
# 27 free parameters; 60 individuals with 4 tasks each; 50 Halton draws.

TINY_N, TINY_TASKS, TINY_DRAWS = 60, 4, 50


def tiny_spec(free_scale=()):
    return jic.ICLV(
        latent=jic.Structural({"a": ["z1"], "b": ["z1"]}, parents={"b": ["a"]},
                              free_scale=free_scale),
        measurement=(jic.NormalIndicators({"a": ["a1", "a2"], "b": ["b1", "b2"]}),
                     jic.OrderedProbit({"a": ["a3"], "b": ["b3"]}, levels=4)),
        choice=jic.BinaryProbit(attributes=["x1"], latent=["a", "b"]),
    )


TINY_TRUTH = {
    "a.gamma.z1": 0.5, "b.gamma.z1": -0.3, "b.b.a": 0.4,
    "a1.zeta.a": 0.9, "a2.zeta.a": 0.7, "a3.zeta.a": 0.8,
    "b1.zeta.b": 0.8, "b2.zeta.b": 0.6, "b3.zeta.b": 0.7,
    "a1.alpha": 0.2, "b2.alpha": -0.3, "a1.log_sigma": -0.3, "b1.log_sigma": -0.2,
    "a3.tau1": -1.0, "b3.tau1": -0.8,  # thresholds -1, 0, 1 and -0.8, 0.2, 1.2
    "a3.log_dtau2": 0.0, "a3.log_dtau3": 0.0, "b3.log_dtau2": 0.0, "b3.log_dtau3": 0.0,
    "asc": 0.2, "beta.x1": -0.7, "theta.a": 0.5, "theta.b": -0.4,
}


def tiny_draws():
    return jic.Halton(TINY_DRAWS, seed=0)


# A smaller model still (helpers.mini_model), for the tests that need a model structure of
# their own: each new structure is compiled anew, and a smaller model compiles faster.

def mini_panel(seed):
    return jic.simulate(jic.set_values(mini_model(), MINI_TRUTH), TINY_N, TINY_TASKS,
                        seed=seed).panel


@pytest.fixture(scope="module")
def tiny():
    spec = tiny_spec()
    simulated = jic.simulate(jic.set_values(spec, TINY_TRUTH), TINY_N, TINY_TASKS, seed=1)
    return spec, simulated.panel


@pytest.fixture(scope="module")
def fit(tiny):
    """The tiny model estimated with the defaults (robust covariance), progress recorded."""
    spec, panel = tiny
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jic.estimate(spec, panel, tiny_draws(), progress_every=1,
                              progress=lambda *args: calls.append(args))
    return result, calls, caught


@pytest.fixture(scope="module")
def tiny_problem(tiny):
    spec, panel = tiny
    return jic.Problem(spec, panel, tiny_draws())


# --------------------------------------------------------------------------------------------
# Independent finite differences (of the plain simulated log-likelihood; no autodiff)


def _steps(theta, relative):
    """Steps ``relative * max(|theta|, 1)``, made exactly representable."""
    theta = np.asarray(theta, dtype=np.float64)
    raw = relative * np.maximum(np.abs(theta), 1.0)
    return (theta + raw) - theta


def fd_hessian(f, theta, relative=1e-4):
    """Central second differences of the scalar ``f`` (batched over all points):

    ``H_ii = (f(x + h_i) - 2 f(x) + f(x - h_i)) / h_i^2`` and
    ``H_ij = (f(x+h_i+h_j) - f(x+h_i-h_j) - f(x-h_i+h_j) + f(x-h_i-h_j)) / (4 h_i h_j)``.
    Truncation error ``O(h^2 f'''')``, rounding error ``O(eps |f| / h^2)``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = theta.size
    h = _steps(theta, relative)
    e = np.diag(h)
    pairs = [(i, j) for i in range(p) for j in range(i + 1, p)]
    points = [theta] + [theta + e[i] for i in range(p)] + [theta - e[i] for i in range(p)]
    for i, j in pairs:
        points += [theta + e[i] + e[j], theta + e[i] - e[j], theta - e[i] + e[j],
                   theta - e[i] - e[j]]
    values = np.asarray(jax.lax.map(f, jnp.asarray(np.stack(points)), batch_size=128))
    f0, plus, minus = values[0], values[1:p + 1], values[p + 1:2 * p + 1]
    hess = np.diag((plus - 2.0 * f0 + minus) / h**2)
    corners = values[2 * p + 1:].reshape(len(pairs), 4)
    for (i, j), (pp, pm, mp, mm) in zip(pairs, corners):
        hess[i, j] = hess[j, i] = (pp - pm - mp + mm) / (4.0 * h[i] * h[j])
    return hess


def fd_scores(problem, theta, relative=1e-5):
    """Per-individual scores ``(N, P)`` by central differences of
    :func:`jaxiclv.loglik_per_individual`: error ``O(h^2) + O(eps |LL_i| / h)``, ~1e-9."""
    theta = np.asarray(theta, dtype=np.float64)
    h = _steps(theta, relative)
    e = np.diag(h)

    def per_individual(t):
        return jic.loglik_per_individual(problem.space.unflatten(t), problem.data, problem.draws)

    plus = jax.lax.map(per_individual, jnp.asarray(theta[None, :] + e))   # (P, N)
    minus = jax.lax.map(per_individual, jnp.asarray(theta[None, :] - e))  # (P, N)
    return (np.asarray(plus) - np.asarray(minus)).T / (2.0 * h[None, :])


@pytest.fixture(scope="module")
def fd_at_estimate(fit, tiny_problem):
    result = fit[0]
    theta = result.estimates
    assert tuple(tiny_problem.space.names) == tuple(result.names)
    return fd_hessian(tiny_problem.loglik, theta), fd_scores(tiny_problem, theta)


# --------------------------------------------------------------------------------------------
# Results object


def test_tiny_fit_converged_without_warnings(fit, tiny_problem):
    result, _, caught = fit
    assert result.status is jic.Status.CONVERGED and result.converged
    assert result.status.value in result.message
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert result.cov_message == ""
    assert np.all(np.isfinite(result.bse))
    # the optimum improves on the start, and llf is the LL at the estimates
    assert result.llf > result.llf_start
    assert result.llf == pytest.approx(float(tiny_problem.loglik(jnp.asarray(result.estimates))),
                                       rel=1e-12)
    # the gradient at the estimates is small relative to the LL (gtol = 1e-6 relative)
    assert result.gradient_norm <= 1e-6 * abs(result.llf) * 1.0001


def test_results_are_immutable(fit):
    result = fit[0]
    assert dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.llf = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = jic.Status.STALLED


def test_results_statsmodels_names(fit):
    result = fit[0]
    names = list(result.names)
    p = len(names)
    assert result.n_params == p == len(jic.ParameterSpace.from_model(tiny_spec()).names)

    params = result.params
    assert isinstance(params, pd.Series) and list(params.index) == names
    np.testing.assert_array_equal(params.to_numpy(), result.estimates)

    cov = result.cov_params()
    assert isinstance(cov, pd.DataFrame)
    assert list(cov.index) == names and list(cov.columns) == names
    np.testing.assert_allclose(cov.to_numpy(), cov.to_numpy().T, rtol=1e-10,
                               atol=1e-14 * np.abs(cov.to_numpy()).max())
    assert np.all(np.linalg.eigvalsh(cov.to_numpy()) > 0)

    bse = result.bse
    assert list(bse.index) == names
    np.testing.assert_allclose(bse.to_numpy(), np.sqrt(np.diag(cov.to_numpy())), rtol=1e-14)
    np.testing.assert_allclose(result.tvalues.to_numpy(), params.to_numpy() / bse.to_numpy(),
                               rtol=1e-14)
    np.testing.assert_allclose(result.pvalues.to_numpy(),
                               2.0 * stats.norm.sf(np.abs(params.to_numpy() / bse.to_numpy())),
                               rtol=1e-12)
    assert np.all((result.pvalues >= 0) & (result.pvalues <= 1))

    assert isinstance(result.llf, float) and np.isfinite(result.llf)
    assert result.aic == pytest.approx(-2.0 * result.llf + 2.0 * p, rel=1e-14)
    assert result.bic == pytest.approx(-2.0 * result.llf + p * math.log(TINY_N), rel=1e-14)

    ci = result.conf_int()
    assert list(ci.columns) == ["lower", "upper"] and list(ci.index) == names
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(ci["lower"], params - z * bse, rtol=1e-12)
    np.testing.assert_allclose(ci["upper"], params + z * bse, rtol=1e-12)
    ci90 = result.conf_int(alpha=0.10)
    assert np.all(ci90["lower"] > ci["lower"]) and np.all(ci90["upper"] < ci["upper"])

    table = result.table()
    assert list(table.columns) == ["estimate", "std err", "t", "p", "classical std err",
                                   "classical t", "classical p"]
    assert list(table.index) == names
    np.testing.assert_array_equal(table["std err"], bse)
    np.testing.assert_array_equal(table["classical std err"],
                                  np.sqrt(np.diag(result.covariances["classical"])))


def test_summary_is_text_and_prints_nothing(fit, capsys):
    result = fit[0]
    text = result.summary()
    truth = pd.Series(TINY_TRUTH, name="true").to_frame()
    with_truth = result.summary(extra=truth)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert isinstance(text, str)
    for name in result.names:
        assert name in text
    for label, value in (("log-likelihood", result.llf), ("AIC", result.aic),
                         ("BIC", result.bic)):
        assert label in text
        assert f"{value:.6g}" in text
    assert "converged" in text
    assert str(result.n_individuals) in text
    # the fixed normalisations are listed
    assert "a.log_sigma" in text and "b.log_sigma" in text
    assert "true" in with_truth and "true" not in text


def test_results_counts_and_fixed_parameters(fit):
    result = fit[0]
    assert result.n_individuals == TINY_N
    assert result.n_observations == TINY_N * TINY_TASKS
    assert result.n_draws == TINY_DRAWS
    assert result.n_params == len(result.params) == result.cov.shape[0] == 27
    # the fixed scale of each latent variable is listed, at 0, and is not a parameter
    assert result.fixed == {"a.log_sigma": 0.0, "b.log_sigma": 0.0}
    assert not set(result.fixed) & set(result.names)


def test_history_and_progress_callback(fit):
    result, calls, _ = fit
    history = np.asarray(result.history)  # Newton (the default): the LL after each iteration
    assert history.shape == (result.iterations,)
    assert np.all(np.isfinite(history))
    assert history[0] >= result.llf_start
    assert history[-1] == pytest.approx(result.llf, rel=1e-10, abs=1e-8)
    # the trust region only accepts ascent steps (a rejected one keeps the point): the LL
    # never decreases, up to rounding
    assert np.all(np.diff(history) >= -1e-12 * abs(result.llf))
    # progress(iteration, llf, max |gradient|) on every iteration (progress_every=1)
    assert len(calls) == result.iterations
    assert [c[0] for c in calls] == list(range(1, result.iterations + 1))
    np.testing.assert_allclose([c[1] for c in calls], history, rtol=1e-14)
    norms = np.array([c[2] for c in calls])
    assert np.all(np.isfinite(norms)) and np.all(norms >= 0)
    assert norms[-1] < norms[0]
    assert norms[-1] <= 1e-6 * abs(result.llf) * 1.0001  # relative gradient <= gtol


def test_user_fixed_parameters_stay_at_their_start_and_nothing_prints(capsys):
    start = jic.set_values(mini_model(), {"y1.zeta.a": 1.0, "beta.x1": -0.5})
    result = jic.estimate(start, mini_panel(seed=1), tiny_draws(), fixed=["y1.zeta.a", "beta.x1"],
                          progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert result.converged
    assert "y1.zeta.a" not in result.names and "beta.x1" not in result.names
    assert result.n_params == len(jic.ParameterSpace.from_model(mini_model()).names) - 2 == 11
    assert result.fixed == {"a.log_sigma": 0.0, "y1.zeta.a": 1.0, "beta.x1": -0.5}
    values = jic.ParameterSpace.from_model(result.model).values(result.model)
    assert values["y1.zeta.a"] == 1.0 and values["beta.x1"] == -0.5
    assert "y1.zeta.a = 1" in result.summary() and "beta.x1 = -0.5" in result.summary()
    # the free parameters did move from their starting values
    space = jic.ParameterSpace.from_model(start, fixed=["y1.zeta.a", "beta.x1"])
    assert space.names == result.names
    assert np.all(result.estimates != np.asarray(space.flatten(start)))


def test_max_iter_and_progress_to_stderr(tiny, capsys):
    spec, panel = tiny
    with warnings.catch_warnings():
        # after two iterations the Hessian need not be negative definite
        warnings.simplefilter("ignore", RuntimeWarning)
        result = jic.estimate(spec, panel, tiny_draws(), max_iter=2, progress=True,
                              progress_every=1)
    captured = capsys.readouterr()
    assert result.status is jic.Status.MAX_ITERATIONS and not result.converged
    assert result.iterations == 2
    assert "maximum number of iterations" in result.message
    assert "maximum number of iterations" in result.summary()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    iterations = [line for line in lines if line.startswith("iteration")]
    assert len(iterations) == 2 and "LL" in iterations[0]
    # the stages: the sizes, then each compiled program announced before its first call
    assert lines[0] == "27 parameters, 60 individuals x 50 draws, blocks of 60 individuals"
    stages = [line for line in lines if line not in iterations]
    assert [line.split(":")[0] for line in stages if "ready in" in line] == [
        "the log-likelihood and its gradient", "the structured Hessian with the scores"]
    assert sum(line.startswith("compiling ") for line in stages) == 2


def test_status_enum():
    assert {s.name for s in jic.Status} >= {"CONVERGED", "MAX_ITERATIONS", "STALLED",
                                             "NON_FINITE"}
    for status in jic.Status:
        assert isinstance(status.value, str) and status.value


# --------------------------------------------------------------------------------------------
# Standard errors against independent finite differences
#
# With h = 1e-4 max(|theta|, 1), the second differences of LL (|LL| ~ 640) carry a rounding
# error ~ eps |LL| / h^2 ~ 1.5e-5 and a truncation error ~ h^2 |d^4 LL| ~ 1e-6 per entry,
# against max |H| ~ 1e2: ~2e-7 relative (the Hessian tolerance is 10x that). -H has its
# smallest eigenvalue ~1.7, so C = (-H)^-1 moves by ~ ||C||^2 ||dH|| ~ 1e-5 at most, about 1e-4
# of sqrt(C_ii C_jj) (the covariance tolerances). Measured: Hessian 1.5e-7 relative,
# covariances 2e-6 and 4e-6 relative; central-difference scores (h = 1e-5) agree to 6e-11.


def test_hessian_matches_finite_differences(fit, fd_at_estimate):
    hess_fd, _ = fd_at_estimate
    result = fit[0]
    scale = np.abs(hess_fd).max()
    np.testing.assert_allclose(result.hessian, hess_fd, rtol=0, atol=2e-6 * scale)


def test_classical_covariance_is_inverse_negative_hessian(fit, fd_at_estimate):
    hess_fd, _ = fd_at_estimate
    result = fit[0]
    # every covariance type is on the result; cov_type only chooses the default
    assert set(result.covariances) == {"classical", "robust", "bhhh"}
    classical = dataclasses.replace(result, cov_type="classical")
    np.testing.assert_array_equal(classical.cov, result.covariances["classical"])
    expected = np.linalg.inv(-hess_fd)
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(classical.cov / scale, expected / scale, rtol=0, atol=1e-4)
    np.testing.assert_allclose(classical.bse, np.sqrt(np.diag(expected)), rtol=1e-4)
    np.testing.assert_array_equal(result.std_errors("classical"), classical.bse)
    expected_bhhh = np.linalg.inv(result.scores.T @ result.scores)
    np.testing.assert_allclose(result.cov_params("bhhh"), expected_bhhh, rtol=1e-8,
                               atol=1e-12 * np.abs(expected_bhhh).max())
    with pytest.raises(KeyError, match="cluster"):
        result.cov_params("cluster")


def test_robust_covariance_is_the_sandwich(fit, fd_at_estimate):
    hess_fd, scores_fd = fd_at_estimate
    result = fit[0]
    assert result.cov_type == "robust"
    assert scores_fd.shape == (TINY_N, result.n_params)
    # per-individual scores sum to the gradient, ~0 at the estimate (relative gradient 1e-6)
    np.testing.assert_allclose(scores_fd.sum(axis=0), 0.0, atol=2e-6 * abs(result.llf))
    np.testing.assert_allclose(result.scores, scores_fd, rtol=0,
                               atol=1e-8 * np.abs(scores_fd).max())
    inverse = np.linalg.inv(-hess_fd)
    expected = inverse @ (scores_fd.T @ scores_fd) @ inverse
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(result.cov / scale, expected / scale, rtol=0, atol=1e-4)
    np.testing.assert_allclose(result.bse, np.sqrt(np.diag(expected)), rtol=1e-4)
    # the sandwich differs from the classical covariance (this is not a tautology)
    assert np.abs(np.sqrt(np.diag(inverse)) / result.bse - 1).max() > 1e-2


@pytest.mark.parametrize("seed", [1, 2])
def test_unidentified_model_gives_nan_standard_errors(seed):
    # a free scale for `a` with all its loadings free: (gamma, sigma) * c with the loadings and
    # the coefficient of `a` in the utility / c give the same likelihood for every c > 0: the
    # scale is not identified (the normalisation needs a fixed scale or a fixed loading). At the
    # estimate -H has an eigenvalue ~1e-5 (not exactly 0, as the gradient is only ~0) of either
    # sign depending on the data set, hence two data sets.
    spec = mini_model(free_scale=["a"])
    panel = mini_panel(seed)
    with pytest.warns(RuntimeWarning) as record:
        result = jic.estimate(spec, panel, tiny_draws())
    assert "a.log_sigma" in result.names
    # NaN on the scale's direction (scale, gamma, loadings, theta), not on the rest
    on_direction = ["a.log_sigma", "a.gamma.z1", "y1.zeta.a", "y2.zeta.a", "y3.zeta.a", "theta.a"]
    assert np.all(np.isnan(result.bse[on_direction]))
    assert np.all(np.isfinite(result.bse.drop(on_direction)))
    assert np.all(np.isnan(result.cov_params()[on_direction].to_numpy()))
    assert result.cov_message
    assert any(result.cov_message in str(w.message) for w in record)
    assert "identified" in result.cov_message or "singular" in result.cov_message
    assert "a.log_sigma" in result.cov_message  # the scale loads on the null direction
    assert np.isfinite(result.llf)
    assert isinstance(result.summary(), str)


# --------------------------------------------------------------------------------------------
# float32


def test_float32_matches_float64(fit, tiny):
    spec, panel = tiny
    result64 = fit[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result32 = jic.estimate(spec, panel, tiny_draws(), dtype=jnp.float32)
    assert result32.status in (jic.Status.CONVERGED, jic.Status.STALLED)
    assert np.isfinite(result32.llf)
    assert result32.estimates.dtype == np.float32
    # |LL| ~ 640 summed from 60 x 50 x ~10 terms: float32 rounding (eps 1.2e-7) is ~1e-6
    # relative, and stopping where the float32 gradient is only accurate to ~1e-5 relative
    # costs ~ g' (-H)^-1 g / 2 < 1e-3; 1e-5 relative (~6e-3) is a few times both
    assert result32.llf == pytest.approx(result64.llf, rel=1e-5)
    np.testing.assert_allclose(result32.estimates, result64.estimates,
                               atol=0.05 * result64.bse.to_numpy().min())


# --------------------------------------------------------------------------------------------
# Parameter recovery


def _check_recovery(spec, truth, panel, draws):
    """Estimate from the default starting values; >= 95% of the estimates within 3 robust
    standard errors of the truth. (On five simulated data sets each, both models below had
    every estimate within 3 standard errors, the largest |z| 2.74.)"""
    space = jic.ParameterSpace.from_model(spec)
    true = np.asarray(space.flatten(truth))
    result = jic.estimate(spec, panel, draws)
    assert result.converged, result.message
    assert tuple(result.names) == space.names
    z = (result.params.to_numpy() - true) / result.bse.to_numpy()
    assert np.all(np.isfinite(z))
    outside = {n: round(float(v), 2) for n, v in zip(result.names, z) if abs(v) > 3}
    assert np.mean(np.abs(z) <= 3) >= 0.95, outside
    # the truth cannot beat the maximum of the same simulated likelihood (same draws)
    llf_truth = float(jic.Problem(spec, panel, draws).loglik(jnp.asarray(true)))
    assert result.llf >= llf_truth
    return result


def _binary_probit_recovery_model():
    """Two latent variables (b <- a), three covariates, six 5-level ordered-probit items with
    loadings 0.4-0.9, and a binary probit with two attributes and both latent variables: 40
    parameters. With 100 Halton draws the simulation bias is small: re-estimating with 1000
    draws moved no estimate by more than 0.45 standard errors (mean 0.08)."""
    items = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"]}
    spec = jic.ICLV(
        latent=jic.Structural({"a": ["z1", "z2"], "b": ["z2", "z3"]}, parents={"b": ["a"]}),
        measurement=jic.OrderedProbit(items, levels=5),
        choice=jic.BinaryProbit(attributes=["x1", "x2"], latent=["a", "b"]),
    )
    values = {"a.gamma.z1": 0.5, "a.gamma.z2": -0.4, "b.gamma.z2": 0.3, "b.gamma.z3": 0.6,
              "b.b.a": 0.5, "asc": 0.3, "beta.x1": -0.8, "beta.x2": 0.6, "theta.a": 0.5,
              "theta.b": -0.4}
    loadings = {"a1": 0.9, "a2": 0.6, "a3": 0.4, "b1": 0.8, "b2": 0.5, "b3": 0.45}
    first = {"a1": -1.2, "a2": -1.5, "a3": -1.0, "b1": -1.4, "b2": -1.1, "b3": -1.6}
    for lv, names in items.items():
        for item in names:
            values[f"{item}.zeta.{lv}"] = loadings[item]
            values[f"{item}.tau1"] = first[item]
            for j in (2, 3, 4):
                values[f"{item}.log_dtau{j}"] = float(np.log([0.9, 1.1, 0.8][(j + len(item)) % 3]))
    return spec, jic.set_values(spec, values)


@pytest.mark.slow
def test_recovery_binary_probit_ordered_probit():
    spec, truth = _binary_probit_recovery_model()
    assert jic.ParameterSpace.from_model(spec).size == 40
    panel = jic.simulate(truth, 1000, 6, seed=3).panel
    result = _check_recovery(spec, truth, panel, jic.Halton(100, seed=0))
    assert result.n_individuals == 1000 and result.n_observations == 6000


def _multinomial_recovery_model():
    """Two latent variables (b <- a), six continuous indicators, a three-alternative logit with
    two generic attributes, alternative-specific constants and latent-variable effects, and a
    cost x a interaction: 29 parameters. The indicators are kept moderately informative (noise
    standard deviations 0.8-1.0): with noise 0.6 on a 0.8 loading, 100 Halton draws biased that
    indicator's log_sigma by a full standard error (against 1000 draws); here re-estimating
    with 1000 draws moves no estimate by more than 0.5 standard errors (mean 0.11)."""
    spec = jic.ICLV(
        latent=jic.Structural({"a": ["z1", "z2"], "b": ["z3"]}, parents={"b": ["a"]}),
        measurement=jic.NormalIndicators({"a": ["y1", "y2", "y3"], "b": ["y4", "y5", "y6"]}),
        choice=jic.MultinomialLogit([1, 2, 3], attributes=["cost", "time"],
                                    latent={"a": [2], "b": [3]}, interactions={"cost": ["a"]}),
    )
    values = {"a.gamma.z1": 0.6, "a.gamma.z2": -0.4, "b.gamma.z3": 0.5, "b.b.a": 0.4,
              "asc.2": 0.4, "asc.3": -0.3, "beta.cost": -1.0, "beta.time": -0.5,
              "theta.a.2": 0.6, "theta.b.3": -0.5, "kappa.cost.a": 0.3}
    for k, (y, lv, loading) in enumerate([("y1", "a", 0.8), ("y2", "a", 0.6), ("y3", "a", 0.5),
                                          ("y4", "b", 0.7), ("y5", "b", 0.6), ("y6", "b", 0.5)]):
        values[f"{y}.zeta.{lv}"] = loading
        values[f"{y}.alpha"] = [0.5, -0.3, 0.2, 0.0, 0.4, -0.2][k]
        values[f"{y}.log_sigma"] = float(np.log([0.9, 0.8, 1.0, 0.9, 1.0, 0.8][k]))
    return spec, jic.set_values(spec, values)


@pytest.mark.slow
def test_recovery_multinomial_logit_normal_indicators():
    spec, truth = _multinomial_recovery_model()
    assert jic.ParameterSpace.from_model(spec).size == 29
    panel = jic.simulate(truth, 1000, 6, seed=5).panel
    result = _check_recovery(spec, truth, panel, jic.Halton(100, seed=0))
    assert result.n_individuals == 1000 and result.n_observations == 6000


# --------------------------------------------------------------------------------------------
# The default optimiser does not depend on the units


def test_default_optimizer_reaches_the_optimum_whatever_the_units(fit, tiny):
    """The attribute in units of 10^4 (its coefficient ~1e-4): the default optimiser (Newton,
    stopping on the Newton decrement) reaches the optimum of the original data, with the
    coefficient scaled by 1e-4, to 1e-6 in LL; L-BFGS on the well-scaled original data with a
    tight tolerance reaches it too."""
    spec, panel = tiny
    result = fit[0]
    data = jic.simulate(jic.set_values(spec, TINY_TRUTH), TINY_N, TINY_TASKS, seed=1).data
    scaled = jic.estimate(spec, panel.with_data(data.assign(x1=1e4 * data["x1"])), tiny_draws())
    assert scaled.converged and result.optimizer == scaled.optimizer == "trust-exact"
    assert "Newton decrement" in scaled.message
    assert abs(scaled.llf - result.llf) <= 1e-6
    assert scaled.params["beta.x1"] * 1e4 == pytest.approx(result.params["beta.x1"], rel=1e-5)
    lbfgs = jic.estimate(spec, panel, tiny_draws(), optimizer="lbfgs", gtol=1e-9)
    assert lbfgs.converged and abs(lbfgs.llf - result.llf) <= 1e-6
