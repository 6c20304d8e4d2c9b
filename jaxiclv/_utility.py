"""Utilities: ``V`` ``(T, J, R)`` of every task, alternative and draw, from the attributes
``(T, J, A)`` and the latent variables ``(L, R)``.

:class:`LinearUtility` is the built-in one (hand-derived pullback); :class:`Utility` is a
user-written one in jax.numpy (pullback by ``jax.vjp``); :mod:`jaxiclv._mixed` adds random
coefficients and error components to the linear one. The choice models
(:mod:`jaxiclv._choice`) pair a utility with a kernel.
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

__all__ = ["AbstractUtility", "LinearUtility", "Utility", "BINARY", "interaction_mask",
           "specific_mask"]

BINARY = ("V",)  # the one "alternative" of a binary model: the utility difference


class AbstractUtility(AbstractComponent):
    """Utilities ``V`` ``(T, J, R)`` of the ``alternatives`` from the ``attributes``
    ``(T, J, A)`` and the ``latent`` variables ``(L, R)``."""

    alternatives: eqx.AbstractVar[tuple[str, ...]]
    attributes: eqx.AbstractVar[tuple[str, ...]]
    latent: eqx.AbstractVar[tuple[str, ...]]

    @property
    def draw_names(self) -> tuple[str, ...]:
        """The utility's own standard normal draw dimensions (random coefficients), which
        follow the latent variables in its inputs; none by default."""
        return ()

    def with_alternatives(self, alternatives: tuple[str, ...]) -> "AbstractUtility":
        """This utility for the choice model's ``alternatives`` (a user utility learns them
        here)."""
        if self.alternatives != alternatives:
            raise ValueError(f"the utility is written for alternatives {self.alternatives}, the "
                             f"choice model has {alternatives}")
        return self


def _alternative_suffixes(alternatives) -> list[str]:
    return [""] if tuple(alternatives) == BINARY else [f".{a}" for a in alternatives]


class LinearUtility(AbstractUtility):
    """``V_j = asc_j + sum_a beta[j, a] x_ja + sum_l theta[j, l] LV_l
    + sum_a,l kappa[a, l] x_ja LV_l``.

    A generic coefficient ``beta.{a}`` is one parameter in every alternative's row (a shared
    name); an alternative-specific one is ``beta.{a}.{alternative}``. ``kappa`` is generic.
    Entries not in the specification are structural zeros. The attributes carry the
    alternatives' own values.
    """

    asc: Float[Array, " J"]
    beta: Float[Array, "J A"]
    theta: Float[Array, "J L"]
    kappa: Float[Array, "A L"]
    alternatives: tuple[str, ...] = eqx.field(static=True)  # labels of the J utilities
    attributes: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    asc_in: tuple[bool, ...] = eqx.field(static=True)
    specific_in: tuple[tuple[bool, ...], ...] = eqx.field(static=True)  # (J, A)
    theta_in: tuple[tuple[bool, ...], ...] = eqx.field(static=True)
    kappa_in: tuple[tuple[bool, ...], ...] = eqx.field(static=True)

    def __init__(self, alternatives, attributes, latent, asc_in, theta_in, kappa_in,
                 specific_in=None):
        self.alternatives = tuple(str(a) for a in alternatives)
        self.attributes = tuple(attributes)
        self.latent = tuple(latent)
        n_alt, n_attr, n_lv = len(self.alternatives), len(self.attributes), len(self.latent)
        self.asc_in = tuple(bool(a) for a in asc_in)
        self.specific_in = (((False,) * n_attr,) * n_alt if specific_in is None
                            else tuple(tuple(bool(s) for s in row) for row in specific_in))
        self.theta_in = tuple(tuple(bool(t) for t in row) for row in theta_in)
        self.kappa_in = tuple(tuple(bool(k) for k in row) for row in kappa_in)
        self.asc = jnp.zeros(n_alt)
        self.beta = jnp.zeros((n_alt, n_attr))
        self.theta = jnp.zeros((n_alt, n_lv))
        self.kappa = jnp.zeros((n_attr, n_lv))

    @property
    def _interacts(self) -> bool:
        return any(any(row) for row in self.kappa_in)

    def forward(self, x: Float[Array, "T J A"], lv: Float[Array, "L R"]) -> Float[Array, "T J R"]:
        task = self.asc[None, :] + jnp.einsum("tja,ja->tj", x, self.beta)  # (T, J)
        utility = task[:, :, None] + (self.theta @ lv)[None]  # (T, J, R)
        if self._interacts:
            utility = utility + jnp.einsum("tja,ar->tjr", x, self.kappa @ lv)
        return utility

    def vjp(self, x: Float[Array, "T J A"], lv: Float[Array, "L R"]):
        """Hand-derived pullback of ``V_tjr`` over tasks and draws: ``(d params, d LV (L, R))``
        for the cotangent ``d_utility`` ``(T, J, R)`` of the utilities."""
        def pullback(d_utility):
            by_draw = d_utility.sum(axis=0)  # (J, R)
            by_task = d_utility.sum(axis=2)  # (T, J)
            d_lv = self.theta.T @ by_draw
            d_kappa = jnp.zeros_like(self.kappa)
            if self._interacts:
                d_x = jnp.einsum("tjr,tja->ar", d_utility, x)  # (A, R): sum_tj dV_tjr x_tja
                d_kappa, d_lv = d_x @ lv.T, d_lv + self.kappa.T @ d_x
            grads = replace_fields(self, asc=by_task.sum(0),
                                   beta=jnp.einsum("tj,tja->ja", by_task, x),
                                   theta=by_draw @ lv.T, kappa=d_kappa)
            return grads, d_lv
        return self.forward(x, lv), pullback

    def labels(self):
        alt = _alternative_suffixes(self.alternatives)
        n_alt, n_attr, n_lv = len(alt), len(self.attributes), len(self.latent)
        return replace_fields(
            self,
            asc=np.array([f"asc{s}" if on else "" for s, on in zip(alt, self.asc_in)], dtype=object),
            beta=np.array([[f"beta.{a}{s}" if specific else f"beta.{a}"
                            for a, specific in zip(self.attributes, row)]
                           for s, row in zip(alt, self.specific_in)], dtype=object
                          ).reshape(n_alt, n_attr),
            theta=np.array([[f"theta.{lv}{s}" if on else "" for lv, on in zip(self.latent, row)]
                            for s, row in zip(alt, self.theta_in)], dtype=object
                           ).reshape(n_alt, n_lv),
            kappa=np.array([[f"kappa.{a}.{lv}" if on else "" for lv, on in zip(self.latent, row)]
                            for a, row in zip(self.attributes, self.kappa_in)], dtype=object
                           ).reshape(n_attr, n_lv))


class Utility(AbstractUtility, AbstractEquation):
    """A user-written utility.

    ``fn(p, x, lv)`` gives the utilities of one task at one draw: ``p``, ``x`` and ``lv`` map
    the declared parameter, attribute and latent-variable names to values (``x[a]`` is the
    attribute's value in every alternative, ``(J,)``, or a scalar in a binary model; ``lv[l]``
    a scalar). It returns the utilities ``(J,)`` (an array, a sequence, or a mapping
    ``{alternative: value}``), or the probit index (one number) in a binary model. For
    example, a latent attitude scaling the time coefficient, and cost divided by income::

        def utility(p, x, lv):
            return {"car": p["asc_car"] + p["b_time"] * jnp.exp(p["lambda"] * lv["green"])
                           * x["time"][0] + p["b_cost"] * x["cost"][0] / x["income"][0],
                    "bus": p["b_time"] * x["time"][1] + p["b_cost"] * x["cost"][1] / x["income"][1]}

        MultinomialLogit(["car", "bus"], utility=Utility(
            utility, {"asc_car": 0, "b_time": 0, "lambda": 0, "b_cost": 0},
            attributes=["time", "cost", "income"], latent=["green"]))

    ``parameters``: ``{name: starting value}``; a name also used by another component is one
    shared parameter. ``fixed``: names held at their values; ``log_parameters``: names that
    are logs of positive quantities (reported as ``exp`` on the natural scale).
    """

    alternatives: tuple[str, ...] = eqx.field(static=True)
    attributes: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, fn: Callable, parameters: Mapping[str, float],
                 attributes: Sequence[str] = (), latent: Sequence[str] = (),
                 fixed: Sequence[str] = (), log_parameters: Sequence[str] = (),
                 alternatives: Sequence | None = None):
        self._declare(fn, parameters, fixed, "Utility")
        self.attributes = checked_names(attributes, "attributes", self.owner)
        self.latent = checked_names(latent, "latent variables", self.owner)
        self.log_parameters = self._declared_logs(log_parameters)
        self.alternatives = () if alternatives is None else tuple(str(a) for a in alternatives)

    def with_alternatives(self, alternatives):
        if self.alternatives and self.alternatives != alternatives:
            return super().with_alternatives(alternatives)
        return Utility(self.fn, {k: float(v) for k, v in self.parameters.items()},
                       self.attributes, self.latent, self.fixed, self.log_parameters,
                       alternatives)

    def forward(self, x: Float[Array, "T J A"], lv: Float[Array, "L R"]) -> Float[Array, "T J R"]:
        if not self.alternatives:
            raise ValueError(f"{self.owner} is not part of a choice model (pass it to "
                             f"BinaryProbit or MultinomialLogit as utility=)")
        binary = self.alternatives == BINARY

        def at(x_t, lv_r):  # (J, A), (L,) -> (J,)
            columns = x_t[0] if binary else x_t.T  # (A,) or (A, J)
            values = Named(dict(zip(self.attributes, columns)), "attribute", self.owner)
            latent = Named(dict(zip(self.latent, lv_r)), "latent variable", self.owner)
            out = self.call(None if binary else self.alternatives, lv.dtype, values, latent)
            return out[None] if binary else out
        over_tasks = jax.vmap(at, in_axes=(0, None))  # (T, J)
        return jax.vmap(over_tasks, in_axes=(None, 1), out_axes=-1)(x, lv)


def interaction_mask(attributes, latent, interactions):
    interactions = dict(interactions or {})
    for attribute, lvs in interactions.items():
        if attribute not in attributes:
            raise ValueError(f"interaction attribute {attribute!r} is not one of {tuple(attributes)}")
        for lv in checked_names(lvs, f"the interactions of {attribute!r}", "the choice model"):
            if lv not in latent:
                raise ValueError(f"interaction latent variable {lv!r} is not one of {tuple(latent)}")
    return [[lv in interactions.get(a, ()) for lv in latent] for a in attributes]


def specific_mask(alternatives, attributes, specific):
    """``(J, A)``: alternative ``j`` has its own coefficient of attribute ``a``; ``specific``
    is ``[attribute]`` (every alternative) or ``{attribute: [alternatives]}``."""
    if not isinstance(specific, Mapping):
        specific = {a: alternatives for a in checked_names(specific, "alternative_specific",
                                                    "the choice model")}
    for attribute, alts in specific.items():
        if attribute not in attributes:
            raise ValueError(f"alternative-specific attribute {attribute!r} is not one of "
                             f"{tuple(attributes)}")
        for alt in alts:
            if alt not in alternatives:
                raise ValueError(f"alternative {alt!r} is not one of {tuple(alternatives)}")
    return [[alt in specific.get(a, ()) for a in attributes] for alt in alternatives]
