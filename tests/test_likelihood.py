"""The simulated log-likelihood against an independent brute-force NumPy/SciPy implementation.

The reference below is written from the mathematics in the module docstrings only: plain
Python loops over individuals, draws, indicators and tasks, reading the long DataFrame (not the
padded arrays) and the parameters by name (not the model's arrays), with SciPy's ``log_ndtr``,
``log_expit``, ``logsumexp`` and ``quad`` for the probabilities. Nothing from
``jaxiclv._kernels`` is used.

- structural: ``LV_l = sum_c gamma_lc z_c + sum_m b_lm LV_m + exp(log_sigma_l) eta_l``, each
  latent variable after its parents;
- normal indicators: ``y ~ N(alpha + zeta . LV, exp(log_sigma)^2)``;
- ordered indicators: ``P(y = j) = F(tau_j - zeta . LV) - F(tau_{j-1} - zeta . LV)`` with
  ``tau = cumsum([tau1, exp(log_dtau2), ...])``, ``tau_0 = -inf``, ``tau_M = +inf``;
- binary probit: ``P(y = 1) = Phi(V)``; multinomial logit: softmax over available alternatives;
- ``LL_i = log((1/R) sum_r exp(sum of all log terms at draw r))``.
"""

from __future__ import annotations

import itertools
import math
import warnings

import equinox as eqx
import jax
import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.special as sc
from scipy.stats import norm

import jaxiclv as jic

N_INDIVIDUALS, N_DRAWS = 7, 5

# Jitted once per model structure (the model is a pytree argument, so new parameter values do
# not retrace); chunk_size is static.
_loglik_per_individual = jax.jit(jic.loglik_per_individual, static_argnames="chunk_size")
_simulated_loglik = jax.jit(jic.simulated_loglik, static_argnames="chunk_size")


@jax.jit
def _both(model, arrays, draws):
    """``(loglik_per_individual, simulated_loglik)`` in one compilation."""
    return (jic.loglik_per_individual(model, arrays, draws),
            jic.simulated_loglik(model, arrays, draws))


# --------------------------------------------------------------------------------------------
# Model specifications as plain data: the same description builds the jaxiclv model and drives
# the brute-force reference.
# --------------------------------------------------------------------------------------------

# "b" is declared (and drawn) first but depends on "a": evaluation order != declaration order.
STRUCTURAL = dict(covariates={"b": ["z2"], "a": ["z1", "z2"]}, parents={"b": ["a"]})

# (link, {latent: [indicators]}, levels); link "normal" for NormalIndicators.
MEASUREMENT = {
    # y2 loads on both latent variables
    "normal": [("normal", {"a": ["y1", "y2"], "b": ["y3", "y2"]}, None)],
    "oprobit": [("probit", {"a": ["q1", "q2"], "b": ["q3", "q2"]}, 5)],
    "ologit": [("logit", {"a": ["q1", "q2"], "b": ["q3"]}, 4)],
    "mixed": [("logit", {"a": ["q1"], "b": ["q2"]}, 3),
              ("normal", {"b": ["y1", "y2"], "a": ["y2"]}, None)],
}

ALTERNATIVES = ("car", "bus", "rail")
CHOICE = {
    "probit": dict(kind="probit", attributes=["x1", "x2"], latent=["a", "b"],
                   interactions={"x1": ["b"]}),
    "mnl": dict(kind="mnl", alternatives=ALTERNATIVES, attributes=["x1", "x2"],
                latent={"a": ["bus", "rail"], "b": ["rail"]},
                interactions={"x1": ["a"], "x2": ["b"]}),
    None: None,
}


def _indicator_loadings(loads):
    """``{latent: [indicators]}`` -> ``{indicator: [latent variables it loads on]}`` (ordered)."""
    out = {}
    for lv, items in loads.items():
        for item in items:
            out.setdefault(item, []).append(lv)
    return out


def build_model(spec):
    structural = spec["structural"]
    latent = jic.Structural(structural["covariates"], parents=structural["parents"],
                            free_scale=spec.get("free_scale", ()))
    blocks = []
    for link, loads, levels in spec["blocks"]:
        if link == "normal":
            blocks.append(jic.NormalIndicators(loads))
        elif link == "probit":
            blocks.append(jic.OrderedProbit(loads, levels=levels))
        else:
            blocks.append(jic.OrderedLogit(loads, levels=levels))
    c = spec["choice"]
    if c is None:
        choice = None
    elif c["kind"] == "probit":
        choice = jic.BinaryProbit(attributes=c["attributes"], latent=c["latent"],
                                  interactions=c["interactions"])
    else:
        choice = jic.MultinomialLogit(c["alternatives"], attributes=c["attributes"],
                                      latent=c["latent"], interactions=c["interactions"])
    return jic.ICLV(latent, blocks, choice)


def expected_names(spec):
    """Every labelled parameter of the model, from the naming conventions."""
    names = set()
    structural = spec["structural"]
    for lv, covs in structural["covariates"].items():
        names |= {f"{lv}.gamma.{c}" for c in covs} | {f"{lv}.log_sigma"}
    for child, parents in structural["parents"].items():
        names |= {f"{child}.b.{p}" for p in parents}
    for link, loads, levels in spec["blocks"]:
        for item, lvs in _indicator_loadings(loads).items():
            names |= {f"{item}.zeta.{lv}" for lv in lvs}
            if link == "normal":
                names |= {f"{item}.alpha", f"{item}.log_sigma"}
            else:
                names |= {f"{item}.tau1"} | {f"{item}.log_dtau{j}" for j in range(2, levels)}
    c = spec["choice"]
    if c is not None:
        names |= {f"beta.{a}" for a in c["attributes"]}
        names |= {f"kappa.{a}.{lv}" for a, lvs in c["interactions"].items() for lv in lvs}
        if c["kind"] == "probit":
            names |= {"asc"} | {f"theta.{lv}" for lv in c["latent"]}
        else:
            names |= {f"asc.{alt}" for alt in c["alternatives"][1:]}
            names |= {f"theta.{lv}.{alt}" for lv, alts in c["latent"].items() for alt in alts}
    return names


def random_values(spec, rng):
    """Non-trivial values for every labelled parameter (fixed ones at their normalisation)."""
    latent_names = set(spec["structural"]["covariates"])
    values = {}
    for name in sorted(expected_names(spec)):
        head, _, tail = name.partition(".")
        if name.endswith(".log_sigma") and head in latent_names:
            values[name] = 0.35 if head in spec.get("free_scale", ()) else 0.0
        elif name.endswith(".log_sigma"):
            values[name] = rng.uniform(-0.4, 0.3)
        elif ".zeta." in name:
            values[name] = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.4)
        elif name.endswith(".tau1"):
            values[name] = rng.uniform(-1.5, -0.5)
        elif ".log_dtau" in name:
            values[name] = rng.uniform(-0.8, 0.3)
        elif head in latent_names and ".b." in name:  # LV-on-LV path
            values[name] = rng.uniform(0.3, 0.9)
        elif head in ("beta",):
            values[name] = rng.uniform(-1.5, 1.5)
        elif head in ("kappa",):
            values[name] = rng.uniform(-0.8, 0.8)
        else:  # gamma, alpha, asc, theta
            values[name] = rng.uniform(-1.0, 1.0)
    return values


def model_with_values(spec, values):
    """The jaxiclv model at ``values``, after checking that its parameter names (free and
    fixed) are exactly the ones the reference reads."""
    model = build_model(spec)
    space = jic.ParameterSpace.from_model(model)
    assert set(space.names).isdisjoint(space.fixed_names)
    assert set(space.names) | set(space.fixed_names) == expected_names(spec)
    free_scale = spec.get("free_scale", ())
    assert set(space.fixed_names) == {f"{lv}.log_sigma" for lv in spec["structural"]["covariates"]
                                      if lv not in free_scale}
    model = jic.set_values(model, values)
    assert jic.ParameterSpace.from_model(model).values(model) == pytest.approx(values, rel=0, abs=0)
    return model


def ordered_items(spec):
    return [(item, levels) for link, loads, levels in spec["blocks"] if link != "normal"
            for item in _indicator_loadings(loads)]


def all_indicators(spec):
    return [item for _, loads, _ in spec["blocks"] for item in _indicator_loadings(loads)]


def panel_from(spec, df):
    """``Panel.from_dataframe`` for ``spec``, with the covariates and indicators deliberately
    listed in an order other than the model's (the model reads its columns by name)."""
    covariates = sorted({c for cs in spec["structural"]["covariates"].values() for c in cs},
                        reverse=True)
    kwargs = dict(id="id", choice="choice", covariates=covariates,
                  indicators=list(reversed(all_indicators(spec))))
    c = spec["choice"]
    if c is not None and c["kind"] == "probit":
        kwargs["attributes"] = list(reversed(c["attributes"]))
    elif c is not None:
        kwargs["attributes"] = {a: [f"{a}_{alt}" for alt in c["alternatives"]]
                                for a in reversed(c["attributes"])}
        kwargs["alternatives"] = c["alternatives"]
        if "av_" + c["alternatives"][0] in df.columns:
            kwargs["availability"] = [f"av_{alt}" for alt in c["alternatives"]]
    return jic.Panel.from_dataframe(df, **kwargs)


def make_case(measurement, choice, free_scale=(), n_tasks=3, seed=0):
    """(spec, parameter values, model, long DataFrame, Panel) for one combination.

    The data are simulated from the model, then (i) every ordered indicator is overwritten so
    that every level, both open-ended end categories included, occurs, and (ii) for the
    multinomial logit an availability column per alternative makes some non-chosen alternatives
    unavailable (in some tasks all but the chosen one, so that P = 1).
    """
    spec = dict(structural=STRUCTURAL, blocks=MEASUREMENT[measurement], choice=CHOICE[choice],
                free_scale=tuple(free_scale))
    values = random_values(spec, np.random.default_rng(1000 + seed))
    model = model_with_values(spec, values)
    df = jic.simulate(model, N_INDIVIDUALS, n_tasks=n_tasks, seed=seed).data.copy()
    for k, (item, levels) in enumerate(ordered_items(spec)):
        df[item] = ((df["id"] + 2 * k) % levels + 1).astype(float)
    if choice == "mnl":
        alts = list(ALTERNATIVES)
        chosen = df["choice"].map(alts.index).to_numpy()
        available = np.ones((len(df), len(alts)), dtype=int)
        for row, c in enumerate(chosen):
            if row % 3 == 1:
                available[row, (c + 1) % 3] = 0
            elif row % 5 == 2:
                available[row, (c + 1) % 3] = available[row, (c + 2) % 3] = 0
        assert (available == 0).any(axis=0).all()  # every alternative is unavailable somewhere
        for j, alt in enumerate(alts):
            df[f"av_{alt}"] = available[:, j]
    panel = panel_from(spec, df)
    return spec, values, model, df, panel


def draws_for(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, N_DRAWS, d))


# --------------------------------------------------------------------------------------------
# The brute-force reference
# --------------------------------------------------------------------------------------------

_LOG_NORMAL_PDF_0 = -0.5 * math.log(2.0 * math.pi)


def _log_density(link, t):
    if link == "probit":
        return _LOG_NORMAL_PDF_0 - 0.5 * t * t
    t = abs(t)  # logistic density exp(-|t|) / (1 + exp(-|t|))^2
    return -t - 2.0 * math.log1p(math.exp(-t))


def log_interval_prob(link, a, b):
    """``log(F(b) - F(a))`` for the standard normal (``"probit"``) or logistic CDF ``F``, to a
    few ulp for any ``a < b`` (``a`` may be -inf, ``b`` +inf), without cancellation.

    Open intervals: SciPy's ``log_ndtr`` / ``log_expit`` of the finite end (F is symmetric, so
    ``1 - F(a) = F(-a)``). Finite intervals: ``F(b) - F(a)`` is the integral of the density over
    ``[a, b]``, computed by adaptive quadrature of the density divided by its largest value on
    the interval (so that nothing under- or overflows, even 40 standard deviations out).
    """
    assert a < b
    log_cdf = sc.log_ndtr if link == "probit" else sc.log_expit
    if math.isinf(a) and math.isinf(b):
        return 0.0
    if math.isinf(a):
        return float(log_cdf(b))
    if math.isinf(b):
        return float(log_cdf(-a))
    c = min(max(0.0, a), b)  # the density's maximum on [a, b]
    log_scale = _log_density(link, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an IntegrationWarning would mean an inaccurate reference
        integral, error = scipy.integrate.quad(
            lambda t: math.exp(_log_density(link, t) - log_scale), a, b,
            epsabs=0.0, epsrel=1e-13, limit=200)
    assert error <= 1e-13 * integral
    return log_scale + math.log(integral)


def interval_condition(link, a, b):
    """The condition number of ``P = F(b) - F(a)`` for floating-point evaluation:
    ``kappa_x + kappa_F`` with

    - ``kappa_x = (|a| f(a) + |b| f(b)) / P``, the relative condition number with respect to the
      endpoints (rounding ``a``, ``b`` or ``a / sqrt 2`` to float64 moves P by up to ``eps``
      times this);
    - ``kappa_F = F(b') / P`` with ``[a', b']`` the interval reflected into the lower half: the
      amplification of the CDF values' own rounding when P is their difference (1 for an
      open-ended interval).

    Tiny for ordinary intervals; ~1e6 for a 1e-6-wide interval near the centre, ~1e8 for one
    45 standard deviations out.
    """
    log_p = log_interval_prob(link, a, b)
    kappa_x = sum(math.exp(math.log(abs(x)) + _log_density(link, x) - log_p)
                  for x in (a, b) if math.isfinite(x) and x != 0.0)
    if math.isinf(a) or math.isinf(b):
        return kappa_x + 1.0
    if a + b > 0:
        a, b = -b, -a
    log_cdf = sc.log_ndtr if link == "probit" else sc.log_expit
    return kappa_x + math.exp(float(log_cdf(b)) - log_p)


def reference_latent(spec, values, row, eta):
    """The latent variables ``{name: value}`` of one individual at one draw ``eta`` (ordered
    like the structural model's keys), each after its parents (recursion)."""
    covariates = spec["structural"]["covariates"]
    parents = spec["structural"]["parents"]
    names = list(covariates)
    lv = {}

    def value(name):
        if name not in lv:
            x = sum(values[f"{name}.gamma.{c}"] * float(row[c]) for c in covariates[name])
            x += sum(values[f"{name}.b.{p}"] * value(p) for p in parents.get(name, ()))
            x += math.exp(values[f"{name}.log_sigma"]) * float(eta[names.index(name)])
            lv[name] = x
        return lv[name]

    for name in names:
        value(name)
    return lv


def reference_measurement(spec, values, row, lv, conditions=None):
    """``sum_k log f(y_k | LV)``; appends each ordered term's condition number to
    ``conditions`` if given."""
    total = 0.0
    for link, loads, levels in spec["blocks"]:
        for item, lvs in _indicator_loadings(loads).items():
            index = sum(values[f"{item}.zeta.{l}"] * lv[l] for l in lvs)
            y = float(row[item])
            if link == "normal":
                total += float(norm.logpdf(y, loc=values[f"{item}.alpha"] + index,
                                           scale=math.exp(values[f"{item}.log_sigma"])))
            else:
                steps = [values[f"{item}.tau1"]] + [math.exp(values[f"{item}.log_dtau{j}"])
                                                    for j in range(2, levels)]
                edges = [-math.inf, *np.cumsum(steps), math.inf]
                j = int(y)
                assert j == y and 1 <= j <= levels
                a, b = edges[j - 1] - index, edges[j] - index
                total += log_interval_prob(link, a, b)
                if conditions is not None:
                    conditions.append(interval_condition(link, a, b))
    return total


def reference_task(spec, values, row, lv):
    c = spec["choice"]
    if c["kind"] == "probit":
        v = values["asc"]
        for a in c["attributes"]:
            coefficient = values[f"beta.{a}"] + sum(values[f"kappa.{a}.{l}"] * lv[l]
                                                    for l in c["interactions"].get(a, ()))
            v += coefficient * float(row[a])
        v += sum(values[f"theta.{l}"] * lv[l] for l in c["latent"])
        y = int(row["choice"])
        assert y in (0, 1)
        return float(sc.log_ndtr(v if y == 1 else -v))
    utilities, available = [], []
    for alt in c["alternatives"]:
        v = values.get(f"asc.{alt}", 0.0)  # the first alternative has no constant
        for a in c["attributes"]:
            coefficient = values[f"beta.{a}"] + sum(values[f"kappa.{a}.{l}"] * lv[l]
                                                    for l in c["interactions"].get(a, ()))
            v += coefficient * float(row[f"{a}_{alt}"])
        v += sum(values[f"theta.{l}.{alt}"] * lv[l] for l, alts in c["latent"].items()
                 if alt in alts)
        utilities.append(v)
        available.append(bool(row[f"av_{alt}"]) if f"av_{alt}" in row.index else True)
    chosen = list(c["alternatives"]).index(row["choice"])
    assert available[chosen]
    return utilities[chosen] - float(sc.logsumexp([u for u, ok in zip(utilities, available) if ok]))


def reference_loglik(spec, values, df, draws, with_condition=False):
    """``LL_i`` for every individual, in the order of the sorted ids (the panel's order).

    With ``with_condition``, also return per individual ``max_r sum_k kappa_irk``, the summed
    condition numbers (:func:`interval_condition`) of the ordered terms at the worst draw: an
    evaluation of the ordered probabilities good to ``c`` ulp relative to their condition is
    off by at most about ``c eps`` times that in ``LL_i`` (``LL_i``'s error is bounded by that
    of its worst draw, since logsumexp is a weighted mean in log space).
    """
    ids = np.unique(df["id"].to_numpy())
    out = np.empty(len(ids))
    condition = np.zeros(len(ids))
    for i, ident in enumerate(ids):
        rows = df[df["id"] == ident]
        first = rows.iloc[0]
        log_l = np.empty(draws.shape[1])
        for r in range(draws.shape[1]):
            lv = reference_latent(spec, values, first, draws[i, r])
            conditions = []
            total = reference_measurement(spec, values, first, lv, conditions)
            if spec["choice"] is not None:
                for _, row in rows.iterrows():
                    total += reference_task(spec, values, row, lv)
            log_l[r] = total
            condition[i] = max(condition[i], math.fsum(conditions))
        out[i] = float(sc.logsumexp(log_l)) - math.log(draws.shape[1])
    return (out, condition) if with_condition else out


# --------------------------------------------------------------------------------------------
# 1. Every measurement x choice combination against the brute force
# --------------------------------------------------------------------------------------------

CASES = [(m, c, ()) for m, c in itertools.product(MEASUREMENT, CHOICE)]
CASES += [("mixed", "mnl", ("a",)), ("oprobit", "probit", ("b",))]  # free structural scale


@pytest.mark.parametrize(("measurement", "choice", "free_scale"), CASES,
                         ids=[f"{m}-{c}" + ("-free_scale" if f else "") for m, c, f in CASES])
def test_simulated_loglik_matches_brute_force(measurement, choice, free_scale):
    spec, values, model, df, panel = make_case(measurement, choice, free_scale, seed=3)
    assert (np.asarray(panel.ids) == np.unique(df["id"])).all()
    draws = draws_for(N_INDIVIDUALS, 2, seed=7)
    expected = reference_loglik(spec, values, df, draws)
    per_individual, total = map(np.asarray, _both(model, panel.arrays, draws))
    # Both sides are float64 evaluations of the same well-conditioned sums (|LL_i| ~ 3..15,
    # every probability >> 1e-300, no cancellation worse than a digit): they agree to ~1e-14
    # relative; 1e-10 leaves room for platform libm differences but catches any wrong term.
    np.testing.assert_allclose(per_individual, expected, rtol=1e-10, atol=0)
    np.testing.assert_allclose(total, math.fsum(expected), rtol=1e-10, atol=0)
    # the draws matter: the LL is not constant across draws (guards a draws-ignoring bug)
    other = np.asarray(_both(model, panel.arrays, draws[:, ::-1] * 0.5)[0])
    assert np.all(np.abs(other - per_individual) > 1e-6)


# --------------------------------------------------------------------------------------------
# 2. Unbalanced panels: padding is invisible
# --------------------------------------------------------------------------------------------

UNBALANCED_TASKS = [1, 4, 2, 3, 1, 4, 2]


@pytest.mark.parametrize("choice", ["probit", "mnl"])
def test_unbalanced_panel_equals_individuals_alone(choice):
    spec, values, model, df, panel = make_case("mixed", choice, n_tasks=UNBALANCED_TASKS, seed=5)
    assert panel.n_tasks == 4 and panel.n_observations == sum(UNBALANCED_TASKS)
    draws = draws_for(N_INDIVIDUALS, 2, seed=11)
    full = np.asarray(_loglik_per_individual(model, panel.arrays, draws))
    # the brute force does not pad at all
    np.testing.assert_allclose(full, reference_loglik(spec, values, df, draws), rtol=1e-10, atol=0)
    for i, ident in enumerate(panel.ids):
        alone = panel_from(spec, df[df["id"] == ident])
        assert alone.n_tasks == UNBALANCED_TASKS[i]  # no padded slot at all
        single = np.asarray(_loglik_per_individual(model, alone.arrays, draws[i:i + 1]))
        # Same terms, summed with and without padded zeros: equal up to summation-order
        # rounding (~1e-16 relative).
        np.testing.assert_allclose(single[0], full[i], rtol=1e-12, atol=0)


@pytest.mark.parametrize("choice", ["probit", "mnl"])
def test_garbage_in_padded_slots_changes_nothing(choice):
    spec, values, model, df, panel = make_case("mixed", choice, n_tasks=UNBALANCED_TASKS, seed=5)
    draws = draws_for(N_INDIVIDUALS, 2, seed=11)
    arrays = panel.arrays
    padded = ~np.asarray(arrays.task_mask)
    assert padded.sum() == 4 * N_INDIVIDUALS - sum(UNBALANCED_TASKS)
    rng = np.random.default_rng(0)
    n_alt = arrays.available.shape[2]

    def garbage(attributes):
        a = np.array(arrays.attributes)
        a[padded] = attributes
        choice_ = np.array(arrays.choice)
        choice_[padded] = rng.integers(0, max(n_alt, 2), size=padded.sum())
        available = np.array(arrays.available)
        available[padded] = rng.integers(0, 2, size=(padded.sum(), n_alt)).astype(bool)
        return eqx.tree_at(lambda x: (x.attributes, x.choice, x.available), arrays,
                           (jax.numpy.asarray(a), jax.numpy.asarray(choice_),
                            jax.numpy.asarray(available)))

    clean = np.asarray(_loglik_per_individual(model, arrays, draws))
    shape = (padded.sum(),) + arrays.attributes.shape[2:]
    # Utilities of +-1000 in a padded slot would move LL by ~1e3 if they leaked in; NaN would
    # make it NaN. Padded terms are masked out, not merely small: identical to the last bit.
    for junk in (rng.choice([-1e3, 1e3], size=shape), np.full(shape, np.nan)):
        per_individual = np.asarray(_loglik_per_individual(model, garbage(junk), draws))
        np.testing.assert_array_equal(per_individual, clean)

    # The gradient too (moderate garbage, utilities up to ~+-10; see
    # test_binary_probit_gradient_far_in_the_tail for what +-1000 does to the gradient).
    space = jic.ParameterSpace.from_model(model)
    grad = jax.jit(jax.grad(lambda th, x: jic.simulated_loglik(space.unflatten(th), x, draws)))
    theta = space.flatten(model)
    clean_grad = np.asarray(grad(theta, arrays))
    assert np.all(np.isfinite(clean_grad))
    np.testing.assert_array_equal(np.asarray(grad(theta, garbage(rng.uniform(-3, 3, shape)))),
                                  clean_grad)


# --------------------------------------------------------------------------------------------
# 3. Chunked evaluation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 3, 10])
def test_chunked_equals_unchunked(chunk_size):
    # N = 7: chunk_size 3 leaves a remainder of 1; 1 is the extreme, 10 exceeds N.
    spec, values, model, df, panel = make_case("mixed", "mnl", n_tasks=UNBALANCED_TASKS, seed=2)
    draws = draws_for(N_INDIVIDUALS, 2, seed=4)
    whole = np.asarray(_loglik_per_individual(model, panel.arrays, draws))
    chunked = np.asarray(_loglik_per_individual(model, panel.arrays, draws, chunk_size=chunk_size))
    # The same per-individual computation, batched differently: equal up to the compiler's
    # freedom to reassociate (~1e-16 relative).
    assert chunked.shape == (N_INDIVIDUALS,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=0)
    np.testing.assert_allclose(float(_simulated_loglik(model, panel.arrays, draws,
                                                       chunk_size=chunk_size)),
                               whole.sum(), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# 4. Extreme but valid points
# --------------------------------------------------------------------------------------------

ONE_LV = dict(covariates={"a": ["z"]}, parents={})
TINY = math.log(1e-6)


def _extreme_scenarios():
    """name -> (measurement blocks, parameter values); the choice model follows the name."""
    out = {}
    base = {"a.gamma.z": 0.5, "a.log_sigma": 0.0}
    # Thresholds 1e-6 apart near the centre: the probabilities of levels 2 and 3 are ~4e-7,
    # differences of two CDF values near 1/2.
    out["narrow-central-probit"] = (
        [("probit", {"a": ["q1", "q2"]}, 5)],
        {**base, "q1.zeta.a": 0.05, "q1.tau1": -0.2, "q1.log_dtau2": TINY, "q1.log_dtau3": TINY,
         "q1.log_dtau4": math.log(0.5),
         "q2.zeta.a": -0.3, "q2.tau1": 0.4, "q2.log_dtau2": math.log(0.3), "q2.log_dtau3": TINY,
         "q2.log_dtau4": TINY})
    out["narrow-central-logit"] = (
        [("logit", {"a": ["q1", "q2"]}, 4)],
        {**base, "q1.zeta.a": 0.05, "q1.tau1": 0.1, "q1.log_dtau2": TINY, "q1.log_dtau3": 1.0,
         "q2.zeta.a": 0.2, "q2.tau1": -0.5, "q2.log_dtau2": TINY, "q2.log_dtau3": TINY})
    # Narrow intervals 7 standard deviations out (P ~ 1e-17).
    out["narrow-tail-probit"] = (
        [("probit", {"a": ["q1"]}, 5)],
        {**base, "q1.zeta.a": 0.05, "q1.tau1": -7.0, "q1.log_dtau2": TINY, "q1.log_dtau3": 0.0,
         "q1.log_dtau4": 0.0})
    # Loading 20 on LV ~ 1.3 z, z in +-(0.25, 0.75, 1.25, 1.75): indices of about +-6, +-20,
    # +-32 and +-45, so intervals lie on both sides of the far-tail switch at -30 (P down to
    # e^-1000, which underflows unless kept in log space), some of them 1e-6 wide.
    out["far-tail-probit"] = (
        [("probit", {"a": ["q1"]}, 5)],
        {**base, "a.gamma.z": 1.3, "q1.zeta.a": 20.0, "q1.tau1": -1.0, "q1.log_dtau2": TINY,
         "q1.log_dtau3": TINY, "q1.log_dtau4": 0.0})
    out["far-tail-logit"] = (
        [("logit", {"a": ["q1"]}, 4)],
        {**base, "a.gamma.z": 1.3, "q1.zeta.a": 20.0, "q1.tau1": -1.0, "q1.log_dtau2": TINY,
         "q1.log_dtau3": 0.5})
    # Utilities near +-35 (and on both sides of the far-tail switch at -30).
    out["probit-utility-35"] = (
        [("normal", {"a": ["y1"]}, None)],
        {**base, "y1.alpha": 0.1, "y1.zeta.a": 0.8, "y1.log_sigma": -0.2,
         "asc": 0.0, "beta.x": 35.0, "theta.a": 0.01})
    out["mnl-utility-35"] = (
        [("normal", {"a": ["y1"]}, None)],
        {**base, "y1.alpha": 0.1, "y1.zeta.a": 0.8, "y1.log_sigma": -0.2,
         "asc.B": 0.5, "asc.C": -0.5, "beta.x": 35.0, "theta.a.C": 0.01})
    return out


EXTREME = _extreme_scenarios()
# Per-task multipliers of beta.x = 35: utilities of about +-29.99, +-30.01, +-35, +-38, +-1.
EXTREME_X = [29.99 / 35, 30.01 / 35, 1.0, 38.0 / 35, 1.0 / 35]


def _extreme_case(name):
    blocks, values = EXTREME[name]
    if name.startswith("probit"):
        choice = dict(kind="probit", attributes=["x"], latent=["a"], interactions={})
    elif name.startswith("mnl"):
        choice = dict(kind="mnl", alternatives=("A", "B", "C"), attributes=["x"],
                      latent={"a": ["C"]}, interactions={})
    else:
        choice = None
    spec = dict(structural=ONE_LV, blocks=blocks, choice=choice)
    model = model_with_values(spec, values)
    n = 8
    rows = []
    for i in range(n):
        for t, x in enumerate(EXTREME_X):
            sign = 1.0 if (i + t) % 2 else -1.0
            row = {"id": i + 1, "z": (i - 3.5) / 2.0}
            for k, (item, levels) in enumerate(ordered_items(spec)):
                row[item] = float((i + k) % levels + 1)
            if "y1" in all_indicators(spec):
                row["y1"] = 0.3 * i - 1.0
            if choice is None:
                row["choice"] = 0
            elif choice["kind"] == "probit":
                row["x"] = sign * x
                row["choice"] = (i + 2 * t) % 3 % 2  # both the likely and the unlikely side
            else:
                # V = asc + 35 x: A at 0, B at ~+35 x, C at ~-35 x
                row.update({"x_A": 0.0, "x_B": sign * x, "x_C": -sign * x})
                row["choice"] = "ABC"[(i + t) % 3]
                row.update({"av_A": int((i + t) % 4 != 1 or row["choice"] == "A"),
                            "av_B": 1, "av_C": 1})
                if row["choice"] != "B" and (i + t) % 5 == 0:
                    row["av_B"] = 0
            rows.append(row)
    df = pd.DataFrame(rows)
    return spec, values, model, df, panel_from(spec, df)


@pytest.mark.parametrize("name", list(EXTREME))
def test_loglik_at_extreme_points(name):
    spec, values, model, df, panel = _extreme_case(name)
    # small draws, so that the covariate places each individual where the scenario wants it
    draws = 0.05 * draws_for(panel.n_individuals, 1, seed=13)
    expected, condition = reference_loglik(spec, values, df, draws, with_condition=True)
    got = np.asarray(_loglik_per_individual(model, panel.arrays, draws))
    assert np.all(np.isfinite(got))
    assert np.all(np.isfinite(expected))
    if name.startswith(("narrow", "far")):
        assert condition.max() > 1e4  # the scenario does reach the 1e-6-wide intervals
    if name in ("far-tail-probit", "probit-utility-35"):
        assert expected.min() < -745  # exp(LL_i) underflows: only log space gets this right
    # Tolerance: a few ulp of |LL_i| (up to ~2e3 here) for the log-space parts (asymptotic
    # erfcx, log-sigmoid, logsumexp), plus a few ulp times the condition number of the ordered
    # probabilities (see interval_condition): a 1e-6-wide interval is a difference of two CDF
    # values that agree to ~6 digits, and 45 standard deviations out the rounding of the
    # endpoints alone moves P by ~1e-8 relative. No float64 method can do better than eps
    # times the condition number; we allow 4 eps (observed: up to ~1 eps).
    eps = np.finfo(np.float64).eps
    tolerance = 1e-12 * np.abs(expected) + 4 * eps * condition
    assert np.all(np.abs(got - expected) <= tolerance), (got - expected, tolerance)


# Regression: the far-tail branch once evaluated exp(u^2 - v^2) with a dummy v < u where the
# interval is open below; it overflowed for V < -49.4 and the masked inf made the gradient NaN.
def test_binary_probit_gradient_far_in_the_tail():
    # One task with V = -50.05: log Phi(V) is finite and correct, so is its gradient in exact
    # arithmetic, d log Phi(V) / dV = phi(V) / Phi(V) (the inverse Mills ratio, ~50.07).
    model = jic.ICLV(jic.Structural({"a": ["z"]}), jic.NormalIndicators({"a": ["y"]}),
                     jic.BinaryProbit(attributes=["x"], latent=["a"]))
    model = jic.set_values(model, {"a.gamma.z": 0.0, "y.zeta.a": 1.0, "asc": 0.0,
                                   "beta.x": 1.0, "theta.a": 0.1})
    panel = _single_row_panel({"id": 1, "z": 0.0, "y": 0.0, "x": -50.0, "choice": 1},
                              attributes=["x"], indicators=["y"], covariates=["z"])
    eta = -0.5
    v = -50.0 + 0.1 * eta
    mills = math.exp(float(norm.logpdf(v) - sc.log_ndtr(v)))
    space = jic.ParameterSpace.from_model(model)
    assert space.names.index("beta.x") >= 0

    def ll(theta):
        return jic.simulated_loglik(space.unflatten(theta), panel.arrays, np.array([[[eta]]]))

    value, grad = jax.jit(jax.value_and_grad(ll))(space.flatten(model))
    expected = float(sc.log_ndtr(v) + norm.logpdf(0.0, loc=eta))  # + log f(y = 0 | LV = eta)
    assert float(value) == pytest.approx(expected, rel=1e-12, abs=0)  # passes: the value is right
    grad = dict(zip(space.names, np.asarray(grad)))
    # d/d beta.x = x * mills: one analytic expression on each side, a few ulp apart
    assert grad["beta.x"] == pytest.approx(-50.0 * mills, rel=1e-10, abs=0)  # NaN today


# --------------------------------------------------------------------------------------------
# 5. Cases computed by hand
# --------------------------------------------------------------------------------------------

def _single_row_panel(row, **kwargs):
    return jic.Panel.from_dataframe(pd.DataFrame([row]), id="id", choice="choice", **kwargs)


def test_hand_computed_ordered_probit_and_binary_probit():
    latent = jic.Structural({"a": ["z"]})
    model = jic.ICLV(latent, jic.OrderedProbit({"a": ["q"]}, levels=4),
                     jic.BinaryProbit(attributes=["x"], latent=["a"]))
    model = jic.set_values(model, {"a.gamma.z": 0.5, "q.zeta.a": 1.3, "q.tau1": -0.4,
                                   "q.log_dtau2": math.log(1.1), "q.log_dtau3": math.log(0.6),
                                   "asc": 0.2, "beta.x": -0.8, "theta.a": 0.5})
    panel = _single_row_panel({"id": 1, "z": 1.2, "q": 2, "x": 1.5, "choice": 0},
                              attributes=["x"], indicators=["q"], covariates=["z"])
    eta = 0.3
    lv = 0.5 * 1.2 + 1.0 * eta                      # = 0.9
    p_q = norm.cdf(-0.4 + 1.1 - 1.3 * lv) - norm.cdf(-0.4 - 1.3 * lv)  # level 2: (tau1, tau2]
    v = 0.2 - 0.8 * 1.5 + 0.5 * lv                  # = -0.55
    p_choice = norm.cdf(-v)                         # chose 0: P = 1 - Phi(V)
    expected = math.log(p_q) + math.log(p_choice)
    got = float(_simulated_loglik(model, panel.arrays, np.array([[[eta]]])))
    # one well-conditioned evaluation on each side: agreement to a few ulp
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


def test_hand_computed_ordered_logit_top_level_and_mnl_with_unavailable_alternative():
    latent = jic.Structural({"a": ["z"]}, free_scale=["a"])
    model = jic.ICLV(latent, jic.OrderedLogit({"a": ["q"]}, levels=2),
                     jic.MultinomialLogit(["A", "B", "C"], attributes=["x"], latent={"a": ["C"]}))
    model = jic.set_values(model, {"a.gamma.z": -0.7, "a.log_sigma": math.log(2.0),
                                   "q.zeta.a": 0.9, "q.tau1": 0.25, "asc.B": 0.3, "asc.C": -0.4,
                                   "beta.x": 1.1, "theta.a.C": 0.6})
    panel = _single_row_panel(
        {"id": 7, "z": 0.5, "q": 2, "x_A": 9.0, "x_B": 0.2, "x_C": -0.5, "choice": "C",
         "av_A": 0, "av_B": 1, "av_C": 1},
        attributes={"x": ["x_A", "x_B", "x_C"]}, alternatives=["A", "B", "C"],
        availability=["av_A", "av_B", "av_C"], indicators=["q"], covariates=["z"])
    eta = -0.45
    lv = -0.7 * 0.5 + 2.0 * eta                     # free scale: sigma = 2
    p_q = 1.0 - sc.expit(0.25 - 0.9 * lv)           # top level: 1 - F(tau1 - zeta LV)
    v_b = 0.3 + 1.1 * 0.2
    v_c = -0.4 + 1.1 * -0.5 + 0.6 * lv
    p_choice = math.exp(v_c) / (math.exp(v_b) + math.exp(v_c))  # A is unavailable
    expected = math.log(p_q) + math.log(p_choice)
    got = float(_simulated_loglik(model, panel.arrays, np.array([[[eta]]])))
    assert got == pytest.approx(expected, rel=1e-12, abs=0)  # a few ulp, as above


def test_hand_computed_normal_indicator_through_a_latent_path():
    latent = jic.Structural({"a": ["z"], "b": []}, parents={"b": ["a"]})
    model = jic.ICLV(latent, jic.NormalIndicators({"b": ["y"]}))
    model = jic.set_values(model, {"a.gamma.z": 0.8, "b.b.a": -1.5, "y.alpha": 0.4,
                                   "y.zeta.b": 0.9, "y.log_sigma": math.log(0.7)})
    panel = _single_row_panel({"id": 1, "z": -0.6, "y": 2.3, "choice": 0},
                              indicators=["y"], covariates=["z"])
    eta_a, eta_b = 1.1, -0.2
    lv_a = 0.8 * -0.6 + eta_a
    lv_b = -1.5 * lv_a + eta_b
    expected = float(norm.logpdf(2.3, loc=0.4 + 0.9 * lv_b, scale=0.7))
    got = float(_simulated_loglik(model, panel.arrays, np.array([[[eta_a, eta_b]]])))
    assert got == pytest.approx(expected, rel=1e-12, abs=0)  # a few ulp, as above


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 5, 10, 12])
def test_accumulate_over_chunks_equals_one_sum(chunk_size):
    """Blocks of 3 leave a remainder of 1 individual, 5 and 1 none, 10 and 12 mean one block;
    the rows come back in the individuals' order."""
    from jaxiclv._individuals import accumulate_over_chunks
    x = jax.numpy.arange(30.0).reshape(10, 3)
    block = lambda shift, b, eta: ({"sum": b.sum(0), "squares": (eta * eta).sum()},
                                   b[:, ::-1] + shift)
    got, rows = accumulate_over_chunks(block, 1.0, x, -x, chunk_size)
    np.testing.assert_array_equal(got["sum"], np.arange(30.0).reshape(10, 3).sum(0))
    assert float(got["squares"]) == float((np.arange(30.0) ** 2).sum())
    np.testing.assert_array_equal(rows, np.arange(30.0).reshape(10, 3)[:, ::-1] + 1.0)
