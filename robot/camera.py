"""The camera interface: one capture thread per camera, the newest frame on demand, never a stale one."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    color: np.ndarray  # (H, W, 3) uint8 RGB, already cropped/resized to the policy resolution
    timestamp_ms: float  # hardware (or simulation) timestamp, milliseconds
    frame_number: int
    received_s: float  # time.monotonic() when the capture thread got it
    depth: np.ndarray | None = None  # (H, W) uint16 millimetres, when enabled
    timestamp_domain: str = ""  # clock of timestamp_ms: RealSense "hardware_clock" / "global_time" / "system_time"


class Camera(abc.ABC):
    name: str

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the device, start the capture thread, and wait for the first frame (raises if none comes)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        """The newest frame; raises `robot.errors.StaleFrameError` when it is older than `max_age_ms`."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()
