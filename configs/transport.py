"""The actor↔learner wire (design §3; protocol in docs/wire.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TransportConfig:
    # Actors connect to tcp://learner_host:port; the learner binds bind_host:port. One ROUTER/DEALER
    # connection carries everything both ways (docs/wire.md says why). Port 0 = any free port (tests).
    learner_host: str = "127.0.0.1"
    bind_host: str = "0.0.0.0"
    port: int = 5555
    # CurveZMQ key folder made by `lastr1 keys`. Plain TCP only with insecure: true (a trusted loopback test).
    keys_dir: str = "keys"
    insecure: bool = False
    # Images cross the wire as raw uint8 (0) or as JPEG of this quality (1..95): for links between hosts,
    # raw 3×256² images are 590 KB a step, JPEG 90 ~45 KB (benchmarks/transport.py).
    jpeg_quality: int = 0
    # A transition is ~0.63 MB raw (3 cameras, latents); 64 MB leaves room for big images yet stops a peer
    # from making the receiver buffer gigabytes. Weights are bigger: a LoRA r=16 adapter of a 4B VLM plus
    # heads is ~50-150 MB, so they get their own bound.
    max_message_bytes: int = 64 * 1024**2
    max_weights_bytes: int = 2 * 1024**3
    # Transitions waiting in memory for the actor's I/O thread (~25 s at 10 Hz); beyond it `send` writes to
    # the spool itself instead of dropping. The I/O thread also keeps up to this many spooled, not yet sent
    # ones in memory; a longer backlog is re-read from the spool.
    send_queue: int = 256
    # Unacknowledged transitions are kept on disk (<spool_dir>/<actor_id>/) so an actor restart or a learner
    # outage loses nothing; 4 GiB ≈ 6,800 raw transitions ≈ 11 min of a 10 Hz actor with the learner down.
    # Past it `send` raises SpoolFull rather than silently dropping operator data.
    spool_dir: str = "spool"
    spool_max_bytes: int = 4 * 1024**3
    spool_segment_bytes: int = 64 * 1024**2
    # fsync every spool write: survives power loss, not just a process crash (costs a disk flush a step).
    spool_fsync: bool = False
    heartbeat_s: float = 1.0
    # A peer silent for this long is reported as gone (and ZeroMQ drops the TCP connection to it).
    liveness_timeout_s: float = 5.0
    # A transition sent this long ago, neither acknowledged nor reported received, is sent again.
    resend_after_s: float = 5.0
    # The learner re-sends its newest weights to an actor still reporting an older version at most this often.
    weights_resend_s: float = 10.0
    # Transitions received but not yet taken by the learner's recv(); more are dropped unacknowledged (the
    # actor resends them later) so a stalled learner cannot run out of memory.
    recv_queue: int = 4096
    # Keep ~1 MB message buffers in glibc's heap instead of mmap/munmap per message: ~30 % less CPU per
    # transition on both ends (transport/sockets.py:tune_malloc). Process-wide; off leaves malloc untouched.
    tune_malloc: bool = True
