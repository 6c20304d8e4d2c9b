"""Accuracy against the float64 reference, scaling exponents, the Markdown table and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import METHOD_NAMES, REFERENCE_OF

AXES = (("individuals", "n", "N (individuals)"), ("draws", "r", "R (draws)"))


def add_accuracy(rows: list[dict], arrays: Path) -> None:
    """Add ``max_abs_err`` and ``max_rel_err`` (``max_p |x_p - ref_p| / max(|ref_p|, 1)``,
    the mixed absolute/relative error) against the float64 reference of the same size; a
    sharded case against the same method on one device, draws made on the fly against the
    same method with the draws materialised."""
    for row in rows:
        if row["method"] not in REFERENCE_OF or "error" in row:
            continue
        reference_key = row["key"].replace(row["dtype"], "float64")
        reference_method = REFERENCE_OF[row["method"]]
        if row.get("devices"):
            reference_key = reference_key.removesuffix(f"-D{row['devices']}") + "-D1"
            reference_method = row["method"]
        if row.get("on_the_fly"):
            reference_key, reference_method = reference_key.removesuffix("-fly"), row["method"]
        own = arrays / f"{row['key']}__{row['method']}.npy"
        reference = arrays / f"{reference_key}__{reference_method}.npy"
        if own.exists() and reference.exists():
            x, ref = np.load(own).astype(np.float64), np.load(reference)
            error = np.abs(x - ref)
            row.update(reference=f"{reference_key} {reference_method}",
                       is_reference=own == reference, max_abs_err=float(error.max()),
                       max_rel_err=float((error / np.maximum(np.abs(ref), 1.0)).max()))


def _points(rows, group, method, axis):
    return sorted((row[axis], row["n"] * row["r"], row["median_s"]) for row in rows
                  if group in row.get("groups", ()) and row["method"] == method
                  and row.get("median_s") is not None)


def scaling_exponents(rows: list[dict]) -> list[dict]:
    """The log-log slope of the median time against N x R, per scaling group and method."""
    out = []
    for group, axis, _ in AXES:
        for method in METHOD_NAMES:
            points = _points(rows, group, method, axis)
            if len(points) >= 2:
                _, work, seconds = zip(*points)
                slope = np.polyfit(np.log(work), np.log(seconds), 1)[0]
                out.append(dict(group=group, method=method, exponent=float(slope),
                                sizes=[p[0] for p in points], median_s=list(seconds)))
    return out


def write_plots(report: dict, out: Path) -> dict:
    """Median time against N and against R, one line per method, log-log."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {"skipped": "matplotlib is not importable (pip install matplotlib)"}
    files = []
    for group, axis, label in AXES:
        figure, ax = plt.subplots(figsize=(6.4, 4.4))
        for method in METHOD_NAMES:
            points = _points(report["results"], group, method, axis)
            if len(points) >= 2:
                ax.loglog([p[0] for p in points], [p[2] for p in points], "o-", label=method)
        if ax.lines:
            ax.set(xlabel=label, ylabel="median time (s)",
                   title=f"jaxiclv on {report['environment'].get('device', '?')}: time vs {label}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            name = f"time_vs_{axis.upper()}.png"
            figure.savefig(out / name, dpi=120, bbox_inches="tight")
            files.append(name)
        plt.close(figure)
    return {"files": files}


def _g(x, spec=".3g") -> str:
    return "" if x is None else format(x, spec)


def _rss(row: dict) -> str:
    """Peak RSS, and in brackets its rise over the RSS before the method."""
    if row.get("rss_peak_mb") is None:
        return ""
    rise = "" if row.get("rss_before_mb") is None else f" (+{row['rss_peak_mb'] - row['rss_before_mb']:.0f})"
    return f"{row['rss_peak_mb']:.0f}{rise}"


def _note(row: dict) -> str:
    parts = [row.get("note", "")]
    if row.get("asymmetry_rel") is not None:
        parts.append(f"asymmetry {row['asymmetry_rel']:.1e} before symmetrising")
    if row.get("chunk_size"):
        parts.append(f"chunk_size {row['chunk_size']}")
    if row.get("is_reference"):
        parts.append("float64 reference")
    if row.get("error"):
        parts.append(f"**failed**: {row['error']}")
    return "; ".join(p for p in parts if p)


def _failed_row(label, error: str, n_columns: int) -> str:
    """A table row for a case that failed: its label, the error, empty cells after."""
    return f"| {label} | **failed**: {error} |" + " |" * (n_columns - 2)


def _peer_lines(rows: list[dict]) -> list[str]:
    """The peer's two tables: the kernels, and the whole fits cold and warm."""
    done = [row for row in rows if "error" not in row]
    first = done[0] if done else rows[0]
    lines = ["", "## Peer: Biogeme on the same model, data and draws", "",
             f"One latent variable, {first.get('n_params')} parameters, ordered-probit items, "
             f"multinomial logit; {first.get('n')} individuals x {first.get('tasks')} tasks, "
             f"{first.get('r')} draws per individual, the same draws in both packages. Each "
             f"measurement in a fresh process, no compilation cache: a first call compiles.",
             "", "| package | LL + gradient: first / median (s) | Hessian: first / median (s) "
             "| LL at the true values |", "|---|---|---|---|"]
    kernels = {row["package"]: row for row in done if row["task"] == "kernels"}
    for row in rows:
        if row["task"] != "kernels":
            continue
        if "error" in row:
            lines.append(_failed_row(row["package"], row["error"], 4))
            continue
        lines.append(f"| {row['package']} {row['version']} | {_g(row['llgrad_first_s'])} / "
                     f"{_g(row['llgrad_median_s'])} | {_g(row['hessian_first_s'])} / "
                     f"{_g(row['hessian_median_s'])} | {row['ll_at_truth']:.9f} |")
    if {"jaxiclv", "biogeme"} <= set(kernels):
        ours, theirs = kernels["jaxiclv"], kernels["biogeme"]
        difference = abs(ours["ll_at_truth"] - theirs["ll_at_truth"]) / abs(ours["ll_at_truth"])
        lines += ["", f"Biogeme's median against jaxiclv's: LL + gradient "
                  f"{theirs['llgrad_median_s'] / ours['llgrad_median_s']:.1f}x, Hessian "
                  f"{theirs['hessian_median_s'] / ours['hessian_median_s']:.1f}x; the two LLs "
                  f"at the true values differ by {difference:.1e} (relative)."]
    lines += ["", "| package | optimiser | cold fit (s) | warm fit (s) | iterations | final LL "
              "| status |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["task"] != "fit":
            continue
        if "error" in row:
            lines.append(_failed_row(f"{row['package']} {row['optimizer']}", row["error"], 7))
            continue
        cold, warm = row["cold"], row["warm"]
        lines.append(f"| {row['package']} | {row['optimizer']} | {cold['wall_s']:.1f} | "
                     f"{warm['wall_s']:.1f} | {cold['iterations']} | {cold['llf']:.6f} | "
                     f"{cold['status']} |")
    return lines


def write_markdown(report: dict, path: Path) -> str:
    env = report["environment"]
    lines = [
        f"# jaxiclv benchmarks ({report['mode']})", "",
        f"{env.get('device')} ({env.get('platform')}), {env.get('cpu_model') or 'CPU model unknown'}, "
        f"{env.get('cpu_count')} CPUs; "
        f"jax {env.get('jax')}, jaxlib {env.get('jaxlib')}; commit {env.get('git_commit')}"
        f"{' + uncommitted changes' if env.get('git_dirty') else ''}; {env.get('timestamp')}; "
        f"suite wall time {report['wall_s']:.0f} s.", "",
        f"Times: first call (compilation + one run), then the median and range of up to "
        f"{report['sizes']['repeat']} timed calls (fewer once {report['sizes']['budget_s']} s "
        f"of timed calls have passed). Errors: against the float64 reference of the same size "
        f"(analytic gradient; the jacfwd Hessian for Hessians), relative error "
        f"`max |x - ref| / max(|ref|, 1)`. Peak RSS: of the case's process during the method "
        f"(high-water mark reset before it, where the platform allows; else process-wide), and "
        f"its rise over the RSS before the method. Device peak: the process's peak so far "
        f"(GPU only).", "",
        "| case | P | method | first call (s) | median (s) | min-max (s) | runs | peak RSS (+rise) MB "
        "| device peak (MB) | max abs err | max rel err | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        lines.append(
            f"| {row['key']} | {row.get('n_params', '')} | {row['method']} "
            f"| {_g(row.get('first_s'))} | {_g(row.get('median_s'))} "
            f"| {_g(row.get('min_s'))}-{_g(row.get('max_s'))} | {row.get('runs', '')} "
            f"| {_rss(row)} | {_g(row.get('device_peak_mb'), '.0f')} "
            f"| {_g(row.get('max_abs_err'), '.1e')} | {_g(row.get('max_rel_err'), '.1e')} "
            f"| {_note(row)} |")
    if report["scaling"]:
        lines += ["", "## Scaling: fitted exponent of time vs N x R (log-log slope)", "",
                  "| group | method | exponent | sizes | median (s) |", "|---|---|---|---|---|"]
        lines += [f"| {s['group']} | {s['method']} | {s['exponent']:.2f} "
                  f"| {', '.join(map(str, s['sizes']))} "
                  f"| {', '.join(_g(t) for t in s['median_s'])} |" for s in report["scaling"]]
    mixed = [row for row in report["results"]
             if "mixed" in row.get("groups", ()) and row.get("median_s") is not None]
    if mixed:
        lines += ["", "## Random coefficients: the cost per individual x draw", "",
                  "The median time divided by N x R (per individual, the mixed logit has 10 tasks of 4 "
                  "alternatives; the ICLVs binary tasks and Likert items).", "",
                  "| case | P | method | median (s) | per individual x draw (us) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {row['key']} | {row.get('n_params', '')} | {row['method']} "
                  f"| {_g(row['median_s'])} | {row['median_s'] / (row['n'] * row['r']) * 1e6:.3g} |"
                  for row in mixed]
    sharded = [row for row in report["results"]
               if "devices" in row.get("groups", ()) and row.get("median_s") is not None]
    if sharded:
        one = {row["method"]: row["median_s"] for row in sharded if row["devices"] == 1}
        lines += ["", "## Devices: individuals sharded over k devices", "",
                  "Throughput in individual-draws per second (N x R / median time); the "
                  "speed-up over one device; the largest relative difference from one device's "
                  "result (`max |x - ref| / max(|ref|, 1)`). On a CPU the devices are forced "
                  "CPU devices sharing its cores.", "",
                  "| case | devices | method | median (s) | individual-draws / s | speed-up "
                  "| difference from 1 device |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {row['key']} | {row['n_devices']} | {row['method']} | {_g(row['median_s'])} "
                  f"| {row['n'] * row['r'] / row['median_s']:.3g} "
                  f"| {_g(one[row['method']] / row['median_s'] if row['method'] in one else None)} "
                  f"| {_g(row.get('max_rel_err'), '.1e')} |" for row in sharded]
    memory = [row for row in report["results"]
              if "memory" in row.get("groups", ()) and row.get("median_s") is not None]
    if memory:
        lines += ["", "## Memory: peak RSS against N, draws materialised or made on the fly",
                  "", "The process's peak resident memory during the method (the panel and, "
                  "materialised, the `(N, R, D)` draws included); draws made on the fly "
                  "against the same method with them materialised.", "",
                  "| N | R | draws | method | first call (s) | median (s) | peak RSS (MB) "
                  "| individual-draws / s | difference |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {row['n']} | {row['r']} "
                  f"| {'on the fly' if row.get('on_the_fly') else 'materialised'} "
                  f"| {row['method']} | {_g(row.get('first_s'))} | {_g(row['median_s'])} "
                  f"| {_g(row.get('rss_peak_mb'), '.0f')} "
                  f"| {row['n'] * row['r'] / row['median_s']:.3g} "
                  f"| {_g(row.get('max_rel_err'), '.1e') if row.get('on_the_fly') else ''} |"
                  for row in memory]
    if report.get("wait"):
        lines += ["", "## The whole wait: estimate, cold and warm", "",
                  "Each row is a fresh process: `import jaxiclv`, then `jic.estimate(model, "
                  "panel, draws, optimizer=...)` from the default starting values (cold: it "
                  "compiles, or reads the compilation cache; trace / lower / compile are JAX's "
                  "own monitoring events), then the same call again (warm). Cache: *empty* is a "
                  "new cache directory, which that process fills; *filled* is the next process "
                  "on it. The main job is `python -m jaxiclv` end to end.", "",
                  "| study | P | optimizer | cache | import (s) | cold (s) | trace / lower / "
                  "compile (s) | cached programs | warm (s) | cold / warm | iterations | LL "
                  "| status |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in report["wait"]:
            label = row.get("study", "python -m jaxiclv")
            if row.get("error"):
                lines.append(_failed_row(f"{label} {row.get('optimizer', '')}", row["error"], 13))
            elif row["method"] == "main":
                lines.append(f"| main job | 219 | default | {row['cache']} | | "
                             f"{row['process_wall_s']:.1f} (whole process) | | | | | | | |")
            else:
                cold, warm = row["cold"], row.get("warm")
                ratio = f"{cold['wall_s'] / warm['wall_s']:.1f}" if warm else ""
                lines.append(
                    f"| {label} | {row['n_params']} | {row['optimizer']} | {row['cache']} "
                    f"| {row['import_s']:.1f} | {cold['wall_s']:.1f} | {cold['trace_s']:.1f} / "
                    f"{cold['lower_s']:.1f} / {cold['compile_s']:.1f} | {cold['cache_hits']} "
                    f"| {_g(warm['wall_s']) if warm else 'not run'} | {ratio} "
                    f"| {cold['iterations']} | {cold['llf']:.3f} | {cold['status']} |")
    if report.get("peer"):
        lines += _peer_lines(report["peer"])
    lines += ["", "## Left out", "",
              "The finite-difference gradient, the Hessians and the replayed Hessian cost up to "
              "about P gradients each and run at the reference size only (the structured and "
              "jacfwd Hessians also in float32); the continuous variant is not replayed."
              + (" Quick mode: a miniature model, fewer methods per group, most XLA "
                 "optimisations off; its times mean nothing." if report["mode"] == "quick" else "")]
    lines += [f"- {s['case']} {s['method']}: {s['reason']}" for s in report["skipped"]]
    plots = report["plots"]
    lines += ["", "Plots: " + (", ".join(plots["files"]) or "none (no scaling group ran)"
                               if "files" in plots else f"skipped: {plots['skipped']}")]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
