"""The ICLV model: a structural model, measurement blocks and a choice model.

``log L_ir = sum_blocks log f(indicators_i | LV_ir) + sum_t log P(choice_it | LV_ir)`` with
``LV_ir = structural(covariates_i, eta_ir)``: :meth:`ICLV.draw_logliks` is that one function,
for one individual at its draws (the structural model and the utilities are written for one
draw and vmapped; the draws are the last axis of every per-draw array);
:mod:`jaxiclv._likelihood` maps it over individuals.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._choice import AbstractChoice, BinaryProbit
from ._data import DataError, Panel, PanelArrays
from ._latent import Structural
from ._measurement import AbstractMeasurement, AbstractOrdered
from ._parameters import labelled_values, replace_fields

__all__ = ["ICLV"]


class ICLV(eqx.Module):
    """An integrated choice and latent variable model.

    ``latent``: the :class:`Structural` model; ``measurement``: one or more measurement blocks;
    ``choice``: a choice model, or ``None`` for a measurement-only (MIMIC) model.
    """

    latent: Structural
    measurement: tuple[AbstractMeasurement, ...]
    choice: AbstractChoice | None

    def __init__(self, latent: Structural,
                 measurement: AbstractMeasurement | Sequence[AbstractMeasurement] = (),
                 choice: AbstractChoice | None = None):
        if isinstance(measurement, AbstractMeasurement):
            measurement = (measurement,)
        self.latent = latent
        self.measurement = tuple(measurement)
        self.choice = choice
        used = [(type(c).__name__, lv) for c in (*self.measurement, *([choice] if choice else []))
                for lv in c.latent]
        for component, lv in used:
            if lv not in latent.names:
                raise ValueError(f"{component} uses latent variable {lv!r}, which the structural "
                                 f"model does not define; it defines {latent.names}")
        indicators = [i for block in self.measurement for i in block.indicators]
        repeated = sorted({i for i in indicators if indicators.count(i) > 1})
        if repeated:
            raise ValueError(f"indicators appear in more than one measurement block: {repeated}")

    @property
    def n_draw_dims(self) -> int:
        """Dimensions of the draws: one standard normal per latent variable."""
        return self.latent.n_latent

    def _lv_index(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.latent.names.index(n) for n in names], dtype=np.int32)

    def components(self, x: PanelArrays):
        """``(component, its data inputs, indices of the latent variables it uses)`` for each
        measurement block and the choice model, for one individual's data ``x``."""
        out = [(block, (x.indicators[x.indicator_columns(block.indicators)],),
                self._lv_index(block.latent)) for block in self.measurement]
        if self.choice is not None:
            attributes = x.attributes[:, :, x.attribute_columns(self.choice.attributes)]
            out.append((self.choice, (attributes, x.choice, x.available, x.task_mask),
                        self._lv_index(self.choice.latent)))
        return out

    def covariates_of(self, x: PanelArrays):
        return x.covariates[x.covariate_columns(self.latent.covariates)]

    def draw_logliks(self, x: PanelArrays, eta: Float[Array, "R D"]) -> Float[Array, " R"]:
        """``log L_ir``: the log-likelihood of one individual's data ``x`` at each of the
        draws ``eta``."""
        lv = self.latent.at_draws(self.covariates_of(x), eta)  # (L, R)
        total = jnp.zeros(eta.shape[:1], dtype=eta.dtype)
        for component, inputs, index in self.components(x):
            total = total + component.loglik(*inputs, lv[index])
        return total

    def check_data(self, panel: Panel) -> None:
        """Raise a :class:`DataError` if ``panel`` lacks what the model reads or holds values
        that the model cannot explain (a Likert value outside 1..levels, say)."""
        arrays = panel.arrays
        for role, needed, present in (
                ("covariate", self.latent.covariates, arrays.covariate_names),
                ("indicator", [i for b in self.measurement for i in b.indicators],
                 arrays.indicator_names),
                ("attribute", self.choice.attributes if self.choice else (),
                 arrays.attribute_names)):
            missing = [name for name in needed if name not in present]
            if missing:
                raise DataError(f"the model uses {role}s {missing} that the panel does not hold; "
                                f"the panel's {role}s are {list(present)}")
        indicators = np.asarray(arrays.indicators)
        for block in self.measurement:
            block.check_data(indicators[:, arrays.indicator_columns(block.indicators)], panel.ids)
        if self.choice is not None:
            binary_model = isinstance(self.choice, BinaryProbit)
            binary_panel = arrays.available.shape[2] == 1
            if binary_model != binary_panel:
                raise DataError(
                    f"{type(self.choice).__name__} needs a panel built for "
                    f"{'binary' if binary_model else 'multinomial'} choice, but the panel is "
                    f"{'binary' if binary_panel else 'multinomial'} (attributes given as a "
                    f"{'list' if binary_panel else 'mapping'})")
            if not binary_model and panel.n_alternatives != self.choice.n_alternatives:
                raise DataError(f"the choice model has {self.choice.n_alternatives} alternatives, "
                                f"the panel {panel.n_alternatives} {panel.alternatives}")

    def labels(self) -> "ICLV":
        return replace_fields(self, latent=self.latent.labels(),
                              measurement=tuple(b.labels() for b in self.measurement),
                              choice=self.choice.labels() if self.choice is not None else None)

    def fixed_labels(self) -> tuple[str, ...]:
        components = (self.latent, *self.measurement, *([self.choice] if self.choice else []))
        return tuple(name for c in components for name in c.fixed_labels())

    def parameter_blocks(self) -> dict[str, str]:
        """``{parameter name: "structural" | "measurement" | "choice"}``."""
        parts = [("structural", self.latent), *(("measurement", b) for b in self.measurement),
                 *([("choice", self.choice)] if self.choice is not None else [])]
        return {name: block for block, component in parts for name in labelled_values(component)}

    def interaction_groups(self) -> dict[str, str | None]:
        """``{parameter name: group}`` for the structured Hessian. ``log L_ir`` is a sum of one
        term per indicator and one choice term, joined only through the latent variables, so
        ``d^2 log L_ir / da db = 0`` for parameters ``a``, ``b`` in different groups. Structural
        parameters (group ``None``) enter every term; the parameters of indicator ``k`` (row
        ``k`` of every parameter array of its measurement block) form one group, and the
        choice model's parameters another. A block with a parameter array that is not one row
        per indicator (a parameter shared by its indicators) is not split: its parameters
        are given group ``None``, which is always correct, only slower."""
        groups = dict.fromkeys(labelled_values(self.latent))
        for block in self.measurement:
            labels = [np.asarray(label, dtype=str) for label in jax.tree.leaves(block.labels())]
            per_indicator = all(label.ndim > 0 and label.shape[0] == len(block.indicators)
                                for label in labels)
            for label in labels:
                if per_indicator:
                    groups.update({name: f"indicator {item}" for item, row in
                                   zip(block.indicators, label) for name in row.ravel() if name})
                else:
                    groups.update(dict.fromkeys(name for name in label.ravel() if name))
        if self.choice is not None:
            groups.update(dict.fromkeys(labelled_values(self.choice), "choice"))
        return groups

    def natural_values(self) -> dict[str, jax.Array]:
        """Every parameter on its natural scale (traceable, for the delta method): ``sigma``
        for each ``log_sigma``, the thresholds ``tau1 < tau2 < ...`` for ``tau1`` and the
        ``log_dtau`` increments; everything else as it is."""
        thresholds = {f"{item}.tau1": {f"{item}.tau{j + 1}": block.thresholds[k, j]
                                       for j in range(block.levels - 1)}
                      for block in self.measurement if isinstance(block, AbstractOrdered)
                      for k, item in enumerate(block.indicators)}
        out = {}
        for name, value in labelled_values(self).items():
            if name.endswith(".log_sigma"):
                out[name[: -len("log_sigma")] + "sigma"] = jnp.exp(value)
            elif name in thresholds:
                out.update(thresholds[name])
            elif ".log_dtau" not in name:
                out[name] = value
        return out
