"""Draws for simulated maximum likelihood: uniform points mapped to standard normals.

Every generator is a function of (individual, draw, seed): its :meth:`source` for ``N``
individuals in ``D`` dimensions is a :class:`DrawSource`, whose ``source(n)`` is individual
``n``'s ``(R, D)`` draws, computed in jax.numpy wherever it is called. Called inside the
compiled likelihood for the block of individuals being evaluated (:class:`OnTheFly`, mapped by
:mod:`jaxiclv._individuals`), memory holds one block's draws; called for every individual,
``generator(N, D)``, it gives the materialised ``(N, R, D)`` array. Both run the same compiled
function of the same integers, so their values are identical bit for bit.

Individual ``n`` gets points ``n R .. n R + R - 1`` of the Halton and Sobol' sequences (as
in Apollo and Biogeme), exactly the uniforms of :class:`scipy.stats.qmc.Halton` and
:class:`~scipy.stats.qmc.Sobol` (the same integers, and for Halton the same floating-point
sums), mapped to normals by ``jax.scipy.special.ndtri``. MLHS and pseudo-random draws come from
JAX's counter-based generator keyed by ``(seed, n)`` (``jax.random.fold_in``), so they depend
on the JAX version's generator (threefry), not on the number of individuals or the order of
evaluation.

``antithetic=True`` (as Biogeme's ``_ANTI`` draws) makes ``R / 2`` points per individual and
appends their mirror images: draw ``r + R / 2`` is ``-eta_r`` (uniform ``1 - u``), so every
dimension's draws have mean exactly 0 and odd moments cancel. Draws are fixed for an
estimation, so the simulated log-likelihood is a smooth deterministic function of the
parameters.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri
from jaxtyping import Array, Float, Int
from scipy import stats

__all__ = ["Halton", "Sobol", "MLHS", "PseudoRandom", "DrawSource", "OnTheFly", "make_draws",
           "default_draws", "problem_draws", "ON_THE_FLY_ABOVE"]

# Uniform points are kept inside (tiny, 1 - epsneg) before the inverse normal CDF, so that a
# point exactly on 0 or 1 could never become an infinite draw. The generators below never
# produce such points (unscrambled sequences skip their first point, the origin); this is a
# safety net only.
_UNIFORM_EDGE = np.finfo(np.float64).tiny

_UNIFORM_CHECK = 20  # arrays of at least this many values are checked for uniform numbers

_SOBOL_BITS = 30  # scipy's default: points are integers times 2^-30, at most 2^30 of them

# draws="auto" makes the draws on the fly when the materialised (N, R, D) array would hold more
# values than this (2^27: 1 GiB in float64)
ON_THE_FLY_ABOVE = 2 ** 27


def _to_normal(uniform):
    return ndtri(jnp.clip(uniform, _UNIFORM_EDGE, 1.0 - np.finfo(np.float64).epsneg))


def _positive_int(name: str, value) -> int:
    try:
        index = operator.index(value)
    except TypeError:
        index = None
    if index is None or isinstance(value, bool) or index < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return index


def _check_sizes(n_draws, n_individuals, n_dims, antithetic=False) -> tuple[int, int, int]:
    """``(points per individual, N, D)``: with ``antithetic``, half the draws (``R`` even)."""
    n_draws = _positive_int("n_draws", n_draws)
    if antithetic and n_draws % 2:
        raise ValueError(f"antithetic draws come in pairs (eta, -eta): n_draws must be even, "
                         f"got {n_draws}")
    return (n_draws // 2 if antithetic else n_draws,
            _positive_int("n_individuals", n_individuals), _positive_int("n_dims", n_dims))


def _random_seed(seed) -> int:
    """``seed``, or for ``None`` one drawn from the operating system's entropy (fixed from
    then on: every block of individuals sees the same draws)."""
    return int(np.random.default_rng().integers(2 ** 62)) if seed is None else operator.index(seed)


class DrawSource(eqx.Module):
    """A generator's draws as a function of the individual: ``source(n)`` is individual
    ``n``'s ``(R, D)`` standard normals (float64), the first ``R / 2`` followed by their
    negatives when ``antithetic``."""

    n_points: eqx.AbstractVar[int]  # points per individual: R, or R / 2 when antithetic
    n_dims: eqx.AbstractVar[int]
    antithetic: eqx.AbstractVar[bool]

    def normals(self, individual: Int[Array, ""]) -> Float[Array, "R D"]:
        """The individual's ``n_points`` normals ``(n_points, D)``, before the mirror images."""
        return _to_normal(self.uniforms(individual))

    def uniforms(self, individual: Int[Array, ""]) -> Float[Array, "R D"]:
        raise NotImplementedError

    @property
    def n_draws(self) -> int:
        return 2 * self.n_points if self.antithetic else self.n_points

    def __call__(self, individual: Int[Array, ""]) -> Float[Array, "R D"]:
        normals = self.normals(individual)
        return jnp.concatenate([normals, -normals]) if self.antithetic else normals


def _point_indices(individual, first: int, n_points: int):
    """The sequence indices ``first + n R' + r`` of individual ``n``'s points ``(R',)``."""
    return first + individual.astype(jnp.int64) * n_points + jnp.arange(n_points)


def _n_digits(largest: int, base: int) -> int:
    """Base-``base`` digits of the integer ``largest`` (at least 1)."""
    digits = 1
    while largest >= base:
        largest //= base
        digits += 1
    return digits


class _HaltonSource(DrawSource):
    """The radical inverse of point ``k`` in dimension ``d`` (base ``b``, the ``d``-th prime)
    as scipy computes it: ``u = sum_j t_j[digit_j(k)]`` added in the order ``j = 0, 1, ..``,
    ``t_j[a] = perm_j(a) b^-(j+1)`` (the digit permutations of Owen's scrambling; the identity
    unscrambled), ``b^-(j+1)`` by repeated division, as scipy. The tables hold these products,
    made on the host in float64, so the sum is of the same terms in the same order."""

    terms: tuple[Float[Array, "digits base"], ...]  # per dimension
    bases: tuple[int, ...] = eqx.field(static=True)
    index_digits: tuple[int, ...] = eqx.field(static=True)  # digits of the largest index
    first: int = eqx.field(static=True)
    n_points: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)

    def uniforms(self, individual):
        index = _point_indices(individual, self.first, self.n_points)  # (R',)
        columns = []
        for terms, base, digits in zip(self.terms, self.bases, self.index_digits):
            quotient, u = index, None
            for j in range(terms.shape[0]):
                if j < digits:
                    digit = quotient % base
                    quotient = quotient // base
                    term = terms[j][digit]
                else:  # digit 0 from here on: the same term for every point
                    term = terms[j, 0]
                u = term if u is None else u + term
            columns.append(u)
        return jnp.stack(columns, axis=-1)  # (R', D)


def _halton_terms(permutations: np.ndarray, base: int) -> np.ndarray:
    """``t_j[a] = perm_j(a) * b^-(j+1)``, ``b^-(j+1)`` by repeated division (scipy's order)."""
    scale, scales = 1.0 / base, []
    for _ in range(permutations.shape[0]):
        scales.append(scale)
        scale /= base
    return permutations.astype(np.float64) * np.array(scales)[:, None]


class _SobolSource(DrawSource):
    """Point ``k`` of the (scrambled) Sobol' sequence in scipy's Gray-code order: the integer
    ``shift XOR (XOR of the direction numbers v_j for the set bits j of k XOR (k >> 1))``
    times ``2^-30``, exact in float64."""

    directions: Int[Array, "D bits"]
    shift: Int[Array, " D"]
    index_bits: int = eqx.field(static=True)  # bits of the largest index
    first: int = eqx.field(static=True)
    n_points: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)

    def uniforms(self, individual):
        index = _point_indices(individual, self.first, self.n_points)
        gray = (index ^ (index >> 1))[:, None]  # (R', 1)
        point = jnp.broadcast_to(self.shift, (self.n_points, self.n_dims))
        for j in range(self.index_bits):
            point = point ^ jnp.where(((gray >> j) & 1) == 1, self.directions[None, :, j], 0)
        return point.astype(jnp.float64) * 2.0 ** -_SOBOL_BITS  # (R', D)


class _MLHSSource(DrawSource):
    """``u_r = (pi(r) + U) / R'`` for each dimension: one uniform shift ``U`` and a random
    order ``pi`` of the ``R'`` strata, from the key ``fold_in(key(seed), n)``."""

    seed: Int[Array, ""]
    n_points: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)

    def uniforms(self, individual):
        key = jax.random.fold_in(jax.random.key(self.seed), individual)
        shift_key, order_key = jax.random.split(key)
        shift = jax.random.uniform(shift_key, (self.n_dims,), jnp.float64)
        orders = jax.vmap(lambda k: jax.random.permutation(k, self.n_points))(
            jax.random.split(order_key, self.n_dims))  # (D, R')
        return (orders.T + shift[None, :]) / self.n_points  # (R', D)


class _PseudoRandomSource(DrawSource):
    """Independent standard normals from the key ``fold_in(key(seed), n)``."""

    seed: Int[Array, ""]
    n_points: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)

    def normals(self, individual):
        key = jax.random.fold_in(jax.random.key(self.seed), individual)
        return jax.random.normal(key, (self.n_points, self.n_dims), jnp.float64)


@jax.jit
def _materialise(source: DrawSource, individuals):
    return jax.vmap(source)(individuals)


class _Generator:
    """A draw generator: ``source(N, D)`` its :class:`DrawSource`, ``generator(N, D)`` the
    materialised ``(N, R, D)`` array of the same values."""

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        source = self.source(n_individuals, n_dims)
        return np.asarray(_materialise(source, jnp.arange(n_individuals)))


@dataclasses.dataclass(frozen=True)
class Halton(_Generator):
    """Halton points (scrambled by default), consecutive blocks of ``n_draws`` per individual.

    The uniforms of :class:`scipy.stats.qmc.Halton` (its digit permutations for ``seed``);
    dimension ``d`` uses the ``d``-th prime base. ``skip`` points are dropped from the start of
    the sequence: by default none for the scrambled sequence and one for the unscrambled one,
    whose first point is the origin (an infinite normal draw). With ``scramble=False`` this is
    the classic sequence used by Apollo and Biogeme's ``"HALTON"`` draws (point 0 skipped);
    ``seed`` then plays no role.
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True
    skip: int | None = None
    antithetic: bool = False

    def source(self, n_individuals: int, n_dims: int) -> DrawSource:
        n_points, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                       self.antithetic)
        skip = (0 if self.scramble else 1) if self.skip is None else operator.index(self.skip)
        if skip < 0 or (skip == 0 and not self.scramble):
            raise ValueError(f"Halton skip must be >= {0 if self.scramble else 1}, got {skip}: "
                             f"the unscrambled sequence starts at the origin, an infinite draw")
        engine = stats.qmc.Halton(d=n_dims, scramble=self.scramble,
                                  seed=_random_seed(self.seed) if self.scramble else None)
        largest = skip + n_individuals * n_points - 1
        digits = [_n_digits(largest, base) for base in engine.base]
        if self.scramble:  # scipy's own permutations (all the digits of a float64)
            permutations = engine._permutations
        else:  # the identity on the index's digits (the rest add 0)
            permutations = [np.tile(np.arange(base), (d, 1)) for base, d in zip(engine.base,
                                                                                 digits)]
        terms = tuple(jnp.asarray(_halton_terms(np.asarray(p), base))
                      for p, base in zip(permutations, engine.base))
        return _HaltonSource(terms=terms, bases=tuple(engine.base), index_digits=tuple(digits),
                             first=skip, n_points=n_points, n_dims=n_dims,
                             antithetic=self.antithetic)


@dataclasses.dataclass(frozen=True)
class Sobol(_Generator):
    """Sobol' points (scrambled by default), consecutive blocks of ``n_draws`` per individual.

    The points of :class:`scipy.stats.qmc.Sobol` (its direction numbers and, for ``seed``, its
    linear matrix scrambling and digital shift), at most ``2^30`` of them; the first ``N R``
    of the sequence are used. The unscrambled sequence starts at the origin (an infinite
    normal draw), so with ``scramble=False`` the points ``1 .. N R`` are used instead.
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True
    antithetic: bool = False

    def source(self, n_individuals: int, n_dims: int) -> DrawSource:
        n_points, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                       self.antithetic)
        skip = 0 if self.scramble else 1
        largest = skip + n_individuals * n_points - 1
        if largest >= 2 ** _SOBOL_BITS:
            raise ValueError(f"Sobol' draws: {n_individuals} individuals x {n_points} points "
                             f"exceed the sequence's 2^{_SOBOL_BITS} points; use Halton draws")
        engine = stats.qmc.Sobol(d=n_dims, scramble=self.scramble,
                                 seed=_random_seed(self.seed) if self.scramble else None)
        return _SobolSource(directions=jnp.asarray(engine._sv, jnp.int64),
                            shift=jnp.asarray(engine._shift, jnp.int64),
                            index_bits=int(largest).bit_length(), first=skip, n_points=n_points,
                            n_dims=n_dims, antithetic=self.antithetic)


@dataclasses.dataclass(frozen=True)
class MLHS(_Generator):
    """Modified Latin hypercube sampling (Hess, Train and Polak, 2006).

    For each individual and dimension: ``u_r = (pi(r) + U) / R`` for ``r = 0..R-1`` with one
    uniform shift ``U`` and a random order ``pi`` of the strata (so each of the ``R`` strata
    ``[k / R, (k + 1) / R)`` holds exactly one point), drawn independently for every
    individual and dimension from JAX's generator keyed by ``(seed, individual)``.
    """

    n_draws: int
    seed: int | None = 0
    antithetic: bool = False

    def source(self, n_individuals: int, n_dims: int) -> DrawSource:
        n_points, _, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims, self.antithetic)
        return _MLHSSource(seed=jnp.asarray(_random_seed(self.seed), jnp.int64),
                           n_points=n_points, n_dims=n_dims, antithetic=self.antithetic)


@dataclasses.dataclass(frozen=True)
class PseudoRandom(_Generator):
    """Independent standard normal pseudo-random draws from JAX's generator keyed by
    ``(seed, individual)``."""

    n_draws: int
    seed: int | None = 0
    antithetic: bool = False

    def source(self, n_individuals: int, n_dims: int) -> DrawSource:
        n_points, _, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims, self.antithetic)
        return _PseudoRandomSource(seed=jnp.asarray(_random_seed(self.seed), jnp.int64),
                                   n_points=n_points, n_dims=n_dims, antithetic=self.antithetic)


class OnTheFly(eqx.Module):
    """Draws made where they are used: individual ``individuals[i]``'s draws ``source(n)``,
    cast to ``dtype``. ``individuals`` is the individual axis (sharded and blocked like the
    data); ``source``, a few small tables, is shared. ``shape`` is that of the materialised
    array, ``(N, R, D)``."""

    source: DrawSource
    individuals: Int[Array, " N"]
    dtype: object = eqx.field(static=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.individuals.shape[0], self.source.n_draws, self.source.n_dims)

    def of(self, individuals: Int[Array, "..."]) -> Float[Array, "... R D"]:
        """The draws of ``individuals`` (one index or an array of them)."""
        generate = self.source
        for _ in range(jnp.ndim(individuals)):
            generate = jax.vmap(generate)
        return generate(individuals).astype(self.dtype)


def default_draws(draws):
    """``draws``, or the default generator, ``Halton(100, seed=0)``, for ``None``."""
    return Halton(100, seed=0) if draws is None else draws


def problem_draws(draws, n_individuals: int, n_dims: int, dimensions: Sequence[str],
                  on_the_fly, dtype):
    """A problem's draws: an :class:`OnTheFly` for a built-in generator when ``on_the_fly``
    is ``True`` or, for ``"auto"``, when the ``(N, R, D)`` array would hold more than
    :data:`ON_THE_FLY_ABOVE` values; otherwise the checked array of :func:`make_draws` in
    ``dtype``."""
    if on_the_fly not in (True, False, "auto"):
        raise ValueError(f"draws_on_the_fly must be True, False or 'auto', got {on_the_fly!r}")
    generated = isinstance(draws, _Generator) and n_dims > 0
    if on_the_fly is True and not generated:
        raise ValueError(
            "draws_on_the_fly=True needs a built-in draw generator (Halton, Sobol, MLHS, "
            "PseudoRandom) for a model with random terms; "
            + ("this model has none" if n_dims == 0 else
               f"got {'an array' if not callable(draws) else type(draws).__name__}"))
    if generated and on_the_fly == "auto":
        on_the_fly = n_individuals * draws.n_draws * n_dims > ON_THE_FLY_ABOVE
    if generated and on_the_fly:
        return OnTheFly(draws.source(n_individuals, n_dims),
                        np.arange(n_individuals, dtype=np.int64), dtype)
    return np.asarray(make_draws(draws, n_individuals, n_dims, dimensions), dtype=dtype)


def make_draws(draws, n_individuals: int, n_dims: int,
               dimensions: Sequence[str] | None = None) -> np.ndarray:
    """Standard normal draws of shape ``(N, R, D)`` from a generator or a user-given array.

    ``dimensions`` names the ``D`` dimensions for the error messages. A user array must already
    have shape ``(N, R, D)`` and hold finite standard-normal values
    (pass the normals, not the uniforms: an array of 20 or more values all in ``[0, 1]`` is an
    error); it is used exactly as given. A generator is any
    callable ``(N, D) -> (N, R, D)`` array; its output is checked the same way. A model
    without random terms (``D = 0``: a multinomial logit, say) gets one empty draw,
    ``(N, 1, 0)``, whatever the generator: its likelihood is exact.
    """
    if callable(draws) and n_dims == 0:  # nothing random: the likelihood at one point
        return np.zeros((n_individuals, 1, 0))
    if callable(draws):
        array, source = draws(n_individuals, n_dims), f"draws from {type(draws).__name__}"
    else:
        array, source = draws, "user-supplied draws"
    if np.iscomplexobj(array):
        raise ValueError(f"{source} must be real numbers, got complex numbers")
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source} must be an array of real numbers: {error}") from None
    if array.ndim != 3 or array.shape[::2] != (n_individuals, n_dims):
        raise ValueError(
            f"{source} must have shape (N, R, D) = ({n_individuals}, R, {n_dims}), "
            f"got {array.shape}" + (f"; the model's draw dimensions are {list(dimensions)}"
                                    if dimensions is not None else ""))
    if array.shape[1] < 1:
        raise ValueError(f"{source} need at least one draw per individual (R >= 1)")
    if not np.all(np.isfinite(array)):
        n, r, d = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{source} hold a non-finite value {array[n, r, d]} at "
                         f"individual {n}, draw {r}, dimension {d}")
    # 20 or more standard normals all in [0, 1] happen with probability below 0.35^20 = 8e-10
    if array.size >= _UNIFORM_CHECK and array.min() >= 0.0 and array.max() <= 1.0:
        raise ValueError(f"{source} all lie in [0, 1]: they look like uniform numbers, not "
                         f"standard normals; map them with scipy.special.ndtri (the inverse "
                         f"normal CDF) first")
    return array
