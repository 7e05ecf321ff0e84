"""Task geometry, success judging, the expert's decisions, the scripted operator's takeover rule and the host
wire codec — pure logic, no simulator needed (fast)."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest

from lastr1 import configs
from lastr1.robot.arm import ArmState
from lastr1.robot.errors import RobotError
from lastr1.robot.keys import Key
from lastr1.robot.safety import Safety
from lastr1.robot.sim import wire
from lastr1.robot.sim.expert import ScriptedExpert, ScriptedKeys, ScriptedOperator
from lastr1.robot.sim.tasks import BAR_HALF, FIX_H, GRIP_BELOW_TOP, PEG_H, InsertHex, LiftBar, make_task, quat_from_rpy

DOWN = quat_from_rpy(math.pi, 0, 0)


def state(p, width=0.0304, q=DOWN) -> ArmState:
    return ArmState(position=np.asarray(p, float), quaternion=np.asarray(q, float), joints=np.zeros(7),
                    gripper_width=width, wrench=np.zeros(6))


@pytest.fixture
def cfg():
    return configs.load("sim_insert_hex")


def hex_scene(peg_p, slot_xy=(0.5, 0.0), peg_q=(0, 0, 0, 1)) -> dict:
    return {"objects": {"peg": [*peg_p, *peg_q]}, "fixtures": {}, "params": {"slot_xy": list(slot_xy), "slot_yaw": 0.0}}


def test_insert_success_needs_depth_alignment_and_upright(cfg):
    task = InsertHex(cfg.robot.sim)
    deep = FIX_H - cfg.robot.sim.insert_depth_m - 0.002 + PEG_H / 2  # centre height with the bottom just deep enough
    assert task.success(hex_scene([0.5, 0.0, deep]))
    assert not task.success(hex_scene([0.5, 0.0, deep + 0.004]))  # not deep enough
    assert not task.success(hex_scene([0.5 + task.hole_apothem + 0.002, 0.0, deep]))  # beside the hole
    tipped = quat_from_rpy(0.5, 0, 0)
    assert not task.success(hex_scene([0.5, 0.0, deep], peg_q=tipped))
    assert task.failure(hex_scene([0.4, 0.1, 0.016], peg_q=quat_from_rpy(math.pi / 2, 0, 0)))
    assert not task.failure(hex_scene([0.4, 0.1, PEG_H / 2]))


def test_difficulty_settings_change_the_task(cfg):
    cfg.robot.sim.slot_clearance_m = 0.001
    tight = InsertHex(cfg.robot.sim).hole_apothem
    cfg.robot.sim.slot_clearance_m = 0.006
    loose = InsertHex(cfg.robot.sim).hole_apothem
    assert loose - tight == pytest.approx(0.005)
    cfg.robot.sim.slot_range_m = [0.0, 0.0]
    fixed = InsertHex(cfg.robot.sim).sample(np.random.default_rng(0))
    assert fixed["params"]["slot_xy"] == pytest.approx(list(InsertHex.slot_center))
    cfg.robot.sim.slot_range_m = [0.05, 0.08]
    a = InsertHex(cfg.robot.sim).sample(np.random.default_rng(1))["params"]["slot_xy"]
    b = InsertHex(cfg.robot.sim).sample(np.random.default_rng(2))["params"]["slot_xy"]
    assert a != b and abs(a[0] - 0.5) <= 0.05 and abs(a[1]) <= 0.08


def test_table_start_keeps_the_peg_clear_of_the_fixture(cfg):
    cfg.robot.sim.peg_start = "table"
    task = InsertHex(cfg.robot.sim)
    for seed in range(20):
        s = task.sample(np.random.default_rng(seed))
        peg, slot = np.array(s["objects"]["peg"][:2]), np.array(s["params"]["slot_xy"])
        assert np.linalg.norm(peg - slot) > 0.14 and s["grasped"] == {}


def test_expert_moves_held_peg_over_the_slot_then_down(cfg):
    task = InsertHex(cfg.robot.sim)
    safety = Safety(cfg.robot.safety)
    expert = ScriptedExpert(task, safety)
    tcp = np.array([0.45, 0.0, 0.22])
    peg = tcp - [0, 0, PEG_H / 2 - GRIP_BELOW_TOP]  # held: the peg hangs from the fingertips
    a = expert.action(hex_scene(peg, slot_xy=(0.5, -0.05)), [state(tcp)])
    assert a.shape == (7,) and a.dtype == np.float32
    # A full step (max |a| = 1) towards the slot at the travel height (TCP 0.11 m), gripper kept closed.
    want = np.array([0.05, -0.05, 0.11 - 0.22])
    assert np.allclose(a[:3], want / np.abs(want).max(), atol=0.02) and a[6] == 1.0
    above = np.array([0.5, -0.05, 0.11])
    a = expert.action(hex_scene(above - [0, 0, PEG_H / 2 - GRIP_BELOW_TOP], slot_xy=(0.5, -0.05)), [state(above)])
    assert abs(a[0]) < 0.05 and abs(a[1]) < 0.05 and a[2] < -0.9  # aligned: straight down
    # The action lands on the expert's waypoint through the real safety filter.
    cmd = safety.filter([state(above)], a)
    assert cmd.positions[0][2] == pytest.approx(above[2] - cfg.robot.safety.max_translation_m, abs=1e-6)


def test_expert_grasps_a_peg_on_the_table(cfg):
    task = InsertHex(cfg.robot.sim)
    expert = ScriptedExpert(task, Safety(cfg.robot.safety))
    peg = [0.4, 0.1, PEG_H / 2]
    grip = np.array([0.4, 0.1, PEG_H - GRIP_BELOW_TOP])
    a = expert.action(hex_scene(peg), [state([0.45, 0.0, 0.22], width=0.08)])
    assert a[6] == -1.0 and a[0] < 0 and a[1] > 0  # open, towards the peg
    a = expert.action(hex_scene(peg), [state(grip + [0, 0, 0.03], width=0.08)])
    assert a[6] == -1.0 and a[2] < 0  # above it: descend, still open
    a = expert.action(hex_scene(peg), [state(grip, width=0.08)])
    assert a[6] == 1.0  # there: close
    a = expert.action(hex_scene(peg), [state(grip, width=0.002)])
    assert a[6] == -1.0 and a[2] > 0  # closed on nothing: open and back up


def test_lift_bar_expert_and_success():
    cfg = configs.load("sim_lift_bar")
    task = LiftBar(cfg.robot.sim)
    bar = lambda z, tilt=0.0: {"objects": {"bar": [0.45, 0.0, z, *quat_from_rpy(tilt, 0, 0)]}, "params": {}}  # noqa: E731
    assert task.success(bar(BAR_HALF[2] + 0.09)) and not task.success(bar(BAR_HALF[2] + 0.02))
    assert not task.success(bar(BAR_HALF[2] + 0.09, tilt=0.3)) and task.failure(bar(0.05, tilt=0.8))
    expert = ScriptedExpert(task, Safety(cfg.robot.safety, n_arms=2))
    grips = [task.base(i, g) for i, g in enumerate(task.grip_points(bar(BAR_HALF[2])))]
    down = quat_from_rpy(math.pi, 0, math.pi / 2)
    held = [state(g, width=0.03, q=down) for g in grips]
    a = expert.action(bar(BAR_HALF[2]), held)
    assert a.shape == (14,) and a[2] > 0.9 and a[9] > 0.9 and a[6] == a[13] == 1.0  # both hold: lift together
    one = [held[0], state(grips[1] + [0, 0, 0.08], width=0.08, q=down)]
    a = expert.action(bar(BAR_HALF[2]), one)
    assert abs(a[2]) < 0.05 and a[6] == 1.0 and a[9] < 0  # arm0 waits, gripping; arm1 comes down


def test_lift_bar_expert_creeps_the_last_centimetres_to_the_grasp():
    # A full 2-cm step this close to the table let a fast sim carry the arm into it (robot/sim/tasks.py).
    cfg = configs.load("sim_lift_bar")
    task = LiftBar(cfg.robot.sim)
    expert = ScriptedExpert(task, Safety(cfg.robot.safety, n_arms=2))
    scene = {"objects": {"bar": [0.45, 0.0, BAR_HALF[2], *quat_from_rpy(0, 0, 0)]}, "params": {}}
    grips = [task.base(i, g) for i, g in enumerate(task.grip_points(scene))]
    down = quat_from_rpy(math.pi, 0, math.pi / 2)
    step = cfg.robot.safety.max_translation_m
    for above, want in ((0.15, -1.0), (0.035, -0.25), (0.012, -0.25), (0.008, -0.25)):
        a = expert.action(scene, [state(g + [0, 0, above], width=0.08, q=down) for g in grips])
        assert a[2] == pytest.approx(want, abs=0.02) and a[9] == pytest.approx(want, abs=0.02), (above, a[2], a[9])
        assert a[6] == a[13] == -1.0  # still open on the way down
    a = expert.action(scene, [state(g + [0, 0, 0.004], width=0.08, q=down) for g in grips])
    assert a[6] == a[13] == 1.0 and abs(a[2]) <= 0.004 / step + 1e-6  # at the grasp height: close


def test_unknown_task_is_a_clear_error(cfg):
    with pytest.raises(RobotError, match="sim_insert_hex"):
        make_task("sim_fold_laundry", cfg.robot.sim)


def test_operator_takes_over_only_on_drift_and_at_its_rate(cfg):
    task = InsertHex(cfg.robot.sim)
    expert = ScriptedExpert(task, Safety(cfg.robot.safety))
    tcp = np.array([0.45, 0.0, 0.22])
    scene = hex_scene(tcp - [0, 0, PEG_H / 2 - GRIP_BELOW_TOP], slot_xy=(0.5, -0.05))
    observe = lambda: (scene, [state(tcp)])  # noqa: E731
    good = expert.action(*observe())
    bad = good.copy()
    bad[:3] = -bad[:3]
    op = ScriptedOperator(expert, observe, rate=1.0, drift=0.8, steps=2, rng=np.random.default_rng(0))
    op.executed(good)
    assert not op.read().intervening
    op.executed(bad)
    cmd = op.read()
    assert cmd.intervening and np.allclose(cmd.action, good) and op.interventions == 1
    assert op.read().intervening  # the second of its 2 steps
    op.executed(good)
    assert not op.read().intervening
    grip = good.copy()
    grip[6] = -1.0  # opening while the expert holds the peg: drift too
    op.executed(grip)
    assert op.read().intervening
    never = ScriptedOperator(expert, observe, rate=0.0, drift=0.8, steps=2)
    never.executed(bad)
    assert not never.read().intervening
    half = ScriptedOperator(expert, observe, rate=0.5, drift=0.8, steps=1, rng=np.random.default_rng(0))
    takes = 0
    for _ in range(400):
        half.executed(bad)
        takes += half.read().intervening
        half.executed(good)
        half.read()
    assert 150 < takes < 250  # about the configured rate


def test_scripted_keys_press_once():
    cfg = configs.load("sim_insert_hex")
    task = InsertHex(cfg.robot.sim)
    inserted = hex_scene([0.5, 0.0, PEG_H / 2 + 0.005])
    keys = ScriptedKeys(task, lambda: inserted)
    assert keys.poll() == [Key.SUCCESS] and keys.poll() == []
    keys.new_episode()
    assert keys.poll() == [Key.SUCCESS]


def test_wire_roundtrips_arrays_without_pickle():
    a, b = socket.socketpair()
    msg = {"op": "render", "images": {"front": np.arange(12, dtype=np.uint8).reshape(2, 2, 3)}, "t": 1.5,
           "q": np.float32(2.0), "nested": [np.zeros((0, 3))]}
    wire.send(a, msg)
    out = wire.recv(b)
    assert out["images"]["front"].dtype == np.uint8 and np.array_equal(out["images"]["front"], msg["images"]["front"])
    assert out["t"] == 1.5 and out["q"] == 2.0 and out["nested"][0].shape == (0, 3)
    a.sendall(b"\xff\xff\xff\x7f")  # a length no frame may have
    with pytest.raises(wire.WireError, match="limit"):
        wire.recv(b)
    a.close()
    with pytest.raises(wire.WireError, match="closed"):
        wire.recv(b)
    b.close()
