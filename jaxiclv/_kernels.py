"""Elementwise log-probability kernels, written for numerical stability and speed.

These are the only places where densities and probabilities are evaluated; the measurement and
choice components call them, and the analytic scores are derived against them.

Normal probabilities use ``Phi(x) = erfc(-x / sqrt 2) / 2`` directly (one ``erfc`` per end,
accurate to full relative precision for ``x <= 0``). ``jax.scipy.special.log_ndtr`` is accurate
too but evaluates ``erf``, ``erfc`` and an asymptotic series for every element, about 7x the
cost of one ``erfc`` on CPU, and it is the inner loop of the likelihood. Below a tail point
set per dtype (``x = -25`` in float64, ``-8`` in float32) the asymptotic expansion of ``erfcx``
takes over, so that ``log Phi`` never underflows. The interval kernels return the density
ratios ``f / P`` with ``log P``, computed from the same pieces (no cancellation in the tails);
the hand-derived pullbacks use them, and the probit's ``custom_jvp`` gives them as its
derivatives instead of tracing either branch. Only float32 and float64 are supported
(:func:`check_dtype`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import log_sigmoid
from jax.scipy.special import erfc, logsumexp

__all__ = ["check_dtype", "tail_point", "log1mexp", "normal_logpdf", "normal_interval",
           "log_normal_interval", "logistic_interval", "log_logistic_interval",
           "ordered_interval", "ordered_log_prob", "binary_probit_log_prob",
           "binary_probit_log_prob_and_dlogp", "multinomial_logit_log_prob",
           "multinomial_logit_dlogp", "nested_logit_log_prob", "nested_logit_vjp"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
# Below the tail point the asymptotic branch takes over: in float64 Phi(-25) ~ 3e-138, in
# float32 Phi(-8) ~ 6e-16 (float32's erfc underflows below about -13, and its log Phi was
# -inf there). erfcx(u) ~ (1 / (u sqrt(pi))) sum_k c_k / (2 u^2)^k with c_k = (-1)^k (2k - 1)!!;
# the terms at k = 8 are 1e-19 relative at u = 25 / sqrt(2) and 7e-9 at u = 8 / sqrt(2), below
# each precision, so the sum stops there (the series' smallest term is near k = u^2, beyond).
_TAIL = {64: -25.0, 32: -8.0}
_ERFCX_SERIES = tuple((-1) ** k * math.prod(range(1, 2 * k, 2)) for k in range(9))


def check_dtype(dtype) -> None:
    """Only float32 and float64 are supported: the tail points and tolerances are set for them."""
    if not (jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits in _TAIL):
        raise TypeError(f"dtype must be float64 (the default) or float32, got {jnp.dtype(dtype)}")


def tail_point(dtype) -> float:
    """Where ``log_normal_interval`` switches to its asymptotic branch, for ``dtype``."""
    check_dtype(dtype)
    return _TAIL[jnp.finfo(dtype).bits]


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
    """``erfcx(u) = exp(u^2) erfc(u)`` for ``u >= -tail_point / sqrt 2``."""
    inverse = 1.0 / u  # the one division
    r = 0.5 * inverse * inverse
    series = _ERFCX_SERIES[-1]
    for c in reversed(_ERFCX_SERIES[:-1]):
        series = c + r * series
    return series * inverse * (1.0 / math.sqrt(math.pi))


@jax.custom_jvp
def normal_interval(lower, upper):
    """``(log P, f(lower) / P, f(upper) / P)`` for ``P = Phi(upper) - Phi(lower)``,
    ``lower < upper``; ``lower`` may be ``-inf`` and ``upper`` ``+inf``. The two density ratios
    are the derivatives: ``d log P / d upper = f(upper) / P``, ``d log P / d lower =
    -f(lower) / P`` (zero at an open end).

    An interval in the upper half is reflected (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) so
    that ``a < b`` and ``a + b <= 0``. Central branch: ``P = (erfc(-b/sqrt2) - erfc(-a/sqrt2))
    / 2`` and the ratios ``exp(log f - log P)`` (relative error up to about ``eps x^2``, from
    the rounding of both logs: ``1.4e-13`` in float64 and ``8e-6`` in float32 at the tail
    point). Far tail (``b`` below :func:`tail_point`), with ``u = -b/sqrt2``, ``v = -a/sqrt2``
    and ``E = P exp(u^2) = (erfcx(u) - erfcx(v) exp(u^2 - v^2)) / 2``: ``log P = log E - u^2``,
    which never underflows, and ``f(b) / P = exp(-log sqrt(2 pi) - log E)``, ``f(a) / P =
    exp(u^2 - v^2) f(b) / P``, free of the cancellation of ``log f - log P`` between two
    numbers of size ``u^2`` (which lost every digit of the float32 ratio by ``x = -1e4``); their
    relative error is about ``eps |log E|``, below ``400 eps`` at float64's limit. Each branch
    sees finite dummy arguments where it is not used, and an infinite end never reaches
    ``erfc``.
    """
    tail = tail_point(jnp.result_type(lower, upper))
    reflect = lower + upper > 0.0
    a = jnp.where(reflect, -upper, lower)
    b = jnp.where(reflect, -lower, upper)
    open_below = jnp.isneginf(a)
    in_tail = b < tail
    b_central = jnp.where(in_tail, 0.0, b)
    a_central = jnp.where(in_tail | open_below, b_central - 1.0, a)
    below_central = jnp.where(open_below, 0.0, erfc(-_SQRT_HALF * a_central))
    central = 0.5 * (erfc(-_SQRT_HALF * b_central) - below_central)  # P
    # far tail: u - v = -(b - a) / sqrt2 from the width itself, which keeps narrow intervals exact
    b_far = jnp.where(in_tail, b, tail - 1.0)
    width = jnp.where(in_tail & ~open_below, b - a, 1.0)
    u = -_SQRT_HALF * b_far
    v = u + _SQRT_HALF * width  # v > u, so exp(u^2 - v^2) <= 1
    decay = jnp.where(open_below, 0.0, jnp.exp(-_SQRT_HALF * width * (u + v)))  # exp(u^2 - v^2)
    far = 0.5 * (_erfcx_asymptotic(u) - _erfcx_asymptotic(v) * decay)  # E = P exp(u^2)
    # one log for both branches (a log costs about as much as an erfc)
    log_selected = jnp.log(jnp.where(in_tail, far, central))
    log_p = log_selected - jnp.where(in_tail, u * u, 0.0)
    # r = f(x) / P = exp(log f(x) - log P): in the tail u^2 = b^2 / 2 cancels exactly, leaving
    # r_b = exp(-log sqrt(2 pi) - log E) and r_a = exp(u^2 - v^2) r_b; one exp per end for
    # both branches, and no cancellation between numbers of size u^2
    log_density_b = jnp.where(in_tail, 0.0, -0.5 * b_central * b_central) - _HALF_LOG_2PI
    log_density_a = jnp.where(in_tail, -_SQRT_HALF * width * (u + v),
                              -0.5 * a_central * a_central) - _HALF_LOG_2PI
    ratio_b = jnp.exp(log_density_b - log_selected)
    ratio_a = jnp.where(open_below, 0.0, jnp.exp(log_density_a - log_selected))
    return log_p, jnp.where(reflect, ratio_b, ratio_a), jnp.where(reflect, ratio_a, ratio_b)


@normal_interval.defjvp
def _normal_interval_jvp(primals, tangents):
    """Derivatives from the ratios ``r = f(x) / P`` (with ``f'(x) = -x f(x)``), not traced
    through either branch: ``d log P = r_upper d upper - r_lower d lower`` and ``d r = r (-x dx
    - d log P)`` at each end (``x dx`` is 0 at an open end, where ``r = 0``). Under forward
    mode (the Hessians) this costs a few products per element and direction. The second
    derivatives ``-(x + r) r`` keep the rounding of ``x + r``, which cancels in the far tail
    (``r ~ -x``): relative error up to about ``6 eps x^2`` there (float64: 1e-12 at ``x = -25``,
    1e-7 at ``-1e4``; float32: 5e-5 at ``-8``, 1e-2 at ``-100``), as before the ratios were
    exact; they stay finite. (A stable ``x + r`` from the tail series, referenced by the
    tangents, made the structured Hessian 25-35 % slower at the reference model, measured, so
    it is not used.)"""
    lower, upper = primals
    d_lower, d_upper = tangents
    log_p, ratio_lower, ratio_upper = normal_interval(lower, upper)
    finite = lambda x: jnp.where(jnp.isinf(x), 0.0, x)
    d_log_p = ratio_upper * d_upper - ratio_lower * d_lower
    return (log_p, ratio_lower, ratio_upper), (
        d_log_p,
        ratio_lower * (-finite(lower) * d_lower - d_log_p),
        ratio_upper * (-finite(upper) * d_upper - d_log_p))


def log_normal_interval(lower, upper):
    """``log(Phi(upper) - Phi(lower))`` for ``lower < upper`` (see :func:`normal_interval`,
    whose JVP gives its derivatives as density ratios)."""
    return normal_interval(lower, upper)[0]


def logistic_interval(lower, upper):
    """``(log P, f(lower) / P, f(upper) / P)`` for ``P = F(upper) - F(lower)`` of the logistic
    CDF ``F``, ``lower < upper``; ``lower`` may be ``-inf``.

    ``P = F(b) F(-a) (1 - exp(a - b))``, each factor in log space (with ``lower = -inf`` the
    last two are 1). The ratios come from the same factors, ``f(b) / P = F(-b) / (F(-a) (1 -
    exp(a - b)))`` and ``f(a) / P = F(a) / (F(b) (1 - exp(a - b)))``, with no cancellation.
    """
    open_below = jnp.isneginf(lower)
    a = jnp.where(open_below, 0.0, lower)  # finite dummies where unused, for finite derivatives
    gap = log1mexp(jnp.where(open_below, -1.0, a - upper))  # log(1 - exp(a - b))
    rest = jnp.where(open_below, 0.0, log_sigmoid(-a) + gap)
    log_upper = log_sigmoid(upper)
    ratio_lower = jnp.where(open_below, 0.0, jnp.exp(log_sigmoid(a) - log_upper - gap))
    return log_upper + rest, ratio_lower, jnp.exp(log_sigmoid(-upper) - rest)


def log_logistic_interval(lower, upper):
    """``log(F(upper) - F(lower))`` for the logistic CDF (see :func:`logistic_interval`)."""
    return logistic_interval(lower, upper)[0]


def ordered_interval(link: str, lower, upper):
    """``(log P, f(lower) / P, f(upper) / P)`` with ``P = F(upper) - F(lower)`` for the
    ``"probit"`` or ``"logit"`` link; ``lower`` may be ``-inf`` and ``upper`` ``+inf`` (the
    first and last categories). ``d log P / d upper = f(upper) / P`` and ``d log P / d lower
    = -f(lower) / P`` (zero at an open end)."""
    if link == "probit":
        return normal_interval(lower, upper)
    # F(b) - F(a) with b = +inf equals F(-a) - F(-b): reflect the open-above intervals (the
    # density is symmetric, so the ratios swap ends)
    open_above = jnp.isposinf(upper)
    log_p, ratio_a, ratio_b = logistic_interval(jnp.where(open_above, -upper, lower),
                                                jnp.where(open_above, -lower, upper))
    return log_p, jnp.where(open_above, ratio_b, ratio_a), jnp.where(open_above, ratio_a, ratio_b)


def ordered_log_prob(link: str, lower, upper):
    """``log(F(upper) - F(lower))`` (see :func:`ordered_interval`); the probit's derivatives
    are the density ratios (a custom JVP), the logit's traced."""
    if link == "probit":
        return log_normal_interval(lower, upper)
    return ordered_interval(link, lower, upper)[0]


def binary_probit_log_prob(utility, chosen):
    """``log Phi(s V)`` with ``s = +1`` if alternative 1 was chosen, ``-1`` if alternative 0."""
    return log_normal_interval(-jnp.inf, jnp.where(chosen == 1, utility, -utility))


def binary_probit_log_prob_and_dlogp(utility, chosen):
    """``(log Phi(s V), s phi(V) / Phi(s V))``: the log-probability and its derivative in
    ``V`` (the signed inverse Mills ratio), finite and accurate to each dtype's limit."""
    sign = jnp.where(chosen == 1, 1.0, -1.0)
    log_p, _, ratio = normal_interval(-jnp.inf, sign * utility)
    return log_p, sign * ratio


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


def _nested_logit_parts(utility, chosen, available, log_lambda, nest_of):
    """The pieces of the nested logit over ``utility`` ``(T, J, R)`` (alternatives on axis 1,
    draws last), ``chosen`` ``(T,)``, ``available`` ``(T, J)``, the nests' ``log_lambda``
    ``(M,)`` and ``nest_of`` ``(J,)`` (numpy, each alternative's nest): ``log P(chosen)``
    ``(T, R)``, ``lambda`` ``(M,)``, ``u = V / lambda`` ``(T, J, R)``, the nests' inclusive
    values ``I_m = log sum_{j in m, available} exp(u_j)`` ``(T, M, R)``, ``D = log sum_m
    exp(lambda_m I_m)`` ``(T, R)`` over the nests with an available alternative, that mask
    ``(T, M)``, the membership ``(M, J)``, the chosen nest ``(T,)`` and ``u_chosen`` ``(T, R)``.
    A nest with no available alternative in a task gets the inclusive value of its
    unavailable members (finite, so that no derivative is NaN) and is left out of ``D``."""
    nest_of = np.asarray(nest_of)
    member = np.arange(log_lambda.shape[0])[:, None] == nest_of[None, :]  # (M, J)
    lam = jnp.exp(log_lambda)  # (M,)
    u = utility / lam[nest_of][None, :, None]  # (T, J, R)
    in_nest = available[:, None, :] & member[None]  # (T, M, J)
    nest_available = in_nest.any(axis=2)  # (T, M)
    inner = in_nest | (~nest_available[:, :, None] & member[None])
    inclusive = logsumexp(u[:, None], axis=2, where=inner[..., None])  # (T, M, R)
    outer = logsumexp(lam[None, :, None] * inclusive, axis=1,
                      where=nest_available[..., None])  # (T, R)
    nest = jnp.asarray(nest_of)[chosen]  # (T,)
    u_chosen = jnp.take_along_axis(u, chosen[:, None, None], axis=1)[:, 0]  # (T, R)
    inclusive_chosen = jnp.take_along_axis(inclusive, nest[:, None, None], axis=1)[:, 0]
    log_p = u_chosen + (lam[nest][:, None] - 1.0) * inclusive_chosen - outer
    return log_p, lam, u, inclusive, outer, nest_available, member, nest, u_chosen


def nested_logit_log_prob(utility, chosen, available, log_lambda, nest_of):
    """``log P(chosen)`` ``(T, R)`` of the nested logit: with ``lambda_m`` the log-sum
    parameter of nest ``m`` (``exp(log_lambda)``, 1 is the multinomial logit) and ``m`` the
    chosen alternative's nest, ``log P(c) = V_c / lambda_m - I_m + lambda_m I_m - log sum_k
    exp(lambda_k I_k)``, ``I_k = log sum_{j in k, available} exp(V_j / lambda_k)`` (see
    :func:`_nested_logit_parts` for the shapes)."""
    return _nested_logit_parts(utility, chosen, available, log_lambda, nest_of)[0]


def nested_logit_vjp(utility, chosen, available, log_lambda, nest_of):
    """``(log P (T, R), pullback)``: ``pullback(g)`` with ``g`` ``(T, R)`` gives ``(d utility
    (T, J, R), d log_lambda (M,))``. With ``P_{j|m} = exp(u_j - I_m)``, ``Q_m = exp(lambda_m
    I_m - D)``, ``P_j = Q_m P_{j|m}`` and ``c`` chosen in nest ``n``:
    ``d log P / d V_j = [j = c] / lambda_n + [j in n] (lambda_n - 1) / lambda_n P_{j|n} - P_j``
    and, with the nest's entropy ``H_m = I_m - ubar_m``, ``ubar_m = sum_{j in m} P_{j|m} u_j``,
    ``d log P / d log lambda_m = [m = n] (ubar_n - u_c + lambda_n H_n) - Q_m lambda_m H_m``."""
    nest_of = np.asarray(nest_of)
    log_p, lam, u, inclusive, outer, nest_available, member, nest, u_chosen = (
        _nested_logit_parts(utility, chosen, available, log_lambda, nest_of))
    n_nests, n_alternatives = lam.shape[0], utility.shape[1]
    conditional = jnp.where(available[:, :, None], jnp.exp(u - inclusive[:, nest_of]), 0.0)
    nest_share = jnp.where(nest_available[..., None],
                           jnp.exp(lam[None, :, None] * inclusive - outer[:, None]), 0.0)
    mean_u = jnp.einsum("mj,tjr->tmr", jnp.asarray(member, utility.dtype),
                        conditional * u)  # (T, M, R)
    entropy = inclusive - mean_u  # (T, M, R), >= 0
    lam_j = lam[nest_of][None, :, None]
    is_chosen = jax.nn.one_hot(chosen, n_alternatives, dtype=utility.dtype)[..., None]
    in_chosen_nest = (nest_of[None, :] == nest[:, None])[..., None]  # (T, J, 1)
    d_v = (is_chosen / lam_j + jnp.where(in_chosen_nest, (lam_j - 1.0) / lam_j * conditional, 0.0)
           - nest_share[:, nest_of] * conditional)  # (T, J, R)
    is_chosen_nest = jax.nn.one_hot(nest, n_nests, dtype=utility.dtype)[..., None]  # (T, M, 1)
    lam_m = lam[None, :, None]
    d_log_lambda = (is_chosen_nest * (mean_u - u_chosen[:, None] + lam_m * entropy)
                    - nest_share * lam_m * entropy)  # (T, M, R)

    def pullback(g):  # (T, R)
        return g[:, None, :] * d_v, jnp.einsum("tr,tmr->m", g, d_log_lambda)
    return log_p, pullback
