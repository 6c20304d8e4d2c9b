"""Panel.from_dataframe: every bad input raises a DataError naming column, individual and value;
good input is grouped, padded and masked correctly, and nothing is silently dropped."""

import re

import jax
import numpy as np
import pandas as pd
import pytest

import jaxiclv as jic

# --------------------------------------------------------------------------------------------
# fixtures: a small unbalanced binary panel and a small multinomial panel with availability
# --------------------------------------------------------------------------------------------

BINARY = dict(id="id", choice="choice", attributes=["cost", "time"], indicators=["q1", "q2"],
              covariates=["age", "female"])
MULTINOMIAL = dict(id="id", choice="choice",
                   attributes={"cost": ["cost_1", "cost_2", "cost_3"],
                               "time": ["time_1", "time_2", None]},
                   alternatives=[1, 2, 3], indicators=["q1"], covariates=["age"],
                   availability=["av_1", "av_2", "av_3"])


def binary_data() -> pd.DataFrame:
    """Individuals 10, 20, 30 with 2, 3 and 1 tasks (unbalanced), rows interleaved."""
    return pd.DataFrame({
        "id":     [10, 20, 10, 20, 30, 20],
        "choice": [1, 0, 0, 1, 1, 0],
        "cost":   [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "time":   [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "q1":     [1, 4, 1, 4, 5, 4],
        "q2":     [2, 3, 2, 3, 1, 3],
        "age":    [31.0, 42.0, 31.0, 42.0, 53.0, 42.0],
        "female": [1, 0, 1, 0, 0, 0],
    }, index=[100, 101, 102, 103, 104, 105])


def multinomial_data() -> pd.DataFrame:
    """Individuals 'a' (2 tasks), 'b' (2 tasks), 'c' (1 task); alternative 3 sometimes missing."""
    return pd.DataFrame({
        "id":     ["a", "a", "b", "b", "c"],
        "choice": [1, 3, 2, 2, 1],
        "cost_1": [1.0, 1.5, 2.0, 2.5, 3.0],
        "cost_2": [1.1, 1.6, 2.1, 2.6, 3.1],
        "cost_3": [1.2, 1.7, 2.2, 2.7, 3.2],
        "time_1": [5.0, 6.0, 7.0, 8.0, 9.0],
        "time_2": [5.5, 6.5, 7.5, 8.5, 9.5],
        "av_1":   [1, 1, 1, 1, 1],
        "av_2":   [1, 0, 1, 1, 1],
        "av_3":   [0, 1, 1, 1, 1],
        "q1":     [2, 2, 3, 3, 4],
        "age":    [20.0, 20.0, 30.0, 30.0, 40.0],
    })


def binary_panel(df=None, **changes):
    return jic.Panel.from_dataframe(binary_data() if df is None else df, **{**BINARY, **changes})


def multinomial_panel(df=None, **changes):
    return jic.Panel.from_dataframe(multinomial_data() if df is None else df,
                                    **{**MULTINOMIAL, **changes})


def names(*parts) -> str:
    """A regex that requires all ``parts`` (escaped) in this order."""
    return ".*".join(re.escape(str(p)) for p in parts)


def raises_data_error(*parts):
    return pytest.raises(jic.DataError, match=names(*parts))


# --------------------------------------------------------------------------------------------
# positive: shapes, padding, grouping, ids
# --------------------------------------------------------------------------------------------

def test_unbalanced_binary_panel_has_the_right_shape_and_mask():
    panel = binary_panel()
    a = panel.arrays
    assert panel.n_individuals == 3 and panel.n_tasks == 3 and panel.n_alternatives == 1
    assert panel.n_observations == 6  # padding excluded: 2 + 3 + 1, not 3 * 3
    np.testing.assert_array_equal(panel.ids, [10, 20, 30])
    np.testing.assert_array_equal(a.task_mask, [[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    assert a.attributes.shape == (3, 3, 1, 2)
    assert a.choice.shape == (3, 3) and a.available.shape == (3, 3, 1)
    assert a.indicators.shape == (3, 2) and a.covariates.shape == (3, 2)
    # tasks in the order in which the rows appear; a padded task repeats the first one (so that
    # any utility finite on the data is finite there) and is masked out
    np.testing.assert_array_equal(a.attributes[..., 0, 0], [[1, 3, 1], [2, 4, 6], [5, 5, 5]])
    np.testing.assert_array_equal(a.attributes[..., 0, 1], [[.1, .3, .1], [.2, .4, .6], [.5, .5, .5]])
    np.testing.assert_array_equal(a.choice, [[1, 0, 1], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(a.available[..., 0], True)
    np.testing.assert_array_equal(a.indicators, [[1, 2], [4, 3], [5, 1]])
    np.testing.assert_array_equal(a.covariates, [[31, 1], [42, 0], [53, 0]])
    assert a.indicator_names == ("q1", "q2") and a.covariate_names == ("age", "female")
    assert a.attribute_names == ("cost", "time")
    assert a.choice.dtype == np.int32 and a.task_mask.dtype == bool
    assert panel.alternatives == (0, 1) and panel.id_column == "id"


def _rows_of_individuals(panel):
    """{id: sorted list of (attributes..., choice, available...)} over the unpadded tasks."""
    a = panel.arrays
    out = {}
    for n, ident in enumerate(panel.ids):
        rows = []
        for t in np.flatnonzero(np.asarray(a.task_mask[n])):
            rows.append((*np.asarray(a.attributes[n, t]).ravel().tolist(), int(a.choice[n, t]),
                         *np.asarray(a.available[n, t]).tolist()))
        out[ident] = sorted(rows)
    return out


@pytest.mark.parametrize("make", [binary_panel, multinomial_panel])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_in_any_order_are_grouped_into_the_same_individuals(make, seed):
    df = binary_data() if make is binary_panel else multinomial_data()
    reference = make(df)
    rows = df.sample(frac=1.0, random_state=seed)
    shuffled = make(rows)
    # individuals in the order of their first row (which sets the draws each one gets)
    assert list(shuffled.ids) == list(dict.fromkeys(rows["id"]))
    assert _rows_of_individuals(shuffled) == _rows_of_individuals(reference)
    at = [list(shuffled.ids).index(i) for i in reference.ids]  # reference order
    np.testing.assert_array_equal(np.asarray(shuffled.arrays.task_mask.sum(1))[at],
                                  reference.arrays.task_mask.sum(1))
    np.testing.assert_array_equal(np.asarray(shuffled.arrays.indicators)[at],
                                  reference.arrays.indicators)
    np.testing.assert_array_equal(np.asarray(shuffled.arrays.covariates)[at],
                                  reference.arrays.covariates)
    assert shuffled.n_observations == reference.n_observations == len(df)


def test_string_ids_are_kept_in_the_order_of_their_first_row():
    panel = multinomial_panel()
    assert list(panel.ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(panel.arrays.task_mask, [[1, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(panel.arrays.covariates[:, 0], [20, 30, 40])
    # string ids in a binary panel too, with rows of one individual far apart, not sorted
    df = binary_data().assign(id=["z10", "y20", "z10", "y20", "x30", "y20"])
    panel = binary_panel(df)
    assert list(panel.ids) == ["z10", "y20", "x30"]
    np.testing.assert_array_equal(panel.arrays.covariates[:, 0], [31, 42, 53])


def test_multinomial_panel_arrays():
    panel = multinomial_panel()
    a = panel.arrays
    assert panel.alternatives == (1, 2, 3) and panel.n_alternatives == 3
    assert a.attributes.shape == (3, 2, 3, 2)
    np.testing.assert_array_equal(a.attributes[0, 1, :, 0], [1.5, 1.6, 1.7])
    # an alternative without the attribute (None) gets 0
    np.testing.assert_array_equal(a.attributes[0, 1, :, 1], [6.0, 6.5, 0.0])
    np.testing.assert_array_equal(a.choice, [[0, 2], [1, 1], [0, 0]])  # codes -> indices
    np.testing.assert_array_equal(a.available[0], [[1, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(a.available[2, 1], a.available[2, 0])  # padding: task 1 again
    np.testing.assert_array_equal(a.attributes[2, 1], a.attributes[2, 0])
    # without availability columns every alternative is available
    b = multinomial_panel(availability=None).arrays
    np.testing.assert_array_equal(b.available, True)


def test_string_alternatives_and_binary_codes():
    df = multinomial_data()
    df["choice"] = df["choice"].map({1: "car", 2: "bus", 3: "rail"})
    panel = multinomial_panel(df, alternatives=["car", "bus", "rail"])
    np.testing.assert_array_equal(panel.arrays.choice, [[0, 2], [1, 1], [0, 0]])
    df = binary_data()
    df["choice"] = df["choice"].map({0: "no", 1: "yes"})
    panel = binary_panel(df, alternatives=["no", "yes"])
    np.testing.assert_array_equal(panel.arrays.choice, [[1, 0, 1], [0, 1, 0], [1, 1, 1]])  # padded: task 1


def test_nothing_is_silently_dropped():
    """Every row appears once in the arrays, at its individual and in its order of appearance."""
    rng = np.random.default_rng(0)
    n_rows = 200
    df = pd.DataFrame({"id": rng.integers(0, 37, n_rows), "choice": rng.integers(0, 2, n_rows),
                       "cost": rng.standard_normal(n_rows), "time": rng.standard_normal(n_rows)})
    df["age"] = df["id"] * 1.5  # individual-level
    panel = jic.Panel.from_dataframe(df, id="id", choice="choice", attributes=["cost", "time"],
                                     covariates=["age"])
    a = jax.tree.map(np.asarray, panel.arrays)
    assert panel.n_observations == n_rows
    assert panel.n_individuals == df["id"].nunique()
    for n, ident in enumerate(panel.ids):
        rows = df[df["id"] == ident]
        k = len(rows)
        assert a.task_mask[n, :k].all() and not a.task_mask[n, k:].any()
        np.testing.assert_array_equal(a.attributes[n, :k, 0], rows[["cost", "time"]].to_numpy())
        np.testing.assert_array_equal(a.choice[n, :k], rows["choice"].to_numpy())
        np.testing.assert_array_equal(a.attributes[n, k:], a.attributes[n, :1].repeat(  # padding
            a.attributes.shape[1] - k, axis=0))
        assert a.covariates[n, 0] == ident * 1.5


def test_single_available_task_is_kept_when_the_individual_has_a_usable_one():
    df = multinomial_data()
    df.loc[0, ["av_2", "av_3"]] = 0  # individual 'a', task 1: only alternative 1
    panel = multinomial_panel(df)
    assert panel.n_observations == len(df)
    np.testing.assert_array_equal(panel.arrays.available[0, 0], [1, 0, 0])


def test_numeric_strings_bools_and_nullable_columns_are_accepted():
    df = binary_data()
    df["cost"] = df["cost"].astype(str)          # "1.0", ...: numbers written as text
    df["female"] = df["female"].astype(bool)
    df["age"] = df["age"].astype("Int64")
    panel = binary_panel(df)
    np.testing.assert_array_equal(panel.arrays.attributes[0, :2, 0, 0], [1.0, 3.0])
    np.testing.assert_array_equal(panel.arrays.covariates, [[31, 1], [42, 0], [53, 0]])


# --------------------------------------------------------------------------------------------
# errors from Panel.from_dataframe
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, changes", [
    ("id", dict(id="person")),
    ("choice", dict(choice="chosen")),
    ("attribute", dict(attributes=["cost", "price"])),
    ("indicator", dict(indicators=["q1", "q9"])),
    ("covariate", dict(covariates=["age", "income"])),
])
def test_missing_column_binary(role, changes):
    missing = [v for v in changes.values()][0]
    missing = missing[-1] if isinstance(missing, list) else missing
    with raises_data_error(f"{role} column {missing!r} is not in the data"):
        binary_panel(**changes)


@pytest.mark.parametrize("role, changes, missing", [
    ("attribute", dict(attributes={"cost": ["cost_1", "cost_2", "cost_4"]}), "cost_4"),
    ("availability", dict(availability=["av_1", "av_2", "avail_3"]), "avail_3"),
])
def test_missing_column_multinomial(role, changes, missing):
    with raises_data_error(f"{role} column {missing!r} is not in the data", "columns are"):
        multinomial_panel(**changes)


# column, row label, id of that row, role
BINARY_CELLS = [("cost", 103, 20, "attribute"), ("time", 104, 30, "attribute"),
                ("q2", 100, 10, "indicator"), ("age", 104, 30, "covariate")]
MULTINOMIAL_CELLS = [("cost_2", 3, "b", "attribute"), ("time_1", 4, "c", "attribute"),
                     ("av_3", 2, "b", "availability"), ("q1", 1, "a", "indicator"),
                     ("age", 0, "a", "covariate")]


def _set(df, row, column, value):
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    return df


def _cases(cells, make):
    for column, row, ident, role in cells:
        yield make, column, row, ident, role


ALL_CELLS = [*_cases(BINARY_CELLS, "binary"), *_cases(MULTINOMIAL_CELLS, "multinomial")]


def _panel(kind, df):
    return binary_panel(df) if kind == "binary" else multinomial_panel(df)


def _data(kind):
    return binary_data() if kind == "binary" else multinomial_data()


@pytest.mark.parametrize("kind, column, row, ident, role", ALL_CELLS)
@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"),
                                          (None, "None")])
def test_missing_and_non_finite_values_are_named(kind, column, row, ident, role, value, shown):
    df = _data(kind)
    if value is None:
        df = _set(df, row, column, None)
    else:
        df[column] = df[column].astype(float)
        df.loc[row, column] = value
    with raises_data_error(f"{role} column {column!r} holds a missing or non-finite value",
                           f"individual {ident!r}", f"(row {row!r})", f"value {shown}"):
        _panel(kind, df)


@pytest.mark.parametrize("kind, column, row, ident, role", ALL_CELLS)
def test_non_numeric_values_are_named(kind, column, row, ident, role):
    df = _set(_data(kind), row, column, "n/a")
    with raises_data_error(f"{role} column {column!r} is not numeric",
                           f"individual {ident!r}", f"(row {row!r})", "value 'n/a'"):
        _panel(kind, df)


def test_a_whole_string_column_is_not_numeric():
    df = binary_data().assign(cost=["low", "high", "low", "high", "low", "mid"])
    with raises_data_error("attribute column 'cost' is not numeric", "individual 10",
                           "(row 100)", "value 'low'"):
        binary_panel(df)


@pytest.mark.parametrize("values, dtype", [
    (pd.to_datetime(["2024-01-01"] * 6), "datetime"),
    (np.array([1 + 1j] * 6), "complex"),
])
def test_dates_and_complex_numbers_are_not_numeric(values, dtype):
    df = binary_data().assign(time=values)
    with raises_data_error("attribute column 'time' is not numeric", dtype, "individual 10"):
        binary_panel(df)


@pytest.mark.parametrize("kind, column, row, ident, first, role", [
    ("binary", "q1", 105, 20, 4, "indicator"),
    ("binary", "female", 103, 20, 0, "covariate"),
    ("multinomial", "q1", 3, "b", 3, "indicator"),
    ("multinomial", "age", 1, "a", 20.0, "covariate"),
])
def test_individual_level_column_varying_within_an_individual(kind, column, row, ident, first, role):
    df = _data(kind)
    df.loc[row, column] = 2
    with raises_data_error(f"{role} column {column!r} varies within individual {ident!r}",
                           f"value {float(first)!r} on its first row", f"value 2.0 on row {row!r}"):
        _panel(kind, df)


@pytest.mark.parametrize("value", [2, -1, 0.5])
def test_binary_choice_outside_0_1(value):
    df = binary_data()
    df["choice"] = df["choice"].astype(float)
    df.loc[104, "choice"] = value
    with raises_data_error("choice column 'choice' holds a value outside the alternatives (0, 1)",
                           "individual 30", "(row 104)", f"value {float(value)!r}"):
        binary_panel(df)


def test_binary_choice_outside_given_codes():
    df = binary_data()
    df["choice"] = df["choice"].map({0: "no", 1: "yes"})
    df.loc[101, "choice"] = "maybe"
    with raises_data_error("outside the alternatives ('no', 'yes')", "individual 20",
                           "value 'maybe'"):
        binary_panel(df, alternatives=["no", "yes"])


@pytest.mark.parametrize("value", [4, 0, "1"])
def test_multinomial_choice_outside_the_alternatives(value):
    df = _set(multinomial_data(), 2, "choice", value)
    with raises_data_error("choice column 'choice' holds a value outside the alternatives (1, 2, 3)",
                           "individual 'b'", "(row 2)", f"value {value!r}"):
        multinomial_panel(df)


@pytest.mark.parametrize("kind", ["binary", "multinomial"])
def test_missing_choice(kind):
    df = _data(kind)
    row = 101 if kind == "binary" else 4
    ident = 20 if kind == "binary" else "c"
    df["choice"] = df["choice"].astype(float)
    df.loc[row, "choice"] = np.nan
    with raises_data_error("choice column 'choice' has a missing value", f"individual {ident!r}",
                           f"(row {row})", "value nan"):
        _panel(kind, df)


def test_chosen_alternative_unavailable():
    df = multinomial_data()
    df.loc[3, "av_2"] = 0  # individual 'b' chose 2 in row 3
    with raises_data_error("the chosen alternative is not available",
                           "availability column 'av_2' is 0", "column 'choice'",
                           "individual 'b'", "(row 3)", "value 2"):
        multinomial_panel(df)


@pytest.mark.parametrize("value", [2, 0.5, -1])
def test_availability_not_0_or_1(value):
    df = multinomial_data().astype({"av_3": float})
    df.loc[4, "av_3"] = value
    with raises_data_error("availability column 'av_3' must be 0 or 1", "individual 'c'",
                           "(row 4)", f"value {float(value)!r}"):
        multinomial_panel(df)


def test_empty_data():
    with raises_data_error("the data are empty: no rows"):
        binary_panel(binary_data().iloc[:0])


def test_individual_with_no_usable_task():
    df = multinomial_data()
    # individual 'b': alternative 2 is the only one available in both of its tasks
    df.loc[[2, 3], ["av_1", "av_3"]] = 0
    with raises_data_error("individual 'b' has no usable choice task", "2 tasks",
                           "only one alternative is available", "av_1"):
        multinomial_panel(df)


def test_missing_id():
    df = binary_data().astype({"id": float})
    df.loc[102, "id"] = np.nan
    with raises_data_error("id column 'id' has a missing value nan in row 102"):
        binary_panel(df)


def test_ids_of_mixed_types_are_a_data_error_not_a_crash():
    df = binary_data().astype({"id": object})
    df.loc[104, "id"] = "30"
    with raises_data_error("id column 'id' mixes ids of different types", "10", "row 100",
                           "'30'", "row 104"):
        binary_panel(df)


def test_ints_and_floats_are_one_id():
    df = binary_data().astype({"id": object})
    df.loc[102, "id"] = 10.0
    assert binary_panel(df).n_individuals == 3


def test_duplicated_column_name():
    df = binary_data()
    df = pd.concat([df, df[["cost"]]], axis=1)
    with raises_data_error("attribute column 'cost' appears 2 times in the data"):
        binary_panel(df)


def test_specification_errors():
    with pytest.raises(TypeError, match="write \\['cost'\\]"):
        binary_panel(attributes="cost")
    with raises_data_error("indicators repeat column names: 'q1'"):
        binary_panel(indicators=["q1", "q2", "q1"])
    with raises_data_error("binary choice", "two alternatives"):
        binary_panel(alternatives=[0, 1, 2])
    with raises_data_error("availability columns apply to multinomial choice only"):
        binary_panel(availability=["cost", "time"])
    with raises_data_error("needs `alternatives`"):
        multinomial_panel(alternatives=None)
    with raises_data_error("alternatives repeat codes: 1"):
        multinomial_panel(alternatives=[1, 1, 3])
    with raises_data_error("attribute 'cost' needs a list of 3 columns"):
        multinomial_panel(attributes={"cost": ["cost_1", "cost_2"]})
    with raises_data_error("availability lists 2 columns for 3 alternatives"):
        multinomial_panel(availability=["av_1", "av_2"])
    with pytest.raises(TypeError, match="DataFrame"):
        jic.Panel.from_dataframe(binary_data().to_dict(), **BINARY)


def test_error_messages_show_plain_values():
    """Numpy scalars are shown as plain numbers, not as ``np.int64(10)``."""
    df = binary_data()
    df.loc[100, "cost"] = np.inf
    with pytest.raises(jic.DataError) as info:
        binary_panel(df)
    assert "np." not in str(info.value)
    assert "individual 10 (row 100): value inf" in str(info.value)


# --------------------------------------------------------------------------------------------
# a model meets a panel: ICLV.check_data (also run by jic.Problem and jic.estimate)
# --------------------------------------------------------------------------------------------

def binary_model(levels=5, indicators=("q1", "q2"), covariates=("age", "female"),
                 attributes=("cost", "time"), link=jic.OrderedProbit):
    return jic.ICLV(
        latent=jic.Structural({"lv": list(covariates)}),
        measurement=link({"lv": list(indicators)}, levels=levels),
        choice=jic.BinaryProbit(attributes=list(attributes), latent=["lv"]))


def multinomial_model(alternatives=(1, 2, 3)):
    return jic.ICLV(
        latent=jic.Structural({"lv": ["age"]}),
        measurement=jic.OrderedProbit({"lv": ["q1"]}, levels=5),
        choice=jic.MultinomialLogit(alternatives=alternatives, attributes=["cost", "time"],
                                    latent={"lv": [alternatives[-1]]}))


def test_matching_model_and_panel_pass_the_check():
    binary_model().check_data(binary_panel())
    binary_model(link=jic.OrderedLogit).check_data(binary_panel())
    multinomial_model().check_data(multinomial_panel())


# the Likert message comes from _measurement; numpy scalars may be shown as np.int64(...)
def _likert(indicator, ident, value):
    ident = re.escape(repr(ident))
    return (f"indicator '{indicator}', individual (np\\.\\w+\\()?{ident}\\)?: value "
            f"(np\\.float64\\()?{re.escape(repr(float(value)))}\\)? is not one of the levels 1..5")


@pytest.mark.parametrize("link", [jic.OrderedProbit, jic.OrderedLogit])
@pytest.mark.parametrize("value", [0, 6, 2.5, -3])
def test_likert_value_outside_the_levels(link, value):
    df = binary_data()
    df["q2"] = df["q2"].astype(float)
    df.loc[df["id"] == 20, "q2"] = value
    panel = binary_panel(df)  # the panel does not know the number of levels
    model = binary_model(link=link)
    with pytest.raises(jic.DataError, match=_likert("q2", 20, value)):
        model.check_data(panel)


def test_likert_check_with_string_ids_runs_in_problem_and_estimate():
    df = multinomial_data()
    df.loc[df["id"] == "c", "q1"] = 7
    panel = multinomial_panel(df)
    model = multinomial_model()
    with pytest.raises(jic.DataError, match=_likert("q1", "c", 7)):
        jic.Problem(model, panel, draws=jic.PseudoRandom(2))
    with pytest.raises(jic.DataError, match=_likert("q1", "c", 7)):
        jic.estimate(model, panel, draws=jic.PseudoRandom(2), max_iter=1)


def test_normal_indicators_accept_any_finite_value():
    df = binary_data().astype({"q1": float})
    df.loc[df["id"] == 30, "q1"] = -123.456
    model = jic.ICLV(latent=jic.Structural({"lv": ["age"]}),
                     measurement=jic.NormalIndicators({"lv": ["q1", "q2"]}),
                     choice=jic.BinaryProbit(attributes=["cost"], latent=["lv"]))
    model.check_data(binary_panel(df))


@pytest.mark.parametrize("role, model, missing", [
    ("indicator", lambda: binary_model(indicators=("q1", "q3")), "q3"),
    ("covariate", lambda: binary_model(covariates=("age", "income")), "income"),
    ("attribute", lambda: binary_model(attributes=("cost", "distance")), "distance"),
])
def test_model_uses_a_column_the_panel_lacks(role, model, missing):
    with raises_data_error(f"the model uses {role}s [{missing!r}] that the panel does not hold"):
        model().check_data(binary_panel())


def test_binary_model_with_multinomial_panel_and_vice_versa():
    model = jic.ICLV(latent=jic.Structural({"lv": ["age"]}),
                     measurement=jic.OrderedProbit({"lv": ["q1"]}, levels=5),
                     choice=jic.BinaryProbit(attributes=["cost"], latent=["lv"]))
    with raises_data_error("BinaryProbit needs a panel built for binary choice",
                           "the panel is multinomial"):
        model.check_data(multinomial_panel())
    df = binary_data()
    mnl = jic.ICLV(latent=jic.Structural({"lv": ["age"]}),
                   measurement=jic.OrderedProbit({"lv": ["q1"]}, levels=5),
                   choice=jic.MultinomialLogit(alternatives=[0, 1], attributes=["cost"]))
    with raises_data_error("MultinomialLogit needs a panel built for multinomial choice",
                           "the panel is binary"):
        mnl.check_data(binary_panel(df))
    with raises_data_error("BinaryProbit needs a panel built for binary choice"):
        jic.Problem(model, multinomial_panel(), draws=jic.PseudoRandom(2))


def test_wrong_number_of_alternatives():
    with raises_data_error("alternatives ['1', '2'] do not match the panel's [1, 2, 3]",
                           "not in the model: ['3']"):
        multinomial_model(alternatives=(1, 2)).check_data(multinomial_panel())
    with raises_data_error("alternatives ['1', '2', '3', '4'] do not match", "not in the panel: "
                           "['4']"):
        multinomial_model(alternatives=(1, 2, 3, 4)).check_data(multinomial_panel())
    # hand-built arrays carry no labels: their number must match
    with raises_data_error("the choice model has 2 alternatives, the data 3"):
        multinomial_model(alternatives=(1, 2)).check_data(multinomial_panel().arrays)
