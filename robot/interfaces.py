"""What the actor needs from a robot, and the hook a simulated scene plugs into.

`Env` is the actor's whole view of a robot: `robot.env.RobotEnv` is it for the real and the simulated robot
(built by `robot.factory.make_env`); the actor loop's tests drive it with an in-memory one. `Scene` is what
differs between the two: on the real robot a person sets the scene up and judges it (`NoScene`); in sim the
simulator does (`robot.sim.world.SimScene`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lastr1.robot.arm import ArmState
from lastr1.robot.errors import RobotError

if TYPE_CHECKING:
    from lastr1.robot.keys import KeySource
    from lastr1.robot.safety import Safety
    from lastr1.robot.teleop import Teleop


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


class Env(Protocol):
    keys: KeySource | None  # the operator's outcome, pause and e-stop keys
    teleop: Teleop | None  # a person (or the scripted operator) taking over
    safety: Safety  # every action passes it; its e-stop latch is cleared by `safety.reset_estop()`
    camera_names: list[str]

    def reset(self, seed: int | None = None, condition: str = "") -> Observation:
        """Home and a new scene; the first observation shows the scene after it."""
        ...

    def observe(self) -> Observation:
        """The latest view; raises StaleFrameError on old frames."""
        ...

    def act(self, action: np.ndarray) -> StepInfo:
        """Send one normalised action through safety to the arm, without waiting for the motion."""
        ...

    def stop(self) -> None:
        """Stop the motion in progress and hold still; the next `act` moves again."""
        ...

    def recover(self) -> None:
        """Stop, then clear the arm's reflex/collision errors so that it moves again."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def estop(self) -> None:
        """Stop now and latch: nothing moves until `safety.reset_estop()`."""
        ...

    def close(self) -> None: ...


class Scene(Protocol):
    simulated: bool

    def reset(self, rng: np.random.Generator, condition: str) -> None:
        """A new scene (randomised by `rng`, looking like evaluation `condition`), before the arm goes home."""
        ...

    def ready(self) -> None:
        """The arm is home: hand it what it starts holding, start the scripted people's episode."""
        ...

    def before_act(self) -> list[str]:
        """Faults injected before this step's action (what was injected)."""
        ...

    def after_act(self, action: np.ndarray) -> None:
        """The action went to the arm."""
        ...

    def success(self) -> bool:
        """Is the task solved now?"""
        ...

    def expert_action(self, states: list[ArmState] | None = None) -> np.ndarray:
        """What the scripted expert would do now."""
        ...

    def close(self) -> None: ...


class NoScene:
    """The real robot's scene: a person sets it up and says how it went (the keys)."""

    simulated = False

    def reset(self, rng: np.random.Generator, condition: str) -> None:
        pass

    def ready(self) -> None:
        pass

    def before_act(self) -> list[str]:
        return []

    def after_act(self, action: np.ndarray) -> None:
        pass

    def success(self) -> bool:
        raise RobotError("success() is judged by the simulator only",
                         hint="on the real robot the operator presses the success/failure keys")

    def expert_action(self, states: list[ArmState] | None = None) -> np.ndarray:
        raise RobotError("the scripted expert exists in sim only", hint="record demos with the SpaceMouse")

    def close(self) -> None:
        pass
