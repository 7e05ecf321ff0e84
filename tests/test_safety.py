"""The safety layer: no target leaves the box, no step exceeds the limits, whatever the action or the state."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lastr1.configs.robot import SafetyConfig
from lastr1.robot import rotations
from lastr1.robot.arm import ArmState
from lastr1.robot.errors import RobotError
from lastr1.robot.safety import SafeCommand, Safety

CFG = SafetyConfig()  # box x∈[0.25,0.75] y∈[-0.3,0.3] z∈[0.02,0.6]; 2 cm and 0.1 rad per step
LO, HI = np.array(CFG.box_min), np.array(CFG.box_max)
EPS = 1e-9


def state(p, q=(1.0, 0.0, 0.0, 0.0), wrench=None, errors=()):
    return ArmState(
        position=np.asarray(p, dtype=np.float64),
        quaternion=np.asarray(q, dtype=np.float64),
        joints=np.zeros(7),
        gripper_width=0.04,
        wrench=np.zeros(6) if wrench is None else np.asarray(wrench, dtype=np.float64),
        errors=list(errors),
    )


def in_box(p, tol=EPS):
    return bool(np.all(p >= LO - tol) and np.all(p <= HI + tol))


def dist_to_box(p):
    return float(np.linalg.norm(p - np.clip(p, LO, HI)))


any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite_action_float = st.one_of(
    st.floats(-1.0, 1.0), st.floats(-1e12, 1e12), st.sampled_from([-1.0, 1.0, 0.0, 1e300, -1e300])
)
positions = st.one_of(
    # inside the box, on its faces, and far outside (a teleport, a human pushing the arm)
    hnp.arrays(np.float64, 3, elements=st.floats(-0.0, 1.0)).map(lambda u: LO + u * (HI - LO)),
    hnp.arrays(np.float64, 3, elements=st.floats(-3.0, 3.0)),
    hnp.arrays(np.float64, 3, elements=st.sampled_from([0.25, 0.75, -0.3, 0.3, 0.02, 0.6, 0.0])),
)
quaternions = hnp.arrays(np.float64, 4, elements=st.floats(-1.0, 1.0)).filter(lambda q: np.linalg.norm(q) > 1e-3)


def check_motion(cmd: SafeCommand, states):
    """The invariants of a command that moves the arm."""
    for i, s in enumerate(states):
        p0, p1 = s.position, cmd.positions[i]
        assert np.all(np.isfinite(p1)) and np.all(np.isfinite(cmd.quaternions[i]))
        assert np.linalg.norm(p1 - p0) <= CFG.max_translation_m + EPS
        assert abs(np.linalg.norm(cmd.quaternions[i]) - 1.0) < 1e-9
        assert rotations.angle_between(s.quaternion, cmd.quaternions[i]) <= CFG.max_rotation_rad + 1e-7
        assert -1.0 <= cmd.grippers[i] <= 1.0
        d0 = dist_to_box(p0)
        if d0 == 0.0:
            assert in_box(p1), (p0, p1)
        else:
            # Outside: strictly closer, by the bound the docstring promises.
            d1 = dist_to_box(p1)
            assert d1 <= d0 * d0 / (d0 + CFG.max_translation_m) + EPS, (p0, p1, d0, d1)
            if d0 + CFG.max_translation_m < 1e-3:  # (near enough to land inside in one step)
                assert in_box(p1)


@settings(max_examples=400, deadline=None)
@given(p=positions, q=quaternions, a=hnp.arrays(np.float64, 7, elements=finite_action_float))
def test_finite_actions_never_leave_the_box_nor_exceed_the_step(p, q, a):
    s = [state(p, q)]
    cmd = Safety(CFG).filter(s, a)
    assert not cmd.held, cmd.reasons
    check_motion(cmd, s)


@settings(max_examples=300, deadline=None)
@given(p=positions, q=quaternions, a=hnp.arrays(np.float64, 14, elements=any_float))
def test_any_action_two_arms(p, q, a):
    s = [state(p, q), state(np.clip(p, LO, HI), q)]
    cmd = Safety(CFG, n_arms=2).filter(s, a)
    if not np.all(np.isfinite(a)):
        assert cmd.held
        assert any("not finite" in r for r in cmd.reasons)
        np.testing.assert_allclose(cmd.positions[0], p)  # hold = where it is
    else:
        assert not cmd.held
        check_motion(cmd, s)


@settings(max_examples=100, deadline=None)
@given(p=positions, q=quaternions, a=hnp.arrays(np.float64, 7, elements=st.floats(-1, 1)))
def test_repeated_steps_bring_an_outside_arm_into_the_box(p, q, a):
    safety = Safety(CFG)
    for _ in range(400):  # ≥ the 3-m worst case at 2 cm per step (the bound shrinks geometrically near the box)
        cmd = safety.filter([state(p, q)], a)
        p, q = cmd.positions[0], cmd.quaternions[0]
        if in_box(p):
            break
    assert in_box(p)
    # ... and once inside it stays inside whatever it is told.
    for k in range(20):
        cmd = safety.filter([state(p, q)], np.full(7, (-1.0) ** k * 5))
        p = cmd.positions[0]
        assert in_box(p)


def test_units_and_frames():
    safety = Safety(CFG)
    q = rotations.from_rpy([np.pi, 0.0, 0.0])  # gripper pointing down, as at home
    s = [state([0.5, 0.0, 0.3], q)]
    cmd = safety.filter(s, [1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(cmd.positions[0], [0.52, 0.0, 0.3])  # +x of the BASE, not the flipped hand
    np.testing.assert_allclose(cmd.quaternions[0], q)
    assert cmd.grippers[0] == 1.0 and cmd.reasons == []
    # yaw +1 = +0.1 rad about the base z axis
    cmd = safety.filter(s, [0, 0, 0, 0, 0, 1, -1])
    expected = rotations.multiply(rotations.from_rpy([0, 0, 0.1]), q)
    assert rotations.angle_between(cmd.quaternions[0], expected) < 1e-9
    # all three translation axes at +1: the step is limited in norm, the direction kept
    cmd = safety.filter(s, [1, 1, 1, 0, 0, 0, 0])
    step = cmd.positions[0] - s[0].position
    np.testing.assert_allclose(step, np.full(3, 0.02 / np.sqrt(3)))
    # clipping is reported
    cmd = safety.filter([state([0.5, 0.0, 0.025], q)], [0, 0, -1, 0, 0, 0, 0])
    assert cmd.positions[0][2] == pytest.approx(0.02) and any("clipped to the workspace" in r for r in cmd.reasons)
    cmd = safety.filter(s, [7, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(cmd.positions[0], [0.52, 0.0, 0.3])
    assert "action clipped to [-1, 1]" in cmd.reasons


def test_outside_box_moves_back_even_when_told_to_go_further():
    s = [state([0.5, 0.0, 0.9])]  # 30 cm above the box
    cmd = Safety(CFG).filter(s, [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(cmd.positions[0], [0.5, 0.0, 0.88])
    assert any("outside the workspace box" in r for r in cmd.reasons)


def test_to_action_inverts_filter():
    safety = Safety(CFG, n_arms=2)
    rng = np.random.default_rng(0)
    s = [state([0.5, 0.1, 0.3], rotations.normalize(rng.normal(size=4))) for _ in range(2)]
    a = rng.uniform(-0.5, 0.5, size=14)
    cmd = safety.filter(s, a)
    back = safety.to_action(s, cmd.positions, cmd.quaternions, cmd.grippers)
    np.testing.assert_allclose(back, a, atol=1e-6)
    far = safety.to_action(s, np.array([[0.5, 0.1, 1.3], [0.5, 0.1, 0.3]]), cmd.quaternions, cmd.grippers)
    assert far[2] == pytest.approx(1.0) and np.all(np.abs(far) <= 1.0)


@pytest.mark.parametrize(
    "bad_state, reason",
    [
        (state([0.5, 0, 0.3], wrench=[0, 0, 31, 0, 0, 0]), "external force 31.0 N"),
        (state([0.5, 0, 0.3], wrench=[0, 0, 0, 0, 11, 0]), "external torque 11.0 Nm"),
        (state([0.5, 0, 0.3], wrench=[np.nan] * 6), "wrench reading is not finite"),
        (state([np.nan, 0, 0.3]), "pose is not finite"),
        (state([0.5, 0, 0.3], q=[0, 0, 0, 0]), "pose is not finite"),
        (state([0.5, 0, 0.3], errors=["cartesian_reflex"]), "cartesian_reflex"),
    ],
)
def test_state_problems_hold(bad_state, reason):
    safety = Safety(CFG)
    safety.filter([state([0.5, 0.0, 0.3])], [0, 0, 0, 0, 0, 0, 1])  # last gripper command: close
    cmd = safety.filter([bad_state], np.ones(7))
    assert cmd.held and any(reason in r for r in cmd.reasons), cmd.reasons
    assert np.all(np.isfinite(cmd.positions)) and in_box(cmd.positions[0])
    assert cmd.grippers[0] == 1.0  # a hold never opens a grasp


def test_force_just_below_the_limit_moves():
    cmd = Safety(CFG).filter([state([0.5, 0, 0.3], wrench=[0, 29.9, 0, 0, 0, 9.9])], np.zeros(7))
    assert not cmd.held


def test_pause_resume_and_latched_estop():
    safety = Safety(CFG)
    s = [state([0.5, 0.0, 0.3])]
    a = np.array([1, 0, 0, 0, 0, 0, 0.0])
    assert not safety.filter(s, a).held
    safety.pause()
    cmd = safety.filter(s, a)
    assert cmd.held and cmd.reasons == ["paused"] and safety.stopped
    np.testing.assert_allclose(cmd.positions[0], s[0].position)
    safety.resume()
    assert not safety.filter(s, a).held
    safety.estop()
    safety.resume()  # does not clear an e-stop
    assert safety.filter(s, a).held and safety.estopped
    safety.reset_estop()
    assert not safety.filter(s, a).held and not safety.stopped


def test_wrong_shapes_and_bad_config_are_named():
    with pytest.raises(RobotError, match="expected 14"):
        Safety(CFG, n_arms=2).filter([state([0.5, 0, 0.3])] * 2, np.zeros(7))
    with pytest.raises(RobotError, match="2 arm"):
        Safety(CFG, n_arms=2).filter([state([0.5, 0, 0.3])], np.zeros(14))
    with pytest.raises(RobotError, match="box is invalid"):
        Safety(SafetyConfig(box_min=[0.5, 0, 0], box_max=[0.4, 1, 1]))


def test_rotations_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        q0 = rotations.normalize(rng.normal(size=4))
        axis = rng.normal(size=3)
        w = axis / np.linalg.norm(axis) * rng.choice([1e-10, 1e-3, 0.5, 3.0])  # angles below π (the short way)
        q1 = rotations.apply_rotvec(q0, w)
        np.testing.assert_allclose(rotations.rotvec_between(q0, q1), w, atol=1e-9)
        assert rotations.angle_between(q0, q1) == pytest.approx(np.linalg.norm(w), abs=1e-7)
