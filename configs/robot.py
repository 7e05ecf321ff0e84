"""Arms, cameras, SpaceMice, safety limits, and the simulated robot (design §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class ArmConfig:
    name: str = "arm0"
    host: str = "127.0.0.2"
    # RealtimeConfig.Enforce on the real robot (needs a real-time kernel); Ignore off-robot and in sim.
    realtime: Literal["enforce", "ignore"] = "ignore"
    relative_dynamics_factor: float = 0.15
    # Home pose: position (m) and orientation as roll-pitch-yaw (rad), base frame.
    home_xyz: list[float] = field(default_factory=lambda: [0.45, 0.0, 0.35])
    home_rpy: list[float] = field(default_factory=lambda: [3.14159265, 0.0, 0.0])
    # Uniform randomisation of the home pose at reset (± metres, ± radians of yaw).
    home_noise_xyz: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    home_noise_yaw: float = 0.0


@dataclass
class SafetyConfig:
    # Workspace box on the *target* end-effector position, base frame (m).
    box_min: list[float] = field(default_factory=lambda: [0.25, -0.30, 0.02])
    box_max: list[float] = field(default_factory=lambda: [0.75, 0.30, 0.60])
    # A normalised action of ±1 moves this much in one control step.
    max_translation_m: float = 0.02
    max_rotation_rad: float = 0.10
    # External force norm (N) above which motion stops.
    max_force_n: float = 30.0
    # External torque norm (Nm) at the end effector above which motion stops: half of libfranka's default
    # Cartesian torque collision threshold (20 Nm), so we stop before the arm's own reflex fires.
    max_torque_nm: float = 10.0


@dataclass
class CameraConfig:
    name: str = "front"
    serial: str = ""
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = False
    # Frames older than this pause the control loop.
    max_age_ms: float = 200.0
    intrinsics_file: str = ""
    # Frames dropped after start while auto-exposure settles (RealSense colour takes ~0.5 s at 30 fps).
    warmup_frames: int = 15
    # connect() gives up when no frame has arrived this long after the stream started.
    connect_timeout_s: float = 5.0
    # Play a RealSense recording (.bag / .db3) instead of a live camera (serial is then ignored) ...
    playback_file: str = ""
    playback_repeat: bool = True
    # ... or record the live streams to this file while running (for replays and bug reports).
    record_file: str = ""


@dataclass
class TeleopConfig:
    name: str = "spacemouse0"
    # Which HID device (index among connected SpaceMice) drives which arm.
    device_index: int = 0
    # ... or its hidraw path (e.g. /dev/hidraw3), which wins over device_index when set.
    device_path: str = ""
    # "buttons": close button closes, open button opens; "toggle": the close button flips the gripper.
    gripper_mode: Literal["buttons", "toggle"] = "buttons"
    # pyspacemouse button names; "" = LEFT / RIGHT, or BTN_1 / BTN_2 on models without LEFT / RIGHT.
    close_button: str = ""
    open_button: str = ""
    deadzone: float = 0.05
    # Per-axis sign and scale for x y z roll pitch yaw, from `lastr1 calibrate spacemouse`.
    axis_scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    calibration_file: str = ""


@dataclass
class SimConfig:
    # Loopback addresses of the simulated FCI hosts, one per arm.
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.2"])
    render_width: int = 128
    render_height: int = 128
    # Probability per step that the scripted operator takes over when the policy drifts.
    intervention_rate: float = 0.0
    seed: int = 0
    # Fault injection (probability per step), so error paths run in sim.
    fault_reflex_p: float = 0.0
    fault_camera_drop_p: float = 0.0
    fault_stall_p: float = 0.0


@dataclass
class KeysConfig:
    # Operator keys in the terminal: single characters (either case), or "space", "esc", "enter", "tab".
    success: list[str] = field(default_factory=lambda: ["s"])
    failure: list[str] = field(default_factory=lambda: ["f"])
    reset: list[str] = field(default_factory=lambda: ["r"])
    pause: list[str] = field(default_factory=lambda: ["space"])  # toggles pause / resume
    estop: list[str] = field(default_factory=lambda: ["e", "esc"])
    # The terminal to read: "" = the controlling terminal (/dev/tty), else stdin if it is a terminal.
    tty: str = ""


@dataclass
class RobotConfig:
    kind: Literal["sim", "real"] = "sim"
    arms: list[ArmConfig] = field(default_factory=lambda: [ArmConfig()])
    cameras: list[CameraConfig] = field(
        default_factory=lambda: [CameraConfig(name="front"), CameraConfig(name="wrist")]
    )
    teleop: list[TeleopConfig] = field(default_factory=list)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    # Images handed to the policy are resized to this square size.
    image_size: int = 128
    # Gripper: close when the command rises above close_at, open when it falls below open_at (hysteresis).
    gripper_close_at: float = 0.5
    gripper_open_at: float = -0.5
    key_input: Optional[str] = None
    keys: KeysConfig = field(default_factory=KeysConfig)
