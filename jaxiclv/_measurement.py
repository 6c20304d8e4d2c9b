"""Measurement models: indicators (e.g. Likert items) as functions of the latent variables.

- :class:`NormalIndicators`: ``y_k = alpha_k + zeta_k . LV + eps_k``, ``eps_k ~ N(0, sigma_k^2)``.
- :class:`OrderedProbit` / :class:`OrderedLogit`: ``P(y_k = j) = F(tau_kj - zeta_k . LV)
  - F(tau_k,j-1 - zeta_k . LV)`` with ``tau_k0 = -inf``, ``tau_kM = +inf`` and ``F`` the
  standard normal or logistic CDF. The ``M - 1`` thresholds are kept increasing by storing the
  first one and the logs of the increments: ``tau = cumsum([tau_1, exp(log_dtau_2), ...])``.

Normalisation: with the latent variables' scale fixed in the structural model (the default),
every loading is free. Each indicator loads on the latent variables named for it (usually one).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._data import DataError
from ._kernels import normal_logpdf, ordered_density_ratio, ordered_log_prob
from ._parameters import replace_fields

__all__ = ["AbstractMeasurement", "NormalIndicators", "OrderedProbit", "OrderedLogit"]


def _plain(value):
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def _loading_structure(indicators: Mapping[str, Sequence[str]]):
    """``{latent: [indicators]}`` -> (indicator names, latent names, loading mask (K, L))."""
    latent = tuple(indicators)
    names = tuple(dict.fromkeys(i for items in indicators.values() for i in items))
    if not names:
        raise ValueError("a measurement model needs at least one indicator")
    mask = tuple(tuple(i in indicators[lv] for lv in latent) for i in names)
    return names, latent, mask


def _loading_labels(names, latent, mask) -> np.ndarray:
    return np.array([[f"{i}.zeta.{lv}" if mask[k][l] else "" for l, lv in enumerate(latent)]
                     for k, i in enumerate(names)], dtype=object).reshape(len(names), len(latent))


class AbstractMeasurement(eqx.Module):
    """A block of indicators explained by some latent variables.

    ``indicators`` are the data columns it reads, ``latent`` the latent variables it uses, in
    the order that ``loglik`` expects them. If every parameter array has one row per
    indicator, indicator ``k``'s log-likelihood must depend on row ``k`` only: the structured
    Hessian relies on it (:meth:`ICLV.interaction_groups`). A block with a parameter shared by
    its indicators (an array of another shape) is handled without that assumption.

    Per-draw arrays keep the draws on their last axis (``lv`` is ``(L, R)``, per-indicator
    terms ``(K, R)``): contiguous over draws, so that the elementwise kernels vectorise (with a
    few indicators or tasks last, measured 3x slower on CPU).
    """

    indicators: eqx.AbstractVar[tuple[str, ...]]
    latent: eqx.AbstractVar[tuple[str, ...]]

    @abc.abstractmethod
    def terms(self, values: Float[Array, " K"], lv: Float[Array, "L R"]):
        """``(sum_k log f(y_k | LV_r)`` ``(R,)``, residuals ``(K, R)``) for one individual at
        ``R`` draws; the residuals are what :meth:`loglik_vjp` reuses."""

    def loglik(self, values: Float[Array, " K"], lv: Float[Array, "L R"]) -> Float[Array, " R"]:
        """``sum_k log f(y_k | LV_r)`` for one individual at each of ``R`` draws."""
        return self.terms(values, lv)[0]

    @abc.abstractmethod
    def loglik_vjp(self, values: Float[Array, " K"], lv: Float[Array, "L R"]):
        """Per-draw log-likelihoods ``(R,)`` and their hand-derived pullback: ``vjp(w)`` with
        ``w`` ``(R,)`` returns ``(sum_r w_r d loglik_r / d params`` (a module of the same
        structure as this one), ``w_r d loglik_r / d LV_r`` ``(L, R))``."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, lv: np.ndarray) -> np.ndarray:
        """Indicators ``(N, K)`` simulated at the latent variables ``lv`` ``(N, L)``."""

    @abc.abstractmethod
    def check_data(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Raise a :class:`DataError` naming the indicator, individual and value if bad."""

    @abc.abstractmethod
    def labels(self) -> "AbstractMeasurement": ...

    def fixed_labels(self) -> tuple[str, ...]:
        return ()


class NormalIndicators(AbstractMeasurement):
    """Continuous indicators with normal errors: ``y = alpha + zeta . LV + N(0, sigma^2)``.

    ``indicators``: ``{latent variable: [indicator columns]}``.
    """

    alpha: Float[Array, " K"]
    zeta: Float[Array, "K L"]
    log_sigma: Float[Array, " K"]
    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    loads: tuple[tuple[bool, ...], ...] = eqx.field(static=True)  # (K, L) loading structure

    def __init__(self, indicators: Mapping[str, Sequence[str]]):
        self.indicators, self.latent, self.loads = _loading_structure(indicators)
        self.alpha = jnp.zeros(len(self.indicators))
        self.zeta = jnp.asarray(np.array(self.loads, dtype=float))
        self.log_sigma = jnp.zeros(len(self.indicators))

    def terms(self, values, lv):
        mean = self.alpha[:, None] + self.zeta @ lv  # (K, R)
        log_sigma = self.log_sigma[:, None]
        return (jnp.sum(normal_logpdf(values[:, None], mean, log_sigma), axis=0),
                (values[:, None] - mean) * jnp.exp(-log_sigma))

    def loglik_vjp(self, values, lv):
        loglik, z = self.terms(values, lv)  # (R,), (K, R) z-scores

        def vjp(w):
            # d/d mean_k = z_k / sigma_k;  d/d log sigma_k = z_k^2 - 1
            d_mean = w[None, :] * z * jnp.exp(-self.log_sigma)[:, None]  # (K, R)
            grads = replace_fields(self, alpha=d_mean.sum(1), zeta=d_mean @ lv.T,
                                   log_sigma=jnp.sum(w[None, :] * (z * z - 1.0), axis=1))
            return grads, self.zeta.T @ d_mean
        return loglik, vjp

    def sample(self, rng, lv):
        mean = np.asarray(self.alpha)[None, :] + lv @ np.asarray(self.zeta).T
        return mean + np.exp(np.asarray(self.log_sigma))[None, :] * rng.standard_normal(mean.shape)

    def check_data(self, values, ids):
        pass  # any finite value is valid; finiteness is checked by the Panel

    def labels(self):
        return replace_fields(
            self,
            alpha=np.array([f"{i}.alpha" for i in self.indicators], dtype=object),
            zeta=_loading_labels(self.indicators, self.latent, self.loads),
            log_sigma=np.array([f"{i}.log_sigma" for i in self.indicators], dtype=object))


class AbstractOrdered(AbstractMeasurement):
    """Ordered-response indicators with ``levels`` categories coded ``1..levels``."""

    zeta: eqx.AbstractVar[Float[Array, "K L"]]
    tau1: eqx.AbstractVar[Float[Array, " K"]]
    log_dtau: eqx.AbstractVar[Float[Array, "K M2"]]
    loads: eqx.AbstractVar[tuple[tuple[bool, ...], ...]]
    link: eqx.AbstractClassVar[str]

    @property
    def levels(self) -> int:
        return self.log_dtau.shape[1] + 2

    @property
    def thresholds(self) -> Float[Array, "K M1"]:
        """The increasing thresholds ``tau_1 < ... < tau_{M-1}`` of every indicator."""
        return jnp.cumsum(jnp.concatenate([self.tau1[:, None], jnp.exp(self.log_dtau)], axis=1), axis=1)

    def _edges(self, values):
        """Lower and upper thresholds ``(K,)`` of each indicator's observed category; the open
        ends of the first and last categories are -inf and +inf."""
        k = self.tau1.shape[0]
        edges = jnp.concatenate([jnp.full((k, 1), -jnp.inf), self.thresholds,
                                 jnp.full((k, 1), jnp.inf)], axis=1)  # (K, M + 1)
        level = values.astype(jnp.int32)  # 1..M
        lower = jnp.take_along_axis(edges, (level - 1)[:, None], axis=1)[:, 0]
        upper = jnp.take_along_axis(edges, level[:, None], axis=1)[:, 0]
        return lower, upper

    def terms(self, values, lv):
        lower, upper = self._edges(values)  # (K,)
        index = self.zeta @ lv  # (K, R)
        lo, hi = lower[:, None] - index, upper[:, None] - index
        log_p = ordered_log_prob(self.link, lo, hi)  # (K, R)
        return jnp.sum(log_p, axis=0), (lo, hi, log_p)

    def loglik_vjp(self, values, lv):
        loglik, (lo, hi, log_p) = self.terms(values, lv)  # (R,), (K, R)

        def vjp(w):
            # d log P / d hi = f(hi) / P, d log P / d lo = -f(lo) / P, index enters both as -index
            d_hi = w[None, :] * ordered_density_ratio(self.link, hi, log_p)  # (K, R)
            d_lo = -w[None, :] * ordered_density_ratio(self.link, lo, log_p)
            d_index = -(d_hi + d_lo)  # (K, R)
            # the observed category k's edges are thresholds (level - 1, level) of (K, M + 1)
            levels = self.levels
            level = values.astype(jnp.int32)
            d_edges = (jax.nn.one_hot(level - 1, levels + 1, dtype=lv.dtype) * d_lo.sum(1)[:, None]
                       + jax.nn.one_hot(level, levels + 1, dtype=lv.dtype) * d_hi.sum(1)[:, None])
            d_tau = d_edges[:, 1:-1]  # (K, M - 1)
            # tau_j = tau1 + sum_{m <= j} exp(log_dtau_m): d/d log_dtau_m = exp(.) sum_{j >= m} d_tau_j
            tail_sums = jnp.cumsum(d_tau[:, ::-1], axis=1)[:, ::-1]  # (K, M - 1)
            grads = replace_fields(self, zeta=d_index @ lv.T, tau1=tail_sums[:, 0],
                                   log_dtau=jnp.exp(self.log_dtau) * tail_sums[:, 1:])
            return grads, self.zeta.T @ d_index
        return loglik, vjp

    def sample(self, rng, lv):
        index = lv @ np.asarray(self.zeta).T  # (N, K)
        noise = (rng.standard_normal(index.shape) if self.link == "probit"
                 else rng.logistic(size=index.shape))
        latent_response = index + noise
        thresholds = np.asarray(self.thresholds)
        return 1.0 + (latent_response[:, :, None] > thresholds[None, :, :]).sum(axis=2)

    def check_data(self, values, ids):
        bad = (values != np.round(values)) | (values < 1) | (values > self.levels)
        if bad.any():
            n, k = np.argwhere(bad)[0]
            raise DataError(
                f"indicator {self.indicators[k]!r}, individual {_plain(ids[n])!r}: "
                f"value {_plain(values[n, k])!r} "
                f"is not one of the levels 1..{self.levels} of the ordered {self.link} model")

    def labels(self):
        names = self.indicators
        return replace_fields(
            self,
            zeta=_loading_labels(names, self.latent, self.loads),
            tau1=np.array([f"{i}.tau1" for i in names], dtype=object),
            log_dtau=np.array([[f"{i}.log_dtau{j}" for j in range(2, self.levels)] for i in names],
                              dtype=object).reshape(len(names), self.levels - 2))


def _ordered_init(self, indicators: Mapping[str, Sequence[str]], levels: int):
    if int(levels) != levels or levels < 2:
        raise ValueError(f"an ordered model needs an integer number of levels >= 2, got {levels!r}")
    self.indicators, self.latent, self.loads = _loading_structure(indicators)
    k = len(self.indicators)
    self.zeta = jnp.asarray(np.array(self.loads, dtype=float))
    # start: thresholds evenly spaced on [-2, 2] (one unit apart at five levels)
    start = np.linspace(-2.0, 2.0, levels - 1) if levels > 2 else np.zeros(1)
    self.tau1 = jnp.full(k, start[0])
    self.log_dtau = jnp.tile(jnp.log(jnp.diff(jnp.asarray(start))), (k, 1)).reshape(k, levels - 2)


class OrderedProbit(AbstractOrdered):
    """Ordered probit indicators: ``indicators = {latent variable: [columns]}``, ``levels`` M."""

    zeta: Float[Array, "K L"]
    tau1: Float[Array, " K"]
    log_dtau: Float[Array, "K M2"]
    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    loads: tuple[tuple[bool, ...], ...] = eqx.field(static=True)
    link = "probit"

    __init__ = _ordered_init


class OrderedLogit(AbstractOrdered):
    """Ordered logit indicators: ``indicators = {latent variable: [columns]}``, ``levels`` M."""

    zeta: Float[Array, "K L"]
    tau1: Float[Array, " K"]
    log_dtau: Float[Array, "K M2"]
    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    loads: tuple[tuple[bool, ...], ...] = eqx.field(static=True)
    link = "logit"

    __init__ = _ordered_init
