"""``python -m benchmarks.scale``: the Hessian → covariance path at scale, one fresh process
per size.

At the reference model's shape (219 parameters, the reference data replicated to ``N``
individuals, ``R`` Halton draws made on the fly), each process times one
:meth:`jaxiclv.Problem.second_order` call (the LL, gradient, scores and structured Hessian of
one Newton step or of the standard errors; compilation included, so it is a cold call) and the
robust covariance from it, and records the peak resident memory. ``--sizes`` lists ``N``
(default 1,000, 10,000 and 100,000); ``R`` defaults to 1,000. Results go to
``benchmarks/results/scale/results.json`` (``--out``), with the machine and commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent


def one(n: int, r: int) -> dict:
    """The measurements of one size, in this process."""
    import jaxiclv as jic
    from ._cases import Case
    from ._measure import environment, memory_mb

    started = time.perf_counter()
    case = Case("ordinal", n, r, "float64", quick=False, n_base=328, on_the_fly=True)
    problem = case.problem()
    setup = time.perf_counter() - started
    theta = problem.theta0
    started = time.perf_counter()
    llf, grad, scores, raw = problem.second_order(theta)
    hess = jic.symmetrize(np.asarray(raw), "structured")
    second_order = time.perf_counter() - started
    started = time.perf_counter()
    cov, message = jic.covariance(hess.matrix, np.asarray(scores), "robust", problem.space.names)
    covariance = time.perf_counter() - started
    return dict(n=n, r=r, n_params=problem.space.size, chunk_size=problem.chunk_size,
                draws_on_the_fly=True, setup_s=setup, second_order_s=second_order,
                covariance_s=covariance, llf=float(llf), grad_norm=float(np.linalg.norm(grad)),
                hessian_asymmetry=hess.asymmetry, finite_se=bool(np.all(np.isfinite(
                    np.diag(cov)))), cov_message=message, **memory_mb(), **environment())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="N, comma-separated")
    parser.add_argument("--draws", type=int, default=1000, help="R")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "benchmarks" / "results" /
                        "scale")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # N, in this process
    args = parser.parse_args(argv)
    if args.one is not None:
        sys.stdout.write(json.dumps(one(args.one, args.draws)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        sys.stderr.write(f"[scale] N = {n}, R = {args.draws}\n")
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--one", str(n),
                               "--draws", str(args.draws)], cwd=REPOSITORY,
                              capture_output=True, text=True)
        rows.append(json.loads(done.stdout) if done.returncode == 0 else
                    dict(n=n, r=args.draws, error=done.stderr[-2000:]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
