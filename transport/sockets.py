"""ZeroMQ plumbing shared by both links: socket options, handshake-event logging, a wake-up pipe."""

from __future__ import annotations

import logging
import secrets
import threading
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

ZAP_DOMAIN = "lastr1"
MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED
)


def new_session() -> int:
    return secrets.randbits(63)


def common_options(sock: zmq.Socket, heartbeat_s: float, liveness_timeout_s: float, max_bytes: int) -> None:
    sock.linger = 0
    # ZMTP pings find a dead peer (power cut, cable pulled) that TCP alone would notice only after minutes.
    sock.heartbeat_ivl = int(heartbeat_s * 1000)
    sock.heartbeat_timeout = int(liveness_timeout_s * 1000)
    sock.maxmsgsize = max_bytes


class Waker:
    """Lets other threads wake a thread blocked in zmq.Poller.poll (sockets themselves are not thread-safe)."""

    def __init__(self, ctx: zmq.Context):
        addr = f"inproc://wake-{secrets.token_hex(8)}"
        self.rx = ctx.socket(zmq.PAIR)
        self.rx.bind(addr)
        self._tx = ctx.socket(zmq.PAIR)
        self._tx.connect(addr)
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            if self._tx.closed:
                return
            try:
                self._tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:  # already plenty of wake-ups pending
                pass

    def drain(self) -> None:
        try:
            while True:
                self.rx.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        with self._lock:
            self._tx.close(0)
        self.rx.close(0)


class Throttled:
    """A logger that says a recurring problem a few times a minute, then how often it kept happening."""

    def __init__(self, log: logging.Logger, every_s: float = 10.0, burst: int = 3):
        self.log, self.every_s, self.burst = log, every_s, burst
        self._win: dict[str, list] = {}  # key → [window start, count]

    def __call__(self, level: int, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        w = self._win.setdefault(key, [now, 0])
        if now - w[0] > self.every_s:
            if w[1] > self.burst:
                self.log.log(level, "(%d more like: %s)", w[1] - self.burst, key)
            w[0], w[1] = now, 0
        w[1] += 1
        if w[1] <= self.burst:
            self.log.log(level, msg, *args)


def monitor_event(mon: zmq.Socket) -> tuple[int, int] | None:
    try:
        ev = recv_monitor_message(mon, zmq.NOBLOCK)
    except zmq.Again:
        return None
    return ev["event"], ev["value"]
