"""Unit tests of shoal_trainer.mnist: IDX files read as Shoal reads them, bad files refused."""

import gzip
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from shoal_trainer import mnist  # noqa: E402


def idx_bytes(array):
    """array (uint8) as an IDX file: magic 0 0 8 ndim, big-endian dimensions, the bytes."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


class MnistTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        rng = np.random.default_rng(3)
        self.images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
        self.labels = np.array([3, 1, 4, 1, 5], np.uint8)

    def write(self, name, data, gz=False):
        opener = gzip.open if gz else open
        with opener(os.path.join(self.dir, name + (".gz" if gz else "")), "wb") as f:
            f.write(data)

    def test_load_in_file_order_gzipped_or_not(self):
        self.write("train-images-idx3-ubyte", idx_bytes(self.images), gz=True)
        self.write("train-labels-idx1-ubyte", idx_bytes(self.labels))
        images, labels = mnist.load(self.dir, "train")
        np.testing.assert_array_equal(images, self.images)
        np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])
        self.assertEqual(labels.dtype, np.int64)

    def test_bad_files(self):
        with self.assertRaises(FileNotFoundError):
            mnist.load(self.dir, "test")
        with self.assertRaises(ValueError):
            mnist.load(self.dir, "validation")
        self.write("t10k-images-idx3-ubyte", idx_bytes(self.images)[:-1])  # one byte short
        with self.assertRaisesRegex(ValueError, "data bytes"):
            mnist.read_idx(self.dir, "t10k-images-idx3-ubyte")
        self.write("t10k-labels-idx1-ubyte", b"\x00\x00\x0d\x01" + idx_bytes(self.labels)[4:])  # float IDX
        with self.assertRaisesRegex(ValueError, "unsigned-byte"):
            mnist.read_idx(self.dir, "t10k-labels-idx1-ubyte")

    def test_image_and_label_counts_must_agree(self):
        self.write("train-images-idx3-ubyte", idx_bytes(self.images))
        self.write("train-labels-idx1-ubyte", idx_bytes(self.labels[:4]))
        with self.assertRaisesRegex(ValueError, "5 images but 4 labels"):
            mnist.load(self.dir, "train")


if __name__ == "__main__":
    unittest.main()
