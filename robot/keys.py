"""Operator keys: episode outcome and pause/e-stop, read without blocking the control loop."""

from __future__ import annotations

import abc
import enum


class Key(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    RESET = "reset"
    PAUSE = "pause"  # toggles pause/resume
    ESTOP = "estop"


class KeySource(abc.ABC):
    @abc.abstractmethod
    def poll(self) -> list[Key]:
        """Keys pressed since the last poll, oldest first; never blocks."""

    def close(self) -> None:  # noqa: B027 — optional: most key sources hold nothing to release
        pass
