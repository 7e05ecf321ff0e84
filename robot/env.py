"""The robot as the actor sees it, the same for the simulated and the real robot.

    env = make_env(cfg)                       # cfg.robot.kind: "sim" (sim host + franky on loopback) or "real"
    obs = env.reset(seed=3)                   # Observation(images={name: HxWx3 uint8}, proprio (n_arms·8,), ...)
    while ...:                                # the actor keeps the rate (task.control_hz)
        action = policy(obs)                  # (n_arms·7,) normalised in [-1, 1]
        cmd = env.teleop.read()               # a person (or the scripted operator) may take over
        if cmd.intervening: action = cmd.action
        info = env.act(action)                # safety → arm, non-blocking; StepInfo(held, reasons, faults, ...)
        keys = env.keys.poll()                # SUCCESS / FAILURE / RESET / PAUSE / ESTOP
        sleep_until_next_tick()
        obs = env.observe()                   # raises StaleFrameError on old frames: pause, do not act
    env.close()

`step(action)` = `act` + `observe` for scripts that pace themselves. Every action passes `robot.safety.Safety`
(workspace box on the target, per-step limits, NaN → hold, force → stop, pause/e-stop) before the arm sees it.
Arm faults (reflex, collision, refused motion) are reported in `StepInfo.faults` and, with
`robot.auto_recover`, recovered at once (`StepInfo.recovered`); the actor decides what the episode does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from lastr1.robot.arm import Arm, ArmState
from lastr1.robot.camera import Camera
from lastr1.robot.errors import ArmFault, RobotError, StaleFrameError
from lastr1.robot.keys import KeySource
from lastr1.robot.teleop import Teleop

ACTION_DIM = 7  # per arm: xyz, roll-pitch-yaw (base-frame rotation vector), gripper


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name → (H, W, 3) uint8 RGB
    proprio: np.ndarray  # (n_arms·8,) float32: per arm position(3), quaternion xyzw(4), gripper width(1)
    timestamp: float  # time.monotonic() when it was read
    states: list[ArmState] = field(default_factory=list)  # the full arm states behind proprio


@dataclass
class StepInfo:
    held: bool = False  # the arm did not get this action (safety hold, fault, pause)
    reasons: list[str] = field(default_factory=list)  # why it held / what safety clipped
    faults: list[str] = field(default_factory=list)  # arm errors seen this step ("arm0: cartesian_reflex, ...")
    recovered: bool = False  # faults were cleared with recover_from_errors
    injected: list[str] = field(default_factory=list)  # sim only: faults injected this step
    timestamp: float = 0.0


class RobotEnv:
    def __init__(self, cfg, arm: Arm, arms: list, cameras: list[Camera], teleop: Teleop | None,
                 keys: KeySource | None, safety, sim=None):
        self.cfg = cfg
        self.arm = arm  # the n-arm whole
        self.arms = arms  # the single arms, in action order
        self.cameras = cameras
        self.teleop = teleop
        self.keys = keys
        self.safety = safety
        if hasattr(arm, "use_safety"):
            arm.use_safety(safety)  # the home motion passes the same filter as every action
        self.sim = sim  # SimWorld in sim (host, task, expert, fault injection), else None
        self.n_arms = arm.n_arms
        self.action_dim = ACTION_DIM * self.n_arms
        self.camera_names = [c.name for c in cameras]
        self.instruction = cfg.task.instruction
        self.control_hz = cfg.task.control_hz
        self._moving = False
        self._closed = False

    # -------------------------------------------------------------- episode

    def reset(self, seed: int | None = None, condition: str = "") -> Observation:
        """Home (randomised by `seed`) and a new scene. `condition` (sim): the evaluation condition the scene
        shows (robot/sim/conditions.py; "" = original); on the real robot a person sets the scene up."""
        rng = np.random.default_rng(seed)
        self._halt()
        if self.arm_has_errors():
            self.arm.recover()
        if self.sim is not None:
            self.sim.reset(self, rng, condition)
        else:
            self.arm.reset(rng)
        self._moving = False
        return self._fresh_observation(time.monotonic())

    def observe(self) -> Observation:
        images = {c.name: c.read_latest().color for c in self.cameras}
        states = self.arm.state()
        proprio = np.concatenate([s.proprio() for s in states]).astype(np.float32)
        return Observation(images=images, proprio=proprio, timestamp=time.monotonic(), states=states)

    def act(self, action: np.ndarray) -> StepInfo:
        info = StepInfo(timestamp=time.monotonic())
        if self.sim is not None:
            info.injected = self.sim.maybe_inject()
        states = self.arm.state()
        bad = [f"arm{i}: {', '.join(s.errors)}" for i, s in enumerate(states) if s.errors]
        if bad:
            info.faults, info.held = bad, True
            info.reasons.append("arm fault: holding this step")
            self._moving = False
            if self.cfg.robot.auto_recover:
                self.arm.recover()
                info.recovered = True
            return info
        cmd = self.safety.filter(states, np.asarray(action, dtype=np.float64))
        info.held, info.reasons = bool(cmd.held), list(cmd.reasons)
        if cmd.held:
            self._halt()
            return info
        try:
            self.arm.move_to(cmd.positions, cmd.quaternions, cmd.grippers)
            self._moving = True
        except ArmFault as e:
            info.faults.append(str(e).splitlines()[0])
            info.held = True
            if self.cfg.robot.auto_recover:
                self.arm.recover()
                info.recovered = True
        if self.sim is not None:
            self.sim.executed(action)
        return info

    def step(self, action: np.ndarray) -> tuple[Observation, StepInfo]:
        info = self.act(action)
        try:
            return self.observe(), info
        except StaleFrameError:
            self._halt()  # never keep moving on pixels we cannot see
            raise

    # -------------------------------------------------------------- operator controls

    def pause(self) -> None:
        self.safety.pause()
        self._halt()

    def resume(self) -> None:
        self.safety.resume()

    def estop(self) -> None:
        self.safety.estop()
        self._halt(force=True)

    def _halt(self, force: bool = False) -> None:
        if self._moving or force:
            try:
                self.arm.stop()
            finally:
                self._moving = False

    def arm_has_errors(self) -> bool:
        return any(s.errors for s in self.arm.state())

    # -------------------------------------------------------------- sim only

    def success(self) -> bool:
        """Is the task solved now (judged from the simulated scene)? Real robots: a person says so (keys)."""
        if self.sim is None:
            raise RobotError("success() is judged by the simulator only",
                             hint="on the real robot the operator presses the success/failure keys")
        return self.sim.success()

    def expert_action(self) -> np.ndarray:
        if self.sim is None:
            raise RobotError("the scripted expert exists in sim only", hint="record demos with the SpaceMouse")
        return self.sim.expert_action(self.arm.state())

    # -------------------------------------------------------------- lifetime

    def _fresh_observation(self, since: float, timeout: float = 3.0) -> Observation:
        """The first observation of an episode must show the scene after the reset, not before it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                obs = self.observe()
                frames = [c.read_latest() for c in self.cameras]
                if all(f.received_s >= since for f in frames):
                    return obs
            except StaleFrameError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise StaleFrameError(f"no camera frame newer than the reset within {timeout} s",
                                      hint="check the cameras (or the sim host) are still delivering")
            time.sleep(0.01)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors = []
        for part in (self.teleop, self.keys, *self.cameras, self.arm):
            if part is None:
                continue
            try:
                if part is self.arm:
                    self._halt()
                part.close()
            except Exception as e:  # close everything even if one part fails
                errors.append(e)
        if self.sim is not None:
            self.sim.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> RobotEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ safety


def make_safety(cfg, n_arms: int):
    """The layer every action passes (robot/safety.py)."""
    try:
        from lastr1.robot.safety import Safety
    except ImportError as e:
        raise RobotError(f"the safety layer (robot.safety) is not importable: {e}",
                         hint="this checkout is incomplete; no arm moves without it") from None
    return Safety(cfg.robot.safety, n_arms)


# ------------------------------------------------------------------ construction


def make_env(cfg) -> RobotEnv:
    """The environment the config describes: `robot.kind: sim` starts a sim host; `real` opens the hardware."""
    n = cfg.task.n_arms
    if len(cfg.robot.arms) < n:
        raise RobotError(f"task {cfg.task.name} needs {n} arm(s), robot.arms lists {len(cfg.robot.arms)}",
                         hint="add one robot.arms entry (host, home pose) per arm")
    if cfg.robot.kind == "sim":
        from lastr1.robot.sim.world import make_sim_env

        return make_sim_env(cfg)
    return _make_real_env(cfg)


def close_quietly(parts: list) -> None:
    """Close what a failed start-up had opened, newest first; the start-up's own error is the one to show."""
    for part in reversed(parts):
        try:
            part.close()
        except Exception:
            pass


def make_arm(cfg):
    """The task's arm(s) on franky, not yet connected: one FrankyArm, or a MultiArm of `task.n_arms`."""
    from lastr1.robot.franky_arm import FrankyArm, MultiArm

    n, r = cfg.task.n_arms, cfg.robot
    if len(r.arms) < n:
        raise RobotError(f"task.n_arms is {n} but robot.arms lists {len(r.arms)}",
                         hint="add an entry (host, home pose) per arm under robot.arms")
    arms = [FrankyArm(a, gripper_close_at=r.gripper_close_at, gripper_open_at=r.gripper_open_at)
            for a in r.arms[:n]]
    return arms[0] if n == 1 else MultiArm(arms)


def _make_real_env(cfg) -> RobotEnv:
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


def _device_class(module: str, name: str, what: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RobotError(f"{what}: {module}.{name} is not available ({e})",
                         hint="this checkout lacks the device driver; update lastr1") from None
