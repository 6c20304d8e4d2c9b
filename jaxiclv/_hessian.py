"""Hessians of the simulated log-likelihood, four ways.

- ``"structured"``: exact, assembled from per-draw scores and the sparse per-draw second
  derivatives (:mod:`jaxiclv._structured_hessian`); the fastest, and the default.

- ``"jacfwd"``: forward-over-reverse, ``jax.jvp`` of the gradient along each basis vector,
  exact up to rounding. The P tangent directions are pushed through ``batch_size`` at a time
  with ``jax.lax.map``; the primal work is shared by the directions of a batch, and each
  direction costs a few products per element (the probit kernel's derivative is a
  ``custom_jvp``), which is why this beats ``P`` gradients.
- ``"fd-forward"``: ``H[p, :] = (g(theta + h_p e_p) - g(theta)) / h_p`` with
  ``h_p = sqrt(eps) max(|theta_p|, 1)``: truncation error ``O(h |g''|)``, rounding
  ``O(eps |g| / h)``, so about ``sqrt(eps) ~ 1.5e-8`` relative in float64.
- ``"fd-central"``: ``(g(theta + h_p e_p) - g(theta - h_p e_p)) / (2 h_p)`` with
  ``h_p = eps^(1/3) max(|theta_p|, 1)``: error about ``eps^(2/3) ~ 4e-11`` relative.

The perturbed gradients are evaluated in batched, vmapped calls (``jax.lax.map`` with
``batch_size``), never a Python loop. A batch of directions multiplies the working set of the
gradient by ``batch_size``, so the gradient inside it runs over blocks of
:func:`jaxiclv._individuals.chunk_size_for_directions` individuals: as many (individual, direction) pairs at a time
as a gradient block has individuals. Each step is made exactly representable
(``h = (theta + h) - theta``). Finite-difference Hessians are symmetrised and their asymmetry
before symmetrising is reported; an exact (``structured``, ``jacfwd``) Hessian whose asymmetry
exceeds rounding is an error, never silently symmetrised.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

__all__ = ["HESSIANS", "EXACT_HESSIANS", "hessian", "directional_derivatives",
           "symmetrize",
           "HessianAsymmetryError", "HessianComparison",
           "compare_hessians"]

HESSIANS = ("structured", "jacfwd", "fd-forward", "fd-central")
EXACT_HESSIANS = ("structured", "jacfwd")

# relative asymmetry max|H - H'| / max|H| allowed for an exact Hessian: rounding in float64
# accumulates over N R terms per entry, far below this; a wrong row (a real failure seen with
# jacrev on CPU) is many orders above it.
EXACT_ASYMMETRY_TOLERANCE = 1e-8


class HessianAsymmetryError(FloatingPointError):
    """An exact Hessian is not symmetric beyond rounding: something computed it wrongly."""


def finite_difference_steps(theta, power):
    """``h_p = eps^power max(|theta_p|, 1)``, made exactly representable: ``(theta + h) - theta``."""
    raw = jnp.finfo(theta.dtype).eps ** power * jnp.maximum(jnp.abs(theta), 1.0)
    return (theta + raw) - theta


def directional_derivatives(f, theta: jax.Array, tangents: jax.Array, batch_size: int = 32):
    """``J_f(theta) v`` for every row ``v`` of ``tangents`` ``(C, P)``: forward mode, ``batch_size``
    directions at a time (memory of ``batch_size`` evaluations of ``f``, not ``C``)."""
    return jax.lax.map(lambda v: jax.jvp(f, (theta,), (v,))[1], tangents, batch_size=batch_size)


def hessian(gradient, theta: jax.Array, method: str = "jacfwd", batch_size: int = 32) -> jax.Array:
    """The (unsymmetrised) Hessian of the function whose gradient is ``gradient(theta)``.
    (``"structured"`` needs the model itself: :meth:`Problem.hessian`.)"""
    if method == "jacfwd":
        # row p is the derivative along e_p; symmetric, so rows and columns agree
        basis = jnp.eye(theta.shape[0], dtype=theta.dtype)
        return directional_derivatives(gradient, theta, basis, batch_size)
    if method == "fd-forward":
        step = finite_difference_steps(theta, 0.5)
        at_theta = gradient(theta)
        rows = jax.lax.map(lambda shift: gradient(theta + shift), jnp.diag(step),
                           batch_size=batch_size)
        return (rows - at_theta[None, :]) / step[:, None]
    if method == "fd-central":
        step = finite_difference_steps(theta, 1.0 / 3.0)
        rows = jax.lax.map(lambda shift: gradient(theta + shift) - gradient(theta - shift),
                           jnp.diag(step), batch_size=batch_size)
        return rows / (2.0 * step[:, None])
    if method == "structured":
        raise ValueError("the structured Hessian needs the model, not only its gradient: "
                         "use Problem.hessian(theta, 'structured')")
    raise ValueError(f"unknown Hessian method {method!r}; use one of {HESSIANS}")


@dataclasses.dataclass(frozen=True)
class SymmetricHessian:
    matrix: np.ndarray
    method: str
    asymmetry: float  # max |H - H'| / max |H| before symmetrising


def symmetrize(matrix, method: str) -> SymmetricHessian:
    """Check and symmetrise a Hessian. Raises :class:`HessianAsymmetryError` for an exact
    Hessian whose relative asymmetry exceeds ``EXACT_ASYMMETRY_TOLERANCE`` (float64), or
    ``1e4 eps`` of a lower precision."""
    # rounding scales with the precision the Hessian was computed in
    tolerance = max(EXACT_ASYMMETRY_TOLERANCE, 1e4 * np.finfo(np.asarray(matrix).dtype).eps)
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = np.max(np.abs(matrix))
    asymmetry = float(np.max(np.abs(matrix - matrix.T)) / scale) if scale > 0 else 0.0
    if not np.all(np.isfinite(matrix)):
        raise FloatingPointError(f"the {method} Hessian has non-finite entries")
    if method in EXACT_HESSIANS and asymmetry > tolerance:
        row = int(np.argmax(np.max(np.abs(matrix - matrix.T), axis=1)))
        raise HessianAsymmetryError(
            f"the exact ({method}) Hessian is not symmetric: relative asymmetry {asymmetry:.2e} "
            f"(tolerance {tolerance:.0e}), worst at row {row}")
    return SymmetricHessian(0.5 * (matrix + matrix.T), method, asymmetry)


@dataclasses.dataclass(frozen=True)
class HessianComparison:
    """Hessians of one problem at one point by several methods, side by side."""

    names: tuple[str, ...]
    blocks: tuple[str, ...]  # the block of each parameter: structural, measurement, choice
    hessians: dict[str, SymmetricHessian]
    seconds: dict[str, float]  # wall time per method, compilation included

    def differences(self) -> pd.DataFrame:
        """Max absolute and relative (to the block's max |H|) difference of every pair of
        methods, over all parameters and per block of rows."""
        rows = []
        methods = list(self.hessians)
        blocks = np.asarray(self.blocks)
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                ha, hb = self.hessians[a].matrix, self.hessians[b].matrix
                for block in ("all", *dict.fromkeys(self.blocks)):
                    rows_in = slice(None) if block == "all" else blocks == block
                    diff = np.abs(ha[rows_in] - hb[rows_in])
                    rows.append({"methods": f"{a} vs {b}", "block": block,
                                 "max abs diff": diff.max(),
                                 "max rel diff": diff.max() / np.abs(ha[rows_in]).max()})
        return pd.DataFrame(rows)

    def eigen(self) -> pd.DataFrame:
        """Per method: extreme eigenvalues of H, condition number, asymmetry, time, and
        whether H is negative definite; if not, the parameters that load on the offending
        eigenvectors."""
        rows = []
        for method, h in self.hessians.items():
            eigenvalues, vectors = np.linalg.eigh(h.matrix)
            tolerance = np.abs(eigenvalues).max() * len(eigenvalues) * np.finfo(float).eps
            offending = np.flatnonzero(eigenvalues >= -tolerance)
            loading = sorted({self.names[p] for e in offending
                              for p in np.flatnonzero(np.abs(vectors[:, e])
                                                      > 0.1 * np.abs(vectors[:, e]).max())})
            rows.append({"method": method, "min eigenvalue": eigenvalues[0],
                         "max eigenvalue": eigenvalues[-1],
                         "condition number": np.abs(eigenvalues).max() / np.abs(eigenvalues).min(),
                         "negative definite": offending.size == 0,
                         "offending parameters": ", ".join(loading),
                         "asymmetry": h.asymmetry, "seconds": self.seconds[method]})
        return pd.DataFrame(rows).set_index("method")


def compare_hessians(hessian_of, names, blocks, methods=HESSIANS) -> HessianComparison:
    """Compute the Hessian by each of ``methods`` (``hessian_of(method)`` returns the raw
    matrix) and compare them."""
    hessians, seconds = {}, {}
    for method in methods:
        started = time.perf_counter()
        matrix = np.asarray(jax.block_until_ready(hessian_of(method)))
        seconds[method] = time.perf_counter() - started
        hessians[method] = symmetrize(matrix, method)
    return HessianComparison(tuple(names), tuple(blocks), hessians, seconds)
