"""Unit tests of the shoal_trainer package: frames, layout, and serve() against scripted requests."""

import io
import os
import sys
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import shoal_trainer  # noqa: E402
from shoal_trainer import protocol  # noqa: E402


class Toy:
    """w (2×3) and b (3): fit adds lr to every parameter; evaluate reports the parameter sum."""

    def __init__(self):
        self.w = np.zeros((2, 3), np.float32)
        self.b = np.zeros(3, np.float32)
        self.tasks = []

    def get_parameters(self):
        return {"w": self.w, "b": self.b}

    def initial_parameters(self, seed):
        return {"w": np.full((2, 3), seed, np.float32), "b": np.ones(3, np.float32)}

    def fit(self, parameters, task):
        self.tasks.append(task)
        if task.lr < 0:
            raise RuntimeError("negative learning rate")
        new = {k: v + task.lr for k, v in parameters.items()}
        n = 100 if task.indices is None else len(task.indices)
        return new, n, 0.5, {"acc": 0.9}

    def evaluate(self, parameters, task):
        total = sum(float(v.sum()) for v in parameters.values())
        return total, 0.25, 10 if task.indices is None else len(task.indices)


def run(trainer, frames):
    """Feed frames to serve() and return its exit code and reply frames."""
    inp = io.BytesIO()
    for f in frames:
        protocol.write_frame(inp, *f)
    inp.seek(0)
    out = io.BytesIO()
    code = shoal_trainer.serve(trainer, name="toy", stdin=inp, stdout=out)
    out.seek(0)
    replies = []
    while True:
        f = protocol.read_frame(out)
        if f is None:
            return code, replies
        replies.append(f)


HELLO = ({"type": "hello", "protocol": 1},)


class FrameTest(unittest.TestCase):
    def test_roundtrip_with_payload(self):
        buf = io.BytesIO()
        params = np.arange(5, dtype=np.float32) / 3
        protocol.write_frame(buf, {"type": "fit", "x": "y"}, params, np.array([7, -1], np.int32))
        raw = buf.getvalue()
        self.assertEqual(raw[:4], b"SHTR")
        buf.seek(0)
        f = protocol.read_frame(buf)
        self.assertEqual(f.header, {"type": "fit", "x": "y", "params": 5, "indices": 2})
        np.testing.assert_array_equal(f.params, params)
        np.testing.assert_array_equal(f.indices, [7, -1])
        self.assertIsNone(protocol.read_frame(buf))

    def test_little_endian_bytes(self):
        buf = io.BytesIO()
        protocol.write_frame(buf, {"type": "params"}, np.array([1.0], np.float32))
        self.assertTrue(buf.getvalue().endswith(b"\x00\x00\x80\x3f"))

    def test_large_payload_is_chunked(self):
        old = protocol.CHUNK
        protocol.CHUNK = 1000
        try:
            buf = io.BytesIO()
            params = np.random.default_rng(1).standard_normal(12345).astype(np.float32)
            protocol.write_frame(buf, {"type": "params"}, params)
            buf.seek(0)
            np.testing.assert_array_equal(protocol.read_frame(buf).params, params)
        finally:
            protocol.CHUNK = old

    def test_read_into_reused_buffer(self):
        buf = io.BytesIO()
        protocol.write_frame(buf, {"type": "params"}, np.arange(3, dtype=np.float32))
        protocol.write_frame(buf, {"type": "params"}, np.arange(5, dtype=np.float32))
        buf.seek(0)
        recv = np.full(4, -1, dtype="<f4")
        small = protocol.read_frame(buf, recv)
        np.testing.assert_array_equal(small.params, [0, 1, 2])
        self.assertTrue(np.shares_memory(small.params, recv))  # read straight into the buffer
        big = protocol.read_frame(buf, recv)  # does not fit: a fresh array, the buffer untouched
        np.testing.assert_array_equal(big.params, [0, 1, 2, 3, 4])
        self.assertFalse(np.shares_memory(big.params, recv))
        np.testing.assert_array_equal(recv, [0, 1, 2, -1])

    def test_write_tensor_list_and_partial_writes(self):
        class Trickle(io.RawIOBase):  # a raw stream that accepts at most 7 bytes per write
            def __init__(self):
                self.data = bytearray()

            def writable(self):
                return True

            def write(self, b):
                b = bytes(memoryview(b)[:7])
                self.data += b
                return len(b)

        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        b = np.arange(10, dtype=np.float64)[::3]  # not float32, not contiguous: converted
        out = Trickle()
        protocol.write_frame(out, {"type": "params"}, [a, b])
        f = protocol.read_frame(io.BytesIO(bytes(out.data)))
        np.testing.assert_array_equal(f.params, [0, 1, 2, 3, 4, 5, 0, 3, 6, 9])
        self.assertEqual(f.header["params"], 10)

    def test_bad_frames(self):
        with self.assertRaises(protocol.ProtocolError):
            protocol.read_frame(io.BytesIO(b"hello world, I am a print() gone astray"))
        buf = io.BytesIO()
        protocol.write_frame(buf, {"type": "fit", "params": 3})  # announces a payload it lacks
        buf.seek(0)
        with self.assertRaises(protocol.ProtocolError):
            protocol.read_frame(buf)
        buf = io.BytesIO()
        protocol.write_frame(buf, {"type": "params"}, np.zeros(4, np.float32))
        with self.assertRaises(EOFError):
            protocol.read_frame(io.BytesIO(buf.getvalue()[:-3]))


class ServeTest(unittest.TestCase):
    def test_session(self):
        toy = Toy()
        params = np.arange(9, dtype=np.float32)
        code, replies = run(toy, [
            HELLO,
            ({"type": "init", "seed": 4},),
            ({"type": "fit", "client": 3, "round": 2, "data": "indices",
              "config": {"epochs": 1, "batch_size": 5, "lr": 0.5, "seed": 99}}, params, np.array([1, 2, 3], np.int32)),
            ({"type": "fit", "client": 0, "round": 2, "data": "all", "config": {"lr": 1}}, params),
            ({"type": "evaluate", "client": -1, "data": "all"}, params),
            ({"type": "shutdown"},),
        ])
        self.assertEqual(code, 0)
        hello, init, fit, fit_all, ev = replies
        self.assertEqual(hello.header["layout"], [{"name": "w", "shape": [2, 3], "dtype": "float32"},
                                                  {"name": "b", "shape": [3], "dtype": "float32"}])
        self.assertEqual(hello.header["protocol"], 1)
        np.testing.assert_array_equal(init.params, [4] * 6 + [1] * 3)
        self.assertEqual(fit.header["kind"], "params")
        self.assertEqual(fit.header["examples"], 3)
        fit_seconds = fit.header["metrics"].pop(shoal_trainer.FIT_SECONDS)
        self.assertEqual(fit.header["metrics"], {"acc": 0.9})
        self.assertTrue(0 <= fit_seconds < 5, fit_seconds)
        np.testing.assert_allclose(fit.params, params + 0.5)
        self.assertEqual(toy.tasks[0].seed, 99)
        self.assertEqual(toy.tasks[0].client, 3)
        np.testing.assert_array_equal(toy.tasks[0].indices, [1, 2, 3])
        self.assertIsNone(toy.tasks[1].indices)
        self.assertEqual(fit_all.header["examples"], 100)
        self.assertEqual(ev.header, {"type": "evaluate_result", "loss": 36.0, "accuracy": 0.25, "examples": 10})

    def test_fits_in_a_row_reuse_the_receive_buffer(self):
        class Echo(Toy):
            def fit(self, parameters, task):
                self.tasks.append({k: v for k, v in parameters.items()})  # keeps views, not copies
                return parameters, 1

        echo = Echo()
        p1, p2 = np.arange(9, dtype=np.float32), -np.arange(9, dtype=np.float32)
        code, replies = run(echo, [HELLO, ({"type": "fit", "data": "all"}, p1), ({"type": "fit", "data": "all"}, p2)])
        self.assertEqual(code, 0)
        np.testing.assert_array_equal(replies[1].params, p1)  # each reply was sent before the next read
        np.testing.assert_array_equal(replies[2].params, p2)
        first, second = echo.tasks
        self.assertTrue(np.shares_memory(first["w"], second["w"]))  # one buffer, as documented
        np.testing.assert_array_equal(first["b"], p2[6:])

    def test_user_exception_is_an_error_reply_and_serving_continues(self):
        code, replies = run(Toy(), [
            HELLO,
            ({"type": "fit", "data": "all", "config": {"lr": -1}}, np.zeros(9, np.float32)),
            ({"type": "evaluate", "data": "all"}, np.zeros(9, np.float32)),
        ])
        self.assertEqual(code, 0)
        self.assertEqual(replies[1].header["type"], "error")
        self.assertIn("negative learning rate", replies[1].header["message"])
        self.assertEqual(replies[2].header["type"], "evaluate_result")

    def test_wrong_version_is_refused(self):
        code, replies = run(Toy(), [({"type": "hello", "protocol": 2},)])
        self.assertEqual(code, 1)
        self.assertEqual(replies[0].header["type"], "error")
        self.assertIn("version 1", replies[0].header["message"])

    def test_wrong_parameter_count_ends_the_session(self):
        code, _ = run(Toy(), [HELLO, ({"type": "fit", "data": "all"}, np.zeros(4, np.float32))])
        self.assertEqual(code, 1)

    def test_fit_returning_wrong_shape_is_an_error(self):
        class Bad(Toy):
            def fit(self, parameters, task):
                return {"w": np.zeros((3, 2), np.float32), "b": parameters["b"]}, 1
        _, replies = run(Bad(), [HELLO, ({"type": "fit", "data": "all", "config": {}}, np.zeros(9, np.float32))])
        self.assertEqual(replies[1].header["type"], "error")
        self.assertIn("does not match", replies[1].header["message"])

    def test_update_kind(self):
        class Upd(Toy):
            def fit(self, parameters, task):
                return shoal_trainer.FitResult({k: np.ones_like(v) for k, v in parameters.items()}, 2, update=True)
        _, replies = run(Upd(), [HELLO, ({"type": "fit", "data": "all", "config": {}}, np.zeros(9, np.float32))])
        self.assertEqual(replies[1].header["kind"], "update")
        np.testing.assert_array_equal(replies[1].params, np.ones(9))

    def test_fit_seconds_is_the_time_inside_fit(self):
        class Slow(Toy):
            def fit(self, parameters, task):
                time.sleep(0.05)
                return super().fit(parameters, task)

        class Reports(Toy):  # a trainer that reports its own fit_seconds keeps it
            def fit(self, parameters, task):
                new, n, loss, metrics = super().fit(parameters, task)
                return new, n, loss, {shoal_trainer.FIT_SECONDS: 123.0}

        fit = ({"type": "fit", "data": "all", "config": {}}, np.zeros(9, np.float32))
        _, replies = run(Slow(), [HELLO, fit])
        self.assertGreaterEqual(replies[1].header["metrics"][shoal_trainer.FIT_SECONDS], 0.05)
        _, replies = run(Reports(), [HELLO, fit])
        self.assertEqual(replies[1].header["metrics"][shoal_trainer.FIT_SECONDS], 123.0)


if __name__ == "__main__":
    unittest.main()
