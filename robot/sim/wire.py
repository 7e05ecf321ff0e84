"""Length-prefixed msgpack frames between the env and its sim server, over a local socket pair.

Both ends are our own processes, but the house rule holds everywhere: no pickle. Arrays travel as a msgpack
extension (dtype, shape, raw bytes), like the transport codec, kept separate so `robot` never imports the
network package.
"""

from __future__ import annotations

import socket
import struct

import msgpack
import numpy as np

_NDARRAY = 1
_HEADER = struct.Struct("<I")
MAX_FRAME = 64 << 20  # a frame this big is a bug (renders are ~100 KB)


class WireError(RuntimeError):
    """The peer closed the socket or sent something that is not a frame."""


def _default(obj):
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return msgpack.ExtType(_NDARRAY, msgpack.packb([arr.dtype.str, list(arr.shape), arr.tobytes()]))
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _ext_hook(code, data):
    if code != _NDARRAY:
        raise WireError(f"unknown msgpack extension {code}")
    dtype, shape, raw = msgpack.unpackb(data)
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()


def pack(obj) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(raw: bytes):
    return msgpack.unpackb(raw, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def send(sock: socket.socket, obj) -> None:
    body = pack(obj)
    sock.sendall(_HEADER.pack(len(body)) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError("peer closed the connection")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket):
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if n > MAX_FRAME:
        raise WireError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
    return unpack(_recv_exact(sock, n))
