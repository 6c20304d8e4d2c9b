"""float32 problems: the per-draw work in float32, every sum over draws and individuals in
float64 (``jaxiclv._likelihood.SUMS``), the matrix products in full float32 precision.

Bounds, for the mini model at its truth (400 individuals x 3 tasks, 50 draws):
- the float32 problem's LL is the float64 sum of its per-individual LLs (each a float64
  ``logsumexp`` of float32 per-draw terms) to float64 rounding, ``1e-13`` relative (seen:
  2e-16); summed in float32 it could not be closer than float32's rounding of the total,
  ``6e-8``;
- against float64: each ``LL_i`` carries the float32 rounding of its ``T + K`` terms, a few
  eps32 (1.2e-7) of ``|LL_i|``, so ``|LL32 - LL64| <= 20 eps32 sum_i |LL_i|``; each gradient
  element ``20 eps32 sum_i |s_ip|`` (the scale of the per-individual terms it sums);
- the Hessians carry the float32 rounding of the per-draw scores, relative to ``max |H|``, and
  the standard errors that error amplified by the conditioning of ``-H``: 1e-5 and 1e-4
  (seen: 9e-8 and 5e-8; the reference model, worse conditioned, in benchmarks/).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxiclv as jic
from jaxiclv import _problem
from jaxiclv._individuals import for_each_individual
from helpers import MINI_TRUTH, mini_model, simulated_panel

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def problems():
    model = jic.set_values(mini_model(), MINI_TRUTH)
    panel = simulated_panel(model, 400, 3, seed=1)
    draws = jic.Halton(50, seed=2)
    problems = {dtype: jic.Problem(model, panel, draws, dtype=dtype)
                for dtype in (jnp.float32, jnp.float64)}
    problems["autodiff32"] = jic.Problem(model, panel, draws, dtype=jnp.float32,
                                         gradient="autodiff")
    return problems


def _per_individual(problem, theta):
    return np.asarray(for_each_individual(
        lambda model, x, eta: jic.individual_loglik(model, x, eta),
        problem.space.unflatten(theta), problem.data, problem.draws, problem.blocks))


def test_float32_sums_are_accumulated_in_float64(problems):
    problem = problems[jnp.float32]
    theta = problem.theta0
    assert theta.dtype == jnp.float32 and problem.draws.dtype == jnp.float32
    rows = _per_individual(problem, theta)
    assert rows.dtype == np.float64  # logsumexp over draws in float64
    total = float(np.sum(np.asarray(problem.data.weights, np.float64) * rows))
    llf, grad = problem.loglik_and_grad(theta)
    second = problem.second_order(theta)
    for value in (problem.loglik(theta), llf):
        assert value.dtype == jnp.float64
        assert float(value) == pytest.approx(total, rel=1e-13)
    # the structured Hessian's program evaluates each draw alone: other float32 roundings
    assert second[0].dtype == jnp.float64
    assert abs(float(second[0]) - total) <= 20 * EPS32 * np.sum(np.abs(rows))
    # the gradient and Hessian: float64 sums rounded once to the parameters' dtype
    assert grad.dtype == second[1].dtype == second[3].dtype == jnp.float32
    np.testing.assert_allclose(second[1], grad, rtol=0,
                               atol=4 * EPS32 * float(np.max(np.abs(grad))))


def test_float32_matches_float64_to_its_precision(problems):
    p32, p64 = problems[jnp.float32], problems[jnp.float64]
    t32, t64 = p32.theta0, p64.theta0
    (l32, g32), (l64, g64) = p32.loglik_and_grad(t32), p64.loglik_and_grad(t64)
    rows = _per_individual(p64, t64)
    assert abs(float(l32) - float(l64)) <= 20 * EPS32 * np.sum(np.abs(rows))
    scale = np.sum(np.abs(np.asarray(p64.scores(t64))), axis=0)
    assert np.all(np.abs(np.asarray(g32, np.float64) - np.asarray(g64)) <= 20 * EPS32 * scale)
    for method in ("structured", "jacfwd"):
        h32 = np.asarray(jic.symmetrize(p32.hessian(t32, method), method).matrix)
        h64 = np.asarray(jic.symmetrize(p64.hessian(t64, method), method).matrix)
        assert np.max(np.abs(h32 - h64)) <= 1e-5 * np.max(np.abs(h64)), method
        se = lambda h: np.sqrt(np.diag(np.linalg.inv(-h)))
        np.testing.assert_allclose(se(h32), se(h64), rtol=1e-4, err_msg=method)


def test_matrix_products_are_traced_in_full_precision(problems):
    """JAX's default float32 matrix product is TensorFloat-32 on recent GPUs (bfloat16 on
    TPUs): every product in the float32 programs asks for the highest precision."""
    problem = problems[jnp.float32]
    text = _problem._loglik_and_grad.lower(
        problem.space, problem.theta0, problem.data, problem.draws, problem.gradient,
        problem.blocks, problem.pullbacks).as_text()
    products = [line for line in text.splitlines()
                if "stablehlo.dot_general" in line and "xf32>" in line]
    assert products
    for line in products:
        assert "precision = [HIGHEST, HIGHEST]" in line, line


def test_float32_analytic_gradient_equals_autodiff(problems):
    """The analytic float32 gradient (float64 sums, rounded once) against ``jax.grad`` of the
    plain float32 likelihood (JAX's transpose: its sum over individuals in float32), at the
    truth and at a point far from it: within ``20 eps32 sum_i |s_ip|``, float32 rounding of
    the per-individual terms either way."""
    analytic, autodiff = problems[jnp.float32], problems["autodiff32"]
    rng = np.random.default_rng(5)
    far = analytic.theta0 + jnp.asarray(rng.uniform(-1.5, 1.5, analytic.theta0.shape),
                                        jnp.float32)
    for theta in (analytic.theta0, far):
        (l_a, g_a), (l_b, g_b) = analytic.loglik_and_grad(theta), autodiff.loglik_and_grad(theta)
        assert float(l_a) == float(l_b)  # the same float64 sum of the same rows
        scale = np.sum(np.abs(np.asarray(autodiff.scores(theta), np.float64)), axis=0)
        assert np.all(np.abs(np.asarray(g_a, np.float64) - np.asarray(g_b)) <= 20 * EPS32 * scale)
