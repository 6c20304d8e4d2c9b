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
import json
import sys
import time
import traceback
from pathlib import Path

import jax
import numpy as np


from ._cases import Case, check_against_reference
from ._measure import environment, measure, memory_mb, reset_peak_rss
from ._methods import METHODS


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
                spec["n_base"], spec.get("devices"), spec.get("on_the_fly", False))
    about = dict(n_params=case.n_params, chunk_size=case.chunk_size,
                 n_devices=len(case.problem().devices),
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
        rows = run_methods(spec, args.arrays)
    except Exception as error:  # e.g. building the case failed: report it as the result
        _log(traceback.format_exc())
        rows = [dict(spec, method=m, error=f"{type(error).__name__}: {error}")
                for m in spec["methods"]]
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
