"""Hessian and covariance matrices of the estimates.

The Hessian is forward-over-reverse (``jacfwd`` of the gradient), pushed through in chunks of
``batch_size`` tangent directions with ``jax.lax.map`` so that memory stays at
``O(batch_size)`` gradient evaluations rather than ``O(P)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["hessian", "covariance"]


def hessian(loglik: Callable, theta: jax.Array, batch_size: int = 16) -> jax.Array:
    """``d^2 loglik / dtheta^2`` by forward differentiation of ``jax.grad(loglik)``."""
    gradient = jax.grad(loglik)
    basis = jnp.eye(theta.shape[0], dtype=theta.dtype)
    column = lambda v: jax.jvp(gradient, (theta,), (v,))[1]
    return jax.lax.map(column, basis, batch_size=batch_size)


def covariance(hess: np.ndarray, scores: np.ndarray | None, kind: str,
               names: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """Covariance of the estimates and a message (empty if all is well).

    ``kind``: ``"classical"`` ``(-H)^{-1}``; ``"bhhh"`` ``(S'S)^{-1}`` from the per-individual
    scores ``S`` ``(N, P)``; ``"robust"`` the sandwich ``H^{-1} (S'S) H^{-1}``. If ``-H`` is not
    positive definite (a singular or indefinite Hessian: an unidentified model, or not at a
    maximum) the covariance is NaN and the message says why.
    """
    n = hess.shape[0]
    nan = np.full((n, n), np.nan)
    if kind == "bhhh":
        outer = scores.T @ scores
        eigenvalues = np.linalg.eigvalsh(outer)
        if eigenvalues.min() <= eigenvalues.max() * n * np.finfo(float).eps:
            return nan, "the outer product of the scores is singular: the model is not identified"
        return np.linalg.inv(outer), ""
    information = -0.5 * (hess + hess.T)
    eigenvalues, vectors = np.linalg.eigh(information)
    tolerance = np.abs(eigenvalues).max() * n * np.finfo(float).eps
    if eigenvalues.min() <= tolerance:
        worst = vectors[:, 0]
        kind_of = "singular" if abs(eigenvalues[0]) <= tolerance else "not negative definite"
        return nan, (f"the Hessian is {kind_of} (smallest eigenvalue of -H: {eigenvalues[0]:.3g}); "
                     f"standard errors are NaN. Parameters loading on that eigenvector: "
                     f"{[names[p] for p in np.flatnonzero(np.abs(worst) > 0.1 * np.abs(worst).max())]}")
    inverse = (vectors / eigenvalues) @ vectors.T
    if kind == "classical":
        return inverse, ""
    if kind == "robust":
        return inverse @ (scores.T @ scores) @ inverse, ""
    raise ValueError(f"unknown covariance type {kind!r}; use 'robust', 'classical' or 'bhhh'")
