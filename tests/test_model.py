"""Model specification: the structural model's graph, the ICLV's consistency checks, the
parameter space (names, flatten/unflatten, fixing) and the bundled reference specification."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxiclv as jic
from jaxiclv import _example as ex


# --------------------------------------------------------------------------------------------
# Structural model


@pytest.mark.parametrize("parents", [
    {"a": ["b"], "b": ["a"]},                 # a -> b -> a
    {"a": ["c"], "b": ["a"], "c": ["b"]},     # a three-cycle
    {"b": ["b"]},                             # a self-loop
])
def test_structural_rejects_cycles(parents):
    with pytest.raises(ValueError, match="cycle"):
        jic.Structural({"a": [], "b": [], "c": []}, parents=parents)


@pytest.mark.parametrize("parents, free_scale, unknown", [
    ({"b": ["nope"]}, (), "nope"),            # unknown parent
    ({"nope": ["a"]}, (), "nope"),            # unknown child
    ({}, ["nope"], "nope"),                   # unknown latent variable with a free scale
])
def test_structural_rejects_unknown_latent_variables(parents, free_scale, unknown):
    with pytest.raises(ValueError, match=unknown):
        jic.Structural({"a": ["z"], "b": []}, parents=parents, free_scale=free_scale)


def test_a_structural_model_without_latent_variables_is_a_choice_only_model():
    """``Structural({})`` (what ``ICLV(latent=None)`` uses) has no latent variables and no
    draw dimensions; a model needs a choice model or a measurement block."""
    structural = jic.Structural({})
    assert structural.names == () and structural.n_draw_dims == 0
    model = jic.ICLV(choice=jic.MultinomialLogit(["a", "b"], attributes=["x"]))
    assert model.latent.names == () and model.n_draw_dims == 0
    assert jic.ParameterSpace.from_model(model).names == ("asc.b", "beta.x")
    with pytest.raises(ValueError, match="needs a choice model or a measurement block"):
        jic.ICLV(structural)


def test_exogenous_latent_variable_is_gamma_z_plus_eta():
    structural = jic.set_values(jic.Structural({"a": ["z1", "z2"]}),
                                {"a.gamma.z1": 0.7, "a.gamma.z2": -1.3})
    z = jnp.array([0.4, 2.0])
    eta = jnp.array([-0.9])
    assert structural.n_latent == 1
    np.testing.assert_allclose(structural(z, eta), [0.7 * 0.4 - 1.3 * 2.0 - 0.9], rtol=1e-15)
    # with a free scale: gamma z + sigma eta
    scaled = jic.set_values(jic.Structural({"a": ["z1", "z2"]}, free_scale=["a"]),
                            {"a.gamma.z1": 0.7, "a.gamma.z2": -1.3, "a.log_sigma": np.log(2.5)})
    np.testing.assert_allclose(scaled(z, eta), [0.7 * 0.4 - 1.3 * 2.0 - 2.5 * 0.9], rtol=1e-14)


def test_parents_declared_after_their_children():
    # c <- b <- a, declared in the reverse order: each must be evaluated after its parents
    structural = jic.Structural({"c": ["z"], "b": [], "a": ["z"]},
                                parents={"c": ["b", "a"], "b": ["a"]})
    names = structural.names
    position = {names[i]: k for k, i in enumerate(structural.order)}
    assert position["a"] < position["b"] < position["c"]
    structural = jic.set_values(structural, {"a.gamma.z": 0.5, "c.gamma.z": -0.2, "b.b.a": 0.8,
                                             "c.b.b": -1.5, "c.b.a": 0.3})
    z, eta = jnp.array([1.7]), jnp.array([0.3, -0.4, 1.1])  # eta in the order (c, b, a)
    a = 0.5 * 1.7 + 1.1
    b = 0.8 * a - 0.4
    c = -0.2 * 1.7 - 1.5 * b + 0.3 * a + 0.3
    np.testing.assert_allclose(structural(z, eta), [c, b, a], rtol=1e-14)


def test_structural_labels_exclude_structural_zeros():
    structural = jic.Structural({"a": ["z1"], "b": ["z2"]}, parents={"b": ["a"]})
    names = jic.ParameterSpace.from_model(structural).names
    assert set(names) == {"a.gamma.z1", "b.gamma.z2", "b.b.a"}
    # every latent variable's scale is fixed by default, and can be freed
    assert jic.ParameterSpace.from_model(structural).fixed_names == ("a.log_sigma", "b.log_sigma")
    freed = jic.Structural({"a": ["z1"], "b": ["z2"]}, parents={"b": ["a"]}, free_scale=["b"])
    space = jic.ParameterSpace.from_model(freed)
    assert "b.log_sigma" in space.names and space.fixed_names == ("a.log_sigma",)


# --------------------------------------------------------------------------------------------
# ICLV


def _structural():
    return jic.Structural({"a": ["z1"], "b": ["z2"]}, parents={"b": ["a"]})


def test_iclv_rejects_a_measurement_block_on_an_unknown_latent_variable():
    with pytest.raises(ValueError, match="'c'"):
        jic.ICLV(_structural(), jic.OrderedProbit({"a": ["q1"], "c": ["q2"]}, levels=5))


def test_iclv_rejects_a_choice_model_on_an_unknown_latent_variable():
    with pytest.raises(ValueError, match="'c'"):
        jic.ICLV(_structural(), jic.NormalIndicators({"a": ["q1"]}),
                 jic.BinaryProbit(attributes=["x"], latent=["a", "c"]))
    with pytest.raises(ValueError, match="'c'"):
        jic.ICLV(_structural(), jic.NormalIndicators({"a": ["q1"]}),
                 jic.MultinomialLogit([1, 2, 3], attributes=["x"], latent={"c": [2]}))


def test_iclv_rejects_an_indicator_in_two_blocks():
    with pytest.raises(ValueError, match="q2"):
        jic.ICLV(_structural(), (jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5),
                                 jic.NormalIndicators({"b": ["q2", "q3"]})))


def test_iclv_accepts_a_consistent_specification():
    model = jic.ICLV(_structural(), (jic.OrderedProbit({"a": ["q1", "q2"]}, levels=5),
                                     jic.NormalIndicators({"b": ["q3"]})),
                     jic.BinaryProbit(attributes=["x"], latent=["a", "b"]))
    assert model.n_draw_dims == 2
    assert len(model.measurement) == 2


# --------------------------------------------------------------------------------------------
# Parameter space


def _model():
    return jic.ICLV(
        latent=jic.Structural({"a": ["z1", "z2"], "b": ["z2"]}, parents={"b": ["a"]}),
        measurement=(jic.OrderedProbit({"a": ["q1", "q2"], "b": ["q3"]}, levels=4),
                     jic.NormalIndicators({"a": ["y1"], "b": ["y2"]})),
        choice=jic.BinaryProbit(attributes=["x1", "x2"], latent=["a", "b"],
                                interactions={"x1": ["b"]}),
    )


def test_parameter_names_are_unique_and_exclude_structural_zeros():
    space = jic.ParameterSpace.from_model(_model())
    names = space.names
    assert len(names) == len(set(names)) == space.size
    assert all(names)  # no empty label
    expected = {
        "a.gamma.z1", "a.gamma.z2", "b.gamma.z2", "b.b.a",
        "q1.zeta.a", "q2.zeta.a", "q3.zeta.b",
        *(f"{q}.tau1" for q in ("q1", "q2", "q3")),
        *(f"{q}.log_dtau{j}" for q in ("q1", "q2", "q3") for j in (2, 3)),
        "y1.alpha", "y2.alpha", "y1.zeta.a", "y2.zeta.b", "y1.log_sigma", "y2.log_sigma",
        "asc", "beta.x1", "beta.x2", "theta.a", "theta.b", "kappa.x1.b",
    }
    assert set(names) == expected
    # structural zeros: covariates, paths, loadings and interactions not in the specification
    for zero in ("b.gamma.z1", "a.b.b", "a.b.a", "b.b.b", "q1.zeta.b", "q3.zeta.a", "y1.zeta.b",
                 "kappa.x1.a", "kappa.x2.a", "kappa.x2.b"):
        assert zero not in names
    assert space.fixed_names == ("a.log_sigma", "b.log_sigma")


def test_flatten_unflatten_round_trip():
    model = _model()
    space = jic.ParameterSpace.from_model(model)
    theta = jnp.asarray(np.random.default_rng(0).normal(size=space.size))
    assert theta.shape == (space.size,)
    rebuilt = space.unflatten(theta)
    np.testing.assert_array_equal(space.flatten(rebuilt), theta)
    # the parameters reach the model under their names
    values = space.values(rebuilt)
    for name, value in zip(space.names, np.asarray(theta)):
        assert values[name] == value
    # fixed parameters and structural zeros keep their template values
    assert values["a.log_sigma"] == 0.0 and values["b.log_sigma"] == 0.0
    assert float(rebuilt.latent.gamma[1, 0]) == 0.0  # b.gamma.z1: a structural zero
    assert float(rebuilt.latent.b[0, 1]) == 0.0       # a.b.b
    # and model -> vector -> model is the identity on the leaves
    again = space.unflatten(space.flatten(rebuilt))
    for x, y in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(again)):
        np.testing.assert_array_equal(x, y)


def test_user_fixed_parameters_leave_the_free_vector():
    model = jic.set_values(_model(), {"q1.zeta.a": 1.0, "beta.x2": -0.25})
    space = jic.ParameterSpace.from_model(model, fixed=["q1.zeta.a", "beta.x2"])
    full = jic.ParameterSpace.from_model(model)
    assert space.size == full.size - 2
    assert "q1.zeta.a" not in space.names and "beta.x2" not in space.names
    assert set(space.fixed_names) == {"a.log_sigma", "b.log_sigma", "q1.zeta.a", "beta.x2"}
    values = space.values(space.unflatten(jnp.zeros(space.size)))
    assert values["q1.zeta.a"] == 1.0 and values["beta.x2"] == -0.25


def test_set_values_by_name():
    model = jic.set_values(_model(), {"beta.x1": -0.5, "q3.log_dtau3": 0.25, "b.b.a": 0.6,
                                      "y2.zeta.b": 1.5})
    values = jic.ParameterSpace.from_model(model).values(model)
    assert values["beta.x1"] == -0.5
    assert values["q3.log_dtau3"] == 0.25
    assert values["b.b.a"] == 0.6
    assert values["y2.zeta.b"] == 1.5
    assert values["beta.x2"] == 0.0  # untouched
    # the arrays themselves hold the values where the names say
    assert float(model.latent.b[1, 0]) == 0.6
    assert float(model.choice.utility.beta[0, 0]) == -0.5


def test_set_values_rejects_unknown_names_with_a_hint():
    with pytest.raises(KeyError, match=re.escape("did you mean")) as info:
        jic.set_values(_model(), {"beta.x3": 1.0})
    assert "beta.x1" in str(info.value)
    with pytest.raises(KeyError, match="zzz"):
        jic.set_values(_model(), {"zzz": 1.0})
    # a structural zero has no name and cannot be set
    with pytest.raises(KeyError):
        jic.set_values(_model(), {"b.gamma.z1": 1.0})


def test_estimate_rejects_unknown_fixed_names():
    model = jic.ICLV(jic.Structural({"a": ["z1"]}), jic.NormalIndicators({"a": ["y1", "y2"]}),
                     jic.BinaryProbit(attributes=["x1"], latent=["a"]))
    panel = jic.simulate(model, 20, 2, seed=0).panel
    with pytest.raises(KeyError, match="did you mean"):
        jic.estimate(model, panel, jic.Halton(5), fixed=["beta.x"])
    with pytest.raises(KeyError):
        jic.ParameterSpace.from_model(model, fixed=["unknown"])


# --------------------------------------------------------------------------------------------
# The bundled reference specification


def test_reference_model_parameters():
    space = jic.ParameterSpace.from_model(ex.reference_model())
    names = space.names
    assert space.size == 219 == len(set(names))
    lvs = ("health", "environment", "convenience", "price_sensitivity", "intention")
    n_items = {"health": 8, "environment": 7, "convenience": 8, "price_sensitivity": 6,
               "intention": 9}
    items = [f"{lv}_{k}" for lv in lvs for k in range(1, n_items[lv] + 1)]
    assert len(items) == 38
    expected = (
        [f"{lv}.gamma.{c}" for lv in lvs for c in ("age", "female", "income")]          # 15
        + [f"intention.b.{lv}" for lv in lvs[:4]]                                      # 4
        + [f"{i}.zeta.{i.rsplit('_', 1)[0]}" for i in items]                           # 38
        + [f"{i}.tau1" for i in items]                                                 # 38
        + [f"{i}.log_dtau{j}" for i in items for j in (2, 3, 4)]                       # 114
        + ["asc"] + [f"beta.{a}" for a in ("cost", "time", "quality", "distance")]     # 5
        + [f"theta.{lv}" for lv in lvs]                                                # 5
    )
    assert len(expected) == 219
    assert set(names) == set(expected)
    assert space.fixed_names == tuple(f"{lv}.log_sigma" for lv in lvs)
    # the true values are set under the same names
    truth = ex.reference_truth()
    assert set(jic.ParameterSpace.from_model(truth).names) == set(expected)
