"""Gradients of the simulated log-likelihood: hand-derived, registered with ``custom_vjp``.

For individual ``i`` with per-draw log-likelihoods ``log L_ir`` and posterior draw weights
``w_ir = L_ir / sum_r L_ir``:

    d LL_i / d theta = sum_r w_ir d log L_ir / d theta.

Every component (measurement blocks, choice model) returns its per-draw log-likelihoods and a
hand-derived pullback (:meth:`loglik_vjp`): given the weights ``w_i.`` as cotangent, it returns
``sum_r w_ir d log L_ir / d theta_component`` and ``w_ir d log L_ir / d LV_ir``; the structural
model's pullback carries the latter to ``gamma``, ``b`` and ``log sigma``, through LV-on-LV
paths. The contractions over draws happen inside each component, so no ``[N, R, P]`` array is
ever formed.

Peak memory of :func:`loglik_and_grad` (float64 words), for ``n = N`` (or ``chunk_size``)
individuals at a time: about ``n R (L + c_K K + c_C T J)`` for the per-draw terms of the
measurement (``c_K`` ~ 3: log P and the two ends) and choice (``c_C`` ~ 2: V and log P) models,
plus ``N P`` for the per-individual gradients.

:func:`loglik_and_grad` is an ordinary function (no custom rule), so ``jax.jacfwd`` can
differentiate it for the Hessian; :func:`simulated_loglik_analytic` is the log-likelihood with
that gradient registered as its VJP, so ``jax.grad`` of it runs the hand-derived path and
``jax.jacfwd(jax.grad(...))`` differentiates the hand-derived rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._data import PanelArrays
from ._likelihood import map_individuals, simulated_loglik
from ._parameters import replace_fields

__all__ = ["draw_logliks_and_pullback", "individual_loglik_and_grad",
           "loglik_and_grad_per_individual", "loglik_and_grad",
           "simulated_loglik_analytic"]


def draw_logliks_and_pullback(model, x: PanelArrays, eta: Float[Array, "R D"]):
    """``log L_ir`` ``(R,)`` for one individual and the hand-derived pullback: ``pullback(w)``
    with ``w`` ``(R,)`` returns ``sum_r w_r d log L_ir / d model``, a model-shaped pytree."""
    lv, latent_vjp = model.latent.latent_vjp(model.covariates_of(x), eta)  # (L, R)
    parts = [(index, *component.loglik_vjp(*inputs, lv[index]))
             for component, inputs, index in model.components(x)]
    log_l = sum(loglik for _, loglik, _ in parts)  # (R,)

    def pullback(weights):
        d_lv = jnp.zeros_like(lv)
        component_grads = []
        for index, _, vjp in parts:
            grads, d_lv_component = vjp(weights)
            component_grads.append(grads)
            d_lv = d_lv.at[index].add(d_lv_component)
        n_blocks = len(model.measurement)
        return replace_fields(
            model, latent=latent_vjp(d_lv), measurement=tuple(component_grads[:n_blocks]),
            choice=component_grads[n_blocks] if model.choice is not None else None)
    return log_l, pullback


def individual_loglik_and_grad(model, x: PanelArrays, eta: Float[Array, "R D"]):
    """``(LL_i, dLL_i / d model)`` for one individual; the gradient is a model-shaped pytree."""
    log_l, pullback = draw_logliks_and_pullback(model, x, eta)
    log_mean = logsumexp(log_l)
    weights = jnp.exp(log_l - log_mean)  # (R,) posterior draw weights w_ir
    return log_mean - jnp.log(eta.shape[0]), pullback(weights)


def loglik_and_grad_per_individual(model, data: PanelArrays, draws: Float[Array, "N R D"],
                                   chunk_size: int | None = None):
    """``(LL_i (N,), per-individual gradients)``: a model-shaped pytree whose leaves have a
    leading axis of size N (the scores for BHHH and robust standard errors)."""
    if chunk_size is None:
        return jax.vmap(individual_loglik_and_grad, in_axes=(None, 0, 0))(model, data, draws)
    return map_individuals(lambda xe: individual_loglik_and_grad(model, *xe), (data, draws),
                           chunk_size)


def loglik_and_grad(model, data: PanelArrays, draws: Float[Array, "N R D"],
                    chunk_size: int | None = None):
    """``(LL, dLL / d model)``, the simulated log-likelihood and its hand-derived gradient."""
    loglik, grads = loglik_and_grad_per_individual(model, data, draws, chunk_size)
    return jnp.sum(loglik), jax.tree.map(lambda g: jnp.sum(g, axis=0), grads)


@jax.custom_vjp
def _loglik_with_analytic_vjp(model, data, draws, chunk_size):
    return simulated_loglik(model, data, draws, chunk_size)


def _forward(model, data, draws, chunk_size):
    loglik, grad = loglik_and_grad(model, data, draws, chunk_size)
    return loglik, grad


def _backward(grad, cotangent):
    return jax.tree.map(lambda g: cotangent * g, grad), None, None, None


_loglik_with_analytic_vjp.defvjp(_forward, _backward)


def simulated_loglik_analytic(model, data: PanelArrays, draws: Float[Array, "N R D"],
                              chunk_size: int | None = None):
    """The simulated log-likelihood, with :func:`loglik_and_grad` as its registered VJP."""
    return _loglik_with_analytic_vjp(model, data, draws, chunk_size)
