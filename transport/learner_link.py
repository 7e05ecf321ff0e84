"""The learner's end of the wire: one ROUTER socket that every actor connects to.

    link = LearnerLink(cfg.transport, state_path=run_dir / "wire_state.json")
    while training:
        batch = link.recv(timeout_s=0.0)       # validated, duplicate-free transitions
        buffer.add(batch); buffer.save()       # persist first ...
        link.ack(batch)                        # ... then let the actors drop them from their spools
        link.publish_weights(Weights.create(adapter_bytes, version))
    link.actors()                              # who is alive, what weights they hold, their backlog

Exactly once across a learner restart: with `state_path` the link saves which (actor, epoch, seq) are
acknowledged at every `ack()`. A learner that checkpoints its replay buffer itself should instead save
`link.dedup_state()` inside that checkpoint (taken after the last `recv()` whose transitions the checkpoint
holds) and pass it back as `LearnerLink(cfg, dedup_state=...)`; then nothing is lost or doubled even when the
learner dies between saving and acknowledging.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeGuard

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from lastr1.configs.transport import TransportConfig
from lastr1.files import save_json
from lastr1.transport import curve_keys
from lastr1.transport.dedup import Dedup
from lastr1.transport.errors import InvalidMessage, TransportError
from lastr1.transport.messages import (
    MAX_U63,
    NAME,
    Ack,
    Heartbeat,
    Reject,
    Telemetry,
    Transition,
    Weights,
    decode,
    encode,
)
from lastr1.transport.sockets import (
    MONITOR_EVENTS,
    ZAP_DOMAIN,
    Throttled,
    Waker,
    common_options,
    monitor_event,
    new_session,
    tune_malloc,
)

log = logging.getLogger(__name__)
_BATCH = 32  # messages handled per loop turn before acks and weights get their turn (keeps acks flowing)


@dataclass
class ActorInfo:
    actor_id: str
    last_seen: float  # time.time() of its last message
    alive: bool  # heard from within transport.liveness_timeout_s
    address: str
    epoch: int = 0
    policy_version: int = 0  # newest weights version it holds
    next_seq: int = 0
    unacked: int = 0  # its backlog, as its last heartbeat said
    spool_bytes: int = 0
    received: int = 0  # transitions accepted from it by this learner process
    duplicates: int = 0


def _u63(v) -> TypeGuard[int]:
    return type(v) is int and 0 <= v <= MAX_U63


class _Allow:
    """ZAP credentials callback: the allow-list is the public keys in keys/actors/."""

    def __init__(self, allowed: dict[bytes, str], throttled: Throttled):
        self.allowed, self.throttled = allowed, throttled

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed
        if not ok:
            self.throttled(logging.WARNING, "unknown key", "refused a connection with CURVE key %s: not in "
                           "keys/actors/ (add the actor's public key there and restart the learner)", key.decode())
        return ok


class _Authenticator(ThreadAuthenticator):
    def __init__(self, ctx, allowed: dict[bytes, str]):
        super().__init__(ctx, log=logging.getLogger("lastr1.transport.zap"))
        self._names = allowed

    def curve_user_id(self, client_public_key: bytes) -> str:
        # The ZAP User-Id arrives on every message: it binds each message to the actor that holds the key.
        return self._names.get(z85.encode(client_public_key), "")


class LearnerLink:
    def __init__(
        self,
        cfg: TransportConfig,
        *,
        keys_dir: str | Path | None = None,
        bind_host: str | None = None,
        port: int | None = None,
        dedup_state: dict | None = None,
        state_path: str | Path | None = None,
        check_shapes: Callable[[dict], list[str]] | None = None,
    ):
        if dedup_state is not None and state_path is not None:
            raise ValueError("give dedup_state (your own checkpoint) or state_path (a file the link keeps), not both")
        self.cfg = cfg
        # The learner's verdict on the layout an actor declares in its heartbeats: every mismatch, named.
        self._check_shapes = check_shapes
        if cfg.tune_malloc:
            tune_malloc()
        self._state_path = Path(state_path) if state_path is not None else None
        if self._state_path is not None and self._state_path.is_file():
            dedup_state = json.loads(self._state_path.read_text())
        base = Dedup.from_dict(dedup_state)
        # seen: accepted off the socket; delivered: returned by recv(); committed: acknowledged (persisted).
        self._seen, self._delivered, self._committed = base, base.copy(), base.copy()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inbox: deque[Transition] = deque()
        self._stats: deque[Telemetry] = deque(maxlen=1000)
        self._cmds: deque[tuple] = deque()
        self._actors: dict[str, ActorInfo] = {}
        self._last_seen: dict[str, float] = {}  # monotonic
        self._routes: dict[str, bytes] = {}
        self._weights: tuple[int, bytes] | None = None
        self._weights_sent: dict[str, tuple[int, float]] = {}
        self.session = new_session()
        self.rejected = self.duplicates = self.dropped_busy = self.dropped_window = 0
        self._throttled = Throttled(log)
        self._closed = threading.Event()
        self._error: BaseException | None = None
        self._ctx = zmq.Context(1)
        self._auth = None
        kd = Path(keys_dir or cfg.keys_dir)
        host = bind_host or cfg.bind_host
        try:
            sock = self._ctx.socket(zmq.ROUTER)
            # 2x: an oversized message is read and refused with a logged reason; far beyond is cut at the socket.
            common_options(sock, cfg.heartbeat_s, cfg.liveness_timeout_s, 2 * cfg.max_message_bytes)
            if cfg.insecure:
                log.warning("transport.insecure: the learner accepts plain TCP on %s from anyone who can reach it. "
                            "Use only on a trusted loopback.", host)
            else:
                public, secret = curve_keys.learner_pair(kd)
                allowed = curve_keys.allowed_actors(kd)
                self._curve_names = allowed
                self._auth = _Authenticator(self._ctx, allowed)
                self._auth.start()
                self._auth.configure_curve_callback(ZAP_DOMAIN, _Allow(allowed, self._throttled))
                sock.curve_server, sock.curve_publickey, sock.curve_secretkey = True, public, secret
                sock.zap_domain = ZAP_DOMAIN.encode()
            p = cfg.port if port is None else port
            sock.bind(f"tcp://{host}:{p or '*'}")
        except zmq.ZMQError as e:
            self._shutdown()
            raise TransportError(f"cannot listen on {host}:{port or cfg.port}: {e}",
                                 hint="another learner running? change transport.port / transport.bind_host") from None
        except BaseException:
            self._shutdown()
            raise
        self.port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self._sock = sock
        self._waker = Waker(self._ctx)
        self._thread = threading.Thread(target=self._run, name="LearnerLink", daemon=True)
        self._thread.start()
        log.info("learner link listening on %s:%d (%s)", host, self.port, "insecure" if cfg.insecure else "CurveZMQ")

    # --- the learner's side ---------------------------------------------------------------------------------

    def recv(self, timeout_s: float = 0.0, max_n: int | None = None) -> list[Transition]:
        """Transitions not delivered before (in arrival order; s' comes from the same actor's next step).
        Waits up to `timeout_s` for the first one. Call `ack` once they are persisted."""
        with self._cond:
            if not self._inbox and timeout_s > 0:
                self._cond.wait_for(lambda: self._inbox or self._closed.is_set() or self._error, timeout_s)
            if self._error is not None and not self._inbox:
                raise TransportError(f"the learner link's I/O thread died: {self._error!r}")
            n = len(self._inbox) if max_n is None else min(max_n, len(self._inbox))
            out = [self._inbox.popleft() for _ in range(n)]
            for t in out:
                self._delivered.add(t.actor_id, t.epoch, t.seq)
        return out

    def ack(self, transitions: Iterable[Transition]) -> None:
        """These are persisted: record that (and, with `state_path`, save it) before the actors are told."""
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for t in transitions:
            groups[(t.actor_id, t.epoch)].append(t.seq)
        if not groups:
            return
        with self._save_lock:
            with self._lock:
                for (a, e), seqs in groups.items():
                    for s in seqs:
                        self._committed.add(a, e, s)
                state = self._committed.to_dict() if self._state_path is not None else None
            if state is not None and self._state_path is not None:
                save_json(self._state_path, state)
        for (a, e), seqs in groups.items():
            self._cmds.append(("ack", a, e, seqs))
        self._waker.wake()

    def refuse(self, t: Transition, reason: str) -> None:
        """A delivered transition the learner will never store (e.g. its shapes do not fit the learner's
        schema): count it as handled and tell its actor, which stops resending it and reports `reason`."""
        self._refused(t.actor_id, t.epoch, t.seq)
        self._cmds.append(("reject", t.actor_id, t.epoch, t.seq, reason))
        self._waker.wake()

    def dedup_state(self) -> dict:
        """Every (actor, epoch, seq) recv() has returned, as a small JSON-able dict, for your checkpoint."""
        with self._lock:
            return self._delivered.to_dict()

    def publish_weights(self, weights: Weights) -> None:
        """Send to every live actor now and to any other as soon as it reports an older version."""
        if hashlib.sha256(weights.adapter).hexdigest() != weights.sha256:
            raise ValueError("weights.sha256 does not match the adapter bytes (use Weights.create)")
        if self._weights is not None and weights.version <= self._weights[0]:
            raise ValueError(f"weights version {weights.version} is not above the published {self._weights[0]}")
        payload = encode(weights)
        if len(payload) > self.cfg.max_weights_bytes:
            raise ValueError(f"weights of {len(payload)} bytes exceed transport.max_weights_bytes")
        self._weights = (weights.version, payload)
        self._cmds.append(("weights",))
        self._waker.wake()

    def send_stats(self, stats: Telemetry) -> None:
        stats.sender, stats.t = "learner", stats.t or time.time()
        self._cmds.append(("stats", encode(stats)))
        self._waker.wake()

    def stats(self) -> list[Telemetry]:
        """Telemetry received from actors since the last call (at most the newest 1000)."""
        out = []
        while self._stats:
            out.append(self._stats.popleft())
        return out

    def actors(self) -> dict[str, ActorInfo]:
        now = time.monotonic()
        return {
            a: replace(i, alive=now - self._last_seen[a] < self.cfg.liveness_timeout_s)
            for a, i in list(self._actors.items())
        }

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._waker.wake()
        self._thread.join()
        with self._cond:
            self._cond.notify_all()
        self._waker.close()
        self._shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _shutdown(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._ctx.destroy(0)

    # --- the I/O thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        mon = sock.get_monitor_socket(MONITOR_EVENTS)
        poller = zmq.Poller()
        for s in (sock, self._waker.rx, mon):
            poller.register(s, zmq.POLLIN)
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(int(1000 * self.cfg.heartbeat_s)))
                if self._waker.rx in events:
                    self._waker.drain()
                if mon in events:
                    self._on_monitor(mon)
                for _ in range(_BATCH):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_frames(sock, frames)
                    except Exception:  # noqa: BLE001 — one bad message must never stop the learner's intake
                        self.rejected += 1
                        log.exception("error handling a message; dropped it, still serving")
                self._run_cmds(sock)
                self._check_liveness()
            self._run_cmds(sock)  # acks given before close() still go out
        except BaseException as e:  # noqa: BLE001 — surfaces in recv(), never vanishes with the thread
            self._error = e
            log.exception("LearnerLink I/O thread died; recv() will raise from now on")
            with self._cond:
                self._cond.notify_all()
        finally:
            sock.disable_monitor()
            mon.close(0)
            sock.close(200)  # let the last acks out

    def _reject(self, sock, route: bytes, peer: str, reason: str, env: dict | None = None,
                key_actor: str | None = None):
        self.rejected += 1
        self._throttled(logging.WARNING, f"reject:{reason[:60]}", "rejected a message from %s: %s", peer or "?", reason)
        env = env or {}
        a, e, s = env.get("actor_id"), env.get("epoch"), env.get("seq")
        # An invalid transition whose stream and seq can be read is answered (§2): the actor would otherwise
        # resend it forever. Anything else is dropped; a reject is only ever sent with fields the spec allows.
        if env.get("type") != "transition" or not (isinstance(a, str) and NAME.match(a) and _u63(e) and _u63(s)):
            return
        if key_actor is not None and a != key_actor:
            return  # we cannot tell that actor anything about a stream it does not own
        self._refused(a, e, s)
        self._send(sock, route, encode(Reject(a, e, s, reason)))

    def _refused(self, a: str, e: int, s: int) -> None:
        """Count a refused seq as handled so its stream's watermark moves on, if it is one a known stream's
        window holds; any other is not remembered (the actor's `first_unacked` moves the watermark past it)."""
        with self._lock:
            for d in (self._seen, self._delivered, self._committed):
                if (a, e) in d.streams:
                    d.add(a, e, s)

    def _on_frames(self, sock, frames) -> None:
        route = frames[0].bytes
        if len(frames) != 2:
            return self._reject(sock, route, "", f"expected one frame per message, got {len(frames) - 1}")
        f = frames[1]
        peer = f.get("Peer-Address") or ""
        key_actor = None if self.cfg.insecure else f.get("User-Id")
        try:
            msg = decode(f.buffer, self.cfg.max_message_bytes)
        except InvalidMessage as e:
            return self._reject(sock, route, peer, e.reason, e.envelope, key_actor)
        if isinstance(msg, Transition):
            sender = msg.actor_id
        elif isinstance(msg, Telemetry) or (isinstance(msg, Heartbeat) and msg.role == "actor"):
            sender = msg.sender
        else:
            return self._reject(sock, route, peer, f"actors do not send {msg.TYPE} messages")
        if key_actor is not None and sender != key_actor:
            return self._reject(sock, route, peer,
                                f"sender {sender!r} does not own the key keys/actors/{key_actor}.key")
        self._routes[sender] = route
        self._seen_actor(sender, peer)
        if isinstance(msg, Transition):
            self._on_transition(sock, route, msg)
        elif isinstance(msg, Heartbeat):
            self._on_heartbeat(sock, route, msg)
        else:
            self._stats.append(msg)

    def _seen_actor(self, a: str, peer: str) -> None:
        info = self._actors.get(a)
        if info is None or not info.alive:
            log.info("actor %s %s (%s)", a, "connected" if info is None else "is back", peer)
        if info is None:
            info = self._actors[a] = ActorInfo(a, 0.0, True, peer)
        info.last_seen, info.alive, info.address = time.time(), True, peer
        self._last_seen[a] = time.monotonic()

    def _on_transition(self, sock, route: bytes, t: Transition) -> None:
        a, e, s = t.actor_id, t.epoch, t.seq
        info = self._actors[a]
        with self._cond:
            if (a, e, s) in self._committed:
                reack = True
            elif (a, e, s) in self._seen:
                reack = False  # received, not yet persisted: its ack comes when the learner persists it
            elif not self._seen.fits(a, e, s):
                # Far beyond what this stream has delivered (or an epoch older than every one kept): not
                # remembered, not acknowledged. An honest actor's heartbeat moves the watermark up to its
                # first_unacked, and its resend brings the seq back.
                self.dropped_window += 1
                self._throttled(logging.WARNING, f"window:{a}", "dropped %s epoch %d seq %d unacknowledged: "
                                "outside the window above that stream's watermark %d", a, e, s,
                                self._seen.watermark(a, e))
                return
            elif len(self._inbox) >= self.cfg.recv_queue:
                self.dropped_busy += 1
                self._throttled(logging.WARNING, "busy", "the learner is not taking transitions (recv_queue=%d full); "
                                "dropping unacknowledged, the actors will resend", self.cfg.recv_queue)
                return
            else:
                self._seen.add(a, e, s)
                self._inbox.append(t)
                info.received += 1
                self._cond.notify()
                return
        self.duplicates += 1
        info.duplicates += 1
        if reack:
            self._send(sock, route, encode(Ack.of(a, e, [s])))

    def _on_heartbeat(self, sock, route: bytes, hb: Heartbeat) -> None:
        a, e = hb.sender, hb.epoch
        info = self._actors[a]
        info.epoch, info.policy_version, info.next_seq = e, hb.policy_version, hb.next_seq
        info.unacked, info.spool_bytes = hb.unacked, hb.spool_bytes
        with self._lock:
            if hb.first_unacked > 0:
                # The actor will never send a seq below first_unacked again (acked, or lost before it was
                # spooled in a crash): count them as handled so the watermark does not wait for them forever.
                for d in (self._seen, self._delivered, self._committed):
                    d.advance(a, e, hb.first_unacked - 1)
            received, committed = self._seen.watermark(a, e), self._committed.watermark(a, e)
        refused = ""
        if hb.shapes is not None and self._check_shapes is not None:
            refused = "; ".join(self._check_shapes(hb.shapes))
            if refused:
                self._throttled(logging.ERROR, f"shapes:{a}", "actor %s declares a layout that does not fit this "
                                "learner: %s", a, refused)
        w = self._weights
        reply = Heartbeat(role="learner", sender="learner", session=self.session, t=time.time(),
                          policy_version=w[0] if w else 0, epoch=e, received=received, committed=committed,
                          refused=refused)
        self._send(sock, route, encode(reply))
        if w is not None and hb.policy_version < w[0]:
            version, at = self._weights_sent.get(a, (0, -1e9))
            if version < w[0] or time.monotonic() - at > self.cfg.weights_resend_s:
                self._send_weights(sock, a)

    def _send_weights(self, sock, a: str) -> None:
        assert self._weights is not None, "nothing published yet"
        version, payload = self._weights
        self._send(sock, self._routes[a], payload)
        self._weights_sent[a] = (version, time.monotonic())
        log.info("sent weights v%d to %s", version, a)

    def _send(self, sock, route: bytes, payload: bytes) -> None:
        try:
            sock.send_multipart([route, payload], zmq.NOBLOCK)
        except zmq.Again:  # that actor's pipe is full; acks and weights are recovered through heartbeats
            pass

    def _run_cmds(self, sock) -> None:
        acks: dict[tuple[str, int], list[int]] = defaultdict(list)
        while self._cmds:
            cmd = self._cmds.popleft()
            if cmd[0] == "ack":
                acks[(cmd[1], cmd[2])] += cmd[3]
            elif cmd[0] == "weights":
                for a, info in self.actors().items():
                    if info.alive and a in self._routes:
                        self._send_weights(sock, a)
            elif cmd[0] == "reject":
                if cmd[1] in self._routes:  # else it resends after reconnecting and is refused again
                    self._send(sock, self._routes[cmd[1]], encode(Reject(*cmd[1:])))
            elif cmd[0] == "stats":
                for a, info in self.actors().items():
                    if info.alive and a in self._routes:
                        self._send(sock, self._routes[a], cmd[1])
        for (a, e), seqs in acks.items():
            if a in self._routes:  # else it learns from our heartbeat replies (committed watermark)
                self._send(sock, self._routes[a], encode(Ack.of(a, e, seqs)))

    def _check_liveness(self) -> None:
        now = time.monotonic()
        for a, info in self._actors.items():
            if info.alive and now - self._last_seen[a] > self.cfg.liveness_timeout_s:
                info.alive = False
                log.warning("actor %s silent for %.0f s", a, now - self._last_seen[a])

    def _on_monitor(self, mon) -> None:
        while (ev := monitor_event(mon)) is not None:
            kind, _ = ev
            if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._throttled(logging.WARNING, "handshake", "a CURVE handshake failed: a peer that does not know "
                                "this learner's public key (keys/learner.key), or one running with transport.insecure")
