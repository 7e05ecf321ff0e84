"""The simulated robot through the actor's facade: make_env → reset/act/observe, safety between action and arm,
the scripted expert, operator and keys, fault injection (two arms: test_sim_dual.py). On the lockstep robot:
none of this is about franky or real time (the driver path: test_arm_sim.py, test_sim_backends.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_helpers import require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.robot.errors import StaleFrameError  # noqa: E402
from lastr1.robot.factory import make_env  # noqa: E402
from lastr1.robot.keys import Key  # noqa: E402
from lastr1.robot.sim.tasks import PEG_H  # noqa: E402


def run_expert(env, sim_s: float, hz: float = 10.0, wall_s: float = 300.0) -> tuple[list, str]:
    """The expert at the control rate until the scripted keys say how it went, within `sim_s` seconds of
    simulated time (a real-time robot is paced in wall time; a lockstep one advances a control period per
    action). The budget is in the simulator's clock: starved of CPU, franky-sim runs slower than the wall, and
    a budget in steps or wall seconds would fail the expert for the host's speed. Returns the keys and how far
    it got (steps, simulated and wall seconds) for the failure message."""
    import time

    def sim_time() -> float:
        return float(env.scene.state(max_age_s=0)["time"])

    sim0, wall0, k = sim_time(), time.monotonic(), 0
    while True:
        t0 = time.monotonic()
        env.act(env.scene.expert_action())
        k += 1
        keys = env.keys.poll()
        sim, wall = sim_time() - sim0, time.monotonic() - wall0
        said = f"{k} steps, {sim:.1f} s simulated in {wall:.1f} s"
        if keys or sim >= sim_s:
            return keys, said
        assert wall < wall_s, f"the simulator advanced {sim:.1f} s in {wall:.0f} s of wall time ({k} steps)"
        if not hasattr(env, "clock"):
            time.sleep(max(0.0, 1 / hz - (time.monotonic() - t0)))


def idle(env, seconds: float) -> None:
    """Let `seconds` of simulated time pass with no new action (the arm keeps its last target)."""
    for _ in range(round(seconds * env.control_hz)):
        env.world.advance()


@pytest.fixture(scope="module")
def env():
    with make_env(configs.load("sim_insert_hex", ["--robot.kind", "lockstep"])) as e:
        yield e


def test_observation_has_both_cameras_and_proprio(env):
    obs = env.reset(seed=0)
    assert env.action_dim == 7 and env.camera_names == ["front", "wrist"]
    for name in ("front", "wrist"):
        img = obs.images[name]
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and img.std() > 5  # a scene, not a blank
    assert obs.proprio.shape == (8,) and obs.proprio.dtype == np.float32
    assert abs(np.linalg.norm(obs.proprio[3:7]) - 1) < 1e-4
    assert 0.025 < obs.proprio[7] < 0.035  # the episode starts with the peg grasped


def test_expert_solves_insert_hex_from_several_seeds(env):
    slots = []
    for seed in (1, 2, 3):
        env.reset(seed=seed)
        slots.append(env.scene.params["slot_xy"])
        assert not env.scene.success()
        keys, said = run_expert(env, sim_s=6.0)
        assert keys == [Key.SUCCESS], f"seed {seed}: no success in {said}"
        assert env.scene.success()
        assert env.keys.poll() == []  # pressed once per episode
    assert len({tuple(np.round(s, 4)) for s in slots}) == 3  # the slot really moves with the seed


def test_same_seed_same_scene(env):
    env.reset(seed=7)
    a = env.scene.state(max_age_s=0)["fixtures"]["slot"]
    env.reset(seed=7)
    b = env.scene.state(max_age_s=0)["fixtures"]["slot"]
    assert np.allclose(a, b)


def test_safety_keeps_targets_in_the_box(env):
    env.reset(seed=0)
    box_max = np.array(env.cfg.robot.safety.box_max)
    s = env.arm.state()[0]
    env.arm.move_to((box_max - 0.015)[None], s.quaternion[None], np.array([1.0]))  # set-up: near a corner
    assert env.arms[0].join(timeout=10)
    clipped = False
    for _ in range(10):  # full speed towards +x, +y, +z, out of the box
        info = env.act(np.array([1, 1, 1, 0, 0, 0, 1], dtype=np.float32))
        assert not info.held
        clipped |= any("box" in r for r in info.reasons)
        idle(env, 0.1)
    assert env.arms[0].join(timeout=10)
    p = env.observe().proprio[:3]
    assert clipped
    assert np.all(p <= box_max + 0.002), f"arm at {p}, box max {box_max}"
    assert np.all(np.abs(p - box_max) < 0.003)  # and it went right to the corner


def test_nan_action_holds_the_arm(env):
    env.reset(seed=0)
    before = env.observe().proprio[:3]
    info = env.act(np.full(7, np.nan, dtype=np.float32))
    assert info.held and any("finite" in r for r in info.reasons)
    idle(env, 0.3)
    assert np.linalg.norm(env.observe().proprio[:3] - before) < 0.002


def test_scripted_operator_takes_over_when_the_policy_drifts(env):
    env.reset(seed=0)
    op = env.teleop
    op.rate, op.steps = 1.0, 3
    try:
        assert not op.read().intervening  # nothing executed yet: nothing to judge
        env.act(env.scene.expert_action())
        assert not op.read().intervening  # the policy does what the expert would
        env.act(np.array([0, 0, 1, 0, 0, 0, -1], dtype=np.float32))  # up and open: wrong
        cmd = op.read()
        assert cmd.intervening and np.allclose(cmd.action, env.scene.expert_action(), atol=0.15)
        assert op.read().intervening and op.read().intervening  # a takeover lasts `steps` reads
        assert not op.read().intervening
        op.rate = 0.0
        env.act(np.array([0, 0, 1, 0, 0, 0, -1], dtype=np.float32))
        assert not op.read().intervening  # rate 0: a drifting policy is left alone
    finally:
        op.rate, op.steps = env.cfg.robot.sim.intervention_rate, env.cfg.robot.sim.intervention_steps


def test_keys_press_failure_when_the_peg_falls_over(env):
    env.reset(seed=0)
    env.arms[0].set_gripper(False, wait=True)
    env.scene.server.reset({"peg": [0.4, 0.15, 0.02, math.sin(math.pi / 4), 0, 0, math.cos(math.pi / 4)]}, {})
    idle(env, 0.2)
    assert env.keys.poll() == [Key.FAILURE]


def test_injected_reflex_is_reported_and_recovered(env):
    env.reset(seed=0)
    env.act(np.array([0, 0, -0.5, 0, 0, 0, 1], dtype=np.float32))
    env.scene.server.fault("reflex", arm=0)
    info = env.act(np.array([0, 0, -0.5, 0, 0, 0, 1], dtype=np.float32))
    assert info.held and info.recovered and any("cartesian_reflex" in f for f in info.faults)
    info = env.act(np.array([0, 0, -0.5, 0, 0, 0, 1], dtype=np.float32))
    assert not info.held and not info.faults


def test_camera_dropout_and_stall_make_frames_stale(env):
    env.reset(seed=0)
    env.observe()
    env.scene.server.fault("camera_drop", camera="wrist", seconds=0.6)
    idle(env, 0.4)  # > max_age_ms 250
    with pytest.raises(StaleFrameError, match="wrist"):
        env.observe()
    idle(env, 0.5)
    env.observe()  # fresh again once the dropout ends
    env.scene.server.fault("stall", seconds=0.6)
    idle(env, 0.4)
    with pytest.raises(StaleFrameError):
        env.step(np.zeros(7, dtype=np.float32))
    idle(env, 0.3)
    env.observe()


def test_per_step_fault_dice(env):
    s = env.cfg.robot.sim
    s.fault_reflex_p = 1.0
    try:
        env.reset(seed=0)
        info = env.act(np.zeros(7, dtype=np.float32))
        assert info.injected == ["reflex on arm0"]
    finally:
        s.fault_reflex_p = 0.0
    info = env.act(np.zeros(7, dtype=np.float32))  # the fault shows up (and is recovered) on the next step
    assert info.recovered or not info.held


def test_peg_on_table_variant_expert_picks_and_inserts():
    cfg = configs.load("sim_insert_hex", ["--robot.kind", "lockstep", "--robot.sim.peg_start", "table"])
    with make_env(cfg) as env:
        obs = env.reset(seed=4)
        assert obs.proprio[7] > 0.07  # starts open, the peg stands on the table
        assert env.scene.state()["objects"]["peg"][2] == pytest.approx(PEG_H / 2, abs=0.003)
        keys, said = run_expert(env, sim_s=11.0)
        assert keys == [Key.SUCCESS], f"no success in {said}"
