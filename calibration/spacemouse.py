"""SpaceMouse axes: a guided routine that finds each axis's sign and scale and the deadzone.

Readings come from pyspacemouse with `axis_convention=hid_z_up` (right-handed, Z up: x right, y away from the
user, z up; roll/pitch/yaw about them) — pass the same convention when reading the device for teleoperation, or
the signs found here do not apply. For each of the six action axes (x y z roll pitch yaw, the arm's frame) the
operator makes the motion they want to mean "+axis"; the SpaceMouse axis that answers must be the same one
(axis_scale can flip and scale an axis, not swap two: turn the device instead), and

    axis_scale[i] = sign / (firm-push reading)      so a firm push commands 1.0 in the right direction
    deadzone      = 2 × the largest hands-off reading after scaling (at least 0.02)

i.e. a teleop command is `a = clip(axis_scale * reading, -1, 1)`, zeroed where |a| < deadzone. The saved YAML
(`TeleopConfig.calibration_file`) holds exactly TeleopConfig's `axis_scale` and `deadzone`, with the device's
path, serial, model, convention and a timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lastr1.calibration.common import CalibrationError, save_yaml, timestamp
from lastr1.errors import require

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
CONVENTION = "hid_z_up"
MIN_DEADZONE = 0.02
# A push must rise above this (fraction of full scale) to count as started, and a firm push must reach
# FIRM: pyspacemouse reports ±1 near the mechanical stop (raw ±350).
ONSET = 0.15
FIRM = 0.25
MIN_SAMPLES = 5

PROMPTS = (
    "push the cap the way the gripper should move +X (away from the robot's base)",
    "push the cap the way the gripper should move +Y (to the robot's left, seen from behind the robot)",
    "pull the cap UP (the gripper moves +Z, up)",
    "tilt the cap to roll the gripper about +X (right-hand rule, thumb away from the base)",
    "tilt the cap to pitch the gripper about +Y (right-hand rule, thumb to the robot's left)",
    "twist the cap LEFT, counter-clockwise seen from above (yaw about +Z)",
)


def _pyspacemouse():
    return require("pyspacemouse", "robot", "reading the SpaceMouse")


def list_spacemice() -> list[tuple[str, str]]:
    """(HID path, model name) of every connected SpaceMouse, in enumeration order."""
    psm = _pyspacemouse()
    try:
        return list(psm.get_connected_devices_by_path().items())
    except (RuntimeError, OSError) as e:
        raise CalibrationError(f"cannot enumerate HID devices: {e}",
                               hint="install libhidapi-hidraw0 and allow access to /dev/hidraw* (udev rule)") from None


class SpaceMouseReader:
    """Raw 6-axis readings of one SpaceMouse straight from pyspacemouse (no deadzone, no scaling)."""

    def __init__(self, device_index: int = 0):
        psm = _pyspacemouse()
        devices = list_spacemice()
        if device_index >= len(devices):
            from lastr1.robot.errors import DeviceNotFound

            raise DeviceNotFound(
                f"SpaceMouse #{device_index} is not connected ({len(devices)} found: "
                f"{', '.join(f'{n} at {p}' for p, n in devices) or 'none'})",
                hint="plug it in (or pair the wireless receiver) and check /dev/hidraw* permissions",
            )
        self.path, self.name = devices[device_index]
        # pyspacemouse picks among devices of one model by index.
        same_model = [p for p, n in devices if n == self.name]
        self.index = device_index
        try:
            self._dev = psm.open(device=self.name, device_index=same_model.index(self.path),
                                 axis_convention=psm.AxisConvention(CONVENTION), nonblocking=True)
        except (RuntimeError, ValueError) as e:
            raise CalibrationError(f"cannot open {self.name} at {self.path}: {e}",
                                   hint="is another program (spacenavd, a running actor) holding it?") from None
        self.serial = self._dev.serial_number
        self._t = None

    def read(self, max_reports: int = 16) -> np.ndarray:
        """The newest reading (x y z roll pitch yaw), after draining the reports queued since the last call
        (one `device.read()` processes at most one HID report; its state's `t` moves only when one came)."""
        for _ in range(max_reports):
            before = self._t
            state = self._dev.read()
            self._t = state.t
            if state.t == before:
                break
        return np.array([state.x, state.y, state.z, state.roll, state.pitch, state.yaw], np.float64)

    def close(self) -> None:
        self._dev.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sample(read, seconds: float, period: float) -> np.ndarray:
    out, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        out.append(read())
        time.sleep(period)
    return np.array(out).reshape(-1, 6)


def _wait(read, cond: Callable[[np.ndarray], bool], timeout_s: float, period: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond(read()):
        if time.monotonic() - t0 > timeout_s:
            raise CalibrationError(f"timed out after {timeout_s:.0f} s waiting for you to {what}",
                                   hint="rerun `lastr1 calibrate spacemouse` and follow the prompts")
        time.sleep(period)


def calibrate_axes(
    read: Callable[[], np.ndarray],
    say: Callable[[str], None] = print,
    rest_s: float = 2.0,
    hold_s: float = 1.5,
    timeout_s: float = 20.0,
    period: float = 0.01,
) -> dict:
    """Run the guided routine on a reader of raw 6-axis readings; returns axis_scale, deadzone and the evidence."""
    from tqdm import tqdm

    say(f"Hands OFF the SpaceMouse for {rest_s:.0f} s (measuring its noise at rest)...")
    rest = _sample(read, rest_s, period)
    noise = np.abs(rest).max(0) if len(rest) else np.zeros(6)
    onset = max(ONSET, 3 * float(noise.max()))
    if onset >= FIRM:
        raise CalibrationError(
            f"the SpaceMouse reads up to {noise.max():.2f} with nobody touching it",
            hint="let go of it during the rest phase; if it drifts by itself, unplug and replug it",
        )
    scale, peaks = np.zeros(6), np.zeros(6)
    for i, (axis, prompt) in enumerate(zip(AXES, PROMPTS)):
        say(f"[{i + 1}/6] {prompt}, firmly, and hold it until the bar is full.")
        _wait(read, lambda v: np.abs(v).max() > onset, timeout_s, period, f"{prompt.split(' (')[0]}")
        samples = []
        with tqdm(total=100, desc=f"  {axis}", bar_format="{desc}: {bar} {n_fmt}%", leave=False) as bar:
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < hold_s:
                v = read()
                if np.abs(v).max() < onset / 2:
                    break  # let go early
                samples.append(v)
                bar.update(min(100, int(100 * elapsed / hold_s)) - bar.n)
                time.sleep(period)
        readings = np.array(samples).reshape(-1, 6)
        if len(samples) < MIN_SAMPLES:
            raise CalibrationError(f"the push for {axis} was too short ({len(samples)} readings)",
                                   hint="hold each push until the bar is full")
        mean_abs = np.abs(readings).mean(0)
        dominant = int(np.argmax(mean_abs))
        if dominant != i:
            raise CalibrationError(
                f"asked for {axis}, but the SpaceMouse moved most on its {AXES[dominant]} axis "
                f"(mean |reading| {np.round(mean_abs, 2).tolist()}); axis_scale can flip and scale an axis, not "
                "swap two",
                hint="place the SpaceMouse so its cable points away from you and the arm's +X matches your "
                "'push forward', or make that motion for this prompt",
            )
        peak = float(np.percentile(np.abs(readings[:, i]), 90))
        if peak < FIRM:
            raise CalibrationError(f"the push for {axis} was too gentle (reading {peak:.2f}, need ≥ {FIRM})",
                                   hint="push or twist firmly, close to the stop")
        sign = float(np.sign(np.median(readings[:, i])))
        scale[i], peaks[i] = sign / peak, sign * peak
        say(f"  {axis}: sign {'+' if sign > 0 else '-'}, full push reads {peak:.2f} -> scale {scale[i]:+.3f}")
        say("  let go.")
        _wait(read, lambda v: np.abs(v).max() < onset / 2, timeout_s, period, "let go of the SpaceMouse")
    deadzone = max(MIN_DEADZONE, 2 * float(np.max(noise * np.abs(scale))))
    say(f"deadzone {deadzone:.3f} (rest noise {np.round(noise, 3).tolist()})")
    return dict(axis_scale=[round(float(s), 4) for s in scale], deadzone=round(deadzone, 4),
                rest_noise=noise.tolist(), full_push=peaks.tolist())


def save_spacemouse(path: str | Path, result: dict, name: str, device: dict) -> Path:
    """Written in the schema SpaceMouseTeleop reads (`robot.spacemouse.SpaceMouseCalibration`), so the file
    can be named in `robot.teleop[].calibration_file` as it is; the raw measurements go into its header."""
    from lastr1.robot.spacemouse import SpaceMouseCalibration

    calib = SpaceMouseCalibration(
        axis_scale=[float(v) for v in result["axis_scale"]], deadzone=float(result["deadzone"]),
        device_name=str(device.get("model", "")), device_path=str(device.get("path", "")),
        device_serial=str(device.get("serial", "")), created=timestamp(),
    ).validate()
    path = Path(path)
    save_yaml(path, {k: getattr(calib, k) for k in calib.__dataclass_fields__}, header=(
        f"lastr1 SpaceMouse calibration of {name!r} ({CONVENTION} axes): a = clip(axis_scale * reading, -1, 1), "
        f"zero where |a| < deadzone\nrest noise {np.round(result['rest_noise'], 4).tolist()}, full push "
        f"{np.round(result['full_push'], 3).tolist()}"))
    SpaceMouseCalibration.load(path)  # what the teleop will read must load
    return path


def load_spacemouse(path: str | Path):
    """The calibration as SpaceMouseTeleop reads it."""
    from lastr1.robot.spacemouse import SpaceMouseCalibration

    return SpaceMouseCalibration.load(path)
