"""The simulated log-likelihood, written once.

``LL = sum_i log( (1/R) sum_r exp(log L_ir) )``: :meth:`ICLV.draw_logliks` gives ``log L_ir``
for one individual at its draws; here it is averaged over the draws in log space
(``logsumexp - log R``) and mapped over individuals, either all at once (``chunk_size=None``)
or ``chunk_size`` individuals at a time (``jax.lax.map``, checkpointed), which bounds memory
at ``O(chunk_size * R)`` per-draw terms, also under ``jax.grad``, and keeps the working set in
cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._data import PanelArrays

__all__ = ["individual_loglik", "loglik_per_individual", "simulated_loglik", "map_individuals",
           "sum_over_chunks", "check_inputs"]


def check_inputs(model, data: PanelArrays, draws) -> None:
    """Validate the data and draws of a direct call (outside ``jit``): the model's
    :meth:`~jaxiclv.ICLV.check_data` on the arrays (a Likert 2.7 is an error, not level 2) and
    the draws' shape. Traced calls (inside ``jit``, ``grad`` or ``vmap``) are not checked:
    :class:`~jaxiclv.Problem` checks its data once, before it traces anything."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((data, draws))):
        return
    model.check_data(data)
    n, d = data.task_mask.shape[0], model.n_draw_dims
    if jnp.ndim(draws) != 3 or jnp.shape(draws)[0] != n or jnp.shape(draws)[2] != d:
        raise ValueError(f"draws must have shape (N, R, D) = ({n}, R, {d}), got "
                         f"{jnp.shape(draws)}")


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


def sum_over_chunks(f, xs, chunk_size: int | None):
    """``sum_b f(xs_b)`` over blocks ``xs_b`` of ``chunk_size`` individuals (the leading axis of
    every leaf of ``xs``), accumulated with ``jax.lax.scan``: memory is that of one block,
    however many individuals. ``f`` maps a block to a pytree of sums; ``None``: one block."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return f(xs)
    n_full = n // chunk_size * chunk_size
    blocks = jax.tree.map(lambda a: a[:n_full].reshape(n // chunk_size, chunk_size, *a.shape[1:]),
                          xs)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(f, jax.tree.map(lambda a: a[0], blocks)))
    add = lambda total, block: (jax.tree.map(jnp.add, total, f(block)), None)
    total = jax.lax.scan(add, zeros, blocks)[0]
    if n_full == n:
        return total
    return jax.tree.map(jnp.add, total, f(jax.tree.map(lambda a: a[n_full:], xs)))


def individual_loglik(model, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, ""]:
    """``log((1/R) sum_r L_ir)`` for one individual."""
    log_l = model.draw_logliks(x, eta)  # (R,)
    return logsumexp(log_l) - jnp.log(eta.shape[0])


def loglik_per_individual(model, data: PanelArrays, draws: Float[Array, "N R D"],
                          chunk_size: int | None = None) -> Float[Array, " N"]:
    """The simulated log-likelihood of every individual, shape ``(N,)``."""
    check_inputs(model, data, draws)
    if chunk_size is None:
        return jax.vmap(individual_loglik, in_axes=(None, 0, 0))(model, data, draws)
    return map_individuals(lambda xe: individual_loglik(model, *xe), (data, draws), chunk_size)


def simulated_loglik(model, data: PanelArrays, draws: Float[Array, "N R D"],
                     chunk_size: int | None = None) -> Float[Array, ""]:
    """``LL = sum_i w_i log((1/R) sum_r L_ir)`` (``w_i``: the sampling weights, 1 unless given)."""
    return jnp.sum(data.weights * loglik_per_individual(model, data, draws, chunk_size))
