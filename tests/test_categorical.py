"""Categorical attributes (``Panel.from_dataframe(..., categorical=...)``): coded as dummies
for every level but the reference, named ``{attribute}[{level}]``; the coding equals hand-made
dummy columns; bad input is a clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxiclv as jic
from helpers import N_DRAWS

BRANDS = ["Novum", "Generic", "Other"]


def frame(n=12, tasks=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = n * tasks
    return pd.DataFrame({
        "id": np.repeat(np.arange(n), tasks),
        "choice": rng.choice(["u", "v", "w"], rows),
        "cost_u": rng.normal(size=rows), "cost_v": rng.normal(size=rows),
        "cost_w": rng.normal(size=rows),
        "brand_v": rng.choice(BRANDS, rows), "brand_w": rng.choice(BRANDS, rows),
        "country": np.repeat(rng.choice(["FR", "DE", "IT"], n), tasks),
        "y": np.repeat(rng.integers(0, 2, n), tasks),
        "q1": np.repeat(rng.normal(size=n), tasks)})


def multinomial(df, **kwargs):
    return jic.Panel.from_dataframe(
        df, id="id", choice="choice", alternatives=["u", "v", "w"], indicators=["q1"],
        attributes={"cost": ["cost_u", "cost_v", "cost_w"], "brand": [None, "brand_v", "brand_w"]},
        **kwargs)


def hand_coded(df, levels):
    """The dummies as columns, written out: ``brand[level]`` of alternative j is 1 where
    alternative j's brand is that level (0 for u, which has no brand)."""
    df = df.copy()
    attributes = {"cost": ["cost_u", "cost_v", "cost_w"]}
    for level in levels:
        for alt in ("v", "w"):
            df[f"{level}_{alt}"] = (df[f"brand_{alt}"] == level).astype(float)
        attributes[f"brand[{level}]"] = [None, f"{level}_v", f"{level}_w"]
    return jic.Panel.from_dataframe(df, id="id", choice="choice", alternatives=["u", "v", "w"],
                                    indicators=["q1"], attributes=attributes)


def choice_model(panel):
    return jic.ICLV(jic.Structural({"a": []}), jic.NormalIndicators({"a": ["q1"]}),
                    jic.MultinomialLogit(["u", "v", "w"],
                                         attributes=["cost", *panel.dummies("brand")],
                                         latent={"a": ["v"]}))


@pytest.mark.parametrize("reference, expected", [
    (None, ["Novum", "Other"]),            # the first level in sorted order: Generic
    ("Novum", ["Generic", "Other"])])
def test_dummies_equal_hand_coded_columns(reference, expected):
    df = frame()
    coded = multinomial(df, categorical=["brand"] if reference is None else {"brand": reference})
    assert coded.dummies("brand") == [f"brand[{level}]" for level in expected]
    hand = hand_coded(df, expected)
    assert coded.arrays.attribute_names == hand.arrays.attribute_names == (
        "cost", *coded.dummies("brand"))
    np.testing.assert_array_equal(coded.arrays.attributes, hand.arrays.attributes)
    # every level occurs, and alternative u (no brand) has every dummy 0
    brand = np.asarray(coded.arrays.attributes)[..., 1:]
    assert brand[:, :, 0].max() == 0 and brand[:, :, 1:].max() == 1
    model = choice_model(coded)
    names = jic.ParameterSpace.from_model(model).names
    assert {f"beta.brand[{level}]" for level in expected} <= set(names)
    problems = [jic.Problem(model, panel, jic.Halton(N_DRAWS)) for panel in (coded, hand)]
    theta = problems[0].theta0 + 0.1 * np.arange(len(names))
    (ll_c, g_c), (ll_h, g_h) = (p.loglik_and_grad(theta) for p in problems)
    assert float(ll_c) == float(ll_h)
    np.testing.assert_array_equal(g_c, g_h)


def test_pandas_categories_give_the_order_and_the_reference():
    df = frame()
    order = pd.CategoricalDtype(["Other", "Generic", "Novum", "Unused"])
    df = df.assign(brand_v=df["brand_v"].astype(order), brand_w=df["brand_w"].astype(order))
    coded = multinomial(df, categorical=["brand"])
    # the first category is the reference; a category that never occurs gets no dummy
    assert coded.dummies("brand") == ["brand[Generic]", "brand[Novum]"]
    assert coded.categories["brand"] == (("Other", "Generic", "Novum"), "Other")


def test_binary_choice_categorical_attribute():
    df = frame()
    panel = jic.Panel.from_dataframe(df, id="id", choice="y", attributes=["cost_u", "country"],
                                     indicators=["q1"], categorical={"country": "FR"})
    assert panel.arrays.attribute_names == ("cost_u", "country[DE]", "country[IT]")
    values = np.asarray(panel.arrays.attributes)[:, 0, 0, 1:]  # (N, 2): first task
    country = df.groupby("id", sort=False)["country"].first().to_numpy()
    np.testing.assert_array_equal(values, np.column_stack([country == "DE", country == "IT"]))
    model = jic.ICLV(jic.Structural({"a": []}), jic.NormalIndicators({"a": ["q1"]}),
                     jic.BinaryProbit(attributes=["cost_u", *panel.dummies("country")],
                                      latent=["a"]))
    assert "beta.country[IT]" in jic.ParameterSpace.from_model(model).names
    model.check_data(panel)


def test_bad_categorical_input_is_a_clear_error():
    df = frame()
    with pytest.raises(jic.DataError, match=r"attribute column 'brand_v' is not numeric .*name "
                                            r"its attribute in `categorical`"):
        multinomial(df)
    with pytest.raises(jic.DataError, match=r"reference level 'Bio' of categorical attribute "
                                            r"'brand' is not one of its levels"):
        multinomial(df, categorical={"brand": "Bio"})
    with pytest.raises(jic.DataError, match=r"categorical names attributes that are not in "
                                            r"`attributes`: \['brnd'\]"):
        multinomial(df, categorical=["brnd"])
    with pytest.raises(jic.DataError, match=r"categorical attribute 'brand': column 'brand_w' "
                                            r"has a missing value: column 'brand_w', individual"):
        multinomial(df.assign(brand_w=df["brand_w"].where(df.index != 4)), categorical=["brand"])
    with pytest.raises(jic.DataError, match=r"'brand' has 1 level\(s\) \['Novum'\]"):
        multinomial(df.assign(brand_v="Novum", brand_w="Novum"), categorical=["brand"])
    with pytest.raises(jic.DataError, match=r"attributes repeat column names: 'brand\[Other\]'"):
        jic.Panel.from_dataframe(
            df.assign(x=1.0), id="id", choice="choice", alternatives=["u", "v", "w"],
            attributes={"brand[Other]": ["x", "x", "x"],
                        "brand": [None, "brand_v", "brand_w"]}, categorical=["brand"])
    panel = multinomial(df, categorical=["brand"])
    with pytest.raises(KeyError, match="'cost' is not a categorical attribute"):
        panel.dummies("cost")
    # the model names the categorical attribute itself, not its dummies
    model = jic.ICLV(jic.Structural({"a": []}), jic.NormalIndicators({"a": ["q1"]}),
                     jic.MultinomialLogit(["u", "v", "w"], attributes=["cost", "brand"]))
    with pytest.raises(jic.DataError, match=r"uses attributes \['brand'\] that the panel does "
                                            r"not hold.*'brand' is categorical, coded as the "
                                            r"dummies \['brand\[Novum\]', 'brand\[Other\]'\]"):
        jic.Problem(model, panel, jic.Halton(N_DRAWS))
