"""The learner link's duplicate-detection state under a hostile flood from one authenticated actor: 10,000
messages (valid transitions at random epochs and seqs, far ones included; invalid transitions whose stream
fields read; heartbeats claiming streams and watermarks), while a loop receives and acknowledges like the
learner. Prints one JSON line: the state's streams, seqs held above the watermarks, its size as saved JSON,
and how fast the link took the flood.

    python benchmarks/dedup_flood.py [--messages 10000]   # ~10 s
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import zmq


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    args = ap.parse_args()

    from lastr1.configs.transport import TransportConfig
    from lastr1.transport.learner_link import LearnerLink
    from lastr1.transport.messages import Heartbeat, Transition, encode

    u63 = (1 << 63) - 1
    rng = np.random.default_rng(0)
    img = {"front": np.zeros((8, 8, 3), np.uint8)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TransportConfig(insecure=True, port=0, bind_host="127.0.0.1", spool_dir=tmp, heartbeat_s=0.1)
        link = LearnerLink(cfg)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{link.port}")
        t0 = time.perf_counter()
        for i in range(args.messages):
            epoch = int(rng.choice([9, rng.integers(0, u63)]))
            seq = int(rng.choice([rng.integers(0, 50), rng.integers(0, u63)]))
            if i % 3 == 2:
                msg = encode(Heartbeat("actor", "flood", 1, time.time(), 0, epoch,
                                       first_unacked=int(rng.integers(0, 1000))))
            else:
                t = Transition(episode=0, step=0, policy_version=0, intervention=False, images=img,
                               proprio=np.zeros(8, np.float32), action=np.zeros((8, 7), np.float32), latents=None,
                               latent_len=0, reward=0.0, terminated=False, truncated=False, t_obs=time.time(),
                               actor_id="flood", epoch=epoch, seq=seq)
                msg = encode(t)
                if i % 3 == 1:  # readable stream fields, invalid message
                    msg = msg.replace(b"\xa1v\x01", b"\xa1v\x02", 1)
            sock.send(msg)
            if i % 100 == 0:
                link.ack(link.recv(0.0))
        end = time.monotonic() + 10
        while time.monotonic() < end and link.rejected + link.duplicates + link.dropped_window < args.messages // 2:
            link.ack(link.recv(0.05))
        time.sleep(0.5)
        link.ack(link.recv(0.0))
        took = time.perf_counter() - t0
        state = link.dedup_state()
        streams = state["streams"]
        print(json.dumps({
            "messages": args.messages, "streams": len(streams),
            "seqs_above_watermarks": sum(len(s["above"]) for s in streams),
            "state_json_bytes": len(json.dumps(state)), "rejected": link.rejected,
            "dropped_outside_window": link.dropped_window, "duplicates": link.duplicates,
            "messages_per_s": round(args.messages / took),
        }))
        sock.close(0)
        ctx.term()
        link.close()


if __name__ == "__main__":
    main()
