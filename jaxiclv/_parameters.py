"""The map between a model (an Equinox module of parameter arrays) and the flat vector of its
free parameters, with one name per parameter.

Every component labels each element of its parameter arrays: a name for a parameter, ``""``
for a structural zero (an effect that is not in the model). A parameter is free unless it is a
structural zero, fixed by the component's normalisation, or fixed by the user; fixed and
structural-zero elements keep the values they have in the template model.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ParameterSpace", "replace_fields", "labelled_values", "set_values"]


def replace_fields(module: eqx.Module, **fields) -> eqx.Module:
    """A copy of ``module`` with the named fields replaced (works for any field values)."""
    names = tuple(fields)
    return eqx.tree_at(lambda m: tuple(getattr(m, k) for k in names), module,
                       tuple(fields[k] for k in names), is_leaf=lambda x: x is None)


def _label_leaves(model) -> list[np.ndarray]:
    """The label arrays of ``model``, in the order of ``jax.tree.leaves(model)``."""
    labels = jax.tree.leaves(model.labels())
    params = jax.tree.leaves(model)
    if len(labels) != len(params) or any(np.shape(a) != np.shape(b) for a, b in zip(labels, params)):
        raise TypeError(f"{type(model).__name__}.labels() does not mirror its parameter arrays")
    return [np.asarray(label, dtype=str) for label in labels]


def _unknown_name_error(name: str, known: Iterable[str]) -> KeyError:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {close}?" if close else ""
    return KeyError(f"no parameter named {name!r} in the model{hint}")


class ParameterSpace(eqx.Module):
    """Flat vector of free parameters <-> model; a pytree, so it can be passed to jitted
    functions (its template's arrays are leaves, its indices and names static).

    ``names[p]`` names ``theta[p]``; ``fixed_names`` are the labelled parameters held at their
    template values.
    """

    template: eqx.Module
    free: tuple[tuple[int, ...], ...] = eqx.field(static=True)  # per leaf: flat free indices
    names: tuple[str, ...] = eqx.field(static=True)
    fixed_names: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def from_model(cls, model, fixed: Iterable[str] = ()) -> "ParameterSpace":
        labels = _label_leaves(model)
        all_names = [name for label in labels for name in label.ravel() if name]
        duplicates = sorted({n for n in all_names if all_names.count(n) > 1})
        if duplicates:
            raise ValueError(f"parameter names must be unique; repeated: {duplicates}")
        fixed = set(model.fixed_labels()) | set(fixed)
        for name in fixed:
            if name not in all_names:
                raise _unknown_name_error(name, all_names)
        free = tuple(tuple(int(i) for i in np.flatnonzero([bool(n) and n not in fixed
                                                           for n in label.ravel()]))
                     for label in labels)
        names = tuple(str(label.ravel()[i]) for label, index in zip(labels, free) for i in index)
        return cls(template=model, free=free, names=names,
                   fixed_names=tuple(str(n) for n in all_names if n in fixed))

    @property
    def size(self) -> int:
        return len(self.names)

    def flatten(self, model) -> jax.Array:
        """The free parameters of ``model`` as a vector of shape ``(P,)``."""
        leaves = jax.tree.leaves(model)
        return jnp.concatenate([jnp.ravel(leaf)[np.asarray(index, dtype=np.int32)]
                                for leaf, index in zip(leaves, self.free)])

    def unflatten(self, theta: jax.Array) -> eqx.Module:
        """The template model with its free parameters replaced by ``theta``."""
        leaves, treedef = jax.tree.flatten(self.template)
        new_leaves, start = [], 0
        for leaf, index in zip(leaves, self.free):
            leaf = jnp.asarray(leaf, dtype=theta.dtype)
            stop = start + len(index)
            new_leaves.append(jnp.ravel(leaf).at[np.asarray(index, dtype=np.int32)]
                              .set(theta[start:stop]).reshape(leaf.shape))
            start = stop
        return jax.tree.unflatten(treedef, new_leaves)

    def values(self, model) -> dict[str, float]:
        """Every labelled parameter (free and fixed) of ``model`` by name."""
        out = {}
        for leaf, label in zip(jax.tree.leaves(model), _label_leaves(model)):
            for name, value in zip(label.ravel(), np.asarray(leaf).ravel()):
                if name:
                    out[str(name)] = float(value)
        return out


def labelled_values(model) -> dict[str, jax.Array]:
    """Every labelled parameter of ``model`` by name, as (traceable) scalars."""
    out = {}
    for leaf, label in zip(jax.tree.leaves(model), _label_leaves(model)):
        flat = jnp.ravel(leaf)
        for index, name in enumerate(label.ravel()):
            if name:
                out[str(name)] = flat[index]
    return out


def set_values(model, values: Mapping[str, float]):
    """A copy of ``model`` with the named parameters set to ``values``."""
    leaves, treedef = jax.tree.flatten(model)
    labels = _label_leaves(model)
    known = {str(n) for label in labels for n in label.ravel() if n}
    for name in values:
        if name not in known:
            raise _unknown_name_error(name, known)
    new_leaves = []
    for leaf, label in zip(leaves, labels):
        array = np.array(leaf, dtype=np.float64)
        for index, name in np.ndenumerate(label):
            if name in values:
                array[index] = values[name]
        new_leaves.append(jnp.asarray(array, dtype=jnp.asarray(leaf).dtype))
    return jax.tree.unflatten(treedef, new_leaves)
