"""Messages and codec: property-based round-trips of every type, validation with reasons, and a fuzzed decoder."""

import math
import random

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lastr1.transport import codec
from lastr1.transport.errors import InvalidMessage
from lastr1.transport.messages import (
    SCHEMA_VERSION,
    Ack,
    Heartbeat,
    Reject,
    Telemetry,
    Transition,
    Weights,
    decode,
    encode,
)

MAX = 1 << 26
names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,15}\Z")
u63 = st.integers(0, (1 << 63) - 1)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def f32(shape):
    return hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32))


@st.composite
def transitions(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    cams = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    img = hnp.arrays(np.uint8, (h, w, 3))
    p = draw(st.integers(1, 16))
    lat = draw(st.none() | hnp.arrays(np.float16, (draw(st.integers(0, 8)), draw(st.integers(1, 32))),
                                      elements=st.floats(-100, 100, width=16)))
    last = draw(st.booleans())
    return Transition(
        episode=draw(u63), step=draw(st.integers(0, 10**6)), policy_version=draw(st.integers(0, 10**6)),
        intervention=draw(st.booleans()), images={c: draw(img) for c in cams}, proprio=draw(f32((p,))),
        action=draw(f32((draw(st.integers(1, 8)), draw(st.integers(1, 14))))), latents=lat,
        latent_len=0 if lat is None else draw(st.integers(0, lat.shape[0])), reward=draw(finite),
        terminated=draw(st.booleans()), truncated=draw(st.booleans()), t_obs=draw(finite),
        next_images={c: draw(img) for c in cams} if last else None, next_proprio=draw(f32((p,))) if last else None,
        slow_images={cams[0]: draw(img)} if draw(st.booleans()) else None,
        actor_id=draw(names), epoch=draw(u63), seq=draw(u63), t_sent=draw(finite),
    )


json_like = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=8),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                         max_leaves=6)


def depth(v) -> int:
    if isinstance(v, dict):
        return 1 + max(map(depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(depth, v), default=0)
    return 0


messages = st.one_of(
    transitions(),
    st.builds(Ack, names, u63, st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(sorted).map(tuple),
                                        max_size=5)),
    st.builds(Reject, names, u63, u63, st.text(max_size=50)),
    st.builds(lambda b, v, m, c: Weights.create(b, v, m, c), st.binary(max_size=3000), st.integers(1, 10**9),
              st.dictionaries(st.text(max_size=8), json_like, max_size=3).filter(lambda m: depth(m) <= 4), finite),
    st.builds(Heartbeat, st.just("actor"), names, u63, finite, st.integers(0, 10**6), u63, u63, u63, u63, u63),
    st.builds(Heartbeat, st.just("learner"), names, u63, finite, st.integers(0, 10**6), u63,
              received=st.integers(-1, 10**9), committed=st.integers(-1, 10**9)),
    st.builds(Telemetry, st.none() | st.floats(), st.none() | finite, st.none() | finite, st.none() | finite,
              st.dictionaries(names.filter(lambda k: k not in Telemetry.NAMED), st.floats(), max_size=5), names,
              finite),
)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b and type(a) is type(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages)
def test_every_message_type_round_trips(msg):
    wire = encode(msg)
    back = decode(wire, MAX)
    assert same(msg, back), (msg, back)
    # The bytes are plain msgpack: any msgpack reader sees a map with the schema version and type tag.
    plain = msgpack.unpackb(wire, raw=False)
    assert plain["v"] == SCHEMA_VERSION and plain["type"] == msg.TYPE


def test_ndarray_ext_layout_and_zero_copy():
    a = np.arange(6, dtype=">i4").reshape(2, 3)  # big-endian in, little-endian on the wire
    wire = codec.packb({"a": a})
    raw = msgpack.unpackb(wire, raw=False)["a"]
    assert isinstance(raw, msgpack.ExtType) and raw.code == codec.EXT_NDARRAY
    dims = (2).to_bytes(4, "little") + (3).to_bytes(4, "little")
    assert raw.data == bytes([3]) + b"<i4" + bytes([2]) + dims + a.astype("<i4").tobytes()
    out = codec.unpackb(wire, MAX)["a"]
    assert out.dtype == np.dtype("<i4") and (out == a).all() and not out.flags.writeable  # a view, not a copy
    assert codec.unpackb(codec.packb(np.zeros((0, 5), np.float16)), MAX).shape == (0, 5)
    assert codec.unpackb(codec.packb(np.arange(10)[::3]), MAX).tolist() == [0, 3, 6, 9]  # non-contiguous


@pytest.mark.parametrize(
    "arr", [np.array(["a"]), np.array([object()]), np.zeros(2, np.complex64), np.zeros(2, "datetime64[s]")])
def test_non_numeric_arrays_cannot_be_encoded(arr):
    with pytest.raises(TypeError, match="cannot cross the wire"):
        codec.packb(arr)


def _ext(code, payload):
    return msgpack.packb(msgpack.ExtType(code, payload))


@pytest.mark.parametrize("wire, reason", [
    (_ext(1, bytes([3]) + b"|O8" + bytes([1]) + (1).to_bytes(4, "little") + bytes(8)), "not allowed"),
    (_ext(1, bytes([3]) + b"<f4" + bytes([1]) + (4).to_bytes(4, "little") + bytes(15)), "needs 16 bytes"),
    (_ext(1, bytes([3]) + b"<f4" + bytes([9])), "dimensions"),
    (_ext(1, b""), "undecodable"),
    (_ext(7, b"abc"), "unknown msgpack extension"),
    (_ext(2, b"not a jpeg"), "undecodable"),
    (msgpack.packb([1, 2]) + b"\x00", "undecodable"),
])
def test_bad_ext_payloads_are_refused(wire, reason):
    with pytest.raises(InvalidMessage, match=reason):
        codec.unpackb(wire, MAX)


def test_size_limit_is_checked_before_decoding():
    with pytest.raises(InvalidMessage, match="exceeds the limit"):
        codec.unpackb(b"\xc0" * 101, 100)


def good_transition(**kw) -> Transition:
    rng = np.random.default_rng(0)
    d = dict(
        episode=1, step=2, policy_version=3, intervention=True,
        images={c: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for c in ("front", "wrist")},
        proprio=np.zeros(8, np.float32), action=np.zeros((8, 7), np.float32), latents=np.ones((8, 16), np.float16),
        latent_len=4, reward=-0.05, terminated=False, truncated=False, t_obs=1.0, actor_id="actor0", epoch=7, seq=0,
        t_sent=2.0,
    )
    d.update(kw)
    return Transition(**d)


def test_jpeg_images_decode_to_rgb_uint8():
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)  # smooth, like a camera frame
    t = good_transition(images={"front": img})
    back = decode(encode(t, jpeg_quality=90), MAX)
    assert back.images["front"].shape == (96, 128, 3) and back.images["front"].dtype == np.uint8
    assert np.abs(back.images["front"].astype(int) - img).mean() < 2  # lossy, but the same image
    assert len(encode(t, 90)) < len(encode(t)) / 5


def _tamper(t: Transition, **fields) -> bytes:
    d = {"v": SCHEMA_VERSION, "type": "transition", **t.to_wire(), **fields}
    return codec.packb(d)


@pytest.mark.parametrize("fields, reason", [
    (dict(action=np.full((8, 7), np.nan, np.float32)), "action holds NaN"),
    (dict(latents=np.full((8, 16), np.inf, np.float16)), "latents holds NaN or inf"),
    (dict(latents=np.where(np.arange(128).reshape(8, 16) == 77, np.float16(-np.inf), np.float16(-65504))),
     "latents holds NaN or inf"),  # one -inf among the largest finite float16s
    (dict(latents=np.where(np.arange(128).reshape(8, 16) == 3, np.float16(np.nan), np.float16(1))),
     "latents holds NaN or inf"),
    (dict(proprio=np.zeros(8, np.float64)), "proprio must be float32"),
    (dict(images={"front": np.zeros((4, 4), np.uint8)}), "images.front must have 3 dimensions"),
    (dict(images={}), "1..8 camera images"),
    (dict(latent_len=9), "latent_len must be an int in"),
    (dict(reward=float("nan")), "reward must be finite"),
    (dict(seq=-1), "seq must be an int"),
    (dict(intervention=1), "intervention must be a bool"),
    (dict(actor_id="../etc"), "actor_id must be a string"),
    (dict(next_proprio=np.zeros(8, np.float32)), "come together"),
    (dict(extra=1), "unknown fields"),
    (dict(v=2), "schema version 2"),
    (dict(type="launch"), "unknown message type"),
])
def test_invalid_transitions_are_refused_with_the_reason(fields, reason):
    with pytest.raises(InvalidMessage, match=reason) as e:
        decode(_tamper(good_transition(), **fields), MAX)
    # Enough of the envelope survives for the learner to tell the actor which transition it refused.
    if "actor_id" not in fields and "seq" not in fields:
        assert e.value.envelope.get("actor_id") == "actor0" and e.value.envelope.get("seq") == 0


def test_missing_field_and_tampered_weights_are_refused():
    d = {"v": SCHEMA_VERSION, "type": "transition", **good_transition().to_wire()}
    del d["reward"]
    with pytest.raises(InvalidMessage, match=r"missing fields \['reward'\]"):
        decode(codec.packb(d), MAX)
    w = Weights.create(b"adapter bytes", 3)
    w.adapter = b"adapter bytez"
    with pytest.raises(InvalidMessage, match="do not match their sha256"):
        decode(encode(w), MAX)
    with pytest.raises(InvalidMessage, match="meta.x: ndarray not allowed"):
        decode(encode(Weights.create(b"a", 1, {"x": np.zeros(2)})), MAX)


def test_fuzzed_bytes_never_crash_the_decoder():
    """Thousands of random and mutated byte strings: every one decodes to a valid message or raises
    InvalidMessage, never anything else."""
    rnd = random.Random(1234)
    seeds = [encode(good_transition()), encode(good_transition(), 80),
             encode(Weights.create(b"w" * 100, 1, {"a": [1]})), encode(Heartbeat("actor", "a0", 1, 2.0, 3, 4, 5)),
             encode(Ack.of("a0", 1, [1, 2, 5])),
             encode(Telemetry(loop_hz=9.5, values={"x": 1.0}, sender="a0", t=1.0))]
    ok = bad = 0
    for i in range(4000):
        if i % 4 == 0:
            b = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 64)))
        else:
            b = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 8)):
                if not b:
                    break
                op, pos = rnd.random(), rnd.randrange(len(b))
                if op < 0.6:
                    b[pos] = rnd.getrandbits(8)
                elif op < 0.8:
                    del b[pos:pos + rnd.randint(1, 64)]
                else:
                    b[pos:pos] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 16)))
            b = bytes(b)
        try:
            decode(b, 1 << 20)
            ok += 1
        except InvalidMessage:
            bad += 1
    assert bad > 3000  # the fuzzer reached the checks, not just one lucky path
