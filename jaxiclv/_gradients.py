"""Gradients of the simulated log-likelihood: hand-derived, registered with ``custom_vjp``.

For individual ``i`` with per-draw log-likelihoods ``log L_ir`` and posterior draw weights
``w_ir = L_ir / sum_r L_ir``:

    d LL_i / d theta = sum_r w_ir d log L_ir / d theta.

:meth:`ICLV.draw_logliks_and_pullback` gives ``log L_ir`` and its pullback, composed from the
components' pullbacks (hand-derived for the built-in kernels, ``jax.vjp`` for user-written
components and equations): given the weights ``w_i.`` as cotangent it returns
``sum_r w_ir d log L_ir / d theta``. The contractions over draws happen inside each component,
so no ``[N, R, P]`` array is ever formed.

Peak memory of :func:`loglik_and_grad` (float64 words), for ``n = N`` (or ``chunk_size``)
individuals at a time: about ``n R (L + c_K K + c_C T J)`` for the per-draw terms of the
measurement (``c_K`` ~ 3: log P and the two ends) and choice (``c_C`` ~ 2: V and log P) models,
plus ``n P`` for the block's per-individual gradients (summed block by block; the ``N P``
scores only for :func:`loglik_and_grad_per_individual`).

:func:`loglik_and_grad` is an ordinary function (no custom rule), so ``jax.jacfwd`` can
differentiate it for the Hessian; :func:`simulated_loglik_analytic` is the log-likelihood with
that gradient registered as its VJP, so ``jax.grad`` of it runs the hand-derived path and
``jax.jacfwd(jax.grad(...))`` differentiates the hand-derived rule.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._data import PanelArrays
from ._individuals import accumulate_over_chunks, for_each_individual
from ._likelihood import SUMS, check_inputs, simulated_loglik

__all__ = ["individual_loglik_and_grad", "loglik_and_grad_per_individual", "loglik_and_grad",
           "simulated_loglik_analytic"]


def individual_loglik_and_grad(model, x: PanelArrays, eta: Float[Array, "R D"],
                               pullbacks: str = "hand-derived"):
    """``(LL_i, dLL_i / d model)`` for one individual; the gradient is a model-shaped pytree."""
    log_l, pullback = model.draw_logliks_and_pullback(x, eta, pullbacks)
    log_mean = logsumexp(log_l.astype(SUMS))
    weights = jnp.exp(log_l.astype(SUMS) - log_mean)  # (R,) posterior draw weights w_ir
    return log_mean - jnp.log(eta.shape[0]), pullback(weights.astype(log_l.dtype))


def loglik_and_grad_per_individual(model, data: PanelArrays, draws: Float[Array, "N R D"],
                                   chunk_size: int | None = None, pullbacks: str = "hand-derived"):
    """``(LL_i (N,), per-individual gradients)``: a model-shaped pytree whose leaves have a
    leading axis of size N (the scores for BHHH and robust standard errors)."""
    check_inputs(model, data, draws)
    return for_each_individual(lambda m, x, eta: individual_loglik_and_grad(m, x, eta, pullbacks),
                               model, data, draws, chunk_size)


def loglik_and_grad(model, data: PanelArrays, draws: Float[Array, "N R D"],
                    chunk_size: int | None = None, pullbacks: str = "hand-derived"):
    """``(LL, dLL / d model)``, the simulated log-likelihood and its analytic gradient, each
    individual weighted by its sampling weight, both summed in :data:`SUMS` (float64)."""
    check_inputs(model, data, draws)

    def block_sums(model, data, draws):  # a block of n individuals: (LL_b, gradient_b), ()
        loglik, grads = jax.vmap(lambda x, eta: individual_loglik_and_grad(
            model, x, eta, pullbacks))(data, draws)  # (n,), leaves (n, ...)
        weights = data.weights.astype(SUMS)
        return (jnp.sum(weights * loglik),
                jax.tree.map(lambda g: jnp.tensordot(weights, g.astype(SUMS), axes=1),
                             grads)), ()

    # summed block by block: memory of one block's gradients, also for the Hessians' tangents
    return accumulate_over_chunks(block_sums, model, data, draws, chunk_size)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _loglik_with_analytic_vjp(model, data, draws, chunk_size, pullbacks):
    return simulated_loglik(model, data, draws, chunk_size)


def _forward(model, data, draws, chunk_size, pullbacks):
    # with symbolic_zeros=True every leaf comes as CustomVJPPrimal(value, perturbed)
    is_primal = lambda leaf: isinstance(leaf, jax.custom_derivatives.CustomVJPPrimal)
    value = lambda tree: jax.tree.map(lambda p: p.value, tree, is_leaf=is_primal)
    for name, tree in (("data", data), ("draws", draws)):
        if any(p.perturbed for p in jax.tree.leaves(tree, is_leaf=is_primal)):
            raise TypeError(
                f"the analytic log-likelihood is differentiated with respect to the parameters "
                f"only, not the {name}; differentiate simulated_loglik (automatic "
                f"differentiation throughout) for derivatives in the {name}")
    model = value(model)
    loglik, grad = loglik_and_grad(model, value(data), value(draws), chunk_size, pullbacks)
    # the cotangent of each parameter in its own dtype: the float64 sum rounded once
    return loglik, jax.tree.map(lambda g, p: g.astype(jnp.result_type(p)), grad, model)


def _backward(chunk_size, pullbacks, grad, cotangent):
    return jax.tree.map(lambda g: (cotangent * g).astype(g.dtype), grad), None, None


_loglik_with_analytic_vjp.defvjp(_forward, _backward, symbolic_zeros=True)


def simulated_loglik_analytic(model, data: PanelArrays, draws: Float[Array, "N R D"],
                              chunk_size: int | None = None, pullbacks: str = "hand-derived"):
    """The simulated log-likelihood, with :func:`loglik_and_grad` as its registered VJP."""
    return _loglik_with_analytic_vjp(model, data, draws, chunk_size, pullbacks)
