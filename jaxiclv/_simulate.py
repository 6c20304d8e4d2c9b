"""Simulate a dataset from a model with known parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

from ._data import Panel

__all__ = ["simulate", "Simulated"]


@dataclasses.dataclass(frozen=True)
class Simulated:
    """A simulated dataset: the long table, the panel built from it, the true latent
    variables ``(N, L)`` and the model that generated it."""

    data: pd.DataFrame
    panel: Panel
    latent: np.ndarray
    model: object


def simulate(model, n_individuals: int, n_tasks: int | Sequence[int] = 6, seed: int = 0,
             covariates: pd.DataFrame | None = None, binary_covariates: Sequence[str] = ()) -> Simulated:
    """Draw a long-format dataset from ``model`` at its current parameter values.

    Covariates are standard normal (or Bernoulli(1/2) for those in ``binary_covariates``)
    unless given as a DataFrame with one row per individual; attributes are standard normal.
    ``n_tasks`` is the number of tasks of every individual, or one number per individual
    (an unbalanced panel). Randomness comes from numpy's PCG64 with ``seed``, so a dataset is
    reproducible across platforms.
    """
    rng = np.random.default_rng(seed)
    structural = model.latent
    names = model.covariates
    tasks = np.broadcast_to(np.asarray(n_tasks, dtype=int), (n_individuals,))
    if np.any(tasks < 1):
        raise ValueError("every individual needs at least one task")

    if covariates is None:
        covariates = pd.DataFrame({
            name: (rng.integers(0, 2, n_individuals).astype(float) if name in binary_covariates
                   else rng.standard_normal(n_individuals))
            for name in names})
    z = covariates[list(names)].to_numpy(dtype=float).reshape(n_individuals, len(names))
    eta = rng.standard_normal((n_individuals, structural.n_draw_dims))
    z_of = lambda component: z[:, [names.index(n) for n in component.covariates]]
    lv = np.asarray(jax.vmap(structural)(z_of(structural), eta))  # (N, L)

    def lv_of(component):
        return lv[:, [structural.names.index(n) for n in component.latent]]

    columns = {name: np.repeat(z[:, c], tasks) for c, name in enumerate(names)}
    for block in model.measurement:
        values = block.sample(rng, lv_of(block), z_of(block))
        columns.update({name: np.repeat(values[:, k], tasks) for k, name in enumerate(block.indicators)})
    row_ids = np.repeat(np.arange(1, n_individuals + 1), tasks)
    frame = {"id": row_ids, "task": np.concatenate([np.arange(1, t + 1) for t in tasks])}

    panel_spec = dict(covariates=list(names),
                      indicators=[i for b in model.measurement for i in b.indicators])
    choice = model.choice
    if choice is not None:
        n_rows, n_alt = len(row_ids), choice.n_alternatives
        x = rng.standard_normal((n_rows, n_alt, len(choice.attributes)))
        inputs = lv_of(choice)  # (N, L_c), then the choice's own draws, one per individual
        if choice.draw_names:
            inputs = np.concatenate(
                [inputs, rng.standard_normal((n_individuals, len(choice.draw_names)))], axis=1)
        at_task = lambda x_t, in_t: choice.utilities(x_t[None], in_t[:, None])[0, :, 0]  # (J,)
        utility = np.asarray(jax.vmap(at_task)(x, np.repeat(inputs, tasks, axis=0)))
        available = np.ones((n_rows, n_alt), dtype=bool)
        chosen = choice.sample_choice(rng, utility[None], available[None])[0]
        if choice.binary:
            frame.update({a: x[:, 0, k] for k, a in enumerate(choice.attributes)})
            panel_spec["attributes"] = list(choice.attributes)
            frame["choice"] = chosen
        else:
            alts = choice.alternatives  # labels, for the column names
            for k, a in enumerate(choice.attributes):
                frame.update({f"{a}_{alt}": x[:, j, k] for j, alt in enumerate(alts)})
            panel_spec["attributes"] = {a: [f"{a}_{alt}" for alt in alts]
                                        for a in choice.attributes}
            panel_spec["alternatives"] = choice.codes
            codes = np.empty(len(choice.codes), dtype=object)
            codes[:] = choice.codes  # the user's codes, numbers or strings, as given
            frame["choice"] = pd.Series(codes[chosen]).infer_objects().to_numpy()
    else:
        frame["choice"] = np.zeros(len(row_ids), dtype=int)
    data = pd.DataFrame({**frame, **columns})
    panel = Panel.from_dataframe(data, id="id", choice="choice", **panel_spec)
    return Simulated(data=data, panel=panel, latent=lv, model=model)
