"""serve(): answer Shoal's requests with the user's trainer object."""

import collections
import os
import sys
import time
import traceback

import numpy as np

from . import protocol

FitTask = collections.namedtuple(
    "FitTask", "client round indices epochs batch_size lr momentum weight_decay prox_mu seed")
FitTask.__doc__ = """One fit request. indices is an int array of example indices into the training
set, or None for all of the trainer's local data. seed seeds this task's shuffling."""

EvalTask = collections.namedtuple("EvalTask", "client indices")
EvalTask.__doc__ = """One evaluate request. indices selects test examples, or None for all of them
(client -1 is the server's central evaluation)."""


FIT_SECONDS = "fit_seconds"  # metric serve() adds to every fit_result: seconds inside trainer.fit


class FitResult(collections.namedtuple("FitResult", "parameters num_examples loss metrics update")):
    """What fit returns: the new parameters (or, with update=True, the update new − old), the
    number of training examples, the mean training loss and optional float metrics."""

    def __new__(cls, parameters, num_examples, loss=0.0, metrics=None, update=False):
        return super().__new__(cls, parameters, num_examples, loss, metrics or {}, update)


class Layout:
    """The model's parameter layout: ordered (name, shape) pairs of float32 tensors."""

    def __init__(self, parameters):
        self.tensors = []
        for name, value in _items(parameters):
            arr = np.asarray(value)
            self.tensors.append((str(name), tuple(int(d) for d in arr.shape)))
        if not self.tensors:
            raise ValueError("the model has no parameters")
        self.sizes = [int(np.prod(s, dtype=np.int64)) for _, s in self.tensors]
        self.size = sum(self.sizes)

    def to_json(self):
        return [{"name": n, "shape": list(s) if s else [1], "dtype": "float32"} for n, s in self.tensors]

    def blocks(self, parameters):
        """The named tensors as flat little-endian float32 arrays in layout order, checking every
        shape. Contiguous float32 tensors are not copied (write_frame sends each from its memory)."""
        items = _items(parameters)
        if len(items) != len(self.tensors):
            raise ValueError("got %d tensors, the layout has %d" % (len(items), len(self.tensors)))
        out = []
        for (name, value), (want, shape), size in zip(items, self.tensors, self.sizes):
            arr = np.asarray(value)
            if str(name) != want or arr.size != size or (arr.shape != shape and shape):
                raise ValueError("tensor %r of shape %s does not match layout tensor %r %s"
                                 % (name, arr.shape, want, shape))
            out.append(np.ascontiguousarray(arr, dtype="<f4").reshape(-1))
        return out

    def flatten(self, parameters):
        """One float32 vector from named tensors, in layout order, checking every shape."""
        return np.concatenate(self.blocks(parameters))

    def unflatten(self, flat):
        """Named tensors (views of flat) in layout order."""
        out = collections.OrderedDict()
        off = 0
        for (name, shape), size in zip(self.tensors, self.sizes):
            out[name] = flat[off:off + size].reshape(shape)
            off += size
        return out


def _items(parameters):
    if isinstance(parameters, dict):
        return list(parameters.items())
    return [(name, value) for name, value in parameters]


def _protect_stdout():
    """The protocol owns file descriptor 1: keep a private copy for frames and point fd 1 and
    sys.stdout at stderr, so that print() and native libraries cannot corrupt the channel."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb")
    return inp, out


def serve(trainer, name=None, stdin=None, stdout=None):
    """Serve Shoal's requests until it says shutdown or closes the channel.

    The parameters passed to fit and evaluate are views of a receive buffer that the next
    request overwrites: copy them (np.copy) to keep them beyond the call. Returning them, or
    arrays computed from them, is fine: the reply is written before the next request is read.

    trainer has get_parameters() -> dict of name to array (its layout is taken from it once),
    optionally initial_parameters(seed) -> dict, fit(parameters, task) -> FitResult or a tuple
    (parameters, num_examples[, loss[, metrics]]), and evaluate(parameters, task) ->
    (loss, accuracy, num_examples). Returns the process exit code.
    """
    if stdin is None or stdout is None:
        stdin, stdout = _protect_stdout()
    name = name or type(trainer).__name__
    layout = None
    recv = None  # the receive buffer, one per channel, sized to the layout
    while True:
        try:
            req = protocol.read_frame(stdin, recv)
        except (EOFError, protocol.ProtocolError) as e:
            print("shoal_trainer: %s" % e, file=sys.stderr)
            return 1
        if req is None or req.type == "shutdown":
            return 0
        try:
            if req.type == "hello":
                version = req.header.get("protocol")
                if version != protocol.VERSION:
                    protocol.write_frame(stdout, {
                        "type": "error", "protocol": protocol.VERSION,
                        "message": "shoal_trainer speaks trainer protocol version %d, shoal sent version %s"
                                   % (protocol.VERSION, version)})
                    return 1
                layout = Layout(trainer.get_parameters())
                recv = np.empty(layout.size, dtype="<f4")
                protocol.write_frame(stdout, {"type": "hello", "protocol": protocol.VERSION, "trainer": name,
                                              "layout": layout.to_json()})
                continue
            if layout is None:
                raise protocol.ProtocolError("%s before hello" % req.type)
            protocol.write_frame(stdout, *_handle(trainer, layout, req))
        except protocol.ProtocolError as e:
            print("shoal_trainer: %s" % e, file=sys.stderr)
            return 1
        except Exception as e:  # the user's code failed: the task fails, the trainer serves on
            traceback.print_exc(file=sys.stderr)
            protocol.write_frame(stdout, {"type": "error", "message": "%s: %s" % (type(e).__name__, e)})


def _handle(trainer, layout, req):
    """The reply (header, params) to an init, fit or evaluate request."""
    h = req.header
    if req.type == "init":
        init = getattr(trainer, "initial_parameters", None)
        params = init(int(h.get("seed", 0))) if init else trainer.get_parameters()
        return {"type": "params"}, layout.blocks(params)
    if req.type not in ("fit", "evaluate"):
        return {"type": "error", "message": "unknown message type %r" % req.type}, None
    if req.params is None or req.params.size != layout.size:
        raise protocol.ProtocolError("%s carries %d parameters, the layout has %d"
                                     % (req.type, 0 if req.params is None else req.params.size, layout.size))
    indices = req.indices if h.get("data") == "indices" else None
    if indices is None and h.get("data") == "indices":
        indices = np.empty(0, dtype=np.int32)
    params = layout.unflatten(req.params)
    if req.type == "evaluate":
        loss, accuracy, n = trainer.evaluate(params, EvalTask(int(h.get("client", -1)), indices))
        return {"type": "evaluate_result", "loss": float(loss), "accuracy": float(accuracy),
                "examples": int(n)}, None
    c = h.get("config", {})
    task = FitTask(int(h.get("client", -1)), int(h.get("round", 0)), indices, int(c.get("epochs", 1)),
                   int(c.get("batch_size", 32)), float(c.get("lr", 0.01)), float(c.get("momentum", 0)),
                   float(c.get("weight_decay", 0)), float(c.get("prox_mu", 0)), int(c.get("seed", 0)))
    start = time.perf_counter()
    res = trainer.fit(params, task)
    seconds = time.perf_counter() - start
    if not isinstance(res, FitResult):
        res = FitResult(*res)
    loss = float(res.loss)
    if not np.isfinite(loss):
        raise ValueError("fit returned a non-finite loss %r" % loss)
    header = {"type": "fit_result", "kind": "update" if res.update else "params",
              "examples": int(res.num_examples), "loss": loss,
              "metrics": {str(k): float(v) for k, v in (res.metrics or {}).items() if np.isfinite(float(v))}}
    # The time spent in the user's fit: Shoal compares it with its round trip (the bridge's cost).
    header["metrics"].setdefault(FIT_SECONDS, seconds)
    return header, layout.blocks(res.parameters)
