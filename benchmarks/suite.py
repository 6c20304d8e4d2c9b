"""``python -m benchmarks``: plan the cases, run them in fresh processes, report.

Size groups (``--sizes``, default all):

- ``reference``: the reference example (ordered-probit items, 328 individuals x 100 Halton
  draws, 219 parameters) with every method, and its continuous-indicator variant with every
  method but the replay;
- ``nonlinear``: the reference structure with a user-written utility,
  ``beta_time exp(lambda LV)`` (220 parameters): the log-likelihood, the analytic gradient and
  the structured Hessian with the hand-derived kernels (and the user's utility by ``jax.vjp``)
  against every pullback by ``jax.vjp``, autodiff, and jacfwd as the Hessian's reference;
- ``individuals``: N = 328, 3280, 32,800 at R = 100; ``draws``: R = 100, 500, 2000 at N = 328;
  both with the log-likelihood, the analytic and autodiff gradients, and the replayed gradient
  up to 20x the reference's N x R. The finite-difference gradient, the Hessians and the
  replayed Hessian each cost about P gradients, so they run at the reference size only;
- ``dtype``: float32 against float64 at the reference size (likelihood, gradients, jacfwd
  Hessian);
- ``peer``: Biogeme and jaxiclv on the same simulated ICLV data, specification and draws
  (:mod:`benchmarks.peer`), each measurement in a fresh process: the kernels, and whole fits
  cold and warm with each package's optimisers; skipped, with the reason in the report, where
  Biogeme is not installed;
- ``mixed``: random coefficients: a panel mixed logit without latent variables (1,000
  individuals x 10 tasks x 4 alternatives x 500 draws, 3 random coefficients) and the
  reference ICLV with a normal cost coefficient, each with the log-likelihood, the analytic
  gradient and the structured Hessian (jacfwd as its reference), next to the plain reference
  ICLV (per individual x draw costs compared in the report);
- ``devices``: individuals sharded over 1, 2 and 4 devices (forced CPU devices on a CPU,
  ``XLA_FLAGS=--xla_force_host_platform_device_count``; the first ``k`` real devices on an
  accelerator) at 10x the reference's N (3,280 individuals x 100 draws): the log-likelihood,
  the analytic gradient and the structured Hessian, in individual-draws per second, and their
  difference from one device;
- ``memory``: peak memory against N (1,000, 10,000, 100,000) at R = 1,000, the draws
  materialised and made on the fly (``draws_on_the_fly``): the log-likelihood and the analytic
  gradient, and the difference between the two;
- ``wait``: the whole wait a user has, each in fresh processes (:mod:`benchmarks.wait`):
  ``jic.estimate`` of the reference example, Apollo's drug-choice study and a small
  40-parameter MNL ICLV (:mod:`benchmarks._studies`) with Newton (``trust-exact``, the
  default) and with L-BFGS: import, the first ("cold") call with the seconds JAX spent
  tracing, lowering and compiling, then the same call again ("warm"); Newton's twice, first
  with an empty compilation cache, then with the cache the first process filled; and
  ``python -m jaxiclv`` (the README's main job) end to end, the same two ways.

Every case runs in its own fresh process, one after the other. ``--quick`` is a smoke test:
the same groups on a miniature model (2 latent variables, 4 items, 31 parameters), tiny sizes,
fewer methods per group (every method still runs at least once), compiled with most XLA
optimisations off, its processes run side by side, one per CPU. Its times mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import METHOD_NAMES, peer
from ._report import add_accuracy, scaling_exponents, write_markdown, write_plots

REPOSITORY = Path(__file__).resolve().parent.parent
GROUPS = ("reference", "nonlinear", "individuals", "draws", "dtype", "mixed", "devices", "memory",
          "wait", "peer")
PEER_MISSING = ("Biogeme is not installed in this environment; it needs pandas < 3, so install "
                "it in its own: pip install -e '.[peer]', then python -m benchmarks --sizes peer")
REPLAY = ("replay-grad", "replay-hessian")
OPTIMIZERS = ("trust-exact", "lbfgs")  # the wait group runs both: the default first
REPLAY_UP_TO = 20  # the replayed gradient runs up to this multiple of the reference's N x R
MODES = {
    "full": dict(
        n=328, r=100, individuals=(328, 3280, 32800), draws=(100, 500, 2000),
        repeat=5, budget_s=10.0, max_iter=5000, studies=("reference", "drug-choice", "small"),
        main_job=True,
        continuous=tuple(m for m in METHOD_NAMES if m not in REPLAY),
        nonlinear=("loglik", "grad-analytic", "grad-pullbacks-autodiff", "grad-autodiff",
                   "hessian-structured", "hessian-structured-pullbacks-autodiff",
                   "hessian-jacfwd"),
        scaling=("loglik", "grad-analytic", "grad-autodiff", "replay-grad"),
        dtype=("loglik", "grad-analytic", "grad-autodiff", "hessian-structured",
               "hessian-jacfwd"),
        mixed=dict(n=1000, r=500, methods=("loglik", "grad-analytic", "hessian-structured",
                                           "hessian-jacfwd")),
        devices=dict(n=3280, r=100, counts=(1, 2, 4),
                     methods=("loglik", "grad-analytic", "hessian-structured")),
        memory=dict(individuals=(1000, 10000, 100000), r=1000,
                    methods=("loglik", "grad-analytic"))),
    "quick": dict(
        n=16, r=8, individuals=(16, 32), draws=(8, 16), repeat=3, budget_s=0.5, max_iter=20,
        studies=("small",), main_job=False,
        continuous=("loglik", "grad-analytic", "grad-autodiff"),
        nonlinear=("loglik", "grad-analytic", "grad-pullbacks-autodiff",
                   "hessian-structured-pullbacks-autodiff", "hessian-jacfwd"),
        scaling=("loglik", "grad-analytic"),
        dtype=("loglik", "grad-analytic", "grad-autodiff"),
        mixed=dict(n=16, r=8, methods=("loglik", "grad-analytic", "hessian-structured",
                                       "hessian-jacfwd")),
        devices=dict(n=16, r=8, counts=(1, 2), methods=("loglik", "grad-analytic")),
        memory=dict(individuals=(16, 32), r=8, methods=("loglik", "grad-analytic"))),
}


def _key(variant, n, r, dtype, devices=None, on_the_fly=False) -> str:
    return (f"{variant}-N{n}-R{r}-{dtype}" + ("" if devices is None else f"-D{devices}")
            + ("-fly" if on_the_fly else ""))


def plan(groups, mode: dict) -> tuple[list[dict], list[dict]]:
    """The cases to run (one per model and size, methods merged across groups) and the
    methods left out, with why."""
    n, r = mode["n"], mode["r"]
    wanted, skipped = [], []

    def add(group, variant, n_, r_, dtype, methods, devices=None, on_the_fly=False):
        for method in methods:
            if method in REPLAY and n_ * r_ > REPLAY_UP_TO * n * r:
                skipped.append(dict(group=group, case=_key(variant, n_, r_, dtype), method=method,
                                    reason=f"N x R above {REPLAY_UP_TO}x the reference's"))
            else:
                wanted.append((group, (variant, n_, r_, dtype, devices, on_the_fly), method))

    if "reference" in groups:
        add("reference", "ordinal", n, r, "float64", METHOD_NAMES)
        add("reference", "continuous", n, r, "float64", mode["continuous"])
    if "nonlinear" in groups:
        add("nonlinear", "nonlinear", n, r, "float64", mode["nonlinear"])
    for group, steps in (("individuals", [(k, r) for k in mode["individuals"]]),
                         ("draws", [(n, k) for k in mode["draws"]])):
        if group in groups:
            for n_, r_ in steps:
                add(group, "ordinal", n_, r_, "float64", mode["scaling"])
    if "dtype" in groups:
        for dtype in ("float64", "float32"):
            add("dtype", "ordinal", n, r, dtype, mode["dtype"])
    if "mixed" in groups:
        mixed = mode["mixed"]
        add("mixed", "mixed-logit", mixed["n"], mixed["r"], "float64", mixed["methods"])
        for variant in ("random-cost", "ordinal"):
            add("mixed", variant, n, r, "float64", mixed["methods"])
    if "devices" in groups:
        sharded = mode["devices"]
        for count in sharded["counts"]:
            add("devices", "ordinal", sharded["n"], sharded["r"], "float64", sharded["methods"],
                devices=count)
    if "memory" in groups:
        memory = mode["memory"]
        for n_ in memory["individuals"]:
            for on_the_fly in (False, True):
                add("memory", "ordinal", n_, memory["r"], "float64", memory["methods"],
                    on_the_fly=on_the_fly)

    cases: dict[tuple, dict] = {}
    for group, (variant, n_, r_, dtype, devices, on_the_fly), method in wanted:
        case = cases.setdefault((variant, n_, r_, dtype, devices, on_the_fly), dict(
            key=_key(variant, n_, r_, dtype, devices, on_the_fly), variant=variant, n=n_, r=r_,
            dtype=dtype, devices=devices, on_the_fly=on_the_fly, groups=[], methods=[]))
        if group not in case["groups"]:
            case["groups"].append(group)
        if method not in case["methods"]:
            case["methods"].append(method)
    out = list(cases.values())
    for case in out:
        case["methods"].sort(key=METHOD_NAMES.index)
    if "peer" in groups:
        if importlib.util.find_spec("biogeme") is None:
            skipped.append(dict(group="peer", case="peer", method="biogeme", reason=PEER_MISSING))
        else:
            out.append(dict(key="peer", kind="peer", groups=["peer"], methods=["peer"]))
    if "wait" in groups:  # first: the longest single processes in quick mode
        waits = [dict(key=f"wait-{study}-{optimizer}", kind="wait", study=study,
                      optimizer=optimizer, groups=["wait"], methods=["wait"],
                      caches=("empty", "filled") if optimizer == "trust-exact" else ("empty",),
                      run_warm=not (study == "drug-choice" and optimizer == "lbfgs"))
                 for study in mode["studies"] for optimizer in OPTIMIZERS]
        if mode["main_job"]:
            waits.append(dict(key="wait-main-job", kind="main", groups=["wait"],
                              methods=["main"], caches=("empty", "filled")))
        out[:0] = waits
    return out, skipped


def run_wait(case: dict, scratch: Path) -> list[dict]:
    """A wait case: ``python -m benchmarks.wait`` (or ``python -m jaxiclv``) in a fresh process
    per cache state, the first on an empty compilation cache, the next on what it wrote."""
    cache = scratch / f"cache-{case['key']}"
    env = dict(os.environ, JAXICLV_COMPILATION_CACHE=str(cache))
    rows = []
    for state in case["caches"]:
        result = scratch / f"{case['key']}-{state}.json"
        if case["kind"] == "main":
            command = [sys.executable, "-m", "jaxiclv"]
        else:
            command = [sys.executable, "-m", "benchmarks.wait", "--study", case["study"],
                       "--optimizer", case["optimizer"], "--json", str(result),
                       "--max-iter", str(case["max_iter"]),
                       *(["--quick"] if case["quick"] else []),
                       *([] if case["run_warm"] else ["--no-warm"])]
        start = time.perf_counter()
        completed = subprocess.run(command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        row = dict(case, method=case["kind"], cache=state, process_wall_s=wall)
        if completed.returncode != 0:
            row["error"] = f"process exited with {completed.returncode}"
        elif case["kind"] == "wait":
            row.update(json.loads(result.read_text()))
        rows.append(row)
    return rows


def run_peer(case: dict, scratch: Path) -> list[dict]:
    """The peer: ``python -m benchmarks.peer`` in a fresh process per measurement, with
    jaxiclv's compilation cache off (a first call compiles, in both packages)."""
    rows = []
    for package, task, optimizer in peer.MEASUREMENTS["quick" if case["quick"] else "full"]:
        result = scratch / f"peer-{package}-{task}-{optimizer}.json"
        command = [sys.executable, "-m", "benchmarks.peer", "--package", package, "--task", task,
                   "--json", str(result), *(["--optimizer", optimizer] if optimizer else []),
                   *(["--quick"] if case["quick"] else [])]
        completed = subprocess.run(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL,
                                   env=dict(os.environ, JAXICLV_COMPILATION_CACHE="off"))
        row = dict(case, method="peer", package=package, task=task, optimizer=optimizer)
        if completed.returncode != 0 or not result.exists():
            row["error"] = f"process exited with {completed.returncode}"
        else:
            row.update(json.loads(result.read_text()))
        rows.append(row)
    return rows


def run_case(case: dict, scratch: Path) -> list[dict]:
    """Run ``case`` in a fresh ``python -m benchmarks.single`` process."""
    if case.get("kind") in ("wait", "main"):
        return run_wait(case, scratch)
    if case.get("kind") == "peer":
        return run_peer(case, scratch)
    result = scratch / f"{case['key']}.json"
    command = [sys.executable, "-m", "benchmarks.single", "--case", json.dumps(case),
               "--json", str(result), "--arrays", str(scratch / "arrays")]
    # no compilation cache: a method's first call is its compilation (the wait group measures
    # the cache on its own); a devices case on a CPU gets that many CPU devices
    env = dict(os.environ, JAXICLV_COMPILATION_CACHE="off")
    if case.get("devices"):
        env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                            f"--xla_force_host_platform_device_count={case['devices']}").strip()
    completed = subprocess.run(command, cwd=REPOSITORY, env=env)
    if completed.returncode != 0 or not result.exists():
        return [dict(case, method=m, error=f"benchmark process exited with {completed.returncode}")
                for m in case["methods"]]
    return json.loads(result.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "benchmarks" / "results",
                        help="output folder (default benchmarks/results)")
    parser.add_argument("--sizes", default=",".join(GROUPS),
                        help=f"comma list of size groups (default all: {','.join(GROUPS)})")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed calls per method after the warm-up (default 5, quick 3); "
                             "fewer once they have taken the time budget (10 s, quick 0.5 s)")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.sizes.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        parser.error(f"unknown size groups {unknown}; choose from {','.join(GROUPS)}")
    mode_name = "quick" if args.quick else "full"
    mode = dict(MODES[mode_name])
    if args.repeat is not None:
        mode["repeat"] = max(1, args.repeat)
    settings = dict(quick=args.quick, n_base=mode["n"], repeat=mode["repeat"],
                    budget_s=mode["budget_s"], max_iter=mode["max_iter"])

    started = time.perf_counter()
    cases, skipped = plan(groups, mode)
    cases = [{**case, **settings} for case in cases]
    sys.stderr.write(f"[benchmarks] {len(cases)} cases: {', '.join(c['key'] for c in cases)}\n")
    with tempfile.TemporaryDirectory(prefix="jaxiclv-bench-") as scratch, \
            ThreadPoolExecutor(os.cpu_count() if args.quick else 1) as pool:
        rows = [row for rows in pool.map(lambda case: run_case(case, Path(scratch)), cases)
                for row in rows]
        add_accuracy(rows, Path(scratch) / "arrays")
    wall = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    report = dict(mode=mode_name, sizes=mode, groups=groups, wall_s=wall,
                  environment=next((_environment(row) for row in rows if "device" in row), {}),
                  results=[row for row in rows if row["method"] not in ("wait", "main", "peer")],
                  peer=[row for row in rows if row["method"] == "peer"],
                  wait=[row for row in rows if row["method"] in ("wait", "main")],
                  scaling=scaling_exponents(rows), skipped=skipped)
    report["plots"] = write_plots(report, args.out)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    print(write_markdown(report, args.out / "results.md"))
    sys.stderr.write(f"[benchmarks] {wall:.0f} s; wrote {args.out / 'results.json'} and "
                     f"{args.out / 'results.md'}\n")


def _environment(row: dict) -> dict:
    return {k: row.get(k) for k in ("device", "platform", "jax", "jaxlib", "git_commit",
                                    "git_dirty", "cpu_count", "cpu_model", "timestamp")}
