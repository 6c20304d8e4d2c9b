"""The persistent compilation cache: on by default, switched by ``JAXICLV_COMPILATION_CACHE``
and by ``jic.compilation_cache``, and a second process with the same shapes reads what the
first compiled. Each case runs in a fresh process (the setting is read at import)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import jaxiclv as jic

# compiles a small Problem's log-likelihood and gradient; reports where the cache is, the
# programs it read (JAX's monitoring event) and the log-likelihood (and _run adds its stderr)
SCRIPT = """
import json, logging, sys
logging.basicConfig()  # warnings to stderr as "WARNING:<logger>:<message>"
import jax
hits = []
jax.monitoring.register_event_listener(
    lambda event, **_: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None)
import jaxiclv as jic
if sys.argv[1] == "off-at-run-time":
    jic.compilation_cache(None)
sim = jic.simulate(jic.ICLV(latent=jic.Structural({"a": ["z"]}),
                            measurement=jic.NormalIndicators({"a": ["y1", "y2"]}),
                            choice=jic.BinaryProbit(attributes=["x"], latent=["a"])), 30, 2, seed=1)
panel = jic.Panel.from_dataframe(sim.data, id="id", choice="choice", attributes=["x"],
                                 covariates=["z"], indicators=["y1", "y2"])
problem = jic.Problem(sim.model, panel, jic.Halton(10, seed=0))
llf, _ = problem.loglik_and_grad(problem.theta0)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "hits": len(hits),
                  "llf": float(llf)}))
"""


def _run(tmp_path, setting, argument="plain"):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAXICLV_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # cache even fast compiles
    if setting is not None:
        env["JAXICLV_COMPILATION_CACHE"] = setting
    out = subprocess.run([sys.executable, "-c", SCRIPT, argument], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr}


def _files(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


@pytest.mark.xdist_group("cache")
def test_cache_on_by_default_and_read_by_a_second_process(tmp_path):
    default = tmp_path / "xdg" / "jaxiclv" / "jax"
    first = _run(tmp_path, None)
    assert first["dir"] == str(default) and first["hits"] == 0
    written = _files(default)
    assert any("loglik_and_grad" in name for name in written), written
    second = _run(tmp_path, None)
    assert second["hits"] >= 1  # the log-likelihood and gradient came from the first's files
    assert second["llf"] == first["llf"]  # the same program, bit for bit


@pytest.mark.xdist_group("cache")
def test_cache_switched_off_and_to_a_directory(tmp_path):
    default = tmp_path / "xdg" / "jaxiclv" / "jax"
    assert _run(tmp_path, "off")["dir"] is None
    assert _run(tmp_path, None, "off-at-run-time")["dir"] is None
    assert _files(default) == []  # nothing was written anywhere by default
    chosen = tmp_path / "chosen"
    assert _run(tmp_path, str(chosen))["dir"] == str(chosen)
    assert _files(chosen) and _files(default) == []


@pytest.mark.parametrize("setting", ["", "0", "off", "OFF", "false", "no"])
def test_every_off_spelling(setting, monkeypatch):
    """Read at import; here the same reading, in this process, then the setting restored."""
    from jaxiclv._cache import _configure_on_import
    previous = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("JAXICLV_COMPILATION_CACHE", setting)
    try:
        _configure_on_import()
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jic.compilation_cache(previous)


@pytest.mark.xdist_group("cache")
def test_an_unusable_directory_at_import_is_a_warning_and_no_cache(tmp_path):
    """``XDG_CACHE_HOME`` a regular file (the default directory cannot be made), or
    ``JAXICLV_COMPILATION_CACHE`` naming a path under one: the import works, the cache is off,
    and the ``jaxiclv`` logger says which directory and how to choose another."""
    (tmp_path / "xdg").write_text("a file, not a directory")
    for setting, directory in ((None, tmp_path / "xdg" / "jaxiclv" / "jax"),
                               (str(tmp_path / "xdg" / "chosen"), tmp_path / "xdg" / "chosen")):
        out = _run(tmp_path, setting)
        assert out["dir"] is None and out["hits"] == 0, setting
        assert (f"WARNING:jaxiclv:{str(directory)!r} cannot be used as jaxiclv's compilation "
                "cache" in out["stderr"]), out["stderr"]
        assert "JAXICLV_COMPILATION_CACHE=/path" in out["stderr"], out["stderr"]


def test_an_unusable_directory_at_run_time_is_an_error_naming_the_switches(tmp_path, monkeypatch):
    """Under a regular file (mkdir fails), the file itself, and a directory the OS reports
    read-only (``os.access`` patched: as root every directory is writable): an ``OSError``
    naming the path and the switches, and the setting unchanged."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: (
        False if Path(path) == locked else access(path, mode, **kwargs)))
    previous = jax.config.jax_compilation_cache_dir
    try:
        for bad in (blocker / "cache", blocker, locked):
            with pytest.raises(OSError, match=re.escape(
                    f"{str(bad)!r} cannot be used as jaxiclv's compilation cache")) as error:
                jic.compilation_cache(bad)
            for switch in ("jic.compilation_cache(None)", "JAXICLV_COMPILATION_CACHE=off"):
                assert switch in str(error.value)
            assert jax.config.jax_compilation_cache_dir == previous
    finally:
        jic.compilation_cache(previous)
