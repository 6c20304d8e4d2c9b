"""Whole studies for the end-to-end benchmarks: a model at its default starting values, its
panel and its draws, as a user would hand them to ``jic.estimate``.

- ``"reference"``: the bundled example (``python -m jaxiclv``: 328 individuals, 100 Halton
  draws, 219 parameters, ordered-probit items, binary probit);
- ``"drug-choice"``: Apollo's drug-choice ICLV (``notebooks/05_real_data``: 1,000 respondents,
  10,000 tasks, 4 alternatives, 1 latent variable, 4 ordered-logit items, 100 unscrambled
  Halton draws, Apollo's starting values; badly scaled: the side-effect attribute is in the
  hundreds);
- ``"small"``: a 40-parameter multinomial-logit ICLV on 300 simulated individuals
  (2 latent variables with 2 covariates each, 6 ordered-probit items with 5 levels, 3
  alternatives with 2 attributes, 8 tasks), 100 Halton draws.

``quick`` shrinks each (fewer individuals and draws) for a smoke test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import jaxiclv as jic
from jaxiclv import _example as ex

STUDIES = ("reference", "drug-choice", "small")
DRUG_CHOICE = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "drugChoice.csv.gz"


def _drug_choice(quick: bool):
    df = pd.read_csv(DRUG_CHOICE)
    if quick:
        df = df[df["ID"] <= 60]
    # the coding is the library's (jaxiclv._example), the one copy that notebook 05 shows too
    return (ex.drug_choice_model(), ex.drug_choice_panel(df),
            jic.Halton(20 if quick else 100, scramble=False))


def small_model() -> jic.ICLV:
    """The 40-parameter MNL ICLV at its default starting values."""
    return jic.ICLV(
        latent=jic.Structural({"att": ["age", "female"], "habit": ["age", "female"]}),
        measurement=jic.OrderedProbit({"att": ["a1", "a2", "a3"], "habit": ["h1", "h2", "h3"]},
                                      levels=5),
        choice=jic.MultinomialLogit(["car", "bus", "rail"], attributes=["cost", "time"],
                                    latent={"att": ["bus"], "habit": ["rail"]}))


SMALL_TRUTH = {"att.gamma.age": 0.4, "att.gamma.female": -0.3, "habit.gamma.age": -0.2,
               "habit.gamma.female": 0.5, "asc.bus": -0.3, "asc.rail": 0.2, "beta.cost": -0.8,
               "beta.time": -0.5, "theta.att.bus": 0.6, "theta.habit.rail": -0.7}


def _small(quick: bool):
    truth = jic.set_values(small_model(), SMALL_TRUTH)
    data = jic.simulate(truth, 60 if quick else 300, 8, seed=7).data
    panel = jic.Panel.from_dataframe(
        data, id="id", choice="choice",
        attributes={a: [f"{a}_{alt}" for alt in ("car", "bus", "rail")] for a in ("cost", "time")},
        alternatives=list(truth.choice.codes), covariates=["age", "female"],
        indicators=["a1", "a2", "a3", "h1", "h2", "h3"])
    return small_model(), panel, jic.Halton(20 if quick else 100, seed=0)


def study(name: str, quick: bool = False):
    """``(model at its starting values, panel, draws)`` of the study ``name``."""
    if name == "reference":
        data = ex.reference_data()
        if quick:
            data = data[data["id"].isin(data["id"].unique()[:60])]
        return ex.reference_model(), ex.reference_panel(data), jic.Halton(20 if quick else 100,
                                                                         seed=0)
    if name == "drug-choice":
        return _drug_choice(quick)
    if name == "small":
        return _small(quick)
    raise ValueError(f"study must be one of {STUDIES}, got {name!r}")
