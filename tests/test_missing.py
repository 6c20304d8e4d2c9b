"""Missing indicator values (``missing_indicators="drop"``): a respondent's unanswered item is
dropped from their measurement likelihood. The log-likelihood equals that of models with the
item removed by hand for those people; the gradients and every Hessian method equal autodiff's
at random and extreme points (with the nested logit and the random terms of
``test_nested`` and ``test_mixed`` and sampling weights in the same model), and so does
``Problem.second_order``'s one program the separate calls; the kernels stay finite on the whole
real line; bad input is a clear error."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxiclv as jic
from helpers import (N_DRAWS, check_gradients, check_second_order, problems_for, random_values,
                     simulated_frame, with_random_values)
from jaxiclv._kernels import normal_interval, ordered_interval

N, TASKS = 14, 2
ITEMS = {"q": ("q1", "q2", "q3"), "r": ("r1", "r2"), "y": ("y1", "y2")}
CODES = {"q2": [9], "y1": [-99.0]}
# who misses what: individual position -> items (NaN, or the item's missing code)
MISSING = {0: ["q1"], 1: ["q1"], 2: ["q2", "r2"], 3: ["y1", "q1", "r2"], 4: ["q3", "y2"],
           5: ["q2", "r2"]}


def model(drop=(), choice=None):
    """Ordered probit items, ordered logit items with shared thresholds, intercepts and scales,
    normal indicators and a logit (or ``choice``); ``drop``: items removed by hand."""
    keep = {k: [i for i in items if i not in drop] for k, items in ITEMS.items()}
    q_a = [i for i in keep["q"] if i != "q3"]
    return jic.ICLV(
        jic.Structural({"a": ["z1"], "b": []}, parents={"b": ["a"]}),
        (jic.OrderedProbit({"a": q_a, "b": [i for i in keep["q"] if i == "q3"]}, levels=4),
         jic.OrderedLogit({"b": keep["r"]}, levels=3, shared_thresholds="r", intercepts=True,
                          scales=True),
         jic.NormalIndicators({"a": keep["y"]})),
        choice or jic.MultinomialLogit(["u", "v", "w"], attributes=["cost"],
                                       latent={"a": ["v"], "b": ["w"]}))


def every_feature():
    """:func:`model` with a nested logit with a random (negative lognormal) cost coefficient and
    an error component: every kernel and random term of issue 13 in one model, so that one
    compilation checks their whole-model derivatives together."""
    return model(choice=jic.NestedLogit(
        ["u", "v", "w"], {"u": ["u"], "vw": ["v", "w"]}, attributes=["cost"],
        latent={"a": ["v"], "b": ["w"]}, random={"cost": "-lognormal"},
        error_components={"uv": ["u", "v"]}))


def frame(seed=3):
    df = simulated_frame(with_random_values(model(), np.random.default_rng(seed)), N, TASKS, seed)
    ids = df["id"].unique()
    for n, items in MISSING.items():
        for item in items:
            df.loc[df["id"] == ids[n], item] = CODES.get(item, [np.nan])[0]
    return df


def panel_of(df, drop=(), **kwargs):
    return jic.Panel.from_dataframe(
        df, id="id", choice="choice", covariates=["z1"],
        indicators=[i for items in ITEMS.values() for i in items if i not in drop],
        attributes={"cost": ["cost_u", "cost_v", "cost_w"]}, alternatives=["u", "v", "w"],
        **kwargs)


def dropping(df, **kwargs):
    return panel_of(df, missing_indicators="drop", missing_codes=CODES, **kwargs)


def test_loglik_equals_the_model_with_the_missing_items_removed_by_hand():
    df = frame()
    panel = dropping(df)
    full = with_random_values(model(), np.random.default_rng(5))
    draws = jnp.asarray(jic.make_draws(jic.Halton(N_DRAWS, seed=1), N, full.n_draw_dims))
    per_individual = jax.jit(jic.loglik_per_individual)
    got = np.asarray(per_individual(full, panel.arrays, draws))
    values = jic.ParameterSpace.from_model(full).values(full)
    expected = np.empty(N)
    patterns = {}
    for n in range(N):
        patterns.setdefault(tuple(sorted(MISSING.get(n, ()))), []).append(n)
    patterns = {drop: np.array(who) for drop, who in patterns.items()}
    # every pattern, and people who answered everything
    assert len(patterns) == len({tuple(sorted(v)) for v in MISSING.values()}) + 1
    for drop, who in patterns.items():
        reduced = model(drop)
        space = jic.ParameterSpace.from_model(reduced)
        reduced = jic.set_values(reduced, {k: values[k] for k in space.names})
        rows = df[df["id"].isin(panel.ids[who])]
        sub = panel_of(rows, drop)
        assert list(sub.ids) == list(panel.ids[who])
        expected[who] = np.asarray(per_individual(reduced, sub.arrays, draws[who]))
    # the same terms added in another order: a few ulp
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    # the counts, by item
    counts = panel.missing_counts
    assert counts.to_dict() == {"q1": 3, "q2": 2, "q3": 1, "r1": 0, "r2": 3, "y1": 1, "y2": 1}


def test_gradients_and_every_hessian_of_every_feature_match_autodiff():
    """Missing answers (ordered probit and logit, normal), a nested logit, a random lognormal
    coefficient, an error component and sampling weights in one model: the analytic gradient
    and scores against autodiff and central differences, every Hessian method against
    ``jax.hessian``, and ``second_order`` against the separate calls, at a random point and at
    one four times as far from 0 (loadings and utilities of +-10, thresholds in the tails,
    lambda down to 0.01, lognormal coefficients of exp(+-8): the draw weights nearly
    one-hot)."""
    spec = every_feature()
    assert spec.n_draw_dims == 4  # a, b, then the cost coefficient and the error component
    df = frame()
    df["w"] = 0.5 + df["id"].rank(method="dense") % 4  # 0.5, 1.5, 2.5, 3.5 by individual
    problems = problems_for(spec, dropping(df, weights="w"))
    an = problems["analytic"]
    plain = jax.jit(jax.hessian(lambda t: jic.simulated_loglik(
        an.space.unflatten(t), an.data, an.draws)))
    rng = np.random.default_rng(1)
    for scale in (1.0, 4.0):
        theta = jnp.asarray(scale * random_values(an.space.names, spec.latent.names, rng))
        check_gradients(problems, theta, f"every feature, scale {scale}",
                        finite_differences=scale == 1.0)
        expected = np.asarray(plain(theta))
        assert np.all(np.isfinite(expected))
        for method in jic.HESSIANS:
            got = np.asarray(an.hessian(theta, method))
            assert np.all(np.isfinite(got)), method
            # exact methods: sums of N R terms two ways (1e-10 of the largest entry, as in
            # test_gradients); differences: their step rules' bounds (test_hessian's BOUND),
            # whose truncation grows with the step (h ~ |theta|) and the third derivatives:
            # scale^2 times them far out
            bound = {"fd-forward": 1.5e-6 * scale ** 2,
                     "fd-central": 4e-9 * scale ** 2}.get(method, 1e-10)
            np.testing.assert_allclose(got, expected, rtol=0,
                                       atol=bound * np.abs(expected).max(),
                                       err_msg=f"{method}, scale {scale}")
        check_second_order(an, theta, f"every feature, scale {scale}")


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_the_whole_real_line_has_probability_one_and_finite_derivatives(link):
    """A missing ordered answer is the interval (-inf, +inf): log P = 0, both density ratios
    0, and first and second derivatives 0 (not NaN), in float64 and float32."""
    for dtype in (jnp.float64, jnp.float32):
        lower = jnp.full(3, -jnp.inf, dtype)
        upper = jnp.full(3, jnp.inf, dtype)
        out = ordered_interval(link, lower, upper)
        for value in out:
            assert value.dtype == dtype
            np.testing.assert_array_equal(value, 0.0)
        shift = jnp.asarray([0.0, 3.0, -40.0], dtype)  # the ends move with an index

        def log_p(mu):
            return jnp.sum(ordered_interval(link, lower - mu, upper - mu)[0])
        np.testing.assert_array_equal(jax.jit(jax.grad(log_p))(shift), 0.0)
        np.testing.assert_array_equal(jax.jit(jax.hessian(log_p))(shift), 0.0)
    assert normal_interval(-jnp.inf, jnp.inf) == (0.0, 0.0, 0.0)


def test_estimate_reports_the_missing_answers():
    spec = jic.ICLV(jic.Structural({"a": ["z1"]}),
                    jic.OrderedProbit({"a": ["q1", "q2", "q3"]}, levels=4),
                    jic.MultinomialLogit(["u", "v", "w"], attributes=["cost"],
                                         latent={"a": ["v"]}))
    df = frame()
    panel = jic.Panel.from_dataframe(
        df, id="id", choice="choice", covariates=["z1"], indicators=["q1", "q2", "q3", "y1"],
        attributes={"cost": ["cost_u", "cost_v", "cost_w"]}, alternatives=["u", "v", "w"],
        missing_indicators="drop", missing_codes={"q2": [9], "y1": [-99]})
    with warnings.catch_warnings():  # three iterations: not a maximum, NaN SEs, a warning
        warnings.simplefilter("ignore")
        result = jic.estimate(spec, panel, jic.Halton(N_DRAWS), max_iter=3)
    # only the model's indicators (y1 is in the panel, not in the model)
    assert result.missing_answers == {"q1": 3, "q2": 2, "q3": 1}
    assert re.search(r"\nmissing answers \(dropped\) +q1 3, q2 2, q3 1\n", result.summary())
    assert np.isfinite(result.llf)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def test_by_default_a_missing_answer_is_an_error_that_names_the_switch():
    with pytest.raises(jic.DataError, match=r"indicator column 'q1' holds a missing .*value: "
                                            r"column 'q1', individual .*missing_indicators='drop'"):
        panel_of(frame())


def test_missing_codes_are_used_only_when_dropping():
    df = frame()
    panel = dropping(df)
    # without the codes, 9 and -99 are values: 9 is not a level of q2 (an error), -99 a y1 value
    no_codes = panel_of(df, missing_indicators="drop")
    assert no_codes.missing_counts["q2"] == 0 and no_codes.missing_counts["y1"] == 0
    with pytest.raises(jic.DataError, match="indicator 'q2'.* value 9.0 is not one of the levels"):
        model().check_data(no_codes)
    model().check_data(panel)
    with pytest.raises(ValueError, match="missing_codes apply with missing_indicators='drop'"):
        panel_of(df, missing_codes=[9])
    with pytest.raises(ValueError, match="missing_indicators must be 'error' or 'drop'"):
        panel_of(df, missing_indicators="impute")
    with pytest.raises(jic.DataError, match=r"missing_codes name columns that are not "
                                            r"indicators: \['q9'\]"):
        panel_of(df, missing_indicators="drop", missing_codes={"q9": [9]})
    with pytest.raises(jic.DataError, match="missing code 'x' of indicator 'q1' is not a "
                                            "finite number"):
        panel_of(df, missing_indicators="drop", missing_codes=["x"])
    # a list applies to every indicator
    both = panel_of(df, missing_indicators="drop", missing_codes=[9, -99])
    np.testing.assert_array_equal(both.missing_counts, panel.missing_counts)


def test_a_missing_code_that_is_a_level_is_an_error():
    df = frame()
    panel = panel_of(df, missing_indicators="drop", missing_codes={"q2": [9, 2], "y1": [-99]})
    with pytest.raises(jic.DataError, match=r"indicator 'q2': missing code 2.0 is also one of "
                                            r"the levels 1..4 of the ordered probit model"):
        jic.Problem(model(), panel, jic.Halton(N_DRAWS))


def test_a_missing_value_must_be_missing_on_every_row_of_the_individual():
    df = frame()
    row = df.index[df["id"] == df["id"].iloc[-1]][0]  # an individual with every answer
    df.loc[row, "q3"] = np.nan
    with pytest.raises(jic.DataError, match="indicator column 'q3' varies within individual"):
        dropping(df)


def test_an_indicator_missing_for_everyone_is_an_error():
    df = frame().assign(q3=np.nan)
    with pytest.raises(jic.DataError, match=r"indicators \['q3'\] are missing for every "
                                            r"individual"):
        dropping(df)


def test_infinite_values_stay_errors_when_dropping():
    df = frame()
    df.loc[df["id"] == df["id"].iloc[-1], "y2"] = np.inf
    with pytest.raises(jic.DataError, match="indicator column 'y2' holds an infinite value"):
        dropping(df)


def test_a_user_block_that_does_not_drop_missing_answers_is_refused_them():
    from helpers import SharedScaleNormal
    spec = jic.ICLV(jic.Structural({"a": ["z1"]}), SharedScaleNormal("a", ["y1", "y2"]))
    with pytest.raises(jic.DataError, match=r"indicator 'y1' of individual .* is missing, and "
                                            r"SharedScaleNormal does not say that it drops "
                                            r"missing answers"):
        spec.check_data(dropping(frame()))


def test_hand_built_arrays_mark_missing_answers_explicitly():
    """NaN where ``indicator_observed`` says observed is an error; with the mask, the arrays
    give the panel's likelihood."""
    panel = dropping(frame())
    arrays = panel.arrays
    draws = jnp.asarray(jic.make_draws(jic.Halton(N_DRAWS), N, model().n_draw_dims))
    spec = with_random_values(model(), np.random.default_rng(1))
    unmarked = type(arrays)(**{**{f: getattr(arrays, f) for f in arrays.__dataclass_fields__},
                               "indicator_observed": None})
    with pytest.raises(jic.DataError, match="indicator 'q1' of individual 0 .* not finite"):
        jic.simulated_loglik(spec, unmarked, draws)
    spec.check_data(arrays)
    problem = jic.Problem(spec, panel, draws)
    assert float(jax.jit(jic.simulated_loglik)(spec, arrays, draws)) == pytest.approx(
        float(problem.loglik(problem.theta0)), rel=1e-14)
