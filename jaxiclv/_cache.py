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

A directory that cannot be created or written is an ``OSError`` from :func:`compilation_cache`
that names it and the switches. At import, whether it is the default directory or the one
``JAXICLV_COMPILATION_CACHE`` names, it is a warning on the ``jaxiclv`` logger instead and the
cache is off: a setting that cannot be honoured costs compilation time, which is no reason for
``import jaxiclv`` to fail.

:func:`compilation_cache` changes it (or turns it off) at run time. The cache is not pruned
(JAX prunes only with the ``filelock`` package and ``jax_compilation_cache_max_size`` set):
delete the directory to empty it. JAX trusts its cache: do not point it at a directory others
can write to.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

__all__ = ["compilation_cache", "default_cache_dir", "ENVIRONMENT_VARIABLE"]

ENVIRONMENT_VARIABLE = "JAXICLV_COMPILATION_CACHE"
_OFF = ("", "0", "off", "false", "no")
logger = logging.getLogger("jaxiclv")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxiclv/jax``, or ``~/.cache/jaxiclv/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxiclv" / "jax"


def compilation_cache(path: str | os.PathLike | None | bool = True) -> Path | None:
    """Turn JAX's persistent compilation cache on (``True``: :func:`default_cache_dir`, or a
    directory) or off (``None`` or ``False``); returns the directory now in use (``None``:
    off). Programs already compiled in this process stay compiled either way. A directory
    that cannot be created or written is an ``OSError`` that names the switches, and the
    setting stays as it was."""
    if path is True:
        path = default_cache_dir()
    directory = None if path is None or path is False else Path(path).expanduser()
    if directory is not None:
        _make_usable(directory)
    _jax_cache.reset_cache()  # JAX reads the setting once, at its first compilation after this
    jax.config.update("jax_compilation_cache_dir", None if directory is None else str(directory))
    return directory


def _make_usable(directory: Path) -> None:
    """Create ``directory`` if need be; an ``OSError`` naming it and the switches if it cannot
    be created or written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise OSError(
            f"{str(directory)!r} cannot be used as jaxiclv's compilation cache "
            f"({error.strerror or error}): choose another directory (jic.compilation_cache(path), "
            f"or {ENVIRONMENT_VARIABLE}=/path before the import) or turn the cache off "
            f"(jic.compilation_cache(None), or {ENVIRONMENT_VARIABLE}=off)") from error


def _configure_on_import() -> None:
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if setting is not None:
        path = None if setting.strip().lower() in _OFF else setting
    elif jax.config.jax_compilation_cache_dir is None:
        path = True
    else:
        return  # JAX's own setting, untouched
    try:
        compilation_cache(path)
    except OSError as error:  # no cache rather than no import (module docstring)
        logger.warning("%s; the compilation cache is off", error)
        compilation_cache(None)
