"""The simulated log-likelihood, written once.

``LL = sum_i log( (1/R) sum_r exp(log L_ir) )``: :meth:`ICLV.draw_logliks` gives ``log L_ir``
for one individual at its draws; here it is averaged over the draws in log space
(``logsumexp - log R``) and mapped over individuals (:mod:`jaxiclv._individuals`), either all
at once (``chunk_size=None``) or ``chunk_size`` individuals at a time (``jax.lax.map``,
checkpointed), which bounds memory at ``O(chunk_size * R)`` per-draw terms, also under
``jax.grad``, and keeps the working set in cache.

Precision: the per-draw terms ``log L_ir`` are computed in the problem's dtype (float64 by
default; float32 on request, for accelerators); the sums over draws (``logsumexp``) and over
individuals are accumulated in :data:`SUMS`, float64, whatever that dtype. In float32 the
rounding of a total of ``N`` individual terms then does not grow with ``N``: ``LL`` carries
each ``LL_i``'s float32 error (a few eps32 of ``|LL_i|``, from its ``T + K`` terms), not
``N`` eps32 of ``|LL|``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._data import PanelArrays
from ._draws import OnTheFly
from ._individuals import for_each_individual

__all__ = ["individual_loglik", "loglik_per_individual", "simulated_loglik", "check_inputs",
           "SUMS"]

SUMS = jnp.float64  # the dtype of every sum over draws and over individuals


def check_inputs(model, data: PanelArrays, draws) -> None:
    """Validate the data and draws of a direct call (outside ``jit``): the model's
    :meth:`~jaxiclv.ICLV.check_data` on the arrays (a Likert 2.7 is an error, not level 2) and
    the draws' shape. Traced calls (inside ``jit``, ``grad`` or ``vmap``) are not checked:
    :class:`~jaxiclv.Problem` checks its data once, before it traces anything."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((data, draws))):
        return
    model.check_data(data)
    n, d = data.task_mask.shape[0], model.n_draw_dims
    shape = draws.shape if isinstance(draws, OnTheFly) else jnp.shape(draws)
    if len(shape) != 3 or shape[0] != n or shape[2] != d:
        raise ValueError(f"draws must have shape (N, R, D) = ({n}, R, {d}), got {shape}")


def individual_loglik(model, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, ""]:
    """``log((1/R) sum_r L_ir)`` for one individual (in :data:`SUMS`)."""
    log_l = model.draw_logliks(x, eta).astype(SUMS)  # (R,)
    return logsumexp(log_l) - jnp.log(eta.shape[0])


def loglik_per_individual(model, data: PanelArrays, draws: Float[Array, "N R D"],
                          chunk_size: int | None = None) -> Float[Array, " N"]:
    """The simulated log-likelihood of every individual, shape ``(N,)``."""
    check_inputs(model, data, draws)
    return for_each_individual(individual_loglik, model, data, draws, chunk_size)


def simulated_loglik(model, data: PanelArrays, draws: Float[Array, "N R D"],
                     chunk_size: int | None = None) -> Float[Array, ""]:
    """``LL = sum_i w_i log((1/R) sum_r L_ir)`` (``w_i``: the sampling weights, 1 unless given)."""
    return jnp.sum(data.weights.astype(SUMS) * loglik_per_individual(model, data, draws,
                                                                     chunk_size))
