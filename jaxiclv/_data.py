"""Data: a long-format pandas table, validated and converted once to padded dense arrays.

One row per choice task. Rows are grouped into individuals by the id column; indicators and
covariates are individual-level and must be constant within an individual. Individuals with
fewer tasks than the longest panel are padded with copies of their first task, and
``task_mask`` removes the padding from the likelihood. With ``missing_indicators="drop"``, an
indicator a respondent did not answer (NaN, or one of the ``missing_codes``) is NaN in
``indicators`` and False in ``indicator_observed``; the measurement models drop it from that
respondent's likelihood. Every array in :class:`PanelArrays` has
the individuals on its leading axis, so the likelihood can be vmapped, chunked or sharded over
that axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Panel", "PanelArrays", "DataError"]


class DataError(ValueError):
    """Bad input data; the message names the column, the individual and the value."""


class PanelArrays(eqx.Module):
    """The dense arrays of a panel; the leading axis of every array is the individual."""

    covariates: Float[Array, "N C"]
    indicators: Float[Array, "N K"]
    attributes: Float[Array, "N T J A"]
    choice: Int[Array, "N T"]  # index of the chosen alternative, 0..J-1
    available: Bool[Array, "N T J"]
    task_mask: Bool[Array, "N T"]
    weights: Float[Array, " N"]  # per-individual sampling weights (1 when none are given)
    covariate_names: tuple[str, ...] = eqx.field(static=True)
    indicator_names: tuple[str, ...] = eqx.field(static=True)
    attribute_names: tuple[str, ...] = eqx.field(static=True)
    # False where an indicator is missing (not answered); None: every indicator observed
    indicator_observed: Bool[Array, "N K"] | None = None

    def indicator_values(self, names: Sequence[str], xp=jnp) -> Float[Array, "... K"]:
        """The named indicators' values, NaN where an answer is missing; ``xp=np`` for
        checks on concrete arrays (numpy, so that they run inside a traced function too)."""
        columns = self.indicator_columns(names)
        values = xp.asarray(self.indicators)[..., columns]
        if self.indicator_observed is None:
            return values
        return xp.where(xp.asarray(self.indicator_observed)[..., columns], values, xp.nan)

    def indicator_columns(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.indicator_names.index(name) for name in names], dtype=np.int32)

    def covariate_columns(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.covariate_names.index(name) for name in names], dtype=np.int32)

    def attribute_columns(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.attribute_names.index(name) for name in names], dtype=np.int32)


def _show(value) -> str:
    """``repr`` of a data value, with numpy scalars shown as plain Python values."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _where(df: pd.DataFrame, id_column: str, mask: np.ndarray, column: str) -> str:
    """Column, individual, row label and value of the first row where ``mask`` holds."""
    row = int(np.flatnonzero(mask)[0])
    return (f"column {column!r}, individual {_show(df[id_column].iloc[row])} "
            f"(row {_show(df.index[row])}): value {_show(df[column].iloc[row])}")


def _column(df: pd.DataFrame, column, role: str) -> pd.Series:
    """The column ``column`` of ``df``, which must exist exactly once."""
    if column not in df.columns:
        raise DataError(f"{role} column {column!r} is not in the data; columns are "
                        f"{list(df.columns)}")
    series = df[column]
    if isinstance(series, pd.DataFrame):
        raise DataError(f"{role} column {column!r} appears {series.shape[1]} times in the data; "
                        f"column names must be unique")
    return series


def _names(names, role: str, what: str = "column names") -> tuple:
    """A list of ``what`` (column names, or codes), not a single string and without repeats."""
    if isinstance(names, str):
        raise TypeError(f"{role}s must be given as a list of {what}, got the string {names!r}; "
                        f"write [{names!r}] for a single one")
    names = tuple(names)
    repeated = list(dict.fromkeys(_show(n) for n in names if names.count(n) > 1))
    if repeated:
        raise DataError(f"{role}s repeat {what}: {', '.join(repeated)}")
    return names


def _is_real(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series) or (
        pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series))


def _numeric(df: pd.DataFrame, column: str, id_column: str, role: str,
             missing_codes: tuple[float, ...] | None = None, hint_categorical: bool = False
             ) -> np.ndarray:
    """The column as finite float64 values; a :class:`DataError` names the first bad value.
    With ``missing_codes`` (a tuple, possibly empty), NaN and those codes are missing values,
    returned as NaN; ``hint_categorical``: the error says how to code the column as dummies."""
    series = _column(df, column, role)
    if not _is_real(series):
        present = series.notna().to_numpy()
        if (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
                or isinstance(series.dtype, pd.CategoricalDtype)):
            numeric = pd.to_numeric(series, errors="coerce")
            bad = numeric.isna().to_numpy() & present
            if not bad.any() and not _is_real(numeric):  # e.g. complex numbers
                bad = present
        else:  # datetimes, time spans, complex numbers: not real numbers, whatever the value
            numeric, bad = series, np.ones(len(series), dtype=bool)
        if bad.any():
            raise DataError(f"{role} column {column!r} is not numeric (dtype {series.dtype}): "
                            f"{_where(df, id_column, bad, column)}"
                            + ("; to code it as dummies, name its attribute in `categorical`"
                               if hint_categorical else ""))
        series = numeric
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if missing_codes is None:
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{role} column {column!r} holds a missing or non-finite value: "
                            f"{_where(df, id_column, bad, column)}"
                            + (" (missing_indicators='drop' drops missing answers)"
                               if role == "indicator" else ""))
        return values
    bad = np.isinf(values)
    if bad.any():
        raise DataError(f"{role} column {column!r} holds an infinite value: "
                        f"{_where(df, id_column, bad, column)}")
    return np.where(np.isin(values, missing_codes), np.nan, values)


def _individual_level(df, column, id_column, role, first_row, group,
                      missing_codes: tuple[float, ...] | None = None) -> np.ndarray:
    """One value per individual of a column that must be constant within an individual
    (a missing value, NaN, is constant only if missing on every row)."""
    values = _numeric(df, column, id_column, role, missing_codes)
    first = values[first_row][group]
    varying = (values != first) & ~(np.isnan(values) & np.isnan(first))
    if varying.any():
        row = int(np.flatnonzero(varying)[0])
        raise DataError(
            f"{role} column {column!r} varies within individual "
            f"{_show(df[id_column].iloc[row])}: value {_show(values[first_row][group][row])} on "
            f"its first row (row {_show(df.index[first_row[group[row]]])}), value "
            f"{_show(values[row])} on row {_show(df.index[row])}; {role}s must be constant "
            f"within an individual")
    return values[first_row]


def _group(df: pd.DataFrame, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids in the order of their first row and, for every row, the index of its
    individual. Individual ``n`` (in this order) gets the ``n``-th block of draws, as in Apollo
    and Biogeme, so the same rows with ids as numbers or as strings give the same draws."""
    series = _column(df, id_column, "id")
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"id column {id_column!r} has a missing value "
                        f"{_show(series.iloc[int(np.flatnonzero(missing)[0])])} in row "
                        f"{_show(df.index[int(np.flatnonzero(missing)[0])])}")
    try:
        group, ids = pd.factorize(series, sort=False)
    except TypeError:  # unhashable ids
        raise DataError(f"id column {id_column!r} holds values that cannot be ids (type "
                        f"{type(series.iloc[0]).__name__}); use numbers or strings") from None
    ids = np.asarray(ids, dtype=object if ids.dtype == object else None)

    def kind(value):
        return "number" if isinstance(value, (int, float, np.number)) else type(value).__name__

    kinds = [kind(v) for v in ids]
    other = [n for n, k in enumerate(kinds) if k != kinds[0]]
    if other:
        row = int(np.flatnonzero(group == other[0])[0])
        raise DataError(
            f"id column {id_column!r} mixes ids of different types: {_show(ids[0])} "
            f"({kinds[0]}, row {_show(df.index[0])}) and {_show(ids[other[0]])} "
            f"({kinds[other[0]]}, row {_show(df.index[row])}); use one type (12 and '12' would "
            f"be different individuals)")
    return ids, group.astype(np.int64)


def _dummy(attribute: str, level) -> str:
    return f"{attribute}[{level}]"


def _categories(df, id_column, columns_of: Mapping[str, list], categorical,
                given_levels: Mapping[str, Sequence]) -> dict[str, tuple[tuple, object]]:
    """``{attribute: (levels, reference)}`` of the attributes coded as dummies; the levels are
    ``given_levels[attribute]`` where given (a value outside them is an error), else those in
    the data."""
    references = (dict(categorical) if isinstance(categorical, Mapping)
                  else dict.fromkeys(_names(categorical, "categorical attribute", "names")))
    unknown = [name for name in references if name not in columns_of]
    if unknown:
        raise DataError(f"categorical names attributes that are not in `attributes`: {unknown}; "
                        f"the attributes are {list(columns_of)}")
    out = {}
    for name, reference in references.items():
        series = [_column(df, c, "attribute") for c in columns_of[name] if c is not None]
        for column, values in zip([c for c in columns_of[name] if c is not None], series):
            missing = values.isna().to_numpy()
            if missing.any():
                raise DataError(f"categorical attribute {name!r}: column {column!r} has a "
                                f"missing value: {_where(df, id_column, missing, column)}")
        if name in given_levels:
            levels = list(given_levels[name])
            for column, values in zip([c for c in columns_of[name] if c is not None], series):
                outside = ~values.isin(levels).to_numpy()
                if outside.any():
                    shown = ", ".join(_show(v) for v in levels)
                    raise DataError(f"categorical attribute {name!r}: column {column!r} holds a "
                                    f"level outside its levels [{shown}]: "
                                    f"{_where(df, id_column, outside, column)}")
        elif series and all(isinstance(v.dtype, pd.CategoricalDtype) for v in series):
            seen = set().union(*(set(v.unique()) for v in series))
            order = list(dict.fromkeys(c for v in series for c in v.cat.categories))
            levels = [c for c in order if c in seen]
        else:
            seen = list(dict.fromkeys(x for v in series for x in v.to_numpy()))
            try:
                levels = sorted(seen)
            except TypeError:  # a mixture of types
                levels = sorted(seen, key=str)
        if len(levels) < 2:
            raise DataError(f"categorical attribute {name!r} has {len(levels)} level(s) "
                            f"[{', '.join(_show(v) for v in levels)}]: nothing to code as dummies")
        if reference is None:
            reference = levels[0]
        elif reference not in levels:
            shown = ", ".join(_show(v) for v in levels)
            raise DataError(f"the reference level {reference!r} of categorical attribute "
                            f"{name!r} is not one of its levels [{shown}]")
        out[name] = (tuple(levels), reference)
    return out


def _missing_codes(indicators: tuple, how: str, codes) -> dict[str, tuple[float, ...]]:
    """Each indicator's missing codes for ``missing_indicators=how`` (empty: NaN only); no
    entries when missing values are errors."""
    if how not in ("error", "drop"):
        raise ValueError(f"missing_indicators must be 'error' or 'drop', got {how!r}")
    given = codes if isinstance(codes, Mapping) else dict.fromkeys(indicators, codes)
    if how == "error":
        if any(len(_names(c, "missing code", "values")) for c in given.values()):
            raise ValueError("missing_codes apply with missing_indicators='drop'")
        return {}
    unknown = [name for name in given if name not in indicators]
    if unknown:
        raise DataError(f"missing_codes name columns that are not indicators: {unknown}; the "
                        f"indicators are {list(indicators)}")
    out = {}
    for name in indicators:
        values = _names(given.get(name, ()), "missing code", "values")
        for value in values:
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not np.isfinite(value)):
                raise DataError(f"missing code {value!r} of indicator {name!r} is not a finite "
                                f"number (NaN is always missing with missing_indicators='drop')")
        out[name] = tuple(float(v) for v in values)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Panel:
    """A validated panel of choices, indicators and covariates.

    Build it with :meth:`Panel.from_dataframe`. ``arrays`` holds the padded dense arrays that
    the likelihood consumes; ``ids`` the individuals' ids in the order of the leading axis.
    """

    arrays: PanelArrays
    ids: np.ndarray
    alternatives: tuple
    id_column: str
    missing_codes: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    # categorical attribute -> (its levels, the reference level)
    categories: Mapping[str, tuple[tuple, object]] = dataclasses.field(default_factory=dict)
    # the keyword arguments of from_dataframe that built it (category levels included)
    arguments: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def with_data(self, df: pd.DataFrame) -> "Panel":
        """New data (a scenario: changed prices, other people) coded as this panel: the same
        columns, alternatives, codes, weights column and categorical levels (a level this panel
        does not have is a :class:`DataError`). Its individuals get their own draws."""
        if not self.arguments:
            raise ValueError("this panel was not built by Panel.from_dataframe, so there is no "
                             "coding to repeat: build the new data's panel yourself")
        return Panel.from_dataframe(df, **self.arguments)

    def dummies(self, attribute: str) -> list[str]:
        """The attribute names of a categorical attribute's dummies, ``{attribute}[{level}]``
        for every level but the reference, for the choice model's ``attributes``."""
        if attribute not in self.categories:
            raise KeyError(f"{attribute!r} is not a categorical attribute of the panel; the "
                           f"categorical attributes are {list(self.categories)}")
        levels, reference = self.categories[attribute]
        return [_dummy(attribute, level) for level in levels if level != reference]

    @property
    def missing_counts(self) -> pd.Series:
        """The number of individuals who did not answer each indicator (dropped from their
        measurement likelihood with ``missing_indicators="drop"``)."""
        observed = self.arrays.indicator_observed
        names = list(self.arrays.indicator_names)
        counts = (np.zeros(len(names), dtype=np.int64) if observed is None
                  else (~np.asarray(observed)).sum(axis=0))
        return pd.Series(counts, index=names, name="missing", dtype=np.int64)

    @property
    def n_individuals(self) -> int:
        return int(self.arrays.task_mask.shape[0])

    @property
    def n_tasks(self) -> int:
        """Largest number of tasks of any individual (the padded task axis)."""
        return int(self.arrays.task_mask.shape[1])

    @property
    def n_observations(self) -> int:
        """Number of choice tasks observed, padding excluded."""
        return int(np.asarray(self.arrays.task_mask).sum())

    @property
    def n_alternatives(self) -> int:
        return int(self.arrays.available.shape[2])

    def in_order(self, labels: Sequence[str]) -> "Panel":
        """This panel with its alternatives in the order of ``labels``, matched by label
        (``str`` of the codes): attributes, availability and choices move with them. Labels
        that do not match are a :class:`DataError` naming them."""
        mine = [str(a) for a in self.alternatives]
        labels = list(labels)
        missing = [a for a in labels if a not in mine]
        extra = [a for a in mine if a not in labels]
        if missing or extra or len(set(mine)) < len(mine):
            raise DataError(
                f"the choice model's alternatives {labels} do not match the panel's "
                f"{list(self.alternatives)} (matched by label): "
                + "; ".join(what for what in (
                    f"not in the panel: {missing}" if missing else "",
                    f"not in the model: {extra}" if extra else "",
                    "the panel has two alternatives with one label"
                    if len(set(mine)) < len(mine) else "") if what))
        order = np.array([mine.index(a) for a in labels])
        if np.array_equal(order, np.arange(len(order))):
            return self
        position = np.argsort(order)  # panel index -> model index
        a = self.arrays
        arrays = PanelArrays(
            covariates=a.covariates, indicators=a.indicators,
            attributes=a.attributes[:, :, order, :], choice=jnp.asarray(position)[a.choice],
            available=a.available[:, :, order], task_mask=a.task_mask, weights=a.weights,
            covariate_names=a.covariate_names, indicator_names=a.indicator_names,
            attribute_names=a.attribute_names, indicator_observed=a.indicator_observed)
        return dataclasses.replace(self, arrays=arrays,
                                   alternatives=tuple(self.alternatives[i] for i in order))

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        id: str,
        choice: str,
        attributes: Sequence[str] | Mapping[str, Sequence[str | None]] = (),
        indicators: Sequence[str] = (),
        covariates: Sequence[str] = (),
        alternatives: Sequence | None = None,
        availability: Sequence[str] | None = None,
        weights: str | None = None,
        missing_indicators: str = "error",
        missing_codes: Sequence[float] | Mapping[str, Sequence[float]] = (),
        categorical: Sequence[str] | Mapping[str, object] = (),
        category_levels: Mapping[str, Sequence] | None = None,
    ) -> "Panel":
        """Validate a long-format table (one row per choice task) and convert it to arrays.

        Parameters
        ----------
        df: one row per choice task.
        id: column that groups rows into individuals (numbers or strings, not a mixture).
            Individuals are ordered by their first row (``panel.ids``), and the ``n``-th gets
            the ``n``-th block of draws, as in Apollo and Biogeme: ids as numbers or as strings
            give the same draws; reordering the individuals changes which draws each gets.
        choice: column with the chosen alternative. Binary choice (``attributes`` a list):
            0 or 1 (or the two codes in ``alternatives``). Multinomial choice (``attributes`` a
            mapping): one of ``alternatives``.
        attributes: binary choice: a list of columns, one attribute each. Multinomial choice:
            a mapping ``attribute -> [column for alternative 1, ..., column for alternative J]``;
            ``None`` for an alternative that does not have the attribute (it is set to 0).
        indicators: individual-level indicator columns (e.g. Likert items).
        covariates: individual-level covariate columns (explain the latent variables).
        alternatives: the codes of the J alternatives in the choice column, in the order of the
            attribute columns. Required for multinomial choice.
        availability: multinomial choice only: one 0/1 column per alternative; all available
            if omitted.
        weights: an individual-level column of sampling weights (WESML): each individual's
            log-likelihood counts ``w_i`` times in the likelihood, its gradient and Hessian,
            and ``w_i s_i`` is its score in the sandwich covariances (Manski and Lerman's
            ``H^-1 (sum_i w_i^2 s_i s_i') H^-1``). Finite and non-negative, not all zero.
        missing_indicators: ``"error"`` (the default): a missing indicator value is an error.
            ``"drop"``: an indicator a respondent did not answer (NaN, or one of
            ``missing_codes``) is dropped from that respondent's measurement likelihood (for
            an ordered item, its probability is that of the whole real line, 1), never imputed
            or coded as a level; ``panel.missing_counts`` counts them per indicator.
        missing_codes: with ``missing_indicators="drop"``, values that mean "not answered"
            besides NaN: a list for every indicator (``[-1, 6]``) or a mapping
            ``{indicator: [codes]}``. A code that is also a level of an ordered item is an
            error when the model meets the panel.

        categorical: attributes coded as dummies, one per level but the reference: a list
            of attribute names (the reference is the first level: the first category of a
            pandas categorical column, else the first in sorted order) or a mapping
            ``{attribute: reference level}``. The dummies are attributes named
            ``{attribute}[{level}]`` (``panel.dummies(attribute)`` lists them), so that
            ``beta.brand[Novum]`` is the coefficient of level ``Novum`` against the reference.
            With multinomial choice the levels are those of all the attribute's columns, and an
            alternative without the attribute (``None``) has every dummy 0.
        category_levels: ``{attribute: [levels]}``: a categorical attribute's levels (the
            dummies of levels absent from these data are 0); a value outside them is an error.
            Default: the levels in the data.

        Every row is used: nothing is dropped, and anything that cannot be used raises a
        :class:`DataError` that names the column, the individual, the row and the value.
        Errors: a missing column; a missing, infinite or non-numeric value in a numeric column;
        an indicator or covariate that varies within an individual; a choice outside the
        alternatives; a chosen alternative that is not available; an availability value other
        than 0 or 1; no rows at all; and an individual with no usable task. A task is usable
        when it can tell the alternatives apart: every binary task, and a multinomial task with
        at least two available alternatives. A multinomial task with a single available
        alternative is kept (its probability is 1, it adds nothing to the likelihood), but an
        individual none of whose tasks is usable carries no information about the choice model,
        which is almost always a mistake in the availability columns. Likert values are checked
        against the number of levels when a model meets the panel (``ICLV.check_data``).
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"Panel.from_dataframe needs a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise DataError("the data are empty: no rows")
        indicators = _names(indicators, "indicator")
        covariates = _names(covariates, "covariate")
        codes_of = _missing_codes(indicators, missing_indicators, missing_codes)
        ids, group = _group(df, id)
        choice_values = _column(df, choice, "choice").to_numpy()
        n_individuals = len(ids)
        # position of each row within its individual, in the order the rows appear
        order = np.argsort(group, kind="stable")
        counts = np.bincount(group, minlength=n_individuals)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        task = np.empty(len(df), dtype=np.int64)
        task[order] = np.arange(len(df)) - np.repeat(starts, counts)
        first_row = order[starts]
        n_tasks = int(counts.max())

        # attributes: binary (list of columns) or multinomial (mapping to per-alternative columns)
        multinomial = isinstance(attributes, Mapping)
        if multinomial:
            attribute_names = tuple(attributes)
            if alternatives is None:
                raise DataError("multinomial choice (attributes given as a mapping) needs "
                                "`alternatives`: the codes of the alternatives in the choice column")
            alternatives = _names(alternatives, "alternative", "codes")
            n_alternatives = len(alternatives)
            if n_alternatives < 2:
                raise DataError(f"a multinomial choice needs at least two alternatives, got {alternatives}")
            for name, columns in attributes.items():
                if isinstance(columns, str) or len(columns) != n_alternatives:
                    raise DataError(f"attribute {name!r} needs a list of {n_alternatives} columns, "
                                    f"one for each alternative {alternatives}, got {columns!r}")
            columns_of = {name: list(attributes[name]) for name in attribute_names}
        else:
            attribute_names = _names(attributes, "attribute")
            original = alternatives
            alternatives = _names((0, 1) if alternatives is None else alternatives,
                                  "alternative", "codes")
            if len(alternatives) != 2:
                raise DataError(f"binary choice (attributes given as a list) has two alternatives, "
                                f"got {alternatives}")
            if availability is not None:
                raise DataError("availability columns apply to multinomial choice only")
            n_alternatives = 1  # one utility difference: P(choice = alternatives[1]) = F(V)
            columns_of = {name: [name] for name in attribute_names}
        categories = _categories(df, id, columns_of, categorical, category_levels or {})
        coded = []  # (name, values (rows, J)): numeric attributes, and each level's dummy
        for name, columns in columns_of.items():
            if name not in categories:
                coded.append((name, np.stack([
                    np.zeros(len(df)) if column is None
                    else _numeric(df, column, id, "attribute", hint_categorical=True)
                    for column in columns], axis=-1)))
                continue
            levels, reference = categories[name]
            values = [None if c is None else df[c].to_numpy() for c in columns]
            coded += [(_dummy(name, level), np.stack(
                [np.zeros(len(df)) if v is None else (v == level).astype(np.float64)
                 for v in values], axis=-1)) for level in levels if level != reference]
        attribute_names = _names([name for name, _ in coded], "attribute")
        attribute_rows = (np.stack([rows for _, rows in coded], axis=-1) if coded
                          else np.zeros((len(df), n_alternatives, 0)))  # (rows, J, A)

        # choice codes -> indices
        missing = np.asarray(pd.isna(choice_values))
        if missing.any():
            raise DataError(f"choice column {choice!r} has a missing value: "
                            f"{_where(df, id, missing, choice)}")
        codes = {code: index for index, code in enumerate(alternatives)}

        def known(value):
            try:
                return value in codes
            except TypeError:  # unhashable
                return False

        unknown = np.array([not known(value) for value in choice_values])
        if unknown.any():
            raise DataError(f"choice column {choice!r} holds a value outside the alternatives "
                            f"({', '.join(_show(a) for a in alternatives)}): "
                            f"{_where(df, id, unknown, choice)}")
        choice_index = np.array([codes[value] for value in choice_values], dtype=np.int32)

        if availability is not None:
            availability = _names(availability, "availability")
            if len(availability) != n_alternatives:
                raise DataError(f"availability lists {len(availability)} columns for "
                                f"{n_alternatives} alternatives {alternatives}")
            available_rows = np.stack([_numeric(df, column, id, "availability")
                                       for column in availability], axis=-1)
            for column, values in zip(availability, available_rows.T):
                bad = (values != 0) & (values != 1)
                if bad.any():
                    raise DataError(f"availability column {column!r} must be 0 or 1: "
                                    f"{_where(df, id, bad, column)}")
            available_rows = available_rows.astype(bool)
            unavailable = ~available_rows[np.arange(len(df)), choice_index]
            if unavailable.any():
                row = int(np.flatnonzero(unavailable)[0])
                raise DataError(
                    f"the chosen alternative is not available (availability column "
                    f"{availability[choice_index[row]]!r} is 0): "
                    f"{_where(df, id, unavailable, choice)}")
            # an individual none of whose tasks offers a choice carries no information
            usable = np.bincount(group, weights=available_rows.sum(axis=1) >= 2,
                                 minlength=n_individuals) > 0
            if not usable.all():
                n = int(np.flatnonzero(~usable)[0])
                raise DataError(
                    f"individual {_show(ids[n])} has no usable choice task: in each of its "
                    f"{counts[n]} tasks (first at row {_show(df.index[first_row[n]])}) only one "
                    f"alternative is available (availability columns {list(availability)}), so "
                    f"its choices carry no information; check the availability columns or "
                    f"remove the individual")
        else:
            available_rows = np.ones((len(df), n_alternatives), dtype=bool)

        indicator_values = np.stack(
            [_individual_level(df, c, id, "indicator", first_row, group, codes_of.get(c))
             for c in indicators], axis=-1) if indicators else np.zeros((n_individuals, 0))
        observed = ~np.isnan(indicator_values)
        never = [c for c, seen in zip(indicators, observed.any(axis=0)) if not seen]
        if never:
            raise DataError(f"indicators {never} are missing for every individual; leave them "
                            f"out of the panel and the model")
        covariate_values = np.stack(
            [_individual_level(df, c, id, "covariate", first_row, group) for c in covariates],
            axis=-1) if covariates else np.zeros((n_individuals, 0))

        # padded dense arrays [N, T_max, ...]: a padded task repeats the individual's first task
        # (so that any utility finite on the data is finite there, derivatives included) and is
        # masked out
        padding = np.repeat(first_row[:, None], n_tasks, axis=1)  # (N, T) rows
        padding[group, task] = np.arange(len(df))
        attribute_array = attribute_rows[padding]  # (N, T, J, A)
        choice_array = choice_index.astype(np.int32)[padding]
        available_array = available_rows[padding]
        task_mask = np.zeros((n_individuals, n_tasks), dtype=bool)
        task_mask[group, task] = True

        if weights is None:
            weight_values = np.ones(n_individuals)
        else:
            weight_values = _individual_level(df, weights, id, "weight", first_row, group)
            negative = weight_values < 0
            if negative.any():
                n = int(np.flatnonzero(negative)[0])
                raise DataError(f"weight column {weights!r} holds a negative weight: individual "
                                f"{_show(ids[n])} (row {_show(df.index[first_row[n]])}): value "
                                f"{_show(weight_values[n])}")
            if not weight_values.any():
                raise DataError(f"weight column {weights!r} is zero for every individual")

        arrays = PanelArrays(
            covariates=jnp.asarray(covariate_values),
            indicators=jnp.asarray(indicator_values),
            attributes=jnp.asarray(attribute_array),
            choice=jnp.asarray(choice_array),
            available=jnp.asarray(available_array),
            task_mask=jnp.asarray(task_mask),
            weights=jnp.asarray(weight_values),
            covariate_names=covariates,
            indicator_names=indicators,
            attribute_names=attribute_names,
            indicator_observed=None if observed.all() else jnp.asarray(observed),
        )
        arguments = dict(
            id=id, choice=choice, attributes=attributes, indicators=indicators,
            covariates=covariates, alternatives=alternatives if multinomial else original,
            availability=availability, weights=weights, missing_indicators=missing_indicators,
            missing_codes=missing_codes,
            categorical={name: reference for name, (_, reference) in categories.items()},
            category_levels={name: levels for name, (levels, _) in categories.items()})
        return cls(arrays=arrays, ids=ids, alternatives=alternatives, id_column=id,
                   missing_codes={c: codes for c, codes in codes_of.items() if codes},
                   categories=categories, arguments=arguments)
