"""A live `lastr1 learner` driven by a client written from docs/wire.md: every transition that does not fit the
learner's schema is refused by name (and the learner keeps serving); the server is exactly as strict as the
spec; the dedup state stays bounded under a hostile flood."""

import logging
import time

import numpy as np
import pytest
from learner_proc import LiveLearner
from wire_client import U63, Client, jpeg, ndarray, pack, transition

from lastr1.transport.dedup import MAX_EPOCHS, WINDOW


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ll = LiveLearner(tmp_path_factory.mktemp("live"))
    ll.start()
    c = Client(ll.port, ll.keys, "actor0", epoch=1)
    ll.wait_ready(c)
    yield ll, c
    c.close()
    assert ll.stop() == 0, ll.log()


_seq = iter(range(1000, 10**6))


def rejected(c: Client, seq: int, timeout_s=5.0) -> str | None:
    m = c.wait(lambda m: m["type"] == "reject" and m["seq"] == seq, timeout_s)
    return None if m is None else m["reason"]


RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
BIG = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
# The 13 variants that each used to end the learner (valid under the spec, not what the learner holds), with
# what its reason must name.
VARIANTS = {
    "action 3x2": (dict(chunk=(3, 2)), "action: chunk 3x2"),
    "action 7x8": (dict(chunk=(7, 8)), "action: chunk 7x8"),
    "proprio 3": (dict(proprio=3), "proprio: 3 values"),
    "renamed camera": (dict(cameras=("front", "side")), "cameras ['front', 'side']"),
    "missing camera": (dict(cameras=("front",)), "cameras ['front']"),
    "extra camera": (dict(cameras=("front", "wrist", "side")), "cameras ['front', 'side', 'wrist']"),
    "64² image": (dict(side=64), "images.front: 64x64"),
    "1² image": (dict(side=1), "images.front: 1x1"),
    "64² JPEG": (dict(images={"front": jpeg(BIG), "wrist": ndarray(IMG)}), "images.front: 64x64"),
    "128x96 JPEG": (dict(images={"front": ndarray(IMG), "wrist": jpeg(np.zeros((96, 128, 3), np.uint8))}),
                    "images.wrist: 96x128"),
    "64² next_images": (dict(terminated=True, next_images={"front": ndarray(BIG), "wrist": ndarray(BIG)},
                             next_proprio=ndarray(np.zeros(8, "<f4"))), "next_images.front: 64x64"),
    "latents of width 32": (dict(latents=(4, 32)), "latents: 4x32"),
    "latents longer than L_max": (dict(latents=(16, 64)), "latents: 16x64"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_transition_that_does_not_fit_is_refused_by_name_and_the_learner_keeps_serving(live, name):
    ll, c = live
    over, says = VARIANTS[name]
    seq = next(_seq)
    c.send(transition("actor0", 1, seq, **over))
    reason = rejected(c, seq)
    assert reason is not None and says in reason, (reason, ll.log()[-3000:])
    assert ll.alive(), ll.log()
    assert says in ll.log()  # the learner's log names it too
    ok = next(_seq)  # and the next good one is stored
    c.send(transition("actor0", 1, ok))
    assert c.wait(lambda m: c.acked(ok), 10.0) is not None, ll.log()[-3000:]


def test_our_actor_reports_the_refusal_naming_the_mismatch(live, tmp_path, caplog):
    from lastr1 import configs
    from lastr1.transport.actor_link import ActorLink
    from lastr1.transport.messages import Transition

    ll, _ = live
    cfg = configs.load(str(ll.config))
    cfg.transport.spool_dir = str(tmp_path / "spool")
    link = ActorLink(cfg.transport, "actor1")
    try:
        with caplog.at_level(logging.ERROR, "lastr1.transport.actor_link"):
            link.send(Transition(episode=0, step=0, policy_version=0, intervention=False,
                                 images={"front": IMG, "wrist": IMG}, proprio=np.zeros(8, np.float32),
                                 action=np.zeros((3, 2), np.float32), latents=None, latent_len=0, reward=0.0,
                                 terminated=False, truncated=False, t_obs=time.time()))
            end = time.monotonic() + 15
            while link.rejected == 0 and time.monotonic() < end:
                time.sleep(0.05)
        assert link.rejected == 1 and link.backlog().unacked == 0  # never resent
        assert "action: chunk 3x2, the learner expects 8x7" in caplog.text
        assert list((tmp_path / "spool" / "actor1" / "rejected").iterdir())  # kept aside for a person
    finally:
        link.close()


def committed(c: Client, epoch: int, timeout_s: float = 5.0) -> int:
    t = time.time()
    c.heartbeat(epoch=epoch)
    m = c.wait(lambda m: m["type"] == "heartbeat" and m["epoch"] == epoch and m["t"] >= t, timeout_s)
    assert m is not None
    return m["committed"]


def dup_key_map(m: dict, key: str, value) -> bytes:
    """A msgpack map holding `key` twice (msgpack-python cannot write one from a dict)."""
    body = b"".join(pack(k) + pack(v) for k, v in m.items()) + pack(key) + pack(value)
    n = len(m) + 1
    return (bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")) + body


def test_the_server_is_as_strict_as_the_spec(live):
    ll, _ = live
    c = Client(ll.port, ll.keys, "actor0", epoch=5)
    try:
        base = committed(c, 5)
        seq = base + 1
        bad = {
            "v true": transition("actor0", 5, seq, v=True),
            "v 1.0": transition("actor0", 5, seq, v=1.0),
            "1-channel JPEG": transition("actor0", 5, seq, images={"front": jpeg(IMG, "L"), "wrist": ndarray(IMG)}),
            "4-channel JPEG": transition("actor0", 5, seq, images={"front": jpeg(IMG, "CMYK"),
                                                                   "wrist": ndarray(IMG)}),
            "duplicate key": dup_key_map(transition("actor0", 5, seq), "reward", 5.0),
        }
        for name, m in bad.items():
            c.send(m)
            time.sleep(0.3)
            assert committed(c, 5) == base and not c.acked(seq, 5), f"{name} was accepted"
        # Those whose stream fields could be read are answered with a reject naming the problem (§2); a bad
        # JPEG makes the whole message undecodable, so that one is only logged.
        reasons = [m["reason"] for m in c.got if m["type"] == "reject" and m["seq"] == seq]
        assert [r.split(",")[0] for r in reasons] == ["schema version True", "schema version 1.0"], reasons
        assert "JPEG with 1 channels" in ll.log() and "JPEG with 4 channels" in ll.log()
        # Out-of-range stream fields are never echoed: nothing a strict client would have to drop.
        for epoch, s in ((-1, 0), (U63 + 1, 0), ((1 << 64) - 1, 0), (5, -1), (5, U63 + 1)):
            c.send(transition("actor0", epoch, s, v=2))
        time.sleep(0.5)
        c.poll(0.2)
        for m in c.got:
            if m["type"] == "reject":
                assert 0 <= m["epoch"] <= U63 and 0 <= m["seq"] <= U63 and len(m["reason"]) <= 1000
        # Heartbeats carry their own direction's fields only.
        hbs = [m for m in c.got if m["type"] == "heartbeat"]
        assert hbs and all(not {"next_seq", "first_unacked", "unacked", "spool_bytes"} & set(m) for m in hbs)
        n = len(c.got)
        c.heartbeat(received=3)  # an actor does not speak for the learner: dropped, not answered
        assert not [m for m in c.poll(0.5) if m["type"] == "heartbeat"], c.got[n:]
        # And a good transition is still taken.
        c.send(transition("actor0", 5, seq))
        assert c.wait(lambda m: c.acked(seq, 5), 10.0) is not None
    finally:
        c.close()
    assert ll.alive()


def test_the_dedup_state_stays_bounded_under_a_hostile_flood(live):
    ll, _ = live
    c = Client(ll.port, ll.keys, "actor1", epoch=9)
    rng = np.random.default_rng(3)
    try:
        # 10,000 messages: valid transitions at random epochs and seqs (far ones included), invalid ones with
        # readable stream fields, and heartbeats that claim streams.
        for i in range(10_000):
            epoch = int(rng.choice([9, int(rng.integers(0, U63))]))
            seq = int(rng.choice([rng.integers(0, 50), rng.integers(0, U63)]))
            kind = i % 4
            if kind == 0:
                c.send(transition("actor1", epoch, seq, side=32, latents=None))
            elif kind == 1:
                c.send(transition("actor1", epoch, seq, v=3))
            elif kind == 2:
                c.send(transition("actor1", epoch, seq, chunk=(3, 2), latents=None))
            else:
                c.heartbeat(epoch=epoch, first_unacked=int(rng.integers(0, 1000)))
            if i % 200 == 0:
                c.poll(0.01)  # keep our receive queue short
        assert ll.alive(), ll.log()
        last = committed(c, 9, timeout_s=60.0) + 1  # answered after the whole flood: the link reads in order
        c.send(transition("actor1", 9, last, latents=None))  # committing it saves the dedup state
        assert c.wait(lambda m: c.acked(last, 9), 30.0) is not None, ll.log()[-3000:]
        dedup = ll.rollout_meta()["extra"]["dedup"]
        mine = [s for s in dedup["streams"] if s["actor_id"] == "actor1"]
        held = sum(len(s["above"]) for s in mine)
        print(f"dedup after the flood: {len(mine)} streams, {held} seqs above their watermarks")
        assert len(mine) <= MAX_EPOCHS and held <= len(mine) * WINDOW
        assert all(s["epoch"] >= 0 and s["watermark"] <= U63 for s in mine)
        assert held < 2500  # only what landed in a window is remembered: ≤ one per message that fitted
    finally:
        c.close()


GOOD_SHAPES = {"cameras": ["wrist", "front"], "image": [32, 32], "proprio": 8, "action": [8, 7], "latents": [8, 64]}


def test_a_declared_layout_is_answered_with_every_mismatch_named(live):
    ll, _ = live
    c = Client(ll.port, ll.keys, "actor0", epoch=21)
    try:
        def verdict(shapes) -> str:
            t = time.time()
            c.heartbeat(epoch=21, shapes=shapes)
            m = c.wait(lambda m: m["type"] == "heartbeat" and m["t"] >= t, 20.0)
            assert m is not None
            return m.get("refused", "")

        assert verdict(GOOD_SHAPES) == ""
        bad = verdict({**GOOD_SHAPES, "image": [64, 48], "action": [3, 2], "cameras": ["front"]})
        assert "images 64x48, the learner expects 32x32 (robot.image_size)" in bad
        assert "action chunk 3x2, the learner expects 8x7" in bad and "cameras ['front']" in bad
        assert "proprio" not in bad  # only what differs
        assert "does not fit this learner" in ll.log()
    finally:
        c.close()


def test_our_actor_stops_at_startup_when_the_learner_refuses_its_layout(live, tmp_path):
    from types import SimpleNamespace

    from lastr1 import configs
    from lastr1.actor.loop import ActorError
    from lastr1.actor.process import check_learner
    from lastr1.transport.actor_link import ActorLink

    ll, _ = live
    cfg = configs.load(str(ll.config))
    cfg.transport.spool_dir = str(tmp_path / "spool")
    shapes = SimpleNamespace(proprio_dim=8, H=8, D=7, L_max=8, d=64)  # what the tiny policy reports
    link = ActorLink(cfg.transport, "actor1")
    try:
        check_learner(cfg, shapes, link, wait_s=20.0)  # the learner's own layout: no complaint
        assert link.shapes_answered.is_set() and link.schema_error is None
        cfg.robot.image_size = 64  # another camera resolution on this robot PC
        with pytest.raises(ActorError, match=r"images 64x64, the learner expects 32x32 \(robot.image_size\)"):
            check_learner(cfg, shapes, link, wait_s=20.0)
    finally:
        link.close()
