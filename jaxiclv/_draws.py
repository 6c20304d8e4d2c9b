"""Draws for simulated maximum likelihood: uniform points mapped to standard normals.

Every generator returns an array of shape ``(N, R, D)``: individual ``n`` gets its own ``R``
points in ``D`` dimensions. ``antithetic=True`` (as Biogeme's ``_ANTI`` draws) makes ``R / 2``
points per individual and appends their mirror images: draw ``r + R / 2`` is ``-eta_r``
(uniform ``1 - u``), so every dimension's draws have mean exactly 0 and odd moments cancel. Draws are generated once per estimation and kept fixed, so the
simulated log-likelihood is a smooth deterministic function of the parameters.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

__all__ = ["Halton", "Sobol", "MLHS", "PseudoRandom", "make_draws", "default_draws"]

# Uniform points are kept inside (tiny, 1 - epsneg) before the inverse normal CDF, so that a
# point exactly on 0 or 1 could never become an infinite draw. The generators below never
# produce such points (unscrambled sequences skip their first point, the origin); this is a
# safety net only.
_UNIFORM_EDGE = np.finfo(np.float64).tiny


_UNIFORM_CHECK = 20  # arrays of at least this many values are checked for uniform numbers


def _to_normal(uniform: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(uniform, _UNIFORM_EDGE, 1.0 - np.finfo(np.float64).epsneg))


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


def _with_antithetic(normals: np.ndarray, antithetic: bool) -> np.ndarray:
    """``(N, R / 2, D)`` draws followed by their mirror images ``-eta`` (the uniforms
    ``1 - u``): ``(N, R, D)``, draws ``r`` and ``r + R / 2`` a pair."""
    return np.concatenate([normals, -normals], axis=1) if antithetic else normals


@dataclasses.dataclass(frozen=True)
class Halton:
    """Halton points (scrambled by default), consecutive blocks of ``n_draws`` per individual.

    Built on :class:`scipy.stats.qmc.Halton`; dimension ``d`` uses the ``d``-th prime base.
    ``skip`` points are dropped from the start of the sequence: by default none for the
    scrambled sequence and one for the unscrambled one, whose first point is the origin (an
    infinite normal draw). With ``scramble=False`` this is the classic sequence used by Apollo
    and Biogeme's ``"HALTON"`` draws (point 0 skipped); ``seed`` then plays no role.
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True
    skip: int | None = None
    antithetic: bool = False

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        n_draws, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                      self.antithetic)
        skip = (0 if self.scramble else 1) if self.skip is None else operator.index(self.skip)
        if skip < 0 or (skip == 0 and not self.scramble):
            raise ValueError(f"Halton skip must be >= {0 if self.scramble else 1}, got {skip}: "
                             f"the unscrambled sequence starts at the origin, an infinite draw")
        engine = stats.qmc.Halton(d=n_dims, scramble=self.scramble, seed=self.seed)
        if skip:
            engine.fast_forward(skip)
        uniform = engine.random(n_individuals * n_draws)
        return _with_antithetic(_to_normal(uniform).reshape(n_individuals, n_draws, n_dims),
                                self.antithetic)


@dataclasses.dataclass(frozen=True)
class Sobol:
    """Sobol' points (scrambled by default), consecutive blocks of ``n_draws`` per individual.

    Built on :class:`scipy.stats.qmc.Sobol`; the sequence is generated to the next power of two
    (which keeps its balance properties) and its first ``N * R`` points are used. The
    unscrambled sequence starts at the origin (an infinite normal draw), so with
    ``scramble=False`` the points ``1 .. N * R`` are used instead.
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True
    antithetic: bool = False

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        n_draws, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                      self.antithetic)
        n_points = n_individuals * n_draws
        skip = 0 if self.scramble else 1
        engine = stats.qmc.Sobol(d=n_dims, scramble=self.scramble, seed=self.seed)
        uniform = engine.random_base2(int(n_points + skip - 1).bit_length())[skip:n_points + skip]
        return _with_antithetic(_to_normal(uniform).reshape(n_individuals, n_draws, n_dims),
                                self.antithetic)


@dataclasses.dataclass(frozen=True)
class MLHS:
    """Modified Latin hypercube sampling (Hess, Train and Polak, 2006).

    For each individual and dimension: ``u_r = (r - 1 + U) / R`` for ``r = 1..R`` with one
    uniform shift ``U`` (so each of the ``R`` strata ``[(r - 1) / R, r / R)`` holds exactly one
    point), in an order shuffled independently for every individual and dimension.
    """

    n_draws: int
    seed: int | None = 0
    antithetic: bool = False

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        n_draws, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                      self.antithetic)
        rng = np.random.default_rng(self.seed)
        shift = rng.uniform(size=(n_individuals, 1, n_dims))
        grid = np.arange(n_draws, dtype=np.float64)[None, :, None]
        # permuted shuffles every (individual, dimension) column of draws independently
        uniform = rng.permuted(np.broadcast_to((grid + shift) / n_draws,
                                               (n_individuals, n_draws, n_dims)), axis=1)
        return _with_antithetic(_to_normal(uniform), self.antithetic)


@dataclasses.dataclass(frozen=True)
class PseudoRandom:
    """Independent standard normal pseudo-random draws (numpy's PCG64 generator)."""

    n_draws: int
    seed: int | None = 0
    antithetic: bool = False

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        n_draws, n_individuals, n_dims = _check_sizes(self.n_draws, n_individuals, n_dims,
                                                      self.antithetic)
        return _with_antithetic(np.random.default_rng(self.seed).standard_normal(
            (n_individuals, n_draws, n_dims)), self.antithetic)


def default_draws(draws):
    """``draws``, or the default generator, ``Halton(100, seed=0)``, for ``None``."""
    return Halton(100, seed=0) if draws is None else draws


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
