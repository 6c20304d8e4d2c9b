"""The individual axis: how a per-individual function is mapped over individuals, and how
many individuals go in one block.

Every per-individual computation (the log-likelihood, its gradient, the scores, every Hessian,
the post-estimation functions) goes through :func:`for_each_individual` (stacked results) or
:func:`accumulate_over_chunks` (sums and stacked rows): all individuals at once
(``vmap``, ``chunk_size=None``) or ``chunk_size`` at a time.

Block size (``chunk_size="auto"``, :func:`auto_chunk_size`): a block of ``n`` individuals with
``R`` draws holds about ``n R W`` per-draw values, ``W = T J + K + D`` (utilities of the
``T x J`` tasks and alternatives, ``K`` indicator terms, ``D`` draw dimensions), and about
``n R W m`` when ``m`` tangent directions or perturbed points go through at once (Hessians).
The block is as large as keeps ``n R W`` within a working-set budget (the Hessians' blocks
``1 / m`` of it): ``2^18`` values (2 MB in float64) on CPU, where the per-draw arrays then stay
in cache; ``2^25`` (256 MB) on an accelerator, which wants large blocks and has the memory for
them. Measured on 2 CPU cores at the reference size (328 individuals, ``W = 49``; the budget
gives 53, 10 and 2 individuals at R = 100, 500 and 2,000), the analytic gradient took
41.9 / 42.3 / 44.0 / 44.0 ms in blocks of 20 / 40 / 53 / 80 individuals at R = 100,
201 / 171 / 180 ms in blocks of 5 / 10 / 20 at R = 500, and 624 / 632 / 647 / 747 / 767 ms in
blocks of 1 / 2 / 4 / 10 / 40 at R = 2,000 (a fixed 40 was 18 % slower there); the jacfwd
Hessian 1.2 s with 32 directions over blocks of 1 individual against 2.7 s over blocks of 40.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["for_each_individual", "map_individuals", "accumulate_over_chunks",
           "auto_chunk_size", "resolve_chunk_size", "chunk_size_for_directions",
           "per_draw_width", "WORKING_SET"]

# per-draw values a block may hold, by backend kind
WORKING_SET = {"cpu": 2 ** 18, "accelerator": 2 ** 25}


def per_draw_width(data, n_draw_dims: int) -> int:
    """``W = T J + K + D``: an individual's per-draw values (utilities of its tasks and
    alternatives, indicator terms, draw dimensions)."""
    n_tasks, n_alternatives = data.available.shape[1:3]
    return n_tasks * n_alternatives + data.indicators.shape[1] + n_draw_dims


def auto_chunk_size(n_individuals: int, n_draws: int, width: int,
                    backend: str | None = None) -> int:
    """Individuals per block so that ``block R W`` per-draw values fit the backend's
    :data:`WORKING_SET`: at least 1, at most every individual (one block). A block with ``m``
    directions in flight is then :func:`chunk_size_for_directions` of it."""
    kind = "cpu" if (backend or jax.default_backend()) == "cpu" else "accelerator"
    block = WORKING_SET[kind] // (max(1, n_draws) * max(1, width))
    return int(min(max(1, block), n_individuals))


def resolve_chunk_size(chunk_size, n_individuals: int, n_draws: int, width: int) -> int | None:
    """``"auto"``: :func:`auto_chunk_size`; a positive integer or ``None`` (one pass) as given."""
    if isinstance(chunk_size, str) and chunk_size == "auto":
        return auto_chunk_size(n_individuals, n_draws, width)
    if chunk_size is not None and (isinstance(chunk_size, str) or int(chunk_size) != chunk_size
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}")
    return chunk_size


def chunk_size_for_directions(chunk_size: int | None, directions: int) -> int | None:
    """Individuals per block when ``directions`` tangent directions (or perturbed points) go
    through at once (pass the number actually in flight): ``chunk_size // directions``, at
    least 1, the same working set as a gradient block; ``None`` (one pass) stays ``None``."""
    return None if chunk_size is None else max(1, chunk_size // directions)


def map_individuals(f, xs, chunk_size: int):
    """``jax.lax.map(f, xs, batch_size=chunk_size)``, checkpointed (reverse-mode
    differentiation keeps one chunk's intermediates, not all), and tolerant of zero-size
    output leaves (an LV without covariates has a ``(L, 0)`` gradient), on which ``lax.map``'s
    batching divides by zero."""
    n = jax.tree.leaves(xs)[0].shape[0]
    shapes, treedef = jax.tree.flatten(jax.eval_shape(f, jax.tree.map(lambda a: a[0], xs)))
    keep = [shape.size > 0 for shape in shapes]
    kept = jax.checkpoint(lambda x: [v for v, k in zip(jax.tree.leaves(f(x)), keep) if k])
    mapped = iter(jax.lax.map(kept, xs, batch_size=chunk_size))
    return jax.tree.unflatten(treedef, [next(mapped) if k else jnp.zeros((n, *s.shape), s.dtype)
                                        for s, k in zip(shapes, keep)])


def for_each_individual(f, data, draws: Float[Array, "N R D"], chunk_size: int | None):
    """``f(x_i, eta_i)`` of every individual, stacked on a leading axis ``N``: all at once
    (``vmap``, ``chunk_size=None``) or over blocks of ``chunk_size`` individuals."""
    if chunk_size is None:
        return jax.vmap(f)(data, draws)
    return map_individuals(lambda xe: f(*xe), (data, draws), chunk_size)


def accumulate_over_chunks(f, xs, chunk_size: int | None):
    """``(sum_b sums_b, rows)`` where ``f(xs_b) = (sums_b, rows_b)`` for blocks ``xs_b`` of
    ``chunk_size`` individuals (the leading axis of every leaf of ``xs``): the sums are
    accumulated with ``jax.lax.scan`` (memory of one block, however many individuals), the
    rows (leading axis the block's individuals) are stacked back to ``N``. ``None``: one
    block."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return f(xs)
    n_blocks = n // chunk_size
    n_full = n_blocks * chunk_size
    blocks = jax.tree.map(lambda a: a[:n_full].reshape(n_blocks, chunk_size, *a.shape[1:]), xs)
    sums_shape, _ = jax.eval_shape(f, jax.tree.map(lambda a: a[0], blocks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape)

    def add(total, block):
        sums, rows = f(block)
        return jax.tree.map(jnp.add, total, sums), rows

    total, rows = jax.lax.scan(add, zeros, blocks)
    rows = jax.tree.map(lambda a: a.reshape(n_full, *a.shape[2:]), rows)
    if n_full == n:
        return total, rows
    rest_sums, rest_rows = f(jax.tree.map(lambda a: a[n_full:], xs))
    return (jax.tree.map(jnp.add, total, rest_sums),
            jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rows, rest_rows))
