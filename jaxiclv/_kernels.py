"""Elementwise log-probability kernels, written for numerical stability and speed.

These are the only places where densities and probabilities are evaluated; the measurement and
choice components call them, and the analytic scores are derived against them.

Normal probabilities use ``Phi(x) = erfc(-x / sqrt 2) / 2`` directly (one ``erfc`` per end,
accurate to full relative precision for ``x <= 0``). ``jax.scipy.special.log_ndtr`` is accurate
too but evaluates ``erf``, ``erfc`` and an asymptotic series for every element, about 7x the
cost of one ``erfc`` on CPU, and it is the inner loop of the likelihood. Below ``x = -25``
the asymptotic expansion of ``erfcx`` takes over, so that ``log Phi`` never underflows.
Derivatives of ``log(Phi(b) - Phi(a))`` are given by a ``custom_jvp`` as density ratios, not
traced through either branch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.nn import log_sigmoid
from jax.scipy.special import erfc, logsumexp

__all__ = ["log1mexp", "normal_logpdf", "log_normal_interval", "log_logistic_interval",
           "ordered_log_prob", "ordered_density_ratio", "binary_probit_log_prob",
           "binary_probit_dlogp", "multinomial_logit_log_prob", "multinomial_logit_dlogp"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_TAIL = -25.0  # Phi(-25) ~ 3e-138: below this the asymptotic branch
# erfcx(u) ~ (1 / (u sqrt(pi))) sum_k c_k / (2 u^2)^k with c_k = (-1)^k (2k - 1)!!; at
# u >= 25 / sqrt(2) the terms fall below 1e-18 relative by k = 9, so the sum stops at k = 8
# (the series' smallest term is near k = u^2, far beyond).
_ERFCX_SERIES = tuple((-1) ** k * math.prod(range(1, 2 * k, 2)) for k in range(9))


def log1mexp(x):
    """``log(1 - exp(x))`` for ``x <= 0`` (Maechler 2012): expm1 near 0, log1p in the tail.
    Each branch gets a harmless argument where it is not used, so that neither branch's
    derivative is infinite there (``log1p(-exp(x))`` has one for ``x`` within eps of 0)."""
    near_zero = x > -math.log(2.0)
    return jnp.where(near_zero, jnp.log(-jnp.expm1(jnp.where(near_zero, x, -1.0))),
                     jnp.log1p(-jnp.exp(jnp.where(near_zero, -1.0, x))))


def normal_logpdf(y, mean, log_sigma):
    """``log N(y | mean, sigma^2)`` with the scale given as ``log sigma``."""
    z = (y - mean) * jnp.exp(-log_sigma)
    return -0.5 * z * z - log_sigma - _HALF_LOG_2PI


def _erfcx_asymptotic(u):
    """``erfcx(u) = exp(u^2) erfc(u)`` for ``u >= 30 / sqrt 2``."""
    inverse = 1.0 / u  # the one division
    r = 0.5 * inverse * inverse
    series = _ERFCX_SERIES[-1]
    for c in reversed(_ERFCX_SERIES[:-1]):
        series = c + r * series
    return series * inverse * (1.0 / math.sqrt(math.pi))


@jax.custom_jvp
def log_normal_interval(lower, upper):
    """``log(Phi(upper) - Phi(lower))`` for ``lower < upper``; ``lower`` may be ``-inf``.

    An interval in the upper half is reflected (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) so
    that ``a < b`` and ``a + b <= 0``. Central branch: ``(erfc(-b/sqrt2) - erfc(-a/sqrt2)) / 2``.
    Far tail (``b < -25``), with ``u = -b/sqrt2``, ``v = -a/sqrt2``:
    ``log P = -u^2 - log 2 + log(erfcx(u) - erfcx(v) exp(u^2 - v^2))``, which never underflows.
    Each branch sees finite dummy arguments where it is not used, and an infinite end never
    reaches ``erfc``.

    Derivatives are not traced through the branches: ``d log P = (phi(b) db - phi(a) da) / P``,
    the density ratios of :func:`ordered_density_ratio`, finite everywhere (0 at an open end).
    Under forward mode this costs two products per element and direction.
    """
    reflect = lower + upper > 0.0
    a = jnp.where(reflect, -upper, lower)
    b = jnp.where(reflect, -lower, upper)
    open_below = jnp.isneginf(a)
    tail = b < _TAIL
    b_central = jnp.where(tail, 0.0, b)
    a_central = jnp.where(tail | open_below, b_central - 1.0, a)
    below_central = jnp.where(open_below, 0.0, erfc(-_SQRT_HALF * a_central))
    central = 0.5 * (erfc(-_SQRT_HALF * b_central) - below_central)  # P
    # far tail: u - v = -(b - a) / sqrt2 from the width itself, which keeps narrow intervals exact
    b_far = jnp.where(tail, b, _TAIL - 1.0)
    width = jnp.where(tail & ~open_below, b - a, 1.0)
    u = -_SQRT_HALF * b_far
    v = u + _SQRT_HALF * width  # v > u, so exp(u^2 - v^2) <= 1
    below = jnp.where(open_below, 0.0, _erfcx_asymptotic(v) * jnp.exp(-_SQRT_HALF * width * (u + v)))
    far = 0.5 * (_erfcx_asymptotic(u) - below)  # P exp(u^2)
    # one log for both branches (a log costs about as much as an erfc)
    return jnp.log(jnp.where(tail, far, central)) - jnp.where(tail, u * u, 0.0)


@log_normal_interval.defjvp
def _log_normal_interval_jvp(primals, tangents):
    lower, upper = primals
    d_lower, d_upper = tangents
    log_p = log_normal_interval(lower, upper)
    return log_p, (ordered_density_ratio("probit", upper, log_p) * d_upper
                   - ordered_density_ratio("probit", lower, log_p) * d_lower)


def log_logistic_interval(lower, upper):
    """``log(F(upper) - F(lower))`` for the logistic CDF ``F``, ``lower < upper``.

    ``F(b) - F(a) = F(b) F(-a) (1 - exp(a - b))``, each factor in log space; ``lower`` may be
    ``-inf`` (then the last two factors are 1).
    """
    open_below = jnp.isneginf(lower)
    a = jnp.where(open_below, upper - 1.0, lower)
    rest = log_sigmoid(-a) + log1mexp(a - upper)
    return log_sigmoid(upper) + jnp.where(open_below, 0.0, rest)


def ordered_log_prob(link: str, lower, upper):
    """``log(F(upper) - F(lower))`` for the ``"probit"`` or ``"logit"`` link; ``lower`` may be
    ``-inf`` and ``upper`` ``+inf`` (the first and last categories)."""
    if link == "logit":
        # F(b) - F(a) with b = +inf equals F(-a) - F(-b): reflect the open-above intervals
        open_above = jnp.isposinf(upper)
        return log_logistic_interval(jnp.where(open_above, -upper, lower),
                                     jnp.where(open_above, -lower, upper))
    return log_normal_interval(lower, upper)


def _log_density(link: str, x):
    """``log f(x)`` of the standard normal or logistic density."""
    if link == "logit":
        return log_sigmoid(x) + log_sigmoid(-x)
    return -0.5 * x * x - _HALF_LOG_2PI


def ordered_density_ratio(link: str, x, log_prob):
    """``f(x) / P`` with ``log P = log_prob``, evaluated as ``exp(log f(x) - log P)``; zero at
    ``x = +-inf`` (an open end of the first or last category), with a finite dummy exponent
    there so that derivatives of this ratio stay finite too.

    With ``P = F(upper) - F(lower)``: ``d log P / d upper = f(upper) / P`` and
    ``d log P / d lower = -f(lower) / P``.
    """
    infinite = jnp.isinf(x)
    # the exponent, not only x, is replaced at an open end: exp(log f(0) - log P) overflows
    # when P is tiny, and 0 * inf in a derivative would be NaN
    log_ratio = jnp.where(infinite, 0.0, _log_density(link, jnp.where(infinite, 0.0, x)) - log_prob)
    return jnp.where(infinite, 0.0, jnp.exp(log_ratio))


def binary_probit_log_prob(utility, chosen):
    """``log Phi(s V)`` with ``s = +1`` if alternative 1 was chosen, ``-1`` if alternative 0."""
    return log_normal_interval(-jnp.inf, jnp.where(chosen == 1, utility, -utility))


def binary_probit_dlogp(utility, chosen, log_prob):
    """``d log Phi(s V) / dV = s phi(V) / Phi(s V)`` (the signed inverse Mills ratio), as
    ``s exp(log phi(V) - log Phi(s V))``: finite and accurate for ``|V|`` far beyond 35."""
    sign = jnp.where(chosen == 1, 1.0, -1.0)
    return sign * jnp.exp(_log_density("probit", utility) - log_prob)


def multinomial_logit_log_prob(utility, chosen, available, axis: int = -1):
    """``V_chosen - log sum_{j available} exp(V_j)`` over the alternatives' ``axis`` of
    ``utility``; ``chosen`` has (or broadcasts to) the shape of ``utility`` without that axis,
    ``available`` broadcasts to ``utility``."""
    is_chosen = jax.nn.one_hot(chosen, utility.shape[axis], dtype=bool, axis=axis)
    utility_chosen = jnp.sum(jnp.where(is_chosen, utility, 0.0), axis=axis)
    return utility_chosen - logsumexp(utility, axis=axis, where=available)


def multinomial_logit_dlogp(utility, chosen, available, axis: int = -1):
    """``d log P(chosen) / dV_j = [j = chosen] - P_j``; unavailable alternatives get 0."""
    log_denominator = logsumexp(utility, axis=axis, where=available, keepdims=True)
    probability = jnp.where(available, jnp.exp(utility - log_denominator), 0.0)
    return jax.nn.one_hot(chosen, utility.shape[axis], dtype=utility.dtype, axis=axis) - probability
