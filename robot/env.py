"""The robot as the actor sees it, the same for the simulated and the real robot.

    env = make_env(cfg)                       # robot.factory; cfg.robot.kind: "sim" (sim server + franky on
                                              # loopback) or "real"
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
What differs in sim (objects, success, the scripted expert, fault injection) is `env.scene`
(`robot.interfaces.Scene`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from lastr1.robot.arm import Arm
from lastr1.robot.camera import Camera
from lastr1.robot.errors import ArmFault, StaleFrameError
from lastr1.robot.interfaces import NoScene, Observation, Scene, StepInfo
from lastr1.robot.keys import KeySource
from lastr1.robot.teleop import Teleop

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.robot.safety import Safety

ACTION_DIM = 7  # per arm: xyz, roll-pitch-yaw (base-frame rotation vector), gripper


class RobotEnv:
    """`robot.interfaces.Env` on an `Arm`, cameras and the operator's devices."""

    def __init__(self, cfg: Config, arm: Arm, arms: list, cameras: list[Camera], teleop: Teleop | None,
                 keys: KeySource | None, safety: Safety, scene: Scene | None = None):
        self.cfg = cfg
        self.arm = arm  # the n-arm whole
        self.arms = arms  # the single arms, in action order
        self.cameras = cameras
        self.teleop = teleop
        self.keys = keys
        self.safety = safety
        self.scene = scene or NoScene()
        if hasattr(arm, "use_safety"):
            arm.use_safety(safety)  # the home motion passes the same filter as every action
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
        self.scene.reset(rng, condition)
        self.arm.reset(rng)
        self.scene.ready()
        self.safety.new_episode()
        self._moving = False
        return self._fresh_observation(time.monotonic())

    def observe(self) -> Observation:
        images = {c.name: c.read_latest().color for c in self.cameras}
        states = self.arm.state()
        proprio = np.concatenate([s.proprio() for s in states]).astype(np.float32)
        return Observation(images=images, proprio=proprio, timestamp=time.monotonic(), states=states)

    def act(self, action: np.ndarray) -> StepInfo:
        info = StepInfo(timestamp=time.monotonic())
        info.injected = self.scene.before_act()
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
        self.scene.after_act(action)
        return info

    def step(self, action: np.ndarray) -> tuple[Observation, StepInfo]:
        info = self.act(action)
        try:
            return self.observe(), info
        except StaleFrameError:
            self._halt()  # never keep moving on pixels we cannot see
            raise

    # -------------------------------------------------------------- operator controls

    def stop(self) -> None:
        self._halt()

    def recover(self) -> None:
        self._halt(force=True)  # whatever is left of a refused motion too
        self.arm.recover()

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
                                      hint="check the cameras (or the sim server) are still delivering")
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
        self.scene.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> RobotEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
