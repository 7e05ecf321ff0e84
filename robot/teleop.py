"""The teleoperation interface (SpaceMouse, or the scripted operator in sim)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass
class TeleopCommand:
    action: np.ndarray  # (7·n_arms,) normalised like a policy action: per arm xyz, rpy deltas in [-1, 1], gripper ±1
    intervening: bool  # motion beyond the deadzone or a button held: this action replaces the policy's
    timestamp: float = 0.0


class Teleop(abc.ABC):
    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> TeleopCommand:
        """The operator's current command; never blocks."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()
