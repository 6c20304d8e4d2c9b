"""Write the notebooks in this folder from the cell sources below (without outputs).

    .venv/bin/python notebooks/_build.py            # rewrite the .ipynb files, no outputs
    JAXICLV_QUICK=1 .venv/bin/python notebooks/_build.py --execute   # and run them in place

Edit the notebooks here, not in Jupyter, so that they stay easy to review and maintain.
Every notebook starts from a fresh kernel; nothing is shared between notebooks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Says which mode produced the outputs stored in the repository: the mode of the run of
# ``_build.py --execute`` that wrote them (JAXICLV_QUICK set or not).
if os.environ.get("JAXICLV_QUICK") == "1":
    OUTPUTS_NOTE = ("*The outputs stored with this notebook were produced in QUICK mode "
                    "(`JAXICLV_QUICK=1`: reduced model and sizes) on a CPU; the first code cell "
                    "prints the device. Run it without `JAXICLV_QUICK` for the full reference "
                    "sizes, on a laptop CPU or a CUDA machine.*")
else:
    OUTPUTS_NOTE = ("*The outputs stored with this notebook were produced in full mode (the "
                    "reference sizes); the first code cell prints the device. Set "
                    "`JAXICLV_QUICK=1` for a reduced run of well under a minute.*")


SETUP = '''\
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import jaxiclv as jic
from jaxiclv import _example as ex

QUICK = os.environ.get("JAXICLV_QUICK") == "1"
print("QUICK mode" if QUICK else "full mode", "| devices:", jax.devices())
pd.set_option("display.width", 160)'''

# The reduced model used in QUICK mode: two of the reference latent variables (one exogenous,
# and the endogenous one that depends on it), four Likert items each, the same covariates and
# choice attributes, at the reference true values. JIT compilation of the full 219-parameter
# reference model alone takes longer than QUICK mode's time budget on a small CPU.

# the data of every notebook: the bundled reference data, or a small simulated set in QUICK mode
DATA = '''\
if QUICK:
    panel = jic.simulate(truth, 150, 6, seed=0).panel
    draws = jic.Halton(20, seed=0)
else:
    panel = ex.reference_panel()
    draws = jic.Halton(100, seed=0)
'''

MODELS = '''\
def reduced_model():
    """Two of the reference latent variables with four items each (QUICK mode)."""
    lvs = {"health": 4, "intention": 4}
    return jic.ICLV(
        latent=jic.Structural({lv: list(ex.COVARIATES) for lv in lvs},
                              parents={"intention": ["health"]}),
        measurement=jic.OrderedProbit({lv: [f"{lv}_{k}" for k in range(1, n + 1)]
                                       for lv, n in lvs.items()}, levels=5),
        choice=jic.BinaryProbit(attributes=list(ex.ATTRIBUTES), latent=list(lvs)))


def true_model(model):
    """``model`` at the reference true values (a parameter absent from the reference, such
    as the path health -> intention, keeps its default)."""
    reference = ex.reference_truth()
    values = jic.ParameterSpace.from_model(reference).values(reference)
    names = jic.ParameterSpace.from_model(model).names
    return jic.set_values(model, {n: values[n] for n in names if n in values})


model = reduced_model() if QUICK else ex.reference_model()   # starting values
truth = true_model(model)
names = jic.ParameterSpace.from_model(truth).names
print(f"{len(names)} free parameters")'''


def nb01():
    md, code = new_markdown_cell, new_code_cell
    return [
        md("# Quickstart: estimate an ICLV model and check it against the truth\n\n"
           "We estimate the bundled reference hybrid choice model (5 latent variables, 38 "
           "ordered-probit Likert items, 6 binary-probit choices per person, 219 parameters) by "
           "simulated maximum likelihood, compare the estimates with the true values that "
           "generated the data, and recover each person's latent variables from their answers "
           "and choices.\n\n"
           "Set `JAXICLV_QUICK=1` for a run of well under a minute on a laptop CPU: the model is "
           "then reduced to two latent variables with four items each, on a simulated data set "
           "of 150 people with 20 Halton draws.\n\n" + OUTPUTS_NOTE),
        code(SETUP),
        code(MODELS),
        md("## Data\n\nIn full mode, the bundled data set (328 people, generated once from the "
           "true parameters). In QUICK mode, a smaller data set simulated from the true "
           "parameters of the reduced model."),
        code(DATA + '''\
print(panel.n_individuals, "individuals,", panel.n_observations, "choice tasks")'''),
        md("## Estimation\n\n`jic.estimate` maximises the simulated log-likelihood by "
           "Newton's method in a trust region, with the analytic gradient and the exact "
           "Hessian (`structured`: assembled from per-draw scores), and stops when the Newton "
           "decrement is small; the Hessian at the estimates gives the robust (sandwich) "
           "standard errors."),
        code('''\
started = time.perf_counter()
result = jic.estimate(model, panel, draws, max_iter=300 if QUICK else 2000)
print(f"estimated in {time.perf_counter() - started:.1f} s")
true_values = pd.Series(jic.ParameterSpace.from_model(truth).values(truth), name="true")
print(result.summary(extra=true_values.to_frame()) if not QUICK else
      "\\n".join(result.summary(extra=true_values.to_frame()).splitlines()[:40]))'''),
        code("result.table().join(true_values).head(15)"),
        md("## Estimates against the true values\n\nEach dot is one parameter; the bars are "
           "95% confidence intervals (`result.conf_int()`). Points on the diagonal are "
           "recovered exactly; about 95% of the bars should cross it."),
        code('''\
ci = result.conf_int()
blocks = truth.parameter_blocks()
fig, ax = plt.subplots(figsize=(6.5, 6))
for block, colour in zip(("structural", "measurement", "choice"), ("C0", "C1", "C2")):
    sel = [n for n in result.names if blocks[n] == block]
    est = result.params[sel]
    ax.errorbar(true_values[sel], est, yerr=[est - ci.loc[sel, "lower"], ci.loc[sel, "upper"] - est],
                fmt="o", ms=3, lw=0.8, color=colour, label=f"{block} ({len(sel)})")
lims = np.array([min(true_values.min(), result.params.min()), max(true_values.max(), result.params.max())])
ax.plot(lims, lims, "k--", lw=0.8, label="estimate = truth")
ax.set_xlabel("true value")
ax.set_ylabel("estimate (95% interval)")
ax.set_title("Estimates against the true parameters")
ax.legend()
covered = ((ci["lower"] <= true_values[list(result.names)]) & (true_values[list(result.names)] <= ci["upper"])).mean()
print(f"{covered:.0%} of the 95% intervals contain the true value")'''),
        md("## Fit statistics and each component's log-likelihood\n\n"
           "`result.summary()` above starts with them; as data: `result.llf`, `result.llnull` "
           "(LL(0): every level and choice equally likely), `result.llconst` (LL(C): the "
           "sample shares and frequencies), `result.rho2`, `result.rho2_adj`, `result.aic`, "
           "`result.bic`, and `result.components`: each item's and the choice model's own "
           "simulated log-likelihood at the estimates, beside its LL(0) and LL(C)."),
        code('''\
print(f"LL {result.llf:.4f}, LL(0) {result.llnull:.4f}, LL(C) {result.llconst:.4f}, "
      f"rho2 {result.rho2:.4f}, adj. rho2 {result.rho2_adj:.4f}, BIC {result.bic:.2f}")
result.components.tail(8)'''),
        md("## Latent variables: posterior means against the true values\n\n"
           "Given the estimated parameters, person *i*'s latent variables at draw *r* are "
           "`LV_ir = structural(covariates_i, eta_ir)`, and the draw's likelihood `L_ir` "
           "weighs how well it explains that person's answers and choices. The posterior mean "
           "is `E[LV_i | data_i] = sum_r w_ir LV_ir` with `w_ir = L_ir / sum_r L_ir`, the "
           "weights the analytic gradient uses. `jic.posterior` gives it, with the posterior "
           "standard deviation and quantiles and the same given the covariates only (equal "
           "weights), here on a simulated data set whose true latent variables are known (in "
           "QUICK mode, the estimation data themselves), with 200 draws per person."),
        code('''\
sim = jic.simulate(truth, 150, 6, seed=0) if QUICK else jic.simulate(truth, 328, 6, seed=1)
lv_names = list(result.model.latent.names)
post = jic.posterior(result, data=sim.panel, draws=jic.Halton(200, seed=1))
ids = list(sim.panel.ids)                                    # the order of sim.latent
posterior = post["mean"].unstack().loc[ids, lv_names].to_numpy()            # (N, L)
prior_mean = post["prior mean"].unstack().loc[ids, lv_names].to_numpy()
pd.DataFrame({"corr(posterior mean, true)": [np.corrcoef(posterior[:, l], sim.latent[:, l])[0, 1] for l in range(len(lv_names))],
              "corr(prior mean, true)": [np.corrcoef(prior_mean[:, l], sim.latent[:, l])[0, 1] for l in range(len(lv_names))]},
             index=lv_names)'''),
        code('''\
show = np.arange(12)                                      # the first twelve people
fig, axes = plt.subplots(1, len(lv_names), figsize=(4 * len(lv_names), 3.6), squeeze=False)
for l, ax in enumerate(axes[0]):
    ax.plot(show, sim.latent[show, l], "ko", label="true")
    ax.plot(show, posterior[show, l], "C3s", mfc="none", label="posterior mean")
    ax.plot(show, prior_mean[show, l], "C0x", label="mean given covariates only")
    ax.set_xlabel("individual")
    ax.set_ylabel(f"latent variable '{lv_names[l]}'")
    ax.set_title(lv_names[l])
axes[0, 0].legend(fontsize=8)
fig.tight_layout()'''),
        code('''\
fig, axes = plt.subplots(1, len(lv_names), figsize=(4 * len(lv_names), 3.6), squeeze=False)
for l, ax in enumerate(axes[0]):
    ax.scatter(sim.latent[:, l], posterior[:, l], s=6, alpha=0.6)
    lim = np.abs(sim.latent[:, l]).max()
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    ax.set_xlabel(f"true '{lv_names[l]}'")
    ax.set_ylabel("posterior mean")
fig.suptitle("Posterior means of the latent variables, all individuals")
fig.tight_layout()'''),
        md("The posterior means shrink towards the covariate-based prediction (they are "
           "conditional expectations, not estimates of each person's value), and get closer "
           "to the truth the more items measure a latent variable."),
    ]


def nb02():
    md, code = new_markdown_cell, new_code_cell
    return [
        md("# Gradients: analytic, autodiff and finite differences\n\n"
           "`jaxiclv` ships a hand-derived (analytic) gradient of the simulated "
           "log-likelihood, registered with `jax.custom_vjp`. Here we check it against "
           "`jax.grad` of the plain likelihood (autodiff) and against central finite "
           "differences, block by block, time all three, and show where finite differences "
           "break down.\n\n" + OUTPUTS_NOTE),
        code(SETUP),
        code(MODELS),
        code(DATA + '''\
problems = {g: jic.Problem(truth, panel, draws, gradient=g) for g in jic.GRADIENTS}
theta = problems["analytic"].theta0          # the true parameter values
blocks = truth.parameter_blocks()
block_of = np.array([blocks[n] for n in problems["analytic"].space.names])
grads = {}
for g, problem in problems.items():
    llf, grad = jax.block_until_ready(problem.loglik_and_grad(theta))
    grads[g] = np.asarray(grad)
print(f"LL at the true values: {float(llf):.6f}")'''),
        md("## Agreement per parameter block\n\nLargest absolute difference from the analytic "
           "gradient, and the same relative to the block's largest gradient entry."),
        code('''\
rows = []
for g in ("autodiff", "finite-difference"):
    for block in ("structural", "measurement", "choice", "all"):
        sel = slice(None) if block == "all" else block_of == block
        diff = np.abs(grads[g][sel] - grads["analytic"][sel])
        rows.append({"vs analytic": g, "block": block, "parameters": int(np.size(diff)),
                     "max abs diff": diff.max(),
                     "max rel diff": diff.max() / np.abs(grads["analytic"][sel]).max()})
pd.DataFrame(rows)'''),
        code('''\
fig, ax = plt.subplots(figsize=(8, 3.8))
index = np.arange(len(theta))
scale = np.maximum(np.abs(grads["analytic"]), 1e-300)
for g, marker in (("autodiff", "o"), ("finite-difference", "x")):
    err = np.abs(grads[g] - grads["analytic"]) / np.abs(grads["analytic"]).max()
    ax.semilogy(index, np.maximum(err, 1e-20), marker, ms=3, label=g)
for block in ("measurement", "choice"):
    ax.axvline(np.flatnonzero(block_of == block)[0] - 0.5, color="grey", lw=0.6)
ax.set_xlabel("parameter index (structural | measurement | choice)")
ax.set_ylabel("|g - g_analytic| / max|g_analytic|")
ax.set_title("Difference from the analytic gradient (floored at 1e-20)")
ax.legend()
plt.show()'''),
        md("## Timing\n\nOne log-likelihood-and-gradient evaluation, after a warm-up call that "
           "compiles it; each timing waits for the result with `jax.block_until_ready`."),
        code('''\
def seconds_per_call(f, repeats):
    jax.block_until_ready(f(theta))                      # warm-up (compiled above already)
    started = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(f(theta))
    return (time.perf_counter() - started) / repeats

timings = pd.Series({g: seconds_per_call(p.loglik_and_grad, 3 if g == "finite-difference" else 10)
                     for g, p in problems.items()}, name="seconds per call")
timings["log-likelihood only"] = seconds_per_call(problems["analytic"].loglik, 10)
timings.to_frame().assign(relative=lambda t: t["seconds per call"] / t.loc["log-likelihood only", "seconds per call"])'''),
        code('''\
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(timings.index, timings.values * 1e3)
ax.set_xscale("log")
ax.set_xlabel("milliseconds per call (log scale)")
ax.set_title(f"{len(theta)} parameters, {panel.n_individuals} people, {problems['analytic'].draws.shape[1]} draws")
plt.show()'''),
        md("## Where finite differences go wrong\n\n"
           "The building block of a binary probit likelihood is `log Phi(v / sigma)`. Its "
           "derivative in `v` is the inverse Mills ratio `phi(z) / (sigma Phi(z))`, "
           "`z = v / sigma`. Central differences use a step `h = eps^(1/3) max(|v|, 1)`, about "
           "`6e-6`: once the scale `sigma` is of the order of the step, the difference quotient "
           "averages over a region where the function is far from linear, and it is wrong. The "
           "analytic derivative (here `jax.grad` of the stable `log_ndtr`, as inside "
           "`jaxiclv`) matches the closed form to rounding for every `sigma`, and also deep in "
           "the tail (`v / sigma = -40`, where `Phi` itself underflows to about `1e-350`)."),
        code('''\
from jax.scipy.special import log_ndtr
from jax.scipy.stats import norm
from jaxiclv._problem import central_difference_gradient

v = jnp.array([0.0])                         # a utility at the threshold
sigmas = np.logspace(-9, 0, 37)
rows = []
for sigma in sigmas:
    f = lambda t: log_ndtr(t[0] / sigma)
    z = v[0] / sigma
    exact = float(jnp.exp(norm.logpdf(z) - log_ndtr(z)) / sigma)    # inverse Mills ratio / sigma
    rows.append({"sigma": sigma,
                 "analytic": abs(float(jax.grad(f)(v)[0]) / exact - 1),
                 "finite difference": abs(float(central_difference_gradient(f, v)[0]) / exact - 1)})
errors = pd.DataFrame(rows).set_index("sigma")
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for column, marker in (("analytic", "o"), ("finite difference", "x")):
    ax.loglog(errors.index, np.maximum(errors[column], 1e-17), marker + "-", ms=4, label=column)
ax.axvline(np.finfo(float).eps ** (1 / 3), color="grey", ls=":", label="FD step eps^(1/3)")
ax.set_xlabel("scale sigma of the utility")
ax.set_ylabel("relative error of d/dv log Phi(v / sigma)")
ax.set_title("v = 0 (errors floored at 1e-17)")
ax.legend()
errors.iloc[::6]'''),
        code('''\
# Far in the tail: the naive log(Phi(z)) underflows, so its finite difference is useless,
# while the stable log_ndtr and its analytic derivative stay accurate.
z = jnp.array([-40.0])
naive = lambda t: jnp.log(norm.cdf(t[0]))
stable = lambda t: log_ndtr(t[0])
exact = float(jnp.exp(norm.logpdf(z[0]) - log_ndtr(z[0])))
pd.DataFrame({"value": [float(naive(z)), float(stable(z)), np.nan],
              "derivative": [float(central_difference_gradient(naive, z)[0]),
                             float(central_difference_gradient(stable, z)[0]),
                             exact],
              "analytic derivative": [float(jax.grad(naive)(z)[0]), float(jax.grad(stable)(z)[0]), exact]},
             index=["log(Phi(z)), finite difference", "log_ndtr(z), finite difference", "closed form phi/Phi"])'''),
        md("Finite differences are a check, not a method: their error depends on the step, on "
           "the scale of the parameters and on the size of the log-likelihood, and each costs "
           "`2P` likelihood evaluations, as the timing above shows."),
    ]


def nb03():
    md, code = new_markdown_cell, new_code_cell
    return [
        md("# Hessians and standard errors\n\n"
           "Standard errors come from the Hessian of the simulated log-likelihood. `jaxiclv` "
           "computes it exactly, two ways (`structured`, the default: assembled from the "
           "per-draw scores and the sparse per-draw second derivatives; `jacfwd`: forward-mode "
           "derivative of the analytic gradient), or by finite differences of the gradient "
           "(`fd-forward`, `fd-central`). Here we compare the four, look at the eigenvalues, "
           "and compare classical and robust standard errors.\n\n"
           "In full mode the comparison is made at the estimates of the reference model "
           "(`estimate(..., compare_hessians=True)`); in QUICK mode, to stay within a minute, "
           "at the true parameters of the reduced model on simulated data, without "
           "estimating.\n\n" + OUTPUTS_NOTE),
        code(SETUP),
        code(MODELS),
        code('''\
started = time.perf_counter()
if QUICK:
    panel = jic.simulate(truth, 150, 6, seed=0).panel
    problem = jic.Problem(truth, panel, jic.Halton(20, seed=0))
    theta = problem.theta0                                   # the true values
    comparison = problem.compare_hessians(theta)
    hess = comparison.hessians["structured"].matrix
    scores = np.asarray(problem.scores(theta))
    param_names = problem.space.names
else:
    panel = ex.reference_panel()
    result = jic.estimate(model, panel, jic.Halton(100, seed=0), compare_hessians=True)
    comparison = result.hessian_comparison
    hess, scores, param_names = result.hessian, result.scores, result.names
    print(result.message)
print(f"{len(param_names)} parameters; {time.perf_counter() - started:.1f} s")'''),
        md("## How far apart are the four Hessians?\n\nPer pair of methods and per block of "
           "rows: the largest absolute difference, and the same relative to the block's "
           "largest entry. The two exact ones agree to rounding; forward differences are "
           "accurate to about `sqrt(eps) ~ 1e-8`, central ones to about `eps^(2/3) ~ 4e-11`."),
        code("comparison.differences()"),
        code('''\
exact = comparison.hessians["jacfwd"].matrix
forward = comparison.hessians["fd-forward"].matrix
diff = np.abs(forward - exact) / np.abs(exact).max()
fig, ax = plt.subplots(figsize=(6.5, 5.5))
image = ax.imshow(np.log10(np.maximum(diff, 1e-18)), cmap="viridis", interpolation="nearest")
fig.colorbar(image, ax=ax, label="log10 |H_fd-forward - H_jacfwd| / max|H|")
blocks = comparison.blocks
for block in ("measurement", "choice"):
    edge = blocks.index(block) - 0.5
    ax.axhline(edge, color="w", lw=0.6)
    ax.axvline(edge, color="w", lw=0.6)
ax.set_xlabel("parameter index (structural | measurement | choice)")
ax.set_ylabel("parameter index")
ax.set_title("fd-forward against the exact (jacfwd) Hessian")
plt.show()'''),
        md("## Eigenvalues\n\nAt a maximum, `H` is negative definite: all its eigenvalues are "
           "negative. Their spread (the condition number) says how much harder some "
           "directions are to estimate than others."),
        code('''\
eigen = comparison.eigen()
eigen'''),
        code('''\
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for method, marker in (("structured", "s"), ("jacfwd", "o"), ("fd-forward", "x"), ("fd-central", "+")):
    values = np.linalg.eigvalsh(comparison.hessians[method].matrix)
    ax.semilogy(np.arange(len(values)), np.abs(values), marker, ms=4, label=method)
ax.set_xlabel("eigenvalue rank (most negative first)")
ax.set_ylabel("|eigenvalue| of H")
ax.set_title("Eigenvalue spectrum of the Hessian")
ax.legend()
plt.show()'''),
        md("## Classical and robust standard errors\n\n`classical`: `(-H)^-1`; `robust`: the "
           "sandwich `H^-1 (S'S) H^-1` with `S` the per-individual scores; `bhhh`: `(S'S)^-1`. "
           "When the model is right the three agree up to sampling noise."),
        code('''\
se = {}
for kind in ("classical", "robust", "bhhh"):
    cov, message = jic.covariance(hess, scores, kind, param_names)
    se[kind] = np.sqrt(np.diag(cov))
    if message:
        print(kind, ":", message)
se = pd.DataFrame(se, index=list(param_names))
se.assign(ratio=se["robust"] / se["classical"]).describe().loc[["mean", "min", "50%", "max"]]'''),
        code('''\
fig, ax = plt.subplots(figsize=(5.5, 5))
for block, colour in zip(("structural", "measurement", "choice"), ("C0", "C1", "C2")):
    sel = np.asarray(blocks) == block
    ax.scatter(se["classical"][sel], se["robust"][sel], s=10, color=colour, label=block)
lim = [se.min().min() * 0.9, se.max().max() * 1.1]
ax.plot(lim, lim, "k--", lw=0.8)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("classical standard error, sqrt(diag((-H)^-1))")
ax.set_ylabel("robust (sandwich) standard error")
ax.set_title("Classical against robust standard errors")
ax.legend()
plt.show()'''),
        md("## Timing\n\nWall time of each Hessian, compilation included (a first call on this "
           "problem's shapes), as recorded by `compare_hessians`."),
        code('''\
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(eigen.index, eigen["seconds"])
ax.set_xlabel("seconds (compilation included)")
ax.set_title(f"Hessian of {len(param_names)} parameters")
eigen[["seconds"]]'''),
    ]


def nb04():
    md, code = new_markdown_cell, new_code_cell
    return [
        md("# Benchmarks: gradient and Hessian methods on this machine\n\n"
           "This notebook runs the benchmark suite (`python -m benchmarks`) on whatever device "
           "JAX sees (a CUDA GPU if one is visible, else the CPU) and plots what it measured: "
           "time per method at the reference size (328 people x 100 Halton draws x 219 "
           "parameters), the reference system's method replayed on the same machine, "
           "hand-derived pullbacks against `jax.vjp` (also with a user-written utility), time "
           "against the number of individuals N and of draws R, and the whole wait of an "
           "estimation (cold and warm, with and without the compilation cache, Newton and "
           "L-BFGS).\n\n"
           "In full mode the suite takes about 16 minutes on a 2-core CPU and writes its results "
           "to `benchmarks/results/`. In QUICK mode it runs `--quick` (a miniature model and "
           "sizes, most XLA optimisations off) into a temporary folder: the plots then show "
           "that everything ran, and their times mean nothing.\n\n" + OUTPUTS_NOTE),
        code(SETUP),
        code('''\
import json
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path.cwd().parent                       # the notebook runs in notebooks/
if QUICK:
    out = Path(tempfile.mkdtemp(prefix="jaxiclv-bench-"))
    options = ["--quick", "--sizes", "reference,nonlinear,individuals,draws"]
else:
    out = root / "benchmarks" / "results"
    options = []
command = [sys.executable, "-m", "benchmarks", *options, "--out", str(out)]
started = time.perf_counter()
completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
print(f"python -m benchmarks {' '.join(options)}: {time.perf_counter() - started:.0f} s, "
      f"exit code {completed.returncode}")
assert completed.returncode == 0, completed.stderr[-3000:]
report = json.loads((out / "results.json").read_text())
env = report["environment"]
print(f"measured on: {env['device']} ({env['platform']}), {env['cpu_count']} CPU cores, "
      f"jax {env['jax']}, commit {env['git_commit']}")
results = pd.DataFrame(report["results"])
failed = results[results.get("error", pd.Series(index=results.index)).notna()]
assert failed.empty, failed[["key", "method", "error"]]'''),
        md("## At the reference size\n\nMedian time of each method (after a warm-up call that "
           "compiles it), its first call (compilation included), its error against the "
           "float64 reference (the analytic gradient; the `jacfwd` Hessian), and the speed-up "
           "over the reference system's method replayed on the same device: a Python loop "
           "calling a per-individual gradient, and `P + 1` such gradients for a "
           "forward-difference Hessian."),
        code('''\
n, r = report["sizes"]["n"], report["sizes"]["r"]
at_reference = results[(results["variant"] == "ordinal") & (results["n"] == n) & (results["r"] == r)
                       & (results["dtype"] == "float64")].set_index("method")
table = at_reference[["n_params", "first_s", "median_s", "max_rel_err"]].copy()
replayed = {m: at_reference.loc["replay-hessian" if "hessian" in m else "replay-grad", "median_s"]
            for m in table.index if m != "loglik"}
table["speed-up vs replayed"] = pd.Series(replayed) / table["median_s"]
print(f"{n} individuals x {r} draws, {int(table['n_params'].iloc[0])} parameters, on {env['device']}")
table'''),
        code('''\
hessians = table.loc[[m for m in table.index if "hessian" in m], "median_s"].sort_values()
fig, ax = plt.subplots(figsize=(6.5, 2.8))
ax.barh(hessians.index, hessians.values)
ax.set_xscale("log")
ax.set_xlabel("median seconds per Hessian (log scale)")
ax.set_title(f"Hessian methods, {env['device']}")
plt.show()'''),
        md("## Hand-derived pullbacks against `jax.vjp`\n\nThe analytic gradient and the "
           "structured Hessian with the built-in kernels' hand-derived pullbacks, and with "
           "every component's pullback by `jax.vjp` (`pullbacks=\"autodiff\"`), for the "
           "reference model and for its variant with a user-written utility "
           "(`beta_time exp(lambda LV)`: the probit kernel's derivative stays hand-derived, "
           "the chain rule through the user's function is `jax.vjp`)."),
        code('''\
pullbacks = results[results["method"].isin(["grad-analytic", "grad-pullbacks-autodiff",
                                             "hessian-structured",
                                             "hessian-structured-pullbacks-autodiff"])
                    & results["variant"].isin(["ordinal", "nonlinear"]) & (results["n"] == n)
                    & (results["r"] == r) & (results["dtype"] == "float64")]
pullbacks.pivot_table(index="method", columns="variant", values="median_s")'''),
        md("## Scaling in individuals and draws\n\nThe cost of one likelihood or gradient "
           "should grow linearly in `N x R`: the fitted log-log slope (exponent) is printed "
           "below the plots."),
        code('''\
scaling = pd.DataFrame(report["scaling"])
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, (group, label) in zip(axes, (("individuals", "N (individuals)"), ("draws", "R (draws per individual)"))):
    for _, row in scaling[scaling["group"] == group].iterrows():
        ax.loglog(row["sizes"], row["median_s"], "o-", label=f"{row['method']} (slope {row['exponent']:.2f})")
    ax.set_xlabel(label)
    ax.set_ylabel("median seconds per call")
    ax.set_title(f"time vs {group}, {env['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
scaling[["group", "method", "exponent", "sizes", "median_s"]]'''),
        md("## The whole wait: estimate, cold and warm\n\nEach study estimated from its "
           "default starting values in a fresh process (cold: compilation, or the compilation "
           "cache, included), then again in that process (warm); Newton (`trust-exact`, the "
           "default) and L-BFGS. In QUICK mode: the small study, shrunk, at most 20 iterations."),
        code('''\
def calls(w):  # a study's cold and warm calls; the main job is one whole process
    if w["method"] == "main":
        return {"cold_s": w["process_wall_s"]}
    cold, warm = w["cold"], w.get("warm")
    return {"cold_s": cold["wall_s"], "trace_lower_compile_s": cold["trace_s"] + cold["lower_s"] + cold["compile_s"],
            "warm_s": warm["wall_s"] if warm else None, "iterations": cold["iterations"], "llf": cold["llf"]}


wait = pd.DataFrame([{"study": w.get("study", "python -m jaxiclv"), "optimizer": w.get("optimizer"),
                      "cache": w["cache"], **calls(w)} for w in report["wait"] if "error" not in w])
wait'''),
    ]


def _drug_choice_coding() -> str:
    """The drug-choice section of ``jaxiclv/_example.py`` (from its opening comment to the end)
    as a markdown code block, read when the notebook is built: notebook 05 shows the coding of
    Apollo's study as the library has it, the one copy (the benchmarks use it too)."""
    text = (HERE.parent / "jaxiclv" / "_example.py").read_text()
    section = text[text.index("# Apollo's drug-choice study"):].rstrip()
    return f"```python\n{section}\n```"


def nb05():
    md, code = new_markdown_cell, new_code_cell
    return [
        md("# A real study end to end: attitudes and painkiller choice\n\n"
           "The drug choice survey shipped with the Apollo choice-modelling package (1,000 "
           "respondents, 10 choices each among 4 painkillers: two branded, two generic) and "
           "Apollo's classic ICLV specification on it (`data/drugChoice.md` describes the data "
           "and the model):\n\n"
           "- one latent attitude, `LV = gamma_reg regular_user + gamma_uni "
           "university_educated + gamma_50 over_50 + eta`, `eta ~ N(0, 1)`;\n"
           "- four five-point attitude items, each an ordered logit in `zeta LV` with four "
           "free thresholds;\n"
           "- a multinomial logit over the four alternatives with dummy-coded brand, country "
           "and characteristic effects, side effects and price, and `lambda LV` in the "
           "utilities of the two branded alternatives;\n"
           "- 100 draws per respondent from the plain (unscrambled) base-2 Halton sequence, "
           "first point skipped, consecutive blocks per respondent, as in Apollo: "
           "`jic.Halton(100, scramble=False)`. 37 free parameters.\n\n"
           "QUICK mode keeps the first 300 respondents and 20 draws.\n\n" + OUTPUTS_NOTE),
        code(SETUP),
        code('''\
df = pd.read_csv("data/drugChoice.csv.gz")
if QUICK:
    df = df[df["ID"] <= 300].copy()
n_draws = 20 if QUICK else 100
print(df["ID"].nunique(), "respondents,", len(df), "choice tasks")
df.head(3)'''),
        md("## Data: dummy-coded attributes\n\n`Panel.from_dataframe` takes, for a multinomial "
           "choice, one column per alternative for every attribute (`None` where the "
           "attribute cannot occur in that alternative). The categorical attributes are "
           "dummy-coded against their reference levels (brand Artemis, country USA, "
           "characteristic standard) by `ex.drug_choice_panel`, in `jaxiclv/_example.py` "
           "beside the bundled example (the benchmarks code the study with it too; "
           "`ex.drug_choice_model` below):\n\n" + _drug_choice_coding()),
        code('''\
panel = ex.drug_choice_panel(df)
print(panel.n_individuals, "individuals,", panel.n_observations, "choice tasks")'''),
        md("## The model and Apollo's starting values\n\n`lambda LV` enters the utilities of "
           "both branded alternatives with one coefficient: the latent variable's "
           "coefficients in alternatives 1 and 2 are made one parameter with `jic.share`. "
           "The thresholds are set on their own scale (`q.tau1`, ..., `q.tau4`); "
           "`set_values` maps them to the first threshold and the logs of the increments "
           "(`ex.drug_choice_model`, above)."),
        code('''\
model = ex.drug_choice_model()
print(len(model.parameter_names()), "free parameters:", ", ".join(model.parameter_names()[:8]), "...")
draws = jic.Halton(n_draws, scramble=False)'''),
        md("## Estimation by Newton's method with the exact Hessian"),
        code('''\
result = jic.estimate(model, panel, draws, optimizer="trust-exact")
print(result.summary())'''),
        md("The thresholds and their robust standard errors on their own scale (delta "
           "method), from `result.natural()`:"),
        code('''\
natural = result.natural()
natural[natural.index.str.contains("tau")].round(3)'''),
        md("## L-BFGS on the same problem\n\nThe parameters are badly scaled (side effects are "
           "counted per 1,000 and used unscaled, so their coefficient is about `1e-3`), which "
           "slows a quasi-Newton method down; Newton's method with the exact Hessian is "
           "insensitive to it."),
        code('''\
lbfgs = jic.estimate(model, panel, draws, optimizer="lbfgs",
                     max_iter=300 if QUICK else 5000)
pd.DataFrame({r.optimizer: {"iterations": r.iterations, "seconds": round(r.seconds, 1),
                            "log-likelihood": round(r.llf, 4), "status": r.status.name.lower()}
              for r in (result, lbfgs)})'''),
        code('''\
best = max(result.llf, lbfgs.llf)
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for r in (result, lbfgs):
    ax.semilogy(np.arange(1, len(r.history) + 1), np.maximum(best - r.history, 1e-6), label=r.optimizer)
ax.set_xlabel("log-likelihood evaluations")
ax.set_ylabel("LL(best) - LL (floored at 1e-6)")
ax.set_xscale("log")
ax.set_title("Convergence from Apollo's starting values")
ax.legend()
plt.show()'''),
        md("## What the attitude does\n\nThe estimated probability of each answer to each "
           "item as a function of the latent attitude: `P(I = j | LV) = F(tau_j - zeta LV) - "
           "F(tau_{j-1} - zeta LV)`, `F` logistic."),
        code('''\
from scipy.special import expit

values = result.natural()["estimate"]
grid = np.linspace(-3, 3, 121)
fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), sharey=True)
for ax, item in zip(axes, ex.DRUG_ITEMS):
    tau = np.array([values[f"{item}.tau{j}"] for j in range(1, 5)])
    cdf = expit(tau[None, :] - values[f"{item}.zeta.LV"] * grid[:, None])      # (grid, 4)
    cdf = np.hstack([np.zeros((grid.size, 1)), cdf, np.ones((grid.size, 1))])
    for j in range(5):
        ax.plot(grid, cdf[:, j + 1] - cdf[:, j], label=f"answer {j + 1}")
    ax.set_title(item)
    ax.set_xlabel("latent attitude LV")
axes[0].set_ylabel("probability")
axes[-1].legend(fontsize=8)
fig.tight_layout()'''),
        md("## Willingness to pay\n\n`WTP_k = -beta_k / beta_price` in GBP, with "
           "delta-method standard errors from the robust covariance: `jic.delta_method` takes "
           "any jax.numpy function of the named parameters and differentiates it with "
           "`jax.jacfwd` (`jic.wtp(result, names, 'beta.price')` is the plain ratio)."),
        code('''\
price = "beta.price"
others = [n for n in result.names if n.startswith("beta.") and n != price]
wtp = jic.delta_method(result, lambda p: {n[len("beta."):]: -p[n] / p[price] for n in others})
wtp.round(3)'''),
        md("## Predicted shares under a price scenario\n\n`jic.shares` averages each "
           "person's choice probabilities (simulated over the draws) over the sample, with "
           "delta-method standard errors; `data=` predicts for a changed data set (a table "
           "coded as the estimation data by `Panel.with_data`, or a panel: here the "
           "scenario's, coded by `ex.drug_choice_panel`). Here alternative 1 costs 10 % more."),
        code('''\
scenario = df.copy()
scenario["price_1"] *= 1.10
pd.concat({"now": jic.shares(result)[["estimate", "std err"]],
           "price of 1 +10 %": jic.shares(result, data=ex.drug_choice_panel(scenario))[
               ["estimate", "std err"]]},
          axis=1).round(4)'''),
        md("Aggregate price elasticities (`d log S_j / d log price_k`: direct on the "
           "diagonal, cross elsewhere):"),
        code('jic.elasticities(result, "price").round(3)'),
        md("## Each respondent's attitude\n\nThe posterior mean of the latent attitude given "
           "each person's answers and choices, against its mean given the covariates only:"),
        code('''\
post = jic.posterior(result).xs("LV", level="latent variable")
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.hist(post["prior mean"], bins=30, alpha=0.6, label="given the covariates")
ax.hist(post["mean"], bins=30, alpha=0.6, label="given the answers and choices too")
ax.set_xlabel("latent attitude LV")
ax.legend()
plt.show()
post.head()'''),
    ]


NOTEBOOKS = {"01_quickstart.ipynb": nb01, "02_gradients.ipynb": nb02, "03_hessian.ipynb": nb03,
             "04_benchmarks.ipynb": nb04, "05_real_data.ipynb": nb05}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 3600) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute(env=dict(os.environ))
    return nb


def main(argv: list[str]) -> None:
    run = "--execute" in argv
    chosen = [a for a in argv if not a.startswith("--")] or list(NOTEBOOKS)
    for name in chosen:
        nb = build(name)
        if run:
            started = time.perf_counter()
            execute(nb)
            print(f"{name}: executed in {time.perf_counter() - started:.1f} s")
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main(sys.argv[1:])
