"""Draw generators: shape, determinism, N(0, 1) moments, the classic Halton sequence, MLHS
strata, and the checks on user-supplied draws."""

import numpy as np
import pandas as pd
import pytest
from scipy import special

import jaxiclv as jic

GENERATORS = [jic.Halton, jic.Sobol, jic.MLHS, jic.PseudoRandom]
N, R, D = 40, 100, 4  # 16,000 draws, 4,000 per dimension


def radical_inverse(k: int, base: int) -> float:
    """The van der Corput radical inverse of ``k``: its base-``base`` digits mirrored."""
    value, scale = 0.0, 1.0 / base
    while k:
        k, digit = divmod(k, base)
        value += digit * scale
        scale /= base
    return value


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("n, r, d", [(1, 1, 1), (3, 7, 2), (5, 16, 6)])
def test_shape_and_finite(generator, n, r, d):
    draws = generator(r, seed=0)(n, d)
    assert draws.shape == (n, r, d) and draws.dtype == np.float64
    assert np.all(np.isfinite(draws))
    np.testing.assert_array_equal(jic.make_draws(generator(r, seed=0), n, d), draws)


@pytest.mark.parametrize("generator", GENERATORS)
def test_deterministic_in_the_seed(generator):
    first = generator(R, seed=123)(N, D)
    np.testing.assert_array_equal(generator(R, seed=123)(N, D), first)
    other = generator(R, seed=124)(N, D)
    assert not np.allclose(other, first)
    # individuals get different draws, not one block repeated
    assert not np.allclose(first[0], first[1])


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("seed", [0, 7])
def test_standard_normal_moments(generator, seed):
    """Mean 0, variance 1, kurtosis 3 and no correlation, overall and per dimension.

    Bounds are 5 standard errors of an iid N(0, 1) sample of size n: mean 1/sqrt(n), variance
    sqrt(2/n), kurtosis sqrt(24/n), correlation 1/sqrt(n); an iid sample breaks one with
    probability about 6e-7. Quasi-random (Halton, Sobol) and stratified (MLHS) points are
    more even than iid points, so the same bounds hold for them a fortiori.
    """
    draws = generator(R, seed=seed)(N, D)
    flat = draws.reshape(-1)
    n = flat.size
    assert abs(flat.mean()) < 5 / np.sqrt(n)
    assert abs(flat.var() - 1) < 5 * np.sqrt(2 / n)
    per_dim = draws.reshape(-1, D)
    m = per_dim.shape[0]
    assert np.all(np.abs(per_dim.mean(0)) < 5 / np.sqrt(m))
    assert np.all(np.abs(per_dim.var(0) - 1) < 5 * np.sqrt(2 / m))
    kurtosis = (per_dim ** 4).mean(0) / per_dim.var(0) ** 2
    assert np.all(np.abs(kurtosis - 3) < 5 * np.sqrt(24 / m))
    correlation = np.corrcoef(per_dim, rowvar=False)[np.triu_indices(D, 1)]
    assert np.all(np.abs(correlation) < 5 / np.sqrt(m))


@pytest.mark.parametrize("generator", [jic.MLHS, jic.Halton, jic.Sobol])
def test_structured_draws_are_more_even_than_iid(generator):
    """Stratified and quasi-random points: the overall mean is far closer to 0 than 1/sqrt(n)."""
    flat = generator(R, seed=0)(N, D).reshape(-1)
    assert abs(flat.mean()) < 0.5 / np.sqrt(flat.size)


def test_halton_differs_from_pseudo_random():
    halton, pseudo = jic.Halton(R, seed=0)(N, D), jic.PseudoRandom(R, seed=0)(N, D)
    assert not np.allclose(halton, pseudo)
    assert np.max(np.abs(halton - pseudo)) > 1.0


@pytest.mark.parametrize("n, r", [(1, 10), (4, 5), (3, 33)])
def test_unscrambled_halton_is_the_classic_sequence(n, r):
    """Bases 2, 3, 5: point k of the sequence is (phi_2(k), phi_3(k), phi_5(k)); point 0 is
    skipped, individual i gets points i R + 1 .. i R + R, mapped by the inverse normal CDF."""
    draws = jic.Halton(r, scramble=False, skip=1)(n, 3)
    k = 1 + np.arange(n * r)
    uniform = np.array([[radical_inverse(int(j), b) for b in (2, 3, 5)] for j in k])
    expected = special.ndtri(uniform).reshape(n, r, 3)
    np.testing.assert_allclose(draws, expected, rtol=1e-13, atol=1e-13)
    # by hand for the first points: 1/2, 1/4, 3/4, 1/8 and 1/3, 2/3, 1/9, 4/9
    np.testing.assert_allclose(special.ndtr(draws.reshape(-1, 3)[:4, :2]),
                               [[1 / 2, 1 / 3], [1 / 4, 2 / 3], [3 / 4, 1 / 9], [1 / 8, 4 / 9]],
                               rtol=1e-14)
    # the default for the unscrambled sequence skips the origin
    np.testing.assert_array_equal(jic.Halton(r, scramble=False)(n, 3), draws)
    # and the seed plays no role without scrambling
    np.testing.assert_array_equal(jic.Halton(r, seed=99, scramble=False)(n, 3), draws)


def test_halton_skip():
    long = jic.Halton(6, scramble=False, skip=1)(1, 2)
    np.testing.assert_array_equal(jic.Halton(4, scramble=False, skip=3)(1, 2), long[:, 2:])
    with pytest.raises(ValueError, match="origin"):
        jic.Halton(4, scramble=False, skip=0)(2, 2)
    scrambled = jic.Halton(6, seed=0)(1, 2)
    np.testing.assert_array_equal(jic.Halton(4, seed=0, skip=2)(1, 2), scrambled[:, 2:])


def test_unscrambled_sobol_skips_the_origin():
    """The first dimension of Sobol' is base-2 van der Corput in Gray-code order."""
    draws = jic.Sobol(7, scramble=False)(1, 2)
    np.testing.assert_allclose(special.ndtr(draws[0, :, 0]),
                               [.5, .75, .25, .375, .875, .625, .125], rtol=1e-14)
    assert np.all(np.isfinite(draws))


@pytest.mark.parametrize("n, r, d", [(N, R, D), (3, 1, 2), (2, 7, 3)])
def test_mlhs_has_one_point_in_each_stratum(n, r, d):
    draws = jic.MLHS(r, seed=3)(n, d)
    uniform = np.sort(special.ndtr(draws), axis=1)  # (n, r, d), sorted over the draws
    offset = uniform * r - np.arange(r)[None, :, None]  # = the shift U, in [0, 1)
    # one point in each stratum [k / r, (k + 1) / r); ndtr(ndtri(u)) returns u to ~1e-16
    assert np.all(offset > -1e-9) and np.all(offset < 1 + 1e-9)
    # ... at the same position within every stratum (one shift U per individual and dimension)
    np.testing.assert_allclose(offset, np.broadcast_to(offset[:, :1, :], offset.shape), atol=1e-9)
    if n * d > 1:
        assert np.unique(offset[:, 0, :].round(12)).size == n * d
    if r > 2:  # orders shuffled independently over dimensions and individuals
        ranks = np.argsort(np.argsort(draws, axis=1), axis=1)
        assert not np.array_equal(ranks[:, :, 0], ranks[:, :, 1 % d]) or d == 1
        assert not np.array_equal(ranks[0], ranks[1 % n]) or n == 1


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("bad", [0, -3, 2.5, 2.0, "10", None])
def test_bad_sizes(generator, bad):
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        generator(bad)(3, 2)
    with pytest.raises(ValueError, match="n_individuals must be a positive integer"):
        generator(5)(bad, 2)
    with pytest.raises(ValueError, match="n_dims must be a positive integer"):
        generator(5)(3, bad)


def test_numpy_integer_sizes():
    assert jic.MLHS(np.int64(4))(np.int32(3), np.int64(2)).shape == (3, 4, 2)


# --------------------------------------------------------------------------------------------
# user-supplied draws
# --------------------------------------------------------------------------------------------

def test_user_array_is_used_as_given():
    given = np.random.default_rng(5).standard_normal((3, 4, 2))
    np.testing.assert_array_equal(jic.make_draws(given, 3, 2), given)
    np.testing.assert_array_equal(jic.make_draws(given.tolist(), 3, 2), given)
    as_float32 = given.astype(np.float32)
    out = jic.make_draws(as_float32, 3, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, as_float32.astype(np.float64))
    # not standardised or otherwise changed: any finite values pass
    odd = given * 10 + 3
    np.testing.assert_array_equal(jic.make_draws(odd, 3, 2), odd)


def test_user_array_reaches_the_problem():
    df = pd.DataFrame({"id": [1, 1, 2, 3], "choice": [0, 1, 1, 0], "x": [.1, .2, .3, .4],
                       "q": [1, 1, 2, 3], "z": [0., 0., 1., 2.]})
    panel = jic.Panel.from_dataframe(df, id="id", choice="choice", attributes=["x"],
                                     indicators=["q"], covariates=["z"])
    model = jic.ICLV(latent=jic.Structural({"lv": ["z"]}),
                     measurement=jic.OrderedProbit({"lv": ["q"]}, levels=3),
                     choice=jic.BinaryProbit(attributes=["x"], latent=["lv"]))
    given = np.random.default_rng(1).standard_normal((3, 5, 1))
    problem = jic.Problem(model, panel, draws=given)
    np.testing.assert_array_equal(np.asarray(problem.draws), given)
    assert np.isfinite(float(problem.loglik(problem.theta0)))
    with pytest.raises(ValueError, match=r"shape \(N, R, D\) = \(3, R, 1\), got \(3, 5, 2\)"):
        jic.Problem(model, panel, draws=np.zeros((3, 5, 2)))


@pytest.mark.parametrize("shape", [(3, 4), (4, 4, 2), (3, 4, 3), (3, 4, 2, 1), (2,), ()])
def test_user_array_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"user-supplied draws must have shape \(N, R, D\) = "
                                         r"\(3, R, 2\), got " + repr(shape).replace("(", r"\(")
                                         .replace(")", r"\)")):
        jic.make_draws(np.zeros(shape), 3, 2)


def test_user_array_with_no_draws():
    with pytest.raises(ValueError, match=r"at least one draw per individual \(R >= 1\)"):
        jic.make_draws(np.zeros((3, 0, 2)), 3, 2)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_user_array_with_non_finite_values(value):
    given = np.zeros((3, 4, 2))
    given[1, 2, 0] = value
    with pytest.raises(ValueError, match=f"non-finite value {value} at individual 1, draw 2, "
                                         f"dimension 0"):
        jic.make_draws(given, 3, 2)


@pytest.mark.parametrize("given", [np.full((3, 4, 2), "a"), np.zeros((3, 4, 2)) + 1j])
def test_user_array_not_real_numbers(given):
    with pytest.raises(ValueError, match="must be (an array of )?real numbers"):
        jic.make_draws(given, 3, 2)


def test_callable_output_is_checked_too():
    with pytest.raises(ValueError, match=r"draws from function must have shape"):
        jic.make_draws(lambda n, d: np.zeros((n, 4)), 3, 2)
    with pytest.raises(ValueError, match="draws from function hold a non-finite value nan"):
        jic.make_draws(lambda n, d: np.full((n, 4, d), np.nan), 3, 2)


@pytest.mark.parametrize("generator", GENERATORS)
def test_antithetic_draws_are_the_generator_s_half_and_its_mirror_image(generator):
    """Draws ``R / 2 ..`` are minus draws ``0 .. R / 2`` (uniforms ``1 - u``), and the first
    half is the generator's own ``R / 2`` draws; every dimension's mean is 0 for every
    individual (exactly, up to the rounding of the sum)."""
    draws = generator(10, antithetic=True)(7, 3)
    assert draws.shape == (7, 10, 3)
    np.testing.assert_array_equal(draws[:, 5:], -draws[:, :5])
    np.testing.assert_array_equal(draws[:, :5], generator(5)(7, 3))
    np.testing.assert_allclose(draws.mean(axis=1), 0.0, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="antithetic draws come in pairs .* must be even, got 9"):
        generator(9, antithetic=True)(7, 3)
