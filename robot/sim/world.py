"""The simulated scene behind `RobotEnv` (`env.scene`): the sim server's objects, the task's randomisation and
success, the scripted expert and person, fault injection. `robot.factory.make_env` builds it when
`robot.kind: sim`; it holds the arm it judges, not the env.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from lastr1.robot.arm import Arm, ArmState
from lastr1.robot.sim.client import SimServer
from lastr1.robot.sim.expert import ScriptedExpert, ScriptedKeys, ScriptedOperator
from lastr1.robot.sim.tasks import SimTask

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


class SimScene:
    simulated = True

    def __init__(self, cfg: Config, server: SimServer, task: SimTask, expert: ScriptedExpert, arm: Arm,
                 arms: list):
        self.cfg = cfg
        self.server = server
        self.task = task
        self.expert = expert
        self.arm = arm  # the n-arm whole, whose states the expert and the operator read
        self.arms = arms  # the single arms, for the grasp a task starts with
        self.params: dict = {}
        self._grasped: dict = {}  # arm index → the object it starts this episode holding
        s = cfg.robot.sim
        self.operator = ScriptedOperator(expert, self.observe, rate=s.intervention_rate,
                                         drift=s.intervention_drift, steps=s.intervention_steps,
                                         rng=np.random.default_rng(s.seed))
        self.keys = ScriptedKeys(task, self.state)
        self._fault_rng = np.random.default_rng(s.seed + 1)
        self._state: dict | None = None
        self._state_at = 0.0
        self.condition = "original"  # evaluation condition the scene shows (robot/sim/conditions.py)

    # ------------------------------------------------------------ episode

    def reset(self, rng: np.random.Generator, condition: str) -> None:
        condition = condition or "original"
        if condition != self.condition:
            self.server.condition(condition)  # raises for an unknown name, before anything moves
            self.condition = condition
        sample = self.task.sample(rng)
        self.params = sample["params"]
        self._grasped = sample["grasped"]
        self.server.reset(sample["objects"], sample["fixtures"])
        self._state = None
        time.sleep(self.cfg.robot.sim.settle_s)  # let the teleported controller settle before moving

    def ready(self) -> None:
        for arm, obj in self._grasped.items():
            # Hold the object in the open hand, close the hand with the real driver, then let physics hold it.
            self.server.pin(obj, int(arm))
            try:
                self.arms[int(arm)].set_gripper(True, wait=True)
            finally:
                self.server.unpin()
        self.operator.new_episode()
        self.keys.new_episode()

    # ------------------------------------------------------------ scene

    def state(self, max_age_s: float = 0.02) -> dict:
        """Object poses (world, xyzw) + this episode's task parameters; cached briefly (one RPC per step)."""
        now = time.monotonic()
        if self._state is None or now - self._state_at > max_age_s:
            self._state = {**self.server.scene(), "params": self.params}
            self._state_at = now
        return self._state

    def observe(self) -> tuple[dict, list[ArmState]]:
        return self.state(), self.arm.state()

    def success(self) -> bool:
        return self.task.success(self.state(max_age_s=0.0))

    def expert_action(self, states: list[ArmState] | None = None) -> np.ndarray:
        states = states if states is not None else self.arm.state()
        return self.expert.action(self.state(), states)

    def probe(self, box_min, box_max, max_force_n: float) -> dict:
        """What the physics did since the last probe, measured every physics step from MuJoCo's own state (per
        arm: worst TCP excursion outside the box, longest time above the force, peak force, TCP pose now: see
        scene.Probe); then watch again. The same on both simulated robots."""
        return self.server.probe(box_min, box_max, max_force_n)

    def after_act(self, action: np.ndarray) -> None:
        self.operator.executed(action)

    # ------------------------------------------------------------ faults

    def before_act(self) -> list[str]:
        """Roll the per-step fault dice of robot.sim.fault_*_p; returns what was injected."""
        s, rng, out = self.cfg.robot.sim, self._fault_rng, []
        if s.fault_reflex_p > 0 and rng.random() < s.fault_reflex_p:
            arm = int(rng.integers(self.task.n_arms))
            self.server.fault("reflex", arm=arm)
            out.append(f"reflex on arm{arm}")
        if s.fault_camera_drop_p > 0 and rng.random() < s.fault_camera_drop_p:
            cams = self.server.info["cameras"]
            cam = cams[int(rng.integers(len(cams)))]
            self.server.fault("camera_drop", camera=cam, seconds=s.fault_camera_drop_s)
            out.append(f"camera {cam} dropped for {s.fault_camera_drop_s} s")
        if s.fault_stall_p > 0 and rng.random() < s.fault_stall_p:
            self.server.fault("stall", seconds=s.fault_stall_s)
            out.append(f"simulator stalled for {s.fault_stall_s} s")
        return out

    def close(self) -> None:
        self.server.close()
