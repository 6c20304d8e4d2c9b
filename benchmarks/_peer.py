"""Biogeme side by side with jaxiclv: the same simulated ICLV data, the same specification.

One latent variable explained by two covariates, four five-level ordered-probit items, a
multinomial logit over three alternatives with two generic attributes, constants for the
second and third alternatives and the latent variable in their utilities; a panel of ``T``
choices per individual, Monte Carlo integration over the latent variable. Both packages get
the same parameter vector: the Biogeme expression is written in jaxiclv's parameterisation
(thresholds ``tau1`` and log increments), with jaxiclv's parameter names.

Measured in each package: one log-likelihood with its gradient, one Hessian (Biogeme: its
analytical second derivatives; jaxiclv: the default structured Hessian), the whole estimation
from the same starting values, and the log-likelihood at the true values with many draws,
which must agree within simulation noise (the spread of jaxiclv's value over independently
scrambled Halton sequences sets the scale). Each package uses its own draws (Biogeme:
``NORMAL_HALTON2``; jaxiclv: scrambled Halton).

Biogeme 3.3 requires pandas < 3: install it in its own environment,
``pip install -e '.[peer]'``, and run ``python -m benchmarks --sizes peer`` there.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import numpy as np

import jaxiclv as jic

from ._measure import environment

ALTERNATIVES = (0, 1, 2)
ITEMS = ("q1", "q2", "q3", "q4")
ATTRIBUTES = ("cost", "time")
COVARIATES = ("age", "female")
SIZES = {"full": dict(n=500, t=6, r=100, r_agree=1000, seeds=5, repeat=5, max_iter=500),
         "quick": dict(n=30, t=2, r=5, r_agree=20, seeds=3, repeat=2, max_iter=20)}


def available() -> bool:
    return importlib.util.find_spec("biogeme") is not None


def peer_model() -> jic.ICLV:
    """The shared specification, at jaxiclv's default starting values."""
    return jic.ICLV(
        jic.Structural({"attitude": list(COVARIATES)}),
        jic.OrderedProbit({"attitude": list(ITEMS)}, levels=5),
        jic.MultinomialLogit(ALTERNATIVES, attributes=list(ATTRIBUTES),
                             latent={"attitude": [1, 2]}))


def peer_truth() -> jic.ICLV:
    return jic.set_values(peer_model(), {
        "attitude.gamma.age": 0.5, "attitude.gamma.female": -0.4,
        "q1.zeta.attitude": 1.0, "q2.zeta.attitude": 0.8, "q3.zeta.attitude": -0.7,
        "q4.zeta.attitude": 0.6, "asc.1": 0.3, "asc.2": -0.2, "beta.cost": -1.0,
        "beta.time": -0.5, "theta.attitude.1": 0.6, "theta.attitude.2": -0.4})


def _biogeme_loglike(data, names):
    """The Biogeme database and log-likelihood expression of the shared specification, with
    one ``Beta`` per jaxiclv parameter name (in the order of ``names``)."""
    from biogeme.database import Database
    from biogeme.expressions import (Beta, Draws, MonteCarlo, OrderedProbit,
                                     PanelLikelihoodTrajectory, Variable, exp, log)

    frame = data.assign(first=(data["task"] == 1).astype(float),
                        choice=data["choice"].astype(float))  # Biogeme reads numbers only
    database = Database("jaxiclv_peer", frame)
    database.panel("id")
    beta = {name: Beta(name.replace(".", "_"), 0.0, None, None, 0) for name in names}

    def lv():  # a new tree each time: Biogeme renames a panel's variables in place
        return (beta["attitude.gamma.age"] * Variable("age")
                + beta["attitude.gamma.female"] * Variable("female")
                + Draws("eta", "NORMAL_HALTON2"))
    indicators = 1.0
    for item in ITEMS:
        tau = [beta[f"{item}.tau1"]]
        for j in range(2, 5):
            tau.append(tau[-1] + exp(beta[f"{item}.log_dtau{j}"]))
        indicators = indicators * OrderedProbit(
            eta=beta[f"{item}.zeta.attitude"] * lv(), cutpoints=tau, y=Variable(item),
            categories=[1, 2, 3, 4, 5], enforce_order=False)

    def utility(alt):  # a new tree each time (see lv)
        v = sum(beta[f"beta.{a}"] * Variable(f"{a}_{alt}") for a in ATTRIBUTES)
        if alt != 0:
            v = v + beta[f"asc.{alt}"] + beta[f"theta.attitude.{alt}"] * lv()
        return v

    # the logit probability, written out so that every use of a utility is its own tree; the
    # indicators enter once per individual, in the first task's row
    choice_prob = sum((Variable("choice") == alt) * exp(utility(alt) - log(
        sum(exp(utility(other)) for other in ALTERNATIVES))) for alt in ALTERNATIVES)
    row = choice_prob * (Variable("first") * indicators + (1.0 - Variable("first")))
    return database, log(MonteCarlo(PanelLikelihoodTrajectory(row))), beta


def _timed(f, repeat: int) -> tuple[float, float]:
    """``(first call, median of repeat calls)`` in seconds."""
    start = time.perf_counter()
    f()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def run_peer(spec: dict) -> list[dict]:
    """Both packages on the same data: one row per package."""
    import jax

    from biogeme.biogeme import BIOGEME
    from biogeme.parameters import Parameters
    from biogeme.version import get_version

    size = SIZES["quick" if spec["quick"] else "full"]
    truth = peer_truth()
    sim = jic.simulate(truth, size["n"], size["t"], seed=7, binary_covariates=["female"])
    space = jic.ParameterSpace.from_model(truth)
    names, theta_true = space.names, np.asarray(space.flatten(truth))
    start_theta = np.asarray(space.flatten(peer_model()))
    common = dict(spec, n=size["n"], r=size["r"], n_params=len(names), tasks=size["t"],
                  **environment())

    # jaxiclv
    problem = jic.Problem(peer_model(), sim.panel, jic.Halton(size["r"]))
    theta = jax.numpy.asarray(theta_true)
    grad_first, grad_median = _timed(
        lambda: jax.block_until_ready(problem.loglik_and_grad(theta)), size["repeat"])
    hess_first, hess_median = _timed(
        lambda: jax.block_until_ready(problem.hessian(theta)), size["repeat"])
    start = time.perf_counter()
    result = jic.estimate(peer_model(), sim.panel, jic.Halton(size["r"]), max_iter=size["max_iter"])
    ours_estimation = time.perf_counter() - start
    agree = [float(jic.Problem(truth, sim.panel, jic.Halton(size["r_agree"], seed=s)).loglik(theta))
             for s in range(size["seeds"])]
    rows = [dict(common, method="peer", package=f"jaxiclv {jic.__version__}",
                 llgrad_first_s=grad_first, llgrad_median_s=grad_median,
                 hessian_first_s=hess_first, hessian_median_s=hess_median,
                 estimation_s=ours_estimation, iterations=result.iterations,
                 llf=result.llf, status=result.status.name.lower(),
                 ll_truth=statistics.mean(agree), ll_truth_sd=statistics.stdev(agree),
                 ll_truth_draws=size["r_agree"])]

    # Biogeme: one BIOGEME object per number of draws and starting point; its compiled
    # evaluator is what its estimation calls
    def biogeme_for(draws, values):
        database, loglike, beta = _biogeme_loglike(sim.data, names)
        for b, value in zip(beta.values(), values):
            b.init_value = float(value)
        # a Parameters object: Biogeme's default would write biogeme.toml into the folder
        model = BIOGEME(database, loglike, parameters=Parameters(), number_of_draws=draws,
                        generate_html=False,
                        generate_yaml=False, save_iterations=False,
                        max_iterations=size["max_iter"])
        model.model_name = "jaxiclv_peer"
        model.use_flatten_database = True  # panel data, as estimate() sets it
        return model, {b.name: float(v) for b, v in zip(beta.values(), values)}

    def evaluate(model, betas, gradient, hessian):
        _ = model.expressions_registry  # assigns the flattened panel's variable ids, as estimate()
        return model.function_evaluator.evaluate(the_betas=betas, gradient=gradient,
                                                 hessian=hessian, bhhh=False)
    model, at_truth = biogeme_for(size["r"], theta_true)
    grad_first, grad_median = _timed(lambda: evaluate(model, at_truth, True, False),
                                     size["repeat"])
    hess_first, hess_median = _timed(lambda: evaluate(model, at_truth, True, True),
                                     size["repeat"])
    many, at_truth_many = biogeme_for(size["r_agree"], theta_true)
    ll_truth = float(evaluate(many, at_truth_many, False, False).function)
    model, _ = biogeme_for(size["r"], start_theta)
    start = time.perf_counter()
    estimated = model.estimate()
    rows.append(dict(common, method="peer", package=f"biogeme {get_version()}",
                     llgrad_first_s=grad_first, llgrad_median_s=grad_median,
                     hessian_first_s=hess_first, hessian_median_s=hess_median,
                     estimation_s=time.perf_counter() - start,
                     iterations=estimated.optimization_messages.get("Number of iterations"),
                     llf=float(estimated.final_loglikelihood),
                     status=str(estimated.optimization_messages.get("Cause of termination")),
                     ll_truth=ll_truth, ll_truth_draws=size["r_agree"]))
    return rows
