"""The actor's end of the wire.

    link = ActorLink(cfg.transport, "actor0")
    seq = link.send(transition)          # returns at once; spooled to disk, sent, resent until acknowledged
    w = link.latest_weights()            # newest verified Weights or None; never blocks
    link.send_stats(Telemetry(loop_hz=9.8))
    link.wait_backlog(256, 5.0)          # pace a fast sender: until fewer than 256 are queued or unacknowledged
    link.close()                         # flushes; whatever is unacknowledged stays in the spool

All socket work happens on one background thread; the control loop only copies its arrays and enqueues them.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq

from lastr1.configs.transport import TransportConfig
from lastr1.transport import curve_keys
from lastr1.transport.errors import InvalidMessage, SpoolFull, TransportError
from lastr1.transport.messages import NAME, Ack, Heartbeat, Reject, Telemetry, Transition, Weights, decode, encode
from lastr1.transport.sockets import (
    MONITOR_EVENTS,
    Throttled,
    Waker,
    common_options,
    monitor_event,
    new_session,
    tune_malloc,
)
from lastr1.transport.spool import Spool

log = logging.getLogger(__name__)
# Transitions moved from the queue to the spool per loop turn, so sending (and acks) never wait behind a long
# queue of JPEG encodes.
_TAKE = 8
# wait_backlog() sleeps at most this long between looks, in case a signal went astray (none should).
_WAIT_SLICE_S = 0.25


@dataclass
class Backlog:
    queued: int  # accepted by send(), not yet on disk
    unacked: int  # on disk, waiting for the learner's acknowledgement
    spool_bytes: int
    rejected: int  # refused by the learner for good (kept in <spool>/rejected/)


class _Out:
    __slots__ = ("sent_at", "mem", "queued")

    def __init__(self, mem: bytes | None = None):
        self.sent_at, self.mem, self.queued = 0.0, mem, True


class ActorLink:
    def __init__(
        self,
        cfg: TransportConfig,
        actor_id: str,
        *,
        spool_dir: str | Path | None = None,
        keys_dir: str | Path | None = None,
        host: str | None = None,
        port: int | None = None,
        close_timeout_s: float = 2.0,
    ):
        if not NAME.match(actor_id):
            raise ValueError(f"actor id {actor_id!r} must match {NAME.pattern}")
        self.cfg, self.actor_id, self.close_timeout_s = cfg, actor_id, close_timeout_s
        if cfg.tune_malloc:
            tune_malloc()
        self.endpoint = f"tcp://{host or cfg.learner_host}:{cfg.port if port is None else port}"
        kd = Path(keys_dir or cfg.keys_dir)
        # Keys load here, in the caller's thread, so a missing file is an error the user sees at start-up.
        self._curve = None if cfg.insecure else (curve_keys.learner_public(kd), *curve_keys.actor_pair(kd, actor_id))
        if cfg.insecure:
            log.warning("transport.insecure: plain TCP to %s, anyone on the network can read and forge "
                        "transitions and weights. Use only on a trusted loopback.", self.endpoint)
        self._spool = Spool(Path(spool_dir or cfg.spool_dir) / actor_id, cfg.spool_max_bytes,
                            cfg.spool_segment_bytes, cfg.spool_fsync)
        self.epoch = self._spool.epoch
        self._next_seq = self._spool.next_seq
        self._session = new_session()
        self._queue: queue.Queue[tuple[int, bytes | None, Transition | None]] = queue.Queue(cfg.send_queue)
        self._spilled: deque[int] = deque()  # seqs that send() wrote to the spool itself (queue full)
        self._send_lock = threading.Lock()
        self._weights: Weights | None = None
        self._learner_stats: Telemetry | None = None
        self._learner_seen = -1e9
        self._full: SpoolFull | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._closing = threading.Event()
        self.auth_error: str | None = None  # set while the learner refuses our key
        self.rejected = 0
        self._shapes: dict | None = None
        self._shapes_sent = False
        self._answers = 0  # learner heartbeats since the declaration first went out
        self.shapes_answered = threading.Event()  # the learner has seen the declaration (schema_error is its word)
        self.schema_error: str | None = None  # the learner's last word on the declared layout (None: it fits)
        self._throttled = Throttled(log)
        # Signalled by the I/O thread when transitions leave the backlog, so waiting for room costs no polling.
        self._progress = threading.Condition()
        self._ctx = zmq.Context(1)
        self._waker = Waker(self._ctx)
        self._thread = threading.Thread(target=self._run, name=f"ActorLink[{actor_id}]", daemon=True)
        self._thread.start()

    # --- the control loop's side ------------------------------------------------------------------------

    def send(self, t: Transition) -> int:
        """Stamp `t` with this actor's id, epoch, next seq and t_sent; returns the seq. Never waits for the
        network: raw images are encoded here (that is the one copy the caller's buffers need anyway, ~0.2 ms
        for 0.6 MB), JPEG on the I/O thread. Raises InvalidMessage for a transition the learner would refuse,
        SpoolFull when the spool is at its bound: nothing is dropped silently."""
        jpeg = self.cfg.jpeg_quality
        t = t.normalised(copy=bool(jpeg))
        t.actor_id, t.epoch, t.seq, t.t_sent = self.actor_id, self.epoch, 0, time.time()
        Transition.from_wire(t.to_wire())  # validate before a seq is spent on it
        size = sum(a.nbytes for a in (*t.images.values(), *(t.next_images or {}).values()))
        if not jpeg and size > self.cfg.max_message_bytes:
            raise InvalidMessage(f"a transition of {size} bytes exceeds transport.max_message_bytes")
        with self._send_lock:
            if self._closed or self._error is not None:
                raise TransportError(f"ActorLink is {'closed' if self._closed else 'dead: ' + repr(self._error)}")
            if self._full is not None:
                raise SpoolFull(str(self._full.args[0]), self._full.hint)
            t.seq = self._next_seq
            item = (t.seq, None if jpeg else encode(t), t if jpeg else None)
            try:
                self._queue.put_nowait(item)
            except queue.Full:  # the I/O thread is behind: to disk from here rather than drop
                self._spool.append(t.seq, item[1] or encode(t, jpeg))
                self._spilled.append(t.seq)
            self._next_seq += 1
        self._waker.wake()
        return t.seq

    def send_stats(self, stats: Telemetry) -> None:
        """Best effort: stats are not spooled and are dropped while the learner is unreachable."""
        stats.sender, stats.t = self.actor_id, stats.t or time.time()
        self._pending_stats = stats
        self._waker.wake()

    def declare(self, shapes: dict) -> None:
        """The layout this actor's transitions will have (docs/wire.md §3): sent with every heartbeat, so the
        learner can say at once, in `schema_error`, what does not fit it."""
        self._shapes = dict(shapes)
        self._shapes_sent, self._answers = False, 0
        self.shapes_answered.clear()

    def latest_weights(self) -> Weights | None:
        """The newest weights received (hash verified, version higher than any before), or None."""
        return self._weights

    def learner_stats(self) -> Telemetry | None:
        return self._learner_stats

    @property
    def connected(self) -> bool:
        """The learner answered a heartbeat within transport.liveness_timeout_s."""
        return time.monotonic() - self._learner_seen < self.cfg.liveness_timeout_s

    def backlog(self) -> Backlog:
        return Backlog(self._queue.qsize() + len(self._spilled), len(self._spool), self._spool.bytes_used,
                       self.rejected)

    def wait_backlog(self, below: int, timeout_s: float) -> bool:
        """Block until fewer than `below` transitions are queued or unacknowledged; False on timeout, or at once
        when the link is closed or dead with that many still waiting. Woken by each acknowledgement: a sender
        pacing itself to the learner this way spends nothing while it waits (polling `backlog()` every half
        millisecond cost a fast sender ~0.1 ms of CPU a transition)."""
        end = time.monotonic() + timeout_s
        with self._progress:
            while True:
                b = self.backlog()
                if b.queued + b.unacked + self._held_n < below:
                    return True
                left = end - time.monotonic()
                if left <= 0 or self._error is not None or not self._thread.is_alive():
                    return False
                self._progress.wait(min(left, _WAIT_SLICE_S))

    def wait_acked(self, timeout_s: float) -> bool:
        """Block until everything sent so far is acknowledged (tests, shutdown); False on timeout."""
        return self.wait_backlog(1, timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Spool everything queued, wait up to `timeout_s` for acknowledgements, stop. Idempotent."""
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
        if timeout_s is not None:
            self.close_timeout_s = timeout_s
        self._closing.set()
        self._waker.wake()
        self._thread.join()
        self._waker.close()
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the I/O thread ---------------------------------------------------------------------------------

    _pending_stats: Telemetry | None = None
    _held_n = 0

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 — must surface in send(), not vanish with the thread
            self._error = e
            log.exception("ActorLink I/O thread died; send() will raise from now on")
        finally:
            self._spool.close()
            self._signal_progress()

    def _signal_progress(self) -> None:
        with self._progress:  # uncontended and without waiters: a lock and a list check, once a loop turn
            self._progress.notify_all()

    def _socket(self) -> zmq.Socket:
        c = self.cfg
        s = self._ctx.socket(zmq.DEALER)
        common_options(s, c.heartbeat_s, c.liveness_timeout_s,
                       max(c.max_message_bytes, c.max_weights_bytes) + (1 << 20))
        s.immediate = True  # nothing queues for a learner that is not there; the spool holds it
        s.sndhwm = 64
        s.reconnect_ivl, s.reconnect_ivl_max = 100, 2000
        if self._curve:
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = self._curve
        return s

    def _loop(self) -> None:
        c = self.cfg
        sock = self._socket()
        mon = sock.get_monitor_socket(MONITOR_EVENTS)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(self._waker.rx, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        poller.register(sock, zmq.POLLIN)
        self._unacked: dict[int, _Out] = {s: _Out() for s in self._spool.seqs()}
        self._to_send: deque[int] = deque(self._unacked)
        self._held: list[tuple[int, bytes]] = []  # encoded, waiting for space in a full spool
        self._learner_session: int | None = None
        self._received = -1  # every seq ≤ this has reached the learner (its last heartbeat says)
        self._next_hb = next_scan = 0.0
        deadline = None
        try:
            while True:
                now = time.monotonic()
                if self._closing.is_set() and deadline is None:
                    deadline = now + self.close_timeout_s
                timeout = min(self._next_hb, next_scan, deadline or 1e18) - now
                if (not self._queue.empty() or self._spilled) and not self._held:
                    timeout = 0  # (with the spool full, waiting for the acks that free it: not a busy loop)
                poller.modify(sock, zmq.POLLIN | (zmq.POLLOUT if self._to_send else 0))
                # Rounded up: truncated, the last millisecond before a deadline polled with 0 and spun.
                events = dict(poller.poll(math.ceil(max(0.0, timeout) * 1000)))
                if self._waker.rx in events:
                    self._waker.drain()
                if mon in events:
                    self._on_monitor(mon)
                if self._recv_all(sock):
                    self._signal_progress()
                self._take_queue()
                now = time.monotonic()
                # Before the transitions: under load the pipe is always full and the heartbeat must get in.
                if now >= self._next_hb:
                    self._next_hb = now + (c.heartbeat_s if self._heartbeat(sock) else 0.05)
                self._send_pending(sock)
                if now >= next_scan:
                    self._scan_resend(now)
                    next_scan = now + min(c.resend_after_s / 2, 0.25)
                    self._spool.maintain()
                drained = self._queue.empty() and not self._spilled
                if deadline is not None and (now >= deadline or (drained and not self._unacked and not self._held)):
                    break
            while not (self._queue.empty() and not self._spilled) and not self._held:
                self._take_queue()  # close(): whatever send() accepted reaches the spool
            self._spool_past_limit()
        finally:
            if self._held:
                log.error("%d transitions could not be written to the spool %s and are LOST",
                          len(self._held), self._spool.root)
            if self._unacked:
                log.info("%d unacknowledged transitions stay in the spool %s and are resent next time",
                         len(self._unacked), self._spool.root)
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)

    def _take_queue(self) -> None:
        while self._spilled:
            self._track(self._spilled.popleft(), None)
        while self._held:
            seq, held = self._held[0]
            if not self._spool_append(seq, held):
                return
            self._held.pop(0)
            self._track(seq, None)
        self._held_n = 0
        self._full = None
        for _ in range(_TAKE):
            got = self._next_queued()
            if got is None:
                return
            seq, payload = got
            if not self._spool_append(seq, payload):
                self._held.append((seq, payload))
                self._held_n = len(self._held)
                return
            # Sent from memory while no more are waiting than the queue in front may hold: under load the
            # socket's pipe is full and a window of them waits here, and re-reading each from the spool costs a
            # 0.6 MB copy. A longer backlog (learner down) is re-read from the spool instead, so the actor's
            # memory stays bounded (by twice send_queue transitions, with the queue).
            self._track(seq, payload if len(self._to_send) < self.cfg.send_queue else None)

    def _next_queued(self) -> tuple[int, bytes] | None:
        """The next step send() queued, encoded (JPEG is encoded here, off the control thread)."""
        try:
            seq, payload, t = self._queue.get_nowait()
        except queue.Empty:
            return None
        if payload is None:
            assert t is not None, "a queued step carries its bytes or its transition"
            payload = encode(t, self.cfg.jpeg_quality)
        return seq, payload

    def _spool_past_limit(self) -> None:
        """close() with the spool full: what send() accepted (held, still queued: at most send_queue + a few)
        goes to the spool past its limit rather than nowhere, said once, and is resent next time."""
        rest = list(self._held)
        while (got := self._next_queued()) is not None:
            rest.append(got)
        if not rest:
            return
        for seq, payload in rest:
            self._spool.append(seq, payload, over_limit=True)
            self._track(seq, None)
        self._held = []
        log.warning("closing with the spool full: %d accepted transitions written past transport.spool_max_bytes "
                    "(%s) so none is lost; they are resent when the actor starts again", len(rest), self._spool.root)

    def _spool_append(self, seq: int, payload: bytes) -> bool:
        try:
            self._spool.append(seq, payload)
            return True
        except SpoolFull as e:
            if self._full is None:
                log.error("%s", e)
            self._full = e
            return False

    def _track(self, seq: int, mem: bytes | None) -> None:
        self._unacked[seq] = _Out(mem)
        self._to_send.append(seq)

    def _send_pending(self, sock: zmq.Socket) -> None:
        now = time.monotonic()
        while self._to_send:
            seq = self._to_send[0]
            out = self._unacked.get(seq)
            payload = None if out is None else (out.mem if out.mem is not None else self._spool.read(seq))
            if out is None or payload is None:  # acknowledged in the meantime
                self._to_send.popleft()
                continue
            try:
                # No copy: the bytes are immutable and ZeroMQ holds a reference until its I/O thread has encrypted
                # them (pyzmq lets go of it on its gc thread, cheaper than copying 0.6 MB from a cold buffer).
                sock.send(payload, zmq.NOBLOCK, copy=False)
            except zmq.Again:  # no learner connected, or its pipe is full: try again later
                return
            self._to_send.popleft()
            out.sent_at, out.mem, out.queued = now, None, False
        stats, self._pending_stats = self._pending_stats, None
        if stats is not None:
            try:
                sock.send(encode(stats), zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _heartbeat(self, sock: zmq.Socket) -> bool:
        with self._send_lock:  # a consistent view of what send() has handed out
            next_seq = self._next_seq
            settled = self._queue.empty() and not self._spilled
        pending = [s for s, _ in self._held]
        first = min([next_seq, *pending, *self._unacked]) if settled else 0
        w = self._weights
        hb = Heartbeat(
            role="actor", sender=self.actor_id, session=self._session, t=time.time(),
            policy_version=w.version if w else 0, epoch=self.epoch, next_seq=next_seq, first_unacked=first,
            unacked=len(self._unacked), spool_bytes=self._spool.bytes_used, shapes=self._shapes,
        )
        try:
            sock.send(encode(hb), zmq.NOBLOCK)
            self._shapes_sent |= hb.shapes is not None
            return True
        except zmq.Again:  # not connected, or the pipe is full: due again at the next turn
            return False

    def _scan_resend(self, now: float) -> None:
        """A transition sent long ago that the learner neither acknowledged nor reports as received was lost
        in transit (e.g. in a socket buffer when a connection broke): send it again."""
        for seq, out in self._unacked.items():
            if not out.queued and out.sent_at and now - out.sent_at > self.cfg.resend_after_s and seq > self._received:
                out.queued = True
                self._to_send.append(seq)

    def _requeue_all(self) -> None:
        for seq in sorted(self._unacked):
            out = self._unacked[seq]
            if not out.queued:
                out.queued = True
                self._to_send.append(seq)

    def _settle(self, seq: int) -> None:
        if self._unacked.pop(seq, None) is not None:
            self._spool.ack(seq)

    def _recv_all(self, sock: zmq.Socket) -> bool:
        """Handle what the learner sent; True if anything came (an ack, a reject or a heartbeat may have
        shrunk the backlog)."""
        c = self.cfg
        got = False
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return got
            try:
                msg = decode(frame.buffer, max(c.max_message_bytes, c.max_weights_bytes))
            except InvalidMessage as e:
                self._throttled(logging.ERROR, "bad message from learner",
                                "dropped a message from the learner: %s", e.reason)
                continue
            got = True
            if isinstance(msg, Ack) and msg.epoch == self.epoch:
                for lo, hi in msg.ranges:
                    seqs: Iterable[int]
                    if hi - lo < len(self._unacked):
                        seqs = range(lo, hi + 1)
                    else:  # a huge range: walk what we hold instead
                        seqs = [s for s in list(self._unacked) if lo <= s <= hi]
                    for s in seqs:
                        self._settle(s)
            elif isinstance(msg, Heartbeat) and msg.role == "learner":
                self._on_learner_heartbeat(msg)
            elif isinstance(msg, Weights):
                self._on_weights(msg)
            elif isinstance(msg, Reject) and msg.epoch == self.epoch and msg.seq in self._unacked:
                self._unacked.pop(msg.seq)
                self._spool.reject(msg.seq, msg.reason)
                self.rejected += 1
                log.error("the learner refused transition seq %d for good: %s (kept in %s/rejected/)",
                          msg.seq, msg.reason, self._spool.root)
            elif isinstance(msg, Telemetry):
                self._learner_stats = msg

    def _on_learner_heartbeat(self, hb: Heartbeat) -> None:
        self._learner_seen = time.monotonic()
        if hb.refused and hb.refused != self.schema_error:
            log.error("the learner refuses this actor's layout: %s", hb.refused)
        self.schema_error = hb.refused or None
        if self._shapes_sent:
            # Replies come in order, one per actor heartbeat: the second since the declaration left answers it
            # even if the first was the reply to an older heartbeat still in flight.
            self._answers += 1
            if self._answers >= 2:
                self.shapes_answered.set()
        if self._learner_session is not None and hb.session != self._learner_session:
            # A new learner process lost whatever it had received but not persisted.
            log.warning("the learner restarted; resending %d unacknowledged transitions", len(self._unacked))
            self._received = -1
            self._requeue_all()
        self._learner_session = hb.session
        if hb.epoch == self.epoch:
            self._received = hb.received
            if hb.committed >= 0 and self._unacked:
                for s in [s for s in self._unacked if s <= hb.committed]:
                    self._settle(s)  # persisted, though its ack was lost
        w = self._weights
        if w is not None and hb.policy_version < w.version:
            self._throttled(logging.WARNING, "learner behind", "the learner's newest weights are v%d but this actor "
                            "holds v%d: did the learner restart without its checkpoint?", hb.policy_version, w.version)

    def _on_weights(self, w: Weights) -> None:
        cur = self._weights
        if cur is not None and w.version <= cur.version:
            if w.version < cur.version:
                self._throttled(logging.WARNING, "old weights", "ignored weights v%d: this actor already holds v%d",
                                w.version, cur.version)
            return
        self._weights = w
        log.info("weights v%d received (%.1f MB, sha256 %s…)", w.version, len(w.adapter) / 1e6, w.sha256[:12])

    def _on_monitor(self, mon: zmq.Socket) -> None:
        while (ev := monitor_event(mon)) is not None:
            kind, _ = ev
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.auth_error = None
                self._next_hb = 0.0  # introduce ourselves now: the learner learns our route from it
                log.info("connected to the learner at %s%s", self.endpoint, "" if self._curve else " (insecure)")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.auth_error = (f"the learner at {self.endpoint} refused this actor's key: its allow-list "
                                   f"(keys/actors/*.key on the learner host) lacks actors/{self.actor_id}.key")
                self._throttled(logging.ERROR, "auth", "%s", self.auth_error)
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.auth_error = (f"handshake with {self.endpoint} failed: the peer does not hold the secret key "
                                   "matching keys/learner.key, or only one side runs with transport.insecure")
                self._throttled(logging.ERROR, "handshake", "%s", self.auth_error)
            elif kind == zmq.EVENT_DISCONNECTED:
                self._throttled(logging.INFO, "disconnected", "disconnected from the learner at %s", self.endpoint)
