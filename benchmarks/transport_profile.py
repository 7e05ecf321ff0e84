"""Where a transition's time goes on our wire (benchmarks/transport.py's path, one setting): each thread
(the actor's caller and I/O thread, the learner's I/O thread) runs under cProfile while the actor sends as fast
as the window allows; prints one JSON line of milliseconds per transition by stage (cProfile's own time, so
with the profiler's overhead and, on a loaded machine, the waits for the GIL and a core).

    python benchmarks/transport_profile.py [--curve on|off] [--seconds 3]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import tempfile
import time

import transport as bench

# stage → substrings of "file:function" in cProfile's table
STAGES = {
    "spool_write": ["posix.writev", "{built-in method posix.writev}"],
    "zmq_send": ["socket.py:send"],
    "zmq_recv": ["recv_multipart"],
    "encode": ["codec.py:_parts", "codec.py:packb", "{method 'join' of 'bytes' objects}"],
    "validate": ["messages.py:from_wire", "messages.py:_array", "messages.py:_finite", "messages.py:_images"],
    "decode": ["codec.py:unpackb", "codec.py:_unpack_array", "codec.py:_pairs"],
    "idle": ["poll.py:poll", "time.sleep", "lock' objects"],
}


def _profiled(cls, out: str):
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


def learner(root: str, curve: bool, tmp: str, conn) -> None:
    import logging

    from lastr1.transport.learner_link import LearnerLink

    logging.basicConfig(level=logging.ERROR)
    _profiled(LearnerLink, f"{tmp}/learner_io.prof")
    link = LearnerLink(bench._cfg(root, curve, 0))
    conn.send(link.port)
    n = 0
    while not conn.poll():
        batch = link.recv(0.05)
        n += len(batch)
        link.ack(batch)
    link.close()
    conn.recv()
    conn.send(n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--curve", choices=["on", "off"], default="on")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    from lastr1.transport import curve_keys
    from lastr1.transport.actor_link import ActorLink

    curve = args.curve == "on"
    tmp = tempfile.mkdtemp(prefix="lastr1-prof-")
    root = f"{tmp}/wire"
    curve_keys.generate(f"{root}/keys", ["actor0"])
    _profiled(ActorLink, f"{tmp}/actor_io.prof")
    here, there = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=learner, args=(root, curve, tmp, there), daemon=True)
    proc.start()
    sender = bench.Ours(root, curve, 0, here.recv(), bench.make_transition())
    sender.burst(time.time() + 0.5)  # warm-up: handshake, page cache
    sender.settle()
    first = sender.link._next_seq
    p = cProfile.Profile()
    p.enable()
    t0 = time.time()
    sender.burst(t0 + args.seconds)
    sender.settle()
    dt = time.time() - t0
    p.disable()
    p.dump_stats(f"{tmp}/actor_main.prof")
    n = sender.link._next_seq - first
    sender.close()
    here.send("stop")
    total = here.recv()
    proc.join(10)
    # The I/O threads' profiles include the warm-up's transitions too: per transition over all they moved.
    print(json.dumps({
        "curve": args.curve, "transitions_per_s": round(n / dt, 1), "transitions": total,
        "ms_per_transition": {"actor_caller": _stages(f"{tmp}/actor_main.prof", n),
                              "actor_io": _stages(f"{tmp}/actor_io.prof", total),
                              "learner_io": _stages(f"{tmp}/learner_io.prof", total)},
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
