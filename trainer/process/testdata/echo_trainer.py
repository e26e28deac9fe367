"""A trainer whose fit returns the parameters it received: measures the bridge alone."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
import shoal_trainer  # noqa: E402


class Echo:
    def __init__(self, dim):
        self.dim = dim

    def get_parameters(self):
        return {"w": np.zeros(self.dim, np.float32)}

    def fit(self, parameters, task):
        return parameters, 1, 0.0

    def evaluate(self, parameters, task):
        return 0.0, 1.0, 1


sys.exit(shoal_trainer.serve(Echo(int(os.environ.get("SHOAL_ECHO_DIM", "8")))))
