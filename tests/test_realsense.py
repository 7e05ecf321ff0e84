"""RealSenseCamera on the real pyrealsense2 code path: an `rs.software_device` registered in a context, fed with
synthetic frames of known content and timestamps, streamed through pipeline → syncer (→ align) → our thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lastr1.configs.robot import CameraConfig
from lastr1.errors import ConfigError
from lastr1.robot.errors import ConnectionLost, DeviceNotFound, StaleFrameError

rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 (lastr1[robot]) is not installed")
from lastr1.robot.realsense import RealSenseCamera, find_cameras  # noqa: E402

W, H, FPS = 64, 48, 30
T0_MS, DT_MS = 5000.0, 1000.0 / FPS


def pattern(i: int) -> np.ndarray:
    """Frame i: red = 4·column, green = i mod 256 (everywhere), blue = 5·row."""
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (np.arange(W) * 4)[None, :]
    img[..., 1] = i % 256
    img[..., 2] = (np.arange(H) * 5)[:, None]
    return img


class SoftwareRealSense:
    """A software RealSense (colour, optionally depth) registered in its own context, and a feeder thread."""

    def __init__(self, serial: str = "000111", depth: bool = False, depth_units: float = 0.001):
        self.ctx = rs.context()
        # The context keeps software devices by weak reference; the devices-changed event holds the strong one.
        self._events: list = []
        self.ctx.set_devices_changed_callback(self._events.append)
        self.dev = rs.software_device()
        self.dev.register_info(rs.camera_info.serial_number, serial)
        self.dev.register_info(rs.camera_info.name, "Software D455")
        self.dev.register_info(rs.camera_info.product_line, "D400")
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = W, H, 60.0, 60.0, W / 2, H / 2
        self.color_sensor = self.dev.add_sensor("RGB Camera")
        self.color = self._stream(self.color_sensor, rs.stream.color, rs.format.rgb8, 3, 0, intr)
        on_off = rs.option_range()
        on_off.min, on_off.max, on_off.step, on_off.default = 0, 1, 1, 1  # as on a D455's RGB sensor
        self.color_sensor.add_option(rs.option.auto_exposure_priority, on_off, True)
        self.depth_sensor = self.depth = None
        self.depth_units = depth_units
        if depth:
            self.depth_sensor = self.dev.add_sensor("Stereo Module")
            self.depth = self._stream(self.depth_sensor, rs.stream.depth, rs.format.z16, 2, 1, intr)
            self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
            ext = rs.extrinsics()
            ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
            self.depth.register_extrinsics_to(self.color, ext)
        self.dev.add_to(self.ctx)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    @staticmethod
    def _stream(sensor, kind, fmt, bpp, uid, intr):
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = kind, 0, uid, W, H, FPS, bpp, fmt
        vs.intrinsics = intr
        return sensor.add_video_stream(vs).as_video_stream_profile()

    def _frame(self, profile, pixels, bpp, i):
        f = rs.software_video_frame()
        f.pixels, f.bpp, f.stride = pixels, bpp, W * bpp
        f.timestamp, f.domain, f.frame_number = T0_MS + i * DT_MS, rs.timestamp_domain.hardware_clock, i
        f.profile = profile
        if bpp == 2:
            f.depth_units = self.depth_units
        return f

    def start(self, period_s: float = 0.02):
        """Feed frames 0, 1, 2, ... from the moment the pipeline opens the sensor (so numbering starts at 0)."""

        def run():
            while not self._stop.is_set() and not self.color_sensor.get_active_streams():
                time.sleep(0.002)
            i = 0
            while not self._stop.is_set():
                self.color_sensor.on_video_frame(self._frame(self.color, pattern(i), 3, i))
                if self.depth_sensor is not None:
                    d = np.full((H, W), 500 + i, np.uint16)
                    self.depth_sensor.on_video_frame(self._frame(self.depth, d, 2, i))
                self.sent = i = i + 1
                time.sleep(period_s)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@pytest.fixture
def cam_factory():
    made = []

    def make(serial="000111", depth=False, depth_units=0.001, feed=True, image_size=None, **cfg):
        soft = SoftwareRealSense(serial, depth, depth_units)
        if feed:
            soft.start()
        args = dict(name="front", serial=serial, width=W, height=H, fps=FPS, depth=depth, warmup_frames=0,
                    max_age_ms=200.0, connect_timeout_s=3.0)
        args.update(cfg)
        cam = RealSenseCamera(CameraConfig(**args), image_size=image_size, context=soft.ctx)
        made.append((cam, soft))
        return cam, soft

    yield make
    for cam, soft in made:
        cam.close()
        soft.stop()


def wait_frame(cam, after: int = -1, timeout: float = 2.0):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        f = cam.read_latest()
        if f.frame_number > after:
            return f
        time.sleep(0.005)
    raise AssertionError("no new frame")


def test_find_cameras_lists_the_software_device(cam_factory):
    _, soft = cam_factory(serial="4242", feed=False)
    assert find_cameras(soft.ctx) == [("4242", "Software D455", "D400")]


def test_frames_arrive_with_content_timestamps_and_numbers(cam_factory):
    cam, soft = cam_factory(warmup_frames=4)
    cam.connect()
    first = cam.read_latest()
    assert first.frame_number >= 4  # frames 0..3 were the warm-up
    f = first
    for _ in range(5):
        f = wait_frame(cam, after=f.frame_number)
        n = f.frame_number
        assert f.timestamp_ms == pytest.approx(T0_MS + n * DT_MS, abs=1e-3)
        assert f.timestamp_domain == "hardware_clock"
        assert f.color.shape == (H, H, 3) and f.color.dtype == np.uint8
        assert np.all(f.color[..., 1] == n % 256)  # the pixels belong to this frame number
        # centre crop: columns 8..55 of the 64-wide frame, all 48 rows
        np.testing.assert_array_equal(f.color[0, :, 0], np.arange(8, 56) * 4)
        np.testing.assert_array_equal(f.color[:, 0, 2], np.arange(H) * 5)
    assert cam.frames_received >= 6
    assert cam.device_info.serial == "000111"
    assert soft.color_sensor.get_option(rs.option.auto_exposure_priority) == 0  # constant frame rate


def test_resize_to_policy_resolution(cam_factory):
    cam, _ = cam_factory(image_size=24)
    cam.connect()
    f = cam.read_latest()
    assert f.color.shape == (24, 24, 3)
    # a 2× shrink of the cropped ramps: output column j is centred on input column 8 + 2j + 0.5
    np.testing.assert_allclose(f.color[5, 1:-1, 0], (8 + 2 * np.arange(1, 23) + 0.5) * 4, atol=1.0)
    np.testing.assert_allclose(f.color[1:-1, 5, 2], (2 * np.arange(1, 23) + 0.5) * 5, atol=1.0)
    k = cam.intrinsics()
    assert (k["width"], k["height"]) == (24, 24)
    assert k["fx"] == pytest.approx(30.0) and k["ppx"] == pytest.approx((32 - 8 + 0.5) / 2 - 0.5)


def test_stale_frame_raises_after_the_feeder_stops(cam_factory):
    cam, soft = cam_factory(max_age_ms=150.0)
    cam.connect()
    cam.read_latest()
    soft.stop()
    time.sleep(0.3)
    with pytest.raises(StaleFrameError, match=r"camera 'front' \(000111\): newest frame #\d+ is \d+ ms old"):
        cam.read_latest()
    assert cam.read_latest(max_age_ms=10_000).frame_number >= 0  # a looser limit still gets it


def test_aligned_depth_in_millimetres(cam_factory):
    cam, _ = cam_factory(depth=True, depth_units=0.0001)  # 0.1 mm per unit, as on a D405
    cam.connect()
    f = wait_frame(cam)
    assert f.depth is not None and f.depth.shape == (H, H) and f.depth.dtype == np.uint16
    # depth frame n holds 500 + n units of 0.1 mm; colour and depth of one frameset share n
    expected = np.rint((500 + f.frame_number) / 10)
    assert np.median(f.depth) == expected


def test_missing_camera_is_immediate_and_names_what_is_there(cam_factory):
    cam, soft = cam_factory(serial="000111", feed=False)
    wrong = RealSenseCamera(CameraConfig(name="wrist", serial="999999"), context=soft.ctx)
    t = time.monotonic()
    msg = r"RealSense 999999 \(camera 'wrist'\) is not connected; connected: 000111"
    with pytest.raises(DeviceNotFound, match=msg):
        wrong.connect()
    assert time.monotonic() - t < 1.0
    # and with nothing plugged in at all (the case where pipeline.start() would hang 15 s)
    t = time.monotonic()
    with pytest.raises(DeviceNotFound, match="connected: none"):
        RealSenseCamera(CameraConfig(name="wrist", serial="999999"), context=rs.context()).connect()
    assert time.monotonic() - t < 1.0
    with pytest.raises(ConfigError, match="no serial number"):
        RealSenseCamera(CameraConfig(name="wrist", serial=""), context=soft.ctx).connect()


def test_unsupported_mode_lists_the_modes(cam_factory):
    cam, _ = cam_factory(feed=False, width=1280, height=720)
    with pytest.raises(ConfigError, match="64x48@30"):
        cam.connect()


def test_no_frames_after_start_is_a_clear_error(cam_factory):
    cam, _ = cam_factory(feed=False, connect_timeout_s=0.3)
    t = time.monotonic()
    with pytest.raises(ConnectionLost, match="sent no frame within 0.3 s"):
        cam.connect()
    assert time.monotonic() - t < 2.0 and not cam.running


def test_close_joins_the_thread_and_is_idempotent(cam_factory):
    cam, _ = cam_factory()
    cam.connect()
    thread = cam._thread
    assert thread.is_alive() and cam.running
    t = time.monotonic()
    cam.close()
    assert time.monotonic() - t < 1.0
    assert not thread.is_alive() and not cam.running
    cam.close()
    with pytest.raises(StaleFrameError, match="not connected"):
        cam.read_latest()
    cam.connect()  # and it can be opened again
    assert cam.read_latest().color.shape == (H, H, 3)


def test_record_then_play_back(cam_factory, tmp_path):
    path = tmp_path / "front.db3"
    cam, _ = cam_factory(record_file=str(path))
    cam.connect()
    last = wait_frame(cam, after=cam.read_latest().frame_number + 5)
    cam.close()
    assert path.stat().st_size > 0
    replay = RealSenseCamera(
        CameraConfig(name="front", width=W, height=H, fps=FPS, warmup_frames=0, playback_file=str(path),
                     playback_repeat=False),
        image_size=None,
    )
    with replay:
        f = replay.read_latest()
        assert np.all(f.color[..., 1] == f.frame_number % 256)
        assert f.timestamp_ms == pytest.approx(T0_MS + f.frame_number * DT_MS, abs=1e-3)
        assert f.frame_number <= last.frame_number
    with pytest.raises(DeviceNotFound, match="does not exist"):
        RealSenseCamera(CameraConfig(playback_file=str(tmp_path / "nope.bag"))).connect()


def test_missing_library_is_named(monkeypatch):
    import sys

    from lastr1.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # as if not installed
    with pytest.raises(MissingDependency, match="pyrealsense2"):
        RealSenseCamera(CameraConfig(serial="1")).connect()
