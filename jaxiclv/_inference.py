"""Covariance of the estimates from the Hessian and the per-individual scores.

- ``"classical"``: ``(-H)^{-1}``;
- ``"bhhh"``: ``(S'S)^{-1}`` with ``S`` the per-individual scores ``(N, P)``;
- ``"robust"``: the sandwich ``H^{-1} (S'S) H^{-1}`` (the default, as in Apollo and Biogeme);
- ``"cluster"``: the sandwich with the scores summed within clusters of individuals,
  ``H^{-1} (sum_g s_g s_g') H^{-1}``, ``s_g = sum_{i in g} s_i``. It needs at least two
  clusters; with no more clusters than parameters its middle matrix has rank at most
  ``G - 1 < P`` and the message says so.

``finite_sample=True`` multiplies the sandwich's middle matrix by ``N / (N - 1)`` (robust) or
``G / (G - 1)`` (cluster), the factors of Stata's ``vce(robust)`` and ``vce(cluster)`` for
maximum likelihood; without it (the default) the sandwich is Biogeme's (no factor). The
classical and BHHH covariances have no such factor.

Identification is judged on the correlation form ``D^{-1/2} M D^{-1/2}`` (``D`` the diagonal)
of ``-H`` and ``S'S``, which does not change when a parameter's units do (an attribute in units
of 1e5 rescales one row and column of ``H``, not its correlation form). Its eigenvalues lie in
``(0, P]``; one at or below a relative tolerance is an unidentified direction (and one clearly
below zero a direction in which the point is not a maximum). Only the parameters that load on
those directions get NaN standard errors: every other parameter ``p`` has ``e_p`` orthogonal to
them, so it is an estimable function and its variance is the same under any generalised
inverse; the covariance uses the inverse on the other directions. A zero or negative diagonal
entry marks its parameter the same way. Near an optimum that is only approximately stationary,
an unidentified direction can leave ``-H`` with a tiny eigenvalue of either sign, so ``S'S`` is
checked too (when there are more individuals than parameters): every individual's score is
orthogonal to an unidentified direction, so ``S'S`` is singular to rounding. Nothing raises.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COVARIANCES", "covariance", "check_clusters"]

COVARIANCES = ("robust", "classical", "bhhh", "cluster")

# a parameter is on a flagged direction when its coordinate in the unit eigenvector exceeds this
# (rounding leaves about eps / gap in coordinates that are exactly zero)
_LOADING = 1e-4


def _flagged_inverse(matrix: np.ndarray, what: str, names,
                     relative_tolerance: float) -> tuple[np.ndarray, np.ndarray, str]:
    """``(inverse, flagged, message)`` of a symmetric matrix that should be positive definite:
    ``flagged`` marks the parameters on its singular or negative directions (or with a
    non-positive diagonal); ``inverse`` inverts the other directions (of the correlation
    form, scaled back), a generalised inverse that is exact for every function of the
    parameters not flagged, the sandwich included."""
    matrix = 0.5 * (matrix + matrix.T)
    diagonal = np.diag(matrix).copy()
    flagged = ~(diagonal > 0.0)
    keep = np.flatnonzero(~flagged)
    scale = 1.0 / np.sqrt(diagonal[keep])
    correlation = matrix[np.ix_(keep, keep)] * np.outer(scale, scale)  # unit diagonal
    eigenvalues, vectors = np.linalg.eigh(correlation)
    tolerance = max(eigenvalues[-1], 1.0) * relative_tolerance if keep.size else 0.0
    bad = eigenvalues <= tolerance
    flagged[keep] = np.any(np.abs(vectors[:, bad]) > _LOADING, axis=1)
    good = ~bad
    inverse = np.zeros(matrix.shape)
    inverse[np.ix_(keep, keep)] = ((vectors[:, good] / eigenvalues[good]) @ vectors[:, good].T
                                   * np.outer(scale, scale))
    if not flagged.any():
        return inverse, flagged, ""
    smallest = eigenvalues[0] if keep.size else np.nan
    kind = ("not positive definite" if (keep.size and smallest < -tolerance) or
            np.any(diagonal < 0.0) else "singular")
    return inverse, flagged, (
        f"{what} is {kind} (smallest eigenvalue of its correlation form {smallest:.3g}): the "
        f"model may not be identified, or the point is not a maximum, in the directions of "
        f"{[names[p] for p in np.flatnonzero(flagged)]}; their standard errors are NaN")


def check_clusters(clusters, n_individuals: int) -> np.ndarray:
    """One cluster label per individual, at least two clusters; else a ``ValueError``."""
    if clusters is None or len(clusters) != n_individuals:
        raise ValueError(f"cluster-robust standard errors need one cluster label per individual "
                         f"({n_individuals}), got {None if clusters is None else len(clusters)}")
    clusters = np.asarray(clusters)
    n_clusters = len(np.unique(clusters))
    if n_clusters < 2:
        raise ValueError(f"cluster-robust standard errors need at least two clusters, got "
                         f"{n_clusters} ({clusters[0]!r}): the scores summed over one cluster "
                         f"are the total gradient, zero at the optimum")
    return clusters


def covariance(hess: np.ndarray, scores: np.ndarray, kind: str, names,
               clusters: np.ndarray | None = None,
               finite_sample: bool = False) -> tuple[np.ndarray, str]:
    """``(covariance (P, P), message)``; the message is empty when all is well.

    ``hess``: Hessian of the log-likelihood; ``scores``: per-individual gradients ``(N, P)``;
    ``clusters``: one label per individual, for ``kind="cluster"``; ``finite_sample``: the
    sandwich's ``N / (N - 1)`` or ``G / (G - 1)`` factor.
    """
    if kind not in COVARIANCES:
        raise ValueError(f"unknown covariance type {kind!r}; use one of {COVARIANCES}")
    hess, scores = np.asarray(hess, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if kind == "cluster":
        clusters = check_clusters(clusters, scores.shape[0])
    n = hess.shape[0]
    for matrix, what in ((hess, "Hessian"), (scores, "per-individual scores")):
        if not np.all(np.isfinite(matrix)):
            return (np.full((n, n), np.nan),
                    f"the {what} have non-finite entries; no standard errors")
    rounding = n * np.finfo(np.float64).eps
    outer_inverse, outer_flagged, outer_message = _flagged_inverse(
        scores.T @ scores, "the outer product of the per-individual scores S'S", names,
        1e3 * rounding)
    if kind == "bhhh":
        return _with_nan(outer_inverse, outer_flagged), outer_message
    inverse, flagged, message = _flagged_inverse(-hess, "-H (the negative Hessian)", names,
                                                 rounding)
    if scores.shape[0] > n and outer_flagged.any():
        flagged |= outer_flagged
        message = "; ".join(m for m in (message, outer_message) if m)
    if kind == "classical":
        cov = inverse
    else:
        middle = scores
        if kind == "cluster":
            _, group = np.unique(clusters, return_inverse=True)
            middle = np.zeros((group.max() + 1, scores.shape[1]))
            np.add.at(middle, group, scores)
            if middle.shape[0] <= n:
                message = "; ".join(m for m in (message, (
                    f"only {middle.shape[0]} clusters for {n} parameters: the cluster-robust "
                    f"covariance has rank at most {middle.shape[0] - 1}, so some combinations of "
                    f"the parameters have zero variance and the standard errors are not "
                    f"reliable; use more clusters or another covariance type")) if m)
        units = middle.shape[0]
        factor = units / (units - 1.0) if finite_sample else 1.0
        cov = inverse @ (factor * (middle.T @ middle)) @ inverse
    return _with_nan(cov, flagged), message


def _with_nan(cov: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    cov = cov.copy()
    cov[flagged, :] = np.nan
    cov[:, flagged] = np.nan
    return cov
