"""Individuals sharded over four forced CPU devices, in one process or in two under
``jax.distributed``, give what one device gives.

JAX fixes its devices when it starts, so each case runs ``tests/sharded_check.py`` (one
process, ``XLA_FLAGS=--xla_force_host_platform_device_count=4``) or
``tests/multihost_check.py`` (two processes on localhost with two devices each, CPU
collectives) in fresh processes and reads back the largest relative differences between the
sharded problem and the same problem on one device.

Bounds: the sharded sums add the same terms in another order (per device, then across
devices), so exact quantities (LL, gradients, scores, the structured and jacfwd Hessians, a
whole estimate from the truth and its post-estimation) agree to rounding: ``1e-12`` (seen:
at most ``2e-15``). The finite-difference Hessians divide rounding differences in the
gradient (``~eps |g|``) by their steps: ``h = eps^(1/2) max(|theta|, 1)`` forward (``~1e-8``
relative, bound ``1e-6``), ``eps^(1/3) ...`` central (``~1e-11``, bound ``1e-9``).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jaxiclv as jic
import pytest

DEVICES = 4
HERE = Path(__file__).parent
EXACT = 1e-12
BOUNDS = {"hessian fd-forward": 1e-6, "hessian fd-central": 1e-9}
FLAGS = ("devices", "padded", "explain_nonfinite", "converged", "processes", "estimates")


def _environment(devices_per_process):
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}


def _read(path):
    return json.loads(Path(path).read_text())


def _sharded(tmp_path, cases):
    out = tmp_path / "differences.json"
    done = subprocess.run([sys.executable, str(HERE / "sharded_check.py"), str(out),
                           *map(str, cases)], env=_environment(DEVICES), capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return _read(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _multihost(tmp_path, cases, processes=2):
    """``cases`` in ``processes`` processes of ``DEVICES / processes`` devices each: every
    process's results."""
    port = _free_port()
    outs = [tmp_path / f"process{i}.json" for i in range(processes)]
    running = [subprocess.Popen([sys.executable, str(HERE / "multihost_check.py"), str(i),
                                 str(processes), str(port), str(out), *map(str, cases)],
                                env=_environment(DEVICES // processes), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for i, out in enumerate(outs)]
    try:
        logs = [p.communicate(timeout=1200)[0] for p in running]
    finally:
        for p in running:
            p.kill()
    for p, log in zip(running, logs):
        assert p.returncode == 0, log[-4000:]
    return [_read(out) for out in outs]


def _check(case, values, processes=1):
    assert values["devices"] == DEVICES and values["processes"] == processes
    if case != "estimate":
        assert values["padded"] == -int(case.removesuffix("+fly")) % DEVICES
        assert case.endswith("+fly") == ("on the fly second_order" in values)
        assert values["explain_nonfinite"] == 0.0  # a finite LL is explained as finite
        assert set(jic.HESSIANS) <= {name.removeprefix("hessian ") for name in values}
    else:
        assert values["converged"] == 1.0
    for name, difference in values.items():
        if name not in FLAGS:
            assert difference <= BOUNDS.get(name, EXACT), (case, name, difference)


def test_sharded_equals_one_device(tmp_path):
    """The quick loop's case: 3 individuals on 4 devices (fewer individuals than devices, not
    a multiple of them: one device holds only a padded individual), also with the draws made
    on the fly on every device."""
    for case, values in _sharded(tmp_path, ["3+fly"]).items():
        _check(case, values)


@pytest.mark.slow
def test_sharded_equals_one_device_for_every_shape(tmp_path):
    """N = 1 (three devices hold only padding), N = 8 (no padding), and a whole estimate with
    its post-estimation (posterior, predict, shares, the component table)."""
    results = _sharded(tmp_path, [1, 8, "estimate"])
    assert set(results) == {"1", "8", "estimate"}
    for case, values in results.items():
        _check(case, values)


@pytest.mark.slow
def test_two_processes_equal_one_device(tmp_path):
    """Two processes on localhost (``jax.distributed``, CPU collectives), two devices each: a
    whole estimate, whose optimiser runs on both processes and reaches the same numbers on
    both, and the LL, gradient, scores and Hessian at one point."""
    results = _multihost(tmp_path, ["estimate"])
    for values in results:
        assert set(values) == {"estimate"}
        for case, case_values in values.items():
            _check(case, case_values, processes=2)
    first, second = (values["estimate"]["estimates"] for values in results)
    assert first == second  # the same all-reduced sums on every process, bit for bit
