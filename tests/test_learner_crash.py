"""The real `lastr1 learner`, SIGKILLed at named instructions (LASTR1_KILL_AT): between its commit and its ack,
and at each step of a checkpoint write. Afterwards every (actor_id, epoch, seq) sent is in the buffer exactly
once, `--resume` continues from the newest complete checkpoint, no version number carries older weights than a
lower one, and the counters equal what the buffer holds."""

import re
import signal
import time

from learner_proc import LiveLearner
from wire_client import Actor, Client

from lastr1.learner.replay import ReplayBuffer
from lastr1.learner.trainer import checkpoints

CAPACITY = 4000


def stored_seqs(ll: LiveLearner) -> list[int]:
    """The seq of every transition row the buffer committed (the client writes it into proprio)."""
    buf = ReplayBuffer(ll.run / "learner" / "rollout_buffer", CAPACITY)
    n = min(buf.committed, CAPACITY)
    rows = ~buf.arrays["obs_only"][:n] & (buf.arrays["gid"][:n] < buf.committed)
    return sorted(int(x) for x in buf.arrays["proprio"][:n][rows][:, 0])


def drive(ll: LiveLearner, actor: Actor, until, timeout_s: float, rate_s: float = 0.04) -> None:
    """Send a transition every `rate_s` and keep the link going until `until()` or the learner exits."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and ll.alive() and not until():
        if actor.next_seq < CAPACITY // 2:
            actor.send_next()
        actor.pump(rate_s)


def settle(ll: LiveLearner, actor: Actor, timeout_s: float = 60.0) -> None:
    """Stop producing and wait until the learner has acknowledged everything sent."""
    end = time.monotonic() + timeout_s
    while actor.unacked and time.monotonic() < end:
        assert ll.alive(), ll.log()[-3000:]
        actor.pump(0.1)
    assert not actor.unacked, f"{len(actor.unacked)} never acknowledged:\n{ll.log()[-3000:]}"


def test_a_learner_killed_between_commit_and_ack_stores_every_seq_once(tmp_path):
    ll = LiveLearner(tmp_path, learner={"rollout_capacity": CAPACITY})
    c = Client(ll.port, ll.keys, "actor0", epoch=11)
    actor = Actor(c)
    try:
        ll.start(kill_at="committed:3")
        ll.wait_ready(c)
        drive(ll, actor, lambda: False, 60)
        assert ll.proc.wait(5) == -signal.SIGKILL, ll.log()
        assert actor.unacked  # the third commit was never acknowledged: resent to the restarted learner
        ll.start("--resume")
        ll.wait_ready(c)
        drive(ll, actor, lambda: actor.next_seq >= 60, 60)
        settle(ll, actor)
    finally:
        c.close()
        assert ll.stop() == 0, ll.log()[-3000:]
    seqs = stored_seqs(ll)
    assert seqs == sorted(set(actor.sent)) == list(range(actor.next_seq)), "lost or doubled rows"
    assert ll.rollout_meta()["extra"]["counters"]["received"] == len(seqs)


LEARNING = {"rollout_capacity": CAPACITY, "start_after": 8, "grad_accum": 1, "broadcast_every_updates": 1,
            "checkpoint_every_updates": 2}


def resumed_at(log: str) -> int:
    found = re.findall(r"resumed from \S+ at update (\d+)", log)
    assert found, log[-3000:]
    return int(found[-1])


def test_sigkill_at_each_step_of_the_checkpoint_write_then_resume(tmp_path):
    ll = LiveLearner(tmp_path, learner=LEARNING)
    c = Client(ll.port, ll.keys, "actor0", epoch=12)
    actor = Actor(c)
    folder = ll.run / "learner"
    # The first save completes; the second is killed after its policy files; then one kill per later step.
    kills = ["policy:2", "written", "renamed", "pruned"]
    try:
        held = None  # updates of the newest complete checkpoint left by the last kill
        for i, at in enumerate(kills):
            ll.start(*(["--resume"] if i else []), kill_at=at)
            ll.wait_ready(c, or_exit=-signal.SIGKILL)
            if held is not None:
                assert resumed_at(ll.logs[-1].read_text()) == held  # no update a complete checkpoint held is lost
            drive(ll, actor, lambda: False, 120)
            assert ll.proc.wait(10) == -signal.SIGKILL, ll.log()[-3000:]
            done = checkpoints(folder)
            assert done, f"no complete checkpoint after a kill at {at}: {sorted(p.name for p in folder.iterdir())}"
            held = int(done[-1].name.split("-")[1])
        ll.start("--resume", "--max-updates", str(held + 3))
        ll.wait_ready(c, or_exit=0)
        assert resumed_at(ll.logs[-1].read_text()) == held
        drive(ll, actor, lambda: False, 120)
        assert ll.proc.wait(30) == 0, ll.log()[-3000:]
        ll.start("--resume")  # to acknowledge what the last run received after its final commit
        ll.wait_ready(c)
        settle(ll, actor)
    finally:
        c.close()
        ll.stop()
    # A version number stands for one set of weights, and a higher one for more updates.
    by_version: dict[int, set] = {}
    for v, sha, updates in actor.weights:
        by_version.setdefault(v, set()).add((sha, updates))
    assert all(len(s) == 1 for s in by_version.values()), by_version
    order = [next(iter(by_version[v]))[1] for v in sorted(by_version)]
    assert len(order) >= 4 and order == sorted(order) and len(set(order)) == len(order), by_version
    # Every transition sent is stored once, and the counters are the buffer's.
    seqs = stored_seqs(ll)
    assert seqs == list(range(actor.next_seq)), "lost or doubled rows"
    counters = ll.rollout_meta()["extra"]["counters"]
    assert counters["received"] == len(seqs) and counters["episodes"] == sum(
        1 for s in seqs if s % actor.n == actor.n - 1)
