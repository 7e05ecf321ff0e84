"""The actor↔learner wire (design §3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TransportConfig:
    learner_host: str = "127.0.0.1"
    # Actor → learner transitions/heartbeats/stats; learner → actor weights and acks.
    port: int = 5555
    weights_port: int = 5556
    # CurveZMQ key folder made by `lastr1 keys`. Plain TCP only with insecure: true (loopback tests).
    keys_dir: str = "keys"
    insecure: bool = False
    # Images cross the wire as raw uint8 or as JPEG of this quality (0 = raw).
    jpeg_quality: int = 0
    max_message_bytes: int = 64 * 1024 * 1024
    send_queue: int = 256
    # Unacknowledged transitions kept on disk so an actor restart or a learner outage loses nothing.
    spool_dir: str = "spool"
    spool_max_bytes: int = 4 * 1024**3
    heartbeat_s: float = 1.0
    # An actor silent for this long is reported as gone.
    liveness_timeout_s: float = 5.0
