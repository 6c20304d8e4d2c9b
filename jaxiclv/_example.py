"""The bundled reference example, at the size of the reference study.

328 individuals, 5 latent variables (4 exogenous, each explained by 3 covariates; 1 endogenous,
explained by the 4 exogenous ones and the covariates), 38 five-point Likert items with an
ordered-probit measurement model (6 to 9 per latent variable), and 6 binary-probit choice tasks
per individual with 4 attributes and the 5 latent variables in the utility: 219 free
parameters. The data were generated once by :func:`generate_reference_data` with a fixed seed
from the true parameters of :func:`reference_truth`, and ship with the package.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from ._choice import BinaryProbit
from ._data import Panel
from ._latent import Structural
from ._measurement import OrderedProbit
from ._model import ICLV
from ._parameters import ParameterSpace, set_values
from ._simulate import simulate

__all__ = ["reference_model", "reference_truth", "reference_data", "reference_panel",
           "generate_reference_data"]

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
