#!/usr/bin/env python3
"""A scikit-learn logistic regression on the breast-cancer data of four "hospitals", federated by
Shoal under threshold homomorphic encryption.

    shoal simulate --clients 4 --fraction 1 --secure-sum he --he-committee 4 --he-threshold 3 \
        --trainer '/usr/bin/python3 examples/sklearn-tabular/trainer.py --hospitals 4'

The data is scikit-learn's bundled Wisconsin diagnostic breast-cancer set (569 tumours × 30
features; load_breast_cancer). A fixed stratified 20 % is the test set (the central evaluation,
client −1). The other 455 rows are dealt to --hospitals hospitals; virtual client k of the
simulation is hospital k, which trains on its own rows only and standardises them with its own
statistics (nothing about a hospital's data leaves it but the encrypted update). The model is
SGDClassifier(loss="log_loss") warm-started from the global coef_ and intercept_ every round.
"""

import argparse
import os
import sys
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import shoal_trainer  # noqa: E402

SPLIT_SEED = 0  # the test set and the hospitals are fixed, whatever the run's --seed


def standardise(x, ref):
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1)


class Hospitals:
    def __init__(self, hospitals):
        x, y = load_breast_cancer(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                            random_state=SPLIT_SEED)
        order = np.random.default_rng(SPLIT_SEED).permutation(len(y_train))
        self.hospitals = [(standardise(x_train[rows], x_train[rows]), y_train[rows])
                          for rows in np.array_split(order, hospitals)]
        # The evaluator's test set is standardised with its own statistics, as Shoal's CSV loader
        # does for a server's evaluation file: no hospital's statistics are shared.
        self.test = standardise(x_test, x_test), y_test
        self.features = x.shape[1]

    def get_parameters(self):
        return {"coef": np.zeros((1, self.features), np.float32), "intercept": np.zeros(1, np.float32)}

    def fit(self, parameters, task):
        if not 0 <= task.client < len(self.hospitals):
            raise ValueError("client %d is not a hospital (0..%d): run with --clients %d"
                             % (task.client, len(self.hospitals) - 1, len(self.hospitals)))
        x, y = self.hospitals[task.client]
        # Per-example SGD (scikit-learn's SGDClassifier has no minibatches: --batch-size is unused).
        model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=task.lr,
                              alpha=task.weight_decay, max_iter=task.epochs, tol=None,
                              random_state=task.seed % (1 << 32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter = E epochs, on purpose
            model.fit(x, y, coef_init=parameters["coef"].astype(np.float64),
                      intercept_init=parameters["intercept"].astype(np.float64))
        loss = log_loss(model, x, y)
        return {"coef": model.coef_, "intercept": model.intercept_}, len(y), loss

    def evaluate(self, parameters, task):
        x, y = self.test
        model = SGDClassifier(loss="log_loss")
        model.classes_ = np.array([0, 1])
        model.coef_ = parameters["coef"].astype(np.float64)
        model.intercept_ = parameters["intercept"].astype(np.float64)
        return log_loss(model, x, y), float((model.predict(x) == y).mean()), len(y)


def log_loss(model, x, y):
    z = model.decision_function(x)
    return float(np.mean(np.logaddexp(0, -z * (2 * y - 1))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hospitals", type=int, default=4, help="number of hospitals, 3 to 5 (default 4)")
    ap.add_argument("--write-csv", metavar="PATH",
                    help="write the whole data set as CSV (label column 'target') for shoal's --data and exit")
    args = ap.parse_args()
    if args.write_csv:
        x, y = load_breast_cancer(return_X_y=True)
        np.savetxt(args.write_csv, np.column_stack([x, y]), delimiter=",", fmt="%.10g", comments="",
                   header=",".join(["f%d" % i for i in range(x.shape[1])] + ["target"]))
        return
    if not 3 <= args.hospitals <= 5:
        ap.error("--hospitals must be 3, 4 or 5")
    sys.exit(shoal_trainer.serve(Hospitals(args.hospitals), name="sklearn-breast-cancer"))


if __name__ == "__main__":
    main()
