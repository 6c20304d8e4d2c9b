"""Per-individual sampling weights (WESML): the weighted likelihood, gradient and Hessians equal
those of the data with each individual replicated ``w_i`` times (integer weights, each copy
with the original's draws), the scores are ``w_i s_i`` (Manski and Lerman's sandwich), and bad
weights are a clear error."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxiclv as jic
from helpers import N_DRAWS

N, TASKS = 12, 3
WEIGHTS = np.array([1, 2, 3, 1, 1, 2, 1, 4, 1, 1, 2, 1], dtype=float)


def model():
    return jic.ICLV(jic.Structural({"a": ["z1"]}),
                    (jic.NormalIndicators({"a": ["y1"]}),
                     jic.OrderedProbit({"a": ["q1"]}, levels=3)),
                    jic.MultinomialLogit(["x", "y", "z"], attributes=["cost"],
                                         latent={"a": ["y", "z"]}))


def _frame(spec):
    df = jic.simulate(jic.set_values(spec, {"beta.cost": -0.8, "theta.a.y": 0.5,
                                            "q1.zeta.a": 0.8}), N, TASKS, seed=4).data
    df["q1"] = (df["id"] % 3 + 1).astype(float)  # every level occurs
    return df


def _panel(df, **kwargs):
    return jic.Panel.from_dataframe(
        df, id="id", choice="choice", indicators=["y1", "q1"], covariates=["z1"],
        alternatives=["x", "y", "z"], attributes={"cost": ["cost_x", "cost_y", "cost_z"]},
        **kwargs)


def _replicated(df):
    """Each individual w_i times, under new ids, in the order of the original individuals."""
    copies = []
    for n, ident in enumerate(df["id"].drop_duplicates()):
        rows = df[df["id"] == ident]
        copies += [rows.assign(id=f"{ident}-{k}") for k in range(int(WEIGHTS[n]))]
    return pd.concat(copies, ignore_index=True)


@pytest.mark.parametrize("gradient", ["analytic", "autodiff"])
def test_weighted_likelihood_gradient_and_hessians_equal_replicated_individuals(gradient):
    spec = model()
    df = _frame(spec)
    weighted = _panel(df.assign(w=df["id"].map(dict(zip(df["id"].unique(), WEIGHTS)))),
                      weights="w")
    replicated = _panel(_replicated(df))
    draws = jic.make_draws(jic.Halton(N_DRAWS, seed=2), N, spec.n_draw_dims)
    copies = np.repeat(np.arange(N), WEIGHTS.astype(int))
    problems = [jic.Problem(spec, weighted, draws, gradient=gradient),
                jic.Problem(spec, replicated, draws[copies], gradient=gradient)]
    rng = np.random.default_rng(0)
    theta = problems[0].theta0 + 0.2 * rng.standard_normal(problems[0].theta0.shape)
    (llf_w, grad_w), (llf_r, grad_r) = (p.loglik_and_grad(theta) for p in problems)
    assert float(llf_w) == pytest.approx(float(llf_r), rel=1e-13)
    np.testing.assert_allclose(grad_w, grad_r, rtol=1e-11, atol=1e-11)
    for method in ("structured", "jacfwd") if gradient == "analytic" else ():
        np.testing.assert_allclose(problems[0].hessian(theta, method),
                                   problems[1].hessian(theta, method), rtol=1e-9, atol=1e-9)
    # the scores: w_i times the individual's own, summing to the gradient
    unweighted = jic.Problem(spec, _panel(df), draws, gradient=gradient)
    scores = np.asarray(problems[0].scores(theta))
    np.testing.assert_allclose(scores, WEIGHTS[:, None] * np.asarray(unweighted.scores(theta)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores.sum(0), grad_w, rtol=1e-10, atol=1e-10)
    # so the sandwich's middle S'S is Manski and Lerman's sum_i w_i^2 s_i s_i' (the replicated
    # data's would be sum_i w_i s_i s_i': frequency weights, not sampling weights)
    replicated_scores = np.asarray(problems[1].scores(theta))
    assert not np.allclose(scores.T @ scores, replicated_scores.T @ replicated_scores)


@pytest.mark.parametrize("value, message", [
    (-1.0, "negative weight: individual 3"), (np.nan, "missing or non-finite"),
    (np.inf, "missing or non-finite"), ("heavy", "not numeric")])
def test_bad_weights_are_a_data_error_naming_the_column(value, message):
    df = _frame(model())
    df["w"] = 1.0
    df["w"] = df["w"].astype(object)
    df.loc[df["id"] == 3, "w"] = value
    with pytest.raises(jic.DataError, match=f"weight column 'w'.*{message}"):
        _panel(df, weights="w")


def test_weights_varying_within_an_individual_or_all_zero_are_an_error():
    df = _frame(model())
    df["w"] = 1.0
    df.loc[df.index[1], "w"] = 2.0
    with pytest.raises(jic.DataError, match="weight column 'w' varies within individual"):
        _panel(df, weights="w")
    with pytest.raises(jic.DataError, match="zero for every individual"):
        _panel(df.assign(w=0.0), weights="w")


def test_hand_built_arrays_with_a_negative_weight_are_an_error():
    spec = model()
    panel = _panel(_frame(spec))
    arrays = panel.arrays
    bad = jic.PanelArrays(**{**{f: getattr(arrays, f) for f in (
        "covariates", "indicators", "attributes", "choice", "available", "task_mask",
        "covariate_names", "indicator_names", "attribute_names")},
        "weights": arrays.weights.at[2].set(-1.0)})
    draws = jnp.asarray(jic.make_draws(jic.Halton(N_DRAWS), N, spec.n_draw_dims))
    with pytest.raises(jic.DataError, match="weight of individual 2"):
        jic.simulated_loglik(spec, bad, draws)
