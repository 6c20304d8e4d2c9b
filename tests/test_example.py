"""The bundled reference example: its size, that the shipped data are what the seed makes, and
that the default optimiser reaches its optimum; the coding of Apollo's drug-choice study."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxiclv as jic
from jaxiclv import _example as ex


def test_reference_example_has_the_reference_size():
    panel = ex.reference_panel()
    model = ex.reference_model()
    space = jic.ParameterSpace.from_model(model)
    assert panel.n_individuals == 328
    assert panel.n_observations == 328 * 6
    assert model.latent.n_latent == 5
    assert len(model.measurement[0].indicators) == 38
    assert space.size == 219


def test_shipped_reference_data_match_their_generator():
    shipped = ex.reference_data()
    regenerated = ex.generate_reference_data()
    assert list(shipped.columns) == list(regenerated.columns)
    pd.testing.assert_frame_equal(shipped, regenerated, check_dtype=False, rtol=1e-9, atol=1e-9)
    # the Likert items are exactly 1..5
    items = shipped[[c for c in shipped.columns if c[-2] == "_" and c[-1].isdigit()]]
    assert set(np.unique(items.to_numpy())) <= {1, 2, 3, 4, 5}


@pytest.mark.slow
def test_default_optimizer_reaches_the_reference_optimum():
    """``python -m jaxiclv``'s fit: the default optimiser (Newton, stopping on the Newton
    decrement) and L-BFGS at a tight relative-gradient tolerance reach the same optimum of
    the bundled example, to 1e-6 in LL."""
    model, panel, draws = ex.reference_model(), ex.reference_panel(), jic.Halton(100, seed=0)
    default = jic.estimate(model, panel, draws)
    lbfgs = jic.estimate(model, panel, draws, optimizer="lbfgs", gtol=1e-8)
    assert default.optimizer == "trust-exact" and default.converged and lbfgs.converged
    assert abs(default.llf - lbfgs.llf) <= 1e-6


DRUG_CHOICE = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "drugChoice.csv.gz"


def test_drug_choice_table_without_its_columns_is_a_clear_error():
    df = pd.read_csv(DRUG_CHOICE, nrows=20).drop(columns=["price_2", "attitude_patent"])
    with pytest.raises(ValueError, match=r"lacks the columns \['attitude_patent', 'price_2'\]"):
        ex.drug_choice_panel(df)


def test_drug_choice_coding_is_apollos():
    """The study as ``notebooks/data/drugChoice.md`` describes it: 1,000 respondents x 10 tasks,
    37 free parameters; each dummy is 1 exactly where its alternative has the level, and present
    only in the alternatives where the level occurs (Novum, Switzerland, Denmark and double
    strength in the branded 1 and 2; BestValue, Supermarket, PainAway, India, Russia and Brazil
    in the generic 3 and 4; fast acting in all); side effects and price as they are."""
    df = pd.read_csv(DRUG_CHOICE)  # sorted by ID, then task
    panel, model = ex.drug_choice_panel(df), ex.drug_choice_model()
    assert (panel.n_individuals, panel.n_observations) == (1000, 10000)
    assert len(model.parameter_names()) == 37
    assert panel.arrays.attribute_names == ex.DRUG_ATTRIBUTES == tuple(model.choice.attributes)
    branded = {"brand_Novum", "country_Switzerland", "country_Denmark", "char_double_strength"}
    levels = {ex._dummy(v, level): (v, level) for v, kept in ex.DRUG_LEVELS.items()
              for level in kept}
    values = np.asarray(panel.arrays.attributes).reshape(10000, 4, -1)  # (tasks, J, A)
    for a, (name, columns) in enumerate(panel.arguments["attributes"].items()):
        where = ([True] * 4 if name in ("char_fast_acting", *ex.DRUG_NUMERIC)
                 else [True, True, False, False] if name in branded else [False, False, True, True])
        assert [c is not None for c in columns] == where, name
        variable, level = levels.get(name, (name, None))  # None: a numeric attribute
        raw = df[[f"{variable}_{j}" for j in ex.DRUG_ALTERNATIVES]].to_numpy()
        np.testing.assert_array_equal(values[:, :, a], raw if level is None else raw == level,
                                      err_msg=name)
