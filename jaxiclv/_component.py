"""The component protocol: every piece of an ICLV model is a function with a pullback.

A component is an Equinox module whose array leaves are its parameters. It has one forward
function, ``forward(data, inputs)``, and ``vjp(data, inputs)``, which returns
``(forward(data, inputs), pullback)`` with ``pullback(cotangent) = (d self, d inputs)``: the
cotangent of every parameter array (a module of the same structure) and of the inputs.
``vjp`` defaults to :func:`autodiff_vjp`, ``jax.vjp`` of ``forward``, which is correct for
any forward function written in jax.numpy; the built-in kernels override it with their
hand-derived pullbacks (the fast path), and the tests check each against the default.

What ``data`` (not differentiated), ``inputs`` and the output are depends on the role (one
individual; the draws are the last axis of every per-draw array):

- structural model: covariates ``(C,)``; draws ``(R, D)``; latent variables ``(L, R)``;
- measurement block: indicator values ``(K,)`` and covariates; latent variables ``(L, R)``;
  ``sum_k log f(y_k | LV_r)`` ``(R,)``;
- choice model: attributes ``(T, J, A)``, choices, availability, task mask; latent variables
  ``(L, R)``; ``sum_t log P(choice_t | LV_r)`` ``(R,)``;
- utility (inside a choice model): attributes ``(T, J, A)``; latent variables ``(L, R)``;
  utilities ``(T, J, R)``;
- index (inside a measurement block): covariates ``(C,)``; latent variables ``(L, R)``; the
  indicators' means or latent-response indices ``(K, R)``.

Parameters are named by ``labels()``: a tree of the component's structure with a name for
every element of every parameter array (``""`` for a structural zero, an effect that is not in
the model). The same name in several places, in one component or several, is one parameter.
``fixed_labels()`` are the names its normalisation fixes, ``parameter_kinds()`` marks the
parameters that are not plain coefficients (``"log"``: the log of a positive quantity,
reported as ``exp`` on the natural scale; ``"threshold"``: reported through the component's
``derived_values()``), and ``parameter_terms()`` groups the names into the additive terms of
the per-draw log-likelihood (one per indicator, say): the structured Hessian uses it, and the
default, one term for the whole component, is always correct.

:class:`AbstractEquation` is the base of the user-written equations (:class:`~jaxiclv.Utility`,
:class:`~jaxiclv.IndexEquation`, :class:`~jaxiclv.LatentEquations`): a function in jax.numpy of
named scalar parameters, declared with their starting values.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Callable, Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AbstractComponent", "AbstractEquation", "autodiff_vjp", "labelled_names",
           "checked_names", "Named", "KINDS"]

KINDS = ("coefficient", "log", "threshold")


def autodiff_vjp(component, data, inputs):
    """``(component.forward(data, inputs), pullback)`` with ``pullback = jax.vjp`` of the
    forward function in the component's parameters and the inputs (the data are constants)."""
    return jax.vjp(lambda c, i: c.forward(data, i), component, inputs)


def labelled_names(labels) -> list[str]:
    """The names in a tree of labels, in the order of its leaves, each once."""
    names = (str(n) for leaf in jax.tree.leaves(labels)
             for n in np.asarray(leaf, dtype=object).ravel())
    return list(dict.fromkeys(n for n in names if n))


def close_matches(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f"; did you mean {close}?" if close else ""


class AbstractComponent(eqx.Module):
    """A function of parameters with a pullback; see the module docstring for the protocol."""

    @abc.abstractmethod
    def forward(self, data, inputs):
        """The component's output for one individual's ``data`` at the ``inputs``."""

    def vjp(self, data, inputs):
        """``(forward(data, inputs), pullback)``; ``pullback(cotangent)`` returns
        ``(d self, d inputs)``. Default: :func:`autodiff_vjp`."""
        return autodiff_vjp(self, data, inputs)

    @abc.abstractmethod
    def labels(self):
        """A tree of this module's structure naming every element of every parameter array."""

    def fixed_labels(self) -> tuple[str, ...]:
        """Names fixed by the component's normalisation."""
        return ()

    def parameter_kinds(self) -> dict[str, str]:
        """``{name: "log" | "threshold"}`` for the parameters that are not coefficients."""
        return {}

    def parameter_terms(self) -> list[tuple[str, ...]]:
        """The parameter names of each additive term of the component's per-draw output
        (default: the whole component is one term)."""
        return [tuple(labelled_names(self.labels()))]

    def derived_values(self) -> dict[str, jax.Array]:
        """Traceable functions of the parameters reported on the natural scale in place of the
        ``"threshold"`` parameters (the thresholds themselves, say)."""
        return {}

    def set_derived(self, values: Mapping[str, float]) -> "AbstractComponent":
        """A copy with the parameters behind the named :meth:`derived_values` set so that those
        values are as given."""
        if values:
            raise KeyError(f"{type(self).__name__} has no derived values {sorted(values)}")
        return self


class Named(Mapping):
    """Read-only ``{name: value}`` passed to user-written functions: a name that was not
    declared is an error naming the function and the kind of name."""

    def __init__(self, values: Mapping, what: str, owner: str):
        self._values, self._what, self._owner = dict(values), what, owner

    def __getitem__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"{self._owner} uses {self._what} {name!r}, which it does not "
                           f"declare; it declares {list(self._values)}"
                           f"{close_matches(str(name), self._values)}") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)


def _parameter_dict(parameters: Mapping[str, float], owner: str) -> dict[str, jax.Array]:
    if not isinstance(parameters, Mapping):
        raise TypeError(f"{owner}: parameters must be a mapping {{name: starting value}}, got "
                        f"{type(parameters).__name__}")
    out = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{owner}: parameter names must be non-empty strings, got {name!r}")
        array = np.asarray(value, dtype=np.float64)
        if array.shape != () or not np.isfinite(array):
            raise ValueError(f"{owner}: the starting value of parameter {name!r} must be one "
                             f"finite number, got {value!r}")
        out[name] = jnp.asarray(array)
    return out


def checked_names(names, what: str, owner: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise TypeError(f"{owner}: {what} must be a list of names, got the string {names!r}; "
                        f"write [{names!r}] for a single one")
    names = tuple(names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{owner}: {what} repeat {repeated}")
    return names


class AbstractEquation(AbstractComponent):
    """A user-written function of named scalar parameters (declared with starting values).

    The function receives the parameters, the data and the latent variables (or draws) as
    read-only mappings from names to values; using a name that is not declared is an error
    that names the function and the name. Its pullback is ``jax.vjp`` (the default); the
    kernel it feeds keeps its hand-derived derivative.
    """

    parameters: dict[str, jax.Array]  # {name: scalar}
    fn: Callable = eqx.field(static=True)
    fixed: tuple[str, ...] = eqx.field(static=True)
    log_parameters: tuple[str, ...] = eqx.field(static=True)

    def _declare(self, fn, parameters, fixed, role: str):
        """Set the fields every equation has, with their checks."""
        if not callable(fn):
            raise TypeError(f"{role}: the equation must be a function, got {fn!r}")
        self.fn = fn
        owner = self._owner_name(role)
        self.parameters = _parameter_dict(parameters, owner)
        self.fixed = checked_names(fixed, "fixed parameters", owner)
        for name in self.fixed:
            if name not in self.parameters:
                raise KeyError(f"{owner}: fixed parameter {name!r} is not declared"
                               f"{close_matches(name, self.parameters)}")

    def _declared_logs(self, names) -> tuple[str, ...]:
        """``log_parameters``: declared parameters that are logs of positive quantities."""
        names = checked_names(names, "log_parameters", self.owner)
        for name in names:
            if name not in self.parameters:
                raise KeyError(f"{self.owner}: log parameter {name!r} is not declared"
                               f"{close_matches(name, self.parameters)}")
        return names

    def _owner_name(self, role: str | None = None) -> str:
        return f"{role or type(self).__name__} {getattr(self.fn, '__name__', repr(self.fn))!r}"

    @property
    def owner(self) -> str:
        return self._owner_name()

    def named_parameters(self) -> Named:
        return Named(self.parameters, "parameter", self.owner)

    def labels(self):
        return eqx.tree_at(lambda e: e.parameters, self,
                           {name: np.array(name, dtype=object) for name in self.parameters})

    def fixed_labels(self) -> tuple[str, ...]:
        return self.fixed

    def parameter_kinds(self) -> dict[str, str]:
        return dict.fromkeys(self.log_parameters, "log")

    def call(self, keys: tuple[str, ...] | None, dtype, *mappings) -> jax.Array:
        """The user's function at one task or individual and one draw: a vector over ``keys``
        (the function returns a mapping with exactly those keys, or a sequence or array of that
        length), or a scalar for ``keys=None``."""
        out = self.fn(self.named_parameters(), *mappings)
        if keys is None:
            value = jnp.asarray(out, dtype=dtype)
            if value.size != 1:
                raise ValueError(f"{self.owner} must return one number, got shape {value.shape}")
            return value.reshape(())
        if isinstance(out, Mapping):
            unknown = [k for k in out if k not in keys]
            missing = [k for k in keys if k not in out]
            if unknown or missing:
                raise ValueError(f"{self.owner} must return a value for each of {list(keys)}; "
                                 f"unknown: {unknown}, missing: {missing}")
            out = [out[k] for k in keys]
        if isinstance(out, (list, tuple)):
            out = jnp.stack([jnp.asarray(v, dtype=dtype) for v in out])
        value = jnp.asarray(out, dtype=dtype)
        if value.shape != (len(keys),):
            raise ValueError(f"{self.owner} must return {len(keys)} values (one for each of "
                             f"{list(keys)}), got shape {value.shape}")
        return value
