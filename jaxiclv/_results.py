"""Estimation results: data, with views (tables, text, files) computed on demand. Nothing
prints.

Fit statistics (statsmodels' names where it has them): ``llf`` (at the estimates),
``llf_start``, ``llnull`` (LL(0)), ``llconst`` (LL(C)), ``rho2 = 1 - LL / LL(0)``,
``rho2_adj = 1 - (LL - P) / LL(0)``, ``rho2_const`` and ``rho2_const_adj`` against LL(C),
``aic = -2 LL + 2 P``, ``bic = -2 LL + P log(nobs)`` with ``nobs`` the number of individuals
(the independent units), and ``components``: each component's LL(0), LL(C) and own simulated
log-likelihood (:mod:`jaxiclv._statistics`).

Every covariance type is on the result (``covariances``: classical, robust, BHHH, and cluster
when clusters were given); ``cov_type`` is the one ``bse``, ``tvalues``, ``pvalues`` and
``cov_params()`` use by default, and ``table()`` shows the classical and robust standard
errors side by side.

``save(path)`` writes a NumPy ``.npz`` archive (no pickle): the arrays under their field names,
the names as string arrays, the covariances as ``cov.{type}``, the component table as
``components.values`` / ``.index`` / ``.columns``, and the scalars and strings as JSON in
``meta``. ``Results.load(path, model=..., panel=..., draws=...)`` reads it back; with the model
specification (and the panel and draws) it is a result that post-estimation functions accept.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import pathlib

import numpy as np
import pandas as pd
from scipy import stats

from ._parameters import ParameterSpace
from ._problem import Problem
from ._statistics import component_table

__all__ = ["Results", "Status"]


class Status(enum.Enum):
    """How the estimation ended: the optimiser's outcome, or ``HESSIAN_FAILED`` when the
    optimiser stopped well but the Hessian at its point is unusable (then the estimates are
    there and the standard errors are NaN)."""

    CONVERGED = "converged"
    MAX_ITERATIONS = "maximum number of iterations reached"
    STALLED = ("no further improvement before convergence (L-BFGS: the line search failed; "
               "Newton: no gain, or a decrement that does not fall along a flat direction)")
    NON_FINITE = "the log-likelihood or its gradient is not finite"
    HESSIAN_FAILED = "the Hessian at the estimates is not finite or not symmetric"


# the arrays of a result, saved under their names; names; what goes into the JSON `meta`
_ARRAYS = ("estimates", "hessian", "scores", "history", "natural_estimates", "natural_jacobian")
_STRINGS = ("names", "natural_names")
_JSON = ("cov_type", "finite_sample", "hessian_method", "hessian_asymmetry", "llf",
            "llf_start", "n_individuals", "n_observations", "n_outcomes", "n_draws", "draws_description",
            "weighted", "iterations", "seconds", "message", "gradient_norm", "optimizer",
            "gradient", "start", "cov_messages", "fixed", "missing_answers")


@dataclasses.dataclass(frozen=True, eq=False)
class Results:
    """The result of :func:`jaxiclv.estimate`.

    Names follow statsmodels: ``params``, ``bse``, ``tvalues``, ``pvalues``, ``llf``,
    ``llnull``, ``aic``, ``bic``, ``nobs``, ``cov_params()``. ``model`` is the fitted model
    (an Equinox module); ``problem`` the model, data and draws the estimation used (for
    post-estimation), ``draws`` their generator (``None`` for an array).
    """

    model: object
    names: tuple[str, ...]
    estimates: np.ndarray
    covariances: dict[str, np.ndarray]  # by covariance type
    cov_messages: dict[str, str]  # by covariance type; empty when all is well
    cov_type: str
    finite_sample: bool  # the sandwiches' N / (N - 1) and G / (G - 1)
    hessian: np.ndarray
    hessian_method: str
    hessian_asymmetry: float  # max|H - H'| / max|H| before symmetrising
    scores: np.ndarray  # per-individual gradients (N, P)
    fixed: dict[str, float]
    llf: float
    llf_start: float
    n_individuals: int
    n_observations: int  # choice tasks
    n_outcomes: int  # choices and indicator answers modelled
    n_draws: int
    draws_description: str
    weighted: bool
    iterations: int
    seconds: float
    status: Status
    message: str
    gradient_norm: float
    history: np.ndarray  # LL per iteration (L-BFGS: at its start; Newton: after it)
    optimizer: str
    gradient: str
    start: str  # where the optimiser started
    natural_names: tuple[str, ...]
    natural_estimates: np.ndarray
    natural_jacobian: np.ndarray  # d natural / d theta
    hessian_comparison: object | None = None
    missing_answers: dict[str, int] = dataclasses.field(default_factory=dict)  # by indicator
    problem: object | None = dataclasses.field(default=None, repr=False)
    draws: object | None = dataclasses.field(default=None, repr=False)
    # the component table when it is known (a loaded result); else computed from the problem
    _components: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def components(self) -> pd.DataFrame:
        """LL(0), LL(C) and the log-likelihood of each component (the choice model, each
        indicator) at the estimates, and a last row ``model`` (computed on first use)."""
        if self._components is not None:
            return self._components
        if self.problem is None:
            raise ValueError("this result has no problem to compute its components from: load "
                             "it with its model, panel and draws")
        return component_table(self.problem, self.estimates)

    # ---- the estimates and their covariances ----

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def nobs(self) -> int:
        """The number of independent units (individuals), as in the BIC."""
        return self.n_individuals

    @property
    def cov(self) -> np.ndarray:
        return self.covariances[self.cov_type]

    @property
    def cov_message(self) -> str:
        return self.cov_messages[self.cov_type]

    def _cov(self, cov_type: str | None) -> np.ndarray:
        cov_type = self.cov_type if cov_type is None else cov_type
        if cov_type not in self.covariances:
            raise KeyError(f"no {cov_type!r} covariance: this result has "
                           f"{list(self.covariances)} (cluster needs clusters= in estimate)")
        return self.covariances[cov_type]

    @property
    def params(self) -> pd.Series:
        return pd.Series(self.estimates, index=list(self.names), name="estimate")

    def std_errors(self, cov_type: str | None = None) -> pd.Series:
        """The standard errors of a covariance type (default ``cov_type``)."""
        return pd.Series(np.sqrt(np.diag(self._cov(cov_type))), index=list(self.names),
                         name="std err")

    @property
    def bse(self) -> pd.Series:
        return self.std_errors()

    @property
    def tvalues(self) -> pd.Series:
        return (self.params / self.bse).rename("t")

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(2.0 * stats.norm.sf(np.abs(self.tvalues.to_numpy())),
                         index=list(self.names), name="p")

    def cov_params(self, cov_type: str | None = None) -> pd.DataFrame:
        return pd.DataFrame(self._cov(cov_type), index=list(self.names),
                            columns=list(self.names))

    def corr_params(self, cov_type: str | None = None) -> pd.DataFrame:
        cov = self._cov(cov_type)
        scale = np.sqrt(np.diag(cov))
        return pd.DataFrame(cov / np.outer(scale, scale), index=list(self.names),
                            columns=list(self.names))

    def natural(self, cov_type: str | None = None) -> pd.DataFrame:
        """Every parameter on its natural scale (``sigma`` for ``log_sigma``, thresholds
        ``tau_j`` for their increments) with delta-method standard errors
        ``sqrt(diag(J V J'))`` of a covariance type (default ``cov_type``); parameters that
        are fixed get a NaN standard error."""
        jacobian = self.natural_jacobian
        full = self._cov(cov_type)
        unknown = np.isnan(np.diag(full))  # parameters without a standard error
        cov = np.where(unknown[:, None] | unknown[None, :], 0.0, full)
        se = np.sqrt(np.einsum("ip,pq,iq->i", jacobian, cov, jacobian))
        uses_unknown = np.any(jacobian[:, unknown] != 0, axis=1)
        se = np.where(np.any(jacobian != 0, axis=1) & ~uses_unknown, se, np.nan)
        index = list(self.natural_names)
        t = self.natural_estimates / se
        return pd.DataFrame({"estimate": self.natural_estimates, "std err": se, "t": t,
                             "p": 2.0 * stats.norm.sf(np.abs(t))}, index=index)

    def conf_int(self, alpha: float = 0.05, cov_type: str | None = None) -> pd.DataFrame:
        half = stats.norm.ppf(1.0 - alpha / 2.0) * self.std_errors(cov_type)
        return pd.DataFrame({"lower": self.params - half, "upper": self.params + half})

    def table(self, cov_types: tuple[str, ...] | None = None) -> pd.DataFrame:
        """One row per free parameter: estimate, and for ``cov_types`` (default: ``cov_type``,
        then classical or robust, whichever it is not) the standard error, t and p; the first
        type's columns are ``std err``, ``t``, ``p``, the others' are prefixed by the type."""
        if cov_types is None:
            other = "classical" if self.cov_type != "classical" else "robust"
            cov_types = (self.cov_type, other)
        columns = [self.params]
        for k, kind in enumerate(cov_types):
            se = self.std_errors(kind)
            t = self.params / se
            prefix = "" if k == 0 else f"{kind} "
            columns += [se.rename(f"{prefix}std err"), t.rename(f"{prefix}t"),
                        pd.Series(2.0 * stats.norm.sf(np.abs(t.to_numpy())),
                                  index=list(self.names), name=f"{prefix}p")]
        return pd.concat(columns, axis=1)

    # ---- fit statistics ----

    @property
    def llnull(self) -> float:
        """LL(0): every alternative and level equally likely (NaN if a component has none)."""
        return float(self.components.loc["model", "LL(0)"])

    @property
    def llconst(self) -> float:
        """LL(C): the sample shares and frequencies (constants only)."""
        return float(self.components.loc["model", "LL(C)"])

    @property
    def rho2(self) -> float:
        return 1.0 - self.llf / self.llnull

    @property
    def rho2_adj(self) -> float:
        return 1.0 - (self.llf - self.n_params) / self.llnull

    @property
    def rho2_const(self) -> float:
        return 1.0 - self.llf / self.llconst

    @property
    def rho2_const_adj(self) -> float:
        return 1.0 - (self.llf - self.n_params) / self.llconst

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """``-2 LL + P log N`` with N the number of individuals (the independent units)."""
        return -2.0 * self.llf + self.n_params * np.log(self.nobs)

    def fit_statistics(self) -> pd.Series:
        return pd.Series({
            "status": self.status.name.lower(),
            "message": self.message,
            "log-likelihood at start": self.llf_start,
            "LL(0)": self.llnull,
            "LL(C)": self.llconst,
            "log-likelihood": self.llf,
            "rho-square (0)": self.rho2,
            "adj. rho-square (0)": self.rho2_adj,
            "rho-square (C)": self.rho2_const,
            "adj. rho-square (C)": self.rho2_const_adj,
            "AIC": self.aic,
            f"BIC (N = {self.nobs} individuals)": self.bic,
            "individuals": self.n_individuals,
            "observations (choice tasks)": self.n_observations,
            "modelled outcomes (choices and answers)": self.n_outcomes,
            "sampling weights": "yes" if self.weighted else "no",
            "draws": self.draws_description,
            **({"missing answers (dropped)": ", ".join(
                f"{k} {v}" for k, v in self.missing_answers.items())}
               if self.missing_answers else {}),
            "free parameters": self.n_params,
            "fixed parameters": len(self.fixed),
            "start": self.start,
            "iterations": self.iterations,
            "seconds": round(self.seconds, 3),
            "optimizer": self.optimizer,
            "gradient": self.gradient,
            "gradient norm (max abs)": self.gradient_norm,
            "Hessian": f"{self.hessian_method} (asymmetry {self.hessian_asymmetry:.1e})",
            "covariance": self.cov_type + (" with the finite-sample factor"
                                           if self.finite_sample else "")
            + (f" ({self.cov_message})" if self.cov_message else ""),
        }, name="value", dtype=object)

    def summary(self, extra: pd.DataFrame | None = None) -> str:
        """The fit statistics, the log-likelihood of each component and the parameter table
        (estimates with the ``table()`` standard errors) as text; ``extra`` columns (e.g. true
        values), indexed by parameter name, are joined to the table. Log-likelihoods are shown
        to 1e-6."""
        table = self.table()
        if extra is not None:
            table = table.join(extra)
        statistics = self.fit_statistics()
        width = max(len(k) for k in statistics.index)

        def shown(key, value):
            if not isinstance(value, float):
                return str(value)
            return f"{value:.6f}" if key.startswith(("log-lik", "LL")) else f"{value:.6g}"
        lines = [f"{k:<{width}}  {shown(k, v)}" for k, v in statistics.items()]
        with pd.option_context("display.max_rows", None, "display.width", 200,
                               "display.float_format", "{:.6g}".format):
            text = table.to_string()
        with pd.option_context("display.float_format", "{:.6f}".format):
            components = self.components.to_string()
        fixed = ("\n\nFixed parameters: " + ", ".join(f"{k} = {v:g}" for k, v in self.fixed.items())
                 if self.fixed else "")
        return ("ICLV model estimated by simulated maximum likelihood\n" + "\n".join(lines)
                + "\n\nLog-likelihood by component (each simulated on its own)\n" + components
                + "\n\n" + text + fixed)

    # ---- files ----

    def export(self, path, cov_types: tuple[str, ...] | None = None) -> None:
        """The estimates table (:meth:`table`) to a file, by its suffix: ``.csv``, ``.json``
        (one record per parameter), ``.tex`` (LaTeX) or ``.html``."""
        path = pathlib.Path(path)
        table = self.table(cov_types).rename_axis("parameter")
        writers = {".csv": lambda: table.to_csv(path),
                   ".json": lambda: table.reset_index().to_json(path, orient="records", indent=1,
                                                                   double_precision=15),
                   ".tex": lambda: path.write_text(table.to_latex(float_format="%.6g")),
                   ".html": lambda: table.to_html(path, float_format="{:.6g}".format)}
        if path.suffix not in writers:
            raise ValueError(f"cannot export to {path.name!r}: use a suffix in {list(writers)}")
        writers[path.suffix]()

    def save(self, path) -> None:
        """Write the result to a ``.npz`` archive (arrays and names, no pickle; see the
        module docstring). The Hessian comparison, the model and the data are not saved."""
        meta = {name: getattr(self, name) for name in _JSON}
        meta["status"] = self.status.name
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        arrays.update({name: np.array(getattr(self, name), dtype=str) for name in _STRINGS})
        arrays.update({f"cov.{kind}": cov for kind, cov in self.covariances.items()})
        arrays["components.values"] = self.components.to_numpy(dtype=np.float64)
        arrays["components.index"] = np.array(self.components.index, dtype=str)
        arrays["components.columns"] = np.array(self.components.columns, dtype=str)
        arrays["meta"] = np.array(json.dumps(meta))
        with open(path, "wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path, model=None, panel=None, draws=None) -> "Results":
        """Read a result written by :meth:`save`. ``model``: the model specification it was
        estimated with (the estimates are put into it: ``result.model``); with ``panel`` (and
        ``draws``, default ``Halton(100)``) too, the result has its ``problem`` and works with
        the post-estimation functions."""
        with np.load(path, allow_pickle=False) as archive:
            data = {name: archive[name] for name in archive.files}
        meta = json.loads(str(data["meta"]))
        names = tuple(str(n) for n in data["names"])
        fields = {name: data[name] for name in _ARRAYS}
        fields.update({name: tuple(str(v) for v in data[name]) for name in _STRINGS})
        fields.update({name: meta[name] for name in _JSON})
        fields["status"] = Status[meta["status"]]
        fields["covariances"] = {key[4:]: data[key] for key in data if key.startswith("cov.")}
        fields["_components"] = pd.DataFrame(
            data["components.values"], index=[str(v) for v in data["components.index"]],
            columns=[str(v) for v in data["components.columns"]])
        fields["model"], fields["problem"], fields["draws"] = None, None, draws
        if model is not None:
            space = ParameterSpace.from_model(model, meta["fixed"])
            if space.names != names:
                raise ValueError(f"the model's free parameters {list(space.names)} are not the "
                                 f"saved result's {list(names)}")
            fields["model"] = space.unflatten(np.asarray(fields["estimates"]))
            if panel is not None:
                fields["problem"] = Problem(fields["model"], panel, draws, meta["fixed"])
        return cls(**fields)
