"""The scripted expert and the scripted person of the simulated robot.

- `ScriptedExpert`: from the scene state (object poses from the sim host) and the arm states (from franky),
  the normalised action that solves the task (robot/sim/tasks.py holds each task's waypoint logic). Used to
  record demonstrations and to play the operator.
- `ScriptedOperator` (a `Teleop`): a simulated SpaceMouse in a person's hand. It watches the actions the
  robot executes; when the policy drifts from what the expert would do (translation differs by more than
  `intervention_drift`, or the gripper command disagrees), it takes over with probability
  `intervention_rate` and then drives for `intervention_steps` steps, returning the expert's action with
  `intervening=True` — exactly what the actor does with a real SpaceMouse.
- `ScriptedKeys` (a `KeySource`): presses SUCCESS once the scene is solved and FAILURE once it is lost (the
  peg fell over, the bar dropped), once per episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lastr1.robot.keys import Key, KeySource
from lastr1.robot.sim.tasks import SimTask
from lastr1.robot.teleop import Teleop, TeleopCommand

# (scene, arm states) as the env sees them now
Observe = Callable[[], tuple[dict, list]]


class ScriptedExpert:
    """Task waypoints → normalised action through the safety layer's own inverse (`Safety.to_action`), so the
    filtered action lands exactly on the waypoint when it is within one step, and a full step towards it
    otherwise."""

    def __init__(self, task: SimTask, safety):
        self.task = task
        self.safety = safety

    def action(self, scene: dict, states: list) -> np.ndarray:
        targets = self.task.expert_targets(scene, states)
        return self.safety.to_action(
            states,
            np.array([t.position for t in targets]),
            np.array([t.quaternion for t in targets]),
            np.array([t.gripper for t in targets]),
        )


class ScriptedOperator(Teleop):
    def __init__(self, expert: ScriptedExpert, observe: Observe, rate: float, drift: float, steps: int,
                 rng: np.random.Generator | None = None):
        self.expert = expert
        self.observe = observe
        self.rate = rate
        self.drift = drift
        self.steps = max(1, steps)
        self.rng = rng or np.random.default_rng()
        self._left = 0
        self._last_executed: np.ndarray | None = None
        self._last_was_mine = False
        self.interventions = 0  # takeovers started, for stats and tests

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def new_episode(self) -> None:
        self._left = 0
        self._last_executed = None
        self._last_was_mine = False

    def executed(self, action: np.ndarray) -> None:
        """The env reports every action it sent to the arm (policy's or ours)."""
        self._last_executed = np.asarray(action, dtype=np.float32).copy()

    def drifting(self, policy_action: np.ndarray, expert_action: np.ndarray) -> bool:
        a = np.asarray(policy_action, dtype=np.float64).reshape(-1, 7)
        e = np.asarray(expert_action, dtype=np.float64).reshape(-1, 7)
        if not np.all(np.isfinite(a)):
            return True
        far = np.linalg.norm(a[:, :3] - e[:, :3], axis=1) > self.drift
        # A decided gripper command (beyond ±0.5) against the expert's is drift too.
        grip = (np.abs(a[:, 6]) > 0.5) & (np.sign(a[:, 6]) != np.sign(e[:, 6]))
        return bool(np.any(far | grip))

    def read(self) -> TeleopCommand:
        scene, states = self.observe()
        a = self.expert.action(scene, states)
        now = time.monotonic()
        if self._left > 0:
            self._left -= 1
            self._last_was_mine = True
            return TeleopCommand(action=a, intervening=True, timestamp=now)
        policy = None if self._last_was_mine else self._last_executed
        if policy is not None and self.drifting(policy, a) and self.rng.random() < self.rate:
            self._left = self.steps - 1
            self.interventions += 1
            self._last_was_mine = True
            return TeleopCommand(action=a, intervening=True, timestamp=now)
        self._last_was_mine = False
        return TeleopCommand(action=a, intervening=False, timestamp=now)


class ScriptedKeys(KeySource):
    def __init__(self, task: SimTask, scene: Callable[[], dict]):
        self.task = task
        self.scene = scene
        self._sent = False

    def new_episode(self) -> None:
        self._sent = False

    def poll(self) -> list[Key]:
        if self._sent:
            return []
        scene = self.scene()
        if not scene.get("params"):  # polled (on the key thread) before the first reset: no task to judge yet
            return []
        if self.task.success(scene):
            self._sent = True
            return [Key.SUCCESS]
        if self.task.failure(scene):
            self._sent = True
            return [Key.FAILURE]
        return []
