"""Models, data and problems for one benchmark case.

A case is ``(variant, n, r, dtype)``: the reference ICLV structure with ordered-probit items
(``"ordinal"``, the bundled reference example), the same structure with continuous
``NormalIndicators`` (``"continuous"``), or with the choice model's utility written by the user
in jax.numpy with the time coefficient scaled by the endogenous latent variable,
``beta_time exp(lambda LV)`` (``"nonlinear"``: a :class:`jaxiclv.Utility`, so the probit
kernel's derivative is hand-derived and the chain rule through the utility is ``jax.vjp``);
``n`` individuals, ``r`` Halton draws. Models are evaluated at the reference study's true
parameter values (``lambda = 0.3``). Larger samples replicate the base data set (328
individuals) with new ids; each individual still gets its own draws.

Two cases have random coefficients (:mod:`jaxiclv._mixed`): ``"random-cost"``, the reference
structure with a normal cost coefficient (``beta.cost.sd = 0.3``, one more draw dimension), on
the reference data; and ``"mixed-logit"``, a panel mixed logit without latent variables (4
alternatives, 10 tasks, 3 random coefficients: two normal, one negative lognormal) on data
simulated from it.

``quick`` shrinks the structure (2 latent variables, one explaining the other, with 2 items
each, 1 attribute: 31 parameters) so that a smoke test compiles in seconds.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pandas as pd

import jaxiclv as jic
from jaxiclv import _example as ex

QUICK_STRUCTURE = ({"health": 2}, ("intention", 2), ex.ATTRIBUTES[:1])
VARIANTS = ("ordinal", "continuous", "nonlinear", "random-cost", "mixed-logit")
LAMBDA = 0.3  # the nonlinear variant's true lambda
COST_SD = 0.3  # the random-cost variant's standard deviation of the cost coefficient
MIXED_TRUTH = {"asc.2": 0.2, "asc.3": -0.1, "asc.4": 0.1, "beta.x1": -0.8, "beta.x1.sd": 0.5,
               "beta.x2": 0.6, "beta.x2.sd": 0.4, "beta.x3.mu": -0.5, "beta.x3.sigma": 0.3}
MIXED_TASKS = 10


def mixed_logit() -> jic.ICLV:
    """A panel mixed logit without latent variables, at its default starting values."""
    return jic.ICLV(choice=jic.MultinomialLogit(
        ["1", "2", "3", "4"], attributes=["x1", "x2", "x3"],
        random={"x1": "normal", "x2": "normal", "x3": "-lognormal"}))


def nonlinear_utility(attributes, latent, scaled, scaling):
    """``asc + sum_a beta_a x_a + sum_l theta_l LV_l`` with ``beta_scaled`` multiplied by
    ``exp(lambda LV_scaling)``, under the built-in model's parameter names."""
    def utility(p, x, lv):
        total = p["asc"] + sum(p[f"theta.{l}"] * lv[l] for l in latent)
        for a in attributes:
            beta = p[f"beta.{a}"] * (jnp.exp(p["lambda"] * lv[scaling]) if a == scaled else 1.0)
            total = total + beta * x[a]
        return total
    start = {"asc": 0.0, "lambda": 0.0, **{f"beta.{a}": 0.0 for a in attributes},
             **{f"theta.{l}": 0.0 for l in latent}}
    return jic.Utility(utility, start, attributes=attributes, latent=latent)


def build_model(variant: str, quick: bool) -> jic.ICLV:
    """The reference structure (or its quick miniature) at its default starting values."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "mixed-logit":
        return mixed_logit()
    exogenous, (endogenous, count), attributes = (
        QUICK_STRUCTURE if quick else (ex.EXOGENOUS, ex.ENDOGENOUS, ex.ATTRIBUTES))
    items = {lv: ex._items(lv, k) for lv, k in (*exogenous.items(), (endogenous, count))}
    measurement = (jic.NormalIndicators(items) if variant == "continuous"
                   else jic.OrderedProbit(items, levels=5))
    if variant == "nonlinear":
        scaled = "time" if "time" in attributes else attributes[0]
        choice = jic.BinaryProbit(utility=nonlinear_utility(list(attributes), list(items),
                                                            scaled, endogenous))
    else:
        random = {"cost": "normal"} if variant == "random-cost" else None
        choice = jic.BinaryProbit(attributes=attributes, latent=list(items), random=random)
    return jic.ICLV(
        latent=jic.Structural({lv: list(ex.COVARIATES) for lv in items},
                              parents={endogenous: list(exogenous)}),
        measurement=measurement, choice=choice)


@functools.cache
def true_model(variant: str, quick: bool) -> jic.ICLV:
    """:func:`build_model` at the reference study's true values, by parameter name (for
    ``"ordinal"`` at full size this is exactly ``reference_truth()``); parameters the reference
    model lacks (``NormalIndicators``' intercepts and log standard deviations) stay at 0, and
    the nonlinear variant's ``lambda`` is :data:`LAMBDA`."""
    model = build_model(variant, quick)
    if variant == "mixed-logit":
        return jic.set_values(model, MIXED_TRUTH)
    truth = ex.reference_truth()
    values = {**jic.ParameterSpace.from_model(truth).values(truth), "lambda": LAMBDA,
              "beta.cost.sd": COST_SD}
    names = jic.ParameterSpace.from_model(model).values(model)
    return jic.set_values(model, {k: v for k, v in values.items() if k in names})


@functools.cache
def base_data(variant: str, quick: bool, n_base: int) -> pd.DataFrame:
    """The bundled reference data (also for the nonlinear variant, which has the same columns),
    or data simulated from :func:`true_model` with the reference individuals' covariates
    (the mixed logit: ``n_base`` individuals of its own)."""
    if variant == "mixed-logit":
        return jic.simulate(true_model(variant, quick), n_base, MIXED_TASKS, seed=ex.SEED).data
    if variant in ("ordinal", "nonlinear", "random-cost") and not quick:
        return ex.reference_data()
    reference = ex.reference_data()
    covariates = reference.groupby("id")[list(ex.COVARIATES)].first().reset_index(drop=True)
    return jic.simulate(true_model(variant, quick), n_base, ex.N_TASKS, seed=ex.SEED + 3,
                        covariates=covariates.iloc[:n_base].reset_index(drop=True)).data


def replicate(data: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` individuals of ``data`` copied as often as needed, with new ids."""
    width = int(data["id"].max())
    copies = -(-n // data["id"].nunique())
    out = pd.concat([data.assign(id=data["id"] + k * width) for k in range(copies)],
                    ignore_index=True)
    return out[out["id"].isin(out["id"].unique()[:n])]


def panel_for(model: jic.ICLV, data: pd.DataFrame) -> jic.Panel:
    choice = model.choice
    attributes = (list(choice.attributes) if choice.binary else
                  {a: [f"{a}_{alt}" for alt in choice.alternatives] for a in choice.attributes})
    return jic.Panel.from_dataframe(
        data, id="id", choice="choice", attributes=attributes,
        alternatives=None if choice.binary else choice.codes,
        covariates=list(model.latent.covariates),
        indicators=[i for block in model.measurement for i in block.indicators])


class Case:
    """One case's model, panel and draws, with a :class:`jaxiclv.Problem` per gradient kind
    (made on first use; all share the same draws, or with ``on_the_fly`` each makes them
    block by block), on one device or sharded over the first ``devices``."""

    def __init__(self, variant: str, n: int, r: int, dtype: str, quick: bool, n_base: int,
                 devices: int | None = None, on_the_fly: bool = False):
        self.model = true_model(variant, quick)
        if variant == "mixed-logit":  # its own simulated individuals, as many as asked for
            n_base = n
        self.panel = panel_for(self.model, replicate(base_data(variant, quick, n_base), n))
        self.dtype = jnp.dtype(dtype)
        # the (N, R, D) array, shared by the problems, or the generator, each problem making its
        # blocks' draws on the fly (the same values)
        self.on_the_fly = on_the_fly
        self.draws = (jic.Halton(r, seed=0) if on_the_fly else
                      jic.make_draws(jic.Halton(r, seed=0), n, self.model.n_draw_dims))
        self.devices = devices  # the individuals sharded over the first ``devices`` devices
        self._problems: dict[tuple[str, str], jic.Problem] = {}

    def problem(self, gradient: str = "analytic", pullbacks: str = "hand-derived") -> jic.Problem:
        if (gradient, pullbacks) not in self._problems:
            self._problems[gradient, pullbacks] = jic.Problem(
                self.model, self.panel, self.draws, dtype=self.dtype, gradient=gradient,
                pullbacks=pullbacks, devices=self.devices or 1,
                draws_on_the_fly=self.on_the_fly)
        return self._problems[gradient, pullbacks]

    @property
    def chunk_size(self) -> int | None:
        """The library's default block of individuals for this case (``chunk_size="auto"``)."""
        return self.problem().chunk_size

    @property
    def theta(self):
        """The true parameter values, in the case's dtype."""
        return self.problem().theta0

    @property
    def n_params(self) -> int:
        return self.problem().space.size


def check_against_reference() -> bool:
    """The full-size ordinal case is the bundled reference example at its true values."""
    truth = ex.reference_truth()
    space = jic.ParameterSpace.from_model(truth)
    ours = true_model("ordinal", False)
    return (space.names == jic.ParameterSpace.from_model(ours).names
            and np.array_equal(space.flatten(truth), space.flatten(ours)))
