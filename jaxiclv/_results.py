"""Estimation results: data, with views (tables, text) computed on demand. Nothing prints."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["Results", "Status"]


class Status(enum.Enum):
    """How the estimation ended: the optimiser's outcome, or ``HESSIAN_FAILED`` when the
    optimiser stopped well but the Hessian at its point is unusable (then the estimates are
    there and the standard errors are NaN)."""

    CONVERGED = "converged"
    MAX_ITERATIONS = "maximum number of iterations reached"
    STALLED = "no further improvement (line search failed before convergence)"
    NON_FINITE = "the log-likelihood or its gradient is not finite"
    HESSIAN_FAILED = "the Hessian at the estimates is not finite or not symmetric"


@dataclasses.dataclass(frozen=True, eq=False)
class Results:
    """The result of :func:`jaxiclv.estimate`.

    Names follow statsmodels: ``params``, ``bse``, ``tvalues``, ``pvalues``, ``llf``, ``aic``,
    ``bic``, ``cov_params()``. ``model`` is the fitted model (an Equinox module).
    """

    model: object
    names: tuple[str, ...]
    estimates: np.ndarray
    cov: np.ndarray
    cov_type: str
    cov_message: str
    hessian: np.ndarray
    hessian_method: str
    hessian_asymmetry: float  # max|H - H'| / max|H| before symmetrising
    scores: np.ndarray  # per-individual gradients (N, P)
    fixed: dict[str, float]
    llf: float
    llf_start: float
    n_individuals: int
    n_observations: int
    n_draws: int
    iterations: int
    seconds: float
    status: Status
    message: str
    gradient_norm: float
    history: np.ndarray
    optimizer: str
    gradient: str
    natural_names: tuple[str, ...]
    natural_estimates: np.ndarray
    natural_jacobian: np.ndarray  # d natural / d theta
    hessian_comparison: object | None = None
    missing_answers: dict[str, int] = dataclasses.field(default_factory=dict)  # by indicator

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def params(self) -> pd.Series:
        return pd.Series(self.estimates, index=list(self.names), name="estimate")

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov)), index=list(self.names), name="std err")

    @property
    def tvalues(self) -> pd.Series:
        return (self.params / self.bse).rename("t")

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(2.0 * stats.norm.sf(np.abs(self.tvalues.to_numpy())),
                         index=list(self.names), name="p")

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """``-2 LL + P log N`` with N the number of individuals (the independent units)."""
        return -2.0 * self.llf + self.n_params * np.log(self.n_individuals)

    def cov_params(self) -> pd.DataFrame:
        return pd.DataFrame(self.cov, index=list(self.names), columns=list(self.names))

    def corr_params(self) -> pd.DataFrame:
        scale = np.sqrt(np.diag(self.cov))
        return pd.DataFrame(self.cov / np.outer(scale, scale), index=list(self.names),
                            columns=list(self.names))

    def natural(self) -> pd.DataFrame:
        """Every parameter on its natural scale (``sigma`` for ``log_sigma``, thresholds
        ``tau_j`` for their increments) with delta-method standard errors
        ``sqrt(diag(J V J'))``; parameters that are fixed get a NaN standard error."""
        jacobian = self.natural_jacobian
        unknown = np.isnan(np.diag(self.cov))  # parameters without a standard error
        cov = np.where(unknown[:, None] | unknown[None, :], 0.0, self.cov)
        se = np.sqrt(np.einsum("ip,pq,iq->i", jacobian, cov, jacobian))
        uses_unknown = np.any(jacobian[:, unknown] != 0, axis=1)
        se = np.where(np.any(jacobian != 0, axis=1) & ~uses_unknown, se, np.nan)
        index = list(self.natural_names)
        t = self.natural_estimates / se
        return pd.DataFrame({"estimate": self.natural_estimates, "std err": se, "t": t,
                             "p": 2.0 * stats.norm.sf(np.abs(t))}, index=index)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        half = stats.norm.ppf(1.0 - alpha / 2.0) * self.bse
        return pd.DataFrame({"lower": self.params - half, "upper": self.params + half})

    def table(self) -> pd.DataFrame:
        """One row per free parameter: estimate, standard error, t, p."""
        return pd.concat([self.params, self.bse, self.tvalues, self.pvalues], axis=1)

    def fit_statistics(self) -> pd.Series:
        return pd.Series({
            "status": self.status.name.lower(),
            "message": self.message,
            "log-likelihood at start": self.llf_start,
            "log-likelihood": self.llf,
            "AIC": self.aic,
            "BIC": self.bic,
            "individuals": self.n_individuals,
            "observations (choice tasks)": self.n_observations,
            "draws per individual": self.n_draws,
            **({"missing answers (dropped)": ", ".join(
                f"{k} {v}" for k, v in self.missing_answers.items())}
               if self.missing_answers else {}),
            "free parameters": self.n_params,
            "fixed parameters": len(self.fixed),
            "iterations": self.iterations,
            "seconds": round(self.seconds, 3),
            "optimizer": self.optimizer,
            "gradient": self.gradient,
            "gradient norm (max abs)": self.gradient_norm,
            "Hessian": f"{self.hessian_method} (asymmetry {self.hessian_asymmetry:.1e})",
            "covariance": self.cov_type + (f" ({self.cov_message})" if self.cov_message else ""),
        }, name="value", dtype=object)

    def summary(self, extra: pd.DataFrame | None = None) -> str:
        """The fit statistics and the parameter table as text; ``extra`` columns (e.g. true
        values), indexed by parameter name, are joined to the table."""
        table = self.table()
        if extra is not None:
            table = table.join(extra)
        statistics = self.fit_statistics()
        width = max(len(k) for k in statistics.index)
        lines = [f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                 for k, v in statistics.items()]
        with pd.option_context("display.max_rows", None, "display.width", 200,
                               "display.float_format", "{:.6g}".format):
            text = table.to_string()
        fixed = ("\n\nFixed parameters: " + ", ".join(f"{k} = {v:g}" for k, v in self.fixed.items())
                 if self.fixed else "")
        return ("ICLV model estimated by simulated maximum likelihood\n" + "\n".join(lines)
                + "\n\n" + text + fixed)
