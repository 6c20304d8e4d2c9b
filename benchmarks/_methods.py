"""The measured methods.

Each method, given a :class:`~benchmarks._cases.Case`, returns a :class:`Method`: a zero-argument function to
time, whether its first call compiles, and how to read its result (the value compared with the
float64 reference, and extra numbers such as a Hessian's asymmetry).

``grad-pullbacks-autodiff`` and ``hessian-structured-pullbacks-autodiff`` are the analytic
gradient and the structured Hessian with ``Problem(..., pullbacks="autodiff")``: every
component's pullback by ``jax.vjp`` instead of the hand-derived kernels.
``hessian-<method>`` is ``Problem.hessian`` with that method: ``"structured"`` (per-draw
scores and compressed directions), ``"jacfwd"`` (forward-over-reverse), ``"fd-forward"``
(``P + 1`` analytic gradients, the perturbed ones batched with ``jax.lax.map``) and
``"fd-central"`` (``2P``), timed raw and then symmetrised. ``replay-grad`` and ``replay-hessian`` re-implement
the reference system's method: a Python loop over individuals, one jitted per-individual
gradient call each, summed; and a Python loop of ``P + 1`` such gradients for a
forward-difference Hessian.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxiclv as jic

from ._cases import Case

REPLAY_EXTRAPOLATE_ABOVE_S = 1.0  # a replayed gradient slower than this: extrapolate the Hessian
REPLAY_SAMPLE_CALLS = 3


@dataclasses.dataclass
class Method:
    fn: Callable[[], object]
    compiles: bool = True
    value: Callable[[object], object] = lambda out: out  # what accuracy is measured on
    extras: Callable[[object], dict] = lambda out: {}
    scale: float = 1.0  # measured times x scale = reported times (extrapolation)
    note: str = ""


def fd_steps(theta):
    """``h_p = sqrt(eps) max(|theta_p|, 1)``, rounded so that ``theta_p + h_p`` is exact (the
    steps of ``Problem.hessian(..., "fd-forward")``)."""
    step = jnp.sqrt(jnp.finfo(theta.dtype).eps) * jnp.maximum(jnp.abs(theta), 1.0)
    return (theta + step) - theta


def symmetrise(raw) -> tuple[np.ndarray, float]:
    """``(H + H') / 2`` and the asymmetry ``max |H - H'| / max |H|`` of the raw Hessian, in its
    own dtype. (``jic.symmetrize`` also rejects an exact Hessian that is asymmetric beyond
    rounding; here the asymmetry is measured, not judged.)"""
    raw = np.asarray(raw)
    return 0.5 * (raw + raw.T), float(np.max(np.abs(raw - raw.T)) / np.max(np.abs(raw)))


SYMMETRISED = dict(value=lambda out: symmetrise(out)[0],
                   extras=lambda out: {"asymmetry_rel": symmetrise(out)[1]})


class Replay:
    """The reference system's gradient: one jitted per-individual gradient, called from Python
    for every individual, summed (on the device, asynchronously: a lower bound on its time)."""

    def __init__(self, problem: jic.Problem):
        space = problem.space
        self.grad_i = jax.jit(jax.grad(
            lambda t, x, eta: jic.individual_loglik(space.unflatten(t), x, eta)))
        host = jax.tree.map(np.asarray, (problem.data, problem.draws))
        n = problem.draws.shape[0]
        self.individuals = jax.device_put([jax.tree.map(lambda a: a[i], host) for i in range(n)])

    def gradient(self, theta):
        total = jnp.zeros_like(theta)
        for x, eta in self.individuals:
            total = total + self.grad_i(theta, x, eta)
        return total

    def hessian_rows(self, theta, calls: int):
        """The first ``calls`` of the ``P + 1`` replayed gradients of the forward-difference
        Hessian: ``g(theta)`` then ``g(theta + h_p e_p)``; the difference rows so far."""
        step = fd_steps(theta)
        g0 = self.gradient(theta)
        return jnp.stack([(self.gradient(theta.at[p].add(step[p])) - g0) / step[p]
                          for p in range(calls - 1)])


def _gradient(kind: str, pullbacks: str = "hand-derived"):
    def build(case: Case) -> Method:
        problem, theta = case.problem(kind, pullbacks), case.theta
        return Method(lambda: problem.loglik_and_grad(theta), value=lambda out: out[1])
    return build


def _loglik(case: Case) -> Method:
    problem, theta = case.problem(), case.theta
    return Method(lambda: problem.loglik(theta))


def _hessian(method: str, pullbacks: str = "hand-derived"):
    def build(case: Case) -> Method:
        problem, theta = case.problem(pullbacks=pullbacks), case.theta
        return Method(lambda: problem.hessian(theta, method), **SYMMETRISED)
    return build


def _replay_grad(case: Case) -> Method:
    replay, theta = Replay(case.problem()), case.theta
    return Method(lambda: replay.gradient(theta))


def _replay_hessian(case: Case) -> Method:
    replay, theta = Replay(case.problem()), case.theta
    jax.block_until_ready(replay.gradient(theta))  # compile the per-individual gradient
    start = time.perf_counter()
    jax.block_until_ready(replay.gradient(theta))
    one = time.perf_counter() - start
    total = case.n_params + 1
    if one <= REPLAY_EXTRAPOLATE_ABOVE_S:
        return Method(lambda: replay.hessian_rows(theta, total), compiles=False,
                      note=f"{total} replayed gradients", **SYMMETRISED)
    calls = REPLAY_SAMPLE_CALLS
    return Method(lambda: replay.hessian_rows(theta, calls), compiles=False, value=lambda out: None,
                  scale=total / calls,
                  note=f"extrapolated from {calls} of P+1 = {total} calls "
                       f"(one replayed gradient took {one:.2f} s)")


METHODS = {
    "loglik": _loglik,
    "grad-analytic": _gradient("analytic"),
    "grad-pullbacks-autodiff": _gradient("analytic", "autodiff"),
    "grad-autodiff": _gradient("autodiff"),
    "grad-fd": _gradient("finite-difference"),
    "replay-grad": _replay_grad,
    "replay-hessian": _replay_hessian,
    "hessian-structured": _hessian("structured"),
    "hessian-structured-pullbacks-autodiff": _hessian("structured", "autodiff"),
    "hessian-fd-forward": _hessian("fd-forward"),
    "hessian-fd-central": _hessian("fd-central"),
    "hessian-jacfwd": _hessian("jacfwd"),
}
