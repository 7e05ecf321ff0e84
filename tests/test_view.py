"""The rerun view: the actor on the simulated robot streams every listed entity for every executed step, read
back from the recording with rerun's own reader; `lastr1 view` replays a demo folder and an eval rollout."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from policy_helpers import tiny_cfg
from sim_helpers import overrides, require_sim

from lastr1 import configs

rr = pytest.importorskip("rerun")


def read_rrd(path) -> dict[str, list[int]]:
    """entity path → the `step` values logged to it, as rerun's reader sees the file."""
    from rerun.chunk import RrdReader

    got: dict[str, list[int]] = {}
    for c in RrdReader(str(path)).stream():
        b = c.to_record_batch()
        steps = b.column("step").to_pylist() if "step" in b.schema.names else [None] * c.num_rows
        got.setdefault(c.entity_path.lstrip("/"), []).extend(steps)
    return got


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    require_sim()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from lastr1.policy import build_policy
    from lastr1.robot.factory import make_env

    tmp = tmp_path_factory.mktemp("view")
    cfg = configs.load("sim_insert_hex", ["--run_dir", str(tmp), *overrides(11), "--task.max_episode_steps",
                                          "8", "--robot.sim.intervention_rate", "1.0",
                                          "--robot.sim.intervention_steps", "3"])
    cfg.policy = tiny_cfg()
    env = make_env(cfg)
    yield cfg, env, build_policy(cfg.policy, n_arms=1, proprio_dim=8)
    env.close()


def test_actor_view_has_every_stream_for_every_step(sim, tmp_path):
    from lastr1.actor.loop import Runtime
    from lastr1.actor.process import make_agent
    from lastr1.actor.view import POLICY_STREAMS, STEP_STREAMS, View

    cfg, env, policy = sim
    view = View.open(cfg, str(tmp_path / "run.rrd"))
    rt = Runtime(cfg, env, agent=make_agent(cfg, policy), sink=view, mode="rl")
    episodes = rt.run(threading.Event(), max_episodes=2)
    view.close()
    steps = sum(e.steps for e in episodes)
    assert steps >= 2 and view.dropped == 0 and view.error is None
    got = read_rrd(tmp_path / "run.rrd")
    every = list(range(steps))
    for name in (*STEP_STREAMS, *POLICY_STREAMS, *(f"camera/{c}" for c in env.camera_names), "world/ee/0",
                 "world/plan/0"):
        assert sorted(got.get(name, [])) == every, name
    assert "world/box" in got and len(got["world/path/0"]) >= steps - len(episodes)
    assert len(got["episode/outcome"]) == 2 * len(episodes)  # a line at each start and each end
    interventions = sum(e.intervention_steps for e in episodes)
    assert interventions > 0  # the scripted operator took over: the flag stream carries it


def test_layout_marks_each_hot_reload(tmp_path):
    from lastr1.actor.agent import Decision
    from lastr1.actor.view import Layout, recording

    rec = recording(str(tmp_path / "r.rrd"))
    lay = Layout(rec, box=None, step_m=0.02)
    for v in (0, 0, 1, 1, 3):
        d = Decision(action=np.zeros(7, np.float32), chunk=np.zeros((4, 7), np.float32),
                     latents=np.ones((4, 16), np.float16), latent_len=2, version=v, reasoned=True, planned=True,
                     latency_ms=1.0, value=0.5, logprob=0.0, exit_probs=np.array([0.2, 0.9], np.float32))
        lay.step(0, {"front": np.zeros((8, 8, 3), np.uint8)}, np.zeros(8), np.zeros(7), False, -0.05, d)
    rec.flush()
    rec.disconnect()
    got = read_rrd(tmp_path / "r.rrd")
    assert sorted(got["policy/reload"]) == [2, 4] and sorted(got["policy/version"]) == [0, 1, 2, 3, 4]


def test_view_command_opens_an_eval_rollout(sim, tmp_path):
    from lastr1.actor.evaluate import evaluate
    from lastr1.actor.view import POLICY_STREAMS
    from lastr1.cli import main

    cfg, env, policy = sim
    out = tmp_path / "eval"
    evaluate(cfg, rollouts=2, runs=1, conditions=["original"], out=out, env=env, policy=policy)
    rows = json.loads((out / "results.json").read_text())["rollouts"]
    steps = sum(r["steps"] for r in rows)
    assert main(["view", str(out), "--to", str(tmp_path / "eval.rrd")]) == 0
    got = read_rrd(tmp_path / "eval.rrd")
    for name in (*POLICY_STREAMS, "camera/front", "world/plan/0", "action/executed"):
        assert sorted(got[name]) == list(range(steps)), name
    assert len(got["episode/outcome"]) == 2 * len(rows)


def test_view_command_opens_a_demo_folder(tmp_path):
    from lastr1.actor.view import STEP_STREAMS
    from lastr1.cli import main
    from lastr1.transport.demo_store import EpisodeWriter

    rng = np.random.default_rng(0)
    for T in (3, 4):
        w = EpisodeWriter(tmp_path / "demos", "t", "i", fps=10)
        for _ in range(T):
            w.add({"front": rng.integers(0, 255, (16, 16, 3)), "wrist": rng.integers(0, 255, (16, 16, 3))},
                  rng.normal(size=8), rng.uniform(-1, 1, 7), -0.05, intervention=True)
        w.finish(True)
    assert main(["view", str(tmp_path / "demos"), "--to", str(tmp_path / "demos.rrd")]) == 0
    got = read_rrd(tmp_path / "demos.rrd")
    for name in (*STEP_STREAMS, "camera/front", "camera/wrist", "world/ee/0"):
        assert sorted(got[name]) == list(range(7)), name
    assert "policy/latent_len" not in got  # a person drove: there is no policy to show
    assert main(["view", str(tmp_path / "nothing-here"), "--to", str(tmp_path / "x.rrd")]) == 2


def test_learner_streams_losses_q_buffers_rate_and_versions(tmp_path):
    import socket
    import time

    from lastr1.learner.service import Learner
    from lastr1.transport.actor_link import ActorLink
    from lastr1.transport.messages import Transition

    cfg = configs.load("sim_insert_hex")
    cfg.policy = tiny_cfg()
    cfg.run_dir = str(tmp_path / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(insecure=True, bind_host="127.0.0.1", port=port, spool_dir=str(tmp_path / "spool")).items():
        setattr(cfg.transport, k, v)
    for k, v in dict(start_after=4, grad_accum=1, broadcast_every_updates=1, checkpoint_every_updates=100,
                     view=str(tmp_path / "learner.rrd")).items():
        setattr(cfg.learner, k, v)
    rng = np.random.default_rng(0)
    side = cfg.robot.image_size
    learner = Learner(cfg)
    link = ActorLink(cfg.transport, "a0")
    try:
        for t in range(4):
            link.send(Transition(
                episode=0, step=t, policy_version=0, intervention=t == 0,
                images={c: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for c in ("front", "wrist")},
                # the learner's schema: a person's step carries its executed action alone, a policy step its chunk
                proprio=rng.normal(size=8).astype(np.float32),
                action=rng.uniform(-1, 1, (1 if t == 0 else 8, 7)).astype(np.float32),
                latents=rng.normal(size=(4, 64)).astype(np.float16), latent_len=4, reward=-0.05, terminated=t == 3,
                truncated=False, t_obs=time.time()))
        t0 = time.monotonic()
        while learner.trainer.counters.updates < 3 and time.monotonic() - t0 < 60:
            learner.step()
    finally:
        link.close()
        learner.close()
    assert learner.trainer.counters.updates >= 3
    got = read_rrd(tmp_path / "learner.rrd")
    for name in ("learner/critic_loss", "learner/q", "learner/actor_loss", "learner/buffer/rollout",
                 "learner/buffer/demo", "learner/published_version", "episodes/length"):
        assert name in got, name
    assert "learner/updates_per_s" in got and "learner/publish" in got  # v1, v2, ... were published

    # `lastr1 view` opens the rollout buffer's episodes: the 4 steps, the executed action the chunk's first.
    from lastr1.cli import main

    assert main(["view", str(learner.paths.rollout), "--to", str(tmp_path / "rollouts.rrd")]) == 0
    got = read_rrd(tmp_path / "rollouts.rrd")
    for name in ("camera/front", "arm/state", "action/executed", "episode/intervention", "policy/latents",
                 "world/plan/0"):
        assert sorted(got[name]) == [0, 1, 2, 3], name
    assert len(got["episode/outcome"]) == 2  # one episode: its start and its end


def test_web_viewer_is_served_for_another_machine(tmp_path):
    """The page and its wasm come from the viewer's own HTTP server; a browser elsewhere opens the printed address.
    (README's screenshot is headless Chromium on such a page during `lastr1 demo --view`.)"""
    import urllib.request

    from sim_helpers import free_port

    from lastr1.actor.view import recording

    web, grpc = free_port(), free_port()
    rec = recording("web", tmp_path / "also.rrd", web_port=web, grpc_port=grpc)
    try:
        rec.log("episode/reward", rr.Scalars([1.0]))
        page = urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10).read().decode()
        assert "<html" in page.lower() and "re_viewer" in page
    finally:
        rec.flush()
        rec.disconnect()
    assert "episode/reward" in read_rrd(tmp_path / "also.rrd")  # the file sink got the same stream
