"""A small actor written from docs/wire.md alone: pyzmq, msgpack, numpy and struct, nothing of lastr1.

The conformance and crash tests drive the live `lastr1 learner` with it, so what they check is the spec, not
what our own encoder happens to produce."""

from __future__ import annotations

import io
import struct
import time

import msgpack
import numpy as np
import zmq
import zmq.auth

U63 = (1 << 63) - 1


def ndarray(a: np.ndarray) -> msgpack.ExtType:
    """§2: ext 1 = u8 n | dtype string | u8 ndim | ndim × u32 dims | C-order bytes, all little-endian."""
    a = np.ascontiguousarray(a)
    dt = a.dtype.str.encode()
    return msgpack.ExtType(1, struct.pack(f"<B{len(dt)}sB{a.ndim}I", len(dt), dt, a.ndim, *a.shape) + a.tobytes())


def jpeg(img: np.ndarray, mode: str = "RGB") -> msgpack.ExtType:
    """§2: ext 2 = a JPEG file (PIL only writes it; the bytes are what any JPEG encoder makes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, "JPEG", quality=90)
    return msgpack.ExtType(2, buf.getvalue())


def transition(actor_id: str, epoch: int, seq: int, *, episode=0, step=0, cameras=("front", "wrist"), side=32,
               proprio=8, chunk=(8, 7), latents=(4, 64), intervention=True, terminated=False, **over) -> dict:
    """A §3 transition map; `over` replaces any field (or adds one) as it goes on the wire."""
    rng = np.random.default_rng(abs(seq))
    z = None if latents is None else ndarray(rng.normal(size=latents).astype("<f2"))
    m = {
        "v": 1, "type": "transition", "actor_id": actor_id, "epoch": epoch, "seq": seq, "episode": episode,
        "step": step, "policy_version": 0, "intervention": intervention,
        "images": {c: ndarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for c in cameras},
        "proprio": ndarray(np.full(proprio, seq, "<f4")), "action": ndarray(rng.uniform(-1, 1, chunk).astype("<f4")),
        "latents": z, "latent_len": 0 if latents is None else latents[0], "reward": 1.0 if terminated else -0.05,
        "terminated": terminated, "truncated": False, "t_obs": time.time(), "t_sent": time.time(),
    }
    m.update(over)
    return m


def pack(m) -> bytes:
    return msgpack.packb(m, use_bin_type=True)


def ext_hook(code: int, data: bytes):
    if code == 1:
        n = data[0]
        dt = data[1 : 1 + n].decode()
        ndim = data[1 + n]
        shape = struct.unpack_from(f"<{ndim}I", data, 2 + n)
        return np.frombuffer(data, dt, offset=2 + n + 4 * ndim).reshape(shape)
    return msgpack.ExtType(code, data)


class Client:
    """One DEALER connection (§1), CURVE with the key pair in keys/actors/<actor_id>.key_secret (§7)."""

    def __init__(self, port: int, keys_dir, actor_id: str, epoch: int = 1):
        self.actor_id, self.epoch = actor_id, epoch
        self.ctx = zmq.Context()
        s = self.sock = self.ctx.socket(zmq.DEALER)
        s.linger = 0
        pub, sec = zmq.auth.load_certificate(f"{keys_dir}/actors/{actor_id}.key_secret")
        s.curve_publickey, s.curve_secretkey = pub, sec
        s.curve_serverkey, _ = zmq.auth.load_certificate(f"{keys_dir}/learner.key")
        s.connect(f"tcp://127.0.0.1:{port}")
        self.session = 7
        self.got: list[dict] = []  # everything the learner sent, decoded, in order

    def send(self, m) -> None:
        self.sock.send(m if isinstance(m, bytes) else pack(m))

    def heartbeat(self, **over) -> None:
        hb = {"v": 1, "type": "heartbeat", "role": "actor", "sender": self.actor_id, "session": self.session,
              "t": time.time(), "policy_version": 0, "epoch": self.epoch}
        self.send({**hb, **over})

    def poll(self, timeout_s: float) -> list[dict]:
        """Read for `timeout_s`; returns what came (also appended to `got`)."""
        out, end = [], time.monotonic() + timeout_s
        while (left := end - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000) + 1):
                m = msgpack.unpackb(self.sock.recv(), raw=False, ext_hook=ext_hook, strict_map_key=False)
                out.append(m)
        self.got += out
        return out

    def wait(self, pred, timeout_s: float = 10.0) -> dict | None:
        """The first message (already received or arriving within `timeout_s`) for which `pred` holds."""
        for m in self.got:
            if pred(m):
                return m
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for m in self.poll(0.05):
                if pred(m):
                    return m
        return None

    def acked(self, seq: int, epoch: int | None = None) -> bool:
        e = self.epoch if epoch is None else epoch
        return any((m["type"] == "ack" and m["epoch"] == e and any(lo <= seq <= hi for lo, hi in m["ranges"]))
                   or (m["type"] == "heartbeat" and m["epoch"] == e and m.get("committed", -1) >= seq)
                   for m in self.got)

    def close(self) -> None:
        self.ctx.destroy(0)


class Actor:
    """§8's minimal actor: numbers its transitions, keeps every unacknowledged one (in memory: the tests kill
    the learner, not this), resends them when the learner's session changes or after `resend_s`, keeps the
    newest weights whose sha256 matches, and records every weights message it was sent."""

    def __init__(self, client: Client, steps_per_episode: int = 10, resend_s: float = 2.0):
        self.c, self.n, self.resend_s = client, steps_per_episode, resend_s
        self.next_seq = 0
        self.unacked: dict[int, tuple[bytes, float]] = {}
        self.sent: list[int] = []
        self.weights: list[tuple[int, str, int]] = []  # (version, sha256, meta["updates"]) as they came
        self.version = 0
        self.session: int | None = None

    def send_next(self) -> None:
        s = self.next_seq
        ep, st = divmod(s, self.n)
        wire = pack(transition(self.c.actor_id, self.c.epoch, s, episode=ep, step=st, intervention=ep % 2 == 0,
                               terminated=st == self.n - 1))
        self.c.send(wire)
        self.unacked[s] = (wire, time.monotonic())
        self.sent.append(s)
        self.next_seq += 1

    def pump(self, timeout_s: float = 0.05) -> None:
        import hashlib

        self.c.heartbeat(policy_version=self.version, next_seq=self.next_seq,
                         first_unacked=min(self.unacked, default=self.next_seq))
        for m in self.c.poll(timeout_s):
            if m["type"] == "ack":
                for lo, hi in m["ranges"]:
                    for s in [s for s in self.unacked if lo <= s <= hi]:
                        del self.unacked[s]
            elif m["type"] == "heartbeat":
                for s in [s for s in self.unacked if s <= m["committed"]]:
                    del self.unacked[s]
                if self.session is not None and m["session"] != self.session:
                    self.resend(lambda at: True)
                self.session = m["session"]
            elif m["type"] == "weights" and hashlib.sha256(m["adapter"]).hexdigest() == m["sha256"]:
                self.weights.append((m["version"], m["sha256"], m["meta"].get("updates", -1)))
                self.version = max(self.version, m["version"])
            elif m["type"] == "reject":
                self.unacked.pop(m["seq"], None)
        now = time.monotonic()
        self.resend(lambda at: now - at > self.resend_s)

    def resend(self, due) -> None:
        for s, (wire, at) in list(self.unacked.items()):
            if due(at):
                self.c.send(wire)
                self.unacked[s] = (wire, time.monotonic())
