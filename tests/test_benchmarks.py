"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` runs every method,
writes its outputs with every expected key, and its accuracy checks agree. Nothing about time.

Tolerances (relative error ``max |x - ref| / max(|ref|, 1)`` against the float64 analytic
gradient, or the jacfwd Hessian for Hessians, at the same size; quick mode's |LL| is a few
hundred):

- exact gradients (autodiff, the analytic one with every pullback by autodiff, the replayed
  per-individual autodiff) and the exact structured Hessian (either pullbacks): rounding
  only, observed ~1e-14; 1e-9 leaves ample room.
- central finite differences, ``h = eps^(1/3) max(|theta|, 1)`` ~ 6e-6: truncation
  ``h^2 |f'''| / 6`` plus rounding ``eps |LL| / h`` ~ 1e-8 here; 1e-6.
- forward-difference Hessians, ``h = sqrt(eps) max(|theta|, 1)`` ~ 1.5e-8: truncation
  ``h |g''| / 2`` plus rounding ``eps |g| / h``, ~1e-6 here; 1e-4. Central differences,
  ``h = eps^(1/3) max(|theta|, 1)``: ``h^2 |g'''| / 6`` plus ``eps |g| / h``, ~1e-8; 1e-6.
- sharded over two devices against one device (the devices group), and draws made on the fly
  against the same draws materialised (the memory group): the same terms summed in another
  order, rounding only; 1e-12.
- float32 against float64: float32 rounding (eps 1.2e-7) of the per-draw terms, summed in
  float64 (the LL) or rounded once after a float64 sum (gradients, Hessians): at worst ~6e-5
  in the quick case; 1e-3. Above 1e-10: computed in float32, not silently in float64.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
METHODS = {"loglik", "grad-analytic", "grad-pullbacks-autodiff", "grad-autodiff", "grad-fd",
           "replay-grad", "replay-hessian", "hessian-structured",
           "hessian-structured-pullbacks-autodiff", "hessian-fd-forward", "hessian-fd-central",
           "hessian-jacfwd"}
TOLERANCE = {"grad-autodiff": 1e-9, "grad-pullbacks-autodiff": 1e-9, "replay-grad": 1e-9,
             "grad-fd": 1e-6, "hessian-structured": 1e-9,
             "hessian-structured-pullbacks-autodiff": 1e-9, "hessian-fd-forward": 1e-4,
             "hessian-fd-central": 1e-6, "replay-hessian": 1e-4}
FLOAT32_TOLERANCE = 1e-3
SHARDED_TOLERANCE = 1e-12
ENVIRONMENT = {"device", "platform", "jax", "jaxlib", "git_commit", "cpu_count", "cpu_model",
               "timestamp"}
TIMING = {"first_s", "median_s", "min_s", "max_s", "q1_s", "q3_s", "times_s", "runs",
          "rss_peak_mb"}

# slow; one worker runs the whole module (pytest-xdist --dist loadgroup): the benchmark run
# behind its fixture happens once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_benchmarks")]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-5000:]
    return json.loads((out / "results.json").read_text()), out, completed.stdout


def test_every_method_ran(quick_run):
    report, _, _ = quick_run
    failed = [(r["key"], r["method"], r["error"]) for r in report["results"] if "error" in r]
    assert not failed
    assert {r["method"] for r in report["results"]} == METHODS
    assert {(w["optimizer"], w["cache"]) for w in report["wait"]} == {
        ("trust-exact", "empty"), ("trust-exact", "filled"), ("lbfgs", "empty")}
    for wait in report["wait"]:
        assert "error" not in wait
        for call in ("cold", "warm"):
            assert wait[call]["iterations"] >= 1 and wait[call]["wall_s"] > 0
            assert wait[call]["llf"] == pytest.approx(wait["cold"]["llf"], rel=1e-9)
    groups = {g for r in report["results"] for g in r["groups"]}
    assert groups == {"reference", "nonlinear", "individuals", "draws", "dtype", "mixed",
                      "devices", "memory"}
    assert {r["on_the_fly"] for r in report["results"] if "memory" in r["groups"]} == {False,
                                                                                      True}
    assert {r["n_devices"] for r in report["results"] if "devices" in r["groups"]} == {1, 2}


def test_outputs_have_every_key(quick_run):
    report, out, stdout = quick_run
    assert {"mode", "sizes", "groups", "wall_s", "environment", "results", "wait",
            "peer", "scaling", "skipped", "plots"} <= set(report)
    for row in report["results"]:
        assert ENVIRONMENT | TIMING | {"key", "method", "n", "r", "n_params", "dtype"} <= set(row)
        assert row["runs"] == len(row["times_s"]) >= 1
    for wait in report["wait"]:
        assert ENVIRONMENT | {"import_s", "cold", "warm", "cache_dir"} <= set(wait)
        assert {"trace_s", "lower_s", "compile_s", "cache_hits"} <= set(wait["cold"])
    assert {s["group"] for s in report["scaling"]} == {"individuals", "draws"}
    assert (out / "results.md").read_text() == stdout.rstrip("\n") + "\n"
    plots = report["plots"]
    assert all((out / name).exists() for name in plots["files"]) if "files" in plots \
        else "matplotlib" in plots["skipped"]


def test_accuracy_checks_agree(quick_run):
    report, _, _ = quick_run
    for row in report["results"]:
        if (row.get("devices") or 1) > 1:  # against one device: the sums in another order
            assert row["reference"].endswith(f"-D1 {row['method']}"), row
            assert row["max_rel_err"] < SHARDED_TOLERANCE, row
        elif row.get("on_the_fly"):  # against the draws materialised: the same draws
            assert row["reference"] == f"{row['key'].removesuffix('-fly')} {row['method']}"
            assert row["max_rel_err"] < SHARDED_TOLERANCE, row
        elif row["dtype"] == "float32":
            # the LL is float32 per-draw work summed in float64; the rest float32
            assert row["result_dtype"] == ("float64" if row["method"] == "loglik"
                                           else "float32"), row
            assert 1e-10 < row["max_rel_err"] < FLOAT32_TOLERANCE, row  # not float64 inside
        elif row["method"] in TOLERANCE:
            assert row["max_rel_err"] < TOLERANCE[row["method"]], row
        else:  # loglik, grad-analytic, hessian-jacfwd at float64 are their own reference
            assert row["is_reference"] and row["max_abs_err"] == 0.0, row


def test_the_peer_ran_or_the_report_says_why(quick_run):
    report, _, stdout = quick_run
    if importlib.util.find_spec("biogeme") is None:
        assert report["peer"] == []
        assert any(s["group"] == "peer" and "Biogeme is not installed" in s["reason"]
                   for s in report["skipped"]), report["skipped"]
        assert "Biogeme is not installed" in stdout
    else:
        assert not [r for r in report["peer"] if "error" in r]
        kernels = {r["package"]: r for r in report["peer"] if r["task"] == "kernels"}
        assert sorted(kernels) == ["biogeme", "jaxiclv"]
        # common draws: both packages evaluate the same function (sums of N R terms in two
        # orders: a few ulps of the LL)
        assert kernels["biogeme"]["ll_at_truth"] == pytest.approx(
            kernels["jaxiclv"]["ll_at_truth"], rel=1e-12)
        assert {r["package"] for r in report["peer"] if r["task"] == "fit"} == {"biogeme",
                                                                               "jaxiclv"}
        assert "## Peer: Biogeme" in stdout
