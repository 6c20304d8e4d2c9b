"""Test configuration: float64 and strict rank promotion, so that shape bugs raise."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop JAX's compiled executables after each test module: hundreds of distinct model
    structures compiled in one process once crashed XLA's CPU compiler (segfault) late in a
    full run."""
    yield
    jax.clear_caches()
