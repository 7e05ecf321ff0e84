"""The robot the config describes, real or simulated: the one module that knows both.

    env = make_env(cfg)     # robot.kind: "sim" starts a sim server (robot/sim); "lockstep" steps the same scenes
                            # in process (robot/sim/lockstep.py); "real" opens the hardware
    arm = make_arm(cfg)     # the arm(s) alone, not yet connected (calibration)

Device drivers and the simulator are imported only when built, so importing this needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lastr1.robot.env import RobotEnv
from lastr1.robot.errors import RobotError

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.robot.arm import Arm
    from lastr1.robot.camera import Camera
    from lastr1.robot.safety import Safety


def make_env(cfg: Config) -> RobotEnv:
    """The environment the config describes: `robot.kind: sim` starts a sim server; `real` opens the hardware."""
    n = cfg.task.n_arms
    if len(cfg.robot.arms) < n:
        raise RobotError(f"task {cfg.task.name} needs {n} arm(s), robot.arms lists {len(cfg.robot.arms)}",
                         hint="add one robot.arms entry (host, home pose) per arm")
    if cfg.robot.kind == "lockstep":
        from lastr1.robot.sim.lockstep import make_lockstep_env

        return make_lockstep_env(cfg, _sim_task(cfg), make_safety(cfg, n))
    return _sim_env(cfg) if cfg.robot.kind == "sim" else _real_env(cfg)


def make_arm(cfg: Config, hosts: list[str] | None = None) -> Arm:
    """The task's arm(s) on franky, not yet connected: one FrankyArm, or a MultiArm of `task.n_arms`.
    `hosts`: the arms' FCI addresses when not their configured ones (the sim server's loopback addresses)."""
    from lastr1.robot.franky_arm import FrankyArm, MultiArm

    n, r = cfg.task.n_arms, cfg.robot
    if len(r.arms) < n:
        raise RobotError(f"task.n_arms is {n} but robot.arms lists {len(r.arms)}",
                         hint="add an entry (host, home pose) per arm under robot.arms")
    arms = [FrankyArm(a, host=hosts[i] if hosts else None, gripper_close_at=r.gripper_close_at,
                      gripper_open_at=r.gripper_open_at) for i, a in enumerate(r.arms[:n])]
    return arms[0] if n == 1 else MultiArm(arms)


def make_safety(cfg: Config, n_arms: int) -> Safety:
    """The layer every action passes (robot/safety.py)."""
    try:
        from lastr1.robot.safety import Safety
    except ImportError as e:
        raise RobotError(f"the safety layer (robot.safety) is not importable: {e}",
                         hint="this checkout is incomplete; no arm moves without it") from None
    return Safety(cfg.robot.safety, n_arms)


def close_quietly(parts: list) -> None:
    """Close what a failed start-up had opened, newest first; the start-up's own error is the one to show."""
    for part in reversed(parts):
        try:
            part.close()
        except Exception:
            pass


def _real_env(cfg: Config) -> RobotEnv:
    n, r = cfg.task.n_arms, cfg.robot
    opened: list = []
    try:
        arm = make_arm(cfg)
        arms = list(getattr(arm, "arms", [arm]))
        arm.connect()
        opened.append(arm)
        RealSenseCamera = _device_class("lastr1.robot.realsense", "RealSenseCamera", "RealSense cameras")
        cameras = []
        for c in r.cameras:
            cam = RealSenseCamera(c, image_size=r.image_size)
            cam.connect()
            opened.append(cam)
            cameras.append(cam)
        teleop = None
        if r.teleop:
            SpaceMouseTeleop = _device_class("lastr1.robot.spacemouse", "SpaceMouseTeleop", "the SpaceMouse")
            parts = [SpaceMouseTeleop(t) for t in r.teleop[:n]]
            teleop = parts[0] if len(parts) == 1 else _device_class("lastr1.robot.spacemouse", "DualTeleop", "")(parts)
            teleop.connect()
            opened.append(teleop)
        TerminalKeys = _device_class("lastr1.robot.terminal_keys", "TerminalKeys", "the operator keys")
        keys = TerminalKeys(r.keys)
        opened.append(keys)
    except BaseException:
        close_quietly(opened)
        raise
    return RobotEnv(cfg, arm, arms, cameras, teleop, keys, make_safety(cfg, n))


def _sim_env(cfg: Config) -> RobotEnv:
    """The simulated robot: a sim server process, the real franky driver on its loopback addresses, cameras
    over its renders, and the scene (task, scripted expert and person) as `env.scene`."""
    from lastr1.robot.sim.camera import RenderRig, SimCamera
    from lastr1.robot.sim.client import SimServer
    from lastr1.robot.sim.expert import ScriptedExpert
    from lastr1.robot.sim.world import SimScene

    n, r = cfg.task.n_arms, cfg.robot
    task = _sim_task(cfg)
    server = SimServer(cfg).start()
    opened: list = []
    try:
        arm = make_arm(cfg, hosts=server.hosts)
        arms = list(getattr(arm, "arms", [arm]))
        arm.connect()
        opened.append(arm)
        rig = RenderRig(server, fps=r.sim.camera_fps)
        cameras: list[Camera] = []
        for c in r.cameras:
            cam = SimCamera(rig, c.name, max_age_ms=c.max_age_ms)
            cam.connect()
            opened.append(cam)
            cameras.append(cam)
        safety = make_safety(cfg, n)
        scene = SimScene(cfg, server, task, ScriptedExpert(task, safety), arm, arms)
        return RobotEnv(cfg, arm, arms, cameras, scene.operator, scene.keys, safety, scene=scene)
    except BaseException:
        close_quietly(opened)
        server.close()
        raise


def _sim_task(cfg: Config):
    """The simulated task the config names, checked against the config (both simulated robots)."""
    from lastr1.robot.sim.tasks import make_task

    n, r = cfg.task.n_arms, cfg.robot
    task = make_task(cfg.task.name, r.sim)
    if task.n_arms != n:
        raise RobotError(f"the simulated {task.name} has {task.n_arms} arm(s), task.n_arms says {n}",
                         hint=f"set task.n_arms: {task.n_arms}")
    if (r.sim.render_width, r.sim.render_height) != (r.image_size,) * 2:
        raise RobotError(
            f"sim renders {r.sim.render_width}x{r.sim.render_height} but the policy takes "
            f"{r.image_size}x{r.image_size} images",
            hint="set robot.sim.render_width/render_height to robot.image_size (rendering at size is free, "
            "resizing is not)",
        )
    return task


def _device_class(module: str, name: str, what: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RobotError(f"{what}: {module}.{name} is not available ({e})",
                         hint="this checkout lacks the device driver; update lastr1") from None
