"""3Dconnexion SpaceMouse teleoperation through pyspacemouse: one reader thread per device.

Axes come from pyspacemouse in its right-handed Z-up convention (`AxisConvention.HID_Z_UP`: x right, y away from
the operator, z up; roll/pitch/yaw about those axes, counter-clockwise positive). Per action axis i:
`device axis axis_map[i]` → deadzone (values inside are 0; outside, rescaled so the output starts at 0 at the
edge) → × axis_scale[i] (sign and gain) → clipped to [-1, 1]. The calibration file from
`lastr1 calibrate spacemouse` (`SpaceMouseCalibration`) overrides the config's axis_scale and deadzone.

Gripper, `TeleopConfig.gripper_mode`:
- "buttons" (default): the close button (LEFT, or BTN_1 on devices without LEFT) latches +1 (close), the open
  button (RIGHT / BTN_2) latches -1 (open);
- "toggle": each press of the close button flips between close and open.
Until a button is pressed the gripper command is 0, which the arm's hysteresis reads as "leave it as it is",
so taking over mid-grasp never drops the object; `sync_gripper()` sets the latch to the arm's current command.

`intervening` is True while any axis is beyond the deadzone or any button is held.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lastr1.configs.robot import TeleopConfig
from lastr1.errors import ConfigError, MissingDependency, require
from lastr1.robot.errors import ConnectionLost, DeviceNotFound
from lastr1.robot.teleop import Teleop, TeleopCommand

log = logging.getLogger(__name__)

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
_POLL_S = 0.002  # the device reports at up to ~125 Hz; a 2-ms poll adds < 2 ms latency
UDEV_HINT = (
    "plug the SpaceMouse in; if it is plugged in, let your user read it: a udev rule such as "
    '`KERNEL=="hidraw*", ATTRS{idVendor}=="256f", MODE="0666"` (and "046d" for older models) in '
    "/etc/udev/rules.d/99-spacemouse.rules, then `sudo udevadm control --reload && sudo udevadm trigger`; "
    "also check that libhidapi-hidraw0 is installed"
)


@dataclass
class SpaceMouseCalibration:
    """The file `lastr1 calibrate spacemouse` writes (YAML), and what SpaceMouseTeleop reads."""

    version: int = 1
    # Action axis i (x y z roll pitch yaw, robot base frame) reads device axis axis_map[i] (HID_Z_UP order).
    axis_map: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    # Sign and gain per action axis, applied after the deadzone.
    axis_scale: list[float] = field(default_factory=lambda: [1.0] * 6)
    deadzone: float = 0.05
    # The device it was made with (a check, not a selector: hidraw paths change across replugs).
    device_name: str = ""
    device_path: str = ""
    device_serial: str = ""
    created: str = ""  # ISO 8601, UTC

    def validate(self, where: str = "") -> SpaceMouseCalibration:
        at = f"{where}: " if where else ""
        if sorted(self.axis_map) != list(range(6)):
            raise ConfigError(f"{at}axis_map must be a permutation of 0..5, got {self.axis_map}")
        if len(self.axis_scale) != 6 or not all(np.isfinite(self.axis_scale)):
            raise ConfigError(f"{at}axis_scale must be 6 finite numbers, got {self.axis_scale}")
        if not 0.0 <= self.deadzone < 1.0:
            raise ConfigError(f"{at}deadzone must be in [0, 1), got {self.deadzone}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> SpaceMouseCalibration:
        from lastr1 import configs

        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"SpaceMouse calibration file {str(path)!r} does not exist",
                hint="run `lastr1 calibrate spacemouse`, or clear robot.teleop[].calibration_file",
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        return configs.build(cls, data, where=str(path)).validate(str(path))

    def save(self, path: str | Path) -> None:
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.validate()
        text = yaml.safe_dump(asdict(self), sort_keys=False)
        Path(path).write_text("# SpaceMouse calibration (lastr1 calibrate spacemouse)\n" + text)


def _pyspacemouse():
    return require("pyspacemouse", "robot", "the SpaceMouse")


def find_spacemice() -> dict[str, str]:
    """Connected supported SpaceMice: {hid path: model name}, sorted by path."""
    psm = _pyspacemouse()
    try:
        found = psm.get_connected_devices_by_path()
    except (RuntimeError, OSError) as e:
        raise MissingDependency(f"the HID library under pyspacemouse does not work: {e}",
                                hint="sudo apt install libhidapi-hidraw0") from None
    return dict(sorted(found.items()))


class SpaceMouseTeleop(Teleop):
    def __init__(self, cfg: TeleopConfig):
        self.cfg = cfg
        if cfg.calibration_file:
            self.calibration = SpaceMouseCalibration.load(cfg.calibration_file)
        else:
            self.calibration = SpaceMouseCalibration(
                axis_scale=list(cfg.axis_scale), deadzone=cfg.deadzone
            ).validate(f"robot.teleop ({cfg.name})")
        self._map = np.asarray(self.calibration.axis_map)
        self._scale = np.asarray(self.calibration.axis_scale, dtype=np.float64)
        self._deadzone = float(self.calibration.deadzone)
        if cfg.gripper_mode not in ("buttons", "toggle"):
            raise ConfigError(
                f"robot.teleop ({cfg.name}).gripper_mode must be 'buttons' or 'toggle', got {cfg.gripper_mode!r}"
            )
        self.path = ""
        self.model = ""
        self._device: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._gripper = 0.0
        self._command = TeleopCommand(np.zeros(7, np.float32), False, 0.0)
        self._close_btn: int | None = None
        self._open_btn: int | None = None

    # ---- lifecycle ----

    def connect(self) -> None:
        if self._thread is not None:
            return
        psm = _pyspacemouse()
        found = find_spacemice()
        listing = ", ".join(f"{p} ({n})" for p, n in found.items()) or "none"
        if self.cfg.device_path:
            if self.cfg.device_path not in found:
                raise DeviceNotFound(
                    f"SpaceMouse {self.cfg.device_path!r} ({self.cfg.name}) not found; connected: {listing}",
                    hint=UDEV_HINT,
                )
            path = self.cfg.device_path
        else:
            if not found:
                raise DeviceNotFound(f"No connected or supported SpaceMouse found ({self.cfg.name})", hint=UDEV_HINT)
            if self.cfg.device_index >= len(found):
                raise DeviceNotFound(
                    f"{self.cfg.name} wants SpaceMouse #{self.cfg.device_index} but only {len(found)} are "
                    f"connected: {listing}",
                    hint="plug in one SpaceMouse per arm, or fix robot.teleop[].device_index / device_path",
                )
            path = list(found)[self.cfg.device_index]
        try:
            dev = psm.open_by_path(path, nonblocking=True, axis_convention=psm.AxisConvention.HID_Z_UP)
        except (RuntimeError, OSError, ValueError) as e:
            raise DeviceNotFound(f"SpaceMouse at {path} ({found.get(path)}) could not be opened: {e}",
                                 hint=UDEV_HINT) from None
        self._device, self.path, self.model = dev, path, found[path]
        cal = self.calibration
        if cal.device_serial and dev.serial_number and cal.device_serial != dev.serial_number:
            log.warning("%s: calibration was made with SpaceMouse %s, this is %s", self.cfg.name,
                        cal.device_serial, dev.serial_number)
        names = list(dev.info.button_names)
        try:
            self._close_btn = self._button(names, self.cfg.close_button, ("LEFT", "BTN_1"))
            self._open_btn = self._button(names, self.cfg.open_button, ("RIGHT", "BTN_2"))
        except ConfigError:
            self.close()
            raise
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"spacemouse-{self.cfg.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)
        dev, self._device = self._device, None
        if dev is not None:
            dev.close()

    def _button(self, names: list[str], wanted: str, defaults: tuple[str, ...]) -> int | None:
        if wanted:
            if wanted not in names:
                raise ConfigError(f"{self.cfg.name}: the {self.model} has no button {wanted!r}; it has {names}")
            return names.index(wanted)
        for n in defaults:
            if n in names:
                return names.index(n)
        return None  # a model without buttons: the gripper cannot be driven from it

    # ---- reading ----

    def read(self) -> TeleopCommand:
        if self._error is not None:
            raise ConnectionLost(f"SpaceMouse {self.path} ({self.cfg.name}) stopped answering: {self._error}",
                                 hint="replug it; the policy keeps control meanwhile only if the actor allows it")
        if self._thread is None:
            raise ConnectionLost(f"SpaceMouse ({self.cfg.name}) is not connected", hint="call connect() first")
        with self._lock:
            c = self._command
        return TeleopCommand(c.action.copy(), c.intervening, c.timestamp)

    def sync_gripper(self, command: float) -> None:
        """Start the latched gripper command from the arm's current one (+1 closed, -1 open)."""
        with self._lock:
            self._gripper = float(np.clip(command, -1.0, 1.0))
            self._command.action[6] = self._gripper

    def _run(self) -> None:
        dev = self._device
        buttons_before: list[int] = []
        last_t = -1.0  # pyspacemouse stamps its state on every report it parses: a new stamp = a new report
        try:
            while not self._stop.is_set():
                state = dev.read()  # non-blocking: parses at most one waiting report
                if state.t == last_t:
                    time.sleep(_POLL_S)
                    continue
                last_t = state.t
                axes = np.array([getattr(state, a) for a in AXES], dtype=np.float64)
                buttons = list(state.buttons)
                self._update(axes, buttons, buttons_before)  # every report, so no button edge is missed
                buttons_before = buttons
        except Exception as e:  # unplugged: read() raises it in the control loop
            log.error("%s: SpaceMouse reader stopped: %s", self.cfg.name, e)
            self._error = e

    def _update(self, axes: np.ndarray, buttons: list[int], before: list[int]) -> None:
        v = axes[self._map]
        mag = np.abs(v)
        beyond = mag > self._deadzone
        out = np.where(beyond, np.sign(v) * (mag - self._deadzone) / (1.0 - self._deadzone), 0.0)
        out = np.clip(out * self._scale, -1.0, 1.0)

        def pressed(i, bs):
            return i is not None and i < len(bs) and bs[i] == 1

        with self._lock:
            if self.cfg.gripper_mode == "toggle":
                if pressed(self._close_btn, buttons) and not pressed(self._close_btn, before):
                    self._gripper = -1.0 if self._gripper > 0 else 1.0
            else:
                close, open_ = pressed(self._close_btn, buttons), pressed(self._open_btn, buttons)
                if close != open_:
                    self._gripper = 1.0 if close else -1.0
            action = np.append(out, self._gripper).astype(np.float32)
            self._command = TeleopCommand(action, bool(beyond.any() or any(buttons)), time.monotonic())


class DualTeleop(Teleop):
    """Several teleops (one SpaceMouse per arm) as one: the actions concatenated (7 per arm), intervening when
    any of them is."""

    def __init__(self, teleops: list[Teleop]):
        self.teleops = list(teleops)

    def connect(self) -> None:
        try:
            for t in self.teleops:
                t.connect()
        except BaseException:
            self.close()
            raise
        paths = [getattr(t, "path", "") for t in self.teleops]
        if len(set(p for p in paths if p)) < len([p for p in paths if p]):
            self.close()
            raise ConfigError(f"two arms are driven by the same SpaceMouse: {paths}",
                              hint="give each robot.teleop[] its own device_index or device_path")

    def close(self) -> None:
        for t in self.teleops:
            t.close()

    def read(self) -> TeleopCommand:
        cmds = [t.read() for t in self.teleops]
        return TeleopCommand(
            np.concatenate([c.action for c in cmds]).astype(np.float32),
            any(c.intervening for c in cmds),
            max(c.timestamp for c in cmds),
        )

    def sync_gripper(self, commands) -> None:
        for t, c in zip(self.teleops, np.atleast_1d(commands)):
            if hasattr(t, "sync_gripper"):
                t.sync_gripper(float(c))


def spacemouse_teleop(cfgs: list[TeleopConfig]) -> Teleop:
    """The teleop for `robot.teleop`: one SpaceMouse, or one per arm combined into one command."""
    if not cfgs:
        raise ConfigError("robot.teleop lists no SpaceMouse", hint="add one robot.teleop entry per arm")
    if len(cfgs) == 1:
        return SpaceMouseTeleop(cfgs[0])
    return DualTeleop([SpaceMouseTeleop(c) for c in cfgs])
