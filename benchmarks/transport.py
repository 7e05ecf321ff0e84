"""Transitions/s and one-way latency of the actor→learner wire over loopback TCP, beside (a) raw ZeroMQ moving
pre-serialised bytes of the same size with the same security, (b) pickle + lz4 over ZeroMQ (HIL-SERL's
transport) and (c) the spool-and-ack floor (`Floor`: raw plus each payload written to an on-disk spool before
it is sent and the receiver's acks read back: what never losing a transition costs at the least), for
CurveZMQ on/off and raw/JPEG images. Prints one JSON line.

A realistic transition: three 256×256×3 uint8 images (smooth shapes + sensor noise, so JPEG and lz4 see
camera-like data), an 8×7 float32 action chunk, 8 proprio, 8 latents × 2560 float16 (~0.63 MB raw). Our
link's figure includes everything the real one does: validation, msgpack, the write to the on-disk spool,
the learner's validation and dedup, and the ack after "persisting". Each receiver runs in its own process,
like the learner. The contenders take turns in short bursts (3 rounds) so load from other processes hits
them alike; throughput = transitions received inside the bursts / burst time, with at most WINDOW in flight.
A burst ends once its receiver has processed everything sent (raw senders have no flow control: their backlog
would otherwise run into the next contender's burst). Each burst starts from an empty pipe, and our link takes
0.2-0.6 s on a loaded 2-core machine before transitions arrive at its steady rate (the caller encodes ahead of
the I/O thread to fill the window), so bursts shorter than ~2 s measure that ramp rather than the wire.
Latency = learner recv() time − actor send() time at 50 Hz. pickle+lz4 does not depend on the image
setting and is measured once per CURVE setting (raw images). Default setting = CURVE on, raw images.

    python benchmarks/transport.py [--seconds 6.0]   # ~2 min
    python benchmarks/transport.py --profile on       # ms per transition by stage and thread (CURVE on)
    python benchmarks/transport.py --threads          # CPU ms per transition per thread, without the profiler
    python benchmarks/transport.py --cpu              # CPU ms per transition of each contender, sender + receiver

On 2 cores every contender is CPU-bound (CurveZMQ encrypts and decrypts every byte), so a throughput ratio is
the inverse ratio of CPU per transition; `--cpu` shows where a contender's extra CPU is spent: in its sending
process or its receiving one. It adds two floors: `floor_copy` (the floor copying its payload once per
transition, as any sender must copy the caller's arrays, which the caller may reuse the moment send() returns)
and `floor_frames` (the floor with the transition as 7 ZeroMQ frames, one per array, instead of one).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import tempfile
import threading
import time

import numpy as np

WINDOW = 256  # transitions in flight (queued or unacknowledged; = transport.send_queue) while measuring throughput
LATENCY_HZ = 50
SETTLE = b"settle"  # a raw sender's last message of a burst; its receiver echoes it


def make_transition(seed: int = 0):
    from lastr1.transport.messages import Transition

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]

    def image(k):  # smooth shapes + sensor noise: compresses like a camera frame, not like random bytes
        rings = ((xx - 128) ** 2 + (yy - 128) ** 2) // 64 % 256
        base = np.stack([(xx * (k + 1) + yy) % 256, (yy * 2 + k * 40) % 256, rings], -1)
        return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)

    return Transition(
        episode=0, step=0, policy_version=0, intervention=False,
        images={"front": image(0), "wrist": image(1), "wrist2": image(2)},
        proprio=rng.normal(size=8).astype(np.float32), action=rng.uniform(-1, 1, (8, 7)).astype(np.float32),
        latents=rng.normal(size=(8, 2560)).astype(np.float16), latent_len=4, reward=-0.05,
        terminated=False, truncated=False, t_obs=time.time(),
    )


def wire_payload(t, jpeg: int) -> bytes:
    """`t` as our link puts it on the wire: what raw ZeroMQ and the floor send, prebuilt."""
    from lastr1.transport.messages import encode

    t_wire = t.normalised()
    t_wire.actor_id, t_wire.seq = "actor0", 0
    return encode(t_wire, jpeg)


def pickle_lz4(t):
    """HIL-SERL's way: a function making the whole dict through pickle, then lz4, fresh each call."""
    import lz4.frame

    arrays = dict(images=t.images, proprio=t.proprio, action=t.action, latents=t.latents, reward=t.reward)
    return lambda: lz4.frame.compress(pickle.dumps({**arrays, "t_sent": time.time()}, protocol=5))


def _cfg(root: str, curve: bool, jpeg: int, port: int = 0):
    from lastr1.configs.transport import TransportConfig

    return TransportConfig(keys_dir=f"{root}/keys", spool_dir=f"{root}/spool", insecure=not curve,
                           jpeg_quality=jpeg, port=port, bind_host="127.0.0.1", learner_host="127.0.0.1")


def _raw_sockets(ctx, kind, root: str, curve: bool):
    import zmq

    from lastr1.transport import curve_keys

    s = ctx.socket(kind)
    s.linger = 0
    if curve:
        if kind == zmq.ROUTER:
            s.curve_server = True
            s.curve_publickey, s.curve_secretkey = curve_keys.learner_pair(f"{root}/keys")
        else:
            s.curve_serverkey = curve_keys.learner_public(f"{root}/keys")
            s.curve_publickey, s.curve_secretkey = curve_keys.actor_pair(f"{root}/keys", "actor0")
    return s


def receiver(mode: str, root: str, curve: bool, jpeg: int, conn) -> None:
    """Runs in its own process (as the learner does). Reports receive times (and send times for ours)."""
    import logging

    import zmq

    logging.basicConfig(level=logging.ERROR)  # the insecure-mode warning is expected here

    from lastr1.transport.sockets import tune_malloc

    tune_malloc()  # every contender runs with the allocator settings our links use

    stamps = []
    cpu0 = _cpu_s()
    if mode == "ours":
        from lastr1.transport.learner_link import LearnerLink

        link = LearnerLink(_cfg(root, curve, jpeg))
        conn.send(link.port)
        while not conn.poll():
            batch = link.recv(0.05)
            now = time.time()
            stamps += [(now, t.t_sent) for t in batch]
            link.ack(batch)
        link.close()
    else:
        ctx = zmq.Context(1)
        s = _raw_sockets(ctx, zmq.ROUTER, root, curve)
        conn.send(s.bind_to_random_port("tcp://127.0.0.1"))
        top, to_ack = -1, None
        while not conn.poll():
            if s.poll(50):
                while True:
                    try:
                        ident, *parts = s.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    msg = parts[-1]
                    if len(msg) == len(SETTLE) and msg.bytes == SETTLE:  # everything sent before it is processed
                        s.send_multipart([ident, SETTLE])
                        continue
                    if mode == "floor":  # acknowledge each batch by its highest seq, as our learner does
                        top = max(top, int.from_bytes(parts[0].bytes, "little"))
                        to_ack = ident
                    if mode == "pickle_lz4":
                        import lz4.frame

                        d = pickle.loads(lz4.frame.decompress(msg.buffer))
                        stamps.append((time.time(), d["t_sent"]))
                    else:
                        stamps.append((time.time(), 0.0))
                if mode == "floor" and to_ack is not None:
                    s.send_multipart([to_ack, top.to_bytes(8, "little")])
                    to_ack = None
        ctx.destroy(0)
    cpu = _cpu_s() - cpu0
    conn.recv()
    conn.send((stamps, cpu))


def _cpu_s() -> float:
    """CPU seconds of this process, all its threads (ZeroMQ's I/O threads, which encrypt, included)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _start(mode, root, curve, jpeg):
    here, there = mp.Pipe()
    p = mp.get_context("spawn").Process(target=receiver, args=(mode, root, curve, jpeg, there), daemon=True)
    p.start()
    return p, here


def _finish(p, conn) -> tuple[list, float]:
    """The receiver's (receive time, send time) stamps and the CPU seconds it spent since it started listening."""
    conn.send("stop")
    stamps, cpu = conn.recv()
    p.join(10)
    return stamps, cpu


class Ours:
    def __init__(self, root, curve, jpeg, port, t):
        from lastr1.transport.actor_link import ActorLink

        self.t = t
        self.link = ActorLink(_cfg(root, curve, jpeg, port), "actor0", spool_dir=f"{root}/spool-{curve}-{jpeg}")

    def burst(self, until, hz=None):
        next_t = time.time()
        while time.time() < until:
            if hz is not None:
                time.sleep(max(0.0, next_t - time.time()))
                next_t += 1 / hz
            elif not self.link.wait_backlog(WINDOW, max(0.0, until - time.time())):
                continue
            self.link.send(self.t)

    def settle(self):
        self.link.wait_acked(10)

    def close(self):
        self.link.close()


class Raw:
    def __init__(self, root, curve, port, payload_fn):
        import zmq

        self.ctx = zmq.Context(1)
        self.s = _raw_sockets(self.ctx, zmq.DEALER, root, curve)
        self.s.sndhwm = WINDOW
        self.s.connect(f"tcp://127.0.0.1:{port}")
        self.payload_fn = payload_fn

    def burst(self, until):
        while time.time() < until:
            self.s.send(self.payload_fn())

    def settle(self):
        """Until the receiver has processed the whole burst: a sender without flow control leaves up to two
        high-water marks and the socket buffers queued (over a second of decrypting on a slow host), and that
        backlog would otherwise run into the next contender's window. ZeroMQ keeps a pipe's order, so the
        receiver's echo of a marker sent last says the rest is through."""
        self.s.send(SETTLE)
        if not self.s.poll(30_000):
            raise TimeoutError("the raw receiver did not drain its backlog within 30 s")
        self.s.recv()

    def close(self):
        self.ctx.destroy(0)


class Floor(Raw):
    """Raw ZeroMQ plus the least that a sender which never loses a transition must add: each payload written to an
    on-disk spool before it is sent, a sequence number, and the receiver's acks read back, with at most WINDOW
    unacknowledged (no codec, no validation, no dedup: what is left of our link once everything optional is
    gone). If this floor is below 0.8 × raw, the guarantee itself keeps any such wire below it."""

    def __init__(self, root, curve, port, payload_fn, spool: str, frames=None):
        super().__init__(root, curve, port, payload_fn)
        self.fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.seq, self.acked, self.offset = 0, -1, 0
        self.frames = frames or (lambda: [self.payload_fn()])  # the message's frames (one: the payload)

    def burst(self, until):
        import zmq

        while time.time() < until:
            if self.seq - self.acked > WINDOW:
                if self.s.poll(1, zmq.POLLIN):
                    self._acks()
                continue
            parts = self.frames()
            if self.offset > 64 << 20:  # a ring of 64 MB segments, as our spool reuses acknowledged ones
                os.lseek(self.fd, 0, os.SEEK_SET)
                self.offset = 0
            self.offset += os.writev(self.fd, parts)
            self.s.send_multipart([self.seq.to_bytes(8, "little"), *parts], copy=False)
            self.seq += 1
            self._acks()

    def _acks(self):
        import zmq

        while True:
            try:
                self.acked = max(self.acked, int.from_bytes(self.s.recv(zmq.NOBLOCK), "little"))
            except zmq.Again:
                return

    def settle(self):
        end = time.time() + 10
        while self.acked < self.seq - 1 and time.time() < end:
            if self.s.poll(10, 1):
                self._acks()

    def close(self):
        os.close(self.fd)
        super().close()


def _rate(stamps, windows) -> float:
    n = sum(any(a <= r <= b for a, b in windows) for r, _ in stamps)
    return n / sum(b - a for a, b in windows)


def bench_setting(root, curve, jpeg, seconds, t, pickled=None, rounds=3) -> dict:
    """Our link, raw ZeroMQ (and pickle+lz4) measured in alternating short bursts, so that load from other
    processes on the machine hits every contender alike."""
    payload = wire_payload(t, jpeg)
    procs = {m: _start(m, root, curve, jpeg) for m in ["ours", "raw", "floor"] + (["pickle_lz4"] if pickled else [])}
    ports = {m: conn.recv() for m, (p, conn) in procs.items()}
    senders = {"ours": Ours(root, curve, jpeg, ports["ours"], t),
               "raw": Raw(root, curve, ports["raw"], lambda: payload),
               "floor": Floor(root, curve, ports["floor"], lambda: payload, f"{root}/floor-spool-{curve}-{jpeg}")}
    if pickled:
        senders["pickle_lz4"] = Raw(root, curve, ports["pickle_lz4"], pickled)
    windows: dict[str, list] = {m: [] for m in senders}
    for snd in senders.values():  # warm-up: connections, handshakes, page cache
        snd.burst(time.time() + 0.3)
        snd.settle()
    for _ in range(rounds):
        for m, snd in senders.items():
            t0 = time.time()
            snd.burst(t0 + seconds / rounds)
            windows[m].append((t0, time.time()))
            snd.settle()
    t_lat = time.time()
    senders["ours"].burst(t_lat + 2.0, hz=LATENCY_HZ)  # steady rate well below capacity: no queueing
    senders["ours"].settle()
    for snd in senders.values():
        snd.close()
    stamps = {m: _finish(p, conn)[0] for m, (p, conn) in procs.items()}
    lat = np.array([(r - s) * 1e3 for r, s in stamps["ours"] if s >= t_lat])
    out = {m: _rate(stamps[m], windows[m]) for m in senders}
    return dict(message_bytes=len(payload), ours=out["ours"], raw=out["raw"], floor=out["floor"],
                pickle_lz4=out.get("pickle_lz4"),
                p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)))


# stage → substrings of "file:function" in cProfile's table
STAGES = {
    "spool_write": ["posix.writev"],
    "zmq_send": ["socket.py:send"],  # on the caller: the waker
    "zmq_recv": ["recv_multipart"],
    "encode": ["codec.py:_parts", "codec.py:packb", "{method 'join' of 'bytes' objects}"],
    "validate": ["messages.py:from_wire", "messages.py:_array", "messages.py:_finite", "messages.py:_images"],
    "decode": ["codec.py:unpackb", "codec.py:_unpack_array", "codec.py:_pairs"],
    "idle": ["poll.py:poll", "time.sleep", "lock' objects"],
}


def _profiled(cls, out: str):
    import cProfile

    run = cls._run

    def wrapped(self):
        p = cProfile.Profile()
        p.enable()
        try:
            run(self)
        finally:
            p.disable()
            p.dump_stats(out)

    cls._run = wrapped


def _stages(path: str, n: int) -> dict:
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())  # tottime
    out = {k: 0.0 for k in STAGES}
    for (file, _, func), v in stats.items():
        name = f"{os.path.basename(file)}:{func}"
        for stage, keys in STAGES.items():
            if any(k in name for k in keys):
                out[stage] += v[2]
                break
    out["other"] = total - sum(out.values())
    return {k: round(v / n * 1e3, 3) for k, v in out.items()}


def _clocks(threads: dict[str, int]) -> dict[str, tuple[float, float]]:
    """name → (s on a core, s runnable but waiting for a core) of the given native thread ids and, summed, of
    ZeroMQ's I/O threads ("zmq_io": they do the CURVE encryption; pyzmq's gc context, idle, has one too), from
    Linux's schedstat; {} where there is none."""
    ids = {name: [tid] for name, tid in threads.items()}
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().startswith("ZMQbg/IO"):
                    ids.setdefault("zmq_io", []).append(int(tid))
        out = {}
        for name, tids in ids.items():
            run = wait = 0.0
            for tid in tids:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    r, w = f.read().split()[:2]
                run, wait = run + int(r) / 1e9, wait + int(w) / 1e9
            out[name] = (run, wait)
        return out
    except OSError:
        return {}


def _per_transition(before: dict, after: dict, n: int, prefix: str) -> dict:
    return {f"{prefix}_{k}": {"run": round((after[k][0] - v[0]) / n * 1e3, 3),
                              "wait": round((after[k][1] - v[1]) / n * 1e3, 3)}
            for k, v in before.items() if k in after}


def _profiled_learner(root: str, curve: bool, tmp: str, conn, with_cprofile: bool = True) -> None:
    import logging

    from lastr1.transport.learner_link import LearnerLink

    logging.basicConfig(level=logging.ERROR)
    if with_cprofile:
        _profiled(LearnerLink, f"{tmp}/learner_io.prof")
    link = LearnerLink(_cfg(root, curve, 0))
    threads = {"io": link._thread.native_id or 0, "main": threading.get_native_id()}
    before = _clocks(threads)
    conn.send(link.port)
    n = 0
    while not conn.poll():
        batch = link.recv(0.05)
        n += len(batch)
        link.ack(batch)
    cpu = _per_transition(before, _clocks(threads), max(n, 1), "learner")
    link.close()
    conn.recv()
    conn.send((n, cpu))


def profile(curve: bool, seconds: float, with_cprofile: bool = True) -> dict:
    """Where a transition's time goes on our wire (raw images): each thread (the actor's caller and I/O thread,
    the learner's I/O thread) runs under cProfile while the actor sends as fast as the window allows; ms per
    transition by stage (cProfile's own time: with the profiler's overhead and, on a loaded machine, the waits
    for the GIL and a core). cpu_ms_per_transition says which is which, per thread: "run" on a core, "wait"
    runnable but waiting for one (ZeroMQ's I/O threads included: they encrypt). A thread whose run + wait
    is ~1/transitions_per_s is the bottleneck; if none's is, the machine's cores are."""
    import cProfile

    from lastr1.transport import curve_keys
    from lastr1.transport.actor_link import ActorLink

    tmp = tempfile.mkdtemp(prefix="lastr1-prof-")
    root = f"{tmp}/wire"
    curve_keys.generate(f"{root}/keys", ["actor0"])
    if with_cprofile:
        _profiled(ActorLink, f"{tmp}/actor_io.prof")
    here, there = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_profiled_learner, args=(root, curve, tmp, there, with_cprofile),
                                           daemon=True)
    proc.start()
    sender = Ours(root, curve, 0, here.recv(), make_transition())
    sender.burst(time.time() + 0.5)  # warm-up: handshake, page cache
    sender.settle()
    first = sender.link._next_seq
    threads = {"caller": threading.get_native_id(), "io": sender.link._thread.native_id or 0}
    from zmq.utils.garbage import gc

    if gc.is_alive():  # pyzmq releases the actor's zero-copy sends on this thread
        threads["zmq_gc"] = gc.thread.native_id or 0
    clocks = _clocks(threads)
    p = cProfile.Profile()
    if with_cprofile:
        p.enable()
    t0 = time.time()
    sender.burst(t0 + seconds)
    sender.settle()
    dt = time.time() - t0
    if with_cprofile:
        p.disable()
        p.dump_stats(f"{tmp}/actor_main.prof")
    n = sender.link._next_seq - first
    cpu = _per_transition(clocks, _clocks(threads), n, "actor")
    sender.close()
    here.send("stop")
    total, learner_cpu = here.recv()
    proc.join(10)
    out: dict = {"curve": "on" if curve else "off", "transitions_per_s": round(n / dt, 1), "transitions": total}
    if with_cprofile:
        # The I/O threads' profiles include the warm-up's transitions too: per transition over all they moved.
        out["ms_per_transition"] = {"actor_caller": _stages(f"{tmp}/actor_main.prof", n),
                                    "actor_io": _stages(f"{tmp}/actor_io.prof", total),
                                    "learner_io": _stages(f"{tmp}/learner_io.prof", total)}
    # The actor's threads over the measured burst, the learner's over its life (warm-up included).
    cpu = {**cpu, **learner_cpu}
    out["cpu_ms_per_transition"] = cpu
    out["cpu_ms_per_transition_total"] = round(sum(v["run"] for v in cpu.values()), 3)
    return out


def cpu_table(seconds: float, t) -> dict:
    """Each contender alone (CURVE on, raw images): transitions/s and CPU ms a transition of its sending process
    and of its receiving one, measured from getrusage (all threads). The receiver's CPU is over all it received
    (its warm-up included); it blocks in poll() while idle, so that costs nothing."""
    from lastr1.transport import curve_keys

    root = tempfile.mkdtemp(prefix="lastr1-cpu-")
    curve_keys.generate(f"{root}/keys", ["actor0"])
    payload = wire_payload(t, 0)
    arrays = [*t.images.values(), t.proprio, t.action, t.latents]
    head = payload[: len(payload) - sum(a.nbytes for a in arrays)]  # as many bytes as the msgpack around them
    frames = [head, *(memoryview(a).cast("B") for a in arrays)]

    def contender(m, port):
        spool = f"{root}/spool-{m}"
        if m == "ours":
            return Ours(root, True, 0, port, t)
        if m == "raw":
            return Raw(root, True, port, lambda: payload)
        if m == "pickle_lz4":
            return Raw(root, True, port, pickle_lz4(t))
        if m == "floor":
            return Floor(root, True, port, lambda: payload, spool)
        if m == "floor_copy":  # bytes(memoryview) copies: a fresh 0.63 MB each transition
            return Floor(root, True, port, lambda: bytes(memoryview(payload)), spool)
        return Floor(root, True, port, lambda: payload, spool, frames=lambda: frames)  # floor_frames

    out = {}
    for m in ["raw", "floor", "floor_copy", "floor_frames", "pickle_lz4", "ours"]:
        p, conn = _start(m if m in ("raw", "pickle_lz4", "ours") else "floor", root, True, 0)
        snd = contender(m, conn.recv())
        snd.burst(time.time() + 0.5)  # warm-up: handshake, page cache
        snd.settle()
        c0, t0 = _cpu_s(), time.time()
        snd.burst(t0 + seconds)
        snd.settle()
        c1, t1 = _cpu_s(), time.time()
        snd.close()
        stamps, rcpu = _finish(p, conn)
        n = sum(1 for r, _ in stamps if r >= t0)
        sender, recv = (c1 - c0) / max(n, 1) * 1e3, rcpu / max(len(stamps), 1) * 1e3
        out[m] = {"per_s": round(n / (t1 - t0), 1), "sender_ms": round(sender, 3), "receiver_ms": round(recv, 3),
                  "total_ms": round(sender + recv, 3)}
    for m in out:
        out[m]["total_vs_raw"] = round(out[m]["total_ms"] / out["raw"]["total_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0, help="throughput window per measurement (3 bursts)")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--profile", choices=["on", "off"], help="instead: profile our wire with CURVE on/off, raw images")
    ap.add_argument("--cpu", action="store_true",
                    help="instead: CPU ms a transition of each contender alone, sender and receiver (CURVE on, raw)")
    ap.add_argument("--threads", action="store_true",
                    help="instead: CPU ms a transition per thread of our wire (CURVE on, raw images), no profiler")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    from lastr1.transport import curve_keys
    from lastr1.transport.sockets import tune_malloc

    tune_malloc()
    if args.cpu:
        res = cpu_table(args.seconds, make_transition())
        print(json.dumps({"cpu_ms_per_transition": res, "cpu_count": os.cpu_count(),
                          "load_avg_1m": round(os.getloadavg()[0], 2)}))
        return
    if args.profile or args.threads:
        res = profile(args.profile != "off", args.seconds, with_cprofile=not args.threads)
        print(json.dumps({**res, "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}))
        return

    t = make_transition()
    root = tempfile.mkdtemp(prefix="lastr1-bench-")
    curve_keys.generate(f"{root}/keys", ["actor0"])
    out: dict = {}
    pickled = pickle_lz4(t)
    for curve in (True, False):
        pickle_rate = None
        for jpeg in (0, args.jpeg_quality):
            r = bench_setting(root, curve, jpeg, args.seconds, t, pickled if not jpeg else None)
            pickle_rate = r["pickle_lz4"] or pickle_rate  # not image-dependent: measured with raw images
            out[f"curve_{'on' if curve else 'off'}_{'jpeg' if jpeg else 'raw'}"] = dict(
                message_bytes=r["message_bytes"], transitions_per_s=round(r["ours"], 1),
                raw_zmq_per_s=round(r["raw"], 1), pickle_lz4_per_s=round(pickle_rate, 1),
                spool_ack_floor_per_s=round(r["floor"], 1), ratio_floor_vs_raw=round(r["floor"] / r["raw"], 3),
                ratio_vs_raw=round(r["ours"] / r["raw"], 3), ratio_vs_pickle_lz4=round(r["ours"] / pickle_rate, 3),
                latency_p50_ms=round(r["p50"], 2), latency_p99_ms=round(r["p99"], 2),
            )
    default = out.pop("curve_on_raw")
    line = {**default, **out, "seconds_per_measurement": args.seconds, "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
