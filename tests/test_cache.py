"""The persistent compilation cache: on by default, switched by ``JAXICLV_COMPILATION_CACHE``
and by ``jic.compilation_cache``, and a second process with the same shapes reads what the
first compiled. Each case runs in a fresh process (the setting is read at import)."""

import json
import os
import subprocess
import sys

import jax
import pytest

import jaxiclv as jic

# compiles a small Problem's log-likelihood and gradient; reports where the cache is, the
# programs it read (JAX's monitoring event) and the log-likelihood
SCRIPT = """
import json, sys
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
    return json.loads(out.stdout.strip().splitlines()[-1])


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
