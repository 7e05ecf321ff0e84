"""The safety layer measured at the physics on the lockstep robot (robot.kind: lockstep), in contact: issue 14's
in-contact findings, which franky-sim's arm cannot judge (pressed into the table its joint servo saturates and
chatters, and the TCP sinks ~20 mm below a target that is inside the box). The lockstep robot steps the same
scenes in process with an impedance controller, gravity compensation and the FR3's torque limits; a rate is
task.control_hz (one env.act is one control period of simulated time), and every run is deterministic: each
case here passes or fails every time.

`env.scene.probe` measures every physics step (robot/sim/scene.py `Probe`): the TCP from MuJoCo's own state
against the workspace box, the contact force on the arm against robot.safety.max_force_n. Goals as in
test_safety_physics.py, here in contact too: ≤ 5 mm outside the box, no limit-level force for > 200 ms.

After a push the loop goes on calling env.act with a still action, as an actor with nothing to do does: a window
without calls is a window without the filter (benchmarks/safety.py waits without calls, as franky-sim's sleeps
do; there one extra step of the pressed-corner walk, its rotation still under way when the calls stopped, pressed
the hand's edge into the table at 60 N for 0.3 s that nothing answered)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.robot.factory import make_env  # noqa: E402

MAX_EXCURSION_MM = 5.0
MAX_FORCE_HOLD_MS = 200.0
WALK = Path(__file__).parent / "data" / "safety_pressed_corner.json"
STILL = np.array([0, 0, 0, 0, 0, 0, 1.0])  # no motion, the peg kept


@pytest.fixture(scope="module")
def env_at():
    """The lockstep env of sim_insert_hex at a control rate (one per rate, made when first asked for)."""
    envs: dict[float, object] = {}

    def get(hz: float):
        if hz not in envs:
            envs[hz] = make_env(configs.load("sim_insert_hex", ["--robot.kind", "lockstep",
                                                                "--task.control_hz", str(hz)]))
        return envs[hz]

    yield get
    for e in envs.values():
        e.close()


def probe(env) -> dict:
    s = env.cfg.robot.safety
    return env.scene.probe(s.box_min, s.box_max, s.max_force_n)


def drive(env, action, seconds: float, settle_s: float = 0.3) -> dict:
    """env.act(action(k)) for `seconds` of control periods, then `settle_s` of still actions: what the physics did
    meanwhile. A person insists: a pause after a hard hit is resumed at once (the rules must hold without it)."""
    probe(env)
    held = 0
    for k in range(round(seconds * env.control_hz)):
        if env.safety.paused:
            env.resume()
        held += env.act(action(k)).held
    for _ in range(round(settle_s * env.control_hz)):
        env.act(STILL)
    r = probe(env)
    return {**r, "held": held, "excursion_mm": 1000 * max(r["excursion_m"]),
            "force_hold_ms": 1000 * max(r["force_hold_s"])}


def check(r: dict) -> None:
    assert r["excursion_mm"] <= MAX_EXCURSION_MM, r
    assert r["force_hold_ms"] <= MAX_FORCE_HOLD_MS, r


def holding_the_peg(env) -> bool:
    return env.world.width(0) > 0.02  # the peg is 3 cm across its flats; a closed empty hand is at 0


@pytest.mark.parametrize("hz", [100, 1000])
def test_a_push_into_the_low_corner_with_the_peg_held(env_at, hz):
    """Full steps towards (+x, -y, -z) at 100 Hz and 1 kHz: the held peg is pressed into the table at the corner,
    past the force limit; the TCP stays in the box and the force does not last."""
    env = env_at(hz)
    env.reset(seed=5)
    r = drive(env, lambda k: np.array([1, -1, -1, 0, 0, 0, 1.0]), 3.0)
    check(r)
    s = env.cfg.robot.safety
    corner = np.array([s.box_max[0], s.box_min[1], s.box_min[2]])
    assert np.linalg.norm(np.asarray(r["tcp"][0][:3]) - corner) < 0.02, r  # it got there
    assert max(r["peak_force_n"]) > s.max_force_n, r  # in contact, over the limit: the force rules acted
    assert holding_the_peg(env)


def test_rotation_extremes_pushed_into_the_low_corner_with_the_peg_held(env_at):
    """benchmarks/safety.py's rotation_extremes_100hz: to (+x, -y, -z) while flipping roll and yaw and pitching
    on; franky-sim left the box by 7-22 mm here."""
    env = env_at(100)
    env.reset(seed=9)
    r = drive(env, lambda k: np.array([1, -1, -1, (-1) ** (k // 10), 1, (-1) ** (k // 4), 1.0]), 3.0)
    check(r)
    assert max(r["peak_force_n"]) > 10.0, r  # the peg met the table (it weighs 0.6 N)
    assert holding_the_peg(env)


def test_a_pressed_corner_backs_off_and_up_is_allowed(env_at):
    """Issue 14's recorded walk (tests/data/safety_pressed_corner.json) replayed, then pressing down there with the
    hand tilted, then +z: no limit-level force for longer than 200 ms, the TCP in the box throughout, and +z moves
    the arm up.

    On this robot the replay drags the held peg along the table into the corner (10-47 N) until the fingers
    lose it (step ~90); the tilted press then finds nothing to press. The walk's longest run over the limit is
    191 ms: at 10 Hz the filter sees a contact force that chatters around the limit in one sample of two (it is
    173 ms with the force rules off: the corner pushes above are what the force rules are tested by)."""
    walk = json.loads(WALK.read_text())
    env = env_at(walk["control_hz"])
    env.reset(seed=walk["reset_seed"])
    actions = [np.asarray(a, float) for a in walk["actions"]]
    r = drive(env, lambda k: actions[k], len(actions) / env.control_hz)
    check(r)
    assert max(r["peak_force_n"]) > env.cfg.robot.safety.max_force_n, r  # it did press
    down = drive(env, lambda k: np.array([0.3, -0.3, -1, 0.5 * (k < 5), 0, 0, 1.0]), 2.0)
    check(down)
    env.resume()  # (a hard hit's pause)
    z0 = env.arm.state()[0].position[2]
    up = drive(env, lambda k: np.asarray(walk["then"]["action"], float), walk["then"]["steps"] / env.control_hz)
    check(up)
    assert up["held"] <= 2, up  # the filter lets the arm away from the table
    assert env.arm.state()[0].position[2] > z0 + 0.02
