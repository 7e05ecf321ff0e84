"""The messages of the wire (design §3), their msgpack maps, and validation on receipt.

Every message is one msgpack map with `v` (schema version) and `type`; docs/wire.md lists each field with its
msgpack type. `encode(msg)` → bytes, `decode(bytes, max_bytes)` → message or `InvalidMessage` with the reason.
Decoding is strict: unknown or missing fields, wrong types, shapes or dtypes, and non-finite floats where the
learner would train on them are all refused, so a bad actor cannot poison the replay buffer.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NoReturn

import numpy as np

from lastr1.transport import codec
from lastr1.transport.errors import InvalidMessage

SCHEMA_VERSION = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # actor ids, camera names
MAX_U63 = (1 << 63) - 1
# Generous bounds that still stop a peer from making the learner allocate nonsense.
MAX_IMAGES, MAX_IMAGE_SIDE = 8, 4096
MAX_PROPRIO, MAX_CHUNK, MAX_ACTION_DIM = 256, 64, 64
MAX_LATENTS, MAX_LATENT_DIM = 64, 16384
MAX_STATS, MAX_RANGES = 256, 65536


def _fail(reason: str) -> NoReturn:
    raise InvalidMessage(reason)


def _int(d: dict, k: str, lo: int = 0, hi: int = MAX_U63) -> int:
    v = d[k]
    if type(v) is not int or not lo <= v <= hi:
        _fail(f"{k} must be an int in [{lo}, {hi}], got {v!r:.40}")
    return v


def _bool(d: dict, k: str) -> bool:
    if type(d[k]) is not bool:
        _fail(f"{k} must be a bool, got {d[k]!r:.40}")
    return d[k]


def _float(d: dict, k: str, finite: bool = True) -> float:
    v = d[k]
    if type(v) not in (float, int):
        _fail(f"{k} must be a float, got {v!r:.40}")
    if finite and not math.isfinite(v):
        _fail(f"{k} must be finite, got {v}")
    return float(v)


def _str(d: dict, k: str, pattern: re.Pattern | None = NAME, max_len: int = 64) -> str:
    v = d[k]
    if type(v) is not str or len(v) > max_len or (pattern is not None and not pattern.match(v)):
        _fail(f"{k} must be a string{' matching ' + pattern.pattern if pattern else ''}, got {v!r:.80}")
    return v


def _array(v, k: str, dtype, shape: tuple, finite: bool = False) -> np.ndarray:
    """`shape` entries: an int (exact), a (lo, hi) range, or None (any)."""
    if not isinstance(v, np.ndarray):
        _fail(f"{k} must be an ndarray, got {type(v).__name__}")
    if v.dtype != dtype:
        _fail(f"{k} must be {np.dtype(dtype)}, got {v.dtype}")
    if v.ndim != len(shape):
        _fail(f"{k} must have {len(shape)} dimensions, got shape {v.shape}")
    for n, want in zip(v.shape, shape):
        ok = want is None or (n == want if isinstance(want, int) else want[0] <= n <= want[1])
        if not ok:
            _fail(f"{k} has shape {v.shape}, want {shape}")
    if finite and v.size and not _finite(v):
        _fail(f"{k} holds NaN or inf")
    return v


def _finite(v: np.ndarray) -> bool:
    if v.dtype == np.float16:  # numpy widens float16 for isfinite; the exponent bits say it 5x faster
        return int((v.view(np.uint16) & 0x7C00).max()) < 0x7C00  # all-ones exponent: inf or NaN
    return bool(np.isfinite(v).all())


def _images(v, k: str) -> dict[str, np.ndarray]:
    if type(v) is not dict or not 1 <= len(v) <= MAX_IMAGES:
        _fail(f"{k} must be a map of 1..{MAX_IMAGES} camera images")
    side = (1, MAX_IMAGE_SIDE)
    for name, img in v.items():
        if not NAME.match(name):
            _fail(f"{k}: bad camera name {name!r:.80}")
        _array(img, f"{k}.{name}", np.uint8, (side, side, 3))
    return v


def _wire_images(images: dict, jpeg_quality: int):
    if not jpeg_quality:
        return images
    return {name: codec.Jpeg(img, jpeg_quality) for name, img in images.items()}


@dataclass(eq=False)
class Transition:
    """One control step as the actor executed it. s' is the next transition of the same actor and episode;
    only the last step of an episode carries `next_images`/`next_proprio` so a truncated episode can be
    bootstrapped. `actor_id`, `epoch`, `seq` and `t_sent` are stamped by `ActorLink.send`."""

    TYPE: ClassVar[str] = "transition"
    episode: int
    step: int
    policy_version: int
    intervention: bool
    images: dict[str, np.ndarray]  # camera → (H, W, 3) uint8
    proprio: np.ndarray  # (P,) float32
    action: np.ndarray  # (H, D) float32 normalised chunk executed (or commanded by the operator)
    latents: np.ndarray | None  # (L, d) float16 latent sequence the policy produced; None if it did not run
    latent_len: int  # latent positions actually used (the exit taken), ≤ L
    reward: float
    terminated: bool
    truncated: bool
    t_obs: float  # time.time() when the observation was captured
    next_images: dict[str, np.ndarray] | None = None
    next_proprio: np.ndarray | None = None
    # The slow cameras' frames the step's prefix was reasoned from (older than `images` when policy.kappa > 1),
    # so the learner trains on the context the robot acted on; None: this step's own images.
    slow_images: dict[str, np.ndarray] | None = None
    actor_id: str = ""
    epoch: int = 0  # identifies the actor's seq stream; new when its spool is created
    seq: int = -1
    t_sent: float = 0.0

    def normalised(self, copy: bool = True) -> Transition:
        """A new Transition with numpy scalars made Python ones and arrays cast to the wire dtypes (images
        must already be uint8); with `copy` the arrays are copies, so the caller may reuse its buffers."""

        def imgs(v):
            return None if v is None else {k: np.array(a, copy=copy) for k, a in v.items()}

        def arr(v, dtype):
            return None if v is None else (np.array(v, dtype, copy=True) if copy else np.asarray(v, dtype))

        return Transition(
            episode=int(self.episode), step=int(self.step), policy_version=int(self.policy_version),
            intervention=bool(self.intervention), images=imgs(self.images), proprio=arr(self.proprio, np.float32),
            action=arr(self.action, np.float32), latents=arr(self.latents, np.float16),
            latent_len=int(self.latent_len), reward=float(self.reward), terminated=bool(self.terminated),
            truncated=bool(self.truncated), t_obs=float(self.t_obs), next_images=imgs(self.next_images),
            next_proprio=arr(self.next_proprio, np.float32), slow_images=imgs(self.slow_images),
            actor_id=self.actor_id, epoch=int(self.epoch),
            seq=int(self.seq), t_sent=float(self.t_sent),
        )

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["images"] = _wire_images(self.images, jpeg_quality)
        if self.next_images is not None:
            d["next_images"] = _wire_images(self.next_images, jpeg_quality)
        if self.slow_images is not None:
            d["slow_images"] = _wire_images(self.slow_images, jpeg_quality)
        d["reward"] = float(self.reward)
        return d

    @classmethod
    def from_wire(cls, d: dict) -> Transition:
        images = _images(d["images"], "images")
        proprio = _array(d["proprio"], "proprio", np.float32, ((1, MAX_PROPRIO),), finite=True)
        latents = d["latents"]
        if latents is None:
            if d["latent_len"] != 0:
                _fail("latent_len must be 0 when latents is nil")
        else:
            _array(latents, "latents", np.float16, ((0, MAX_LATENTS), (1, MAX_LATENT_DIM)), finite=True)
        next_images, next_proprio = d["next_images"], d["next_proprio"]
        if (next_images is None) != (next_proprio is None):
            _fail("next_images and next_proprio come together or not at all")
        if next_images is not None:
            _images(next_images, "next_images")
            if set(next_images) != set(images):
                _fail(f"next_images cameras {sorted(next_images)} differ from images {sorted(images)}")
            _array(next_proprio, "next_proprio", np.float32, proprio.shape, finite=True)
        slow = d.get("slow_images")
        if slow is not None:
            _images(slow, "slow_images")
            if not set(slow) <= set(images):
                _fail(f"slow_images cameras {sorted(slow)} are not among images {sorted(images)}")
        return cls(
            episode=_int(d, "episode"), step=_int(d, "step"), policy_version=_int(d, "policy_version"),
            intervention=_bool(d, "intervention"), images=images, proprio=proprio,
            action=_array(d["action"], "action", np.float32, ((1, MAX_CHUNK), (1, MAX_ACTION_DIM)), finite=True),
            latents=latents, latent_len=_int(d, "latent_len", 0, 0 if latents is None else latents.shape[0]),
            reward=_float(d, "reward"), terminated=_bool(d, "terminated"), truncated=_bool(d, "truncated"),
            t_obs=_float(d, "t_obs"), next_images=next_images, next_proprio=next_proprio, slow_images=slow,
            actor_id=_str(d, "actor_id"), epoch=_int(d, "epoch"), seq=_int(d, "seq"), t_sent=_float(d, "t_sent"),
        )


@dataclass
class Ack:
    """Learner → actor: these seqs of (actor_id, epoch) are persisted; drop them from the spool."""

    TYPE: ClassVar[str] = "ack"
    actor_id: str
    epoch: int
    ranges: list[tuple[int, int]]  # inclusive [lo, hi] seq ranges

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        return dict(actor_id=self.actor_id, epoch=self.epoch, ranges=[[lo, hi] for lo, hi in self.ranges])

    @classmethod
    def from_wire(cls, d: dict) -> Ack:
        r = d["ranges"]
        if type(r) is not list or len(r) > MAX_RANGES:
            _fail(f"ranges must be a list of at most {MAX_RANGES} [lo, hi] pairs")
        ranges = []
        for p in r:
            if type(p) is not list or len(p) != 2:
                _fail("each range must be [lo, hi]")
            pair = dict(lo=p[0], hi=p[1])
            lo, hi = _int(pair, "lo"), _int(pair, "hi")
            if hi < lo:
                _fail(f"range [{lo}, {hi}] is empty")
            ranges.append((lo, hi))
        return cls(actor_id=_str(d, "actor_id"), epoch=_int(d, "epoch"), ranges=ranges)

    @classmethod
    def of(cls, actor_id: str, epoch: int, seqs) -> Ack:
        ranges: list[tuple[int, int]] = []
        for s in sorted(set(seqs)):
            if ranges and ranges[-1][1] == s - 1:
                ranges[-1] = (ranges[-1][0], s)
            else:
                ranges.append((s, s))
        return cls(actor_id, epoch, ranges)


@dataclass
class Reject:
    """Learner → actor: this transition will never be accepted (e.g. another schema version); the actor moves
    it out of its resend queue into `<spool>/rejected/` and says so loudly."""

    TYPE: ClassVar[str] = "reject"
    actor_id: str
    epoch: int
    seq: int
    reason: str

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        return dict(actor_id=self.actor_id, epoch=self.epoch, seq=self.seq, reason=self.reason[:1000])

    @classmethod
    def from_wire(cls, d: dict) -> Reject:
        return cls(_str(d, "actor_id"), _int(d, "epoch"), _int(d, "seq"), _str(d, "reason", None, 1000))


@dataclass(eq=False)
class Weights:
    """Learner → actor: a LoRA adapter + trainable heads as safetensors bytes. `sha256` is the hex digest of
    `adapter`; the receiver recomputes it. Versions start at 1 and only increase."""

    TYPE: ClassVar[str] = "weights"
    version: int
    sha256: str
    adapter: bytes
    created: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def create(cls, adapter: bytes, version: int, meta: dict | None = None, created: float | None = None):
        import time

        return cls(version, hashlib.sha256(adapter).hexdigest(), bytes(adapter),
                   time.time() if created is None else created, dict(meta or {}))

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        return dict(version=self.version, sha256=self.sha256, adapter=self.adapter, created=self.created,
                    meta=self.meta)

    @classmethod
    def from_wire(cls, d: dict) -> Weights:
        adapter = d["adapter"]
        if type(adapter) is not bytes:
            _fail("adapter must be bin")
        sha = _str(d, "sha256", re.compile(r"^[0-9a-f]{64}$"))
        if hashlib.sha256(adapter).hexdigest() != sha:
            _fail("adapter bytes do not match their sha256")
        meta = d["meta"]
        if type(meta) is not dict:
            _fail("meta must be a map")
        _check_plain(meta, "meta", 0)
        return cls(_int(d, "version", 1), sha, adapter, _float(d, "created"), meta)


def _check_plain(v, k: str, depth: int):
    """JSON-like values only (no arrays/images) and shallow, so meta can go into a log or checkpoint."""
    if depth > 4:
        _fail(f"{k} nests too deep")
    if isinstance(v, dict):
        for kk, vv in v.items():
            _check_plain(vv, f"{k}.{kk}", depth + 1)
    elif isinstance(v, list):
        for i, vv in enumerate(v):
            _check_plain(vv, f"{k}[{i}]", depth + 1)
    elif v is not None and type(v) not in (str, int, float, bool):
        _fail(f"{k}: {type(v).__name__} not allowed here")


@dataclass
class Heartbeat:
    """Both ways, every `transport.heartbeat_s`. The actor reports its stream and backlog; the learner answers
    each one with its session, newest weights version and how far it has received/persisted that stream."""

    TYPE: ClassVar[str] = "heartbeat"
    role: str  # "actor" | "learner"
    sender: str  # actor_id, or "learner"
    session: int  # random per process: a new value means the peer restarted
    t: float
    policy_version: int  # actor: newest weights version it holds (0 = none); learner: newest published
    epoch: int  # the actor's seq stream this heartbeat is about
    next_seq: int = 0  # actor: next seq it will assign
    first_unacked: int = 0  # actor: lowest seq still unacknowledged (= next_seq when none)
    unacked: int = 0  # actor: transitions waiting for an ack
    spool_bytes: int = 0  # actor: bytes on disk in its spool
    received: int = -1  # learner: every seq ≤ this of (sender actor, epoch) has arrived
    committed: int = -1  # learner: every seq ≤ this is persisted (acked)
    shapes: dict | None = None  # actor: the layout its transitions have (docs/wire.md §3, heartbeat)
    refused: str = ""  # learner: why those shapes do not fit it ("" = they do, or none were declared)

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        other = _HEARTBEAT_ONLY["learner" if self.role == "actor" else "actor"]
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in other}

    @classmethod
    def from_wire(cls, d: dict) -> Heartbeat:
        if d["role"] not in ("actor", "learner"):
            _fail(f"role must be actor or learner, got {d['role']!r:.40}")
        return cls(
            role=d["role"], sender=_str(d, "sender"), session=_int(d, "session"), t=_float(d, "t"),
            policy_version=_int(d, "policy_version"), epoch=_int(d, "epoch"), next_seq=_int(d, "next_seq"),
            first_unacked=_int(d, "first_unacked"), unacked=_int(d, "unacked"),
            spool_bytes=_int(d, "spool_bytes"), received=_int(d, "received", -1), committed=_int(d, "committed", -1),
            shapes=_shapes(d["shapes"]), refused=_str(d, "refused", None, 2000),
        )


SHAPE_KEYS = ("cameras", "image", "proprio", "action", "latents")


def _shapes(v) -> dict | None:
    """nil, or {cameras: [name], image: [H, W], proprio: P, action: [H, D], latents: [L, d]} (u63 sizes)."""
    if v is None:
        return None
    if type(v) is not dict or sorted(v) != sorted(SHAPE_KEYS):
        _fail(f"shapes must be a map of exactly {list(SHAPE_KEYS)}")
    cams = v["cameras"]
    if type(cams) is not list or not 1 <= len(cams) <= MAX_IMAGES or not all(type(c) is str and NAME.match(c)
                                                                            for c in cams):
        _fail(f"shapes.cameras must be 1..{MAX_IMAGES} camera names")
    for k, n in (("image", 2), ("action", 2), ("latents", 2)):
        if type(v[k]) is not list or len(v[k]) != n:
            _fail(f"shapes.{k} must be [{n} sizes]")
        for i, x in enumerate(v[k]):
            _int({f"shapes.{k}[{i}]": x}, f"shapes.{k}[{i}]")
    _int(v, "proprio")
    return v


@dataclass
class Telemetry:
    """Either way, whenever the sender likes: numbers for logs and dashboards (not spooled, may be lost).
    On the wire one map `values` in a message of type "stats"; the named fields are the ones every actor
    reports. (Not the normalisation statistics, `policy.action_tokenizer.Stats`.)"""

    TYPE: ClassVar[str] = "stats"
    NAMED: ClassVar[tuple[str, ...]] = ("episode_return", "intervention_rate", "loop_hz", "policy_latency_ms")
    episode_return: float | None = None
    intervention_rate: float | None = None
    loop_hz: float | None = None
    policy_latency_ms: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # anything else, e.g. "slow_hz", "q_mean"
    sender: str = ""
    t: float = 0.0

    def all_values(self) -> dict[str, float]:
        named = {k: getattr(self, k) for k in self.NAMED if getattr(self, k) is not None}
        return {**self.values, **named}

    def to_wire(self, jpeg_quality: int = 0) -> dict:
        return dict(sender=self.sender, t=float(self.t), values={k: float(v) for k, v in self.all_values().items()})

    @classmethod
    def from_wire(cls, d: dict) -> Telemetry:
        vals = d["values"]
        if type(vals) is not dict or len(vals) > MAX_STATS:
            _fail(f"values must be a map of at most {MAX_STATS} numbers")
        out = {}
        for k in vals:
            if not NAME.match(k):
                _fail(f"bad stats name {k!r:.80}")
            out[k] = _float(vals, k, finite=False)  # NaN is a legitimate "no data yet"
        named = {k: out.pop(k) for k in cls.NAMED if k in out}
        return cls(**named, values=out, sender=_str(d, "sender"), t=_float(d, "t"))


Message = Transition | Ack | Reject | Weights | Heartbeat | Telemetry
TYPES: dict[str, Any] = {c.TYPE: c for c in (Transition, Ack, Reject, Weights, Heartbeat, Telemetry)}
_FIELDS = {name: {f.name for f in fields(c)} for name, c in TYPES.items()}
_FIELDS["stats"] = {"sender", "t", "values"}
_HEARTBEAT_ONLY = {"actor": ("next_seq", "first_unacked", "unacked", "spool_bytes", "shapes"),
                   "learner": ("received", "committed", "refused")}
# Fields a sender may leave out, with the value they then take.
_OPTIONAL: dict[str, dict[str, Any]] = {
    "transition": {"next_images": None, "next_proprio": None, "slow_images": None},
    "heartbeat": {"next_seq": 0, "first_unacked": 0, "unacked": 0, "spool_bytes": 0, "received": -1, "committed": -1,
                  "shapes": None, "refused": ""},
}


def encode(msg: Message, jpeg_quality: int = 0) -> bytes:
    """`jpeg_quality` > 0 sends a transition's images as JPEG (for links between hosts)."""
    return codec.packb({"v": SCHEMA_VERSION, "type": msg.TYPE, **msg.to_wire(jpeg_quality)})


def decode(buf, max_bytes: int) -> Message:
    d = codec.unpackb(buf, max_bytes)
    if type(d) is not dict:
        raise InvalidMessage(f"a message must be a msgpack map, got {type(d).__name__}")
    env = {k: d.get(k) for k in ("type", "actor_id", "epoch", "seq")}
    env = {k: v for k, v in env.items() if type(v) in (str, int)}
    try:
        if type(d.get("v")) is not int or d["v"] != SCHEMA_VERSION:
            _fail(f"schema version {d.get('v')!r:.20}, this side speaks {SCHEMA_VERSION}")
        kind = d.get("type")
        if not isinstance(kind, str) or kind not in TYPES:
            _fail(f"unknown message type {kind!r:.40}")
        have, want = set(d) - {"v", "type"}, _FIELDS[kind]
        if have - want:
            _fail(f"{kind}: unknown fields {sorted(map(str, have - want))[:5]}")
        if kind == "heartbeat" and d.get("role") in _HEARTBEAT_ONLY:  # each direction has its own fields (§3)
            foreign = have & set(_HEARTBEAT_ONLY["learner" if d["role"] == "actor" else "actor"])
            if foreign:
                _fail(f"a heartbeat from the {d['role']} does not carry {sorted(foreign)}")
        optional = _OPTIONAL.get(kind, {})
        missing = want - have - set(optional)
        if missing:
            _fail(f"{kind}: missing fields {sorted(missing)}")
        return TYPES[kind].from_wire({**optional, **d})
    except InvalidMessage as e:
        e.envelope = env
        raise
    except Exception as e:  # a field of a type the checks above did not expect (e.g. a map as a dict key)
        raise InvalidMessage(f"{type(e).__name__}: {e}", env) from None
