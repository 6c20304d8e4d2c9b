"""The bundled reference example, at the size of the reference study, and the coding of
Apollo's drug-choice study.

328 individuals, 5 latent variables (4 exogenous, each explained by 3 covariates; 1 endogenous,
explained by the 4 exogenous ones and the covariates), 38 five-point Likert items with an
ordered-probit measurement model (6 to 9 per latent variable), and 6 binary-probit choice tasks
per individual with 4 attributes and the 5 latent variables in the utility: 219 free
parameters. The data were generated once by :func:`generate_reference_data` with a fixed seed
from the true parameters of :func:`reference_truth`, and ship with the package.

Apollo's drug-choice ICLV (the Apollo package's ``apollo_drugChoiceData``, 1,000 respondents x
10 tasks, 4 alternatives, 1 latent variable, 4 ordered-logit items, 37 free parameters; the
data are ``notebooks/data/drugChoice.csv.gz``, described beside it, and do not ship with the
package): :func:`drug_choice_model` and :func:`drug_choice_panel`, the one copy of its coding,
used by notebook 05 and by the benchmarks.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from ._choice import BinaryProbit, MultinomialLogit
from ._data import Panel
from ._latent import Structural
from ._measurement import OrderedLogit, OrderedProbit
from ._model import ICLV, share
from ._parameters import ParameterSpace, set_values
from ._simulate import simulate

__all__ = ["reference_model", "reference_truth", "reference_data", "reference_panel",
           "generate_reference_data", "drug_choice_model", "drug_choice_panel"]

N_INDIVIDUALS, N_TASKS, SEED = 328, 6, 20260401
COVARIATES = ("age", "female", "income")
EXOGENOUS = {"health": 8, "environment": 7, "convenience": 8, "price_sensitivity": 6}
ENDOGENOUS = ("intention", 9)
ATTRIBUTES = ("cost", "time", "quality", "distance")


def _items(lv: str, count: int) -> list[str]:
    return [f"{lv}_{k}" for k in range(1, count + 1)]


def reference_model() -> ICLV:
    """The reference specification at its default starting values."""
    covariates = {lv: list(COVARIATES) for lv in EXOGENOUS}
    covariates[ENDOGENOUS[0]] = list(COVARIATES)
    indicators = {lv: _items(lv, k) for lv, k in (*EXOGENOUS.items(), ENDOGENOUS)}
    return ICLV(
        latent=Structural(covariates, parents={ENDOGENOUS[0]: list(EXOGENOUS)}),
        measurement=OrderedProbit(indicators, levels=5),
        choice=BinaryProbit(attributes=ATTRIBUTES, latent=list(indicators)),
    )


def reference_truth() -> ICLV:
    """The reference model at the true parameter values that generated the bundled data."""
    model = reference_model()
    rng = np.random.default_rng(SEED)
    values = {}
    for name in ParameterSpace.from_model(model).names:
        kind = name.split(".")[-2] if ".zeta." in name or ".gamma." in name or ".b." in name else name.split(".")[-1]
        if kind == "zeta":
            value = rng.uniform(0.3, 0.8)
        elif kind == "tau1":
            value = rng.uniform(-1.8, -1.0)
        elif kind.startswith("log_dtau"):
            value = np.log(rng.uniform(0.6, 1.2))
        elif kind == "gamma":
            value = rng.uniform(-0.5, 0.5)
        elif kind == "b":
            value = rng.uniform(0.2, 0.5)
        elif kind == "asc":
            value = 0.3
        elif name.startswith("beta."):
            value = {"cost": -0.8, "time": -0.5, "quality": 0.6, "distance": -0.3}[name[5:]]
        else:  # theta: latent variables in the utility
            value = rng.uniform(-0.6, 0.6)
        values[name] = round(float(value), 3)
    return set_values(model, values)


def generate_reference_data() -> pd.DataFrame:
    """Regenerate the bundled data set from the true parameters (deterministic)."""
    rng = np.random.default_rng(SEED + 1)
    covariates = pd.DataFrame({"age": np.round(rng.uniform(-1.5, 1.5, N_INDIVIDUALS), 3),
                               "female": rng.integers(0, 2, N_INDIVIDUALS).astype(float),
                               "income": np.round(rng.standard_normal(N_INDIVIDUALS), 3)})
    return simulate(reference_truth(), N_INDIVIDUALS, N_TASKS, seed=SEED + 2,
                    covariates=covariates).data


def reference_data() -> pd.DataFrame:
    """The bundled data set (long format, one row per choice task)."""
    with resources.files("jaxiclv").joinpath("data/reference.csv").open() as f:
        return pd.read_csv(f)


def reference_panel(data: pd.DataFrame | None = None) -> Panel:
    """The bundled data as a :class:`Panel`."""
    model = reference_model()
    return Panel.from_dataframe(
        reference_data() if data is None else data, id="id", choice="choice",
        attributes=list(ATTRIBUTES), covariates=list(COVARIATES),
        indicators=[i for block in model.measurement for i in block.indicators])


# Apollo's drug-choice study (notebook 05 shows this section as it is, from here to the end):
# alternatives 1, 2 branded, 3, 4 generic; the levels of brand, country and characteristic that
# get a dummy (the others, Artemis, USA and standard, are the reference); side effects and
# price as they are
DRUG_ALTERNATIVES = (1, 2, 3, 4)
DRUG_LEVELS = {"brand": ("Novum", "BestValue", "Supermarket", "PainAway"),
               "country": ("Switzerland", "Denmark", "India", "Russia", "Brazil"),
               "char": ("fast acting", "double strength")}
DRUG_NUMERIC = ("side_effects", "price")


def _dummy(variable: str, level: str) -> str:
    return f"{variable}_{level.replace(' ', '_')}"


DRUG_ATTRIBUTES = (*(_dummy(variable, level) for variable, kept in DRUG_LEVELS.items()
                     for level in kept), *DRUG_NUMERIC)
DRUG_ITEMS = ("attitude_quality", "attitude_ingredients", "attitude_patent",
              "attitude_dominance")
DRUG_COVARIATES = ("regular_user", "university_educated", "over_50")


def drug_choice_panel(frame: pd.DataFrame) -> Panel:
    """Apollo's drugChoice table (or some of its respondents) as a :class:`Panel`: for each
    level in :data:`DRUG_LEVELS`, its dummy ``{variable}_{level}_{j}`` in alternative ``j``
    (``None`` where the level never occurs in ``j``: Novum only in the branded ones, say), then
    ``side_effects_j`` and ``price_j``; the choice is ``best``. A table without one of the
    columns these need raises a ValueError naming every missing one."""
    needed = ["ID", "best", *DRUG_ITEMS, *DRUG_COVARIATES,
              *(f"{variable}_{j}" for variable in DRUG_LEVELS for j in DRUG_ALTERNATIVES),
              *(f"{name}_{j}" for name in DRUG_NUMERIC for j in DRUG_ALTERNATIVES)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"the drug-choice table lacks the columns {missing} (Apollo's "
                         f"drugChoice columns are needed)")
    df = frame.copy()
    attributes = {}
    for variable, kept in DRUG_LEVELS.items():
        for level in kept:
            name = _dummy(variable, level)
            columns = [f"{name}_{j}" for j in DRUG_ALTERNATIVES]
            for j, column in zip(DRUG_ALTERNATIVES, columns):
                df[column] = (df[f"{variable}_{j}"] == level).astype(float)
            attributes[name] = [c if df[c].any() else None for c in columns]
    for name in DRUG_NUMERIC:
        attributes[name] = [f"{name}_{j}" for j in DRUG_ALTERNATIVES]
    return Panel.from_dataframe(df, id="ID", choice="best", attributes=attributes,
                                alternatives=list(DRUG_ALTERNATIVES),
                                indicators=list(DRUG_ITEMS), covariates=list(DRUG_COVARIATES))


def drug_choice_model() -> ICLV:
    """Apollo's drug-choice ICLV at Apollo's starting values: ``LV`` explained by the three
    covariates; each item an ordered logit in ``zeta LV`` (start ``zeta = 1``, thresholds
    ``(-2, -1, 1, 2)``); a multinomial logit without constants over :data:`DRUG_ATTRIBUTES`
    with one ``lambda LV`` (start 1) in the utilities of the branded alternatives 1 and 2."""
    model = ICLV(
        latent=Structural({"LV": list(DRUG_COVARIATES)}),
        measurement=OrderedLogit({"LV": list(DRUG_ITEMS)}, levels=5),
        choice=MultinomialLogit(list(DRUG_ALTERNATIVES), attributes=list(DRUG_ATTRIBUTES),
                                asc=[], latent={"LV": [1, 2]}))
    model = share(model, {"lambda": ["theta.LV.1", "theta.LV.2"]})
    start = {f"{item}.{name}": value for item in DRUG_ITEMS
             for name, value in (("zeta.LV", 1.0), ("tau1", -2.0), ("tau2", -1.0),
                                 ("tau3", 1.0), ("tau4", 2.0))}
    return set_values(model, {**start, "lambda": 1.0})
