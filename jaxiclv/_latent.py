"""Structural models: the latent variables as functions of covariates, other latent variables
and the draws.

:class:`Structural` is the built-in linear model
``LV_l = intercept_l + sum_c gamma[l, c] z_c + sum_m b[l, m] LV_m + sigma_l eta_l`` with
``eta ~ N(0, I)``. Latent variables that depend on no other latent variable are exogenous; the
others are endogenous, and the paths ``b`` must form a directed acyclic graph. Each latent
variable is evaluated after its parents (a topological order), so exogenous and endogenous
latent variables are the same code. Normalisation: ``sigma_l = 1`` (``log_sigma_l = 0``
fixed) by default, which fixes the scale of every latent variable, and no intercept (the
measurement intercepts or thresholds absorb it). To fix an indicator's intercept and loading
instead (Biogeme's habit), free the scale (``free_scale``) and the mean (``intercepts``) and
fix those two indicator parameters.

:class:`LatentEquations` is a user-written structural model: any function in jax.numpy of
named parameters, the covariates and one standard normal draw per latent variable.

Both are components (:mod:`jaxiclv._component`): data the individual's covariates ``(C,)``,
inputs the draws ``(R, D)``, output the latent variables ``(L, R)``, draws last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._component import AbstractComponent, AbstractEquation, Named, checked_names
from ._parameters import replace_fields

__all__ = ["AbstractStructural", "Structural", "LatentEquations"]


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


class AbstractStructural(AbstractComponent):
    """A structural model: ``names`` are the latent variables (in the order of the draws'
    last axis), ``covariates`` the data columns it reads. ``__call__(z, eta)`` gives the
    latent variables ``(L,)`` of one individual at one draw ``eta`` ``(D,)``."""

    names: eqx.AbstractVar[tuple[str, ...]]
    covariates: eqx.AbstractVar[tuple[str, ...]]

    @property
    def n_latent(self) -> int:
        return len(self.names)

    @property
    def n_draw_dims(self) -> int:
        """Dimensions of the draws: one standard normal per latent variable."""
        return len(self.names)

    def data(self, x):
        """The covariates this model reads from one individual's :class:`PanelArrays`."""
        return x.covariates[x.covariate_columns(self.covariates)]

    def forward(self, covariates: Float[Array, " C"], eta: Float[Array, "R D"]) -> Float[Array, "L R"]:
        """The latent variables of one individual at ``R`` draws, draws last ``(L, R)``."""
        return jax.vmap(self, in_axes=(None, 0), out_axes=1)(covariates, eta)


class Structural(AbstractStructural):
    """Structural equations of the latent variables.

    Parameters
    ----------
    covariates: ``{latent variable: [covariate, ...]}``; every latent variable must appear
        (with an empty list if no covariate explains it). The keys' order is the order of the
        latent variables and of the draws' last axis.
    parents: ``{latent variable: [other latent variables that explain it]}``; must be acyclic.
    free_scale: latent variables whose ``log_sigma`` is estimated (fix one loading instead).
    intercepts: latent variables with an intercept ``{lv}.intercept`` (fix one indicator's
        intercept instead).
    """

    intercept: Float[Array, " L"]
    gamma: Float[Array, "L C"]
    b: Float[Array, "L L"]
    log_sigma: Float[Array, " L"]
    names: tuple[str, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)  # columns of gamma
    covariates_of: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    parents: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)
    free_scale: tuple[str, ...] = eqx.field(static=True)
    intercepts: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, covariates: Mapping[str, Sequence[str]],
                 parents: Mapping[str, Sequence[str]] | None = None,
                 free_scale: Sequence[str] = (), intercepts: Sequence[str] = ()):
        names = tuple(covariates)  # none: a model without latent variables (a mixed logit)
        parents = dict(parents or {})
        for child, ps in parents.items():
            for name in (child, *checked_names(ps, f"the parents of {child!r}", "Structural")):
                if name not in names:
                    raise ValueError(f"latent variable {name!r} in `parents` is not one of {names}")
            if child in ps:
                raise ValueError(f"the latent variables form a cycle: {child} -> {child}")
        for what, listed in (("free_scale", free_scale), ("intercepts", intercepts)):
            for name in checked_names(listed, f"`{what}`", "Structural"):
                if name not in names:
                    raise ValueError(f"latent variable {name!r} in `{what}` is not one of {names}")
        self.names = names
        self.covariates_of = tuple(
            checked_names(covariates[n], f"the covariates of {n!r}", "Structural") for n in names)
        self.covariates = tuple(dict.fromkeys(c for cs in self.covariates_of for c in cs))
        self.parents = tuple(tuple(parents.get(n, ())) for n in names)
        self.order = _topological_order(names, self.parents)
        self.free_scale = tuple(free_scale)
        self.intercepts = tuple(intercepts)
        self.intercept = jnp.zeros(len(names))
        self.gamma = jnp.zeros((len(names), len(self.covariates)))
        self.b = jnp.zeros((len(names), len(names)))
        self.log_sigma = jnp.zeros(len(names))

    def __call__(self, covariates: Float[Array, " C"], eta: Float[Array, " L"]) -> Float[Array, " L"]:
        """The latent variables of one individual at one draw ``eta``."""
        mean = self.intercept + self.gamma @ covariates + jnp.exp(self.log_sigma) * eta  # (L,)
        values = [None] * self.n_latent
        for l in self.order:
            value = mean[l]
            for parent in self.parents[l]:
                m = self.names.index(parent)
                value = value + self.b[l, m] * values[m]
            values[l] = value
        return jnp.stack(values) if values else mean  # (0,) without latent variables

    def _path_mask(self) -> np.ndarray:
        """``mask[l, m]``: LV ``m`` is a parent of LV ``l`` (the ``b`` that enter)."""
        return np.array([[m in ps for m in self.names] for ps in self.parents],
                        dtype=bool).reshape(self.n_latent, self.n_latent)

    def vjp(self, covariates: Float[Array, " C"], eta: Float[Array, "R L"]):
        """The latent variables ``(L, R)`` at ``R`` draws and their hand-derived pullback.

        ``pullback(g)`` takes ``g_lr = d loglik / d LV_lr`` ``(L, R)`` (direct effects, already
        weighted by draw). With ``G_l`` the total effect of LV ``l``'s own equation,
        accumulated in reverse topological order ``G_l = g_l + sum_{c: l -> c} b[c, l] G_c``:
        ``d/d intercept_l = sum_r G_lr``, ``d/d gamma[l, c] = sum_r G_lr z_c``,
        ``d/d b[l, m] = sum_r G_lr LV_mr``, ``d/d log sigma_l = sum_r G_lr sigma_l eta_rl``,
        ``d/d eta_rl = G_lr sigma_l``.
        """
        lv = self.forward(covariates, eta)  # (L, R)

        def pullback(g):
            total = [g[l] for l in range(self.n_latent)]
            for l in reversed(self.order):
                for parent in self.parents[l]:
                    m = self.names.index(parent)
                    total[m] = total[m] + self.b[l, m] * total[l]
            total = jnp.stack(total) if total else g  # (L, R)
            by_lv = total.sum(1)  # (L,)
            scaled = total * jnp.exp(self.log_sigma)[:, None]  # (L, R)
            grads = replace_fields(
                self, intercept=by_lv, gamma=jnp.outer(by_lv, covariates),
                b=jnp.where(self._path_mask(), total @ lv.T, 0.0),
                log_sigma=jnp.sum(scaled * eta.T, axis=1))
            return grads, scaled.T
        return lv, pullback

    def labels(self) -> "Structural":
        gamma = np.array([[f"{lv}.gamma.{c}" if c in cs else "" for c in self.covariates]
                          for lv, cs in zip(self.names, self.covariates_of)], dtype=object)
        b = np.array([[f"{lv}.b.{m}" if m in ps else "" for m in self.names]
                      for lv, ps in zip(self.names, self.parents)], dtype=object)
        gamma = gamma.reshape(len(self.names), len(self.covariates))
        b = b.reshape(len(self.names), len(self.names))
        return replace_fields(
            self, gamma=gamma, b=b,
            intercept=np.array([f"{lv}.intercept" if lv in self.intercepts else ""
                                for lv in self.names], dtype=object),
            log_sigma=np.array([f"{lv}.log_sigma" for lv in self.names], dtype=object))

    def fixed_labels(self) -> tuple[str, ...]:
        return tuple(f"{lv}.log_sigma" for lv in self.names if lv not in self.free_scale)

    def parameter_kinds(self) -> dict[str, str]:
        return {f"{lv}.log_sigma": "log" for lv in self.names}


class LatentEquations(AbstractStructural, AbstractEquation):
    """A user-written structural model.

    ``fn(p, z, eta)`` returns the latent variables of one individual at one draw, as a mapping
    ``{latent variable: value}`` (or a sequence in the order of ``names``); ``p``, ``z`` and
    ``eta`` map the declared parameter, covariate and latent-variable names to scalars, and
    ``eta[name]`` is that latent variable's standard normal draw. For example, a latent
    variable whose effect on another is quadratic::

        def latent(p, z, eta):
            health = p["g_age"] * z["age"] + eta["health"]
            intention = p["b"] * health ** 2 + jnp.exp(p["log_s"]) * eta["intention"]
            return {"health": health, "intention": intention}

        LatentEquations(latent, {"g_age": 0.0, "b": 0.0, "log_s": 0.0},
                        names=["health", "intention"], covariates=["age"])

    ``parameters``: ``{name: starting value}``; ``fixed``: names held at their values (the
    normalisation is the user's: fix each latent variable's scale or one of its loadings).
    Every parameter is a structural parameter (it enters every term of the likelihood).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    covariates: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, fn: Callable, parameters: Mapping[str, float], names: Sequence[str],
                 covariates: Sequence[str] = (), fixed: Sequence[str] = (),
                 log_parameters: Sequence[str] = ()):
        self._declare(fn, parameters, fixed, "LatentEquations")
        self.names = checked_names(names, "names", self.owner)
        if not self.names:
            raise ValueError(f"{self.owner}: name at least one latent variable")
        self.covariates = checked_names(covariates, "covariates", self.owner)
        self.log_parameters = self._declared_logs(log_parameters)

    def __call__(self, covariates: Float[Array, " C"], eta: Float[Array, " L"]) -> Float[Array, " L"]:
        return self.call(self.names, eta.dtype,
                         Named(dict(zip(self.covariates, covariates)), "covariate", self.owner),
                         Named(dict(zip(self.names, eta)), "latent variable", self.owner))
