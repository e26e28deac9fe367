"""Frames of the Shoal trainer protocol (docs/trainer.md), standard library and NumPy only.

A frame is, all integers little-endian::

    magic   4 bytes  b"SHTR"
    hlen    uint32   length of the JSON header (at most MAX_HEADER)
    plen    uint64   length of the payload
    header  hlen bytes of UTF-8 JSON, an object with a "type"
    payload plen bytes: header["params"] float32 values, then header["indices"] int32 values
"""

import json
import struct

import numpy as np

VERSION = 1
MAGIC = b"SHTR"
MAX_HEADER = 4 << 20
CHUNK = 4 << 20  # payloads are read and written in blocks of this many bytes

_PREFIX = struct.Struct("<4sIQ")


class ProtocolError(Exception):
    """The peer broke the protocol; the channel cannot be used any more."""


class Frame:
    """One message: its JSON header, and its float32 parameters and int32 indices (or None)."""

    __slots__ = ("header", "params", "indices")

    def __init__(self, header, params=None, indices=None):
        self.header = header
        self.params = params
        self.indices = indices

    @property
    def type(self):
        return self.header.get("type")


def _read_exact_into(stream, view):
    """Fill the writable memoryview view from stream, in CHUNK-sized reads."""
    got = 0
    n = len(view)
    while got < n:
        k = stream.readinto(view[got:min(n, got + CHUNK)])
        if not k:
            raise EOFError("channel closed in the middle of a frame")
        got += k


def _read_exact(stream, n):
    buf = bytearray(n)
    _read_exact_into(stream, memoryview(buf))
    return bytes(buf)


def read_frame(stream, params_buf=None):
    """Read one frame from a binary stream; None at a clean end of stream.

    With params_buf (a 1-D little-endian float32 array), a payload of at most params_buf.size
    parameters is read straight into it and the frame's params is a view of it, valid until the
    buffer is reused: one allocation per channel instead of one per frame."""
    first = stream.read(_PREFIX.size)
    if not first:
        return None
    prefix = first if len(first) == _PREFIX.size else first + _read_exact(stream, _PREFIX.size - len(first))
    magic, hlen, plen = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("bad magic %r: not a trainer-protocol frame" % (magic,))
    if hlen > MAX_HEADER:
        raise ProtocolError("header of %d bytes exceeds %d" % (hlen, MAX_HEADER))
    try:
        header = json.loads(_read_exact(stream, hlen).decode("utf-8"))
    except ValueError as e:
        raise ProtocolError("header is not JSON: %s" % e) from None
    if not isinstance(header, dict) or "type" not in header:
        raise ProtocolError("header is not an object with a type")
    nparams = int(header.get("params", 0) or 0)
    nindices = int(header.get("indices", 0) or 0)
    if nparams < 0 or nindices < 0 or plen != 4 * (nparams + nindices):
        raise ProtocolError("frame announces %d parameters and %d indices but carries %d payload bytes"
                            % (nparams, nindices, plen))
    params = indices = None
    if nparams:
        if params_buf is not None and params_buf.size >= nparams:
            params = params_buf[:nparams]
        else:
            params = np.empty(nparams, dtype="<f4")
        _read_exact_into(stream, memoryview(params).cast("B"))
    if nindices:
        indices = np.empty(nindices, dtype="<i4")
        _read_exact_into(stream, memoryview(indices).cast("B"))
    return Frame(header, params, indices)


def write_frame(stream, header, params=None, indices=None):
    """Write one frame. params is a float32 array, or a list of them sent one after the other
    (a model's tensors, without concatenating them); indices is an int32 array or None.
    Contiguous little-endian float32 arrays are written from their memory, without a copy."""
    header = dict(header)
    blocks = []
    if params is not None:
        parts = params if isinstance(params, (list, tuple)) else [params]
        parts = [np.ascontiguousarray(p, dtype="<f4").reshape(-1) for p in parts]
        header["params"] = int(sum(p.size for p in parts))
        blocks.extend(parts)
    if indices is not None:
        indices = np.ascontiguousarray(indices, dtype="<i4").reshape(-1)
        header["indices"] = int(indices.size)
        blocks.append(indices)
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(raw) > MAX_HEADER:
        raise ValueError("header of %d bytes exceeds %d" % (len(raw), MAX_HEADER))
    plen = sum(4 * b.size for b in blocks)
    _write_all(stream, memoryview(_PREFIX.pack(MAGIC, len(raw), plen) + raw))
    for b in blocks:
        if b.size:
            _write_all(stream, memoryview(b).cast("B"))
    stream.flush()


def _write_all(stream, view):
    """Write the whole memoryview: a large write passes a buffered stream's buffer by; a raw
    stream may write less than asked, so loop."""
    while len(view):
        k = stream.write(view)
        if k is None:  # a non-blocking raw stream that could not write: not ours to handle
            raise OSError("the channel would block")
        view = view[k:]
