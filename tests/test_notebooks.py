"""Execute every notebook in notebooks/ in QUICK mode (``JAXICLV_QUICK=1``); a cell that
raises fails the test. The kernel is the ``python3`` kernel of the interpreter running the
tests (installed into ``sys.prefix`` if it is missing or points elsewhere)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

# Not importorskip: missing notebook tooling must fail the test suite, not skip it.
import nbformat  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "python3"


def _kernel_runs_this_python() -> None:
    """Make sure the ``python3`` kernelspec starts ``sys.executable``."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        same = Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or (
            spec.argv[0] in ("python", "python3") and Path(spec.resource_dir).is_relative_to(sys.prefix))
    except NoSuchKernel:
        same = False
    if not same:
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL, prefix=sys.prefix)
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable or Path(spec.resource_dir).is_relative_to(sys.prefix), (
        f"the {KERNEL!r} kernel runs {spec.argv[0]}, not {sys.executable}")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path: Path, tmp_path):
    _kernel_runs_this_python()
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "JAXICLV_QUICK": "1"}
    # the kernel's channels over Unix sockets in tmp_path, not TCP ports: a port the kernel
    # manager picked can be taken by another test's process (the multi-host test's
    # collectives open many) before the kernel binds it
    kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(nb, km=kernel, timeout=600, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell raised\n{error}")
    seconds = time.perf_counter() - started
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, json.dumps(errors)[:2000]
    first = next(c for c in nb.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in first.outputs if o.get("output_type") == "stream")
    assert "QUICK mode" in printed and "devices:" in printed, printed
    print(f"{path.name}: {seconds:.1f} s in QUICK mode")
