"""The bundled reference example: its size, that the shipped data are what the seed makes, and
that the default optimiser reaches its optimum."""

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
