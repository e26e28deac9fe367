#!/usr/bin/env python3
"""Multinomial logistic regression on MNIST in plain NumPy, federated by Shoal.

    shoal simulate --trainer '/usr/bin/python3 examples/numpy-logreg/trainer.py --data-dir DIR'

The model is the one Shoal's built-in --model logreg trains (784×10 weights, LeCun-normal, zero
bias; minibatch SGD on the mean softmax cross-entropy), so the two runs can be compared. Shoal
sends each virtual client's example indices into the training set; the images are read from the
same IDX files Shoal partitions (GoMNIST's, in file order), kept as bytes and scaled per batch.
"""

import argparse
import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import shoal_trainer  # noqa: E402

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(directory, base):
    """An IDX file (gzipped or not) as a uint8 array of its shape."""
    for name in (base + ".gz", base, base.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                raw = f.read()
            if raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
                raise ValueError("%s: not an unsigned-byte IDX file" % path)
            ndim = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    raise FileNotFoundError("%s(.gz) not found in %s" % (base, directory))


class LogReg:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.sets = {}
        self.classes = 10
        self.dim = 28 * 28

    def data(self, split):
        if split not in self.sets:  # the central evaluator never loads the training set
            images, labels = (read_idx(self.data_dir, f) for f in FILES[split])
            self.sets[split] = (images.reshape(len(images), -1), labels.astype(np.int64))
        return self.sets[split]

    def get_parameters(self):
        return {"w": np.zeros((self.dim, self.classes), np.float32), "b": np.zeros(self.classes, np.float32)}

    def initial_parameters(self, seed):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((self.dim, self.classes)) * np.sqrt(1.0 / self.dim)
        return {"w": w.astype(np.float32), "b": np.zeros(self.classes, np.float32)}

    @staticmethod
    def scores(w, b, xb):
        logits = xb @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def fit(self, parameters, task):
        images, labels = self.data("train")
        idx = np.arange(len(labels)) if task.indices is None else task.indices.astype(np.int64)
        if len(idx) == 0:
            raise ValueError("no training examples")
        w = parameters["w"].astype(np.float32, copy=True)
        b = parameters["b"].astype(np.float32, copy=True)
        w0, b0 = w.copy(), b.copy()
        vw, vb = np.zeros_like(w), np.zeros_like(b)
        rng = np.random.default_rng(task.seed)
        bs = min(task.batch_size, len(idx))
        for _ in range(task.epochs):
            total = 0.0
            order = idx[rng.permutation(len(idx))]
            for start in range(0, len(order), bs):
                rows = order[start:start + bs]
                xb = images[rows].astype(np.float32) / 255.0
                yb = labels[rows]
                p = self.scores(w, b, xb)
                total += -np.log(np.maximum(p[np.arange(len(rows)), yb], 1e-30)).sum()
                p[np.arange(len(rows)), yb] -= 1
                p /= len(rows)
                gw, gb = xb.T @ p, p.sum(axis=0)
                if task.weight_decay:
                    gw += task.weight_decay * w
                    gb += task.weight_decay * b
                if task.prox_mu:
                    gw += task.prox_mu * (w - w0)
                    gb += task.prox_mu * (b - b0)
                if task.momentum:
                    vw = task.momentum * vw + gw
                    vb = task.momentum * vb + gb
                    gw, gb = vw, vb
                w -= np.float32(task.lr) * gw.astype(np.float32)
                b -= np.float32(task.lr) * gb.astype(np.float32)
            loss = total / len(idx)
        return shoal_trainer.FitResult({"w": w, "b": b}, len(idx), loss)

    def evaluate(self, parameters, task):
        images, labels = self.data("test")
        idx = np.arange(len(labels)) if task.indices is None else task.indices.astype(np.int64)
        if len(idx) == 0:
            return 0.0, 0.0, 0
        loss = correct = 0.0
        for start in range(0, len(idx), 2000):
            rows = idx[start:start + 2000]
            p = self.scores(parameters["w"], parameters["b"], images[rows].astype(np.float32) / 255.0)
            loss += -np.log(np.maximum(p[np.arange(len(rows)), labels[rows]], 1e-30)).sum()
            correct += (p.argmax(axis=1) == labels[rows]).sum()
        return loss / len(idx), correct / len(idx), len(idx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SHOAL_MNIST_DIR", ""),
                    help="directory of the four MNIST IDX files (default $SHOAL_MNIST_DIR)")
    args = ap.parse_args()
    if not args.data_dir:
        ap.error("--data-dir (or $SHOAL_MNIST_DIR) is required")
    sys.exit(shoal_trainer.serve(LogReg(args.data_dir), name="numpy-logreg"))


if __name__ == "__main__":
    main()
