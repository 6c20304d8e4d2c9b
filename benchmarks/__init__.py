"""Benchmarks of jaxiclv: ``python -m benchmarks [--quick] [--out DIR] [--sizes ...] [--repeat N]``.

Measures, on whatever device JAX sees, the log-likelihood, three gradients (analytic, autodiff,
central finite differences), four Hessians (``Problem.hessian``: structured, jacfwd of the
analytic gradient, and forward and central differences of the analytic gradient, batched), the
analytic gradient and the structured Hessian with every component's pullback by ``jax.vjp``
(``pullbacks="autodiff"``, ``*-pullbacks-autodiff``) against the hand-derived ones, the
reference system's method replayed (a Python loop of per-individual gradients; a Python loop
of ``P + 1`` such gradients for the Hessian), and the whole wait of ``estimate`` (three studies,
Newton and L-BFGS, cold and warm, with and without the compilation cache) and of
``python -m jaxiclv``. Every gradient and Hessian is
compared with a float64 reference. Sizes: the reference example (328 individuals x 100 Halton
draws, 219 parameters), a continuous-indicator variant of it and a nonlinear-utility variant
(a user-written utility with ``beta_time exp(lambda LV)``), scaling in individuals and in
draws, float32 against float64. Writes ``results.json``, ``results.md`` and, if matplotlib is
importable, PNG plots.

This package module stays free of JAX: the suite process only plans, starts one
``python -m benchmarks.single`` process per case, and reports.
"""

METHOD_NAMES = ("loglik", "grad-analytic", "grad-pullbacks-autodiff", "grad-autodiff", "grad-fd",
                "replay-grad", "replay-hessian", "hessian-structured",
                "hessian-structured-pullbacks-autodiff", "hessian-fd-forward",
                "hessian-fd-central", "hessian-jacfwd")
"""Every measured method, in the order they run within a case (roughly increasing memory)."""

REFERENCE_OF = {"loglik": "loglik", "grad-analytic": "grad-analytic",
                "grad-pullbacks-autodiff": "grad-analytic",
                "grad-autodiff": "grad-analytic", "grad-fd": "grad-analytic",
                "replay-grad": "grad-analytic", "replay-hessian": "hessian-jacfwd",
                "hessian-structured": "hessian-jacfwd",
                "hessian-structured-pullbacks-autodiff": "hessian-jacfwd",
                "hessian-fd-forward": "hessian-jacfwd",
                "hessian-fd-central": "hessian-jacfwd", "hessian-jacfwd": "hessian-jacfwd"}
"""The float64 result (same model and size) each method is compared with: the analytic
gradient for gradients, the ``jacfwd`` Hessian for Hessians. At float64 those two are their own
reference (error 0); ``grad-autodiff`` and ``replay-grad`` are independent checks of the
analytic gradient, and the float32 results are compared with the float64 ones."""
