"""Measurement models: indicators (e.g. Likert items) as functions of the latent variables.

A built-in block is a kernel over an *index* ``mu_k`` ``(K, R)``, one per indicator and draw:

- :class:`NormalIndicators`: ``y_k = mu_k + eps_k``, ``eps_k ~ N(0, sigma_k^2)``.
- :class:`OrderedMeasurement` (``OrderedProbit``, ``OrderedLogit``):
  ``P(y_k = j) = F((tau_j - mu_k) / s_k) - F((tau_{j-1} - mu_k) / s_k)`` with
  ``tau_0 = -inf``, ``tau_M = +inf``, ``F`` the standard normal or logistic CDF and the scale
  ``s_k = 1`` unless ``scales=True``.

The index is :class:`LinearIndex`, ``mu_k = alpha_k + zeta_k . LV`` (hand-derived pullback), or
a user-written :class:`IndexEquation` in jax.numpy (pullback by ``jax.vjp``); the kernel's
derivative with respect to the index is hand-derived either way.

Thresholds: the ``M - 1`` thresholds of an item, or of a set of items that share them
(``shared_thresholds=name``), are kept increasing by construction:
``"increasing"`` (default): ``tau = cumsum([tau_1, exp(log_dtau_2), ..., exp(log_dtau_{M-1})])``;
``symmetric=True``: symmetric around 0, ``tau = (-c_m, ..., -c_1, [0,] c_1, ..., c_m)`` with
``c = cumsum(exp(log_delta))`` (for five levels ``(-d1 - d2, -d1, d1, d1 + d2)``).

Normalisation: with the latent variables' scale fixed in the structural model (the default),
every loading is free. Item intercepts ``alpha_k`` and scales ``s_k`` of ordered items are
identified only with shared thresholds (intercepts also with symmetric ones); the first item
of the set then has ``alpha = 0`` (not with symmetric thresholds, which fix the location) and
``log_scale = 0``, fixed.

Every block is a component (:mod:`jaxiclv._component`): data ``(indicator values (K,),
covariates (C,))``, inputs the latent variables it uses ``(L, R)``, output
``sum_k log f(y_k | LV_r)`` ``(R,)``. Per-draw arrays keep the draws on their last axis
(contiguous over draws, so that the elementwise kernels vectorise; with a few indicators or
tasks last, measured 3x slower on CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._component import (AbstractComponent, AbstractEquation, Named, checked_names,
                         labelled_names)
from ._data import DataError
from ._kernels import normal_logpdf, ordered_interval, ordered_log_prob
from ._parameters import replace_fields

__all__ = ["AbstractMeasurement", "AbstractIndex", "LinearIndex", "IndexEquation",
           "NormalIndicators", "OrderedMeasurement", "OrderedProbit", "OrderedLogit", "LINKS"]

LINKS = ("probit", "logit")


def _plain(value):
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def _row_names(label) -> tuple[str, ...]:
    return tuple(str(n) for n in np.ravel(label) if n)


# --------------------------------------------------------------------------------------------
# Indices mu_k (K, R)
# --------------------------------------------------------------------------------------------

class AbstractIndex(AbstractComponent):
    """The index ``mu`` ``(K, R)`` of a block's ``indicators`` from the ``latent`` variables
    ``(L, R)`` and the individual's ``covariates`` ``(C,)``."""

    indicators: eqx.AbstractVar[tuple[str, ...]]
    latent: eqx.AbstractVar[tuple[str, ...]]
    covariates: eqx.AbstractVar[tuple[str, ...]]


class LinearIndex(AbstractIndex):
    """``mu_k = alpha_k + sum_l zeta[k, l] LV_l``; ``loads[k][l]``: indicator ``k`` loads on
    LV ``l``; ``intercept_in[k]``: ``alpha_k`` is a parameter (else a structural zero)."""

    alpha: Float[Array, " K"]
    zeta: Float[Array, "K L"]
    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)
    loads: tuple[tuple[bool, ...], ...] = eqx.field(static=True)
    intercept_in: tuple[bool, ...] = eqx.field(static=True)

    def __init__(self, indicators: Mapping[str, Sequence[str]], intercepts: bool):
        latent = tuple(indicators)
        for lv, items in indicators.items():
            checked_names(items, f"the indicators of {lv!r}", "a measurement block")
        names = tuple(dict.fromkeys(i for items in indicators.values() for i in items))
        if not names:
            raise ValueError("a measurement model needs at least one indicator")
        self.indicators, self.latent, self.covariates = names, latent, ()
        self.loads = tuple(tuple(i in indicators[lv] for lv in latent) for i in names)
        self.intercept_in = (bool(intercepts),) * len(names)
        self.alpha = jnp.zeros(len(names))
        self.zeta = jnp.asarray(np.array(self.loads, dtype=float).reshape(len(names), len(latent)))

    def forward(self, covariates, lv: Float[Array, "L R"]) -> Float[Array, "K R"]:
        index = self.zeta @ lv
        return self.alpha[:, None] + index if any(self.intercept_in) else index

    def vjp(self, covariates, lv):
        def pullback(d_index):  # (K, R)
            d_alpha = d_index.sum(1) if any(self.intercept_in) else jnp.zeros_like(self.alpha)
            return (replace_fields(self, alpha=d_alpha, zeta=d_index @ lv.T),
                    self.zeta.T @ d_index)
        return self.forward(covariates, lv), pullback

    def labels(self):
        return replace_fields(
            self,
            alpha=np.array([f"{i}.alpha" if on else "" for i, on in
                            zip(self.indicators, self.intercept_in)], dtype=object),
            zeta=np.array([[f"{i}.zeta.{lv}" if self.loads[k][l] else ""
                            for l, lv in enumerate(self.latent)]
                           for k, i in enumerate(self.indicators)], dtype=object
                          ).reshape(len(self.indicators), len(self.latent)))

    def parameter_terms(self) -> list[tuple[str, ...]]:
        """One term per indicator: row ``k`` of ``alpha`` and ``zeta``."""
        labels = self.labels()
        return [_row_names(a) + _row_names(z) for a, z in zip(labels.alpha, labels.zeta)]


class IndexEquation(AbstractIndex, AbstractEquation):
    """A user-written index (mean) of a block's indicators.

    ``fn(p, z, lv)`` returns the index of every indicator at one draw: a mapping
    ``{indicator: value}`` or a sequence in the order of ``indicators``; ``p``, ``z`` and
    ``lv`` map the declared parameter, covariate and latent-variable names to scalars. For
    example, a mean nonlinear in two latent variables::

        def mean(p, z, lv):
            return {"y1": p["a1"] + p["z1"] * lv["health"] * jnp.exp(p["c"] * lv["risk"]),
                    "y2": p["a2"] + p["z2"] * lv["health"]}

        NormalIndicators(equation=IndexEquation(mean, {"a1": 0, "z1": 1, "c": 0, "a2": 0,
                         "z2": 1}, indicators=["y1", "y2"], latent=["health", "risk"]))

    The block's parameters form one term for the structured Hessian (a user function does not
    say which parameter enters which indicator).
    """

    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, fn: Callable, parameters: Mapping[str, float], indicators: Sequence[str],
                 latent: Sequence[str] = (), covariates: Sequence[str] = (),
                 fixed: Sequence[str] = (), log_parameters: Sequence[str] = ()):
        self._declare(fn, parameters, fixed, "IndexEquation")
        self.indicators = checked_names(indicators, "indicators", self.owner)
        if not self.indicators:
            raise ValueError(f"{self.owner}: name at least one indicator")
        self.latent = checked_names(latent, "latent variables", self.owner)
        self.covariates = checked_names(covariates, "covariates", self.owner)
        self.log_parameters = self._declared_logs(log_parameters)

    def forward(self, covariates, lv: Float[Array, "L R"]) -> Float[Array, "K R"]:
        z = Named(dict(zip(self.covariates, covariates)), "covariate", self.owner)

        def at_draw(lv_r):  # (L,) -> (K,)
            return self.call(self.indicators, lv.dtype, z,
                             Named(dict(zip(self.latent, lv_r)), "latent variable", self.owner))
        return jax.vmap(at_draw, in_axes=1, out_axes=1)(lv)


def _index(indicators, equation, intercepts: bool, block: str) -> AbstractIndex:
    if equation is None:
        if indicators is None:
            raise TypeError(f"{block} needs `indicators` ({{latent variable: [columns]}}) or "
                            f"an `equation`")
        if not isinstance(indicators, Mapping):
            raise TypeError(f"{block}: indicators must be a mapping {{latent variable: "
                            f"[indicator columns]}}, got {type(indicators).__name__}")
        return LinearIndex(indicators, intercepts)
    if indicators is not None:
        raise TypeError(f"{block}: give `indicators` or an `equation` (which names its "
                        f"indicators), not both")
    if not isinstance(equation, AbstractIndex):
        raise TypeError(f"{block}: equation must be an IndexEquation (or another "
                        f"AbstractIndex), got {type(equation).__name__}")
    return equation


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------

class AbstractMeasurement(AbstractComponent):
    """A block of indicators explained by some latent variables.

    ``indicators`` are the data columns it reads, ``latent`` the latent variables it uses (in
    the order ``forward`` expects them), ``covariates`` any covariates it reads. A user-written
    block needs ``forward((values, covariates), lv)`` returning ``sum_k log f(y_k | LV_r)``
    ``(R,)`` and ``labels()``; its pullback is then ``jax.vjp`` (the default), and
    ``parameter_terms()`` may split its parameters into per-indicator terms for the structured
    Hessian (default: one term).
    """

    indicators: eqx.AbstractVar[tuple[str, ...]]
    latent: eqx.AbstractVar[tuple[str, ...]]
    # True for a block whose forward function drops missing (NaN) indicator values; a block
    # that does not is refused data with missing answers
    drops_missing: ClassVar[bool] = False

    @property
    def covariates(self) -> tuple[str, ...]:
        return ()

    def data(self, x):
        """``(indicator values (K,), covariates (C,))`` of one individual's PanelArrays; a
        missing answer is NaN."""
        return (x.indicator_values(self.indicators),
                x.covariates[x.covariate_columns(self.covariates)])

    def sample(self, rng: np.random.Generator, lv: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        """Indicators ``(N, K)`` simulated at the latent variables ``lv`` ``(N, L)``."""
        raise NotImplementedError(f"{type(self).__name__} cannot simulate its indicators")

    def check_data(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Raise a :class:`DataError` naming the indicator, individual and value if bad
        (``values`` ``(N, K)``, NaN where an answer is missing)."""

    def check_missing_codes(self, codes: Mapping[str, tuple[float, ...]]) -> None:
        """Raise a :class:`DataError` if an indicator's missing code is a value the block
        could explain (``codes``: the panel's codes by indicator)."""


class AbstractKernelMeasurement(AbstractMeasurement):
    """A built-in kernel over an index (:class:`LinearIndex` or a user's
    :class:`IndexEquation`). A missing answer (NaN) adds nothing to the log-likelihood, nor to
    any derivative."""

    index: eqx.AbstractVar[AbstractIndex]
    drops_missing: ClassVar[bool] = True

    @property
    def indicators(self) -> tuple[str, ...]:
        return self.index.indicators

    @property
    def latent(self) -> tuple[str, ...]:
        return self.index.latent

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.index.covariates

    def _index_at(self, lv: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        """The index ``(N, K)`` of ``N`` individuals at one draw each (for simulation)."""
        at = jax.vmap(lambda z, l: self.index.forward(z, l[:, None])[:, 0])
        return np.asarray(at(jnp.asarray(covariates), jnp.asarray(lv)))

    def _kernel_rows(self) -> list[tuple[str, ...]]:
        """The kernel's own parameter names of each indicator's term."""
        labels = self.labels()
        return [tuple(n for leaf in leaves for n in _row_names(leaf))
                for leaves in zip(*self._kernel_label_rows(labels))]

    def _kernel_label_rows(self, labels) -> list:
        """Per kernel parameter array, its labels by indicator (an array with one row per
        indicator)."""
        return []

    def parameter_terms(self) -> list[tuple[str, ...]]:
        """One term per indicator when the index has one (:class:`LinearIndex`), with the
        kernel's parameters of that indicator; else the whole block is one term."""
        index_terms = self.index.parameter_terms()
        rows = self._kernel_rows() or [()] * len(self.indicators)
        if len(index_terms) != len(self.indicators):
            return [tuple(labelled_names(self.labels()))]
        return [tuple(dict.fromkeys(a + b)) for a, b in zip(index_terms, rows)]


class NormalIndicators(AbstractKernelMeasurement):
    """Continuous indicators with normal errors: ``y_k = mu_k + N(0, sigma_k^2)``.

    ``indicators``: ``{latent variable: [indicator columns]}`` for the linear index
    ``mu_k = alpha_k + zeta_k . LV``; or ``equation``: an :class:`IndexEquation`.
    """

    index: AbstractIndex
    log_sigma: Float[Array, " K"]

    def __init__(self, indicators: Mapping[str, Sequence[str]] | None = None, *,
                 equation: AbstractIndex | None = None):
        self.index = _index(indicators, equation, True, "NormalIndicators")
        self.log_sigma = jnp.zeros(len(self.index.indicators))

    def _logpdf(self, values, mean):
        """``log f(y_k | mean_k)`` ``(K, R)``, 0 where ``y_k`` is missing, and the mask of the
        observed ``(K, 1)``."""
        observed = ~jnp.isnan(values)[:, None]
        y = jnp.where(observed, values[:, None], 0.0)  # a finite stand-in where missing
        logpdf = normal_logpdf(y, mean, self.log_sigma[:, None])
        return jnp.where(observed, logpdf, 0.0), observed, y

    def forward(self, data, lv):
        values, covariates = data
        return jnp.sum(self._logpdf(values, self.index.forward(covariates, lv))[0], axis=0)

    def vjp(self, data, lv):
        values, covariates = data
        mean, index_pullback = self.index.vjp(covariates, lv)  # (K, R)
        logpdf, observed, y = self._logpdf(values, mean)
        inverse_sigma = jnp.exp(-self.log_sigma)[:, None]
        z = jnp.where(observed, (y - mean) * inverse_sigma, 0.0)  # (K, R) z-scores, 0 if missing

        def pullback(w):
            # d/d mean_k = z_k / sigma_k;  d/d log sigma_k = z_k^2 - 1 (0 where missing)
            d_mean = w[None, :] * z * inverse_sigma  # (K, R)
            d_index, d_lv = index_pullback(d_mean)
            d_log_sigma = jnp.sum(w[None, :] * jnp.where(observed, z * z - 1.0, 0.0), axis=1)
            return replace_fields(self, index=d_index, log_sigma=d_log_sigma), d_lv
        return jnp.sum(logpdf, axis=0), pullback

    def sample(self, rng, lv, covariates):
        mean = self._index_at(lv, covariates)
        return mean + np.exp(np.asarray(self.log_sigma))[None, :] * rng.standard_normal(mean.shape)

    def labels(self):
        return replace_fields(self, index=self.index.labels(), log_sigma=np.array(
            [f"{i}.log_sigma" for i in self.indicators], dtype=object))

    def _kernel_label_rows(self, labels):
        return [labels.log_sigma]

    def parameter_kinds(self) -> dict[str, str]:
        return {**self.index.parameter_kinds(),
                **dict.fromkeys((f"{i}.log_sigma" for i in self.indicators), "log")}

    def fixed_labels(self) -> tuple[str, ...]:
        return self.index.fixed_labels()


def _symmetric_tail(levels: int) -> int:
    """Free increments ``m`` of symmetric thresholds: ``M - 1 = 2m`` or ``2m + 1``."""
    return (levels - 1) // 2


class OrderedMeasurement(AbstractKernelMeasurement):
    """Ordered-response indicators with ``levels`` categories coded ``1..levels``.

    Parameters
    ----------
    indicators: ``{latent variable: [indicator columns]}`` for the linear index
        ``mu_k = alpha_k + zeta_k . LV`` (``alpha_k`` only with ``intercepts=True``).
    levels: the number of categories M.
    link: ``"probit"`` (standard normal F) or ``"logit"`` (logistic F).
    shared_thresholds: ``None`` (every item has its own thresholds ``{item}.tau1``, ...), or a
        name: one set of thresholds ``{name}.tau1``, ... shared by all the block's items (the
        same name in another block shares them there too).
    symmetric: thresholds symmetric around 0, ``{set}.log_delta1``, ... (see the module
        docstring); needs intercepts to place the items.
    intercepts, scales: item-specific intercepts ``{item}.alpha`` and scales
        ``{item}.log_scale`` (with shared thresholds; the first item's are fixed).
    equation: an :class:`IndexEquation` instead of the linear index.
    """

    index: AbstractIndex
    tau1: Float[Array, " G"]  # per threshold set: its first threshold (increasing form)
    log_increments: Float[Array, "G M2"]  # log_dtau_2.. (increasing) or log_delta_1.. (symmetric)
    log_scale: Float[Array, " K"]
    levels: int = eqx.field(static=True)
    link: str = eqx.field(static=True)
    shared_thresholds: str | None = eqx.field(static=True)
    group_names: tuple[str, ...] = eqx.field(static=True)  # name of each threshold set
    group_of: tuple[int, ...] = eqx.field(static=True)  # threshold set of each indicator
    symmetric: bool = eqx.field(static=True)
    scales: bool = eqx.field(static=True)

    def __init__(self, indicators: Mapping[str, Sequence[str]] | None = None,
                 levels: int = 5, *, link: str = "probit", shared_thresholds: str | None = None,
                 symmetric: bool = False, intercepts: bool = False, scales: bool = False,
                 equation: AbstractIndex | None = None):
        block = f"ordered {link} block"
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        if isinstance(levels, bool) or int(levels) != levels or levels < 2:
            raise ValueError(f"an ordered model needs an integer number of levels >= 2, got {levels!r}")
        if intercepts and equation is not None:
            raise ValueError(f"{block}: intercepts=True applies to the linear index; a user "
                             f"equation writes its own intercepts")
        if intercepts and shared_thresholds is None and not symmetric:
            raise ValueError(f"{block}: item intercepts are not identified with each item's own "
                             f"increasing thresholds (a shift of an item's thresholds equals a "
                             f"shift of its intercept); share the thresholds "
                             f"(shared_thresholds=name) or make them symmetric")
        if scales and shared_thresholds is None:
            raise ValueError(f"{block}: item scales are not identified with each item's own "
                             f"thresholds (scaling an item's thresholds, intercept and loadings "
                             f"together leaves its probabilities unchanged); share the "
                             f"thresholds (shared_thresholds=name)")
        if shared_thresholds is not None and (not isinstance(shared_thresholds, str)
                                              or not shared_thresholds):
            raise TypeError(f"{block}: shared_thresholds must be a name (a non-empty string), "
                            f"got {shared_thresholds!r}")
        self.index = _index(indicators, equation, intercepts, block)
        self.levels, self.link = int(levels), link
        self.symmetric, self.scales = bool(symmetric), bool(scales)
        items = self.index.indicators
        self.shared_thresholds = shared_thresholds
        if shared_thresholds is None:
            self.group_names, self.group_of = items, tuple(range(len(items)))
        else:
            self.group_names, self.group_of = (shared_thresholds,), (0,) * len(items)
        n_groups = len(self.group_names)
        if self.symmetric:
            # start: increments of one, c = (1, 2, ...); tau1 is not used
            self.tau1 = jnp.zeros(n_groups)
            self.log_increments = jnp.zeros((n_groups, _symmetric_tail(self.levels)))
        else:
            # start: thresholds evenly spaced on [-2, 2] (one unit apart at five levels)
            tau = np.linspace(-2.0, 2.0, self.levels - 1) if self.levels > 2 else np.zeros(1)
            self.tau1 = jnp.full(n_groups, tau[0])
            self.log_increments = jnp.asarray(np.tile(np.log(np.diff(tau)), (n_groups, 1))
                                              .reshape(n_groups, self.levels - 2))
        self.log_scale = jnp.zeros(len(items))

    def _thresholds_of(self, tau1: Float[Array, " G"],
                       log_increments: Float[Array, "G M2"]) -> Float[Array, "G M1"]:
        increments = jnp.exp(log_increments)
        if not self.symmetric:
            return jnp.cumsum(jnp.concatenate([tau1[:, None], increments], axis=1), axis=1)
        upper = jnp.cumsum(increments, axis=1)  # (G, m): c_1 < ... < c_m
        middle = [jnp.zeros((tau1.shape[0], 1), tau1.dtype)] if (self.levels - 1) % 2 else []
        return jnp.concatenate([-upper[:, ::-1], *middle, upper], axis=1)

    @property
    def thresholds(self) -> Float[Array, "G M1"]:
        """The increasing thresholds ``tau_1 < ... < tau_{M-1}`` of every threshold set."""
        return self._thresholds_of(self.tau1, self.log_increments)

    @staticmethod
    def _levels(values):
        """Each indicator's level ``(K,)`` (1..M; 1 stands in where missing) and whether it is
        observed."""
        observed = ~jnp.isnan(values)
        return jnp.where(observed, values, 1.0).astype(jnp.int32), observed

    def _edges(self, values, thresholds):
        """Lower and upper thresholds ``(K,)`` of each indicator's observed category; the open
        ends of the first and last categories are -inf and +inf, and a missing answer is the
        whole real line (-inf, +inf): probability 1, every derivative 0."""
        tau = thresholds[np.asarray(self.group_of, dtype=np.int32)]  # (K, M - 1)
        k = tau.shape[0]
        edges = jnp.concatenate([jnp.full((k, 1), -jnp.inf, tau.dtype), tau,
                                 jnp.full((k, 1), jnp.inf, tau.dtype)], axis=1)  # (K, M + 1)
        level, observed = self._levels(values)
        lower = jnp.take_along_axis(edges, (level - 1)[:, None], axis=1)[:, 0]
        upper = jnp.take_along_axis(edges, level[:, None], axis=1)[:, 0]
        return jnp.where(observed, lower, -jnp.inf), jnp.where(observed, upper, jnp.inf)

    def _standardised_ends(self, values, index):
        """``((tau_lower - mu) / s, (tau_upper - mu) / s)`` ``(K, R)`` and ``1 / s`` ``(K, 1)``
        (``None`` without scales)."""
        lower, upper = self._edges(values, self.thresholds)  # (K,)
        if not self.scales:
            return lower[:, None] - index, upper[:, None] - index, None
        inverse_scale = jnp.exp(-self.log_scale)[:, None]

        def standardised(edge):  # an open end stays infinite; no inf * scale in any derivative
            infinite = jnp.isinf(edge)[:, None]
            finite = (jnp.where(infinite, 0.0, edge[:, None]) - index) * inverse_scale
            return jnp.where(infinite, edge[:, None], finite)
        return standardised(lower), standardised(upper), inverse_scale

    def forward(self, data, lv):
        values, covariates = data
        lo, hi, _ = self._standardised_ends(values, self.index.forward(covariates, lv))
        return jnp.sum(ordered_log_prob(self.link, lo, hi), axis=0)

    def vjp(self, data, lv):
        values, covariates = data
        index, index_pullback = self.index.vjp(covariates, lv)  # (K, R)
        lo, hi, inverse_scale = self._standardised_ends(values, index)
        log_p, ratio_lo, ratio_hi = ordered_interval(self.link, lo, hi)  # (K, R) each

        def pullback(w):
            # d log P / d hi = f(hi) / P, d log P / d lo = -f(lo) / P (0 at an open end)
            d_hi = w[None, :] * ratio_hi  # (K, R)
            d_lo = -w[None, :] * ratio_lo
            # hi = (tau_upper - mu) / s: d/d mu = -(d_hi + d_lo) / s, d/d tau_upper = d_hi / s,
            # d/d log s = -(d_hi hi + d_lo lo) (an open end contributes 0)
            if inverse_scale is None:
                d_index, d_upper, d_lower = -(d_hi + d_lo), d_hi.sum(1), d_lo.sum(1)
                d_log_scale = jnp.zeros_like(self.log_scale)
            else:
                d_index = -(d_hi + d_lo) * inverse_scale
                d_upper = d_hi.sum(1) * inverse_scale[:, 0]
                d_lower = d_lo.sum(1) * inverse_scale[:, 0]
                finite = lambda t: jnp.where(jnp.isinf(t), 0.0, t)
                d_log_scale = -jnp.sum(d_hi * finite(hi) + d_lo * finite(lo), axis=1)
            # the observed category's edges are thresholds (level - 1, level) of (K, M + 1);
            # items add up into their threshold set
            level = self._levels(values)[0]  # a missing answer's d_lower = d_upper = 0
            d_edges = (jax.nn.one_hot(level - 1, self.levels + 1, dtype=lv.dtype) * d_lower[:, None]
                       + jax.nn.one_hot(level, self.levels + 1, dtype=lv.dtype) * d_upper[:, None])
            d_thresholds = d_edges[:, 1:-1]  # (K, M - 1)
            if self.shared_thresholds is not None:
                d_thresholds = jnp.sum(d_thresholds, axis=0, keepdims=True)  # (1, M - 1)
            _, threshold_pullback = jax.vjp(self._thresholds_of, self.tau1, self.log_increments)
            d_tau1, d_log_increments = threshold_pullback(d_thresholds)
            d_index_params, d_lv = index_pullback(d_index)
            return replace_fields(self, index=d_index_params, tau1=d_tau1,
                                  log_increments=d_log_increments, log_scale=d_log_scale), d_lv
        return jnp.sum(log_p, axis=0), pullback

    def sample(self, rng, lv, covariates):
        index = self._index_at(lv, covariates)  # (N, K)
        noise = (rng.standard_normal(index.shape) if self.link == "probit"
                 else rng.logistic(size=index.shape))
        latent_response = index + np.exp(np.asarray(self.log_scale))[None, :] * noise
        thresholds = np.asarray(self.thresholds)[np.asarray(self.group_of)]  # (K, M - 1)
        return 1.0 + (latent_response[:, :, None] > thresholds[None, :, :]).sum(axis=2)

    def check_data(self, values, ids):
        bad = ~np.isnan(values) & ((values != np.round(values)) | (values < 1)
                                   | (values > self.levels))
        if bad.any():
            n, k = np.argwhere(bad)[0]
            raise DataError(
                f"indicator {self.indicators[k]!r}, individual {_plain(ids[n])!r}: "
                f"value {_plain(values[n, k])!r} "
                f"is not one of the levels 1..{self.levels} of the ordered {self.link} model")

    def check_missing_codes(self, codes):
        for item in self.indicators:
            levels = [c for c in codes.get(item, ()) if c == round(c) and 1 <= c <= self.levels]
            if levels:
                raise DataError(
                    f"indicator {item!r}: missing code {_plain(levels[0])!r} is also one of the "
                    f"levels 1..{self.levels} of the ordered {self.link} model; a missing "
                    f"answer needs a code outside the levels")

    def _threshold_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels of ``tau1`` ``(G,)`` and ``log_increments`` ``(G, M2)``."""
        groups = self.group_names
        if self.symmetric:
            first = ["" for _ in groups]
            rest = [[f"{g}.log_delta{j}" for j in range(1, _symmetric_tail(self.levels) + 1)]
                    for g in groups]
        else:
            first = [f"{g}.tau1" for g in groups]
            rest = [[f"{g}.log_dtau{j}" for j in range(2, self.levels)] for g in groups]
        return (np.array(first, dtype=object),
                np.array(rest, dtype=object).reshape(self.log_increments.shape))

    def labels(self):
        tau1, log_increments = self._threshold_labels()
        return replace_fields(
            self, index=self.index.labels(), tau1=tau1, log_increments=log_increments,
            log_scale=np.array([f"{i}.log_scale" if self.scales else "" for i in self.indicators],
                               dtype=object))

    def _kernel_label_rows(self, labels):
        of_item = np.asarray(self.group_of)
        return [np.asarray(labels.tau1)[of_item], np.asarray(labels.log_increments)[of_item],
                labels.log_scale]

    def fixed_labels(self) -> tuple[str, ...]:
        """The first item of every shared threshold set: ``alpha`` (with increasing
        thresholds, which carry the location) and ``log_scale``."""
        fixed = [*self.index.fixed_labels()]
        if self.shared_thresholds is None:
            return tuple(fixed)
        first = self.indicators[0]
        if not self.symmetric and f"{first}.alpha" in labelled_names(self.index.labels()):
            fixed.append(f"{first}.alpha")
        if self.scales:
            fixed.append(f"{first}.log_scale")
        return tuple(fixed)

    def parameter_kinds(self) -> dict[str, str]:
        kinds = dict.fromkeys(labelled_names(list(self._threshold_labels())), "threshold")
        if self.scales:
            kinds.update(dict.fromkeys((f"{i}.log_scale" for i in self.indicators), "log"))
        return {**self.index.parameter_kinds(), **kinds}

    def derived_values(self) -> dict[str, jax.Array]:
        """The thresholds ``{set}.tau1 < {set}.tau2 < ...`` of every threshold set."""
        thresholds = self.thresholds
        return {f"{g}.tau{j + 1}": thresholds[k, j] for k, g in enumerate(self.group_names)
                for j in range(self.levels - 1)}

    def set_derived(self, values: Mapping[str, float]) -> "OrderedMeasurement":
        """Set thresholds on their own scale (``{"q1.tau2": -1.0}``): the other thresholds of
        the set keep their values; the result must be increasing (and symmetric around 0 for
        symmetric thresholds)."""
        known = self.derived_values()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KeyError(f"{type(self).__name__} has no thresholds {unknown}")
        thresholds = np.array(self.thresholds, dtype=np.float64)
        for g, name in enumerate(self.group_names):
            for j in range(self.levels - 1):
                thresholds[g, j] = values.get(f"{name}.tau{j + 1}", thresholds[g, j])
        first, increments = [], []
        for name, tau in zip(self.group_names, thresholds):
            if not np.all(np.isfinite(tau)) or np.any(np.diff(tau) <= 0):
                raise ValueError(f"the thresholds of {name!r} must be finite and increasing, "
                                 f"got {tau.tolist()}")
            if self.symmetric:
                if not np.allclose(tau, -tau[::-1], rtol=0, atol=1e-12 * max(np.abs(tau).max(), 1)):
                    raise ValueError(f"the thresholds of {name!r} are symmetric around 0; got "
                                     f"{tau.tolist()}")
                upper = tau[len(tau) - _symmetric_tail(self.levels):]
                first.append(0.0)
                increments.append(np.log(np.diff(np.concatenate([[0.0], upper]))))
            else:
                first.append(tau[0])
                increments.append(np.log(np.diff(tau)))
        dtype = self.tau1.dtype
        return replace_fields(
            self, tau1=jnp.asarray(first, dtype=dtype),
            log_increments=jnp.asarray(np.array(increments).reshape(self.log_increments.shape),
                                       dtype=dtype))


def OrderedProbit(indicators: Mapping[str, Sequence[str]] | None = None, levels: int = 5,
                  **options) -> OrderedMeasurement:
    """:class:`OrderedMeasurement` with the probit link."""
    return OrderedMeasurement(indicators, levels, link="probit", **options)


def OrderedLogit(indicators: Mapping[str, Sequence[str]] | None = None, levels: int = 5,
                 **options) -> OrderedMeasurement:
    """:class:`OrderedMeasurement` with the logit link."""
    return OrderedMeasurement(indicators, levels, link="logit", **options)
