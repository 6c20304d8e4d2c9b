"""The whole wait: ``jic.estimate`` of a study in a fresh process, then the same call again.

``python -m benchmarks.wait --study reference --optimizer trust-exact --json out.json``
(the compilation cache is whatever ``JAXICLV_COMPILATION_CACHE`` says; the suite points it at
an empty directory, then runs again on the filled one).

Writes one row: the seconds to import jaxiclv, to build the study, the first ("cold") call of
``estimate`` with how much of it JAX spent tracing, lowering and compiling (its own monitoring
events) and how many programs came from the compilation cache, and the second ("warm") call
in the same process, with iterations, status and the log-likelihood of each.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

_COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                   "/jax/core/compile/backend_compile_duration": "compile_s"}
_seconds = dict.fromkeys(_COMPILE_EVENTS.values(), 0.0)
_events = {"cache_hits": 0}


def _duration(event: str, seconds: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _seconds[_COMPILE_EVENTS[event]] += seconds


def _event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _events["cache_hits"] += 1


jax.monitoring.register_event_duration_secs_listener(_duration)
jax.monitoring.register_event_listener(_event)


def _call(estimate, model, panel, draws, optimizer, max_iter) -> dict:
    for key in _seconds:
        _seconds[key] = 0.0
    _events["cache_hits"] = 0
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = estimate(model, panel, draws, optimizer=optimizer, max_iter=max_iter)
    return dict(wall_s=time.perf_counter() - start, iterations=result.iterations,
                status=result.status.name.lower(), llf=result.llf, message=result.message,
                warnings=[str(w.message) for w in caught], **_seconds, **_events)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wait", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True)
    parser.add_argument("--optimizer", required=True)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-iter", type=int, default=5000)
    parser.add_argument("--no-warm", action="store_true", help="only the cold call")
    args = parser.parse_args(argv)
    if args.quick:  # a smoke test: compile fast, time nothing
        jax.config.update("jax_disable_most_optimizations", True)
    before_import = time.perf_counter()
    import jaxiclv as jic
    from ._measure import environment
    from ._studies import study
    imported = time.perf_counter()
    model, panel, draws = study(args.study, args.quick)
    built = time.perf_counter()
    row = dict(study=args.study, optimizer=args.optimizer, quick=args.quick,
               n_individuals=panel.n_individuals, n_params=len(model.parameter_names()),
               cache_dir=jax.config.jax_compilation_cache_dir,
               python_start_s=before_import - STARTED, import_s=imported - before_import,
               setup_s=built - imported)
    row["cold"] = _call(jic.estimate, model, panel, draws, args.optimizer, args.max_iter)
    if not args.no_warm:
        row["warm"] = _call(jic.estimate, model, panel, draws, args.optimizer, args.max_iter)
    row.update(process_s=time.perf_counter() - STARTED, **environment())
    args.json.write_text(json.dumps(row, indent=1))
    sys.stderr.write(f"[benchmarks.wait] {args.study} {args.optimizer}: cold "
                     f"{row['cold']['wall_s']:.1f} s"
                     + (f", warm {row['warm']['wall_s']:.1f} s" if "warm" in row else "") + "\n")


if __name__ == "__main__":
    main()
