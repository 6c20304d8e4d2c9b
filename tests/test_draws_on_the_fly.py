"""Draws made on the fly, inside the compiled likelihood for the block being evaluated, equal
the materialised draws bit for bit, for every generator; the Halton and Sobol' uniforms are
scipy's bit for bit; a problem with draws on the fly gives the materialised problem's LL,
gradient, scores, Hessians and estimates.

Bounds: the draws are the same numbers, so the LL (the same program on them) agrees exactly,
but the gradient, scores and Hessians are compiled into other programs once the draws are made
inside them (XLA fuses and reorders the per-draw sums differently): they agree to rounding,
``1e-12`` relative (seen: at most ``5e-14``); an estimate from the truth, a few Newton steps
on those, to ``1e-9`` (seen: ``1e-13``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jaxiclv as jic
from jaxiclv import _draws
from jaxiclv._individuals import accumulate_over_chunks, for_each_individual
from helpers import (MINI_TRUTH, assert_trees_close, leaf_rel_error, mini_model,
                     random_values, simulated_panel, with_random_values)

GENERATORS = {
    "halton": jic.Halton(6, seed=3),
    "halton unscrambled": jic.Halton(6, scramble=False),
    "halton skip": jic.Halton(6, seed=3, skip=1000),
    "halton antithetic": jic.Halton(6, seed=3, antithetic=True),
    "sobol": jic.Sobol(6, seed=3),
    "sobol unscrambled": jic.Sobol(6, scramble=False),
    "sobol antithetic": jic.Sobol(6, seed=3, antithetic=True),
    "mlhs": jic.MLHS(6, seed=3),
    "mlhs antithetic": jic.MLHS(6, seed=3, antithetic=True),
    "pseudo-random": jic.PseudoRandom(6, seed=3),
    "pseudo-random antithetic": jic.PseudoRandom(6, seed=3, antithetic=True),
}
N, D = 11, 3
EXACT = 1e-12


def on_the_fly(generator, n=N, d=D):
    draws = _draws.problem_draws(generator, n, d, [f"d{k}" for k in range(d)], True,
                                 jnp.float64)
    assert isinstance(draws, _draws.OnTheFly) and draws.shape == (n, generator.n_draws, d)
    return draws


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_on_the_fly_draws_equal_the_materialised_ones(name, chunk_size):
    """Every individual's draws made in its block (all at once; blocks of 4 and the
    remaining 3), stacked by ``for_each_individual`` and as the rows of ``accumulate_over_chunks``,
    with their sum: the materialised ``generator(N, D)`` bit for bit."""
    generator = GENERATORS[name]
    want = generator(N, D)
    assert want.shape == (N, 6, D) and np.all(np.isfinite(want))
    draws, data = on_the_fly(generator), np.zeros(N)
    stacked = jax.jit(lambda data, draws: for_each_individual(
        lambda p, x, eta: eta, None, data, draws, chunk_size))(data, draws)
    np.testing.assert_array_equal(np.asarray(stacked), want)
    total, rows = jax.jit(lambda data, draws: accumulate_over_chunks(
        lambda p, x, eta: (jnp.sum(eta, axis=0), eta), None, data, draws, chunk_size))(data,
                                                                                       draws)
    np.testing.assert_array_equal(np.asarray(rows), want)
    np.testing.assert_allclose(np.asarray(total), want.sum(axis=0), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("generator", [jic.Halton, jic.Sobol, jic.MLHS, jic.PseudoRandom])
def test_individuals_draws_do_not_depend_on_the_number_of_individuals(generator):
    """Individual n's draws are a function of (n, draw, seed) alone: the first 5 of 40
    individuals get the draws of 5 individuals (the Halton digit tables grow with N)."""
    np.testing.assert_array_equal(generator(8, seed=2)(40, 2)[:5], generator(8, seed=2)(5, 2))


def _uniforms(source, n):
    return np.asarray(jax.jit(lambda s, i: jax.vmap(s.uniforms)(i))(source, jnp.arange(n)))


@pytest.mark.parametrize("engine, generator, skip", [
    (stats.qmc.Halton, jic.Halton(7, seed=5), 0),
    (stats.qmc.Halton, jic.Halton(7, seed=5, skip=1_234_567), 1_234_567),
    (stats.qmc.Halton, jic.Halton(7, scramble=False), 1),
    (stats.qmc.Sobol, jic.Sobol(7, seed=5), 0),
    (stats.qmc.Sobol, jic.Sobol(7, scramble=False), 1),
])
@pytest.mark.parametrize("d", [1, 6])
def test_quasi_random_uniforms_are_scipy_s(engine, generator, skip, d):
    """The uniforms of individual n are points ``skip + n R .. skip + n R + R - 1`` of scipy's
    engine with the same seed, bit for bit (far into the sequence too, where the index has
    seven decimal digits), and the draws are their inverse normal CDF."""
    n = 9
    seed = generator.seed if generator.scramble else None
    reference = engine(d=d, scramble=generator.scramble, seed=seed)
    if skip:
        reference.fast_forward(skip)
    want = reference.random(n * 7).reshape(n, 7, d)
    source = generator.source(n, d)
    np.testing.assert_array_equal(_uniforms(source, n), want)
    # jax's ndtri (Cephes' rational approximations, as scipy's, but compiled by XLA) against
    # scipy's: to a few ulp (seen: 4)
    np.testing.assert_allclose(generator(n, d), special.ndtri(want), rtol=2e-15, atol=1e-16)


def _problems(generator, **kwargs):
    rng = np.random.default_rng(4)
    model = with_random_values(mini_model(), rng)
    panel = simulated_panel(model, 13, 2, seed=4)
    problems = {otf: jic.Problem(model, panel, generator, draws_on_the_fly=otf, **kwargs)
                for otf in (False, True)}
    assert isinstance(problems[True].draws, _draws.OnTheFly)
    assert isinstance(problems[False].draws, jax.Array)
    theta = jnp.asarray(random_values(problems[False].space.names, model.latent.names, rng))
    return problems, theta


@pytest.mark.parametrize("generator, chunk_size", [(jic.Halton(5, seed=1), None),
                                                   (jic.MLHS(6, seed=1, antithetic=True), 4)])
def test_problem_with_draws_on_the_fly_equals_the_materialised_one(generator, chunk_size):
    problems, theta = _problems(generator, chunk_size=chunk_size)
    fly, stored = problems[True], problems[False]
    assert fly.n_draws == stored.n_draws == generator.n_draws
    assert float(fly.loglik(theta)) == float(stored.loglik(theta))
    # second_order: the LL, gradient, scores and structured Hessian of one program
    for what in ("loglik_and_grad", "scores", "second_order"):
        assert_trees_close(getattr(fly, what)(theta), getattr(stored, what)(theta), EXACT,
                           what)


def test_autodiff_through_draws_on_the_fly_equals_the_materialised_one():
    problems, theta = _problems(jic.Sobol(5, seed=1), gradient="autodiff", chunk_size=4)
    for what in ("loglik_and_grad", "scores"):
        assert_trees_close(getattr(problems[True], what)(theta),
                           getattr(problems[False], what)(theta), EXACT, what)
    # forward over reverse mode through the draws made in each block
    assert_trees_close(problems[True].hessian(theta, "jacfwd"),
                       problems[False].hessian(theta, "jacfwd"), EXACT, "jacfwd")


def test_estimate_with_draws_on_the_fly_equals_the_materialised_one():
    """A whole estimate from the truth and its post-estimation (posterior, predict)."""
    model = jic.set_values(mini_model(), MINI_TRUTH)
    panel = simulated_panel(model, 60, 2, seed=1)
    draws = jic.Halton(8, seed=2)
    fly, stored = (jic.estimate(model, panel, draws, draws_on_the_fly=otf, chunk_size=16)
                   for otf in (True, False))
    assert fly.converged and stored.converged
    assert isinstance(fly.problem.draws, _draws.OnTheFly)
    for name in ("llf", "params", "bse"):
        assert leaf_rel_error(np.asarray(getattr(fly, name)),
                              np.asarray(getattr(stored, name))) <= 1e-9, name
    for f in (jic.posterior, jic.predict):
        assert leaf_rel_error(f(fly).to_numpy(dtype=float),
                              f(stored).to_numpy(dtype=float)) <= 1e-9, f.__name__


def test_auto_makes_draws_on_the_fly_above_the_threshold(monkeypatch):
    """``"auto"`` (the default) materialises a small problem's draws and makes them on the
    fly when the (N, R, D) array would hold more than ``ON_THE_FLY_ABOVE`` values."""
    model = jic.set_values(mini_model(), MINI_TRUTH)
    panel = simulated_panel(model, 10, 2, seed=1)
    draws = jic.Halton(8, seed=2)
    assert isinstance(jic.Problem(model, panel, draws).draws, jax.Array)
    monkeypatch.setattr(_draws, "ON_THE_FLY_ABOVE", 10 * 8 * 1 - 1)  # N R D = 80 values
    assert isinstance(jic.Problem(model, panel, draws).draws, _draws.OnTheFly)
    monkeypatch.setattr(_draws, "ON_THE_FLY_ABOVE", 10 * 8 * 1)
    assert isinstance(jic.Problem(model, panel, draws).draws, jax.Array)
    # user-supplied arrays and callables are materialised whatever their size
    monkeypatch.setattr(_draws, "ON_THE_FLY_ABOVE", 0)
    assert isinstance(jic.Problem(model, panel, draws(10, 1)).draws, jax.Array)


def test_draws_on_the_fly_need_a_built_in_generator():
    model = jic.set_values(mini_model(), MINI_TRUTH)
    panel = simulated_panel(model, 10, 2, seed=1)
    with pytest.raises(ValueError, match="needs a built-in draw generator.*got an array"):
        jic.Problem(model, panel, jic.Halton(4)(10, 1), draws_on_the_fly=True)
    with pytest.raises(ValueError, match="got function"):
        jic.Problem(model, panel, lambda n, d: jic.Halton(4)(n, d), draws_on_the_fly=True)
    with pytest.raises(ValueError, match="draws_on_the_fly must be True, False or 'auto'"):
        jic.Problem(model, panel, jic.Halton(4), draws_on_the_fly="yes")
    with pytest.raises(ValueError, match="this model has none"):
        _draws.problem_draws(jic.Halton(4), 10, 0, [], True, jnp.float64)


def test_sobol_refuses_more_points_than_its_sequence_has():
    with pytest.raises(ValueError, match=r"exceed the sequence's 2\^30 points; use Halton"):
        jic.Sobol(1024).source(2 ** 20 + 1, 2)
    jic.Sobol(1024).source(2 ** 20, 2)  # points 0 .. 2^30 - 1: all of them, allowed
    with pytest.raises(ValueError, match="exceed"):  # unscrambled: points 1 .. 2^30
        jic.Sobol(1024, scramble=False).source(2 ** 20, 2)
