"""The map between a model (an Equinox module of parameter arrays) and the flat vector of its
free parameters, with one name per parameter.

Every component labels each element of its parameter arrays: a name for a parameter, ``""``
for a structural zero (an effect that is not in the model). One name in several places is one
parameter, shared: every place holds its value, and its gradient is the sum of the places'
gradients. A parameter is free unless it is a structural zero, fixed by a component's
normalisation, or fixed by the user; fixed and structural-zero elements keep the values they
have in the template model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._component import close_matches

__all__ = ["ParameterSpace", "replace_fields", "labelled_values", "set_values", "fixed_names"]


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
    return [np.asarray(label, dtype=object).astype(str) for label in labels]


def _unknown_name_error(name: str, known: Iterable[str]) -> KeyError:
    return KeyError(f"no parameter named {name!r} in the model{close_matches(name, known)}")


def fixed_names(fixed) -> tuple[str, ...]:
    """``fixed=`` as a tuple of names (a single string is an error, not its characters)."""
    if isinstance(fixed, str):
        raise TypeError(f"fixed must be a list of parameter names, got the string {fixed!r}; "
                        f"write [{fixed!r}] for a single one")
    fixed = tuple(fixed)
    bad = [name for name in fixed if not isinstance(name, str)]
    if bad:
        raise TypeError(f"fixed must hold parameter names (strings), got {bad}")
    return fixed


class ParameterSpace(eqx.Module):
    """Flat vector of free parameters <-> model; a pytree, so it can be passed to jitted
    functions (its template's arrays are leaves, its indices and names static).

    ``names[p]`` names ``theta[p]``; ``fixed_names`` are the labelled parameters held at their
    template values. ``positions[leaf]`` are the flat indices of the free elements of each
    parameter array and ``index[leaf]`` the parameter each of them holds.
    """

    template: eqx.Module
    positions: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    index: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    fixed_names: tuple[str, ...] = eqx.field(static=True)
    shared: bool = eqx.field(static=True)  # some free parameter is held in several places

    @classmethod
    def from_model(cls, model, fixed: Iterable[str] = ()) -> "ParameterSpace":
        labels = _label_leaves(model)
        leaves = jax.tree_util.tree_flatten_with_path(model)[0]
        first: dict[str, tuple[float, str]] = {}  # name -> (value, where) of its first place
        for (path, leaf), label in zip(leaves, labels):
            values = np.asarray(leaf, dtype=np.float64).ravel()
            for name, value in zip(label.ravel(), values):
                if not name:
                    continue
                where, name = jax.tree_util.keystr(path), str(name)
                if name not in first:
                    first[name] = (value, where)
                elif value != first[name][0] and not (np.isnan(value) and np.isnan(first[name][0])):
                    raise ValueError(
                        f"parameter {name!r} is used in several places with different starting "
                        f"values: {first[name][0]!r} at {first[name][1]} and {value!r} at "
                        f"{where}; a shared parameter has one value (set it by name with "
                        f"set_values)")
        fixed_set = set(model.fixed_labels()) | set(fixed_names(fixed))
        for name in sorted(fixed_set):
            if name not in first:
                raise _unknown_name_error(name, first)
        names = tuple(n for n in first if n not in fixed_set)
        number = {name: p for p, name in enumerate(names)}
        positions, index = [], []
        for label in labels:
            flat = label.ravel()
            free = [i for i, name in enumerate(flat) if name in number]
            positions.append(tuple(free))
            index.append(tuple(number[flat[i]] for i in free))
        n_places = sum(len(i) for i in index)
        return cls(template=model, positions=tuple(positions), index=tuple(index), names=names,
                   fixed_names=tuple(n for n in first if n in fixed_set),
                   shared=n_places > len(names))

    @property
    def size(self) -> int:
        return len(self.names)

    def _places_vector(self, model) -> jax.Array:
        """The free elements of ``model``, place by place ``(n_places,)``."""
        if not any(self.positions):
            return jnp.zeros(0, jnp.result_type(*jax.tree.leaves(model), float))
        return jnp.concatenate([jnp.ravel(leaf)[np.asarray(positions, dtype=np.int32)]
                                for leaf, positions in zip(jax.tree.leaves(model), self.positions)])

    def _all_index(self) -> np.ndarray:
        return np.concatenate([np.asarray(i, dtype=np.int32) for i in self.index])

    def flatten(self, model) -> jax.Array:
        """The free parameters of ``model`` as a vector of shape ``(P,)`` (a shared parameter's
        value from its first place)."""
        places = self._places_vector(model)
        if not self.shared:
            return places
        first = np.unique(self._all_index(), return_index=True)[1]
        return places[first]

    def flatten_gradient(self, gradient) -> jax.Array:
        """``(P,)`` from a model-shaped cotangent: a shared parameter's gradient is the sum of
        its places'."""
        places = self._places_vector(gradient)
        if not self.shared:
            return places
        return jnp.zeros(self.size, places.dtype).at[self._all_index()].add(places)

    def unflatten(self, theta: jax.Array) -> eqx.Module:
        """The template model with its free parameters replaced by ``theta``."""
        leaves, treedef = jax.tree.flatten(self.template)
        new_leaves = []
        for leaf, positions, index in zip(leaves, self.positions, self.index):
            leaf = jnp.asarray(leaf, dtype=theta.dtype)
            new_leaves.append(jnp.ravel(leaf).at[np.asarray(positions, dtype=np.int32)]
                              .set(theta[np.asarray(index, dtype=np.int32)]).reshape(leaf.shape))
        return jax.tree.unflatten(treedef, new_leaves)

    def values(self, model) -> dict[str, float]:
        """Every labelled parameter (free and fixed) of ``model`` by name."""
        return {name: float(value) for name, value in labelled_values(model).items()}


def labelled_values(model) -> dict[str, jax.Array]:
    """Every labelled parameter of ``model`` by name (a shared one once), as traceable
    scalars."""
    out = {}
    for leaf, label in zip(jax.tree.leaves(model), _label_leaves(model)):
        flat = jnp.ravel(leaf)
        for index, name in enumerate(label.ravel()):
            if name and name not in out:
                out[str(name)] = flat[index]
    return out


def _set_labelled(model, values: Mapping[str, float]):
    leaves, treedef = jax.tree.flatten(model)
    new_leaves = []
    for leaf, label in zip(leaves, _label_leaves(model)):
        array = np.array(leaf, dtype=np.float64)
        for index, name in np.ndenumerate(label):
            if name in values:
                array[index] = values[name]
        new_leaves.append(jnp.asarray(array, dtype=jnp.asarray(leaf).dtype))
    return jax.tree.unflatten(treedef, new_leaves)


def set_values(model, values: Mapping[str, float]):
    """A copy of ``model`` with the named parameters set to ``values`` (every place of a shared
    parameter). A model with a natural scale (:meth:`ICLV.set_natural`) also takes the names of
    ``result.natural()``: ``"q1.sigma"`` sets ``q1.log_sigma`` to its log, ``"q1.tau2"``
    sets the threshold increments so that the second threshold is as given."""
    known = set(labelled_values(model))
    direct = {k: v for k, v in values.items() if k in known}
    rest = {k: v for k, v in values.items() if k not in known}
    model = _set_labelled(model, direct)
    if rest and hasattr(model, "set_natural"):
        return model.set_natural(rest)
    for name in rest:
        raise _unknown_name_error(name, known)
    return model
