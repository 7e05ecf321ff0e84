"""The simulated robot put together: sim host + real franky driver + sim cameras + scripted person.

`make_sim_env(cfg)` (called by `robot.env.make_env` when `robot.kind: sim`) returns the same `RobotEnv` as the
real robot; `env.sim` is the `SimWorld` below (scene state, success, expert, fault injection, the host).
"""

from __future__ import annotations

import time

import numpy as np

from lastr1.robot.errors import RobotError
from lastr1.robot.sim.camera import RenderRig, SimCamera
from lastr1.robot.sim.client import SimHost
from lastr1.robot.sim.expert import ScriptedExpert, ScriptedKeys, ScriptedOperator
from lastr1.robot.sim.tasks import make_task


class SimWorld:
    def __init__(self, cfg, host: SimHost, task, expert: ScriptedExpert):
        self.cfg = cfg
        self.host = host
        self.task = task
        self.expert = expert
        self.params: dict = {}
        self.env = None  # set by make_sim_env
        self.operator: ScriptedOperator | None = None
        self.keys: ScriptedKeys | None = None
        self._fault_rng = np.random.default_rng(cfg.robot.sim.seed + 1)
        self._scene: dict | None = None
        self._scene_at = 0.0
        self.condition = "original"  # evaluation condition the scene shows (robot/sim/conditions.py)

    # ------------------------------------------------------------ episode

    def reset(self, env, rng: np.random.Generator, condition: str = "") -> None:
        condition = condition or "original"
        if condition != self.condition:
            self.host.condition(condition)  # raises for an unknown name, before anything moves
            self.condition = condition
        sample = self.task.sample(rng)
        self.params = sample["params"]
        self.host.reset(sample["objects"], sample["fixtures"])
        self._scene = None
        time.sleep(self.cfg.robot.sim.settle_s)  # let the teleported controller settle before moving
        env.arm.reset(rng)
        for arm, obj in sample["grasped"].items():
            # Hold the object in the open hand, close the hand with the real driver, then let physics hold it.
            self.host.pin(obj, int(arm))
            try:
                env.arms[int(arm)].set_gripper(True, wait=True)
            finally:
                self.host.unpin()
        if self.operator is not None:
            self.operator.new_episode()
        if self.keys is not None:
            self.keys.new_episode()

    # ------------------------------------------------------------ scene

    def scene(self, max_age_s: float = 0.02) -> dict:
        """Object poses (world, xyzw) + this episode's task parameters; cached briefly (one RPC per step)."""
        now = time.monotonic()
        if self._scene is None or now - self._scene_at > max_age_s:
            self._scene = {**self.host.scene(), "params": self.params}
            self._scene_at = now
        return self._scene

    def observe(self) -> tuple[dict, list]:
        return self.scene(), self.env.arm.state()

    def success(self) -> bool:
        return self.task.success(self.scene(max_age_s=0.0))

    def expert_action(self, states=None) -> np.ndarray:
        states = states if states is not None else self.env.arm.state()
        return self.expert.action(self.scene(), states)

    def executed(self, action) -> None:
        if self.operator is not None:
            self.operator.executed(action)

    # ------------------------------------------------------------ faults

    def maybe_inject(self) -> list[str]:
        """Roll the per-step fault dice of robot.sim.fault_*_p; returns what was injected."""
        s, rng, out = self.cfg.robot.sim, self._fault_rng, []
        if s.fault_reflex_p > 0 and rng.random() < s.fault_reflex_p:
            arm = int(rng.integers(self.task.n_arms))
            self.host.fault("reflex", arm=arm)
            out.append(f"reflex on arm{arm}")
        if s.fault_camera_drop_p > 0 and rng.random() < s.fault_camera_drop_p:
            cams = self.host.info["cameras"]
            cam = cams[int(rng.integers(len(cams)))]
            self.host.fault("camera_drop", camera=cam, seconds=s.fault_camera_drop_s)
            out.append(f"camera {cam} dropped for {s.fault_camera_drop_s} s")
        if s.fault_stall_p > 0 and rng.random() < s.fault_stall_p:
            self.host.fault("stall", seconds=s.fault_stall_s)
            out.append(f"simulator stalled for {s.fault_stall_s} s")
        return out

    def close(self) -> None:
        self.host.close()


def make_sim_env(cfg):
    from lastr1.robot.env import RobotEnv, close_quietly, make_safety
    from lastr1.robot.franky_arm import FrankyArm, MultiArm

    n = cfg.task.n_arms
    task = make_task(cfg.task.name, cfg.robot.sim)
    if task.n_arms != n:
        raise RobotError(f"the simulated {task.name} has {task.n_arms} arm(s), task.n_arms says {n}",
                         hint=f"set task.n_arms: {task.n_arms}")
    if (cfg.robot.sim.render_width, cfg.robot.sim.render_height) != (cfg.robot.image_size,) * 2:
        raise RobotError(
            f"sim renders {cfg.robot.sim.render_width}x{cfg.robot.sim.render_height} but the policy takes "
            f"{cfg.robot.image_size}x{cfg.robot.image_size} images",
            hint="set robot.sim.render_width/render_height to robot.image_size (rendering at size is free, "
            "resizing is not)",
        )
    host = SimHost(cfg).start()
    opened: list = []
    try:
        r = cfg.robot
        arms = [FrankyArm(r.arms[i], host=host.hosts[i], gripper_close_at=r.gripper_close_at,
                          gripper_open_at=r.gripper_open_at) for i in range(n)]
        arm = arms[0] if n == 1 else MultiArm(arms)
        arm.connect()
        opened.append(arm)
        rig = RenderRig(host, fps=r.sim.camera_fps)
        cameras = []
        for c in r.cameras:
            cam = SimCamera(rig, c.name, max_age_ms=c.max_age_ms)
            cam.connect()
            opened.append(cam)
            cameras.append(cam)
        safety = make_safety(cfg, n)
        expert = ScriptedExpert(task, safety)
        world = SimWorld(cfg, host, task, expert)
        world.operator = ScriptedOperator(expert, world.observe, rate=r.sim.intervention_rate,
                                          drift=r.sim.intervention_drift, steps=r.sim.intervention_steps,
                                          rng=np.random.default_rng(r.sim.seed))
        world.keys = ScriptedKeys(task, world.scene)
        env = RobotEnv(cfg, arm, arms, cameras, world.operator, world.keys, safety, sim=world)
        world.env = env
        return env
    except BaseException:
        close_quietly(opened)
        host.close()
        raise
