"""Hessians by the structured assembly, jacfwd, forward and central differences: against
closed forms, against each other at the bundled reference model, symmetry enforcement, and
what the standard errors built on them deliver (identification problems reported, 95%
coverage)."""

import warnings

import numpy as np
import pytest
from scipy import special, stats

import jaxiclv as jic
from jaxiclv import _example as ex
from jaxiclv._hessian import EXACT_HESSIANS
from jaxiclv._individuals import Blocks, chunk_size_for_directions, individual_mesh

EPS = np.finfo(np.float64).eps
# Relative (to max |H|) error bounds implied by the step rules: forward differences have
# truncation h |g''| and rounding eps |g| / h with h = sqrt(eps) max(|theta|, 1), i.e. about
# sqrt(eps) = 1.5e-8 times a problem-dependent constant; central differences eps^(2/3) = 3.7e-11
# times one. A factor of 100 covers the constants (third derivatives, |g| / |H|) here.
BOUND = {"structured": 1e-10, "jacfwd": 1e-10, "fd-forward": 100 * np.sqrt(EPS),
         "fd-central": 100 * EPS ** (2 / 3)}


def _regression_problem():
    """y_k = alpha_k + gamma . z + e_k, e_k ~ N(0, sigma_k^2): an ICLV with a latent variable
    without disturbance (sigma_LV = exp(-1000) = 0) and unit loadings is a linear regression
    system, whose Hessian has a closed form."""
    model = jic.ICLV(jic.Structural({"a": ["z1", "z2"]}),
                     jic.NormalIndicators({"a": ["y1", "y2"]}))
    truth = jic.set_values(model, {"a.gamma.z1": 0.7, "a.gamma.z2": -0.4, "y1.alpha": 1.0,
                                   "y2.alpha": -0.5, "y1.log_sigma": np.log(0.8),
                                   "y2.log_sigma": np.log(1.3), "a.log_sigma": -1000.0})
    sim = jic.simulate(truth, 150, 1, seed=11)
    problem = jic.Problem(truth, sim.panel, jic.PseudoRandom(2),
                          fixed=["y1.zeta.a", "y2.zeta.a"])
    return problem, sim


def _regression_hessian(problem, sim, theta):
    v = problem.named(theta)
    z = sim.data[["z1", "z2"]].to_numpy()
    names = list(problem.space.names)
    h = np.zeros((len(names), len(names)))
    at = {n: i for i, n in enumerate(names)}
    for y in ("y1", "y2"):
        precision = np.exp(-2 * v[f"{y}.log_sigma"])
        e = sim.data[y].to_numpy() - v[f"{y}.alpha"] - z @ [v["a.gamma.z1"], v["a.gamma.z2"]]
        x = {f"{y}.alpha": np.ones_like(e), "a.gamma.z1": z[:, 0], "a.gamma.z2": z[:, 1]}
        for p, xp in x.items():  # d2/dmean-params: -x x' / sigma^2
            for q, xq in x.items():
                h[at[p], at[q]] -= precision * np.sum(xp * xq)
            cross = -2 * precision * np.sum(e * xp)  # d2 / d mean-param d log sigma
            h[at[p], at[f"{y}.log_sigma"]] += cross
            h[at[f"{y}.log_sigma"], at[p]] += cross
        h[at[f"{y}.log_sigma"], at[f"{y}.log_sigma"]] = -2 * precision * np.sum(e * e)
    return h


def _probit_problem():
    """A binary probit with no latent variable in it: closed-form Hessian
    sum_t -lambda_t (lambda_t + V_t) x_t x_t' with lambda_t = s phi(V) / Phi(s V)."""
    model = jic.ICLV(jic.Structural({"unused": []}),
                     choice=jic.BinaryProbit(attributes=["x1", "x2"], latent=[]))
    truth = jic.set_values(model, {"asc": 0.3, "beta.x1": 1.2, "beta.x2": -0.7})
    sim = jic.simulate(truth, 80, 3, seed=5)
    return jic.Problem(truth, sim.panel, jic.PseudoRandom(2)), sim


def _probit_hessian(problem, sim, theta):
    v = problem.named(theta)
    x = np.column_stack([np.ones(len(sim.data)), sim.data["x1"], sim.data["x2"]])
    utility = x @ [v["asc"], v["beta.x1"], v["beta.x2"]]
    sign = np.where(sim.data["choice"].to_numpy() == 1, 1.0, -1.0)
    mills = sign * np.exp(stats.norm.logpdf(utility) - special.log_ndtr(sign * utility))
    return -(x * (mills * (mills + utility))[:, None]).T @ x


@pytest.mark.parametrize("method", jic.HESSIANS)
@pytest.mark.parametrize("case", ["regression", "probit"])
def test_every_method_matches_the_closed_form(case, method):
    problem, sim = _regression_problem() if case == "regression" else _probit_problem()
    closed_form = _regression_hessian if case == "regression" else _probit_hessian
    rng = np.random.default_rng(3)
    for _ in range(3):  # several points, not only the truth
        theta = problem.theta0 + 0.2 * rng.standard_normal(problem.space.size)
        expected = closed_form(problem, sim, np.asarray(theta))
        got = jic.symmetrize(problem.hessian(theta, method), method).matrix
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=BOUND[method] * np.abs(expected).max())


@pytest.mark.parametrize("method", jic.HESSIANS)
def test_blocks_of_individuals_and_directions_leave_the_hessian_unchanged(method):
    """150 individuals in blocks of 16, 4 directions at a time: the directions run over
    blocks of 16 // 4 = 4 individuals (37 blocks and a remainder of 2; 7 parameters, so the
    directions leave a remainder too). Same closed form, and for the exact methods the same
    matrix as one pass up to summation order."""
    problem, sim = _regression_problem()
    blocked = jic.Problem(problem.space.template, sim.panel, jic.PseudoRandom(2),
                          fixed=["y1.zeta.a", "y2.zeta.a"], chunk_size=16)
    whole = jic.Problem(problem.space.template, sim.panel, jic.PseudoRandom(2),
                        fixed=["y1.zeta.a", "y2.zeta.a"], chunk_size=None)
    theta = problem.theta0 + 0.1
    got = np.asarray(blocked.hessian(theta, method, batch_size=4))
    expected = _regression_hessian(problem, sim, np.asarray(theta))
    np.testing.assert_allclose(got, expected, rtol=0, atol=BOUND[method] * np.abs(expected).max())
    if method in EXACT_HESSIANS:
        np.testing.assert_allclose(got, whole.hessian(theta, method, batch_size=4), rtol=0,
                                   atol=1e-13 * np.abs(expected).max())


def test_chunk_size_for_directions():
    assert chunk_size_for_directions(None, 32) == Blocks(None)
    assert chunk_size_for_directions(40, 32) == Blocks(1)
    assert chunk_size_for_directions(40, 16) == Blocks(2)
    assert chunk_size_for_directions(3, 32) == Blocks(1)
    mesh = individual_mesh(1)
    assert chunk_size_for_directions(Blocks(40, mesh), 16) == Blocks(2, mesh)


@pytest.mark.parametrize("method", ["structured", "jacfwd"])
def test_second_order_in_one_call_at_every_block_size(method):
    """``Problem.second_order`` (LL, gradient, scores and Hessian in one program; with the
    structured Hessian the scores come from its per-draw pass) equals the separate calls, and
    every block size the chunk rule can pick (1, a block leaving a remainder, one block: what
    "auto" picks for 150 individuals x 2 draws, one pass) gives the same values to 1e-12
    relative; the Hessian is the closed form's."""
    problem, sim = _regression_problem()
    theta = problem.theta0 + 0.1
    expected = _regression_hessian(problem, sim, np.asarray(theta))
    whole = None
    for chunk_size in (None, 1, 16, "auto"):
        blocked = jic.Problem(problem.space.template, sim.panel, jic.PseudoRandom(2),
                              fixed=["y1.zeta.a", "y2.zeta.a"], chunk_size=chunk_size)
        llf, grad, scores, hess = map(np.asarray, blocked.second_order(theta, method))
        separate_llf, separate_grad = map(np.asarray, blocked.loglik_and_grad(theta))
        assert llf == pytest.approx(separate_llf, rel=1e-13, abs=0), chunk_size
        scale = np.abs(separate_grad).max()
        np.testing.assert_allclose(grad, separate_grad, rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(scores, blocked.scores(theta), rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(scores.sum(axis=0), grad, rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(hess, blocked.hessian(theta, method), rtol=0,
                                   atol=1e-12 * np.abs(expected).max())
        np.testing.assert_allclose(hess, expected, rtol=0,
                                   atol=BOUND[method] * np.abs(expected).max())
        whole = whole or (llf, grad, scores, hess)
        for got, reference in zip((llf, grad, scores, hess), whole):
            np.testing.assert_allclose(got, reference, rtol=1e-12,
                                       atol=1e-12 * np.abs(reference).max())


def test_auto_chunk_size_fits_the_working_set():
    """Blocks of individuals x draws x per-draw values within the budget, at least one
    individual, at most all; the reference shape (W = 6 tasks + 38 items + 5 draw dimensions)
    gets 53 individuals at R = 100, 10 at R = 500 and 2 at R = 2,000 on CPU."""
    from jaxiclv._individuals import WORKING_SET, auto_chunk_size, per_draw_width
    panel = ex.reference_panel()
    width = per_draw_width(panel.arrays, ex.reference_model().n_draw_dims)
    assert width == 6 + 38 + 5
    assert auto_chunk_size(328, 100, width, "cpu") == 53
    assert auto_chunk_size(328, 500, width, "cpu") == 10
    assert auto_chunk_size(328, 2000, width, "cpu") == 2
    assert auto_chunk_size(328, 10**6, width, "cpu") == 1
    assert auto_chunk_size(20, 100, width, "cpu") == 20
    assert auto_chunk_size(100_000, 1000, width, "gpu") == WORKING_SET["accelerator"] // 49_000
    for n in (1, 7, 328, 100_000):
        for r in (1, 50, 100, 500, 2000):
            for backend in ("cpu", "gpu"):
                block = auto_chunk_size(n, r, width, backend)
                budget = WORKING_SET["cpu" if backend == "cpu" else "accelerator"]
                assert 1 <= block <= n
                assert block == n or block == 1 or block * r * width <= budget < (block + 1) * r * width
    assert (jic.Problem(ex.reference_model(), panel, jic.Halton(100, seed=0)).chunk_size
            == auto_chunk_size(328, 100, width))  # the default device's budget


def test_gradient_methods_give_the_same_hessian():
    problem, sim = _probit_problem()
    theta = problem.theta0
    expected = _probit_hessian(problem, sim, np.asarray(theta))
    for gradient in ("autodiff", "finite-difference"):
        other = jic.Problem(problem.space.template, sim.panel, jic.PseudoRandom(2),
                            gradient=gradient)
        got = np.asarray(other.hessian(theta, "jacfwd"))
        # a jacfwd through central differences inherits their eps^(2/3) relative error
        tolerance = 1e-10 if gradient == "autodiff" else 1e-6
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance * np.abs(expected).max())


def test_an_asymmetric_exact_hessian_is_an_error_and_differences_are_symmetrised():
    h = np.array([[-2.0, 1.0], [1.0, -3.0]])
    wrong = h.copy()
    wrong[0, 1] += 1e-3  # one wrong entry, as jacrev produced on CPU (JAX 0.10.2)
    with pytest.raises(jic.HessianAsymmetryError, match="not symmetric"):
        jic.symmetrize(wrong, "jacfwd")
    assert jic.symmetrize(h, "jacfwd").asymmetry == 0.0
    fd = jic.symmetrize(wrong, "fd-forward")
    np.testing.assert_array_equal(fd.matrix, fd.matrix.T)
    assert fd.asymmetry == pytest.approx(1e-3 / 3.0)


def test_comparison_report_flags_an_unidentified_model():
    # the LV scale is freed while every loading stays free: scale and loadings trade off
    model = jic.ICLV(jic.Structural({"a": ["z"]}, free_scale=["a"]),
                     jic.OrderedProbit({"a": ["q1", "q2", "q3"]}, levels=4),
                     jic.BinaryProbit(attributes=["x"], latent=["a"]))
    truth = jic.set_values(model, {"a.gamma.z": 0.5, "beta.x": 1.0, "theta.a": 0.5})
    sim = jic.simulate(truth, 120, 3, seed=2)
    problem = jic.Problem(truth, sim.panel, jic.Halton(20))
    comparison = problem.compare_hessians(problem.theta0)
    eigen = comparison.eigen()
    assert not eigen.loc["jacfwd", "negative definite"]
    assert "a.log_sigma" in eigen.loc["jacfwd", "offending parameters"]
    assert set(comparison.differences()["block"]) == {"all", "structural", "measurement", "choice"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jic.estimate(truth, sim.panel, jic.Halton(20), max_iter=300)
    # NaN on the scale's direction only: the thresholds and the choice's asc and beta stay
    for name in ("a.log_sigma", "a.gamma.z", "q1.zeta.a", "theta.a"):
        assert np.isnan(result.bse[name]), name
    for name in ("q1.tau1", "asc", "beta.x"):
        assert np.isfinite(result.bse[name]), name
    assert "a.log_sigma" in result.cov_message
    assert any("standard errors are NaN" in str(w.message) for w in caught)


@pytest.mark.slow
def test_methods_agree_at_the_bundled_reference_model():
    """The exact methods, structured and jacfwd, at the reference size (328 x 100 x 219),
    where jacrev over a hand-derived gradient once returned wrong rows on CPU: both symmetric
    and equal within rounding. (The finite-difference methods difference the same analytic
    gradient; they are checked against closed forms above and against jax.hessian in
    test_missing and test_components, at a fraction of the reference size's cost.)"""
    problem = jic.Problem(ex.reference_model(), ex.reference_panel(), jic.Halton(100))
    truth = problem.space.flatten(ex.reference_truth())
    comparison = problem.compare_hessians(truth, methods=EXACT_HESSIANS)
    exact = comparison.hessians["jacfwd"]
    assert exact.asymmetry < 1e-12
    scale = np.abs(exact.matrix).max()
    for method in ("structured",):
        difference = np.abs(comparison.hessians[method].matrix - exact.matrix).max()
        assert difference <= BOUND[method] * scale, (method, difference / scale)
    # at the true values (not the optimum) H need not be negative definite; the methods must
    # agree on the verdict
    assert comparison.eigen()["negative definite"].nunique() == 1


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth():
    """Correctly specified model, 60 simulated replications: robust and classical 95%
    intervals each cover the true values in roughly 95% of cases."""
    model = jic.ICLV(jic.Structural({"a": ["z"]}),
                     jic.OrderedProbit({"a": ["q1", "q2", "q3"]}, levels=4),
                     jic.BinaryProbit(attributes=["x"], latent=["a"]))
    truth = jic.set_values(model, {"a.gamma.z": 0.5, "q1.zeta.a": 0.8, "q2.zeta.a": 0.6,
                                   "q3.zeta.a": 0.7, "beta.x": 1.0, "theta.a": 0.6, "asc": -0.2})
    true_theta = np.asarray(jic.ParameterSpace.from_model(truth).flatten(truth))
    covered = {"robust": [], "classical": []}
    for replication in range(60):
        sim = jic.simulate(truth, 300, 4, seed=1000 + replication)
        # Newton: the same optimum as the default L-BFGS in fewer iterations (CI time)
        result = jic.estimate(model, sim.panel, jic.Halton(100, seed=replication),
                              optimizer="trust-exact")
        assert result.converged
        for kind in covered:
            cov, _ = jic.covariance(result.hessian, result.scores, kind, result.names)
            half = 1.959964 * np.sqrt(np.diag(cov))
            covered[kind].append(np.abs(result.estimates - true_theta) <= half)
    for kind, hits in covered.items():
        rate = np.mean(hits)
        # 60 x 16 intervals, correlated within a replication: the rate's standard error is
        # about 0.01-0.02; [0.90, 0.985] allows for that and for simulation bias at R = 100
        assert 0.90 <= rate <= 0.985, (kind, rate)
