"""Choice models: the probability of the observed choices given the latent variables.

A choice model pairs a *utility* (any Equinox module mapping one task's attributes
``(J, A)`` and the latent variables ``(L,)`` to utilities ``(J,)``) with a link: the binary
probit or the multinomial logit. :class:`LinearUtility` is the built-in utility; a user-written
utility in jax.numpy with the same call signature replaces it. The panel likelihood of an
individual is the product over their tasks, taken as a sum of logs over the unpadded tasks.
Per-draw arrays keep the draws on their last axis (utilities ``(T, J, R)``), as in the
measurement models.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._kernels import (binary_probit_dlogp, binary_probit_log_prob, multinomial_logit_dlogp,
                       multinomial_logit_log_prob)
from ._parameters import replace_fields

__all__ = ["LinearUtility", "AbstractChoice", "BinaryProbit", "MultinomialLogit"]


class LinearUtility(eqx.Module):
    """``V_j = asc_j + sum_a beta_a x_ja + sum_l theta_jl LV_l + sum_a,l kappa_al x_ja LV_l``.

    ``beta`` and ``kappa`` are generic (shared by the alternatives); the attributes carry the
    alternative-specific values. Entries not in the specification are structural zeros.
    """

    asc: Float[Array, " J"]
    beta: Float[Array, " A"]
    theta: Float[Array, "J L"]
    kappa: Float[Array, "A L"]
    alternatives: tuple[str, ...] = eqx.field(static=True)  # labels of the J utilities
    attributes: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)
    asc_in: tuple[bool, ...] = eqx.field(static=True)
    theta_in: tuple[tuple[bool, ...], ...] = eqx.field(static=True)
    kappa_in: tuple[tuple[bool, ...], ...] = eqx.field(static=True)

    def __init__(self, alternatives, attributes, latent, asc_in, theta_in, kappa_in):
        self.alternatives = tuple(str(a) for a in alternatives)
        self.attributes = tuple(attributes)
        self.latent = tuple(latent)
        self.asc_in = tuple(bool(a) for a in asc_in)
        self.theta_in = tuple(tuple(bool(t) for t in row) for row in theta_in)
        self.kappa_in = tuple(tuple(bool(k) for k in row) for row in kappa_in)
        n_alt, n_attr, n_lv = len(self.alternatives), len(self.attributes), len(self.latent)
        self.asc = jnp.zeros(n_alt)
        self.beta = jnp.zeros(n_attr)
        self.theta = jnp.zeros((n_alt, n_lv))
        self.kappa = jnp.zeros((n_attr, n_lv))

    def __call__(self, x: Float[Array, "J A"], lv: Float[Array, " L"]) -> Float[Array, " J"]:
        return self.asc + x @ (self.beta + self.kappa @ lv) + self.theta @ lv

    def vjp(self, x: Float[Array, "T J A"], lv: Float[Array, "L R"],
            d_utility: Float[Array, "T J R"]):
        """Hand-derived pullback of ``V_tjr`` over tasks and draws: ``(d params, d LV (L, R))``
        for the cotangent ``d_utility`` of the utilities."""
        by_draw = d_utility.sum(axis=0)  # (J, R)
        by_task = d_utility.sum(axis=2)  # (T, J)
        d_x = jnp.einsum("tjr,tja->ar", d_utility, x)  # (A, R): sum_tj dV_tjr x_tja
        grads = replace_fields(self, asc=by_task.sum(0), beta=jnp.einsum("tj,tja->a", by_task, x),
                               theta=by_draw @ lv.T, kappa=d_x @ lv.T)
        return grads, self.theta.T @ by_draw + self.kappa.T @ d_x

    def labels(self):
        single = len(self.alternatives) == 1
        alt = [("" if single else f".{a}") for a in self.alternatives]
        return replace_fields(
            self,
            asc=np.array([f"asc{s}" if on else "" for s, on in zip(alt, self.asc_in)], dtype=object),
            beta=np.array([f"beta.{a}" for a in self.attributes], dtype=object),
            theta=np.array([[f"theta.{lv}{s}" if on else "" for lv, on in zip(self.latent, row)]
                            for s, row in zip(alt, self.theta_in)], dtype=object
                           ).reshape(len(alt), len(self.latent)),
            kappa=np.array([[f"kappa.{a}.{lv}" if on else "" for lv, on in zip(self.latent, row)]
                            for a, row in zip(self.attributes, self.kappa_in)], dtype=object
                           ).reshape(len(self.attributes), len(self.latent)))

    def fixed_labels(self) -> tuple[str, ...]:
        return ()


def _interaction_mask(attributes, latent, interactions):
    interactions = dict(interactions or {})
    for attribute, lvs in interactions.items():
        if attribute not in attributes:
            raise ValueError(f"interaction attribute {attribute!r} is not one of {tuple(attributes)}")
        for lv in lvs:
            if lv not in latent:
                raise ValueError(f"interaction latent variable {lv!r} is not one of {tuple(latent)}")
    return [[lv in interactions.get(a, ()) for lv in latent] for a in attributes]


class AbstractChoice(eqx.Module):
    """A choice model: a utility and a link. ``latent`` are the latent variables it uses."""

    utility: eqx.AbstractVar[eqx.Module]

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.utility.attributes

    @property
    def latent(self) -> tuple[str, ...]:
        return self.utility.latent

    @property
    def n_alternatives(self) -> int:
        return len(self.utility.alternatives)

    @abc.abstractmethod
    def log_prob(self, utility: Float[Array, "T J R"], choice: Int[Array, " T"],
                 available: Bool[Array, "T J"]) -> Float[Array, "T R"]:
        """``log P(choice_t)`` for each task at each draw."""

    @abc.abstractmethod
    def dlogp(self, utility: Float[Array, "T J R"], choice: Int[Array, " T"],
              available: Bool[Array, "T J"],
              log_prob: Float[Array, "T R"]) -> Float[Array, "T J R"]:
        """``d log P(choice_t) / d V_tj`` at each draw, hand-derived."""

    @abc.abstractmethod
    def sample_choice(self, rng: np.random.Generator, utility: np.ndarray,
                      available: np.ndarray) -> np.ndarray:
        """Choices ``(N, T)`` (indices) simulated from utilities ``(N, T, J)``."""

    def task_utilities(self, x: Float[Array, "T J A"],
                       lv: Float[Array, "L R"]) -> Float[Array, "T J R"]:
        """The utility (one task, one draw) over tasks and draws."""
        at_draw = lambda lv_r: jax.vmap(self.utility, in_axes=(0, None))(x, lv_r)  # (T, J)
        return jax.vmap(at_draw, in_axes=1, out_axes=-1)(lv)

    def terms(self, x, choice, available, task_mask, lv):
        """``(sum_t log P(choice_t | LV_r)`` ``(R,)``, ``(V, log P))`` over the observed
        (unpadded) tasks."""
        utility = self.task_utilities(x, lv)  # (T, J, R)
        log_p = self.log_prob(utility, choice, available)  # (T, R)
        return jnp.sum(jnp.where(task_mask[:, None], log_p, 0.0), axis=0), (utility, log_p)

    def loglik(self, x, choice, available, task_mask, lv) -> Float[Array, " R"]:
        """``sum_t log P(choice_t | LV_r)`` over the individual's observed (unpadded) tasks, at
        each of ``R`` draws ``lv`` ``(L, R)``."""
        return self.terms(x, choice, available, task_mask, lv)[0]

    def loglik_vjp(self, x, choice, available, task_mask, lv: Float[Array, "L R"]):
        """Per-draw log-likelihoods ``(R,)`` and their hand-derived pullback ``vjp(w)``."""
        loglik, (utility, log_p) = self.terms(x, choice, available, task_mask, lv)

        def vjp(w):
            d_utility = self.dlogp(utility, choice, available, log_p)  # (T, J, R)
            weight = w[None, None, :] * task_mask[:, None, None]
            d_utility_params, d_lv = self.utility.vjp(x, lv, weight * d_utility)
            return replace_fields(self, utility=d_utility_params), d_lv
        return loglik, vjp

    def labels(self):
        return replace_fields(self, utility=self.utility.labels())

    def fixed_labels(self) -> tuple[str, ...]:
        return self.utility.fixed_labels()


class BinaryProbit(AbstractChoice):
    """Binary probit: ``P(y = 1) = Phi(V)`` with a linear utility difference ``V``.

    ``attributes``: attribute columns; ``latent``: latent variables in the utility;
    ``interactions``: ``{attribute: [latent variables]}`` for LV x attribute terms;
    ``constant``: include a constant.
    """

    utility: eqx.Module

    def __init__(self, attributes: Sequence[str] = (), latent: Sequence[str] = (),
                 interactions: Mapping[str, Sequence[str]] | None = None, constant: bool = True,
                 utility: eqx.Module | None = None):
        self.utility = utility if utility is not None else LinearUtility(
            alternatives=("V",), attributes=attributes, latent=latent, asc_in=(constant,),
            theta_in=[[True] * len(latent)],
            kappa_in=_interaction_mask(attributes, latent, interactions))

    def log_prob(self, utility, choice, available):
        return binary_probit_log_prob(utility[:, 0], choice[:, None])

    def dlogp(self, utility, choice, available, log_prob):
        return binary_probit_dlogp(utility[:, 0], choice[:, None], log_prob)[:, None]

    def sample_choice(self, rng, utility, available):
        return (utility[..., 0] + rng.standard_normal(utility.shape[:-1]) > 0).astype(np.int32)


class MultinomialLogit(AbstractChoice):
    """Multinomial logit over J alternatives with an availability mask.

    ``alternatives``: labels of the J alternatives (in the panel's order);
    ``attributes``: generic attributes (the panel holds their per-alternative values);
    ``latent``: ``{latent variable: [alternatives whose utility it enters]}`` (each with its
    own coefficient; leave one alternative out for identification);
    ``interactions``: ``{attribute: [latent variables]}``;
    ``asc``: alternatives with a constant (default: all but the first, which is the reference).
    """

    utility: eqx.Module

    def __init__(self, alternatives: Sequence, attributes: Sequence[str] = (),
                 latent: Mapping[str, Sequence] | None = None,
                 interactions: Mapping[str, Sequence[str]] | None = None,
                 asc: Sequence | None = None, utility: eqx.Module | None = None):
        alternatives = tuple(alternatives)
        latent = dict(latent or {})
        asc = tuple(alternatives[1:]) if asc is None else tuple(asc)
        for alt in (*asc, *(a for alts in latent.values() for a in alts)):
            if alt not in alternatives:
                raise ValueError(f"alternative {alt!r} is not one of {alternatives}")
        self.utility = utility if utility is not None else LinearUtility(
            alternatives=alternatives, attributes=attributes, latent=tuple(latent),
            asc_in=[a in asc for a in alternatives],
            theta_in=[[a in latent[lv] for lv in latent] for a in alternatives],
            kappa_in=_interaction_mask(attributes, tuple(latent), interactions))

    def log_prob(self, utility, choice, available):  # alternatives on axis 1, draws last
        return multinomial_logit_log_prob(utility, choice[:, None], available[:, :, None], axis=1)

    def dlogp(self, utility, choice, available, log_prob):
        return multinomial_logit_dlogp(utility, choice[:, None], available[:, :, None], axis=1)

    def sample_choice(self, rng, utility, available):
        noisy = np.where(available, utility + rng.gumbel(size=utility.shape), -np.inf)
        return noisy.argmax(axis=-1).astype(np.int32)
