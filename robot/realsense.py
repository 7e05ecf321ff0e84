"""Intel RealSense cameras through pyrealsense2: one capture thread per camera, the newest frame on demand.

The device is chosen by serial number and looked up with `context.query_devices()` first (milliseconds), so a
missing camera is a `DeviceNotFound` naming the serials that are there, never the 15-s hang of
`pipeline.start()` with nothing plugged in. A `pyrealsense2.context` may be handed in: the tests register an
`rs.software_device` in one, and the very same pipeline / syncer / align / capture-thread code then runs on
synthetic frames. A recorded file (`CameraConfig.playback_file`, .bag or .db3) replays through the same path.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lastr1.configs.robot import CameraConfig
from lastr1.errors import ConfigError, require
from lastr1.robot.camera import Camera, Frame
from lastr1.robot.errors import ConnectionLost, DeviceNotFound, RobotError, StaleFrameError
from lastr1.robot.image import center_crop_resize, crop_resize_intrinsics

log = logging.getLogger(__name__)

# try_wait_for_frames timeout: bounds how long close() waits for the capture thread.
_POLL_MS = 100


class CameraInfo(NamedTuple):
    serial: str
    name: str
    product_line: str


def _rs():
    return require("pyrealsense2", "robot", "RealSense cameras")


def _info(dev: Any, key: Any) -> str:
    return dev.get_info(key) if dev.supports(key) else ""


def find_cameras(context: Any = None) -> list[CameraInfo]:
    """The RealSense devices connected now (serial, name, product line)."""
    rs = _rs()
    ctx = context if context is not None else rs.context()
    ci = rs.camera_info
    return [
        CameraInfo(_info(d, ci.serial_number), _info(d, ci.name), _info(d, ci.product_line))
        for d in ctx.query_devices()
    ]


class RealSenseCamera(Camera):
    """`connect()` starts the stream and a capture thread that keeps only the newest frame, already cropped
    and resized to `image_size`; `read_latest()` returns it or raises `StaleFrameError`."""

    def __init__(self, cfg: CameraConfig, image_size: int | None = 128, *, context: Any = None):
        self.cfg = cfg
        self.name = cfg.name
        self.image_size = image_size
        self._context = context
        self._pipe: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._error: BaseException | None = None
        self._intrinsics: dict | None = None
        self.device_info: CameraInfo | None = None
        self.frames_received = 0
        self.frames_skipped = 0  # gaps in the hardware frame counter: frames the camera made that we never saw

    # ---- lifecycle ----

    def connect(self) -> None:
        if self._thread is not None:
            return
        rs = _rs()
        ctx = self._context if self._context is not None else rs.context()
        cfg = self.cfg
        config = rs.config()
        if cfg.playback_file:
            path = Path(cfg.playback_file)
            if not path.is_file():
                raise DeviceNotFound(
                    f"camera {self.name!r}: recording {str(path)!r} does not exist",
                    hint="set robot.cameras[].playback_file to a .bag/.db3 file, or to '' for the live camera",
                )
            config.enable_device_from_file(str(path), repeat_playback=cfg.playback_repeat)
        else:
            self._check_present(ctx)
            config.enable_device(cfg.serial)
            if cfg.record_file:
                config.enable_record_to_file(cfg.record_file)
        config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        if cfg.depth:
            config.enable_stream(rs.stream.depth, cfg.width, cfg.height, rs.format.z16, cfg.fps)
        pipe = rs.pipeline(ctx)
        if not config.can_resolve(rs.pipeline_wrapper(pipe)):
            raise ConfigError(
                f"camera {self.name!r} ({cfg.serial or cfg.playback_file}) cannot stream colour "
                f"{cfg.width}x{cfg.height}@{cfg.fps}{' with depth' if cfg.depth else ''}",
                hint="pick a mode it offers: " + ", ".join(self._modes(ctx)),
            )
        try:
            profile = pipe.start(config)
        except RuntimeError as e:
            raise ConnectionLost(
                f"camera {self.name!r} ({cfg.serial}) did not start: {e}",
                hint="is another program (realsense-viewer, a second lastr1) using it? Is it on a USB 3 port?",
            ) from None
        self._pipe = pipe
        dev = profile.get_device()
        for sensor in dev.query_sensors():
            # With auto-exposure priority on (the default) a D400 drops to 15 fps in dim light to expose longer:
            # frames would go stale mid-episode. Keep the frame rate; let the gain rise instead.
            if sensor.supports(rs.option.auto_exposure_priority) and not sensor.is_option_read_only(
                rs.option.auto_exposure_priority
            ):
                sensor.set_option(rs.option.auto_exposure_priority, 0.0)
        ci = rs.camera_info
        self.device_info = CameraInfo(_info(dev, ci.serial_number), _info(dev, ci.name), _info(dev, ci.product_line))
        vp = profile.get_stream(rs.stream.color).as_video_stream_profile()
        i = vp.get_intrinsics()
        self._intrinsics = dict(
            width=i.width, height=i.height, fx=i.fx, fy=i.fy, ppx=i.ppx, ppy=i.ppy, model=str(i.model),
            coeffs=list(i.coeffs),
        )
        align = rs.align(rs.stream.color) if cfg.depth else None
        self._stop.clear()
        self._first.clear()
        self._error = None
        self._thread = threading.Thread(target=self._capture, args=(align,), name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        if not self._first.wait(cfg.connect_timeout_s):
            err = self._error
            self.close()
            raise ConnectionLost(
                f"camera {self.name!r} ({cfg.serial or cfg.playback_file}) started but sent no frame within "
                f"{cfg.connect_timeout_s} s (after {cfg.warmup_frames} warm-up frames)" + (f": {err}" if err else ""),
                hint="replug the camera (USB 3), check `rs-enumerate-devices`, or raise connect_timeout_s",
            )

    def close(self) -> None:
        """Stop the capture thread (joined) and the pipeline; safe to call twice or after a failed connect."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.warning("camera %s: capture thread did not stop within 5 s", self.name)
        with self._lock:
            self._latest = None  # a closed camera has no "newest frame"
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError as e:  # already stopped, or the device vanished
                log.debug("camera %s: pipeline.stop(): %s", self.name, e)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- frames ----

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        limit = self.cfg.max_age_ms if max_age_ms is None else max_age_ms
        with self._lock:
            frame = self._latest
        if self._error is not None:
            raise ConnectionLost(
                f"camera {self.name!r} ({self.cfg.serial}): capture stopped: {self._error}",
                hint="replug the camera and restart; check the USB cable",
            )
        if frame is None:
            raise StaleFrameError(
                f"camera {self.name!r} ({self.cfg.serial}): no frame yet"
                + ("" if self._thread else " (not connected)"),
                hint="call connect() first" if self._thread is None else "wait for the stream to start",
            )
        age = (time.monotonic() - frame.received_s) * 1000.0
        if age > limit:
            raise StaleFrameError(
                f"camera {self.name!r} ({self.cfg.serial}): newest frame #{frame.frame_number} is {age:.0f} ms old "
                f"(limit {limit:.0f} ms)",
                hint="the control loop pauses; check the cable (USB 3), the fps, or robot.cameras[].max_age_ms",
            )
        return frame

    def intrinsics(self, policy: bool = True) -> dict:
        """Pinhole intrinsics of the colour stream, of the policy image (`policy`) or of the raw stream."""
        if self._intrinsics is None:
            raise RobotError(f"camera {self.name!r}: intrinsics are known after connect()")
        k = dict(self._intrinsics)
        if policy:
            k["fx"], k["fy"], k["ppx"], k["ppy"] = crop_resize_intrinsics(
                k["fx"], k["fy"], k["ppx"], k["ppy"], k["height"], k["width"], self.image_size
            )
            side = min(k["height"], k["width"]) if self.image_size is None else self.image_size
            k["width"] = k["height"] = side
        return k

    def _capture(self, align: Any) -> None:
        warmup = self.cfg.warmup_frames
        last_number = None
        try:
            while not self._stop.is_set():
                ok, frames = self._pipe.try_wait_for_frames(_POLL_MS)
                if not ok:
                    continue
                received = time.monotonic()
                if align is not None:
                    frames = align.process(frames)
                color = frames.get_color_frame()
                if not color:
                    continue
                if warmup > 0:
                    warmup -= 1
                    continue
                number = color.get_frame_number()
                if last_number is not None and number > last_number + 1:
                    self.frames_skipped += number - last_number - 1
                last_number = number
                frame = self._convert(color, frames.get_depth_frame() if align is not None else None, received)
                with self._lock:
                    self._latest = frame
                self.frames_received += 1
                self._first.set()
        except Exception as e:  # the device vanished mid-stream: read_latest() reports it
            log.error("camera %s: capture thread stopped: %s", self.name, e)
            self._error = e

    def _convert(self, color: Any, depth: Any, received: float) -> Frame:
        # Crop/resize copies, so the librealsense frame goes back to its pool as soon as this returns.
        rgb = center_crop_resize(np.asanyarray(color.get_data()), self.image_size)
        depth_mm = None
        if depth:
            raw = np.asanyarray(depth.get_data())
            units_mm = depth.as_depth_frame().get_units() * 1000.0
            if abs(units_mm - 1.0) > 1e-6:
                raw = np.clip(np.rint(raw * units_mm), 0, 65535).astype(np.uint16)
            depth_mm = center_crop_resize(raw, self.image_size, nearest=True)
        return Frame(
            color=rgb,
            timestamp_ms=color.get_timestamp(),
            frame_number=color.get_frame_number(),
            received_s=received,
            depth=depth_mm,
            timestamp_domain=str(color.get_frame_timestamp_domain()).rpartition(".")[2],
        )

    # ---- errors that say what is there ----

    def _check_present(self, ctx: Any) -> None:
        present = find_cameras(ctx)
        listing = ", ".join(f"{c.serial} ({c.name})" for c in present) or "none"
        if not self.cfg.serial:
            raise ConfigError(
                f"camera {self.name!r} has no serial number; connected RealSense cameras: {listing}",
                hint="set robot.cameras[].serial (see `rs-enumerate-devices -s` or robot.realsense.find_cameras())",
            )
        if self.cfg.serial not in [c.serial for c in present]:
            raise DeviceNotFound(
                f"RealSense {self.cfg.serial} (camera {self.name!r}) is not connected; connected: {listing}",
                hint="plug it in (USB 3), fix robot.cameras[].serial, or check the udev rules "
                "(librealsense's 99-realsense-libusb.rules) if none are listed",
            )

    def _modes(self, ctx: Any) -> list[str]:
        rs = _rs()
        modes = set()
        for d in ctx.query_devices():
            if _info(d, rs.camera_info.serial_number) != self.cfg.serial:
                continue
            for s in d.query_sensors():
                for p in s.get_stream_profiles():
                    if p.stream_type() == rs.stream.color and p.format() == rs.format.rgb8:
                        v = p.as_video_stream_profile()
                        modes.add((v.width(), v.height(), p.fps()))
        return [f"{w}x{h}@{f}" for w, h, f in sorted(modes)] or ["(none listed)"]
