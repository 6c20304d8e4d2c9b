"""Covariance of the estimates from the Hessian and the per-individual scores.

- ``"classical"``: ``(-H)^{-1}``;
- ``"bhhh"``: ``(S'S)^{-1}`` with ``S`` the per-individual scores ``(N, P)``;
- ``"robust"``: the sandwich ``H^{-1} (S'S) H^{-1}`` (the default, as in Apollo and Biogeme);
- ``"cluster"``: the sandwich with the scores summed within clusters of individuals,
  ``H^{-1} (sum_g s_g s_g') H^{-1}``, ``s_g = sum_{i in g} s_i`` (no small-sample factor).

A singular or indefinite ``-H`` (an unidentified model, or a point that is not a maximum)
gives NaN standard errors and a message that says why and names the parameters that load on
the offending eigenvector; it never raises. Near an optimum that is only approximately
stationary, an unidentified direction can leave ``-H`` with a tiny eigenvalue of either sign,
so ``S'S`` is checked too (when there are more individuals than parameters): every
individual's score is orthogonal to an unidentified direction, so ``S'S`` is singular to
rounding, and the sandwich would otherwise hide it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COVARIANCES", "covariance"]

COVARIANCES = ("robust", "classical", "bhhh", "cluster")


def _loading_parameters(vector: np.ndarray, names) -> list[str]:
    return [names[p] for p in np.flatnonzero(np.abs(vector) > 0.1 * np.abs(vector).max())]


def _inverse_positive_definite(matrix: np.ndarray, what: str, names,
                               relative_tolerance: float) -> tuple[np.ndarray | None, str]:
    eigenvalues, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    tolerance = np.abs(eigenvalues).max() * relative_tolerance
    if eigenvalues[0] <= tolerance:
        kind = "singular" if abs(eigenvalues[0]) <= tolerance else "not positive definite"
        return None, (f"{what} is {kind} (smallest eigenvalue {eigenvalues[0]:.3g}, largest "
                      f"{eigenvalues[-1]:.3g}): the model may not be identified or the point is "
                      f"not a maximum; standard errors are NaN. Parameters on that eigenvector: "
                      f"{_loading_parameters(vectors[:, 0], names)}")
    return (vectors / eigenvalues) @ vectors.T, ""


def covariance(hess: np.ndarray, scores: np.ndarray, kind: str, names,
               clusters: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """``(covariance (P, P), message)``; the message is empty when all is well.

    ``hess``: Hessian of the log-likelihood; ``scores``: per-individual gradients ``(N, P)``;
    ``clusters``: one label per individual, for ``kind="cluster"``.
    """
    if kind not in COVARIANCES:
        raise ValueError(f"unknown covariance type {kind!r}; use one of {COVARIANCES}")
    n = hess.shape[0]
    nan = np.full((n, n), np.nan)
    rounding = n * np.finfo(float).eps
    outer = scores.T @ scores
    outer_inverse, outer_message = _inverse_positive_definite(
        outer, "the outer product of the per-individual scores S'S", names, 1e3 * rounding)
    if outer_inverse is None and (kind == "bhhh" or scores.shape[0] > n):
        return nan, outer_message
    if kind == "bhhh":
        return outer_inverse, ""
    inverse, message = _inverse_positive_definite(-np.asarray(hess), "-H (the negative Hessian)",
                                                  names, rounding)
    if inverse is None:
        return nan, message
    if kind == "classical":
        return inverse, ""
    if kind == "cluster":
        if clusters is None or len(clusters) != scores.shape[0]:
            raise ValueError("cluster-robust standard errors need one cluster label per individual")
        _, group = np.unique(np.asarray(clusters), return_inverse=True)
        summed = np.zeros((group.max() + 1, scores.shape[1]))
        np.add.at(summed, group, scores)
        outer = summed.T @ summed
    return inverse @ outer @ inverse, ""
