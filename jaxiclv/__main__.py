"""``python -m jaxiclv``: estimate the bundled reference example and print the results."""

import sys

import pandas as pd

from . import Halton, estimate
from ._example import reference_model, reference_panel, reference_truth
from ._parameters import ParameterSpace


def main() -> None:
    panel = reference_panel()
    model = reference_model()
    sys.stderr.write(f"Estimating the bundled reference ICLV model: {panel.n_individuals} "
                     f"individuals, {panel.n_observations} choice tasks, 100 Halton draws\n")
    result = estimate(model, panel, Halton(100, seed=0), progress=True)
    truth = reference_truth()
    true_values = pd.Series(ParameterSpace.from_model(truth).values(truth), name="true")
    print(result.summary(extra=true_values.to_frame()))


if __name__ == "__main__":
    main()
