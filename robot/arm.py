"""The arm interface. A normalised action is 7 numbers per arm in [-1, 1]: xyz translation and roll-pitch-yaw
rotation deltas (scaled by the safety config's per-step limits) and a gripper command (+1 close, -1 open)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ArmState:
    position: np.ndarray  # (3,) end-effector position, base frame, metres
    quaternion: np.ndarray  # (4,) end-effector orientation, xyzw
    joints: np.ndarray  # (7,) joint angles, rad
    gripper_width: float  # metres
    wrench: np.ndarray  # (6,) estimated external force/torque at the end effector, N / Nm
    errors: list[str] = field(default_factory=list)  # reflex/collision errors reported by the arm
    timestamp: float = 0.0

    def proprio(self) -> np.ndarray:
        """What the policy sees: position, quaternion, gripper width (8 numbers)."""
        return np.concatenate([self.position, self.quaternion, [self.gripper_width]]).astype(np.float32)


class Arm(abc.ABC):
    """One arm (or several acting as one: `n_arms` × 7 action numbers)."""

    n_arms: int = 1

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def state(self) -> list[ArmState]:
        """One state per arm."""

    @abc.abstractmethod
    def move_to(self, positions: np.ndarray, quaternions: np.ndarray, grippers: np.ndarray) -> None:
        """Start an asynchronous motion to absolute targets (n_arms × 3, n_arms × 4, n_arms gripper
        commands in [-1, 1]); pre-empts the motion in progress. Targets have already passed safety."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop all motion now (pause, e-stop, force limit)."""

    @abc.abstractmethod
    def recover(self) -> None:
        """Clear reflex/collision errors so motion can resume."""

    @abc.abstractmethod
    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Move (blocking) to the home pose, randomised as configured, and open the gripper."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()
