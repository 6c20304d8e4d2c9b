"""JAX's persistent compilation cache, on by default.

Compiling the log-likelihood, its gradient and the Hessian of a model takes seconds to tens of
seconds; evaluating them, milliseconds. With the cache on, a compiled program is written to
disk, and a later process that compiles the same program (same model structure, same array
shapes and dtypes, same JAX version and device) reads it back instead of compiling again.
Only programs that took at least ``jax_persistent_cache_min_compile_time_secs`` (1 s) to compile
are written.

Where (decided once, when jaxiclv is imported):

- ``JAXICLV_COMPILATION_CACHE=off`` (or ``0``, ``false``, ``no``, empty): no cache;
- ``JAXICLV_COMPILATION_CACHE=/some/dir``: that directory;
- otherwise, if JAX already has a cache directory (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config`` set before the import), that one, untouched;
- otherwise ``$XDG_CACHE_HOME/jaxiclv/jax`` (``~/.cache/jaxiclv/jax``).

:func:`compilation_cache` changes it (or turns it off) at run time. The cache is not pruned
(JAX prunes only with the ``filelock`` package and ``jax_compilation_cache_max_size`` set):
delete the directory to empty it. JAX trusts its cache: do not point it at a directory others
can write to.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

__all__ = ["compilation_cache", "default_cache_dir", "ENVIRONMENT_VARIABLE"]

ENVIRONMENT_VARIABLE = "JAXICLV_COMPILATION_CACHE"
_OFF = ("", "0", "off", "false", "no")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxiclv/jax``, or ``~/.cache/jaxiclv/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxiclv" / "jax"


def compilation_cache(path: str | os.PathLike | None | bool = True) -> Path | None:
    """Turn JAX's persistent compilation cache on (``True``: :func:`default_cache_dir`, or a
    directory) or off (``None`` or ``False``); returns the directory now in use (``None``:
    off). Programs already compiled in this process stay compiled either way."""
    if path is True:
        path = default_cache_dir()
    directory = None if path is None or path is False else Path(path).expanduser()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    _jax_cache.reset_cache()  # JAX reads the setting once, at its first compilation after this
    jax.config.update("jax_compilation_cache_dir", None if directory is None else str(directory))
    return directory


def _configure_on_import() -> None:
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if setting is not None:
        compilation_cache(None if setting.strip().lower() in _OFF else setting)
    elif jax.config.jax_compilation_cache_dir is None:
        try:
            compilation_cache(True)
        except OSError:  # an unwritable home directory: no cache, nothing else changes
            compilation_cache(None)
