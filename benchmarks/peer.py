"""Biogeme side by side with jaxiclv: one ICLV specification, the same data, the same draws.

``python -m benchmarks.peer --package biogeme --task fit --optimizer simple_bounds_newton
--json out.json [--quick]`` makes one measurement in a fresh process. The suite
(``python -m benchmarks --sizes peer``) starts one process per entry of :data:`MEASUREMENTS`,
with jaxiclv's compilation cache off (``JAXICLV_COMPILATION_CACHE=off``; Biogeme has none), so
that in both packages a first call compiles and a whole fit in a fresh process is cold.

The model: one latent variable explained by two covariates, four five-level ordered-probit
items, a multinomial logit over three alternatives with two generic attributes, constants for
the second and third alternatives and the latent variable in their utilities; a panel of ``T``
choices per individual, simulated integration over the latent variable. Both packages get the
same parameter vector: the Biogeme expression is written in jaxiclv's parameterisation
(thresholds ``tau1`` and log increments), with jaxiclv's parameter names.

**Common draws.** jaxiclv's scrambled Halton normals ``(N, R, 1)`` are made once and given to
both packages: to jaxiclv as its draws array, to Biogeme as a user-defined random number
generator (row ``n`` of Biogeme's database is individual ``n``). Both then maximise the same
function: their log-likelihoods at the same point agree to rounding (recorded at the true
values).

**A lean Biogeme expression**, as Biogeme's own flat panel examples write it (swissmetro
``b12panel_flat``): one row per individual (``choice_t``, ``cost_j_t``, ...), the four ordered
probits once per individual, times ``exp`` of the sum over tasks of the logit
log-probabilities (``models.loglogit``), inside ``log(MonteCarlo(...))``: nothing is evaluated
and then masked out.

Tasks:

- ``kernels``: LL + gradient and the Hessian (jaxiclv: the default structured Hessian;
  Biogeme: its analytical second derivatives) at the true values, the first call (compilation
  included) and the median of ``repeat`` calls; the LL at the true values.
- ``fit``: the whole estimation from the same starting values, twice in the process: cold
  (compilation included), then warm. jaxiclv: ``jic.estimate`` with ``optimizer``
  (``trust-exact``, Newton, its default; ``lbfgs``). Biogeme: ``BIOGEME.estimate`` with
  ``optimization_algorithm`` (``automatic``, its default, which on a Monte Carlo model
  turns second derivatives off and runs BFGS; ``simple_bounds_newton``: Newton with the
  analytical Hessian at every iteration; ``TR-newton``: its other trust-region Newton).

Biogeme 3.3 requires pandas < 3: install it in its own environment,
``pip install -e '.[peer]'``, and run ``python -m benchmarks --sizes peer`` there. Biogeme 3.3.2 is
the newest release on the package index this project reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ALTERNATIVES = (0, 1, 2)
ITEMS = ("q1", "q2", "q3", "q4")
ATTRIBUTES = ("cost", "time")
COVARIATES = ("age", "female")
SIZES = {"full": dict(n=500, t=6, r=100, repeat=5, max_iter=500),
         "quick": dict(n=30, t=2, r=5, repeat=2, max_iter=20)}
MEASUREMENTS = {
    "full": (("jaxiclv", "kernels", None), ("biogeme", "kernels", None),
             ("jaxiclv", "fit", "trust-exact"), ("jaxiclv", "fit", "lbfgs"),
             ("biogeme", "fit", "automatic"), ("biogeme", "fit", "simple_bounds_newton"),
             ("biogeme", "fit", "TR-newton")),
    "quick": (("jaxiclv", "kernels", None), ("biogeme", "kernels", None),
              ("jaxiclv", "fit", "trust-exact"), ("biogeme", "fit", "simple_bounds_newton"))}
"""``(package, task, optimizer)``: one fresh process each, in this order."""


def peer_model():
    """The shared specification, at jaxiclv's default starting values."""
    import jaxiclv as jic
    return jic.ICLV(
        jic.Structural({"attitude": list(COVARIATES)}),
        jic.OrderedProbit({"attitude": list(ITEMS)}, levels=5),
        jic.MultinomialLogit(ALTERNATIVES, attributes=list(ATTRIBUTES),
                             latent={"attitude": [1, 2]}))


def peer_truth():
    import jaxiclv as jic
    return jic.set_values(peer_model(), {
        "attitude.gamma.age": 0.5, "attitude.gamma.female": -0.4,
        "q1.zeta.attitude": 1.0, "q2.zeta.attitude": 0.8, "q3.zeta.attitude": -0.7,
        "q4.zeta.attitude": 0.6, "asc.1": 0.3, "asc.2": -0.2, "beta.cost": -1.0,
        "beta.time": -0.5, "theta.attitude.1": 0.6, "theta.attitude.2": -0.4})


class Study:
    """The simulated data, the common draws ``(N, R, 1)``, the parameter names and the true and
    starting values, the same in every process (fixed seeds)."""

    def __init__(self, size: dict):
        import numpy as np

        import jaxiclv as jic
        self.size = size
        truth = peer_truth()
        self.sim = jic.simulate(truth, size["n"], size["t"], seed=7,
                                binary_covariates=["female"])
        self.draws = jic.Halton(size["r"])(self.sim.panel.n_individuals, 1)  # (N, R, 1)
        space = jic.ParameterSpace.from_model(truth)
        self.names = space.names
        self.truth = np.asarray(space.flatten(truth))
        self.start = np.asarray(space.flatten(peer_model()))

    def wide(self):
        """One row per individual, in the panel's order: ``choice_t``, ``{attribute}_{j}_t``
        for tasks ``t = 1..T``, the covariates and the items."""
        long = self.sim.data
        frame = long[long["task"] == 1].set_index("id")[list(COVARIATES) + list(ITEMS)]
        for t, task in long.groupby("task"):
            task = task.set_index("id")
            frame[f"choice_{t}"] = task["choice"]
            for a in ATTRIBUTES:
                for j in ALTERNATIVES:
                    frame[f"{a}_{j}_{t}"] = task[f"{a}_{j}"]
        return frame.loc[list(self.sim.panel.ids)].astype(float).reset_index(drop=True)


def _timed(f, repeat: int) -> tuple[float, float]:
    """``(first call, median of repeat calls)`` in seconds (:func:`benchmarks._measure.measure`,
    the suite's one timing helper, with no time budget)."""
    from ._measure import measure
    timing, _ = measure(f, repeat, budget_s=float("inf"))
    return timing["first_s"], timing["median_s"]


# ---------------------------------------------------------------------------------------------
# jaxiclv
# ---------------------------------------------------------------------------------------------

def _jaxiclv(study: Study, task: str, optimizer: str | None) -> dict:
    import jax

    import jaxiclv as jic
    row = dict(package="jaxiclv", version=jic.__version__)
    if task == "kernels":
        problem = jic.Problem(peer_model(), study.sim.panel, study.draws)
        theta = jax.numpy.asarray(study.truth)
        row["llgrad_first_s"], row["llgrad_median_s"] = _timed(
            lambda: problem.loglik_and_grad(theta), study.size["repeat"])
        row["hessian_first_s"], row["hessian_median_s"] = _timed(
            lambda: problem.hessian(theta), study.size["repeat"])
        row["ll_at_truth"] = float(problem.loglik(theta))
        return row
    for call in ("cold", "warm"):
        start = time.perf_counter()
        result = jic.estimate(peer_model(), study.sim.panel, study.draws, optimizer=optimizer,
                              max_iter=study.size["max_iter"])
        row[call] = dict(wall_s=time.perf_counter() - start, iterations=result.iterations,
                         llf=result.llf, status=result.status.name.lower())
    return row


# ---------------------------------------------------------------------------------------------
# Biogeme
# ---------------------------------------------------------------------------------------------

def _biogeme_loglike(study: Study):
    """The database and the log-likelihood expression, with one ``Beta`` per jaxiclv
    parameter name (``.`` written ``_``), in the order of ``study.names``."""
    from biogeme.database import Database
    from biogeme.expressions import (Beta, Draws, MonteCarlo, OrderedProbit, Variable, exp,
                                     log)
    from biogeme.models import loglogit

    database = Database("jaxiclv_peer", study.wide())
    beta = {name: Beta(name.replace(".", "_"), 0.0, None, None, 0) for name in study.names}
    lv = (beta["attitude.gamma.age"] * Variable("age")
          + beta["attitude.gamma.female"] * Variable("female") + Draws("eta", "JAXICLV"))
    indicators = 1.0
    for item in ITEMS:
        tau = [beta[f"{item}.tau1"]]
        for j in range(2, 5):
            tau.append(tau[-1] + exp(beta[f"{item}.log_dtau{j}"]))
        indicators = indicators * OrderedProbit(
            eta=beta[f"{item}.zeta.attitude"] * lv, cutpoints=tau, y=Variable(item),
            categories=[1, 2, 3, 4, 5], enforce_order=False)

    def utilities(t):
        v = {}
        for j in ALTERNATIVES:
            v[j] = sum(beta[f"beta.{a}"] * Variable(f"{a}_{j}_{t}") for a in ATTRIBUTES)
            if j != 0:
                v[j] = v[j] + beta[f"asc.{j}"] + beta[f"theta.attitude.{j}"] * lv
        return v

    choices = exp(sum(loglogit(utilities(t), None, Variable(f"choice_{t}"))
                      for t in range(1, study.size["t"] + 1)))
    return database, log(MonteCarlo(indicators * choices)), beta


def _biogeme_model(study: Study, values, optimizer: str = "automatic"):
    """A ``BIOGEME`` object at ``values``, with the common draws; and those values by
    Biogeme's parameter names."""
    from biogeme.biogeme import BIOGEME
    from biogeme.draws import RandomNumberGeneratorTuple
    from biogeme.parameters import Parameters

    database, loglike, beta = _biogeme_loglike(study)
    for b, value in zip(beta.values(), values):
        b.init_value = float(value)
    draws = study.draws[:, :, 0]  # (N, R)

    def common_draws(sample_size: int, number_of_draws: int):
        if (sample_size, number_of_draws) != draws.shape:
            raise ValueError(f"Biogeme asked for {(sample_size, number_of_draws)} draws, "
                             f"not {draws.shape}")
        return draws

    # a Parameters object: Biogeme's default would write biogeme.toml into the folder
    model = BIOGEME(database, loglike, parameters=Parameters(),
                    random_number_generators={"JAXICLV": RandomNumberGeneratorTuple(
                        common_draws, "jaxiclv's scrambled Halton normals")},
                    number_of_draws=study.size["r"], generate_html=False,
                    generate_yaml=False, save_iterations=False,
                    max_iterations=study.size["max_iter"], optimization_algorithm=optimizer)
    model.model_name = "jaxiclv_peer"
    by_name = {b.name: float(v) for b, v in zip(beta.values(), values)}
    # in Biogeme's own order: its estimate(starting_values=...) takes the dict's values by
    # position, not by name (Biogeme 3.3.2: given in another order, its optimiser starts from
    # a permuted point and stalls with "Trust region is too small")
    return model, {name: by_name[name] for name in model.expressions_registry.free_betas_names}


def _biogeme(study: Study, task: str, optimizer: str | None) -> dict:
    from biogeme.version import get_version
    row = dict(package="biogeme", version=get_version())
    if task == "kernels":
        model, at_truth = _biogeme_model(study, study.truth)

        def evaluate(gradient, hessian):
            return model.function_evaluator.evaluate(the_betas=at_truth, gradient=gradient,
                                                     hessian=hessian, bhhh=False)
        row["llgrad_first_s"], row["llgrad_median_s"] = _timed(
            lambda: evaluate(True, False), study.size["repeat"])
        row["hessian_first_s"], row["hessian_median_s"] = _timed(
            lambda: evaluate(True, True), study.size["repeat"])
        row["ll_at_truth"] = float(evaluate(False, False).function)
        return row
    model, start = _biogeme_model(study, study.start, optimizer)
    for call in ("cold", "warm"):
        began = time.perf_counter()
        estimated = model.estimate(starting_values=start)
        messages = estimated.optimization_messages
        row[call] = dict(wall_s=time.perf_counter() - began,
                         iterations=messages.get("Number of iterations"),
                         llf=float(estimated.final_loglikelihood),
                         status=str(messages.get("Cause of termination")))
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, choices=("jaxiclv", "biogeme"))
    parser.add_argument("--task", required=True, choices=("kernels", "fit"))
    parser.add_argument("--optimizer", default=None)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    import jax
    if args.quick:  # a smoke test: compile fast, time nothing
        jax.config.update("jax_disable_most_optimizations", True)
    from ._measure import environment
    size = SIZES["quick" if args.quick else "full"]
    study = Study(size)
    measure = _jaxiclv if args.package == "jaxiclv" else _biogeme
    row = dict(task=args.task, optimizer=args.optimizer, n=size["n"], tasks=size["t"],
               r=size["r"], n_params=len(study.names),
               **measure(study, args.task, args.optimizer), **environment())
    args.json.write_text(json.dumps(row, indent=1))
    sys.stderr.write(f"[benchmarks.peer] {args.package} {args.task} {args.optimizer or ''}\n")


if __name__ == "__main__":
    main()
