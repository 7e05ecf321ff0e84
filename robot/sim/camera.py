"""Simulated cameras: the `Camera` interface over the sim server's renders.

One capture thread per sim server (`RenderRig`) asks for all cameras at once at the fastest configured rate (one
snapshot, one round trip); each `SimCamera` is a view on one of them. Like the RealSense capture thread, it
keeps only the newest frame, and `read_latest(max_age_ms)` refuses a frame that is too old: a stalled
simulation (no physics progress → no new frame) and an injected camera dropout both end in `StaleFrameError`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from lastr1.robot.camera import Camera, Frame
from lastr1.robot.errors import ConnectionLost, DeviceNotFound, RobotError, StaleFrameError

if TYPE_CHECKING:
    from lastr1.robot.sim.client import SimServer


class RenderRig:
    def __init__(self, server: SimServer, fps: float):
        self.server = server
        self.period = 1.0 / max(fps, 1e-3)
        self._frames: dict[str, Frame] = {}
        self._numbers: dict[str, int] = {}
        self._last_time: dict[str, float] = {}
        self._cv = threading.Condition()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: Exception | None = None

    def acquire(self) -> None:
        with self._cv:
            self._users += 1
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="sim-cameras", daemon=True)
                self._thread.start()

    def release(self) -> None:
        with self._cv:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread, self._thread = self._thread, None
        self._stop.set()
        thread.join(timeout=5)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                reply = self.server.render()
            except (ConnectionLost, RobotError) as e:
                self.error = e  # readers see it; frames stop, so they go stale
                with self._cv:
                    self._cv.notify_all()
                return
            now = time.monotonic()
            t = reply.get("time")
            with self._cv:
                for name, img in reply.get("images", {}).items():
                    if t is None or self._last_time.get(name) == t:
                        continue  # physics has not moved: not a new frame
                    self._last_time[name] = t
                    self._numbers[name] = self._numbers.get(name, 0) + 1
                    self._frames[name] = Frame(color=img, timestamp_ms=t * 1000.0, frame_number=self._numbers[name],
                                               received_s=now)
                self._cv.notify_all()
            next_t = max(next_t + self.period, time.monotonic() - self.period)
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def latest(self, name: str) -> Frame | None:
        with self._cv:
            return self._frames.get(name)

    def wait_first(self, name: str, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while name not in self._frames and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return self._frames.get(name)


class SimCamera(Camera):
    def __init__(self, rig: RenderRig, name: str, max_age_ms: float = 200.0):
        self.rig = rig
        self.name = name
        self.max_age_ms = max_age_ms
        self._connected = False

    def connect(self) -> None:
        if self.name not in self.rig.server.info.get("cameras", []):
            raise DeviceNotFound(f"the sim server renders no camera {self.name!r}",
                                 hint=f"cameras of this scene: {', '.join(self.rig.server.info.get('cameras', []))}")
        self.rig.acquire()
        self._connected = True
        if self.rig.wait_first(self.name, timeout=10.0) is None:
            self.close()
            raise DeviceNotFound(f"sim camera {self.name!r} produced no frame in 10 s"
                                 f"{f' ({self.rig.error})' if self.rig.error else ''}",
                                 hint="is the sim server alive and EGL working (MUJOCO_GL=egl)?")

    def close(self) -> None:
        if self._connected:
            self._connected = False
            self.rig.release()

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        if not self._connected:
            raise RobotError(f"camera {self.name!r} is not connected", hint="call connect() first")
        limit = self.max_age_ms if max_age_ms is None else max_age_ms
        frame = self.rig.latest(self.name)
        if frame is None:
            raise StaleFrameError(f"camera {self.name!r} has no frame yet", hint="wait for the capture thread")
        age = (time.monotonic() - frame.received_s) * 1000.0
        if age > limit:
            why = f": {self.rig.error}" if self.rig.error else ""
            raise StaleFrameError(
                f"camera {self.name!r}: newest frame is {age:.0f} ms old (limit {limit:.0f} ms){why}",
                hint="pause the loop until frames are fresh again (camera dropout or stalled simulation)",
            )
        return frame
