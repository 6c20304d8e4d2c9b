"""Run in a fresh process with several (forced CPU) devices: the same problems on one device
and sharded over every device, their largest relative differences written as JSON.

``python tests/sharded_check.py OUT.json CASE [CASE ...]``: a case ``N`` (a number of
individuals) is a two-LV model (ordered logit and normal indicators, one shared; a
multinomial logit with availability and interactions; unbalanced tasks; sampling weights; a
missing answer) on one device and on every device: the LL, analytic and autodiff gradients,
scores, ``second_order`` (the structured Hessian) and every Hessian method at a random
point; a case ``N+fly`` also the LL, gradient, scores and ``second_order`` with the draws
made on the fly on every device. The case ``estimate`` is a whole
``estimate`` of an identified one-LV model and its post-estimation (posterior, predict,
shares, component table). Differences are ``max |sharded - single| / max |single|`` per
quantity; the tests set the bounds.
"""

from __future__ import annotations

import json
import os
import sys

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jaxiclv as jic  # noqa: E402
from helpers import (leaf_rel_error, panel_from_frame, random_values,  # noqa: E402
                     simulated_frame, with_random_values)

N_DRAWS = 6
ESTIMATED = 62  # individuals of the estimated problem (2 padded on 4 devices)


def model():
    latent = jic.Structural({"a": ["z1"], "b": ["z1", "z2"]}, parents={"b": ["a"]},
                            free_scale=["b"])
    return jic.ICLV(latent, [jic.OrderedLogit({"a": ["q1"], "b": ["q2"]}, levels=3),
                             jic.NormalIndicators({"a": ["y1"], "b": ["y1", "y2"]})],
                    jic.MultinomialLogit(["A", "B", "C"], attributes=["x"],
                                         latent={"a": ["B"], "b": ["C"]},
                                         interactions={"x": ["b"]}))


def estimated_model():
    """One LV, three normal indicators, a logit with the LV in one utility: identified with
    ``ESTIMATED`` individuals simulated from it."""
    return jic.ICLV(jic.Structural({"a": ["z1"]}), [jic.NormalIndicators({"a": ["y1", "y2", "y3"]})],
                    jic.MultinomialLogit(["A", "B", "C"], attributes=["x"], latent={"a": ["B"]}))


def panel(spec, n):
    df = simulated_frame(spec, n, [1 + i % 3 for i in range(n)], seed=n)
    df["w"] = 0.5 + (df["id"] % 4) / 4.0
    if n > 1:  # the last individual skips y2 (alone, y2 would be answered by nobody)
        df.loc[df["id"] == df["id"].iloc[-1], "y2"] = np.nan
    return panel_from_frame(spec, df, weights="w", missing_indicators="drop")


def difference(got, want) -> float:
    """The largest ``leaf_rel_error`` over the leaves, NaN where both are NaN (a table's empty
    cells) left out, infinite where only one is."""
    def leaf(g, w):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if (np.isnan(g) != np.isnan(w)).any():
            return np.inf
        return leaf_rel_error(np.nan_to_num(g), np.nan_to_num(w))

    return max((leaf(g, w) for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))),
               default=0.0)


def compare(n: int, on_the_fly: bool) -> dict[str, float]:
    rng = np.random.default_rng(n)
    spec = with_random_values(model(), rng)
    data = panel(spec, n)
    draws = jic.Halton(N_DRAWS, seed=1)
    single = jic.Problem(spec, data, draws, devices=1, chunk_size=2)
    sharded = jic.Problem(spec, data, draws, chunk_size=2)
    assert len(sharded.devices) == jax.device_count() > 1
    theta = jnp.asarray(random_values(single.space.names, spec.latent.names, rng))
    out = {"devices": float(len(sharded.devices)),
           "padded": float(sharded.draws.shape[0] - n)}
    for what in ("loglik", "loglik_and_grad", "scores"):
        out[what] = difference(getattr(sharded, what)(theta), getattr(single, what)(theta))
    auto = {d: jic.Problem(spec, data, draws, gradient="autodiff", chunk_size=2,
                           devices=d) for d in (1, None)}
    out["autodiff gradient"] = difference(auto[None].loglik_and_grad(theta),
                                          auto[1].loglik_and_grad(theta))
    out["autodiff scores"] = difference(auto[None].scores(theta), auto[1].scores(theta))
    out["second_order"] = difference(sharded.second_order(theta), single.second_order(theta))
    out["explain_nonfinite"] = float(sharded.explain_nonfinite(theta) != "")
    if on_the_fly:
        fly = jic.Problem(spec, data, draws, chunk_size=2, draws_on_the_fly=True)
        for what in ("loglik", "loglik_and_grad", "scores", "second_order"):
            out[f"on the fly {what}"] = difference(getattr(fly, what)(theta),
                                                   getattr(single, what)(theta))
    for method in jic.HESSIANS:
        out[f"hessian {method}"] = difference(sharded.hessian(theta, method, batch_size=4),
                                              single.hessian(theta, method, batch_size=4))
    return out


def compare_estimates(devices=None) -> dict[str, float]:
    """A whole ``estimate`` of ``estimated_model`` (from its true values) on one device and on
    ``devices``, its post-estimation (posterior, predict, shares, the component table), and
    the LL, gradient, scores and structured Hessian of both problems at one point."""
    spec = with_random_values(estimated_model(), np.random.default_rng(0))
    data = panel(spec, ESTIMATED)
    draws = jic.Halton(N_DRAWS, seed=1)
    one, many = (jic.estimate(spec, data, draws, devices=d, chunk_size=8) for d in (1, devices))
    out = {"converged": float(one.converged and many.converged),
           "devices": float(len(many.problem.devices))}
    for name in ("llf", "params", "bse", "scores", "hessian"):
        out[f"estimate {name}"] = difference(np.asarray(getattr(many, name)),
                                             np.asarray(getattr(one, name)))
    # at the start (not the estimates, where the gradient is rounding), with the programs
    # the estimates compiled: the LL, gradient, scores, structured Hessian
    theta = one.problem.theta0
    out["second_order at the start"] = difference(many.problem.second_order(theta),
                                                  one.problem.second_order(theta))
    out["loglik_and_grad at the start"] = difference(many.problem.loglik_and_grad(theta),
                                                     one.problem.loglik_and_grad(theta))
    for name, f in (("posterior", jic.posterior), ("predict", jic.predict),
                    ("shares", jic.shares)):
        out[name] = difference(f(many).to_numpy(), f(one).to_numpy())
    out["component table"] = difference(many.components.to_numpy(), one.components.to_numpy())
    out["estimates"] = [float(many.llf), *map(float, many.params), *map(float, many.bse)]
    return out


def main(path: str, cases) -> None:
    results = {case: compare_estimates() if case == "estimate" else
               compare(int(case.removesuffix("+fly")), case.endswith("+fly")) for case in cases}
    for values in results.values():
        values["processes"] = float(jax.process_count())
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
