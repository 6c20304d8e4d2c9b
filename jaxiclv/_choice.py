"""Choice models: the probability of the observed choices given the latent variables.

A choice model pairs a *utility* ``V`` ``(T, J, R)`` of every task, alternative and draw with a
kernel: the binary probit (``J = 1``: ``V`` is the probit index) or the multinomial logit.
The utility (:mod:`jaxiclv._utility`) is :class:`LinearUtility` (hand-derived pullback), with
random coefficients a :class:`RandomUtility` (:mod:`jaxiclv._mixed`), or a user-written
:class:`Utility` in jax.numpy (pullback by ``jax.vjp``); the kernel's derivative with respect
to the utilities stays hand-derived either way (MNL ``y - P``, the probit's signed Mills
ratio). ``scale=True`` multiplies the utilities by ``exp(choice.log_scale)``. The panel
likelihood of an individual is the product over their tasks, taken as a sum of logs over the
unpadded tasks.

Both are components (:mod:`jaxiclv._component`). The choice model: data ``(attributes
(T, J, A), choices (T,), availability (T, J), task mask (T,))``, inputs the latent variables it
uses ``(L, R)`` followed by its own draws ``(K, R)`` if it has random terms, output ``sum_t log P(choice_t | LV_r)`` ``(R,)``. The utility: data the
attributes, inputs the latent variables, output ``V``. Per-draw arrays keep the draws on
their last axis, as in the measurement models.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._component import AbstractComponent, checked_names
from ._kernels import (binary_probit_log_prob, binary_probit_log_prob_and_dlogp,
                       multinomial_logit_dlogp, multinomial_logit_log_prob,
                       nested_logit_log_prob, nested_logit_vjp)
from ._mixed import RandomUtility
from ._parameters import replace_fields
from ._utility import (BINARY, AbstractUtility, LinearUtility, interaction_mask,
                       specific_mask)

__all__ = ["AbstractChoice", "BinaryProbit", "MultinomialLogit", "NestedLogit"]

class AbstractChoice(AbstractComponent):
    """A choice model: a utility and a kernel. ``latent`` are the latent variables it uses.

    A new kernel implements ``log_prob``; its derivative defaults to ``jax.vjp``
    (:meth:`log_prob_vjp`), and a hand-derived one can replace it. A kernel with parameters
    of its own (the nested logit's log-sum parameters) names their fields in
    ``kernel_fields``.
    """

    utility: eqx.AbstractVar[AbstractUtility]
    log_scale: eqx.AbstractVar[Float[Array, ""]]
    scaled: eqx.AbstractVar[bool]

    binary = False
    kernel_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.utility.attributes

    @property
    def latent(self) -> tuple[str, ...]:
        return self.utility.latent

    @property
    def alternatives(self) -> tuple[str, ...]:
        return self.utility.alternatives

    @property
    def n_alternatives(self) -> int:
        return len(self.utility.alternatives)

    @property
    def draw_names(self) -> tuple[str, ...]:
        """The choice model's own draw dimensions (random coefficients, error components):
        its inputs are the latent variables followed by these draws."""
        return self.utility.draw_names

    def data(self, x):
        """``(attributes (T, J, A), choices (T,), availability (T, J), task mask (T,))`` of one
        individual's PanelArrays."""
        return (x.attributes[:, :, x.attribute_columns(self.attributes)], x.choice, x.available,
                x.task_mask)

    @abc.abstractmethod
    def log_prob(self, utility: Float[Array, "T J R"], choice: Int[Array, " T"],
                 available: Bool[Array, "T J"]) -> Float[Array, "T R"]:
        """``log P(choice_t)`` for each task at each draw."""

    def log_prob_vjp(self, utility, choice, available):
        """``(log_prob, pullback)``: ``pullback(g)`` maps ``g`` ``(T, R)`` to ``(d utility
        (T, J, R), {kernel field: its cotangent})``. Default: ``jax.vjp`` of
        :meth:`log_prob`."""
        own = {name: getattr(self, name) for name in self.kernel_fields}

        def log_prob(v, fields):
            return replace_fields(self, **fields).log_prob(v, choice, available)
        log_p, pullback = jax.vjp(log_prob, utility, own)
        return log_p, pullback

    @property
    def n_outcomes(self) -> int:
        """The number of possible choices: two for a binary model (one utility difference),
        else the alternatives."""
        return 2 if self.binary else self.n_alternatives

    def probabilities(self, utility: Float[Array, "T J R"],
                      available: Bool[Array, "T J"]) -> Float[Array, "T K R"]:
        """``P(choice_t = k)`` of every outcome ``k`` at every draw, from :meth:`log_prob` (so
        any kernel has them); 0 for an unavailable alternative."""
        n_tasks = utility.shape[0]
        log_p = jax.vmap(lambda k: self.log_prob(utility, jnp.full((n_tasks,), k, jnp.int32),
                                                 available), out_axes=1)(
            jnp.arange(self.n_outcomes))  # (T, K, R)
        if self.binary:
            return jnp.exp(log_p)
        return jnp.where(available[:, :, None], jnp.exp(log_p), 0.0)

    def sample_choice(self, rng: np.random.Generator, utility: np.ndarray,
                      available: np.ndarray) -> np.ndarray:
        """Choices ``(N, T)`` (indices) simulated from utilities ``(N, T, J)``."""
        raise NotImplementedError(f"{type(self).__name__} cannot simulate choices")

    def utilities(self, x: Float[Array, "T J A"], lv: Float[Array, "L R"]) -> Float[Array, "T J R"]:
        """The (scaled) utilities of every task at every draw."""
        utility = self.utility.forward(x, lv)
        return jnp.exp(self.log_scale) * utility if self.scaled else utility

    def forward(self, data, lv):
        x, choice, available, task_mask = data
        log_p = self.log_prob(self.utilities(x, lv), choice, available)  # (T, R)
        return jnp.sum(jnp.where(task_mask[:, None], log_p, 0.0), axis=0)

    def vjp(self, data, lv):
        x, choice, available, task_mask = data
        utility, utility_pullback = self.utility.vjp(x, lv)  # (T, J, R)
        scale = jnp.exp(self.log_scale)
        scaled = scale * utility if self.scaled else utility
        log_p, kernel_pullback = self.log_prob_vjp(scaled, choice, available)  # (T, R)

        def pullback(w):
            d_scaled, d_kernel = kernel_pullback(w[None, :] * task_mask[:, None])  # (T, J, R)
            d_log_scale = jnp.sum(d_scaled * scaled) if self.scaled else jnp.zeros_like(scale)
            d_utility = scale * d_scaled if self.scaled else d_scaled
            d_utility_params, d_lv = utility_pullback(d_utility)
            return replace_fields(self, utility=d_utility_params, log_scale=d_log_scale,
                                  **d_kernel), d_lv
        return jnp.sum(jnp.where(task_mask[:, None], log_p, 0.0), axis=0), pullback

    def labels(self):
        return replace_fields(self, utility=self.utility.labels(), log_scale=np.array(
            "choice.log_scale" if self.scaled else "", dtype=object))

    def fixed_labels(self) -> tuple[str, ...]:
        return self.utility.fixed_labels()

    def parameter_kinds(self) -> dict[str, str]:
        return {**self.utility.parameter_kinds(),
                **({"choice.log_scale": "log"} if self.scaled else {})}


def _utility_or_linear(utility, linear: Callable[[], AbstractUtility], given: dict,
                       alternatives: tuple[str, ...], model: str) -> AbstractUtility:
    if utility is None:
        return linear()
    specified = [name for name, value in given.items() if value]
    if specified:
        raise TypeError(f"{model}: a user utility writes its own terms; {specified} apply to "
                        f"the built-in linear utility only")
    if not isinstance(utility, AbstractUtility):
        raise TypeError(f"{model}: utility must be a Utility (or another AbstractUtility), got "
                        f"{type(utility).__name__}")
    return utility.with_alternatives(alternatives)


def _mixed(linear: Callable[[Sequence[str]], LinearUtility], attributes, random,
           error_components, interactions, alternative_specific, model: str):
    """``linear(attributes)`` builds the linear utility over those attributes; with
    ``random`` coefficients or ``error_components`` it becomes the base of a
    :class:`RandomUtility` (a lognormal coefficient leaves the linear part)."""
    random, error_components = dict(random or {}), dict(error_components or {})
    lognormal = [a for a, kind in random.items() if kind != "normal"]
    specific = (alternative_specific if isinstance(alternative_specific, Mapping)
                else dict.fromkeys(alternative_specific))
    for attribute in lognormal:
        if attribute in dict(interactions or {}) or attribute in specific:
            raise ValueError(f"{model}: the lognormal coefficient of {attribute!r} is generic "
                             f"and has no interactions")
    for attribute, kind in random.items():
        if kind == "normal" and attribute in specific:
            raise ValueError(f"{model}: the random coefficient of {attribute!r} is generic; it "
                             f"cannot be alternative-specific")
    base = linear([a for a in attributes if a not in lognormal])
    if not random and not error_components:
        return base
    return RandomUtility(base, attributes, random, error_components, model)


def _logit_utility(model: str, alternatives, attributes, latent, interactions, asc,
                   alternative_specific, utility, random=None, error_components=None
                   ) -> tuple[tuple, AbstractUtility]:
    """The alternatives' codes and the utility of a logit model over them: the linear
    utility from its specification (with random terms if any), or the user's."""
    alternatives = checked_names(alternatives, "alternatives", model)
    if len(alternatives) < 2:
        raise ValueError(f"{model} needs at least two alternatives, got {alternatives}")
    labels = tuple(str(a) for a in alternatives)
    if len(set(labels)) < len(labels):
        raise ValueError(f"{model}: alternatives {alternatives} have the same "
                         f"label {sorted({x for x in labels if labels.count(x) > 1})}")

    def linear(names):
        lvs = dict(latent or {})
        ascs = (tuple(alternatives[1:]) if asc is None else checked_names(asc, "asc", model))
        for alt in (*ascs, *(a for alts in lvs.values() for a in alts)):
            if alt not in alternatives:
                raise ValueError(f"alternative {alt!r} is not one of {alternatives}")
        return LinearUtility(
            alternatives=alternatives, attributes=names, latent=tuple(lvs),
            asc_in=[a in ascs for a in alternatives],
            theta_in=[[a in lvs[lv] for lv in lvs] for a in alternatives],
            kappa_in=interaction_mask(names, tuple(lvs), interactions),
            specific_in=specific_mask(alternatives, names, alternative_specific))

    names = checked_names(attributes, "attributes", model)
    return alternatives, _utility_or_linear(
        utility, lambda: _mixed(linear, names, random, error_components, interactions,
                                alternative_specific, model),
        {"attributes": attributes, "latent": latent, "interactions": interactions, "asc": asc,
         "alternative_specific": alternative_specific, "random": random,
         "error_components": error_components}, labels, model)


class BinaryProbit(AbstractChoice):
    """Binary probit: ``P(y = 1) = Phi(V)`` with a linear utility difference ``V`` (or a user's
    :class:`Utility` returning the probit index).

    ``attributes``: attribute columns; ``latent``: latent variables in the utility;
    ``interactions``: ``{attribute: [latent variables]}`` for LV x attribute terms;
    ``constant``: include a constant; ``scale``: multiply ``V`` by ``exp(choice.log_scale)``
    (identified only when the utility's coefficients are, e.g. shared with another component);
    ``random``: random coefficients, as in :class:`MultinomialLogit`.
    """

    utility: AbstractUtility
    log_scale: Float[Array, ""]
    scaled: bool = eqx.field(static=True)

    binary = True

    def __init__(self, attributes: Sequence[str] = (), latent: Sequence[str] = (),
                 interactions: Mapping[str, Sequence[str]] | None = None, constant: bool = True,
                 utility: AbstractUtility | None = None, scale: bool = False,
                 random: Mapping[str, str] | None = None):
        names = checked_names(attributes, "attributes", "BinaryProbit")

        def linear(kept):
            return LinearUtility(
                alternatives=BINARY, attributes=kept,
                latent=checked_names(latent, "latent variables", "BinaryProbit"),
                asc_in=(constant,), theta_in=[[True] * len(latent)],
                kappa_in=interaction_mask(kept, latent, interactions))
        self.utility = _utility_or_linear(
            utility, lambda: _mixed(linear, names, random, None, interactions, (),
                                    "BinaryProbit"),
            {"attributes": attributes, "latent": latent, "interactions": interactions,
             "random": random}, BINARY, "BinaryProbit")
        self.log_scale = jnp.zeros(())
        self.scaled = bool(scale)

    def log_prob(self, utility, choice, available):
        return binary_probit_log_prob(utility[:, 0], choice[:, None])

    def log_prob_vjp(self, utility, choice, available):
        log_p, dlogp = binary_probit_log_prob_and_dlogp(utility[:, 0], choice[:, None])  # (T, R)
        return log_p, lambda g: ((g * dlogp)[:, None], {})

    def sample_choice(self, rng, utility, available):
        return (utility[..., 0] + rng.standard_normal(utility.shape[:-1]) > 0).astype(np.int32)


class MultinomialLogit(AbstractChoice):
    """Multinomial logit over J alternatives with an availability mask.

    ``alternatives``: the J alternatives, as the panel's choice column codes them (numbers or
    strings); the panel's alternatives are matched to them by label (``str``), in any order,
    and simulated data code the choice with them;
    ``attributes``: attributes (the panel holds their per-alternative values), with a generic
    coefficient ``beta.{a}`` each, unless listed in ``alternative_specific`` (``[attribute]``
    for every alternative, or ``{attribute: [alternatives]}``): then ``beta.{a}.{alternative}``;
    ``latent``: ``{latent variable: [alternatives whose utility it enters]}`` (each with its
    own coefficient ``theta.{lv}.{alternative}``; leave one alternative out for
    identification; :func:`jaxiclv.share` makes two of them one parameter);
    ``interactions``: ``{attribute: [latent variables]}``;
    ``asc``: alternatives with a constant (default: all but the first, which is the reference);
    ``utility``: a user's :class:`Utility` instead of the linear one;
    ``scale``: multiply the utilities by ``exp(choice.log_scale)``;
    ``random``: ``{attribute: "normal" | "lognormal" | "-lognormal"}``, coefficients that vary
    across individuals (``beta.{a}`` and ``beta.{a}.sd``; ``beta.{a}.mu`` and
    ``beta.{a}.sigma`` of ``log |beta|``); ``error_components``: ``{name: [alternatives]}``,
    a normal term ``{name}.sd eta`` shared by those alternatives' utilities. Each takes one
    draw dimension after the latent variables' (:mod:`jaxiclv._mixed`).
    """

    utility: AbstractUtility
    log_scale: Float[Array, ""]
    scaled: bool = eqx.field(static=True)
    codes: tuple = eqx.field(static=True)  # the alternatives as given (their labels: str)

    def __init__(self, alternatives: Sequence, attributes: Sequence[str] = (),
                 latent: Mapping[str, Sequence] | None = None,
                 interactions: Mapping[str, Sequence[str]] | None = None,
                 asc: Sequence | None = None,
                 alternative_specific: Sequence[str] | Mapping[str, Sequence] = (),
                 utility: AbstractUtility | None = None, scale: bool = False,
                 random: Mapping[str, str] | None = None,
                 error_components: Mapping[str, Sequence] | None = None):
        self.codes, self.utility = _logit_utility(
            "MultinomialLogit", alternatives, attributes, latent, interactions, asc,
            alternative_specific, utility, random, error_components)
        self.log_scale = jnp.zeros(())
        self.scaled = bool(scale)

    def log_prob(self, utility, choice, available):  # alternatives on axis 1, draws last
        return multinomial_logit_log_prob(utility, choice[:, None], available[:, :, None], axis=1)

    def log_prob_vjp(self, utility, choice, available):
        log_p = self.log_prob(utility, choice, available)
        dlogp = multinomial_logit_dlogp(utility, choice[:, None], available[:, :, None], axis=1)
        return log_p, lambda g: (g[:, None, :] * dlogp, {})

    def sample_choice(self, rng, utility, available):
        noisy = np.where(available, utility + rng.gumbel(size=utility.shape), -np.inf)
        return noisy.argmax(axis=-1).astype(np.int32)


class NestedLogit(AbstractChoice):
    """Nested logit: the alternatives are partitioned into nests, each with a log-sum
    parameter ``lambda_m = exp({nest}.log_lambda)`` (reported as ``{nest}.lambda``):
    ``P(j) = P(j | m) P(m)``, ``P(j | m) = exp(V_j / lambda_m) / sum_{k in m} exp(V_k /
    lambda_m)``, ``P(m) = exp(lambda_m I_m) / sum_n exp(lambda_n I_n)``, ``I_m = log sum_{k in
    m} exp(V_k / lambda_m)``, over the available alternatives (:func:`nested_logit_log_prob`).

    ``nests``: ``{nest name: [alternatives]}``, a partition of the alternatives; a nest of one
    alternative has no parameter (its lambda cancels). The model is consistent with random
    utility maximisation for ``0 < lambda <= 1`` (1 for every nest is the multinomial logit,
    the start); ``exp`` keeps lambda positive, and an estimate above 1 is reported as it is.
    The other arguments are those of :class:`MultinomialLogit`. The kernel's pullback, in
    the utilities and the log-sum parameters, is hand-derived (:func:`nested_logit_vjp`).
    """

    utility: AbstractUtility
    log_scale: Float[Array, ""]
    log_lambda: Float[Array, " M"]
    scaled: bool = eqx.field(static=True)
    codes: tuple = eqx.field(static=True)
    nests: tuple[str, ...] = eqx.field(static=True)  # the nests' names
    nest_of: tuple[int, ...] = eqx.field(static=True)  # each alternative's nest

    kernel_fields: ClassVar[tuple[str, ...]] = ("log_lambda",)

    def __init__(self, alternatives: Sequence, nests: Mapping[str, Sequence],
                 attributes: Sequence[str] = (), latent: Mapping[str, Sequence] | None = None,
                 interactions: Mapping[str, Sequence[str]] | None = None,
                 asc: Sequence | None = None,
                 alternative_specific: Sequence[str] | Mapping[str, Sequence] = (),
                 utility: AbstractUtility | None = None, scale: bool = False,
                 random: Mapping[str, str] | None = None,
                 error_components: Mapping[str, Sequence] | None = None):
        self.codes, self.utility = _logit_utility(
            "NestedLogit", alternatives, attributes, latent, interactions, asc,
            alternative_specific, utility, random, error_components)
        if not isinstance(nests, Mapping) or not nests:
            raise TypeError(f"NestedLogit: nests must be a mapping {{nest: [alternatives]}}, "
                            f"got {nests!r}")
        nest_of = {}
        for name, members in nests.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"NestedLogit: a nest's name must be a non-empty string, got "
                                f"{name!r}")
            members = checked_names(members, f"the alternatives of nest {name!r}", "NestedLogit")
            if not members:
                raise ValueError(f"NestedLogit: nest {name!r} has no alternatives")
            for alt in members:
                if alt not in self.codes:
                    raise ValueError(f"NestedLogit: alternative {alt!r} of nest {name!r} is not "
                                     f"one of the alternatives {self.codes}")
                if alt in nest_of:
                    raise ValueError(f"NestedLogit: alternative {alt!r} is in two nests, "
                                     f"{nest_of[alt]!r} and {name!r}; nests partition the "
                                     f"alternatives")
                nest_of[alt] = name
        outside = [alt for alt in self.codes if alt not in nest_of]
        if outside:
            raise ValueError(f"NestedLogit: alternatives {outside} are in no nest; nests "
                             f"partition the alternatives (a nest of one alternative is the "
                             f"alternative on its own)")
        self.nests = tuple(nests)
        self.nest_of = tuple(self.nests.index(nest_of[alt]) for alt in self.codes)
        self.log_lambda = jnp.zeros(len(self.nests))
        self.log_scale = jnp.zeros(())
        self.scaled = bool(scale)

    def log_prob(self, utility, choice, available):
        return nested_logit_log_prob(utility, choice, available, self.log_lambda, self.nest_of)

    def log_prob_vjp(self, utility, choice, available):
        log_p, pullback = nested_logit_vjp(utility, choice, available, self.log_lambda,
                                           self.nest_of)

        def kernel_pullback(g):
            d_utility, d_log_lambda = pullback(g)
            return d_utility, {"log_lambda": d_log_lambda}
        return log_p, kernel_pullback

    def sample_choice(self, rng, utility, available):
        n, t, j = utility.shape  # the tasks of all individuals, one draw each
        flat = jnp.asarray(utility.reshape(n * t, j, 1))
        mask = jnp.asarray(available.reshape(n * t, j))
        log_p = jnp.stack([self.log_prob(flat, jnp.full(n * t, k), mask)[:, 0]
                           for k in range(j)], axis=1)  # (N T, J)
        p = np.where(np.asarray(available).reshape(n * t, j), np.exp(np.asarray(log_p)), 0.0)
        cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        pick = (rng.uniform(size=(n * t, 1)) > cumulative).sum(axis=1)
        return np.minimum(pick, j - 1).reshape(n, t).astype(np.int32)

    def _lambda_labels(self) -> np.ndarray:
        sizes = np.bincount(np.asarray(self.nest_of), minlength=len(self.nests))
        return np.array([f"{nest}.log_lambda" if size > 1 else ""
                         for nest, size in zip(self.nests, sizes)], dtype=object)

    def labels(self):
        return replace_fields(AbstractChoice.labels(self), log_lambda=self._lambda_labels())

    def parameter_kinds(self) -> dict[str, str]:
        return {**AbstractChoice.parameter_kinds(self),
                **dict.fromkeys((n for n in self._lambda_labels() if n), "log")}
