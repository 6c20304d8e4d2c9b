"""A model, a panel and fixed draws as jitted functions of the free-parameter vector.

Estimation, standard errors and benchmarks all call these functions; one switch,
``gradient``, selects the gradient everywhere:

- ``"analytic"``: the hand-derived gradient (:func:`loglik_and_grad`), registered with
  ``custom_vjp`` on the log-likelihood (the default);
- ``"autodiff"``: ``jax.grad`` of the same log-likelihood without the custom rule;
- ``"finite-difference"``: central differences of the log-likelihood, step
  ``h_p = eps^(1/3) max(|theta_p|, 1)`` (for reference only: error ``O(h^2)`` plus rounding
  ``O(eps |LL| / h)``).
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ._data import Panel
from ._draws import Halton, make_draws
from ._gradients import loglik_and_grad_per_individual, simulated_loglik_analytic
from ._hessian import HESSIANS, compare_hessians, hessian
from ._likelihood import individual_loglik, simulated_loglik
from ._parameters import ParameterSpace

__all__ = ["Problem", "GRADIENTS", "central_difference_gradient"]

GRADIENTS = ("analytic", "autodiff", "finite-difference")


def central_difference_gradient(f, theta, batch_size: int = 32):
    """Central differences of the scalar ``f`` at ``theta``, all ``2P`` evaluations batched."""
    step = jnp.finfo(theta.dtype).eps ** (1.0 / 3.0) * jnp.maximum(jnp.abs(theta), 1.0)
    shifts = jnp.diag(step)  # (P, P)
    value = lambda shift: f(theta + shift) - f(theta - shift)
    return jax.lax.map(value, shifts, batch_size=batch_size) / (2.0 * step)


def _with_gradient(value_and_grad):
    """A scalar function of ``theta`` whose ``jax.grad`` is the given gradient."""
    @jax.custom_vjp
    def f(theta):
        return value_and_grad(theta)[0]

    f.defvjp(value_and_grad, lambda grad, cotangent: (cotangent * grad,))
    return f


class Problem:
    """``model`` on ``panel`` with fixed ``draws``, as functions of the free parameters.

    ``loglik(theta)``, ``loglik_and_grad(theta)``, ``scores(theta)`` (per-individual gradients,
    ``(N, P)``) and ``hessian(theta, method)`` (of the selected gradient) are jitted.
    ``objective(theta, data, draws)`` is the traceable log-likelihood whose ``jax.grad`` is the
    selected gradient.
    """

    def __init__(self, model, panel: Panel, draws=None, fixed: Iterable[str] = (),
                 chunk_size: int | None = None, dtype=jnp.float64, gradient: str = "analytic"):
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        model.check_data(panel)
        self.panel = panel
        self.gradient = gradient
        self.space = ParameterSpace.from_model(model, fixed)
        self.draws = jnp.asarray(make_draws(Halton(100) if draws is None else draws,
                                            panel.n_individuals, model.n_draw_dims), dtype=dtype)
        self.data = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                                 else a, panel.arrays)
        self.dtype = dtype
        space, size = self.space, chunk_size

        def plain(theta, data, draws):
            return simulated_loglik(space.unflatten(theta), data, draws, size)

        def analytic(theta, data, draws):
            return simulated_loglik_analytic(space.unflatten(theta), data, draws, size)

        def finite_difference(theta, data, draws):
            f = lambda t: plain(t, data, draws)
            return _with_gradient(lambda t: (f(t), central_difference_gradient(f, t)))(theta)

        self.objective = {"analytic": analytic, "autodiff": plain,
                          "finite-difference": finite_difference}[gradient]

        def scores(theta, data, draws):
            if gradient == "analytic":
                _, grads = loglik_and_grad_per_individual(space.unflatten(theta), data, draws, size)
                return jax.vmap(space.flatten)(grads)
            individual = lambda t, x, eta: individual_loglik(space.unflatten(t), x, eta)
            return jax.vmap(jax.grad(individual), in_axes=(None, 0, 0))(theta, data, draws)

        self._loglik = jax.jit(plain)
        self._value_and_grad = jax.jit(jax.value_and_grad(self.objective))
        self._scores = jax.jit(scores)
        gradient_of = jax.grad(self.objective)
        self._hessian = jax.jit(lambda theta, data, draws, method, batch: hessian(
            lambda t: gradient_of(t, data, draws), theta, method, batch), static_argnums=(3, 4))

    @property
    def theta0(self) -> jax.Array:
        return self.space.flatten(self.space.template).astype(self.dtype)

    def loglik(self, theta):
        return self._loglik(theta, self.data, self.draws)

    def loglik_and_grad(self, theta):
        return self._value_and_grad(theta, self.data, self.draws)

    def scores(self, theta):
        return self._scores(theta, self.data, self.draws)

    def hessian(self, theta, method: str = "jacfwd", batch_size: int = 16):
        """The unsymmetrised Hessian (see :func:`jaxiclv.hessian` for the methods); pass it
        through :func:`jaxiclv.symmetrize` before use."""
        return self._hessian(theta, self.data, self.draws, method, batch_size)

    def compare_hessians(self, theta, methods=HESSIANS, batch_size: int = 16):
        """A :class:`HessianComparison` of the Hessian methods at ``theta``."""
        blocks = self.space.template.parameter_blocks()
        return compare_hessians(lambda method: self.hessian(theta, method, batch_size),
                                self.space.names, [blocks[n] for n in self.space.names], methods)

    def natural(self, theta):
        """``(names, values, Jacobian d values / d theta)`` of the parameters on their natural
        scale (``sigma`` for ``log_sigma``, thresholds for their increments)."""
        values = lambda t: self.space.unflatten(t).natural_values()
        names = tuple(values(theta))
        stacked = lambda t: jnp.stack(list(values(t).values()))
        return names, np.asarray(stacked(theta)), np.asarray(jax.jacfwd(stacked)(theta))

    def named(self, vector) -> dict[str, float]:
        return dict(zip(self.space.names, np.asarray(vector).tolist()))
