"""Test configuration: float64 and strict rank promotion, so that shape bugs raise."""

import os

# the test processes run side by side (pytest-xdist): on an accelerator none may take most of
# its memory up front
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop JAX's compiled executables after each test module: hundreds of distinct model
    structures compiled in one process once crashed XLA's CPU compiler (segfault) late in a
    full run."""
    yield
    jax.clear_caches()
