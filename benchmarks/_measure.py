"""Timing, memory and environment: the one timing helper every benchmark goes through."""

from __future__ import annotations

import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jaxlib
import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent


def measure(fn, repeat: int, budget_s: float, compiles: bool = True) -> tuple[dict, object]:
    """Time ``fn()``, waiting for its result with ``jax.block_until_ready``.

    The first call is timed on its own (``first_s``: compilation plus one run) and is the
    warm-up; then up to ``repeat`` calls are timed, stopping early once ``budget_s`` seconds of
    timed calls have passed (at least one timed call). With ``compiles=False`` nothing is left
    to compile, so the first call counts as the first timed call. Returns the statistics and
    the first call's result.
    """
    start = time.perf_counter()
    output = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = [] if compiles else [first]
    while not times or (len(times) < repeat and sum(times) < budget_s):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return dict(first_s=first, times_s=times, runs=len(times), median_s=float(median),
                min_s=min(times), max_s=max(times), q1_s=float(q1), q3_s=float(q3)), output


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux: ``clear_refs`` 5); False if the
    platform cannot, in which case the peak is the process-wide peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_mb() -> dict:
    """Resident and peak resident memory of this process, and the device allocator's
    statistics where the backend has them (GPU: bytes in use and its process-wide peak)."""
    peak_kib = _status_kib("VmHWM")
    if peak_kib is None:  # ru_maxrss: KiB on Linux, bytes on macOS
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    rss_kib = _status_kib("VmRSS")
    out = {"rss_mb": None if rss_kib is None else rss_kib / 1024, "rss_peak_mb": peak_kib / 1024}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_mb"] = stats.get("bytes_in_use", 0) / 2**20
        out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name")), None)
    except OSError:
        return None


def environment() -> dict:
    """Where and when a result was measured."""
    device = jax.devices()[0]
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return dict(device=device.device_kind, platform=device.platform,
                jax=jax.__version__, jaxlib=jaxlib.__version__,
                git_commit=_git("rev-parse", "HEAD") or "unknown",
                git_dirty=None if status is None else bool(status), cpu_count=cpus,
                cpu_model=_cpu_model(),
                timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
