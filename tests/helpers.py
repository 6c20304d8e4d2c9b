"""Helpers shared by the test modules: tree comparisons, random parameter values, simulated
panels, and the comparison of a component's pullback with autodiff."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxiclv as jic

EPS = float(np.finfo(np.float64).eps)
N_DRAWS = 5  # Halton draws per individual of the small test problems


def leaf_rel_error(got, want) -> float:
    """``max |got - want| / max |want|`` (0 if both are zero)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if got.size == 0:
        return 0.0
    scale = np.max(np.abs(want))
    err = np.max(np.abs(got - want))
    return 0.0 if err == 0.0 else err / max(scale, np.finfo(np.float64).tiny)


def assert_trees_close(got, want, rtol, what="", mask=None):
    """Leaf by leaf, same tree structure, ``leaf_rel_error <= rtol``; ``mask`` (a tree of
    boolean arrays or None) restricts the comparison to its True entries."""
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert got_def == want_def, f"{what}: tree structures differ:\n{got_def}\n{want_def}"
    masks = [None] * len(got_leaves) if mask is None else jax.tree.leaves(mask)
    assert len(masks) == len(got_leaves)
    for (path, g), (_, w), m in zip(got_leaves, want_leaves, masks):
        g, w = np.asarray(g), np.asarray(w)
        assert np.all(np.isfinite(g)), f"{what}{jax.tree_util.keystr(path)}: not finite: {g}"
        if m is not None:
            g, w = g[np.asarray(m)], w[np.asarray(m)]
        err = leaf_rel_error(g, w)
        assert err <= rtol, (f"{what}{jax.tree_util.keystr(path)}: relative difference {err:.3g} "
                             f"> {rtol:g}\n got  {g}\n want {w}")


def labelled(module):
    """A tree of boolean masks: True where ``module.labels()`` names a parameter."""
    return jax.tree.map(lambda label: np.asarray(label, dtype=object).astype(str) != "",
                        module.labels())


# Ranges of random values for the parameter arrays, by field (or user parameter) name.
RANGES = {"alpha": (-1.0, 1.0), "zeta": (-1.5, 1.5), "log_sigma": (-0.5, 0.5),
          "tau1": (-1.5, 0.0), "log_increments": (-1.0, 0.5), "log_scale": (-0.5, 0.5),
          "asc": (-1.0, 1.0), "beta": (-1.5, 1.5), "theta": (-1.0, 1.0), "kappa": (-0.8, 0.8),
          "gamma": (-1.0, 1.0), "b": (-0.9, 0.9), "intercept": (-1.0, 1.0),
          "log_lambda": (-1.5, 0.0), "mu": (-1.0, 0.5), "sd": (-1.5, 1.5)}


def randomize(module, rng, ranges=RANGES):
    """``module`` with every element of every parameter array random (structural zeros too:
    the pullbacks must hold for the arrays as the forward functions use them), in the range of
    its field's name (default ``(-1, 1)``)."""
    def key_name(key):
        return getattr(key, "name", getattr(key, "key", None))

    def draw(path, leaf):
        low, high = ranges.get(key_name(path[-1]), (-1.0, 1.0))
        return jnp.asarray(rng.uniform(low, high, size=np.shape(leaf)), dtype=jnp.float64)
    return jax.tree_util.tree_map_with_path(draw, module)


def random_values(names, latent_names, rng) -> np.ndarray:
    """Non-trivial values for the named (free) parameters of a whole model."""
    out = []
    for name in names:
        head = name.split(".")[0]
        if name.endswith(".log_sigma") or name.endswith(".log_scale"):
            value = rng.uniform(-0.4, 0.3)
        elif ".zeta." in name:
            value = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.3)
        elif name.endswith(".tau1"):
            value = rng.uniform(-1.5, -0.5)
        elif name.endswith(".sd") or (head == "beta" and name.endswith(".sigma")):
            value = rng.uniform(0.2, 1.2)  # random terms' standard deviations
        elif head == "beta" and name.endswith(".mu"):
            value = rng.uniform(-1.0, 0.3)
        elif name.endswith(".log_lambda"):  # nested logit: lambda in (0.3, 1.1)
            value = rng.uniform(-1.2, 0.1)
        elif ".log_dtau" in name or ".log_delta" in name:
            value = rng.uniform(-0.7, 0.3)
        elif ".b." in name and head in latent_names:
            value = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.9)
        elif head == "beta":
            value = rng.uniform(-1.5, 1.5)
        elif head == "kappa":
            value = rng.uniform(-0.8, 0.8)
        else:  # gamma, alpha, asc, theta, intercepts, user parameters
            value = rng.uniform(-1.0, 1.0)
        out.append(value)
    return np.asarray(out, dtype=np.float64)


def with_random_values(model, rng):
    space = jic.ParameterSpace.from_model(model)
    values = random_values(space.names, model.latent.names, rng)
    return jic.set_values(model, dict(zip(space.names, values.tolist())))


def simulated_frame(model, n, n_tasks, seed) -> pd.DataFrame:
    """Long data simulated from ``model``, with every ordered indicator overwritten so that all
    its levels (both open-ended ones included) occur."""
    df = jic.simulate(model, n, n_tasks=n_tasks, seed=seed).data.copy()
    for block in model.measurement:
        if isinstance(block, jic.OrderedMeasurement):
            for k, item in enumerate(block.indicators):
                df[item] = ((df["id"] + 2 * k + seed) % block.levels + 1).astype(float)
    return df


def panel_from_frame(model, df, **options) -> jic.Panel:
    """The panel of ``df`` for ``model``; for the multinomial logit with availability columns
    (tasks 1, 4, ...: one alternative dropped when J >= 3; tasks 2, 5, ...: only the chosen one
    left, so P = 1; the others: all available). ``options``: more arguments of
    :meth:`Panel.from_dataframe` (weights, missing indicators)."""
    df = df.copy()
    kwargs = dict(id="id", choice="choice", covariates=list(model.covariates),
                  indicators=[i for b in model.measurement for i in b.indicators], **options)
    choice = model.choice
    if choice is not None and not choice.binary:
        alts = list(choice.alternatives)
        n_alt = len(alts)
        chosen = df["choice"].map(alts.index).to_numpy()
        available = np.ones((len(df), n_alt), dtype=int)
        for row, (c, t) in enumerate(zip(chosen, df["task"].to_numpy())):
            if t % 3 == 1 and n_alt >= 3:
                available[row, (c + 1) % n_alt] = 0
            elif t % 3 == 2:
                available[row] = 0
                available[row, c] = 1
        for j, alt in enumerate(alts):
            df[f"av_{alt}"] = available[:, j]
        kwargs.update(attributes={a: [f"{a}_{alt}" for alt in alts] for a in choice.attributes},
                      alternatives=alts, availability=[f"av_{alt}" for alt in alts])
    elif choice is not None:
        kwargs["attributes"] = list(choice.attributes)
    return jic.Panel.from_dataframe(df, **kwargs)


def simulated_panel(model, n, n_tasks, seed) -> jic.Panel:
    return panel_from_frame(model, simulated_frame(model, n, n_tasks, seed))


# --------------------------------------------------------------------------------------------
# Gradients of whole models (see test_gradients' module docstring for the tolerances)
# --------------------------------------------------------------------------------------------

def gradient_tolerance(grad_ref, scores, rtol):
    """Per element: ``rtol (|g_p| + sum_i |s_ip| / N)`` (see the module docstring)."""
    return rtol * (np.abs(np.asarray(grad_ref)) + np.mean(np.abs(np.asarray(scores)), axis=0))


def third_differences(loglik, theta, step=1e-2) -> np.ndarray:
    """The third derivative along every coordinate,
    ``(f(t+2k) - 2f(t+k) + 2f(t-k) - f(t-2k)) / 2k^3`` with ``k = step max(|t|, 1)``: truncation
    ``O(k^2 f^(5))``, rounding ``~3 delta / k^3 ~ 1e6 eps |f|``, both negligible for its use (a
    factor in an error bound)."""
    theta = np.asarray(theta, dtype=np.float64)
    k = step * np.maximum(np.abs(theta), 1.0)
    out = np.empty_like(theta)
    for p in range(theta.size):
        e = np.zeros_like(theta)
        e[p] = k[p]
        f = [float(loglik(jnp.asarray(theta + c * e))) for c in (2.0, 1.0, -1.0, -2.0)]
        out[p] = (f[0] - 2.0 * f[1] + 2.0 * f[2] - f[3]) / (2.0 * k[p] ** 3)
    return out


def fd_bound(theta, value, third) -> np.ndarray:
    """Error bound of ``Problem``'s central differences, ``2 (h^2 |f'''| / 6 + 64 eps |f| / h)``
    with ``h = eps^(1/3) max(|theta|, 1)`` (see the module docstring)."""
    theta = np.asarray(theta)
    h = EPS ** (1.0 / 3.0) * np.maximum(np.abs(theta), 1.0)
    return 2.0 * (h * h / 6.0 * np.abs(np.asarray(third)) + 64.0 * EPS * abs(float(value)) / h)


def problems_for(model, panel, seed=0, n_draws=N_DRAWS, gradients=jic.GRADIENTS, **kwargs):
    """One Problem per gradient mode. Problem's jitted functions take the parameter space and
    the data as arguments, so problems of the same structure and shapes share compilations."""
    draws = jic.Halton(n_draws, seed=seed)
    return {g: jic.Problem(model, panel, draws=draws, gradient=g, **kwargs) for g in gradients}


def check_gradients(problems, theta, what, finite_differences=True, autodiff_scores=True,
                    rtol=1e-8, extra_atol=0.0, value_atol=0.0):
    """Analytic vs autodiff (and central differences) at ``theta``; returns what it computed.
    ``extra_atol`` and ``value_atol`` widen the tolerances of the gradients and of the values
    at ill-conditioned points."""
    an, ad = problems["analytic"], problems["autodiff"]
    value, grad = map(np.asarray, an.loglik_and_grad(theta))
    ad_value, ad_grad = map(np.asarray, ad.loglik_and_grad(theta))
    scores = np.asarray(an.scores(theta))
    # the floor of the tolerances comes from the autodiff scores when they are computed
    ad_scores = np.asarray(ad.scores(theta)) if autodiff_scores else scores
    names = an.space.names
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(scores)), what
    assert grad.shape == (an.space.size,) and scores.shape == (an.panel.n_individuals, grad.size)
    # the values: one LL, three code paths (a few ulp)
    assert value == pytest.approx(ad_value, rel=1e-13, abs=value_atol), what
    assert value == pytest.approx(float(an.loglik(theta)), rel=1e-13, abs=value_atol), what
    # analytic == autodiff, per element with the score floor (module docstring)
    tolerance = gradient_tolerance(ad_grad, ad_scores, rtol) + extra_atol
    bad = ~(np.abs(grad - ad_grad) <= tolerance)
    assert not bad.any(), (what, [names[p] for p in np.flatnonzero(bad)],
                           (grad - ad_grad)[bad], tolerance[bad])
    # per-individual scores: analytic == autodiff, and they sum to the gradient (the same
    # per-individual terms, summed: ~N eps)
    if autodiff_scores:
        score_tolerance = (rtol * (np.abs(ad_scores) + np.mean(np.abs(ad_scores), axis=0))
                           + extra_atol)
        bad = ~(np.abs(scores - ad_scores) <= score_tolerance)
        assert ad_scores.shape == scores.shape and not bad.any(), (
            what, "scores", np.argwhere(bad)[:5])
    np.testing.assert_allclose(scores.sum(axis=0), grad, rtol=0,
                               atol=1e-12 * np.abs(scores).sum(axis=0).max(), err_msg=what)
    out = dict(value=value, grad=grad, scores=scores, ad_grad=ad_grad, ad_scores=ad_scores)
    if finite_differences:
        fd_value, fd_grad = map(np.asarray, problems["finite-difference"].loglik_and_grad(theta))
        assert fd_value == pytest.approx(ad_value, rel=1e-13, abs=value_atol)
        bound = fd_bound(theta, ad_value, third_differences(an.loglik, theta))
        bad = ~(np.abs(fd_grad - grad) <= bound + tolerance)
        assert not bad.any(), (what, "finite differences", [names[p] for p in np.flatnonzero(bad)],
                               (fd_grad - grad)[bad], bound[bad])
        # the bound is tight enough to catch a wrong gradient: <= 1e-6 of the typical size
        # of a gradient element (a sum of N scores)
        assert bound.max() <= 1e-6 * np.abs(ad_scores).sum(axis=0).mean(), (what, bound.max())
        out["fd_grad"] = fd_grad
    return out


def check_second_order(problem, theta, what):
    """``problem.second_order(theta, "structured")`` (LL_i and g_i from the structured Hessian's
    pass, one program) against the separate calls: ``loglik``, ``loglik_and_grad``, ``scores``
    and ``hessian(theta, "structured")``. Each pair evaluates the same float64 terms in another
    program and order, so they agree to rounding: 1e-12 of the largest element (LL: relative;
    the gradient: of the largest ``sum_i |s_ip|``, the scale of its rounding where the scores
    cancel); a missing weight or a wrong individual's term is an O(1) error."""
    llf, grad, scores, hess = map(np.asarray, problem.second_order(theta, "structured"))
    assert llf == pytest.approx(float(problem.loglik(theta)), rel=1e-12, abs=0), what
    separate = np.asarray(problem.scores(theta))  # (N, P)
    assert scores.shape == separate.shape == (problem.panel.n_individuals, problem.space.size)
    np.testing.assert_allclose(scores, separate, rtol=0, atol=1e-12 * np.abs(separate).max(),
                               err_msg=f"{what}: scores")
    np.testing.assert_allclose(grad, np.asarray(problem.loglik_and_grad(theta)[1]), rtol=0,
                               atol=1e-12 * np.abs(separate).sum(axis=0).max(),
                               err_msg=f"{what}: gradient")
    separate = np.asarray(problem.hessian(theta, "structured"))  # (P, P)
    np.testing.assert_allclose(hess, separate, rtol=0, atol=1e-12 * np.abs(separate).max(),
                               err_msg=f"{what}: Hessian")


# --------------------------------------------------------------------------------------------
# Pullbacks against autodiff
# --------------------------------------------------------------------------------------------

@jax.jit
def pullbacks_against_autodiff(component, data, inputs, cotangent):
    """The component's ``vjp`` (hand-derived for a built-in), the default ``autodiff_vjp``
    (``jax.vjp`` of the whole forward function), and ``jax.vjp`` of the forward function at
    one draw (one column of the draws-last inputs, or one row of a structural model's draws)
    vmapped over the draws, a reference that cannot share a mistake in the draws axis; each as
    ``(output, d component, d inputs)``."""
    def run(vjp):
        out, pullback = vjp(component, data, inputs)
        return (out, *pullback(cotangent))

    structural = isinstance(component, jic.AbstractStructural)

    def by_draw(c, i):
        if structural:  # draws (R, D) -> LVs (L, R)
            return jax.vmap(lambda e: c.forward(data, e[None])[:, 0], out_axes=1)(i)
        # inputs (L, R) -> output (..., R): one draw at a time
        return jax.vmap(lambda l_r: c.forward(data, l_r[:, None])[..., 0], in_axes=1,
                        out_axes=-1)(i)
    reference = lambda c, d, i: jax.vjp(by_draw, c, i)
    return (run(lambda c, d, i: c.vjp(d, i)), run(jic.autodiff_vjp), run(reference))


def check_pullbacks(component, data, inputs, cotangent, what, rtol_reference=1e-9,
                    rtol_default=1e-12):
    """The component's pullback against both references (see
    :func:`pullbacks_against_autodiff`): outputs to 1e-12 relative, cotangents to ``rtol`` of
    each leaf's largest element."""
    ours, default, reference = pullbacks_against_autodiff(
        component, *jax.tree.map(jnp.asarray, (data, inputs, cotangent)))
    for name, other, rtol in (("default autodiff_vjp", default, rtol_default),
                              ("one-draw jax.vjp", reference, rtol_reference)):
        np.testing.assert_allclose(ours[0], other[0], rtol=1e-12, atol=0,
                                   err_msg=f"{what}: output vs {name}")
        # every element of every parameter array, labelled or not: d forward / d array
        assert_trees_close(ours[1], other[1], rtol, what=f"{what} params vs {name}")
        assert_trees_close(ours[2], other[2], rtol, what=f"{what} d inputs vs {name}")
    return ours


# --------------------------------------------------------------------------------------------
# A user-written block
# --------------------------------------------------------------------------------------------

# A small model (one latent variable, three continuous indicators, a binary probit; 13
# parameters) for tests that need a model structure of their own: a smaller model compiles
# faster.
def mini_model(free_scale=()):
    return jic.ICLV(jic.Structural({"a": ["z1"]}, free_scale=free_scale),
                    jic.NormalIndicators({"a": ["y1", "y2", "y3"]}),
                    jic.BinaryProbit(attributes=["x1"], latent=["a"]))


MINI_TRUTH = {"a.gamma.z1": 0.5, "y1.zeta.a": 0.8, "y2.zeta.a": 0.6, "y3.zeta.a": 0.7,
              "y1.alpha": 0.3, "y2.log_sigma": -0.2, "asc": 0.2, "beta.x1": -0.7, "theta.a": 0.5}


class SharedScaleNormal(jic.AbstractMeasurement):
    """A user-written block with only a forward function: normal indicators of one latent
    variable with one standard deviation shared by all of them (a scalar parameter, not one
    row per indicator). Its pullback is the default ``jax.vjp``; it declares one term per
    indicator, each holding the shared ``log_sigma``."""

    alpha: jax.Array
    zeta: jax.Array
    log_sigma: jax.Array
    indicators: tuple[str, ...] = eqx.field(static=True)
    latent: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, lv, items):
        self.indicators, self.latent = tuple(items), (lv,)
        self.alpha = jnp.zeros(len(items))
        self.zeta = jnp.ones((len(items), 1))
        self.log_sigma = jnp.zeros(())

    def forward(self, data, lv):
        values, _ = data
        z = ((values - self.alpha)[:, None] - self.zeta @ lv) * jnp.exp(-self.log_sigma)  # (K, R)
        return jnp.sum(-0.5 * z * z - self.log_sigma - 0.5 * math.log(2 * math.pi), axis=0)

    def sample(self, rng, lv, covariates):
        mean = np.asarray(self.alpha) + lv @ np.asarray(self.zeta).T
        return mean + np.exp(float(self.log_sigma)) * rng.standard_normal(mean.shape)

    def labels(self):
        items, lv = self.indicators, self.latent[0]
        return eqx.tree_at(lambda b: (b.alpha, b.zeta, b.log_sigma), self, (
            np.array([f"{i}.alpha" for i in items], dtype=object),
            np.array([[f"{i}.zeta.{lv}"] for i in items], dtype=object),
            np.array("shared.log_sigma", dtype=object)))

    def parameter_terms(self):
        lv = self.latent[0]
        return [(f"{i}.alpha", f"{i}.zeta.{lv}", "shared.log_sigma") for i in self.indicators]
