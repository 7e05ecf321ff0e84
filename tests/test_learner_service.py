"""The learner process over real loopback links: actors' transitions land exactly once, across a restart."""

import socket
import threading
import time

import numpy as np
import pytest
import torch
from policy_helpers import tiny_cfg

from lastr1 import configs
from lastr1.learner.service import Learner
from lastr1.learner.trainer import LearnerError
from lastr1.transport.actor_link import ActorLink
from lastr1.transport.messages import Transition

IMG = 64




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cfg(tmp_path):
    c = configs.load("sim_insert_hex")
    c.policy = tiny_cfg()
    c.run_dir = str(tmp_path / "run")
    c.robot.image_size = IMG  # the learner refuses any other
    c.transport.insecure = True
    c.transport.bind_host = "127.0.0.1"
    c.transport.port = free_port()
    c.transport.spool_dir = str(tmp_path / "spool")
    c.transport.heartbeat_s = 0.2
    c.transport.resend_after_s = 0.5
    for k, v in dict(start_after=6, grad_accum=1, broadcast_every_updates=1, checkpoint_every_updates=1).items():
        setattr(c.learner, k, v)
    return c


def transition(episode, step, n_steps, intervention=False, seed=0):
    rng = np.random.default_rng(seed * 1000 + episode * 10 + step)
    last = step == n_steps - 1
    return Transition(
        episode=episode, step=step, policy_version=0, intervention=intervention,
        images={c: rng.integers(0, 256, (IMG, IMG, 3), dtype=np.uint8) for c in ("front", "wrist")},
        proprio=rng.normal(size=8).astype(np.float32), action=rng.uniform(-1, 1, (8, 7)).astype(np.float32),
        latents=rng.normal(size=(4, 64)).astype(np.float16), latent_len=4, reward=10.0 if last else -0.05,
        terminated=last, truncated=False, t_obs=time.time(),
    )


def ingest_until(learner, n, timeout=20.0):
    t0 = time.monotonic()
    while learner.rollout.committed < n and time.monotonic() - t0 < timeout:
        learner.ingest(0.1)
    return learner.rollout.committed


def test_two_actors_both_land_and_learning_waits_for_threshold(cfg):
    learner = Learner(cfg)
    links = [ActorLink(cfg.transport, f"actor{i}") for i in range(2)]
    try:
        for i, link in enumerate(links):
            for s in range(3):
                link.send(transition(i, s, 3, intervention=s == 0, seed=i))
        assert ingest_until(learner, 6) == 6
        assert learner.per_actor == {"actor0": 3, "actor1": 3}
        b = learner.rollout.gather(learner.rollout.sampleable())
        assert len(b) == 6 and b.intervention.sum() == 2
        assert b.state.latent_len.tolist() == [4] * 6
        assert learner.trainer.counters.episodes == 2 and learner.trainer.counters.successes == 2
        assert all(link.wait_acked(5.0) for link in links)
        # actors' stats reach the learner's TensorBoard under their sender's name
        from lastr1.transport.messages import Telemetry

        links[1].send_stats(Telemetry(episode_return=9.5, intervention_rate=0.25))
        t0 = time.monotonic()
        while not learner._actor_stats() and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        learner.writer.flush()
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ea = EventAccumulator(str(learner.paths.tensorboard))
        ea.Reload()
        assert ea.Scalars("actor/actor1/episode_return")[-1].value == 9.5
        assert [e.value for e in ea.Scalars("episodes/length")] == [3.0, 3.0]
        assert ea.Scalars("episodes/success_rate_last20/actor0")[-1].value == 1.0
        # start_after = 6 and the interventions make a demo stream: learning may start
        assert learner.trainer.ready()
    finally:
        for link in links:
            link.close()
        learner.close()


def test_restart_mid_stream_loses_nothing_and_counts_nothing_twice(cfg):
    link = ActorLink(cfg.transport, "actor0")
    learner = Learner(cfg)
    try:
        for s in range(5):
            link.send(transition(0, s, 10))
        assert ingest_until(learner, 5) == 5
        got_before = learner.rollout.committed
        for s in range(5, 10):
            link.send(transition(0, s, 10))
        pending, t0 = [], time.monotonic()
        while len(pending) < 5 and time.monotonic() - t0 < 10:
            pending += learner.link.recv(0.2)  # received, never committed, never acknowledged
        assert pending
        learner.link.close()
        learner._link = None
        time.sleep(0.3)
        again = Learner(cfg, resume=True)
        assert again.rollout.committed == got_before
        assert ingest_until(again, 10) == 10
        time.sleep(1.0)  # any late resend must be dropped as a duplicate, not stored again
        again.ingest(0.2)
        assert again.rollout.committed == 10
        b = again.rollout.gather(again.rollout.sampleable())
        assert len(b) == 10  # one unbroken episode: every step linked to the next, the last terminal
        assert link.wait_acked(5.0)
        again.close()
    finally:
        link.close()


def one_episode_landed(cfg):
    """A learner and an actor link, with one 6-step episode (2 intervention steps) already committed."""
    link = ActorLink(cfg.transport, "actor0")
    learner = Learner(cfg)
    for s in range(6):
        link.send(transition(0, s, 6, intervention=s < 2))
    assert ingest_until(learner, 6) == 6
    return link, learner


def test_refuses_to_overwrite_state_without_resume_and_publishes_versions(cfg):
    link, learner = one_episode_landed(cfg)
    try:
        stop = threading.Event()
        th = threading.Thread(target=learner.run, kwargs=dict(stop=stop, max_updates=1))
        th.start()
        th.join(120)
        assert learner.trainer.counters.updates == 1
        t0 = time.monotonic()
        while (link.latest_weights() is None or link.latest_weights().version < 2) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        w = link.latest_weights()
        assert w is not None and w.version == 2  # v1 at start, v2 after the first update
        from lastr1.policy import build_policy
        from lastr1.policy.adapter import AdapterBlob

        fresh = build_policy(cfg.policy, n_arms=1, proprio_dim=8)
        fresh.load_adapter(AdapterBlob(data=w.adapter, version=w.version, sha256=w.sha256))
        for (n, a), b in zip(fresh.trainable_state().items(), learner.policy.trainable_state().values()):
            assert torch.equal(a, b), n
    finally:
        link.close()
    with pytest.raises(LearnerError, match="--resume"):
        Learner(cfg)
    resumed = Learner(cfg, resume=True)
    assert resumed.trainer.counters.updates == 1 and resumed.version == 2
    resumed.close()


def test_a_critic_only_start_publishes_nothing_new(cfg):
    cfg.learner.critic_only_updates = 1
    link, learner = one_episode_landed(cfg)
    try:
        v0 = learner.version
        learner.step()
        assert learner.trainer.counters.updates == 1 and learner.trainer.counters.actor_steps == 0
        assert learner.version == v0  # the adapters are the warm-up's still: no version to send
        learner.step()
        assert learner.trainer.counters.actor_steps == 1 and learner.version == v0 + 1
    finally:
        link.close()
        learner.close()


def test_rows_arriving_out_of_order_are_linked_and_an_abandoned_episode_is_marked(cfg):
    """Steps of an episode resent out of order are still linked each to the next (by episode and step); an
    actor that starts episode 1 while episode 0 never sent its last step left episode 0 half-finished."""
    link = ActorLink(cfg.transport, "actor0")
    learner = Learner(cfg)
    try:
        for s in (3, 1, 0, 4, 2):  # a 5-step episode, shuffled
            link.send(transition(0, s, 5))
        assert ingest_until(learner, 5) == 5
        assert len(learner.rollout) == 5  # all linked: 4 to their successor, the last terminal
        for s in range(3):  # episode 1 stops after step 2 (the actor was killed) ...
            link.send(transition(1, s, 10))
        assert ingest_until(learner, 8) == 8
        assert learner.trainer.counters.abandoned == 0
        link.send(transition(2, 0, 10))  # ... and the restarted actor begins episode 2
        assert ingest_until(learner, 9) == 9
        c = learner.trainer.counters
        assert c.abandoned == 1 and c.episodes == 1 and c.received == 9
        r = learner.rollout
        g = r.total - 2  # episode 1's step 2: truncated now, never sampled (no next observation)
        assert r.arrays["truncated"][g] and g not in r.sampleable() and len(r) == 7
        assert r.extra["counters"]["abandoned"] == 1  # committed with the rows
        learner.close()
    finally:
        link.close()


ACTOR_KILLED_MID_TAKEOVER = """
import json, os, signal, sys, time
import numpy as np
from lastr1.actor.episode import StepRecord
from lastr1.actor.learner_sink import TransitionSink
from lastr1.configs.transport import TransportConfig
from lastr1.robot.interfaces import Observation
from lastr1.transport.actor_link import ActorLink
link = ActorLink(TransportConfig(**json.loads(sys.argv[1])), "actor0")
sink = TransitionSink(link, 8, 8, 64)
rng = np.random.default_rng(0)
for s in range(5):  # five steps of a person's takeover, executed; then the actor dies mid-episode
    obs = Observation({c: np.zeros((64, 64, 3), np.uint8) for c in ("front", "wrist")},
                      np.full(8, s, np.float32), time.monotonic())
    sink.step(StepRecord(0, s, obs, time.time(), np.full(7, s / 10, np.float32), True, None, reward=-0.05))
while link.backlog().queued:
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_actor_killed_mid_takeover_loses_no_executed_step_and_the_learner_assembles_chunks(cfg):
    import json
    import signal
    import subprocess
    import sys
    from dataclasses import asdict

    learner = Learner(cfg)
    try:
        r = subprocess.run([sys.executable, "-c", ACTOR_KILLED_MID_TAKEOVER, json.dumps(asdict(cfg.transport))],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == -signal.SIGKILL, r.stderr
        link = ActorLink(cfg.transport, "actor0")  # the restarted actor resends its spool
        try:
            assert ingest_until(learner, 5) == 5  # every executed step, though none had a known chunk
            rows = learner.rollout
            steps = rows.arrays["proprio"][:5, 0].astype(int)
            chunk = {s: [round(float(x), 2) for x in rows.arrays["action"][i][:, 0]] for i, s in enumerate(steps)}
            assert chunk[0] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4]  # the person's next actions so far
            assert chunk[4] == [0.4] * 8
            assert rows.count("intervention") == 0  # not final yet: held out of training
            link.send(transition(1, 0, 3))  # the restarted actor's next episode: episode 0 was abandoned ...
            assert ingest_until(learner, 6) == 6
            assert learner.trainer.counters.abandoned == 1
            assert not rows.held  # ... so its chunks are final as they stand
            assert rows.count("intervention") == 4  # steps 0-3 (step 4 has no next observation)
        finally:
            link.close()
        learner.close()
    finally:
        if learner._link is not None:
            learner._link.close()


def test_resume_refuses_when_published_weights_outlive_every_checkpoint(cfg):
    """Weights made after 5 updates went out, and no complete checkpoint holds them (a kill during the first
    save leaves only its unfinished `.tmp`): --resume must not silently start over at update 0."""
    import json

    link, learner = one_episode_landed(cfg)
    link.close()
    learner.close()
    folder = learner.paths.checkpoints
    (folder / "checkpoint-000000005.tmp").mkdir()
    learner.paths.published.write_text(json.dumps({"version": 3, "sha256": "0" * 64, "updates": 5}))
    with pytest.raises(LearnerError, match="no complete checkpoint") as e:
        Learner(cfg, resume=True)
    assert "published.json" in e.value.hint
