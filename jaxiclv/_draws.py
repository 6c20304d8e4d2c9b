"""Draws for simulated maximum likelihood: uniform points mapped to standard normals.

Every generator returns an array of shape ``(N, R, D)``: individual ``n`` gets its own ``R``
points in ``D`` dimensions. Draws are generated once per estimation and kept fixed, so the
simulated log-likelihood is a smooth deterministic function of the parameters.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import special, stats

__all__ = ["Halton", "Sobol", "MLHS", "PseudoRandom", "make_draws"]

# Uniform points are kept inside (tiny, 1 - tiny) before the inverse normal CDF, so that a
# point that lands exactly on 0 (possible for unscrambled sequences) never becomes -inf.
_UNIFORM_EDGE = np.finfo(np.float64).tiny


def _to_normal(uniform: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(uniform, _UNIFORM_EDGE, 1.0 - np.finfo(np.float64).epsneg))


def _check_sizes(n_draws: int, n_individuals: int, n_dims: int) -> None:
    for name, value in (("n_draws", n_draws), ("n_individuals", n_individuals), ("n_dims", n_dims)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Halton:
    """Halton points (scrambled by default), consecutive blocks of ``n_draws`` per individual.

    Built on :class:`scipy.stats.qmc.Halton`; dimension ``d`` uses the ``d``-th prime base.
    With ``scramble=False`` and ``skip=1`` this is the classic sequence used by Apollo and
    Biogeme's ``"HALTON"`` draws (point 0 skipped).
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True
    skip: int = 0

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        _check_sizes(self.n_draws, n_individuals, n_dims)
        engine = stats.qmc.Halton(d=n_dims, scramble=self.scramble, seed=self.seed)
        if self.skip:
            engine.fast_forward(self.skip)
        uniform = engine.random(n_individuals * self.n_draws)
        return _to_normal(uniform).reshape(n_individuals, self.n_draws, n_dims)


@dataclasses.dataclass(frozen=True)
class Sobol:
    """Scrambled Sobol' points, consecutive blocks of ``n_draws`` per individual.

    Built on :class:`scipy.stats.qmc.Sobol`; the sequence is generated to the next power of two
    (which keeps its balance properties) and its first ``N * R`` points are used.
    """

    n_draws: int
    seed: int | None = 0
    scramble: bool = True

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        _check_sizes(self.n_draws, n_individuals, n_dims)
        n_points = n_individuals * self.n_draws
        engine = stats.qmc.Sobol(d=n_dims, scramble=self.scramble, seed=self.seed)
        uniform = engine.random_base2(int(np.ceil(np.log2(n_points))))[:n_points]
        return _to_normal(uniform).reshape(n_individuals, self.n_draws, n_dims)


@dataclasses.dataclass(frozen=True)
class MLHS:
    """Modified Latin hypercube sampling (Hess, Train and Polak, 2006).

    For each individual and dimension: ``u_r = (r - 1 + U) / R`` for ``r = 1..R`` with one
    uniform shift ``U``, then shuffled independently across dimensions.
    """

    n_draws: int
    seed: int | None = 0

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        _check_sizes(self.n_draws, n_individuals, n_dims)
        rng = np.random.default_rng(self.seed)
        shift = rng.uniform(size=(n_individuals, 1, n_dims))
        grid = np.arange(self.n_draws, dtype=np.float64)[None, :, None]
        uniform = rng.permuted(np.broadcast_to((grid + shift) / self.n_draws,
                                               (n_individuals, self.n_draws, n_dims)), axis=1)
        return _to_normal(uniform)


@dataclasses.dataclass(frozen=True)
class PseudoRandom:
    """Independent standard normal pseudo-random draws (numpy's PCG64 generator)."""

    n_draws: int
    seed: int | None = 0

    def __call__(self, n_individuals: int, n_dims: int) -> np.ndarray:
        _check_sizes(self.n_draws, n_individuals, n_dims)
        return np.random.default_rng(self.seed).standard_normal((n_individuals, self.n_draws, n_dims))


def make_draws(draws, n_individuals: int, n_dims: int) -> np.ndarray:
    """Standard normal draws of shape ``(N, R, D)`` from a generator or a user-given array.

    A user array must already have shape ``(N, R, D)`` and hold finite standard-normal values
    (pass the normals, not the uniforms); it is used exactly as given.
    """
    if callable(draws):
        return draws(n_individuals, n_dims)
    array = np.asarray(draws, dtype=np.float64)
    if array.shape[::2] != (n_individuals, n_dims) or array.ndim != 3:
        raise ValueError(
            f"user-supplied draws must have shape (N, R, D) = ({n_individuals}, R, {n_dims}), "
            f"got {array.shape}")
    if array.shape[1] < 1:
        raise ValueError("user-supplied draws need at least one draw per individual (R >= 1)")
    if not np.all(np.isfinite(array)):
        n, r, d = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"user-supplied draws hold a non-finite value {array[n, r, d]} at "
                         f"individual {n}, draw {r}, dimension {d}")
    return array
