"""Random coefficients and error components: a linear utility whose coefficients vary across
individuals (mixed logit inside the ICLV).

``V_tjr = base_tjr + sum_k c_kr z_tjk`` with the linear utility ``base`` and, per random term
``k``, a coefficient ``c_kr`` at draw ``r`` and a regressor ``z_tjk``:

- a normal coefficient of attribute ``a``: ``beta_a ~ N(beta.{a}, beta.{a}.sd^2)``; the mean
  stays in ``base``, and ``c = sd eta``, ``z = x_a``;
- a lognormal one: ``beta_a = s exp(mu + sigma eta)`` (``s = +1``, or ``-1`` for
  ``"-lognormal"``, a coefficient that must be negative, such as cost), parameters
  ``beta.{a}.mu`` and ``beta.{a}.sigma`` of ``log |beta_a|``; ``a`` leaves ``base``;
- an error component ``e`` shared by a nest of alternatives: ``c = {e}.sd eta``, ``z = 1`` for
  the nest's alternatives, 0 for the others.

``eta`` are standard normal draws of the choice model's own, extra dimensions of the same
``(N, R, D)`` draws after the latent variables' (one per term, constant over an individual's
tasks: a panel). As a component the utility's inputs are the latent variables ``(L, R)``
followed by those draws ``(K, R)``. The pullback is hand-derived.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._utility import AbstractUtility, LinearUtility
from ._parameters import replace_fields

__all__ = ["RandomUtility", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("normal", "lognormal", "-lognormal")
_START_SD = 0.1  # at sd = 0 the log-likelihood is even in sd: a saddle the optimiser never leaves


class RandomUtility(AbstractUtility):
    """``base`` plus the random terms (see the module docstring); built by the choice models
    from ``random={attribute: distribution}`` and ``error_components={name: [alternatives]}``.
    """

    base: LinearUtility
    mu: Float[Array, " K"]  # log-scale means (lognormal terms; structural zeros elsewhere)
    sd: Float[Array, " K"]  # standard deviations (of log |beta| for lognormal terms)
    attributes: tuple[str, ...] = eqx.field(static=True)
    terms: tuple[str, ...] = eqx.field(static=True)  # each term's name: attribute or component
    kinds: tuple[str, ...] = eqx.field(static=True)  # a distribution or "error component"
    members: tuple[tuple[bool, ...], ...] = eqx.field(static=True)  # (K, J) nests of the ECs

    def __init__(self, base: LinearUtility, attributes: Sequence[str],
                 random: Mapping[str, str], error_components: Mapping[str, Sequence],
                 model: str):
        for attribute, kind in random.items():
            if attribute not in attributes:
                raise ValueError(f"{model}: random coefficient of {attribute!r}, which is not "
                                 f"one of the attributes {tuple(attributes)}")
            if kind not in DISTRIBUTIONS:
                raise ValueError(f"{model}: the random coefficient of {attribute!r} must be one "
                                 f"of {DISTRIBUTIONS}, got {kind!r}")
        lognormal = [a for a, kind in random.items() if kind != "normal"]
        alternatives = base.alternatives
        members = []
        for name, alts in error_components.items():
            if not isinstance(name, str) or not name or name in random:
                raise ValueError(f"{model}: an error component needs a name of its own, got "
                                 f"{name!r}")
            labels = [str(a) for a in alts]
            unknown = [a for a in labels if a not in alternatives]
            if unknown or not labels:
                raise ValueError(f"{model}: error component {name!r} needs alternatives of the "
                                 f"model {alternatives}, got {list(alts)}")
            members.append(tuple(a in labels for a in alternatives))
        self.base, self.attributes = base, tuple(attributes)
        self.terms = (*random, *error_components)
        self.kinds = (*random.values(), *("error component",) * len(error_components))
        self.members = (*((False,) * len(alternatives),) * len(random), *members)
        for attribute in lognormal:
            if attribute in base.attributes:
                raise ValueError(f"{model}: {attribute!r} is in the linear utility too")
        self.mu = jnp.zeros(len(self.terms))
        self.sd = jnp.full(len(self.terms), _START_SD)

    @property
    def alternatives(self) -> tuple[str, ...]:
        return self.base.alternatives

    @property
    def latent(self) -> tuple[str, ...]:
        return self.base.latent

    @property
    def draw_names(self) -> tuple[str, ...]:
        """The names of the utility's own draw dimensions, one per random term."""
        return tuple(f"eta.{t}" if k == "error component" else f"eta.beta.{t}"
                     for t, k in zip(self.terms, self.kinds))

    def _sd_labels(self) -> list[str]:
        return [f"{t}.sd" if k == "error component" else
                f"beta.{t}.sd" if k == "normal" else f"beta.{t}.sigma"
                for t, k in zip(self.terms, self.kinds)]

    def _regressors(self, x: Float[Array, "T J A"]) -> Float[Array, "T J K"]:
        """``z_tjk``: the attribute of a random coefficient, or an error component's nest."""
        columns = []
        for term, kind, member in zip(self.terms, self.kinds, self.members):
            if kind == "error component":
                columns.append(jnp.broadcast_to(jnp.asarray(member, x.dtype), x.shape[:2]))
            else:
                columns.append(x[:, :, self.attributes.index(term)])
        return jnp.stack(columns, axis=-1)

    def _coefficients(self, eta: Float[Array, "K R"]) -> Float[Array, "K R"]:
        """``c_kr``: ``sd eta`` (normal, error component) or ``s exp(mu + sd eta)``."""
        sign = np.array([-1.0 if k == "-lognormal" else 1.0 for k in self.kinds])[:, None]
        lognormal = np.array([k.endswith("lognormal") for k in self.kinds])[:, None]
        spread = self.sd[:, None] * eta
        return jnp.where(lognormal, sign * jnp.exp(self.mu[:, None] + spread), spread)

    def _split(self, x, inputs):
        n_lv = len(self.base.latent)
        base_x = x[:, :, np.array([self.attributes.index(a) for a in self.base.attributes],
                                  dtype=np.int32)]
        return base_x, inputs[:n_lv], inputs[n_lv:]

    def forward(self, x: Float[Array, "T J A"], inputs: Float[Array, "L+K R"]) -> Float[Array, "T J R"]:
        base_x, lv, eta = self._split(x, inputs)
        return (self.base.forward(base_x, lv)
                + jnp.einsum("tjk,kr->tjr", self._regressors(x), self._coefficients(eta)))

    def vjp(self, x, inputs):
        base_x, lv, eta = self._split(x, inputs)
        base, base_pullback = self.base.vjp(base_x, lv)
        regressors = self._regressors(x)  # (T, J, K)
        coefficients = self._coefficients(eta)  # (K, R)
        lognormal = np.array([k.endswith("lognormal") for k in self.kinds])[:, None]

        def pullback(d_utility):  # (T, J, R)
            d_base, d_lv = base_pullback(d_utility)
            d_c = jnp.einsum("tjr,tjk->kr", d_utility, regressors)  # (K, R)
            # normal: c = sd eta; lognormal: dc/dmu = c, dc/dsd = c eta, dc/deta = c sd
            slope = jnp.where(lognormal, d_c * coefficients, d_c)
            d_mu = jnp.where(lognormal[:, 0], slope.sum(axis=1), 0.0)
            d_sd = jnp.sum(slope * eta, axis=1)
            d_eta = slope * self.sd[:, None]
            return (replace_fields(self, base=d_base, mu=d_mu, sd=d_sd),
                    jnp.concatenate([d_lv, d_eta], axis=0))
        return base + jnp.einsum("tjk,kr->tjr", regressors, coefficients), pullback

    def labels(self):
        return replace_fields(
            self, base=self.base.labels(),
            mu=np.array([f"beta.{t}.mu" if k.endswith("lognormal") else ""
                         for t, k in zip(self.terms, self.kinds)], dtype=object),
            sd=np.array(self._sd_labels(), dtype=object))

    def fixed_labels(self):
        return self.base.fixed_labels()

    def parameter_kinds(self):
        return self.base.parameter_kinds()
