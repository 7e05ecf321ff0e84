"""msgpack with two extension types, for numpy arrays and JPEG images. No pickle: a peer's bytes can only
ever become msgpack primitives, numeric arrays of whitelisted dtypes, or RGB images.

ext 1 (ndarray), payload:  u8 n | n bytes dtype (ASCII numpy dtype.str, e.g. "<f4", "|u1")
                            | u8 ndim | ndim × u32 little-endian dims | raw C-order element bytes
ext 2 (JPEG),    payload:  a baseline/progressive JPEG file; decodes to (H, W, 3) uint8 RGB

Decoded arrays are read-only views of the received bytes (no copy); copy them if you must write.
docs/wire.md is the normative description.
"""

from __future__ import annotations

import io
import math
import struct

import msgpack
import numpy as np

from lastr1.transport.errors import InvalidMessage

EXT_NDARRAY = 1
EXT_JPEG = 2
# Little-endian numeric types only: nothing that can carry an object, a pointer or a string.
DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"})
MAX_NDIM = 8
# A decoded JPEG may not exceed this many pixels (~ 8K × 4K): its header alone could claim gigapixels.
MAX_JPEG_PIXELS = 1 << 25


class Jpeg:
    """Marks a (H, W, 3) uint8 image to be sent JPEG-compressed at `quality` (1..95)."""

    __slots__ = ("array", "quality")

    def __init__(self, array: np.ndarray, quality: int):
        self.array, self.quality = array, quality


def _array_header(a: np.ndarray) -> tuple[np.ndarray, bytes]:
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    dtype = a.dtype.str
    if dtype not in DTYPES:
        raise TypeError(f"arrays of dtype {a.dtype} cannot cross the wire (allowed: {sorted(DTYPES)})")
    if a.ndim > MAX_NDIM:
        raise TypeError(f"arrays of more than {MAX_NDIM} dimensions cannot cross the wire")
    a = np.ascontiguousarray(a)
    return a, struct.pack(f"<B{len(dtype)}sB{a.ndim}I", len(dtype), dtype.encode(), a.ndim, *a.shape)


def _pack_array(a: np.ndarray) -> msgpack.ExtType:
    a, header = _array_header(a)
    return msgpack.ExtType(EXT_NDARRAY, header + a.tobytes())


def _pack_jpeg(j: Jpeg) -> msgpack.ExtType:
    from PIL import Image

    a = np.asarray(j.array)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise TypeError(f"JPEG needs a (H, W, 3) uint8 image, got {a.dtype} {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), "RGB").save(buf, "JPEG", quality=int(j.quality))
    return msgpack.ExtType(EXT_JPEG, buf.getvalue())


def _default(obj):
    if isinstance(obj, np.ndarray):
        return _pack_array(obj)
    if isinstance(obj, Jpeg):
        return _pack_jpeg(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} (msgpack primitives and numpy arrays only)")


def _unpack_array(data: bytes) -> np.ndarray:
    n = data[0]
    dtype = bytes(data[1 : 1 + n]).decode("ascii")
    if dtype not in DTYPES:
        raise ValueError(f"ndarray dtype {dtype!r} not allowed")
    ndim = data[1 + n]
    if ndim > MAX_NDIM:
        raise ValueError(f"ndarray with {ndim} dimensions")
    off = 2 + n + 4 * ndim
    shape = struct.unpack_from(f"<{ndim}I", data, 2 + n)
    dt = np.dtype(dtype)
    count = math.prod(shape)
    if len(data) - off != count * dt.itemsize:
        raise ValueError(f"ndarray {dtype}{list(shape)} needs {count * dt.itemsize} bytes, got {len(data) - off}")
    if count == 0:
        return np.empty(shape, dt)
    a = np.frombuffer(data, dt, count, off).reshape(shape)
    # Any byte other than 0/1 in a numpy bool is undefined behaviour downstream: normalise.
    return a.view(np.uint8) != 0 if dt == np.bool_ else a


def _unpack_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
        if im.width * im.height > MAX_JPEG_PIXELS:
            raise ValueError(f"JPEG of {im.width}x{im.height} pixels is too large")
        if im.mode != "RGB":  # grey (1 channel) or CMYK (4): the wire carries 3-channel colour only
            raise ValueError(f"JPEG with {len(im.getbands())} channels ({im.mode}); the wire takes 3 (RGB)")
        return np.asarray(im)


def _ext_hook(code: int, data: bytes):
    if code == EXT_NDARRAY:
        return _unpack_array(data)
    if code == EXT_JPEG:
        return _unpack_jpeg(data)
    raise ValueError(f"unknown msgpack extension type {code}")


def _pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):  # msgpack allows it, but which value would count is the reader's choice
        raise ValueError("a map with a duplicate key")
    return d


def _head(small: int, codes: tuple[int, int], n: int) -> bytes:
    """A msgpack map/array header: fix form below 16 entries, else 16/32-bit count."""
    if n < 16:
        return bytes((small | n,))
    return struct.pack(">BH", codes[0], n) if n < 1 << 16 else struct.pack(">BI", codes[1], n)


def _sized(n: int, c8: int, c16: int, c32: int, ext: int | None = None) -> bytes:
    """bin/ext header for a payload of n bytes (the 8/16/32-bit forms every msgpack reader accepts)."""
    t = b"" if ext is None else struct.pack("b", ext)
    if n < 1 << 8:
        return struct.pack(">BB", c8, n) + t
    if n < 1 << 16:
        return struct.pack(">BH", c16, n) + t
    return struct.pack(">BI", c32, n) + t


def _parts(obj, out: list, pack) -> None:
    # Emits the msgpack encoding as a list of buffers so big arrays and blobs are copied exactly once, by the
    # final join (msgpack.packb would copy each array twice more, and its buffer growth is slow for MBs).
    if isinstance(obj, dict):
        out.append(_head(0x80, (0xDE, 0xDF), len(obj)))
        for k, v in obj.items():
            _parts(k, out, pack)
            _parts(v, out, pack)
    elif isinstance(obj, (list, tuple)):
        out.append(_head(0x90, (0xDC, 0xDD), len(obj)))
        for v in obj:
            _parts(v, out, pack)
    elif isinstance(obj, np.ndarray):
        a, header = _array_header(obj)
        data = a.reshape(-1).view(np.uint8).data
        out += [_sized(len(header) + a.nbytes, 0xC7, 0xC8, 0xC9, EXT_NDARRAY), header, data]
    elif isinstance(obj, (bytes, bytearray, memoryview)) and len(obj) > 1024:
        out += [_sized(memoryview(obj).nbytes, 0xC4, 0xC5, 0xC6), obj]
    else:
        out.append(pack(obj))


def packb(obj) -> bytes:
    out: list = []
    # One packer for the message's small values: msgpack.packb would build one per key and scalar (~40 a step).
    _parts(obj, out, msgpack.Packer(default=_default, use_bin_type=True).pack)
    return b"".join(out)


def unpackb(buf, max_bytes: int):
    """Decode one message; anything wrong (size, syntax, trailing bytes, bad array) → InvalidMessage."""
    size = memoryview(buf).nbytes
    if size > max_bytes:
        raise InvalidMessage(f"{size} bytes exceeds the limit of {max_bytes} (transport.max_message_bytes)")
    try:
        return msgpack.unpackb(buf, ext_hook=_ext_hook, object_pairs_hook=_pairs, raw=False, strict_map_key=True,
                               timestamp=0)
    except Exception as e:  # the decoder of untrusted bytes: every failure means "not a message"
        raise InvalidMessage(f"undecodable: {type(e).__name__}: {e}") from None
