"""MNIST's IDX files, read the way Shoal reads them (docs/data.md), for trainers.

Shoal's --dataset mnist partitions the training set in file order and sends each virtual client
its example indices; a trainer must load the same files in the same order, which these functions
do. Images stay uint8 (scale them per batch: 47 MB instead of 188 MB per trainer process).
"""

import gzip
import os

import numpy as np

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(directory, base):
    """The IDX file base (base.gz, base, or base with '.idx') in directory as a uint8 array of its
    shape. Raises FileNotFoundError if none exists and ValueError if it is not an unsigned-byte IDX
    file or is shorter than its header says."""
    for name in (base + ".gz", base, base.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
            raise ValueError("%s: not an unsigned-byte IDX file" % path)
        ndim = raw[3]
        if ndim < 1 or len(raw) < 4 + 4 * ndim:
            raise ValueError("%s: truncated IDX header" % path)
        shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        need = int(np.prod(shape, dtype=np.int64))
        if len(raw) - 4 - 4 * ndim != need:
            raise ValueError("%s: %d data bytes, the header announces %s = %d"
                             % (path, len(raw) - 4 - 4 * ndim, shape, need))
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    raise FileNotFoundError("%s(.gz) not found in %s" % (base, directory))


def load(directory, split):
    """(images uint8 [n, rows, cols], labels int64 [n]) of split "train" or "test"."""
    if split not in FILES:
        raise ValueError("split must be train or test, not %r" % split)
    images, labels = (read_idx(directory, f) for f in FILES[split])
    if len(images) != len(labels):
        raise ValueError("%s: %d images but %d labels" % (split, len(images), len(labels)))
    return images, labels.astype(np.int64)
