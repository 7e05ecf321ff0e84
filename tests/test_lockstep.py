"""The lockstep simulated robot (robot.kind: lockstep): stepped in simulated time, bit-deterministic per seed,
and the same Env as the franky-sim robot for the actor loop. The env-level behaviours both simulated robots
share (safety, faults, operator, keys) are in test_sim_env.py, on this backend."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sim_helpers import require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.robot.factory import make_env  # noqa: E402
from lastr1.robot.keys import Key  # noqa: E402

LOCKSTEP = ["--robot.kind", "lockstep"]


@pytest.fixture(scope="module")
def env():
    with make_env(configs.load("sim_insert_hex", LOCKSTEP)) as e:
        yield e


def test_a_step_is_exactly_one_control_period_of_simulated_time(env):
    obs = env.reset(seed=0)
    c0, t0, f0 = env.clock(), env.world.data.time, obs.images["front"]
    wall = time.monotonic()
    for _ in range(5):
        obs, info = env.step(np.zeros(7, np.float32))
        assert not info.held
    assert env.clock() - c0 == pytest.approx(0.5, abs=1e-9)
    assert env.world.data.time - t0 == pytest.approx(0.5, abs=1e-9)
    assert time.monotonic() - wall < 5.0  # no wall-clock pacing (the real-time robot would take ≥ 0.5 s too)
    frame = env.cameras[0].read_latest()
    assert frame.timestamp_ms == pytest.approx(env.clock() * 1e3)  # the frame shows the state after the step
    assert obs.images["front"].shape == f0.shape == (128, 128, 3)


def test_an_action_moves_the_arm_like_a_franky_cartesian_motion(env):
    from lastr1.robot.sim.lockstep import TRANSLATION_LIMITS

    env.reset(seed=0)
    p0 = env.arm.state()[0].position
    env.step(np.array([0, 0, 1, 0, 0, 0, 0], np.float32))  # 2 cm up, from rest
    p1 = env.arm.state()[0].position
    # From rest franky accelerates at its limit × relative_dynamics_factor: ½·a·T² in the first period.
    a = TRANSLATION_LIMITS[1] * env.cfg.robot.arms[0].relative_dynamics_factor
    assert p1[2] - p0[2] == pytest.approx(0.5 * a * 0.1**2, abs=0.002)
    for _ in range(3):
        p2 = env.arm.state()[0].position
        env.step(np.zeros(7, np.float32))  # stop here: brakes, then holds
    p3 = env.arm.state()[0].position
    assert np.linalg.norm(p3 - p2) < 0.0005
    assert p3[2] - p0[2] < env.cfg.robot.safety.max_translation_m + 0.003 and np.linalg.norm(p3[:2] - p0[:2]) < 0.001


def test_the_hand_squeezes_what_it_holds(env):
    env.reset(seed=0)  # the peg starts grasped
    for _ in range(8):
        env.step(np.array([0, 0, 1, 0, 0, 0, 1], np.float32))
    peg = env.scene.state()["objects"]["peg"]
    tcp = env.world.tcp(0)[0]
    assert tcp[2] > 0.3 and abs(peg[2] - (tcp[2] - 0.015)) < 0.005  # lifted with the hand, not slipping


def test_expert_solves_insert_hex_from_ten_seeds(env):
    for seed in range(10):
        env.reset(seed=seed)
        steps, keys = 0, []
        while not keys and steps < 40:
            env.step(env.scene.expert_action())
            steps, keys = steps + 1, env.keys.poll()
        assert keys == [Key.SUCCESS], f"seed {seed}: {keys} after {steps} steps"


def test_stall_freezes_frames_in_simulated_time(env):
    from lastr1.robot.errors import StaleFrameError

    env.reset(seed=0)
    env.scene.server.fault("stall", seconds=0.5)
    t = env.world.data.time
    with pytest.raises(StaleFrameError):
        for _ in range(4):
            env.step(np.zeros(7, np.float32))
    assert env.world.data.time == t  # no physics while stalled
    for _ in range(3):
        env.act(np.zeros(7, np.float32))
    env.observe()  # moving again, frames fresh


def _rollout(cfg, policy, seeds):
    """Episodes through the actor loop; every transition as plain arrays."""
    from lastr1.actor.agent import Agent
    from lastr1.actor.episode import Sink
    from lastr1.actor.loop import Runtime

    class Collect(Sink):
        def __init__(self):
            self.got = []

        def step(self, s):
            self.got.append((s.obs.proprio, *s.obs.images.values(), s.action, np.float64(s.reward),
                             np.bool_(s.human), s.next_obs.proprio))

    sink = Collect()
    with make_env(cfg) as env:
        rt = Runtime(cfg, env, agent=Agent(policy, cfg.task.instruction, kappa=2, explore=False), sink=sink)
        summaries = rt.run(seeds=seeds, max_episodes=len(seeds))
        periods = rt.rate.periods_ms.values()
    return sink.got, summaries, periods


def test_same_seed_gives_bit_identical_transitions(tmp_path):
    from policy_helpers import tiny_cfg

    from lastr1.policy import build_policy

    def cfg(run):
        c = configs.load("sim_insert_hex", [*LOCKSTEP, "--run_dir", str(tmp_path / run), "--actor.actor_id", "det",
                                            "--task.max_episode_steps", "8", "--robot.sim.intervention_rate", "0.5",
                                            "--robot.sim.intervention_steps", "2"])
        c.policy = tiny_cfg()
        return c

    policy = build_policy(tiny_cfg(), n_arms=1, proprio_dim=8)
    a, sa, periods = _rollout(cfg("a"), policy, [3, 4])
    b, sb, _ = _rollout(cfg("b"), policy, [3, 4])
    c, _, _ = _rollout(cfg("c"), policy, [5, 4])
    assert len(a) == len(b) > 8 and [s.outcome for s in sa] == [s.outcome for s in sb]
    assert any(t[-2] for t in a) and not all(t[-2] for t in a)  # both the operator's and the policy's steps
    for x, y in zip(a, b):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))
    assert not np.array_equal(a[0][1], c[0][1])  # another seed is another scene: the comparison can fail
    assert np.allclose(periods, 100.0)  # the loop ran on simulated time, without sleeping


def test_several_robots_in_one_process_do_not_interfere(env):
    """Two lockstep robots stepped in turn (each its own model, data and GL context) give what one gives alone:
    the scripted expert's episode, bit for bit."""

    def expert_episode(e, seed, other=None):
        obs, out = e.reset(seed=seed), []
        for _ in range(12):
            a = e.scene.expert_action()
            obs, _ = e.step(a)
            out.append((a, obs.proprio, obs.images["front"], obs.images["wrist"]))
            if other is not None:
                other.step(other.scene.expert_action())  # the other robot moves in between
        return out

    alone = expert_episode(env, seed=5)
    with make_env(configs.load("sim_insert_hex", LOCKSTEP)) as second:
        second.reset(seed=9)
        together = expert_episode(env, seed=5, other=second)
    assert all(np.array_equal(u, v) for x, y in zip(alone, together) for u, v in zip(x, y))


_EPISODES = """
import hashlib, numpy as np
from lastr1 import configs
from lastr1.robot.factory import make_env
h = hashlib.sha256()
with make_env(configs.load("sim_insert_hex", ["--robot.kind", "lockstep"])) as env:
    rng = np.random.default_rng(0)
    for seed in (1, 2):  # the scripted expert, then random actions
        env.reset(seed=seed)
        for _ in range(12):
            a = env.scene.expert_action() if seed == 1 else rng.uniform(-1, 1, 7).astype(np.float32)
            obs, _ = env.step(a)
            for x in (a, obs.proprio, *obs.images.values()):
                h.update(np.ascontiguousarray(x).tobytes())
print(h.hexdigest())
"""


def test_two_processes_with_the_same_seed_see_the_same_bits():
    import os
    import subprocess
    import sys

    def run():
        out = subprocess.run([sys.executable, "-c", _EPISODES], capture_output=True, text=True, timeout=240,
                             env={**os.environ, "MUJOCO_GL": "egl"})
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-1]

    assert run() == run()
