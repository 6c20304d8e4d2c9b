"""jaxiclv: Integrated Choice and Latent Variable models by simulated maximum likelihood in JAX.

Importing jaxiclv switches JAX to float64 (``jax_enable_x64``); float32 is an explicit option
(``estimate(..., dtype=jnp.float32)``). It also turns on JAX's persistent compilation cache
(:mod:`jaxiclv._cache`: ``JAXICLV_COMPILATION_CACHE=off`` before the import, or
``compilation_cache(None)``, turns it off).
"""

import jax

jax.config.update("jax_enable_x64", True)

from ._cache import compilation_cache, default_cache_dir  # noqa: E402
from ._cache import _configure_on_import  # noqa: E402

_configure_on_import()

from ._choice import AbstractChoice, BinaryProbit, MultinomialLogit, NestedLogit  # noqa: E402
from ._component import AbstractComponent, AbstractEquation, autodiff_vjp  # noqa: E402
from ._data import DataError, Panel, PanelArrays  # noqa: E402
from ._draws import MLHS, Halton, PseudoRandom, Sobol, make_draws  # noqa: E402
from ._estimate import EstimationError, estimate  # noqa: E402
from ._gradients import (loglik_and_grad, loglik_and_grad_per_individual,  # noqa: E402
                         simulated_loglik_analytic)
from ._problem import GRADIENTS, Problem, check_gradient  # noqa: E402
from ._hessian import HESSIANS, HessianAsymmetryError, hessian, symmetrize  # noqa: E402
from ._inference import COVARIANCES, covariance  # noqa: E402
from ._latent import AbstractStructural, LatentEquations, Structural  # noqa: E402
from ._likelihood import individual_loglik, loglik_per_individual, simulated_loglik  # noqa: E402
from ._measurement import (AbstractIndex, AbstractMeasurement, IndexEquation,  # noqa: E402
                           LinearIndex, NormalIndicators, OrderedLogit, OrderedMeasurement,
                           OrderedProbit)
from ._model import ICLV, PULLBACKS, share  # noqa: E402
from ._parameters import ParameterSpace, set_values  # noqa: E402
from ._postestimation import (TestResult, delta_method, elasticities, lr_test,  # noqa: E402
                              posterior, predict, shares, wtp)
from ._results import Results, Status  # noqa: E402
from ._simulate import Simulated, simulate  # noqa: E402
from ._utility import AbstractUtility, LinearUtility, Utility  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AbstractChoice", "AbstractComponent", "AbstractEquation", "AbstractIndex",
    "AbstractMeasurement", "AbstractStructural", "AbstractUtility", "BinaryProbit",
    "COVARIANCES", "DataError", "EstimationError", "GRADIENTS", "HESSIANS", "Halton",
    "HessianAsymmetryError",
    "ICLV", "IndexEquation", "LatentEquations", "LinearIndex", "LinearUtility", "MLHS",
    "MultinomialLogit", "NestedLogit", "NormalIndicators", "OrderedLogit", "OrderedMeasurement",
    "OrderedProbit", "PULLBACKS", "Panel", "PanelArrays", "ParameterSpace", "Problem",
    "PseudoRandom", "Results", "Simulated", "Sobol", "Status", "Structural", "TestResult",
    "Utility", "autodiff_vjp", "check_gradient", "compilation_cache", "covariance", "default_cache_dir", "delta_method", "elasticities",
    "estimate", "hessian", "individual_loglik", "loglik_and_grad",
    "loglik_and_grad_per_individual", "loglik_per_individual", "lr_test", "make_draws",
    "posterior", "predict", "set_values", "share", "shares", "simulate", "simulated_loglik",
    "simulated_loglik_analytic", "symmetrize", "wtp",
]
