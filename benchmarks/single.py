"""Run one benchmark case in this process and write its results as JSON.

``python -m benchmarks.single --case '{"key": ..., "variant": "ordinal", "n": 328, "r": 100,
"dtype": "float64", "methods": ["loglik", ...], ...}' --json out.json --arrays DIR``

The suite (``python -m benchmarks``) starts one such process per case, so that every case
starts from a fresh process (its own compilation, a clean memory baseline). Each method's peak resident
memory is measured from a reset high-water mark where Linux allows it (``rss_scope:
"method"``), else it is the process-wide peak so far; the device's peak (GPU) is the process's
peak so far. Results (log-likelihoods, gradients, Hessians) go to ``DIR`` as .npy for the
accuracy comparison, which the suite does across cases.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import jax
import numpy as np

import jaxiclv as jic
from jaxiclv import _example as ex

from ._cases import Case, build_model, check_against_reference
from ._measure import environment, measure, memory_mb, reset_peak_rss
from ._methods import METHODS
from ._peer import run_peer


def _log(message: str) -> None:
    sys.stderr.write(f"[benchmarks] {message}\n")
    sys.stderr.flush()


def _memory(row: dict, before: dict, scope: str) -> dict:
    after = memory_mb()
    return dict(row, rss_before_mb=before["rss_mb"], rss_peak_mb=after["rss_peak_mb"],
                rss_scope=scope, device_before_mb=before.get("device_mb"),
                device_peak_mb=after.get("device_peak_mb"), **environment())


def run_methods(spec: dict, arrays: Path) -> list[dict]:
    started = time.perf_counter()
    case = Case(spec["variant"], spec["n"], spec["r"], spec["dtype"], spec["quick"],
                spec["n_base"])
    about = dict(n_params=case.n_params, chunk_size=case.chunk_size,
                 setup_s=time.perf_counter() - started)
    if spec["variant"] == "ordinal" and not spec["quick"]:
        about["model_is_reference_truth"] = check_against_reference()
    rows = []
    for name in spec["methods"]:
        _log(f"{spec['key']}: {name}")
        scope = "method" if reset_peak_rss() else "process"
        before, row = memory_mb(), dict(spec, method=name, **about)
        try:
            method = METHODS[name](case)
            timing, output = measure(method.fn, spec["repeat"], spec["budget_s"], method.compiles)
            for key in ("first_s", "median_s", "min_s", "max_s", "q1_s", "q3_s"):
                timing[key] *= method.scale
            timing["times_s"] = [t * method.scale for t in timing["times_s"]]
            row.update(timing, note=method.note, **method.extras(output))
            value = method.value(output)
            if value is not None:
                row["result_dtype"] = str(value.dtype)
                np.save(arrays / f"{spec['key']}__{name}.npy", np.asarray(value))
        except Exception as error:  # a failing method is reported; the others still run
            row["error"] = f"{type(error).__name__}: {error}"
            _log(traceback.format_exc())
        rows.append(_memory(row, before, scope))
    return rows


@contextlib.contextmanager
def _timing_calls(cls, names, seconds: dict):
    """Add the time of every call of ``cls.<name>`` (waiting for its result) to
    ``seconds[name]`` while inside the block."""
    originals = {name: getattr(cls, name) for name in names}

    def timed(name):
        def call(self, *args, **kwargs):
            start = time.perf_counter()
            out = jax.block_until_ready(originals[name](self, *args, **kwargs))
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            return out
        return call
    try:
        for name in names:
            setattr(cls, name, timed(name))
        yield seconds
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


def run_estimation(spec: dict) -> list[dict]:
    """``jic.estimate`` from the default starting values with ``spec["optimizer"]``: exactly
    ``estimate(reference_model(), reference_panel(), Halton(100), optimizer=...)`` at full size, the quick
    miniature (at most ``max_iter`` iterations) in quick mode. The Hessian and the scores
    inside ``estimate`` are timed by wrapping ``Problem.hessian`` and ``Problem.scores``."""
    scope = "method" if reset_peak_rss() else "process"
    before = memory_mb()
    if spec["quick"]:
        panel = Case("ordinal", spec["n"], spec["r"], "float64", True, spec["n_base"]).panel
        model, options = build_model("ordinal", True), dict(max_iter=spec["max_iter"])
    else:
        model, panel, options = ex.reference_model(), ex.reference_panel(), {}
    parts: dict[str, float] = {}
    start = time.perf_counter()
    with _timing_calls(jic.Problem, ("hessian", "scores"), parts), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jic.estimate(model, panel, jic.Halton(spec["r"]), optimizer=spec["optimizer"],
                              **options)
    row = dict(spec, method="estimate", wall_s=time.perf_counter() - start,
               seconds=result.seconds, iterations=result.iterations,
               status=result.status.name.lower(), llf=result.llf, n_params=result.n_params,
               optimizer=result.optimizer, hessian_method=result.hessian_method,
               hessian_s=parts.get("hessian"), scores_s=parts.get("scores"),
               optimisation_s=result.seconds - sum(parts.values()),
               warnings=[str(w.message) for w in caught])
    return [_memory(row, before, scope)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.single", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", required=True, help="the case, as JSON")
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    parser.add_argument("--arrays", required=True, type=Path, help="folder for result arrays")
    args = parser.parse_args(argv)
    spec = json.loads(args.case)
    args.arrays.mkdir(parents=True, exist_ok=True)
    if spec["quick"]:  # a smoke test: compile fast, time nothing
        jax.config.update("jax_disable_most_optimizations", True)
    _log(f"case {spec['key']} ({', '.join(spec['methods'])})")
    try:
        if spec["methods"] == ["estimate"]:
            rows = run_estimation(spec)
        elif spec["methods"] == ["peer"]:
            rows = run_peer(spec)
        else:
            rows = run_methods(spec, args.arrays)
    except Exception as error:  # e.g. building the case failed: report it as the result
        _log(traceback.format_exc())
        rows = [dict(spec, method=m, error=f"{type(error).__name__}: {error}")
                for m in spec["methods"]]
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
