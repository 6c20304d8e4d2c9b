"""The ICLV model: a structural model, measurement blocks and a choice model.

``log L_ir = sum_blocks log f(indicators_i | LV_ir) + sum_t log P(choice_it | LV_ir)`` with
``LV_ir = structural(covariates_i, eta_ir)``. This module is the one place that composes the
components (:mod:`jaxiclv._component`), forward (:meth:`ICLV.draw_logliks`) and backward
(:meth:`ICLV.draw_logliks_and_pullback`), for one individual at its draws (the draws are the
last axis of every per-draw array); :mod:`jaxiclv._likelihood` maps it over individuals.

Parameter names are the components' labels, with the renamings of :func:`share` applied: one
name in several places is one parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._choice import AbstractChoice
from ._component import KINDS, AbstractComponent, autodiff_vjp, close_matches, labelled_names
from ._data import DataError, Panel, PanelArrays, _show
from ._latent import AbstractStructural, Structural
from ._measurement import AbstractMeasurement
from ._parameters import ParameterSpace, fixed_names, labelled_values, replace_fields, set_values

__all__ = ["ICLV", "share", "PULLBACKS", "natural_name"]

PULLBACKS = ("hand-derived", "autodiff")


def natural_name(name: str) -> str:
    """The natural-scale name of a log parameter: ``q1.log_sigma -> q1.sigma``,
    ``log_s -> s``, otherwise ``exp(name)``."""
    head, _, last = name.rpartition(".")
    if last.startswith("log_") and len(last) > 4:
        return f"{head}.{last[4:]}" if head else last[4:]
    return f"exp({name})"


def _component_vjp(pullbacks: str) -> Callable:
    if pullbacks == "hand-derived":
        return lambda component, data, inputs: component.vjp(data, inputs)
    if pullbacks == "autodiff":
        return autodiff_vjp
    raise ValueError(f"pullbacks must be one of {PULLBACKS}, got {pullbacks!r}")


class ICLV(eqx.Module):
    """An integrated choice and latent variable model.

    ``latent``: the structural model (:class:`Structural` or :class:`LatentEquations`), or
    ``None`` for a choice model without latent variables (a mixed logit, say);
    ``measurement``: one or more measurement blocks; ``choice``: a choice model, or ``None``
    for a measurement-only (MIMIC) model.
    """

    latent: AbstractStructural
    measurement: tuple[AbstractMeasurement, ...]
    choice: AbstractChoice | None
    aliases: tuple[tuple[str, str], ...] = eqx.field(static=True)  # (component's name, shared name)

    def __init__(self, latent: AbstractStructural | None = None,
                 measurement: AbstractMeasurement | Sequence[AbstractMeasurement] = (),
                 choice: AbstractChoice | None = None, aliases: Sequence[tuple[str, str]] = ()):
        if isinstance(measurement, AbstractMeasurement):
            measurement = (measurement,)
        if latent is None:
            latent = Structural({})
        if choice is None and not measurement:
            raise ValueError("the model needs a choice model or a measurement block")
        if not isinstance(latent, AbstractStructural):
            raise TypeError(f"latent must be a structural model (Structural or LatentEquations), "
                            f"got {type(latent).__name__}")
        for block in measurement:
            if not isinstance(block, AbstractMeasurement):
                raise TypeError(f"measurement blocks must be measurement models, got "
                                f"{type(block).__name__}")
        if choice is not None and not isinstance(choice, AbstractChoice):
            raise TypeError(f"choice must be a choice model, got {type(choice).__name__}")
        self.latent = latent
        self.measurement = tuple(measurement)
        self.choice = choice
        self.aliases = tuple((str(a), str(b)) for a, b in aliases)
        for component in self.terms:
            for lv in component.latent:
                if lv not in latent.names:
                    raise ValueError(f"{type(component).__name__} uses latent variable {lv!r}, "
                                     f"which the structural model does not define; it defines "
                                     f"{latent.names}")
        indicators = [i for block in self.measurement for i in block.indicators]
        repeated = sorted({i for i in indicators if indicators.count(i) > 1})
        if repeated:
            raise ValueError(f"indicators appear in more than one measurement block: {repeated}")
        # a name with two meanings or two starting values is an error now, not at estimation
        self.parameter_kinds()
        ParameterSpace.from_model(self)

    # ---- composition: the one place that knows how the components fit together ----

    @property
    def terms(self) -> tuple[AbstractComponent, ...]:
        """The components whose outputs add up to ``log L_ir``: the measurement blocks and the
        choice model."""
        return (*self.measurement, *([self.choice] if self.choice is not None else []))

    @property
    def components(self) -> tuple[AbstractComponent, ...]:
        return (self.latent, *self.terms)

    @property
    def n_draw_dims(self) -> int:
        """The draws' dimensions: the structural model's, then the choice model's own (one
        per random coefficient or error component)."""
        own = len(self.choice.draw_names) if self.choice is not None else 0
        return self.latent.n_draw_dims + own

    @property
    def draw_dimensions(self) -> tuple[str, ...]:
        """What each dimension of the draws is for: the latent variables' disturbances, then
        the choice model's random terms (``eta.beta.time``, ...)."""
        own = self.choice.draw_names if self.choice is not None else ()
        return (*(f"eta.{lv}" for lv in self.latent.names), *own)

    @property
    def covariates(self) -> tuple[str, ...]:
        """Every covariate the model reads (structural model and measurement equations)."""
        return tuple(dict.fromkeys(c for component in (self.latent, *self.measurement)
                                   for c in component.covariates))

    def _lv_index(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.latent.names.index(n) for n in names], dtype=np.int32)

    def _latent(self, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, "L R"]:
        return self.latent.forward(self.latent.data(x), eta[:, :self.latent.n_draw_dims])

    def _inputs(self, component, lv: Float[Array, "L R"], eta: Float[Array, "R D"]):
        """A component's inputs: the latent variables it uses, and for a choice model with
        random terms its own draws after them (the draws' last dimensions), ``(L_c + K, R)``."""
        inputs = lv[self._lv_index(component.latent)]
        if component is self.choice and self.choice.draw_names:
            inputs = jnp.concatenate([inputs, eta[:, self.latent.n_draw_dims:].T], axis=0)
        return inputs

    def draw_logliks(self, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, " R"]:
        """``log L_ir``: the log-likelihood of one individual's data ``x`` at each of the
        draws ``eta``."""
        lv = self._latent(x, eta)  # (L, R)
        total = jnp.zeros(eta.shape[:1], dtype=eta.dtype)
        for component in self.terms:
            total = total + component.forward(component.data(x), self._inputs(component, lv, eta))
        return total

    def draw_logliks_and_pullback(self, x: PanelArrays, eta: Float[Array, "R D"],
                                  pullbacks: str = "hand-derived"):
        """``log L_ir`` ``(R,)`` for one individual and its pullback: ``pullback(w)`` with
        ``w`` ``(R,)`` returns ``sum_r w_r d log L_ir / d model``, a model-shaped pytree. Each
        component's pullback takes ``w`` and returns its parameters' cotangent and
        ``w_r d log L_ir / d LV_r``; the structural model's carries the latter to its own
        parameters. ``pullbacks="autodiff"`` uses ``jax.vjp`` for every component instead of
        the hand-derived ones (for comparison)."""
        vjp = _component_vjp(pullbacks)
        lv, latent_pullback = vjp(self.latent, self.latent.data(x),
                                  eta[:, :self.latent.n_draw_dims])  # (L, R)
        parts = []
        for component in self.terms:
            index = self._lv_index(component.latent)
            parts.append((index, *vjp(component, component.data(x),
                                      self._inputs(component, lv, eta))))
        log_l = sum((loglik for _, loglik, _ in parts), jnp.zeros(eta.shape[:1], eta.dtype))

        def pullback(weights):
            d_lv = jnp.zeros_like(lv)
            grads = []
            for index, _, component_pullback in parts:
                d_component, d_inputs = component_pullback(weights)
                grads.append(d_component)
                d_lv = d_lv.at[index].add(d_inputs[:len(index)])  # not the choice's own draws
            return self._with_components(latent_pullback(d_lv)[0], grads)
        return log_l, pullback

    def draw_diagnostics(self, x: PanelArrays, eta: Float[Array, "R D"]):
        """For one individual at its draws, what :meth:`draw_logliks` adds up: the latent
        variables ``(L, R)``, each term's log-likelihood ``(n_terms, R)`` and the choice
        model's utilities ``(T, J, R)`` (``(0, 0, R)`` without a choice model)."""
        lv = self._latent(x, eta)  # (L, R)
        terms = [c.forward(c.data(x), self._inputs(c, lv, eta)) for c in self.terms]
        utilities = jnp.zeros((0, 0, eta.shape[0]), eta.dtype)
        if self.choice is not None:
            utilities = self.choice.utilities(self.choice.data(x)[0],
                                              self._inputs(self.choice, lv, eta))
        return lv, jnp.stack(terms) if terms else jnp.zeros((0, eta.shape[0]), eta.dtype), utilities

    @property
    def item_rows(self) -> tuple[str, ...]:
        """What :meth:`draw_item_logliks` returns, row by row: each indicator of a block that
        drops missing answers (the built-in ones), each other block (named by its
        indicators), and ``"choice"``."""
        rows = []
        for k, block in enumerate(self.measurement):
            rows += (list(block.indicators) if block.drops_missing
                     else [f"measurement block {k + 1} ({', '.join(block.indicators)})"])
        return (*rows, *(["choice"] if self.choice is not None else []))

    def draw_item_logliks(self, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, "K R"]:
        """Each row of :attr:`item_rows` on its own at each draw: an indicator is its block
        with the block's other items dropped, as missing answers are; the choice model is all
        the individual's tasks."""
        lv = self._latent(x, eta)  # (L, R)
        out = []
        for block in self.measurement:
            values, covariates = block.data(x)
            inputs = self._inputs(block, lv, eta)
            if block.drops_missing:
                items = jnp.arange(values.shape[0])
                out.append(jax.vmap(lambda k: block.forward(
                    (jnp.where(items == k, values, jnp.nan), covariates), inputs))(items))
            else:
                out.append(block.forward((values, covariates), inputs)[None])
        if self.choice is not None:
            out.append(self.choice.forward(self.choice.data(x),
                                           self._inputs(self.choice, lv, eta))[None])
        return jnp.concatenate(out)

    def draw_probabilities(self, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, "T K R"]:
        """``P(choice_t = k)`` of every task and outcome at each draw (the choice model's
        :meth:`~jaxiclv.AbstractChoice.probabilities`)."""
        choice = self.choice
        attributes, _, available, _ = choice.data(x)
        utility = choice.utilities(attributes, self._inputs(choice, self._latent(x, eta), eta))
        return choice.probabilities(utility, available)

    def describe(self, component: AbstractComponent) -> str:
        """The component in words, with the values of its parameters."""
        inner = getattr(component, "utility", getattr(component, "index", None))
        what = getattr(component, "owner", type(component).__name__) + (
            f" with {inner.owner}" if hasattr(inner, "owner") else "")
        values = labelled_values(self)
        names = [self._alias(n) for n in labelled_names(component.labels())]
        shown = ", ".join(f"{n} = {float(values[n]):.6g}" for n in names[:12])
        return f"{what} (parameters {shown}{', ...' if len(names) > 12 else ''})"

    def _with_components(self, latent, terms):
        n = len(self.measurement)
        return replace_fields(self, latent=latent, measurement=tuple(terms[:n]),
                              choice=terms[n] if self.choice is not None else None)

    # ---- parameters: names, kinds, terms, natural scale ----

    def _alias(self, names):
        """``names`` (an array or a name) with the renamings of :func:`share` applied."""
        if not self.aliases:
            return names
        mapping = dict(self.aliases)
        if isinstance(names, str):
            return mapping.get(names, names)
        return np.vectorize(lambda n: mapping.get(n, n), otypes=[object])(names)

    def labels(self) -> "ICLV":
        labels = self._with_components(self.latent.labels(), [c.labels() for c in self.terms])
        return jax.tree.map(lambda leaf: self._alias(np.asarray(leaf, dtype=object)), labels)

    def fixed_labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._alias(n) for c in self.components
                                   for n in c.fixed_labels()))

    def parameter_names(self, fixed: Sequence[str] = ()) -> tuple[str, ...]:
        """The names of the free parameters, in the order of the parameter vector (fixed by
        normalisation or in ``fixed`` left out)."""
        return ParameterSpace.from_model(self, fixed).names

    def parameter_kinds(self) -> dict[str, str]:
        """``{name: "coefficient" | "log" | "threshold"}`` for every parameter. A shared name
        must have one kind: a name that is, say, a log scale in one component and a
        coefficient in another is an error."""
        kinds, owners = {}, {}
        for component in self.components:
            own = component.parameter_kinds()
            for name in labelled_names(component.labels()):
                kind = own.get(name, "coefficient")
                if kind not in KINDS:
                    raise ValueError(f"{type(component).__name__}: parameter {name!r} has kind "
                                     f"{kind!r}, not one of {KINDS}")
                shared = self._alias(name)
                if shared in kinds and kinds[shared] != kind:
                    raise ValueError(
                        f"parameter {shared!r} has two meanings: a {kinds[shared]} in "
                        f"{owners[shared]} and a {kind} in {type(component).__name__}; a shared "
                        f"name must mean the same thing everywhere")
                kinds.setdefault(shared, kind)
                owners.setdefault(shared, type(component).__name__)
        return kinds

    def parameter_blocks(self) -> dict[str, str]:
        """``{parameter name: "structural" | "measurement" | "choice"}`` (a shared parameter:
        where it first appears)."""
        parts = [("structural", self.latent), *(("measurement", b) for b in self.measurement),
                 *([("choice", self.choice)] if self.choice is not None else [])]
        blocks = {}
        for block, component in parts:
            for name in labelled_names(component.labels()):
                blocks.setdefault(self._alias(name), block)
        return blocks

    def parameter_terms(self) -> dict[str, frozenset | None]:
        """``{parameter name: the additive terms of log L_ir it enters}``, or ``None`` for a
        parameter of the structural model, which enters every term through the latent
        variables. ``d^2 log L_ir / da db = 0`` unless ``a`` and ``b`` share a term or one of
        them is structural: the structured Hessian relies on it."""
        terms: dict[str, set] = {}
        for c, component in enumerate(self.terms):
            for t, names in enumerate(component.parameter_terms()):
                for name in names:
                    terms.setdefault(self._alias(name), set()).add((c, t))
        dense = {self._alias(n) for n in labelled_names(self.latent.labels())}
        return {name: None if name in dense else frozenset(ts) for name, ts in
                {**dict.fromkeys(dense, set()), **terms}.items()}

    def natural_values(self) -> dict[str, jax.Array]:
        """Every parameter on its natural scale (traceable, for the delta method): ``exp`` of
        the log parameters (``sigma`` for ``log_sigma``), the thresholds ``tau1 < tau2 < ...``
        of every ordered block in place of their parameters, and the coefficients as they
        are."""
        kinds = self.parameter_kinds()
        out = {}
        for name, value in labelled_values(self).items():
            if kinds[name] == "log":
                out[natural_name(name)] = jnp.exp(value)
            elif kinds[name] == "coefficient":
                out[name] = value
        for component in self.terms:
            out.update(component.derived_values())
        return out

    def set_natural(self, values: Mapping[str, float]) -> "ICLV":
        """Set parameters by their natural-scale names (those of :meth:`natural_values`):
        ``"q1.sigma"`` sets ``q1.log_sigma`` to its log; ``"q1.tau2"`` the threshold
        parameters of ``q1``'s set so that its second threshold is as given."""
        kinds = self.parameter_kinds()
        logs = {natural_name(n): n for n, kind in kinds.items() if kind == "log"}
        direct = {}
        for name, value in values.items():
            if name in logs:
                if not value > 0:
                    raise ValueError(f"{name} must be positive, got {value!r}")
                direct[logs[name]] = float(np.log(value))
        model = set_values(self, direct)
        rest = {k: v for k, v in values.items() if k not in logs}
        terms = list(model.terms)
        for c, component in enumerate(terms):
            mine = {k: v for k, v in rest.items() if k in component.derived_values()}
            if mine:
                terms[c] = component.set_derived(mine)
                rest = {k: v for k, v in rest.items() if k not in mine}
        for name in rest:
            known = list(dict.fromkeys([*labelled_values(self), *self.natural_values()]))
            raise KeyError(f"no parameter named {name!r} in the model{close_matches(name, known)}")
        return model._with_components(model.latent, terms)

    # ---- data ----

    def check_data(self, panel: Panel | PanelArrays) -> None:
        """Raise a :class:`DataError` if ``panel`` lacks what the model reads or holds values
        that the model cannot explain (a Likert value outside 1..levels, say), or if the
        choice model's alternatives do not match the panel's by label. ``PanelArrays`` built
        by hand (not by :meth:`Panel.from_dataframe`) are checked as well: finite covariates
        and attributes, choices that index an available alternative; individuals are then
        named by their position."""
        built = isinstance(panel, Panel)
        arrays = panel.arrays if built else panel
        ids = panel.ids if built else np.arange(arrays.task_mask.shape[0])
        for role, needed, present in (
                ("covariate", self.covariates, arrays.covariate_names),
                ("indicator", [i for b in self.measurement for i in b.indicators],
                 arrays.indicator_names),
                ("attribute", self.choice.attributes if self.choice else (),
                 arrays.attribute_names)):
            missing = [name for name in needed if name not in present]
            if missing:
                coded = [n for n in missing if built and n in panel.categories]
                raise DataError(f"the model uses {role}s {missing} that the panel does not hold; "
                                f"the panel's {role}s are {list(present)}" + "".join(
                                    f"; {n!r} is categorical, coded as the dummies "
                                    f"{panel.dummies(n)} (panel.dummies({n!r}))" for n in coded))
        if not built:
            _check_arrays(arrays)
        for block in self.measurement:
            values = arrays.indicator_values(block.indicators, np)  # NaN: missing
            if not block.drops_missing and np.isnan(values).any():
                n, k = np.argwhere(np.isnan(values))[0]
                raise DataError(
                    f"indicator {block.indicators[k]!r} of individual {_show(ids[n])} is "
                    f"missing, and {type(block).__name__} does not say that it drops missing "
                    f"answers (a user-written block must handle NaN values in its forward "
                    f"function and set drops_missing = True)")
            block.check_data(values, ids)
            if built:
                block.check_missing_codes(panel.missing_codes)
        if self.choice is not None:
            binary_model = self.choice.binary
            binary_panel = arrays.available.shape[2] == 1
            if binary_model != binary_panel:
                raise DataError(
                    f"{type(self.choice).__name__} needs a panel built for "
                    f"{'binary' if binary_model else 'multinomial'} choice, but the panel is "
                    f"{'binary' if binary_panel else 'multinomial'} (attributes given as a "
                    f"{'list' if binary_panel else 'mapping'})")
            if binary_model:
                return
            if built:
                panel.in_order(self.choice.alternatives)  # the labels must match
            elif arrays.available.shape[2] != self.choice.n_alternatives:
                raise DataError(f"the choice model has {self.choice.n_alternatives} "
                                f"alternatives, the data {arrays.available.shape[2]}")

    def aligned(self, panel: Panel) -> Panel:
        """``panel`` checked against the model (:meth:`check_data`), with its alternatives in
        the model's order (matched by label)."""
        self.check_data(panel)
        if self.choice is None or self.choice.binary:
            return panel
        return panel.in_order(self.choice.alternatives)


def _check_arrays(arrays: PanelArrays) -> None:
    """What :meth:`Panel.from_dataframe` guarantees, for arrays built by hand."""
    weights = np.asarray(arrays.weights)
    bad = ~(weights >= 0) | ~np.isfinite(weights)
    if bad.any():
        n = int(np.flatnonzero(bad)[0])
        raise DataError(f"the weight of individual {n} (position) is {weights[n]}: weights must "
                        f"be finite and non-negative")
    observed = arrays.indicator_observed
    if observed is not None and np.shape(observed) != np.shape(arrays.indicators):
        raise DataError(f"indicator_observed has shape {np.shape(observed)}, the indicators "
                        f"{np.shape(arrays.indicators)}")
    for name, values, names in (
            ("covariate", arrays.covariates, arrays.covariate_names),
            ("indicator", arrays.indicator_values(arrays.indicator_names, np),
             arrays.indicator_names)):
        bad = ~np.isfinite(np.asarray(values))
        if name == "indicator" and observed is not None:
            bad &= np.asarray(observed)  # NaN where missing
        if bad.any():
            n, k = np.argwhere(bad)[0]
            raise DataError(f"{name} {names[k]!r} of individual {n} (position) is "
                            f"{np.asarray(values)[n, k]}: not finite")
    attributes = np.asarray(arrays.attributes)
    bad = ~np.isfinite(attributes) & np.asarray(arrays.task_mask)[:, :, None, None]
    if bad.any():
        n, t, j, a = np.argwhere(bad)[0]
        raise DataError(f"attribute {arrays.attribute_names[a]!r} of alternative {j} in task "
                        f"{t + 1} of individual {n} (position) is {attributes[n, t, j, a]}")
    choice, available = np.asarray(arrays.choice), np.asarray(arrays.available)
    n_alternatives = max(available.shape[2], 2)  # binary data hold one utility difference
    bad = ((choice < 0) | (choice >= n_alternatives)) & np.asarray(arrays.task_mask)
    if not bad.any() and available.shape[2] > 1:
        chosen = np.take_along_axis(available, np.clip(choice, 0, None)[..., None], 2)[..., 0]
        bad = ~chosen & np.asarray(arrays.task_mask)
    if bad.any():
        n, t = np.argwhere(bad)[0]
        raise DataError(f"the choice {choice[n, t]} in task {t + 1} of individual {n} (position) "
                        f"is not an available alternative (0..{n_alternatives - 1})")


def share(model: ICLV, groups: Mapping[str, Sequence[str]]) -> ICLV:
    """``model`` with each list of parameters made one parameter under a new name:
    ``share(model, {"lambda": ["theta.LV.1", "theta.LV.2"]})`` (one coefficient of the
    latent variable in the utilities of alternatives 1 and 2), ``{"zeta": ["q1.zeta.a",
    "q2.zeta.a"]}`` (equal loadings). The parameters must have the same starting value and
    the same kind; the gradient of the shared parameter is the sum of its places'. Shared
    parameters keep the structured Hessian's compression where the terms they join allow
    (see :mod:`jaxiclv._structured_hessian`)."""
    values = labelled_values(model)
    renames = {}
    for new, olds in groups.items():
        if not isinstance(new, str) or not new:
            raise TypeError(f"a shared parameter's name must be a non-empty string, got {new!r}")
        olds = fixed_names(olds)
        for old in olds:
            if old not in values:
                raise KeyError(f"no parameter named {old!r} in the model"
                               f"{close_matches(old, values)}")
            if old in renames:
                raise ValueError(f"parameter {old!r} is listed for two shared names, "
                                 f"{renames[old]!r} and {new!r}")
            renames[old] = new
        starts = {old: float(values[old]) for old in olds}
        if new in values and new not in olds:
            starts[new] = float(values[new])
        if len(set(starts.values())) > 1:
            raise ValueError(f"the parameters shared as {new!r} have different starting values "
                             f"{starts}; give them one value (set_values) before sharing them")
    aliases = {**dict(model.aliases)}
    current = {original: aliases.get(original, original) for model_c in model.components
               for original in labelled_names(model_c.labels())}
    for original, name in current.items():
        if name in renames:
            aliases[original] = renames[name]
    return ICLV(model.latent, model.measurement, model.choice, tuple(aliases.items()))
