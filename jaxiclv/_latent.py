"""Structural model: the latent variables as functions of covariates, other latent variables
and the draws.

``LV_l = sum_c gamma[l, c] z_c + sum_m b[l, m] LV_m + sigma_l eta_l`` with ``eta ~ N(0, I)``.
Latent variables that depend on no other latent variable are exogenous; the others are
endogenous, and the paths ``b`` must form a directed acyclic graph. Each latent variable is
evaluated after its parents (a topological order), so exogenous and endogenous latent variables
are the same code. Normalisation: ``sigma_l = 1`` (``log_sigma_l = 0`` fixed) by default, which
fixes the scale of every latent variable; no constant enters (the measurement intercepts or
thresholds absorb it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._parameters import replace_fields

__all__ = ["Structural"]


def _topological_order(names: tuple[str, ...], parents: tuple[tuple[str, ...], ...]) -> tuple[int, ...]:
    order, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(name, path):
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ValueError(f"the latent variables form a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for parent in parents[names.index(name)]:
            visit(parent, path + [name])
        state[name] = 2
        order.append(names.index(name))

    for name in names:
        visit(name, [])
    return tuple(order)


class Structural(eqx.Module):
    """Structural equations of the latent variables.

    Parameters
    ----------
    covariates: ``{latent variable: [covariate, ...]}``; every latent variable must appear
        (with an empty list if no covariate explains it). The keys' order is the order of the
        latent variables and of the draws' last axis.
    parents: ``{latent variable: [other latent variables that explain it]}``; must be acyclic.
    free_scale: latent variables whose ``log_sigma`` is estimated (fix one loading instead).
    """

    gamma: Float[Array, "L C"]
    b: Float[Array, "L L"]
    log_sigma: Float[Array, " L"]
    names: tuple[str, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)  # columns of gamma
    covariates_of: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    parents: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)
    free_scale: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, covariates: Mapping[str, Sequence[str]],
                 parents: Mapping[str, Sequence[str]] | None = None,
                 free_scale: Sequence[str] = ()):
        names = tuple(covariates)
        if not names:
            raise ValueError("the structural model needs at least one latent variable")
        parents = dict(parents or {})
        for child, ps in parents.items():
            for name in (child, *ps):
                if name not in names:
                    raise ValueError(f"latent variable {name!r} in `parents` is not one of {names}")
            if child in ps:
                raise ValueError(f"the latent variables form a cycle: {child} -> {child}")
        for name in free_scale:
            if name not in names:
                raise ValueError(f"latent variable {name!r} in `free_scale` is not one of {names}")
        self.names = names
        self.covariates_of = tuple(tuple(covariates[n]) for n in names)
        self.covariates = tuple(dict.fromkeys(c for cs in self.covariates_of for c in cs))
        self.parents = tuple(tuple(parents.get(n, ())) for n in names)
        self.order = _topological_order(names, self.parents)
        self.free_scale = tuple(free_scale)
        self.gamma = jnp.zeros((len(names), len(self.covariates)))
        self.b = jnp.zeros((len(names), len(names)))
        self.log_sigma = jnp.zeros(len(names))

    @property
    def n_latent(self) -> int:
        return len(self.names)

    def __call__(self, covariates: Float[Array, " C"], eta: Float[Array, " L"]) -> Float[Array, " L"]:
        """The latent variables of one individual at one draw ``eta``."""
        mean = self.gamma @ covariates + jnp.exp(self.log_sigma) * eta  # (L,)
        values = [None] * self.n_latent
        for l in self.order:
            value = mean[l]
            for parent in self.parents[l]:
                m = self.names.index(parent)
                value = value + self.b[l, m] * values[m]
            values[l] = value
        return jnp.stack(values)

    def _path_mask(self) -> np.ndarray:
        """``mask[l, m]``: LV ``m`` is a parent of LV ``l`` (the ``b`` that enter)."""
        return np.array([[m in ps for m in self.names] for ps in self.parents],
                        dtype=bool).reshape(self.n_latent, self.n_latent)

    def at_draws(self, covariates: Float[Array, " C"],
                 eta: Float[Array, "R L"]) -> Float[Array, "L R"]:
        """The latent variables of one individual at ``R`` draws, draws last ``(L, R)``."""
        return jax.vmap(self, in_axes=(None, 0), out_axes=1)(covariates, eta)

    def latent_vjp(self, covariates: Float[Array, " C"], eta: Float[Array, "R L"]):
        """The latent variables ``(L, R)`` at ``R`` draws and their hand-derived pullback.

        ``vjp(g)`` takes ``g_lr = d loglik / d LV_lr`` ``(L, R)`` (direct effects, already
        weighted by draw) and returns the parameter gradients. With ``G_l`` the total effect of
        LV ``l``'s
        own equation, accumulated in reverse topological order
        ``G_l = g_l + sum_{c: l -> c} b[c, l] G_c``:
        ``d/d gamma[l, c] = sum_r G_rl z_c``, ``d/d b[l, m] = sum_r G_rl LV_rm``,
        ``d/d log sigma_l = sum_r G_rl sigma_l eta_rl``.
        """
        lv = self.at_draws(covariates, eta)  # (L, R)

        def vjp(g):
            total = [g[l] for l in range(self.n_latent)]
            for l in reversed(self.order):
                for parent in self.parents[l]:
                    m = self.names.index(parent)
                    total[m] = total[m] + self.b[l, m] * total[l]
            total = jnp.stack(total)  # (L, R)
            return replace_fields(
                self, gamma=jnp.outer(total.sum(1), covariates),
                b=jnp.where(self._path_mask(), total @ lv.T, 0.0),
                log_sigma=jnp.sum(total * eta.T, axis=1) * jnp.exp(self.log_sigma))
        return lv, vjp

    def labels(self) -> "Structural":
        gamma = np.array([[f"{lv}.gamma.{c}" if c in cs else "" for c in self.covariates]
                          for lv, cs in zip(self.names, self.covariates_of)], dtype=object)
        b = np.array([[f"{lv}.b.{m}" if m in ps else "" for m in self.names]
                      for lv, ps in zip(self.names, self.parents)], dtype=object)
        gamma = gamma.reshape(len(self.names), len(self.covariates))
        return replace_fields(self, gamma=gamma, b=b,
                              log_sigma=np.array([f"{lv}.log_sigma" for lv in self.names], dtype=object))

    def fixed_labels(self) -> tuple[str, ...]:
        return tuple(f"{lv}.log_sigma" for lv in self.names if lv not in self.free_scale)
