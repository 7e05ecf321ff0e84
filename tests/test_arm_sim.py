"""The real `FrankyArm` (franky) against franky-sim on loopback, in our sim server process.

One sim server for the module (startup ~3 s); the last test kills it on purpose (lost connection).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sim_helpers import overrides, require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.robot.errors import ArmFault, ConnectionLost, DeviceNotFound, RobotError  # noqa: E402
from lastr1.robot.franky_arm import FrankyArm  # noqa: E402
from lastr1.robot.sim.client import SimServer  # noqa: E402
from lastr1.robot.sim.tasks import PEG_H, PEG_R  # noqa: E402

PEG_FLATS = 2 * PEG_R * np.cos(np.pi / 6)


@pytest.fixture(scope="module")
def cfg():
    return configs.load("sim_insert_hex", overrides(1, 1, "--robot.sim.peg_start", "table"))


@pytest.fixture(scope="module")
def server(cfg):
    with SimServer(cfg) as h:
        yield h


@pytest.fixture(scope="module")
def arm(cfg, server):
    a = FrankyArm(cfg.robot.arms[0], host=server.hosts[0])
    a.connect()
    yield a
    a.close()


def test_state_reads_pose_joints_hand_and_wrench(arm):
    s = arm.state()[0]
    home, _ = arm.home_pose()
    assert s.position.shape == (3,) and np.linalg.norm(s.position - home) < 0.01  # the server starts at home
    assert abs(np.linalg.norm(s.quaternion) - 1) < 1e-6 and abs(s.quaternion[0]) > 0.99  # pointing down
    assert s.joints.shape == (7,) and s.wrench.shape == (6,)
    assert 0.07 < s.gripper_width <= 0.081
    assert s.errors == []
    assert s.proprio().shape == (8,)


def test_relative_moves_land_within_2mm(arm):
    arm.reset()
    q = arm.state()[0].quaternion
    for delta in ([0.03, 0, 0], [0, -0.04, 0], [0, 0, -0.05], [-0.02, 0.03, 0.04], [0.01, 0.01, 0.01]):
        target = arm.state()[0].position + np.array(delta)
        arm.move_to(target[None], q[None], np.array([0.0]))
        assert arm.join(timeout=10)
        time.sleep(0.1)
        err = np.linalg.norm(arm.state()[0].position - target)
        assert err < 0.002, f"move {delta} ended {err * 1000:.2f} mm off"


def test_a_new_target_preempts_the_running_motion(arm):
    arm.reset()
    s = arm.state()[0]
    far = s.position + [0, 0.15, 0]
    arm.move_to(far[None], s.quaternion[None], np.array([0.0]))
    time.sleep(0.15)
    back = s.position + [0, -0.02, 0]
    arm.move_to(back[None], s.quaternion[None], np.array([0.0]))  # must not wait for the first one
    assert arm.join(timeout=10)
    time.sleep(0.1)
    p = arm.state()[0].position
    assert np.linalg.norm(p - back) < 0.002


def test_teleport_reset_puts_arm_and_objects_in_place(arm, server):
    s = arm.state()[0]
    arm.move_to((s.position + [0.05, 0.05, -0.05])[None], s.quaternion[None], np.array([0.0]))
    assert arm.join(timeout=10)
    arm.stop()
    peg = [0.52, -0.1, PEG_H / 2, 0, 0, 0, 1]
    t0 = time.monotonic()
    server.reset({"peg": peg}, {"slot": [0.4, 0.15, 0, 0, 0, 0, 1]})
    assert time.monotonic() - t0 < 0.5
    time.sleep(0.2)
    home, _ = arm.home_pose()
    assert np.linalg.norm(arm.state()[0].position - home) < 0.002
    scene = server.scene()
    assert np.allclose(scene["objects"]["peg"][:2], peg[:2], atol=0.002)
    assert np.allclose(scene["fixtures"]["slot"][:3], [0.4, 0.15, 0], atol=1e-6)
    # The arm moves normally right after a teleport (the controller state was reset with it).
    arm.reset(np.random.default_rng(0))
    target = arm.state()[0].position + [0, 0, -0.03]
    arm.move_to(target[None], arm.state()[0].quaternion[None], np.array([0.0]))
    assert arm.join(timeout=10)


def test_gripper_grasps_and_lifts_the_peg(arm, server):
    server.reset({"peg": [0.45, 0.0, PEG_H / 2, 0, 0, 0, 1]}, {"slot": [0.45, 0.2, 0, 0, 0, 0, 1]})
    time.sleep(0.2)
    arm.reset()
    q = arm.state()[0].quaternion
    grip = np.array([0.45, 0.0, PEG_H - 0.02])
    for target in (grip + [0, 0, 0.06], grip):
        arm.move_to(target[None], q[None], np.array([-1.0]))
        assert arm.join(timeout=10)
    arm.set_gripper(True, wait=True)
    width = arm.state()[0].gripper_width
    assert abs(width - PEG_FLATS) < 0.003, f"hand closed to {width * 1000:.1f} mm on a {PEG_FLATS * 1000:.1f} mm peg"
    arm.move_to((grip + [0, 0, 0.12])[None], q[None], np.array([1.0]))
    assert arm.join(timeout=10)
    time.sleep(0.3)
    peg_z = server.scene()["objects"]["peg"][2]
    assert peg_z > PEG_H / 2 + 0.10, f"peg only rose to {peg_z:.3f} m: the grasp slipped"
    # The held peg's weight shows in the external wrench franky reports (franky-sim alone reports zeros).
    fz = arm.state()[0].wrench[2]
    assert -1.2 < fz < -0.3
    arm.set_gripper(False, wait=True)
    time.sleep(0.3)
    assert server.scene()["objects"]["peg"][2] < 0.05  # released: it fell


def test_gripper_hysteresis_commands_only_on_crossings(arm):
    arm.set_gripper(False, wait=True)
    arm.command_gripper(0.3)  # inside the band: leave it
    assert arm.gripper_closed is False
    arm.command_gripper(0.6)
    assert arm.gripper_closed is True
    arm.command_gripper(-0.4)  # still inside the band: stays closed
    assert arm.gripper_closed is True
    arm.command_gripper(float("nan"))
    assert arm.gripper_closed is True
    arm.command_gripper(-0.9)
    assert arm.gripper_closed is False
    arm.wait_gripper()


def test_reflex_error_is_reported_and_recovered(arm, server):
    arm.reset()
    s = arm.state()[0]
    arm.move_to((s.position + [0, 0, -0.1])[None], s.quaternion[None], np.array([0.0]))
    time.sleep(0.1)
    server.fault("reflex", arm=0)
    time.sleep(0.1)
    errors = arm.state()[0].errors
    assert "cartesian_reflex" in errors and arm.has_errors
    assert any("reflex" in e and "aborted" in e for e in errors)  # the aborted motion's libfranka message
    with pytest.raises(ArmFault, match="recover"):
        arm.move_to(s.position[None], s.quaternion[None], np.array([0.0]))
    arm.recover()
    assert arm.state()[0].errors == [] and not arm.has_errors
    arm.move_to(s.position[None], s.quaternion[None], np.array([0.0]))
    assert arm.join(timeout=10)


def _reset_hit_by_a_reflex(arm, server):
    """Reset from away from home with a reflex injected while the arm travels home."""
    arm.reset()
    s = arm.state()[0]
    arm.move_to((s.position + [0.0, 0.12, 0.1])[None], s.quaternion[None], np.array([0.0]))
    assert arm.join(timeout=10)
    timer = threading.Timer(0.25, lambda: server.fault("reflex", arm=0))
    timer.start()
    try:
        arm.reset()
    finally:
        timer.join()


def test_a_reflex_during_the_home_motion_is_recovered_and_retried(arm, server, caplog):
    with caplog.at_level("WARNING", logger="lastr1.robot.franky_arm"):
        _reset_hit_by_a_reflex(arm, server)
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retries and "the home motion" in retries[0] and "reflex" in retries[0] and "retry 1 of 3" in retries[0]
    home, _ = arm.home_pose()
    assert np.linalg.norm(arm.state()[0].position - home) < 0.01 and not arm.has_errors


def test_a_home_motion_aborted_past_its_retries_raises(arm, server, monkeypatch):
    monkeypatch.setattr(arm.cfg, "motion_retries", 0)
    with pytest.raises(ArmFault, match="home motion was aborted") as e:
        _reset_hit_by_a_reflex(arm, server)
    assert e.value.hint and arm.has_errors
    arm.recover()


def test_negative_motion_retries_is_refused(cfg):
    from dataclasses import replace

    with pytest.raises(RobotError, match="motion_retries") as e:
        FrankyArm(replace(cfg.robot.arms[0], motion_retries=-1))
    assert e.value.hint


def test_nothing_listening_is_a_clear_device_not_found(cfg):
    arm = FrankyArm(cfg.robot.arms[0], host="127.0.0.254")
    t0 = time.monotonic()
    with pytest.raises(DeviceNotFound) as e:
        arm.connect()
    assert time.monotonic() - t0 < 3
    assert "127.0.0.254" in str(e.value) and "FCI" in str(e.value) and e.value.hint


def test_server_dies_with_its_parent(tmp_path):
    """A parent that dies without cleaning up (kill -9, os._exit) leaves no sim server behind."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        "from lastr1 import configs\n"
        "from lastr1.robot.sim.client import SimServer\n"
        f"cfg = configs.load('sim_insert_hex', {overrides(5)!r})\n"
        "h = SimServer(cfg).start()\n"
        "print(h.proc.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=root)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text(), "sim server outlived its parent"


def test_lost_connection_is_a_clear_error(arm, server):
    # Last on purpose: the module's sim server dies here.
    server.proc.kill()
    server.proc.wait()
    with pytest.raises(ConnectionLost) as e:
        for _ in range(3):
            arm.state()
    assert "lost the connection" in str(e.value) and e.value.hint
    with pytest.raises(ConnectionLost, match="sim server"):
        server.scene()
