"""Camera intrinsics: the RealSense factory values, or an estimate from ChArUco images (OpenCV).

The file written (`CameraConfig.intrinsics_file`) holds K (3 × 3), OpenCV distortion coefficients, the image
size they belong to, where they came from, the camera serial and a timestamp; `load_intrinsics` reads it back.

Factory path, the only pyrealsense2 calls made (no streaming, so no 15-s `pipeline.start()` hang):
`rs.context().query_devices()` → the device whose `camera_info.serial_number` matches → its sensors'
`get_stream_profiles()` → the colour profile of the configured size/fps → `.as_video_stream_profile()
.get_intrinsics()`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lastr1.calibration.charuco import Detection, detect
from lastr1.calibration.common import CalibrationError, cv2, load_yaml, save_yaml, timestamp
from lastr1.errors import require


def intrinsics_from_profile(profile) -> dict:
    """The factory intrinsics of one pyrealsense2 video stream profile, as plain data."""
    intr = profile.as_video_stream_profile().get_intrinsics()
    K = [[intr.fx, 0.0, intr.ppx], [0.0, intr.fy, intr.ppy], [0.0, 0.0, 1.0]]
    model = str(intr.model).split(".")[-1]
    # D400 colour streams use (inverse) Brown–Conrady with coefficients in OpenCV's order k1 k2 p1 p2 k3.
    return dict(width=int(intr.width), height=int(intr.height), K=K, dist=[float(c) for c in intr.coeffs],
                model=model, source="factory")


def intrinsics_from_device(device, width: int, height: int, fps: int) -> dict:
    """Factory colour intrinsics of a pyrealsense2 device (a real one or an `rs.software_device`)."""
    rs = require("pyrealsense2", "robot", "reading RealSense factory intrinsics")
    available = []
    for sensor in device.query_sensors():
        for p in sensor.get_stream_profiles():
            if p.stream_type() != rs.stream.color or not p.is_video_stream_profile():
                continue
            v = p.as_video_stream_profile()
            available.append(f"{v.width()}x{v.height()}@{p.fps()}")
            if (v.width(), v.height(), p.fps()) == (width, height, fps):
                out = intrinsics_from_profile(p)
                out["serial"] = device.get_info(rs.camera_info.serial_number)
                if device.supports(rs.camera_info.name):
                    out["device"] = device.get_info(rs.camera_info.name)
                return out
    raise CalibrationError(
        f"the camera has no colour stream {width}x{height}@{fps}",
        hint="set the camera's width/height/fps to one it offers: " + ", ".join(sorted(set(available))),
    )


def factory_intrinsics(serial: str, width: int, height: int, fps: int) -> dict:
    """Factory colour intrinsics of the connected RealSense with this serial."""
    rs = require("pyrealsense2", "robot", "reading RealSense factory intrinsics")
    devices = list(rs.context().query_devices())
    serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
    if serial not in serials:
        from lastr1.robot.errors import DeviceNotFound

        raise DeviceNotFound(
            f"no RealSense with serial {serial!r} is connected (found: {', '.join(serials) or 'none'})",
            hint="check the USB cable (USB 3) and the serial in robot.cameras[].serial",
        )
    return intrinsics_from_device(devices[serials.index(serial)], width, height, fps)


def calibrate_from_images(images, board, min_views: int = 10, max_rms_px: float = 1.0,
                          progress: bool = True) -> dict:
    """Zhang's method on ChArUco detections; refuses too few views or a large reprojection error."""
    from tqdm import tqdm

    cv = cv2()
    if not len(images):
        raise CalibrationError("no images to calibrate from")
    size = images[0].shape[:2][::-1]
    dets: list[Detection] = []
    missing: list[int] = []
    for i, img in enumerate(tqdm(images, desc="intrinsics: detecting board", unit="img", disable=not progress)):
        if img.shape[:2][::-1] != size:
            raise CalibrationError(f"image {i} is {img.shape[1]}x{img.shape[0]}, the first is {size[0]}x{size[1]}")
        d = detect(img, board)
        (dets.append(d) if d is not None else missing.append(i))
    if len(dets) < min_views:
        why = f"board not found in {len(missing)} of {len(images)} images ({_ids(missing)}); " if missing else ""
        raise CalibrationError(
            f"too few views: {why}{len(dets)} usable, at least {min_views} needed",
            hint="show the whole board, sharp and well lit, at several distances and tilts (±45°) across the image",
        )
    rms, K, dist, rvecs, tvecs = cv.calibrateCamera(
        [d.object_points for d in dets], [d.image_points for d in dets], size, None, None
    )
    per_view = []
    for d, r, t in zip(dets, rvecs, tvecs):
        proj, _ = cv.projectPoints(d.object_points, r, t, K, dist)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - d.image_points) ** 2, 1)))))
    result = dict(width=int(size[0]), height=int(size[1]), K=K.tolist(), dist=np.ravel(dist).tolist(),
                  model="opencv", source="charuco", reprojection_error_px=float(rms),
                  per_view_error_px=per_view, views_used=len(dets), images_without_board=missing)
    if rms > max_rms_px:
        worst = np.argsort(per_view)[::-1][:3]
        raise CalibrationError(
            f"reprojection error {rms:.2f} px is above the {max_rms_px} px limit (worst views: "
            + ", ".join(f"#{i} {per_view[i]:.2f} px" for i in worst) + ")",
            hint="drop blurred images, check the board is flat, and that calibration.board matches the print",
        )
    return result


def _ids(idx: list[int], n: int = 8) -> str:
    s = ", ".join(f"#{i}" for i in idx[:n])
    return s + (", ..." if len(idx) > n else "")


def save_intrinsics(path: str | Path, result: dict, camera: str, serial: str = "") -> Path:
    data = dict(kind="intrinsics", camera=camera, serial=serial or result.get("serial", ""), created=timestamp(),
                **{k: v for k, v in result.items() if k != "serial"})
    return save_yaml(path, data, header=f"lastr1 camera intrinsics of {camera!r} ({data['source']})")


def load_intrinsics(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """K (3 × 3), distortion coefficients, (width, height)."""
    d = load_yaml(path, "intrinsics")
    return np.asarray(d["K"], np.float64), np.asarray(d["dist"], np.float64), (int(d["width"]), int(d["height"]))
