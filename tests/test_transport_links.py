"""The actor and learner links on loopback TCP: real ZeroMQ sockets, real CurveZMQ keys, real process kills."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import zmq
from sim_helpers import free_port

from lastr1.configs.transport import TransportConfig
from lastr1.transport import codec, curve_keys
from lastr1.transport.actor_link import ActorLink
from lastr1.transport.errors import SpoolFull
from lastr1.transport.learner_link import LearnerLink
from lastr1.transport.messages import (
    SCHEMA_VERSION,
    Ack,
    Heartbeat,
    Reject,
    Telemetry,
    Transition,
    Weights,
    decode,
    encode,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wire") / "keys"
    curve_keys.generate(d, ["actor0", "actor1"])
    return d


@pytest.fixture
def closing():
    """Closes links and ZeroMQ contexts even when a test fails, so a failure never hangs the run."""
    things = []
    yield things.append
    for x in reversed(things):
        if isinstance(x, zmq.Context):
            x.destroy(linger=0)
        else:
            x.close()


def make_cfg(tmp_path, keydir=None, **kw) -> TransportConfig:
    base = dict(
        keys_dir=str(keydir or ""), insecure=keydir is None, spool_dir=str(tmp_path / "spool"), port=0,
        bind_host="127.0.0.1", learner_host="127.0.0.1", heartbeat_s=0.1, liveness_timeout_s=1.0,
        resend_after_s=0.5, weights_resend_s=0.5,
    )
    base.update(kw)
    return TransportConfig(**base)


def until(pred, timeout=5.0, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or pred}")


def step(i=0, side=8) -> Transition:
    return Transition(
        episode=0, step=i, policy_version=0, intervention=i % 3 == 0,
        images={"front": np.full((side, side, 3), i % 256, np.uint8)}, proprio=np.full(8, i, np.float32),
        action=np.zeros((8, 7), np.float32), latents=np.zeros((2, 4), np.float16), latent_len=2, reward=-0.05,
        terminated=False, truncated=False, t_obs=time.time(),
    )


def collect(link: LearnerLink, n: int, timeout=10.0, ack=True) -> list[Transition]:
    got: list[Transition] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        batch = link.recv(0.1)
        got += batch
        if ack:
            link.ack(batch)
    return got


def test_transitions_acks_weights_stats_and_liveness(tmp_path, keydir, closing):
    cfg = make_cfg(tmp_path, keydir)
    with LearnerLink(cfg) as learner:
        actor = ActorLink(cfg, "actor0", port=learner.port)
        closing(actor)
        for i in range(50):
            assert actor.send(step(i)) == i
        got = collect(learner, 50)
        assert [t.seq for t in got] == list(range(50)) and {t.actor_id for t in got} == {"actor0"}
        assert {t.epoch for t in got} == {actor.epoch} and [t.step for t in got] == list(range(50))
        assert got[3].images["front"][0, 0, 0] == 3 and got[3].proprio[0] == 3.0 and got[3].intervention
        assert actor.wait_acked(5) and actor.backlog().unacked == 0

        learner.publish_weights(Weights.create(b"adapter-1", 1, {"step": 10}))
        until(lambda: actor.latest_weights() is not None, what="weights v1")
        learner.publish_weights(Weights.create(b"adapter-2", 2))
        until(lambda: actor.latest_weights().version == 2, what="weights v2")
        assert actor.latest_weights().adapter == b"adapter-2"
        with pytest.raises(ValueError, match="not above"):
            learner.publish_weights(Weights.create(b"old", 2))

        actor.send_stats(Telemetry(loop_hz=9.5, values={"slow_hz": 2.0}))
        until(lambda: learner._stats, what="actor stats")
        (s,) = learner.stats()
        assert s.sender == "actor0" and s.loop_hz == 9.5 and s.values == {"slow_hz": 2.0}
        learner.send_stats(Telemetry(values={"updates": 7.0}))
        until(lambda: actor.learner_stats() is not None, what="learner stats")
        assert actor.learner_stats().values == {"updates": 7.0} and actor.connected

        until(lambda: learner.actors().get("actor0") and learner.actors()["actor0"].policy_version == 2)
        info = learner.actors()["actor0"]
        assert info.alive and info.received == 50 and info.epoch == actor.epoch
        actor.close()
        until(lambda: not learner.actors()["actor0"].alive, timeout=3, what="liveness timeout")


def test_send_returns_at_once_while_the_learner_is_down_or_stalled(tmp_path, closing):
    port = free_port()
    cfg = make_cfg(tmp_path, port=port)
    actor = ActorLink(cfg, "actor0")
    closing(actor)
    took = []
    for i in range(150):  # nobody listening
        t0 = time.perf_counter()
        actor.send(step(i, side=64))
        took.append(time.perf_counter() - t0)
    ctx = zmq.Context()
    closing(ctx)
    stalled = ctx.socket(zmq.ROUTER)  # accepts the connection, never reads: TCP and ZeroMQ buffers fill up
    stalled.rcvhwm = 1
    stalled.bind(f"tcp://127.0.0.1:{port}")
    for i in range(150, 300):
        t0 = time.perf_counter()
        actor.send(step(i, side=128))
        took.append(time.perf_counter() - t0)
    assert np.median(took) < 0.005 and max(took) < 0.25, (np.median(took), max(took))
    until(lambda: actor.backlog().queued == 0 and actor.backlog().unacked == 300, what="all spooled")
    stalled.close(0)
    ctx.term()  # closing is asynchronous; term() returns once the port is released for the learner
    with LearnerLink(cfg, port=port) as learner:  # the learner comes up: everything arrives, once
        got = collect(learner, 300, timeout=15)
        assert sorted(t.seq for t in got) == list(range(300))
        assert actor.wait_acked(5)
    actor.close()


ACTOR_PEER = textwrap.dedent("""
    import json, os, signal, sys, time
    import numpy as np
    from lastr1.configs.transport import TransportConfig
    from lastr1.transport.actor_link import ActorLink
    from lastr1.transport.messages import Transition
    cfg = TransportConfig(**json.loads(sys.argv[1]))
    link = ActorLink(cfg, "actor0")
    for i in range(int(sys.argv[2])):
        link.send(Transition(episode=0, step=i, policy_version=0, intervention=False,
                             images={"front": np.full((8, 8, 3), i, np.uint8)}, proprio=np.zeros(8, np.float32),
                             action=np.zeros((8, 7), np.float32), latents=None, latent_len=0, reward=0.0,
                             terminated=False, truncated=False, t_obs=time.time()))
    while link.backlog().queued:
        time.sleep(0.01)
    print(link.epoch, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close(), no flush
""")


def run_peer(code: str, *args: str, wait=True):
    env = dict(os.environ)
    cmd = [sys.executable, "-c", code, *args]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_actor_resends_its_spool_after_restart(tmp_path, keydir, closing):
    port = free_port()
    cfg = make_cfg(tmp_path, keydir, port=port)
    r = run_peer(ACTOR_PEER, json.dumps(asdict(cfg)), "40")
    assert r.returncode == -signal.SIGKILL, r.stderr
    epoch = int(r.stdout.split()[0])
    with LearnerLink(cfg) as learner:
        actor = ActorLink(cfg, "actor0")  # the restarted actor, same spool
        closing(actor)
        assert actor.epoch == epoch and actor.backlog().unacked == 40
        got = collect(learner, 40)
        assert sorted(t.seq for t in got) == list(range(40)) and {t.epoch for t in got} == {epoch}
        assert [t.images["front"][0, 0, 0] for t in sorted(got, key=lambda t: t.seq)] == list(range(40))
        assert actor.send(step(40)) == 40  # numbering continues after the spool
        assert [t.seq for t in collect(learner, 1)] == [40]
        assert actor.wait_acked(5)
        actor.close()
        actor = ActorLink(cfg, "actor0")  # a clean restart: nothing left to resend, numbering still continues
        closing(actor)
        assert actor.backlog().unacked == 0 and actor.send(step(41)) == 41
        actor.close()


LEARNER_PEER = textwrap.dedent("""
    import json, os, signal, sys
    from lastr1.configs.transport import TransportConfig
    from lastr1.files import save_json
    from lastr1.transport.learner_link import LearnerLink
    cfg = TransportConfig(**json.loads(sys.argv[1]))
    store, die_at, how, total = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    state = json.load(open(store)) if os.path.exists(store) else {"seqs": [], "dedup": None}
    link = LearnerLink(cfg, dedup_state=state["dedup"])
    while len(state["seqs"]) < total:
        batch = link.recv(0.1)
        if not batch:
            continue
        if how == "before_save" and len(state["seqs"]) + len(batch) >= die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # received, not yet persisted: must come again
        state["seqs"] += [t.seq for t in batch]
        state["dedup"] = link.dedup_state()  # saved with the "replay buffer", atomically
        save_json(store, state)
        if how == "after_save" and len(state["seqs"]) >= die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # persisted, never acknowledged: must not come twice
        link.ack(batch)
    import time; time.sleep(0.5)
    link.close()
""")


def test_learner_killed_and_restarted_mid_stream_gets_every_seq_exactly_once(tmp_path, keydir, closing):
    n = 150
    port = free_port()
    cfg = make_cfg(tmp_path, keydir, port=port)
    args = (json.dumps(asdict(cfg)), str(tmp_path / "buffer.json"))
    first = run_peer(LEARNER_PEER, *args, "40", "after_save", str(n), wait=False)
    actor = ActorLink(cfg, "actor0")
    closing(actor)

    def keep_sending():
        for i in range(n):
            actor.send(step(i))
            time.sleep(0.012)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    assert first.wait(30) == -signal.SIGKILL, first.stderr.read()
    second = run_peer(LEARNER_PEER, *args, "90", "before_save", str(n), wait=False)
    assert second.wait(30) == -signal.SIGKILL, second.stderr.read()
    last = run_peer(LEARNER_PEER, *args, "-1", "run", str(n), wait=False)
    sender.join()
    assert last.wait(30) == 0, last.stderr.read()
    state = json.loads((tmp_path / "buffer.json").read_text())
    seqs = state["seqs"]
    assert sorted(seqs) == list(range(n)), f"lost {set(range(n)) - set(seqs)}, doubled {len(seqs) - len(set(seqs))}"

    assert actor.backlog().unacked == 0
    actor.close()


def test_a_live_learner_survives_garbage_and_keeps_serving(tmp_path, closing):
    cfg = make_cfg(tmp_path, max_message_bytes=64 * 1024)
    with LearnerLink(cfg) as learner:
        ctx = zmq.Context()
        closing(ctx)
        s = ctx.socket(zmq.DEALER)
        s.connect(f"tcp://127.0.0.1:{learner.port}")
        rnd = random.Random(7)
        valid = bytearray(encode(Transition(**{**step(0).__dict__, "actor_id": "fuzz", "epoch": 1, "seq": 0})))
        for i in range(3000):
            kind = i % 6
            if kind == 0:
                s.send(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200))))
            elif kind in (1, 2):
                b = bytearray(valid)
                for _ in range(rnd.randint(1, 6)):
                    b[rnd.randrange(len(b))] = rnd.getrandbits(8)
                s.send(bytes(b))
            elif kind == 3:
                s.send_multipart([b"two", b"frames"])
            elif kind == 4:
                s.send(encode(Heartbeat("learner", "fuzz", 1, 1.0, 5, 1)))  # actors do not speak for the learner
            else:
                s.send(encode(Ack.of("fuzz", 1, [0])))
        s.send(b"\xc0" * (64 * 1024 + 1))  # oversized
        actor = ActorLink(cfg, "actor0", port=learner.port)
        closing(actor)
        actor.send(step(0))
        got: list = []
        until(lambda: got.extend(t for t in learner.recv(0.05) if t.actor_id == "actor0") or got, what="actor0")
        assert [t.seq for t in got] == [0]
        until(lambda: learner.rejected >= 2500, what="all garbage handled")
        # A flipped byte may still spell a valid transition (another epoch, say): such a one is simply taken;
        # what matters is that the garbage was refused and the link kept serving.
        assert learner._thread.is_alive() and all(t.actor_id != "actor0" for t in learner.recv(0.2))
        actor.close()


def test_curve_learner_refuses_garbage_and_impersonation_from_a_known_key(tmp_path, keydir, closing):
    cfg = make_cfg(tmp_path, keydir)
    with LearnerLink(cfg) as learner:
        ctx = zmq.Context()
        closing(ctx)
        s = ctx.socket(zmq.DEALER)
        s.curve_serverkey = curve_keys.learner_public(keydir)
        s.curve_publickey, s.curve_secretkey = curve_keys.actor_pair(keydir, "actor0")
        s.connect(f"tcp://127.0.0.1:{learner.port}")
        rnd = random.Random(3)
        for _ in range(300):
            s.send(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 100))))
        as_other = Transition(**{**step(1).__dict__, "actor_id": "actor1", "epoch": 1, "seq": 0})
        s.send(encode(as_other))  # actor0's key, actor1's name
        mine = Transition(**{**step(2).__dict__, "actor_id": "actor0", "epoch": 1, "seq": 0})
        s.send(encode(mine))
        got = collect(learner, 1, timeout=5)
        assert [(t.actor_id, t.step) for t in got] == [("actor0", 2)]
        assert learner.recv(0.3) == [] and learner.rejected >= 300


def test_unknown_actor_key_is_refused(tmp_path, keydir, closing):
    other = tmp_path / "intruder-keys"
    curve_keys.generate(other, ["intruder"])
    shutil.copy(keydir / "learner.key", other / "learner.key")  # knows the learner, but is not on its list
    with LearnerLink(make_cfg(tmp_path, keydir)) as learner:
        actor = ActorLink(make_cfg(tmp_path, other), "intruder", port=learner.port)
        closing(actor)
        for i in range(5):
            actor.send(step(i))
        until(lambda: actor.auth_error is not None, what="auth failure")
        assert "refused this actor's key" in actor.auth_error
        assert learner.recv(0.3) == [] and learner.actors() == {}
        assert actor.backlog().unacked == 5  # kept, not dropped
        actor.close()


def test_weights_from_a_wrong_learner_key_are_ignored(tmp_path, keydir, closing):
    impostor_keys = tmp_path / "impostor"
    curve_keys.generate(impostor_keys, [])
    (impostor_keys / "actors").mkdir(exist_ok=True)
    shutil.copy(keydir / "actors/actor0.key", impostor_keys / "actors/actor0.key")  # would accept our actor
    port = free_port()
    impostor = LearnerLink(make_cfg(tmp_path, impostor_keys, port=port))
    closing(impostor)
    impostor.publish_weights(Weights.create(b"evil", 99))
    actor = ActorLink(make_cfg(tmp_path, keydir), "actor0", port=port)
    closing(actor)
    until(lambda: actor.auth_error is not None, what="handshake failure")
    time.sleep(0.5)
    assert actor.latest_weights() is None and impostor.actors() == {} and "handshake" in actor.auth_error
    impostor.close()  # (closing it twice is harmless)
    with LearnerLink(make_cfg(tmp_path, keydir, port=port)) as learner:
        learner.publish_weights(Weights.create(b"good", 1))
        until(lambda: actor.latest_weights() is not None, timeout=8, what="weights from the real learner")
        assert actor.latest_weights().adapter == b"good"
    actor.close()


def test_actor_verifies_weights_and_handles_rejects(tmp_path, closing):
    cfg = make_cfg(tmp_path)
    ctx = zmq.Context()
    closing(ctx)
    fake = ctx.socket(zmq.ROUTER)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    actor = ActorLink(cfg, "actor0", port=port)
    closing(actor)
    assert fake.poll(5000)
    route = fake.recv_multipart()[0]

    def send(msg):
        fake.send_multipart([route, msg if isinstance(msg, bytes) else encode(msg)])

    bad = Weights.create(b"adapter", 5)
    bad.sha256 = "0" * 64
    send(bad)
    send(Weights.create(b"v3", 3))
    until(lambda: actor.latest_weights() is not None, what="v3")
    send(Weights.create(b"v2", 2))  # older: ignored
    send(Telemetry(values={"marker": 1.0}, sender="learner", t=1.0))
    until(lambda: actor.learner_stats() is not None)
    assert actor.latest_weights().version == 3 and actor.latest_weights().adapter == b"v3"

    actor.send(step(0))
    actor.send(step(1))
    until(lambda: actor.backlog().unacked == 2)
    send(Reject("actor0", actor.epoch, 0, "schema version 1, this side speaks 2"))
    send(Ack.of("actor0", actor.epoch, [1]))
    until(lambda: actor.backlog().rejected == 1 and actor.backlog().unacked == 0, what="reject + ack")
    kept = list((tmp_path / "spool/actor0/rejected").iterdir())
    assert len(kept) == 2 and "schema version" in next(p for p in kept if p.suffix == ".txt").read_text()
    actor.close()


def test_learner_rejects_with_reason_and_reacks_persisted_duplicates(tmp_path, closing):
    port = free_port()
    cfg = make_cfg(tmp_path, port=port)
    state = tmp_path / "wire_state.json"
    ctx = zmq.Context()
    closing(ctx)
    s = ctx.socket(zmq.DEALER)
    s.connect(f"tcp://127.0.0.1:{port}")
    t = Transition(**{**step(0).__dict__, "actor_id": "a9", "epoch": 5, "seq": 0})
    with LearnerLink(cfg, state_path=state) as learner:
        s.send(codec.packb({**t.to_wire(), "v": SCHEMA_VERSION + 1, "type": "transition"}))
        assert s.poll(5000)
        r = decode(s.recv(), 1 << 20)
        assert isinstance(r, Reject) and r.seq == 0 and "schema version" in r.reason
        t.seq = 1
        s.send(encode(t))
        (got,) = collect(learner, 1, ack=False)
        learner.ack([got])
        assert s.poll(5000) and decode(s.recv(), 1 << 20) == Ack("a9", 5, [(1, 1)])
    with LearnerLink(cfg, state_path=state) as learner:  # a restarted learner: seq 1 is persisted already
        s.send(encode(t))
        assert s.poll(5000) and decode(s.recv(), 1 << 20) == Ack("a9", 5, [(1, 1)])  # acknowledged again
        assert learner.recv(0.3) == [] and learner.duplicates == 1


def test_full_spool_refuses_loudly_and_loses_nothing(tmp_path, closing):
    port = free_port()
    cfg = make_cfg(tmp_path, port=port, spool_max_bytes=20_000, send_queue=4)
    actor = ActorLink(cfg, "actor0")
    closing(actor)
    accepted = []
    with pytest.raises(SpoolFull, match="refusing to take more"):
        for i in range(200):
            accepted.append(actor.send(step(i)))
    assert 5 < len(accepted) < 60
    with LearnerLink(cfg) as learner:
        got = collect(learner, len(accepted))
        assert sorted(t.seq for t in got) == accepted  # everything send() took, none of what it refused
        until(lambda: actor.backlog().unacked == 0)
        assert actor.send(step(999)) == len(accepted)  # room again
    actor.close()


def test_a_minimal_foreign_actor_from_the_docs(tmp_path, keydir, closing):
    """An actor written from docs/wire.md alone: pyzmq, msgpack and struct, none of transport/'s code."""
    import hashlib
    import struct

    import msgpack
    import zmq.auth

    def nd(dtype: str, shape: tuple, raw: bytes) -> msgpack.ExtType:
        head = struct.pack(f"<B{len(dtype)}sB{len(shape)}I", len(dtype), dtype.encode(), len(shape), *shape)
        return msgpack.ExtType(1, head + raw)

    with LearnerLink(make_cfg(tmp_path, keydir)) as learner:
        ctx = zmq.Context()
        closing(ctx)
        s = ctx.socket(zmq.DEALER)
        s.curve_serverkey = zmq.auth.load_certificate(keydir / "learner.key")[0]
        s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(keydir / "actors/actor1.key_secret")
        s.immediate = True
        s.connect(f"tcp://127.0.0.1:{learner.port}")
        pack = lambda m: msgpack.packb(m, use_bin_type=True)  # noqa: E731
        s.send(pack({"v": 1, "type": "heartbeat", "role": "actor", "sender": "actor1", "session": 42, "t": time.time(),
                     "policy_version": 0, "epoch": 9, "next_seq": 0, "first_unacked": 0}))
        for seq in range(3):
            s.send(pack({
                "v": 1, "type": "transition", "actor_id": "actor1", "epoch": 9, "seq": seq, "episode": 0, "step": seq,
                "policy_version": 0, "intervention": False,
                "images": {"front": nd("|u1", (2, 2, 3), bytes(range(12)))},
                "proprio": nd("<f4", (8,), struct.pack("<8f", *range(8))),
                "action": nd("<f4", (1, 7), struct.pack("<7f", *[0.5] * 7)),
                "latents": nd("<f2", (2, 4), struct.pack("<8e", *[1.0] * 8)), "latent_len": 2,
                "reward": 0, "terminated": False, "truncated": seq == 2, "t_obs": time.time(), "t_sent": time.time(),
            }))
        got = collect(learner, 3)
        assert [t.seq for t in got] == [0, 1, 2] and got[0].images["front"].ravel().tolist() == list(range(12))
        assert got[0].proprio.tolist() == list(range(8)) and got[2].truncated and got[0].latents.dtype == np.float16
        learner.publish_weights(Weights.create(b"lora", 1))
        seen, acked = {}, set()
        end = time.monotonic() + 5
        while time.monotonic() < end and not (acked == {0, 1, 2} and "weights" in seen and "heartbeat" in seen):
            if s.poll(100):
                m = msgpack.unpackb(s.recv(), raw=False)
                seen.setdefault(m["type"], m)
                if m["type"] == "ack" and m["epoch"] == 9:
                    acked |= {q for lo, hi in m["ranges"] for q in range(lo, hi + 1)}
        assert acked == {0, 1, 2}
        assert hashlib.sha256(seen["weights"]["adapter"]).hexdigest() == seen["weights"]["sha256"]
        assert seen["heartbeat"]["role"] == "learner" and seen["heartbeat"]["epoch"] == 9


def test_a_backlog_beyond_send_queue_waits_on_disk_and_arrives_whole(tmp_path, closing):
    """Unsent transitions are sent from memory up to send_queue of them; the rest of a long backlog (learner
    down) is held only in the spool and re-read from it: memory stays bounded and nothing is lost or doubled.
    The images are big enough (> 64 KiB a message) that pyzmq sends them without a copy."""
    port = free_port()
    cfg = make_cfg(tmp_path, port=port, send_queue=8)
    actor = ActorLink(cfg, "actor0")
    closing(actor)
    for i in range(60):  # nobody listening
        actor.send(step(i, side=160))
    until(lambda: actor.backlog().queued == 0 and actor.backlog().unacked == 60, what="all spooled")
    assert sum(o.mem is not None for o in list(actor._unacked.values())) <= cfg.send_queue
    with LearnerLink(cfg, port=port) as learner:
        got = collect(learner, 60)
        assert sorted(t.seq for t in got) == list(range(60))
        assert all((t.images["front"] == t.seq % 256).all() for t in got)  # from memory or disk, the right bytes
        assert actor.wait_acked(5)
    actor.close()


def test_close_spools_everything_send_accepted(tmp_path):
    """close() with no learner and no patience: every accepted transition is on disk for the next start."""
    from lastr1.transport.spool import Spool

    cfg = make_cfg(tmp_path, port=free_port(), jpeg_quality=90)  # JPEG: encoding happens on the I/O thread
    actor = ActorLink(cfg, "actor0")
    seqs = [actor.send(step(i, side=64)) for i in range(60)]
    actor.close(timeout_s=0.0)
    spool = Spool(tmp_path / "spool/actor0", cfg.spool_max_bytes, cfg.spool_segment_bytes)
    assert spool.seqs() == seqs and spool.next_seq == 60
    assert decode(spool.read(59), 1 << 20).images["front"].shape == (64, 64, 3)
    spool.close()


def _full_spool(tmp_path, closing) -> tuple[ActorLink, list[int]]:
    """An actor (no learner) whose spool is full, with one transition held for want of room and more queued
    behind it: the I/O thread is kept out of its queue while the queue fills and the spool fills past it."""
    from lastr1.transport.errors import SpoolFull

    actor = ActorLink(make_cfg(tmp_path, port=free_port(), spool_max_bytes=20_000, send_queue=4), "actor0")
    closing(actor)
    gate, take = threading.Lock(), actor._take_queue

    def gated():
        with gate:
            take()

    with gate:
        actor._take_queue = gated
        accepted = []
        with pytest.raises(SpoolFull):  # 4 queued, then straight to the spool until it is full
            for i in range(200):
                accepted.append(actor.send(step(i)))
        assert actor._queue.qsize() == 4
    until(lambda: actor._held_n > 0, what="the I/O thread holding a transition the spool has no room for")
    assert not actor._queue.empty()
    return actor, accepted


def test_a_full_spool_waits_for_acks_without_spinning(tmp_path, closing):
    """With the spool full and transitions queued the I/O thread waits for acknowledgements; it used to poll
    with a zero timeout and spin at ~98 % of a core. Counted in turns of its loop, not in CPU time: a turn's
    cost scales with the host (3 ms on a loaded 2-core VM), the number of turns does not."""
    actor, _ = _full_spool(tmp_path, closing)
    turns, take = [0], actor._take_queue  # called once a turn

    def counted():
        turns[0] += 1
        take()

    actor._take_queue = counted
    t0 = time.monotonic()
    time.sleep(1.0)
    rate = turns[0] / (time.monotonic() - t0)
    # Waiting, it wakes for the heartbeat retry (20/s while no learner is connected) and the resend scan (4/s).
    assert rate < 60, f"the I/O thread turned {rate:.0f} times a second while waiting for acknowledgements"


def test_close_with_a_full_spool_loses_nothing_send_accepted(tmp_path, closing):
    """close() with the spool full writes what send() accepted past the limit (they used to be dropped, the
    queued ones without a word) and the next start finds every one of them."""
    from lastr1.transport.spool import Spool

    actor, accepted = _full_spool(tmp_path, closing)
    actor.close(timeout_s=0.0)
    spool = Spool(tmp_path / "spool/actor0", 10**9, actor.cfg.spool_segment_bytes)
    assert spool.seqs() == accepted
    assert decode(spool.read(accepted[-1]), 1 << 20).step == accepted[-1]
    spool.close()


def test_wait_backlog_is_woken_by_acks_and_times_out_without_them(tmp_path, closing, monkeypatch):
    from lastr1.transport import actor_link

    monkeypatch.setattr(actor_link, "_WAIT_SLICE_S", 30.0)  # only the I/O thread's signal can end a wait early
    cfg = make_cfg(tmp_path)
    with LearnerLink(cfg) as learner:
        actor = ActorLink(cfg, "actor0", port=learner.port)
        closing(actor)
        for i in range(20):
            actor.send(step(i))
        until(lambda: actor.backlog().queued == 0, what="all spooled")
        t0 = time.monotonic()
        assert not actor.wait_backlog(20, 0.3)  # nothing acknowledged yet: 20 are unacknowledged
        assert time.monotonic() - t0 >= 0.29
        got = learner.recv(2.0, max_n=5)
        acker = threading.Timer(0.2, learner.ack, [got])
        acker.start()
        t0 = time.monotonic()
        assert actor.wait_backlog(20, 5.0)  # woken by the acks, long before its timeout
        waited = time.monotonic() - t0
        acker.join()
        assert 0.15 <= waited < 2.0, waited
        assert actor.backlog().unacked == 20 - len(got)
        learner.ack(collect(learner, 20 - len(got), ack=False))
        assert actor.wait_acked(5)
    actor.close()
    assert actor.wait_backlog(1, 0.1)  # empty: true even once closed
