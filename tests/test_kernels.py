"""The elementwise kernels against scipy references: values, first and second derivatives,
in the far tails, at infinite ends and on narrow intervals.

Tolerances. Wide intervals: 1e-13 relative (a few rounding errors in erfc/log and in the
reference). Narrow intervals of width w around c: rounding an argument of size |c| moves it by
about eps |c|, which moves log(F(b) - F(a)) by eps |c| / w (its derivative is about 1 / w), so
every method, the kernel and the reference alike, is only good to about eps max(1, |c|) / w in
absolute terms; we allow 4 times that (the kernel measures at most 0.6 times it against a
second-order midpoint expansion that is exact to ~1e-13 for w <= 1e-6).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special, stats

from jaxiclv import _kernels as K

EPS = np.finfo(np.float64).eps
INF = np.inf


# --------------------------------------------------------------------------------------------
# scipy references
# --------------------------------------------------------------------------------------------

def ref_log1mexp(x):
    """log(1 - exp(x)), x <= 0: log(-expm1(x)) near 0, else the series -sum_k e^{kx} / k
    (e^x <= 1/2, 80 terms: the remainder is below 2^-80)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    near = x > -math.log(2.0)
    out[near] = np.log(-np.expm1(x[near]))
    q = np.exp(x[~near])
    k = np.arange(1, 81, dtype=np.float64)[:, None]
    out[~near] = -np.sum(q[None, :] ** k / k, axis=0)
    return out


def _ref_interval(a, b, log_cdf, cdf):
    """log(F(b) - F(a)) for a symmetric F, in log space with the interval moved so that the
    subtraction is of the smaller tail: both ends below 0, both above 0 (reflected), or
    straddling 0 (1 - F(a) - F(-b), both tails <= 1/2)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    a, b = a.ravel(), b.ravel()
    out = np.empty(a.shape)
    below, above = b <= 0, a >= 0
    middle = ~below & ~above
    la, lb = log_cdf(a[below]), log_cdf(b[below])
    out[below] = lb + ref_log1mexp(la - lb)
    la, lb = log_cdf(-b[above]), log_cdf(-a[above])
    out[above] = lb + ref_log1mexp(la - lb)
    out[middle] = np.log1p(-(cdf(a[middle]) + cdf(-b[middle])))
    return out


def ref_log_normal_interval(a, b):
    return _ref_interval(a, b, special.log_ndtr, special.ndtr)


def ref_log_logistic_interval(a, b):
    return _ref_interval(a, b, special.log_expit, special.expit)


def ref_log_pdf(link, x):
    x = np.asarray(x, dtype=np.float64)
    if link == "probit":
        return stats.norm.logpdf(x)
    return stats.logistic.logpdf(x)


def ref_gradient(link, a, b):
    """(d/da, d/db) log(F(b) - F(a)) = (-f(a) / P, f(b) / P), computed as exp(log f - log P);
    zero at an infinite end."""
    ref = ref_log_normal_interval if link == "probit" else ref_log_logistic_interval
    log_p = ref(a, b)
    a, b = np.atleast_1d(a).astype(float), np.atleast_1d(b).astype(float)
    with np.errstate(invalid="ignore", over="ignore"):
        da = np.where(np.isinf(a), 0.0, -np.exp(ref_log_pdf(link, np.where(np.isinf(a), 0, a)) - log_p))
        db = np.where(np.isinf(b), 0.0, np.exp(ref_log_pdf(link, np.where(np.isinf(b), 0, b)) - log_p))
    return da, db


def ref_mills(x):
    """phi(x) / Phi(x), accurate everywhere: sqrt(2 / pi) / erfcx(-x / sqrt 2)."""
    return np.sqrt(2.0 / np.pi) / special.erfcx(-np.asarray(x, dtype=np.float64) / np.sqrt(2.0))


def grid_pairs(points):
    points = np.asarray(points, dtype=np.float64)
    a, b = np.meshgrid(points, points, indexing="ij")
    keep = (a < b) & ~(np.isneginf(a) & np.isposinf(b))
    return a[keep], b[keep]


FINITE = [-40.0, -35.0, -30.5, -30.0, -29.5, -27.0, -26.5, -25.5, -25.0, -24.5, -20.0, -8.0,
          -3.0, -1.0, -0.2, 0.0, 0.2, 1.0, 3.0, 8.0, 20.0, 24.5, 25.0, 25.5, 26.5, 27.0, 29.5,
          30.0, 30.5, 35.0, 40.0]
WIDE_A, WIDE_B = grid_pairs([-INF, *FINITE, INF])

# the central branch of log_normal_interval ends here in float64 (it was -30: there Phi(b)^2
# underflowed for -30 <= b < -26.5 and second derivatives were -inf / NaN)
TAIL = K.tail_point(jnp.float64)


# jitted once here: eager op-by-op dispatch of the kernels costs seconds per new shape
probit = jax.jit(lambda a, b: K.ordered_log_prob("probit", a, b))
logit = jax.jit(lambda a, b: K.ordered_log_prob("logit", a, b))
log_normal_interval = jax.jit(K.log_normal_interval)
log_logistic_interval = jax.jit(K.log_logistic_interval)
log_normal_cdf = jax.jit(lambda b: K.log_normal_interval(-jnp.inf, b))
binary_probit_log_prob = jax.jit(K.binary_probit_log_prob)
multinomial_logit_log_prob = jax.jit(K.multinomial_logit_log_prob)
normal_logpdf = jax.jit(K.normal_logpdf)
log1mexp = jax.jit(K.log1mexp)


LINKS = {"probit": probit, "logit": logit}
REFERENCES = {"probit": ref_log_normal_interval, "logit": ref_log_logistic_interval}


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_log_prob_on_wide_intervals_with_infinite_ends(link):
    value = np.asarray(LINKS[link](jnp.asarray(WIDE_A), jnp.asarray(WIDE_B)))
    np.testing.assert_allclose(value, REFERENCES[link](WIDE_A, WIDE_B), rtol=1e-13, atol=1e-14)


def test_log_normal_interval_with_finite_upper_end():
    finite = np.isfinite(WIDE_B)
    a, b = WIDE_A[finite], WIDE_B[finite]
    np.testing.assert_allclose(np.asarray(log_normal_interval(a, b)),
                               ref_log_normal_interval(a, b), rtol=1e-13, atol=1e-14)


def test_log_normal_cdf_far_tails():
    """log Phi(b) for b from -40 to 40 on a fine grid, across the branch switch."""
    b = np.concatenate([np.linspace(-40.0, 40.0, 8001), [TAIL - 1e-12, TAIL + 1e-12]])
    value = np.asarray(log_normal_cdf(b))
    np.testing.assert_allclose(value, special.log_ndtr(b), rtol=1e-13, atol=1e-15)
    # the two branches meet: no jump where the far-tail branch takes over
    left, right = np.asarray(log_normal_cdf(np.array([TAIL - 1e-12, TAIL])))
    assert abs(left - right) < 1e-9


@pytest.mark.parametrize("width", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("link", ["probit", "logit"])
def test_narrow_intervals(link, width):
    centre = np.array([-40.0, -35.0, -30.0, -29.99, -26.0, -25.0, -24.99, -20.0, -8.0, -3.0,
                       -1.0, -0.3, 0.0, 0.3, 1.0, 3.0, 8.0, 20.0, 24.99, 25.0, 26.0, 29.99,
                       30.0, 35.0, 40.0])
    a, b = centre - width / 2, centre + width / 2
    value = np.asarray(LINKS[link](jnp.asarray(a), jnp.asarray(b)))
    reference = REFERENCES[link](a, b)
    tolerance = 1e-13 * np.abs(reference) + 4 * EPS * np.maximum(1.0, np.abs(centre)) / width
    assert np.all(np.abs(value - reference) <= tolerance), np.abs(value - reference) / tolerance
    if link == "probit" and width <= 1e-6:
        # second-order midpoint rule, exact to ~1e-13 here: log(w phi(m) (1 + w^2 (m^2 - 1) / 24))
        w, m = b - a, (a + b) / 2
        expansion = np.log(w) + stats.norm.logpdf(m) + np.log1p(w * w * (m * m - 1) / 24)
        assert np.all(np.abs(value - expansion) <= tolerance)


def test_ordered_logit_far_tails():
    b = np.array([-700.0, -40.0, -5.0, 0.0, 5.0, 40.0, 700.0])
    np.testing.assert_allclose(np.asarray(logit(-jnp.inf, jnp.asarray(b))), special.log_expit(b),
                               rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(np.asarray(logit(jnp.asarray(b), jnp.inf)), special.log_expit(-b),
                               rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(np.asarray(log_logistic_interval(-np.inf, b)),
                               special.log_expit(b), rtol=1e-14, atol=1e-300)


def test_log_logistic_interval_matches_expit_differences():
    a, b = np.array([-3.0, -1.0, 0.5, -0.2]), np.array([-2.0, 2.0, 4.0, 0.1])
    direct = np.log(special.expit(b) - special.expit(a))  # fine at moderate arguments
    np.testing.assert_allclose(np.asarray(log_logistic_interval(a, b)),
                               direct, rtol=1e-14)


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_probabilities_of_all_categories_sum_to_one(link):
    thresholds = np.array([-1.3, -0.2, 0.4, 2.1])
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
    for index in [-40.0, -3.0, 0.0, 0.7, 3.0, 40.0]:
        log_p = LINKS[link](jnp.asarray(edges[:-1] - index), jnp.asarray(edges[1:] - index))
        assert np.all(np.isfinite(np.asarray(log_p)))
        np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p))), 1.0, rtol=1e-14)


@pytest.mark.parametrize("utility", [0.0, 0.3, -1.7, 5.0, -8.0, 20.0, -30.0, 35.0, -40.0, 40.0])
def test_binary_probit_log_prob(utility):
    v = jnp.full(2, utility)
    chosen = jnp.array([1, 0])
    value = np.asarray(binary_probit_log_prob(v, chosen))
    expected = special.log_ndtr([utility, -utility])
    np.testing.assert_allclose(value, expected, rtol=1e-13, atol=1e-15)


def ref_mnl(utility, chosen, available):
    utility = np.asarray(utility)
    out = np.empty(utility.shape[:-1])
    for index in np.ndindex(*utility.shape[:-1]):
        v, av = utility[index], np.asarray(available)[index]
        out[index] = v[chosen[index]] - special.logsumexp(v[av])
    return out


MNL_UTILITY = np.array([[0.3, -1.2, 2.0, 0.0],
                        [800.0, 799.0, -800.0, 0.0],     # overflow of a naive exp
                        [-900.0, -905.0, -899.0, -1000.0],  # underflow of a naive exp
                        [1.0, 2.0, 3.0, 4.0],
                        [5.0, 1.0, 1.0, 1.0]])
MNL_AVAILABLE = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 0, 1], [1, 0, 0, 0]],
                         dtype=bool)
MNL_CHOSEN = np.array([2, 1, 0, 3, 0])


def test_multinomial_logit_log_prob_with_availability():
    value = np.asarray(multinomial_logit_log_prob(jnp.asarray(MNL_UTILITY),
                                                    jnp.asarray(MNL_CHOSEN), jnp.asarray(MNL_AVAILABLE)))
    np.testing.assert_allclose(value, ref_mnl(MNL_UTILITY, MNL_CHOSEN, MNL_AVAILABLE),
                               rtol=1e-14, atol=1e-14)
    assert value[-1] == 0.0  # a single available alternative is chosen with probability 1
    # the same through scipy's weighted logsumexp
    weighted = special.logsumexp(MNL_UTILITY, b=MNL_AVAILABLE.astype(float), axis=-1)
    np.testing.assert_allclose(value, MNL_UTILITY[np.arange(5), MNL_CHOSEN] - weighted, rtol=1e-14,
                               atol=1e-14)


def test_multinomial_logit_batched_and_unavailable_utilities_ignored():
    rng = np.random.default_rng(0)
    utility = rng.normal(size=(3, 4, 5)) * 3
    available = rng.random((3, 4, 5)) < 0.6
    chosen = rng.integers(0, 5, (3, 4))
    available[np.arange(3)[:, None], np.arange(4)[None, :], chosen] = True
    value = np.asarray(multinomial_logit_log_prob(jnp.asarray(utility), jnp.asarray(chosen),
                                                    jnp.asarray(available)))
    np.testing.assert_allclose(value, ref_mnl(utility, chosen, available), rtol=1e-13)
    # the utility of an unavailable alternative does not matter, even if huge
    changed = np.where(available, utility, 1e6)
    np.testing.assert_array_equal(
        np.asarray(multinomial_logit_log_prob(jnp.asarray(changed), jnp.asarray(chosen),
                                                jnp.asarray(available))), value)


def test_multinomial_logit_alternatives_on_a_middle_axis():
    """The layout the choice model uses: ``(T, J, R)`` with the draws last, ``chosen`` and
    ``available`` broadcast over the draws; equal to the last-axis kernels draw by draw."""
    rng = np.random.default_rng(3)
    utility = rng.normal(size=(5, 4, 7)) * 3  # (T, J, R)
    args = (jnp.asarray(utility), jnp.asarray(MNL_CHOSEN)[:, None],
            jnp.asarray(MNL_AVAILABLE)[:, :, None])
    value = np.asarray(K.multinomial_logit_log_prob(*args, axis=1))
    slope = np.asarray(K.multinomial_logit_dlogp(*args, axis=1))
    assert value.shape == (5, 7) and slope.shape == (5, 4, 7)
    for r in range(7):
        np.testing.assert_allclose(value[:, r],
                                   ref_mnl(utility[:, :, r], MNL_CHOSEN, MNL_AVAILABLE),
                                   rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(slope[:, :, r], np.asarray(K.multinomial_logit_dlogp(
            jnp.asarray(utility[:, :, r]), jnp.asarray(MNL_CHOSEN), jnp.asarray(MNL_AVAILABLE))),
            rtol=1e-14, atol=1e-15)


def test_normal_logpdf():
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.normal(size=20) * 5, [1e3, -1e3, 0.0]])
    mean = np.concatenate([rng.normal(size=20), [0.0, 0.0, 0.0]])
    log_sigma = np.concatenate([rng.uniform(-5, 5, 20), [0.0, -10.0, 10.0]])
    value = np.asarray(normal_logpdf(y, mean, log_sigma))
    np.testing.assert_allclose(value, stats.norm.logpdf(y, mean, np.exp(log_sigma)), rtol=1e-13)


def test_log1mexp():
    x = np.concatenate([-np.logspace(-15, 3, 400), [-math.log(2.0) * (1 + 1e-15),
                                                    -math.log(2.0) * (1 - 1e-15), -745.0]])
    # atol: XLA flushes subnormal results (|log1mexp(x)| < 2.2e-308, x < -708) to zero
    np.testing.assert_allclose(np.asarray(log1mexp(x)), ref_log1mexp(x), rtol=1e-14, atol=1e-307)
    # log1mexp(log p) = log(1 - p)
    p = np.array([1e-300, 1e-20, 0.1, 0.5, 0.9, 1 - 1e-12])
    np.testing.assert_allclose(np.asarray(log1mexp(np.log(p))), np.log1p(-p),
                               rtol=1e-11)
    assert float(log1mexp(-np.inf)) == 0.0


# --------------------------------------------------------------------------------------------
# first and second derivatives
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _derivative_function(f, kind):
    """jitted and vmapped derivatives of f(a, b): the gradient, or the Hessian by
    jax.hessian (forward over reverse) or jax.jacrev(jax.grad) (reverse over reverse)."""
    args = (0, 1)
    g = {"grad": jax.grad(f, argnums=args),
         "hessian": jax.hessian(f, argnums=args),
         "jacrev": jax.jacrev(jax.grad(f, argnums=args), argnums=args)}[kind]
    return jax.jit(jax.vmap(g))


def _stack(pair):
    return np.stack([np.asarray(x) for x in pair], -1)


def gradient_of(f, a, b):
    """(n, 2): d f / d a, d f / d b at n points."""
    return _stack(_derivative_function(f, "grad")(jnp.asarray(a), jnp.asarray(b)))


def hessians_of(f, a, b):
    """Two (n, 2, 2) Hessians of f at n points, by two routes of automatic differentiation."""
    return [np.stack([_stack(row) for row in _derivative_function(f, kind)(jnp.asarray(a),
                                                                           jnp.asarray(b))], -2)
            for kind in ("hessian", "jacrev")]


def assert_gradient_close(gradient, reference, rtol):
    """Relative accuracy rtol, or 1e-15 of the gradient's scale for a negligible component
    (the derivative towards a far end: phi(-40) / P underflows to 0 where it is 1e-151,
    say, beside an O(10) derivative at the other end)."""
    scale = np.maximum(np.max(np.abs(reference), axis=-1, keepdims=True), 1.0)
    error = np.abs(gradient - reference)
    assert np.all(error <= rtol * np.abs(reference) + 1e-15 * scale), np.max(
        error / (rtol * np.abs(reference) + 1e-15 * scale))


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_first_derivatives_match_the_analytic_formula(link):
    gradient = gradient_of(LINKS[link], WIDE_A, WIDE_B)
    reference = np.stack(ref_gradient(link, WIDE_A, WIDE_B), -1)
    assert np.all(np.isfinite(gradient))
    assert_gradient_close(gradient, reference, rtol=1e-11)
    # an infinite end has no effect
    assert np.all(gradient[np.isneginf(WIDE_A), 0] == 0)
    assert np.all(gradient[np.isposinf(WIDE_B), 1] == 0)


def test_logistic_derivative_towards_a_far_lower_end_is_relatively_accurate():
    """Not only to the gradient's scale: with log(-expm1(a - b)), JAX's expm1 derivative
    (expm1(x) + 1) made d/da at (-40, -1) 4.2e-18 instead of 1.6e-17."""
    a, b = np.array([-40.0, -40.0, -20.0]), np.array([-1.0, -20.0, 0.0])
    gradient = gradient_of(logit, a, b)
    reference = np.stack(ref_gradient("logit", a, b), -1)
    np.testing.assert_allclose(gradient, reference, rtol=1e-11)


@pytest.mark.parametrize("width", [1e-3, 1e-6])
def test_first_derivatives_on_narrow_intervals(width):
    centre = np.array([-40.0, -29.0, -8.0, -1.0, 0.0, 2.0, 30.5])
    a, b = centre - width / 2, centre + width / 2
    gradient = gradient_of(probit, a, b)
    reference = np.stack(ref_gradient("probit", a, b), -1)
    rtol = (1e-12 + 4 * EPS * np.maximum(1.0, np.abs(centre)) / width)[:, None]  # as the values
    assert np.all(np.abs(gradient - reference) <= rtol * np.abs(reference))
    for hessian in hessians_of(probit, a, b):
        assert np.all(np.isfinite(hessian))


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_second_derivatives_are_finite_at_infinite_ends_and_in_the_tails(link):
    hessians = hessians_of(LINKS[link], WIDE_A, WIDE_B)
    a, b = WIDE_A, WIDE_B
    for h in hessians:
        bad = ~np.isfinite(h).all((1, 2))
        assert not bad.any(), list(zip(a[bad], b[bad]))
        # an infinite end has no effect: its row and column are zero
        assert np.all(h[np.isneginf(a), 0, :] == 0) and np.all(h[np.isposinf(b), 1, :] == 0)
        np.testing.assert_allclose(h, hessians[0], rtol=1e-10, atol=1e-300)


def test_second_derivatives_finite_where_the_probability_squared_underflows():
    """Phi(b)^2 underflows below b ~ -26.5: a central branch down to -30 gave -inf / NaN."""
    upper = np.array([-30.0, -29.5, -28.0, -27.0, -30.0, -28.0, -26.6])
    lower = np.array([-np.inf] * 4 + [-31.0, -28.5, -np.inf])
    hessians = hessians_of(probit, lower, upper)
    assert all(np.all(np.isfinite(h)) for h in hessians)


def test_second_derivatives_of_two_sided_intervals_match_the_analytic_formula():
    """H_bb = -b r_b - r_b^2, H_aa = a r_a - r_a^2, H_ab = r_a r_b with r = phi / P."""
    a = np.array([-3.0, -1.0, 0.5, -8.0, -40.0, 30.5, -0.1])
    b = np.array([-2.0, 1.5, 2.0, -7.0, -39.0, 35.0, 0.1])
    ra, rb = ref_gradient("probit", a, b)
    ra = -ra
    expected = np.stack([np.stack([a * ra - ra * ra, ra * rb], -1),
                         np.stack([ra * rb, -b * rb - rb * rb], -1)], -2)
    hessians = hessians_of(probit, a, b)
    for hessian in hessians:
        np.testing.assert_allclose(hessian, expected, rtol=1e-8, atol=1e-12)


INTERIOR = [(-1.3, 0.4), (-3.0, -2.5), (0.7, 2.2), (-8.0, -6.0), (-35.0, -33.0), (31.0, 33.0),
            (-0.2, 0.2), (-5.0, 5.0)]


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_check_grads_interior(link):
    """Finite differences against forward and reverse derivatives to order 2 at interior
    points, all at once (the kernels are elementwise), including intervals with one open end
    (finite differences do not move an infinite end: it is substituted inside f)."""
    a = np.array([x for x, _ in INTERIOR] + [0.0] * 4 + [2.0, -0.3, -4.0, 33.0])
    b = np.array([y for _, y in INTERIOR] + [-2.0, 0.3, 4.0, -33.0] + [0.0] * 4)
    open_below = np.arange(a.size) // 4 == 2
    open_above = np.arange(a.size) // 4 == 3

    def f(lower, upper):
        return LINKS[link](jnp.where(open_below, -jnp.inf, lower),
                           jnp.where(open_above, jnp.inf, upper))

    check_grads(jax.jit(f), (a, b), order=2, modes=["fwd", "rev"])


# log Phi(+-V) on a grid over both branches of log_normal_interval, including -30 .. -26.5
# where Phi^2 underflows (second derivatives there were once -inf / NaN)
BINARY_UTILITY = np.concatenate([np.linspace(-40.0, 40.0, 161), [-29.9, -26.6, 26.6, 29.9]])


def test_binary_probit_derivatives_match_the_mills_ratio():
    """d/dV log Phi(s V) = s lambda(s V) and d^2/dV^2 = -lambda(s V) (s V + lambda(s V)), with
    the inverse Mills ratio lambda = phi / Phi computed through scipy's erfcx."""
    def f(v, chosen):
        return K.binary_probit_log_prob(v, chosen)
    grad = jax.jit(jax.vmap(jax.grad(f), in_axes=(0, None)))
    hessian = jax.jit(jax.vmap(jax.hessian(f), in_axes=(0, None)))
    for chosen, sign in ((1, 1.0), (0, -1.0)):
        s = sign * BINARY_UTILITY
        np.testing.assert_allclose(np.asarray(grad(BINARY_UTILITY, chosen)), sign * ref_mills(s),
                                   rtol=1e-12, atol=1e-300)
        second = np.asarray(hessian(BINARY_UTILITY, chosen))
        assert np.all(np.isfinite(second))
        np.testing.assert_allclose(second, -ref_mills(s) * (s + ref_mills(s)), rtol=1e-9,
                                   atol=1e-25)


def test_multinomial_logit_derivatives():
    """d/dV_j = [j = chosen] - P_j over the available alternatives, 0 for the unavailable;
    d^2/dV dV' = -(diag P - P P')."""
    utility = jnp.asarray(MNL_UTILITY)
    chosen, available = jnp.asarray(MNL_CHOSEN), jnp.asarray(MNL_AVAILABLE)
    f = K.multinomial_logit_log_prob
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(utility, chosen, available))
    hess = np.asarray(jax.jit(jax.vmap(jax.hessian(f)))(utility, chosen, available))
    for t in range(len(MNL_CHOSEN)):
        av = MNL_AVAILABLE[t]
        p = np.zeros(4)
        p[av] = special.softmax(MNL_UTILITY[t][av])
        np.testing.assert_allclose(grad[t], np.eye(4)[MNL_CHOSEN[t]] - p, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(hess[t], -(np.diag(p) - np.outer(p, p)), rtol=1e-12, atol=1e-15)
    rows = np.array([0, 3, 4])
    check_grads(jax.jit(lambda v: f(v, chosen[rows], available[rows])), (utility[rows],),
                order=2, modes=["fwd", "rev"])


def test_multinomial_logit_padding_row_is_harmless_under_a_mask():
    """A padded task has no available alternative (its log-probability is not finite); under
    the task mask it contributes 0, and its derivatives are 0, not NaN."""
    utility = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    chosen = jnp.array([0, 0])
    available = jnp.array([[True, True, False], [False, False, False]])
    mask = jnp.array([True, False])

    @jax.jit
    def masked(v):
        return jnp.sum(jnp.where(mask, K.multinomial_logit_log_prob(v, chosen, available), 0.0))

    np.testing.assert_allclose(float(masked(utility)), -math.log1p(math.e), rtol=1e-14)
    grad = np.asarray(jax.jit(jax.grad(masked))(utility))
    assert np.all(np.isfinite(grad)) and np.all(grad[1] == 0.0)
    assert np.all(np.isfinite(np.asarray(jax.jit(jax.hessian(masked))(utility))))


def test_normal_logpdf_derivatives():
    y, mean, log_sigma = 1.7, -0.4, 0.3
    grads = jax.grad(normal_logpdf, argnums=(0, 1, 2))(y, mean, log_sigma)
    z = (y - mean) / math.exp(log_sigma)
    np.testing.assert_allclose([float(g) for g in grads],
                               [-z / math.exp(log_sigma), z / math.exp(log_sigma), z * z - 1],
                               rtol=1e-14)
    check_grads(normal_logpdf, (np.array([y, -30.0]), np.array([mean, 2.0]),
                                np.array([log_sigma, -3.0])), order=2, modes=["fwd", "rev"])


def test_log1mexp_derivatives():
    x = np.array([-1e-15, -1e-8, -0.1, -0.69, -0.7, -3.0, -40.0, -700.0])
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(K.log1mexp)))(x))
    np.testing.assert_allclose(grad, -1.0 / np.expm1(-x), rtol=1e-12)
    second = np.asarray(jax.jit(jax.vmap(jax.hessian(K.log1mexp)))(x))
    # d/dx -1 / expm1(-x) = -exp(x) / expm1(x)^2
    np.testing.assert_allclose(second, -np.exp(x) / np.expm1(x) ** 2, rtol=1e-10)
    # finite differences need steps well inside (x, 0)
    check_grads(log1mexp, (np.array([-0.1, -0.69, -0.7, -3.0, -40.0]),), order=2,
                modes=["fwd", "rev"], eps=1e-4)


def test_log1mexp_derivative_very_close_to_zero():
    """For -1.1e-16 < x < 0, exp(x) rounds to 1 and the unused log1p(-exp(x)) branch has an
    infinite derivative; it must not turn jnp.where's zero cotangent into NaN."""
    x = np.array([-1e-20, -1e-17, -5e-17])
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(K.log1mexp)))(x))
    np.testing.assert_allclose(grad, -1.0 / np.expm1(-x), rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(jax.jit(jax.vmap(jax.hessian(K.log1mexp)))(x))))


# --------------------------------------------------------------------------------------------
# hand-derived derivative kernels (used by the analytic scores), where present
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_interval_ratios_are_the_derivative(link):
    gradient = gradient_of(LINKS[link], WIDE_A, WIDE_B)
    da, db = gradient[:, 0], gradient[:, 1]
    interval = jax.jit(functools.partial(K.ordered_interval, link))
    log_p, lower, upper = map(np.asarray, interval(jnp.asarray(WIDE_A), jnp.asarray(WIDE_B)))
    # the same value as ordered_log_prob (up to the order XLA fuses the operations in)
    np.testing.assert_allclose(log_p, np.asarray(LINKS[link](jnp.asarray(WIDE_A),
                                                             jnp.asarray(WIDE_B))), rtol=4 * EPS)
    ratio = np.stack([-lower, upper], -1)
    assert_gradient_close(ratio, np.stack(ref_gradient(link, WIDE_A, WIDE_B), -1), rtol=1e-11)
    assert_gradient_close(ratio, np.stack([da, db], -1), rtol=1e-11)
    # at an open end the ratio is 0 and so are its derivatives
    for lower_end, upper_end in ((-jnp.inf, 0.3), (-0.3, jnp.inf)):
        ratios = jax.jacfwd(lambda t: jnp.stack(K.ordered_interval(link, lower_end + t,
                                                                   upper_end + t)[1:]))(0.0)
        assert np.all(np.isfinite(np.asarray(ratios)))
        open_end = 0 if np.isneginf(lower_end) else 1
        assert float(ratios[open_end]) == 0.0


def test_binary_probit_dlogp_is_the_derivative():
    v = jnp.array([-40.0, -35.0, -28.0, -3.0, 0.0, 2.0, 28.0, 35.0, 40.0, -1e4, 1e4, -1e150])
    for chosen in (0, 1):
        c = jnp.full(v.shape, chosen)
        log_p, dlogp = K.binary_probit_log_prob_and_dlogp(v, c)
        np.testing.assert_allclose(np.asarray(log_p), np.asarray(K.binary_probit_log_prob(v, c)),
                                   rtol=4 * EPS)
        sign = 1.0 if chosen else -1.0
        np.testing.assert_allclose(np.asarray(dlogp), sign * ref_mills(sign * np.asarray(v)),
                                   rtol=1e-12, atol=1e-300)


def test_multinomial_logit_dlogp_is_the_derivative():
    utility = jnp.asarray(MNL_UTILITY)
    chosen, available = jnp.asarray(MNL_CHOSEN), jnp.asarray(MNL_AVAILABLE)
    value = np.asarray(K.multinomial_logit_dlogp(utility, chosen, available))
    for t in range(len(MNL_CHOSEN)):
        av = MNL_AVAILABLE[t]
        p = np.zeros(4)
        p[av] = special.softmax(MNL_UTILITY[t][av])
        np.testing.assert_allclose(value[t], np.eye(4)[MNL_CHOSEN[t]] - p, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# every supported dtype over its whole range
# --------------------------------------------------------------------------------------------

# |x| up to where x^2 / 2 still fits the dtype (float32: 1.8e19, float64: 1.9e154)
DTYPE_LIMITS = {jnp.float32: 1e18, jnp.float64: 1e150}


def _log_grid(limit):
    """0, +-1e-3 .. +-limit (logarithmically) and the points around the tail points."""
    magnitudes = np.geomspace(1e-3, limit, 200)
    extra = [7.9, 8.0, 8.1, 12.9, 13.0, 13.1, 24.9, 25.0, 25.1]
    return np.unique(np.concatenate([-magnitudes, [0.0], magnitudes, extra, np.negative(extra)]))


def _relative_error(value, reference, floor=np.finfo(np.float64).tiny):
    return np.abs(value - reference) / np.maximum(np.abs(reference), floor)


def _mills_bound(x, dtype):
    """Relative error allowed for phi(x) / Phi(x): on the central branch exp(log phi - log Phi)
    carries the rounding of both logs, each about eps x^2 / 2 (measured: up to 1.2 eps x^2 in
    float64 near the tail point), so 16 eps + 1.5 eps x^2; in the far tail exp(-log sqrt(2 pi)
    - log E) with |log E| ~ log(2 |x| sqrt(pi / 2)) carries eps |log E|, so 16 eps + 2 eps
    log(1 + |x|). Ratios below 1e-30 (or that underflow) are not checked relatively."""
    tail = -K.tail_point(dtype)
    central = 16.0 + 1.5 * np.minimum(x * x, tail * tail)
    far = 16.0 + 2.0 * np.log1p(np.abs(x))
    return float(jnp.finfo(dtype).eps) * np.where(x < -tail, far, central)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_log_cdfs_and_their_ratios_over_each_dtypes_range(dtype):
    """log F(x) and f(x) / F(x) for both links, down to each dtype's limit, against scipy in
    float64 (log_ndtr and erfcx for the probit, log_expit and expit for the logit). The probit
    ratio in the central branch is exp(log phi - log Phi), good to about eps x^2 / 2 (the
    rounding of x^2 / 2); in the far tail it is exp(-log sqrt(2 pi) - log E) to about eps
    |log E|. Second derivatives stay finite everywhere, and the probit's lie in (-1, 0) (log Phi
    is concave, its curvature between -1 and 0) within the rounding of x + r, which cancels in
    the far tail (r ~ -x): 16 eps x^2 allowed, checked where that is below 1e-3."""
    eps = float(jnp.finfo(dtype).eps)
    x = _log_grid(DTYPE_LIMITS[dtype])
    xs = jnp.asarray(x, dtype=dtype)
    for link, log_cdf, ratio in (
            ("probit", special.log_ndtr, ref_mills),
            ("logit", special.log_expit, lambda t: special.expit(-t))):
        interval = jax.jit(lambda t, link=link: K.ordered_interval(link, -jnp.inf, t))
        log_p, lower, upper = map(np.asarray, interval(xs))
        assert log_p.dtype == dtype and upper.dtype == dtype
        np.testing.assert_array_equal(lower, 0.0)
        # log F(x) = log(1 - F(-x)) for x > 0 is good to eps absolutely (what a sum of
        # log-likelihoods needs), not relatively: the error is relative to max(|log F|, 1)
        assert np.all(_relative_error(log_p, log_cdf(x), 1.0) <= 16 * eps), link
        # the logit's ratio: a few eps (its factors carry no cancellation)
        bound = _mills_bound(x, dtype) if link == "probit" else np.full(x.shape, 16 * eps)
        error = _relative_error(upper, ratio(x))
        assert np.all((error <= bound) | (ratio(x) < 1e-30)), (link, x[np.argmax(error / bound)])
        log_cdf_of = lambda t, link=link: K.ordered_log_prob(link, jnp.asarray(-jnp.inf, dtype), t)
        grad = jax.jit(jax.vmap(jax.grad(log_cdf_of)))
        np.testing.assert_allclose(np.asarray(grad(xs)), upper, rtol=4 * eps, atol=0)
        second = np.asarray(jax.jit(jax.vmap(jax.grad(jax.grad(log_cdf_of))))(xs))
        assert np.all(np.isfinite(second)), link
        if link == "probit":
            rounding = _mills_bound(x, dtype) + 16 * eps * x * x  # measured: up to 6.3 eps x^2
            check = rounding < 1e-3
            within = (second <= rounding) & (second >= -1.0 - rounding)
            assert np.all(within[check]), x[check & ~within]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_binary_probit_over_each_dtypes_range(dtype):
    eps = float(jnp.finfo(dtype).eps)
    v = _log_grid(DTYPE_LIMITS[dtype])
    log_p, dlogp = map(np.asarray, jax.jit(K.binary_probit_log_prob_and_dlogp)(
        jnp.asarray(v, dtype), jnp.zeros(v.shape, jnp.int32)))  # chose 0: log Phi(-V)
    assert np.all(np.isfinite(log_p)) and np.all(np.isfinite(dlogp))
    assert np.all(_relative_error(log_p, special.log_ndtr(-v), 1.0) <= 16 * eps)
    mills = ref_mills(-v)
    assert np.all((_relative_error(-dlogp, mills) <= _mills_bound(-v, dtype)) | (mills < 1e-30))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_normal_intervals_in_the_far_tails_of_each_dtype(dtype):
    """Intervals below the tail point (narrow, wide, one open end) against the float64
    references: log P to a few eps, both ratios (the derivatives) too, where float32 once
    gave -inf for -25 < b < -13 and lost every digit of the ratio by b = -1e4 (the ratios
    carry about eps |log E|: 32 eps allowed)."""
    eps = float(jnp.finfo(dtype).eps)
    a = np.array([-1e4 - 1.0, -20.0, -9.0, -14.0, -np.inf, -np.inf, -31.0, -1e3, -10.5])
    b = np.array([-1e4, -9.0, -8.5, -13.0, -30.0, -1e4, -30.0, -999.0, -10.0])
    log_p, lower, upper = map(np.asarray, jax.jit(K.normal_interval)(
        jnp.asarray(a, dtype), jnp.asarray(b, dtype)))
    np.testing.assert_allclose(log_p, ref_log_normal_interval(a, b), rtol=16 * eps)
    ref_da, ref_db = ref_gradient("probit", a, b)  # float64: good to eps64 x^2, far below eps32
    tolerance = 32 * eps if dtype == jnp.float32 else 1e-8  # float64: the reference's own error
    np.testing.assert_allclose(upper, ref_db, rtol=tolerance)
    np.testing.assert_allclose(-lower, ref_da, rtol=tolerance, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_multinomial_logit_and_normal_density_in_each_dtype(dtype):
    eps = float(jnp.finfo(dtype).eps)
    utility = np.array([[0.0, 1.0, -2.0], [80.0, -80.0, 0.0], [1e30, 1e30, -1e30],
                        [-1e3, -1e3 + 1.0, -1e3 - 1.0]])
    chosen = np.array([0, 1, 1, 2])
    log_p = np.asarray(jax.jit(K.multinomial_logit_log_prob)(
        jnp.asarray(utility, dtype), jnp.asarray(chosen), jnp.ones(utility.shape, bool)))
    reference = np.array([u[c] - special.logsumexp(u) for u, c in zip(utility, chosen)])
    # log P is a difference of utilities: good to eps max|V| absolutely
    assert np.all(np.abs(log_p - reference) <= 16 * eps * np.abs(utility).max(axis=1))
    y = np.array([0.3, -40.0, 1e18, 5.0])
    value = np.asarray(jax.jit(K.normal_logpdf)(jnp.asarray(y, dtype), jnp.asarray(0.1, dtype),
                                                jnp.asarray(np.log(2.0), dtype)))
    np.testing.assert_allclose(value, stats.norm.logpdf(y, 0.1, 2.0), rtol=16 * eps)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float16, jnp.bfloat16, jnp.complex64])
def test_unsupported_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="dtype must be float64 .* or float32"):
        K.check_dtype(dtype)
