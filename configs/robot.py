"""Arms, cameras, SpaceMice, safety limits, and the simulated robot (design §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    # Franka Hand. A close command grasps (anything between 0 and the open width counts as held, as the hand
    # cannot know the object's size) with this force; 20 N holds a 60 g peg with margin and is under the
    # hand's 70 N continuous limit. Speed 0.05 m/s is what franky-sim's hand can do (its velocity limit).
    gripper_force_n: float = 20.0
    gripper_speed: float = 0.05
    gripper_open_width: float = 0.08
    # A blocking reset (home move, gripper) that takes longer than this means the arm is stuck.
    reset_timeout_s: float = 15.0
    # A new target pre-empts the running motion at most this often (a faster caller's latest target waits for
    # its turn): franky pre-empting a motion at speed carries the arm on far past the new target (49 mm from
    # 0.2 m/s in sim, issue 14), while targets ≥ 50 ms apart stayed within 2-3 mm of it.
    retarget_period_s: float = 0.05
    # A home move that franky's planner refuses (Ruckig -110/-111: a starved control PC, a jittery link, right
    # after a teleport) or a reflex aborts is recovered and started again this many times, each logged, before
    # ArmFault: franky's users recover and retry, and a reset has no contact to respect (the safety filter still
    # drives it slowly). Streamed motions are not retried: their reflexes are the env's to report.
    motion_retries: int = 3
    # close() waits this long for the running motion to end after stop(). One that does not (its control
    # thread waits for a response the peer never sends: a frozen or starved sim server) is left running with
    # its connection, logged: franky's destructor would wait for it forever with the GIL held, freezing
    # the whole process (a CI run hung that way).
    close_timeout_s: float = 5.0


@dataclass
class SafetyConfig:
    # Workspace box on the *target* end-effector position, base frame (m). The measured TCP may pass a face
    # by ~1 mm out of contact and by the arm's compliance in contact: benchmarks/safety.py measures it.
    box_min: list[float] = field(default_factory=lambda: [0.25, -0.30, 0.02])
    box_max: list[float] = field(default_factory=lambda: [0.75, 0.30, 0.60])
    # A normalised action of ±1 moves this much in one control step.
    max_translation_m: float = 0.02
    max_rotation_rad: float = 0.10
    # The same limits per second, counted from the last command whatever the caller's rate: a caller faster
    # than task.control_hz gets proportionally smaller steps (a 100-Hz push of full steps left the box by
    # 17-65 mm, issue 14). 25 % above max_translation_m × 10 Hz, so a 10-Hz loop with jitter (steps ≥ 80 ms
    # apart) still gets its full step.
    max_speed_m_s: float = 0.25
    max_angular_speed_rad_s: float = 1.25
    # Gripper command (normalised, ±1) change per second: a 10-Hz step can still swing it fully, a 1-kHz
    # caller needs 80 ms to flip the hand instead of chattering it.
    max_gripper_rate: float = 25.0
    # Along each axis the target leads the arm by at most this fraction of the arm's gap to the face ahead:
    # franky carries an arm pre-empted at speed on past its target (up to ~1.6 × the lead in sim), and the
    # lead sets the speed, so the arm slows down as it nears a face whatever the caller's rate. At 10 Hz a
    # full step still reaches 4 cm from a face; the last centimetres take a few more steps.
    approach_lead: float = 0.5
    # An arm further than this outside the box and getting further out between two commands is not following
    # them (franky-sim's dual arm at a face under 200-Hz re-targeting ran away at franky's top speed, 0.58 m
    # out, while every command led back): the step is held, which stops the arm, and it then moves back.
    runaway_m: float = 0.002
    # External force norm (N) (the wrench the environment puts on the hand, base frame, as O_F_ext_hat_K)
    # above which only motion along that force — away from the contact — is allowed.
    max_force_n: float = 30.0
    # External torque norm (Nm) at the end effector, likewise: half of libfranka's default Cartesian torque
    # collision threshold (20 Nm), so we back off before the arm's own reflex fires.
    max_torque_nm: float = 10.0
    # Above the limit for this long (a contact the motion away did not relieve), the arm retreats retreat_m /
    # retreat_rad along the wrench; so no limit-level force lasts longer than this plus one control period
    # and the retreat's own time (≤ 159 ms in all in sim at 10 Hz, once 359 ms on a loaded machine).
    contact_hold_s: float = 0.1
    # Above these the arm retreats at once and then pauses (resume(), or a reset, to go on): a hit this hard
    # is not a grasp or an insertion going slightly wrong. 125 N pressed a held peg into the table (issue 14).
    retreat_force_n: float = 60.0
    retreat_torque_nm: float = 15.0
    retreat_m: float = 0.01
    retreat_rad: float = 0.05
    # A retreat that has not arrived in this time ends (and pauses, after a hard hit).
    retreat_timeout_s: float = 0.5
    # Home/reset motions and calibration moves go through the same filter, at these slower speeds, re-targeted
    # this often (the arm takes a new target at most every robot.arms[].retarget_period_s anyway, and each new
    # motion is one more chance for franky's planner to fail on a jittery link).
    slow_speed_m_s: float = 0.1
    slow_angular_speed_rad_s: float = 0.5
    slow_hz: float = 20.0


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
    # How long an injected camera dropout / simulator stall lasts (s): longer than a camera's max_age_ms so
    # the stale-frame path runs.
    fault_camera_drop_s: float = 0.5
    fault_stall_s: float = 0.3
    # franky-sim's default joint gains lag ~0.1 s (kv/kp = 1/10). kp × 2 with kv = kp/50 tracked 1-cm steps at
    # 10 Hz to 0.02 mm at rest (notes/drivers-and-sim.md); kp × 6 at kp/25 went unstable (the damping is
    # explicit: kv·dt/inertia must stay below 2 on the wrist joints).
    kp_scale: float = 2.0
    kv_ratio: float = 50.0
    # Render the robot's collision meshes (3 k faces) instead of its visual meshes (240 k): software EGL took
    # 60-80 ms for two 128-px views with the visual meshes, 3-4 ms with the collision ones.
    render_collision_meshes: bool = True
    # Report an external wrench (O_F_ext_hat_K) estimated from MuJoCo contacts (franky-sim reports zeros),
    # so the safety layer's force limit acts in sim too.
    wrench_from_contacts: bool = True
    # After a teleport reset the controller needs a moment before the next motion (50-300 ms measured).
    settle_s: float = 0.15
    # Simulated cameras render at this rate (all at once, in the host): ~8 ms per pair of 128-px views, so
    # 15 fps keeps frames ≤ 67 ms old (under max_age_ms) for ~15 % of a core.
    camera_fps: float = 15.0
    startup_timeout_s: float = 60.0
    # --- task difficulty (robot/sim/tasks.py) ---
    # sim_insert_hex: the fixture moves ±x, ±y (m) around its nominal place per seed, and turns ±yaw (rad).
    slot_range_m: list[float] = field(default_factory=lambda: [0.05, 0.08])
    slot_yaw_range_rad: float = 0.0
    # Play between the peg's flats and the hole's (m per side); 4 mm is modest precision, learnable at 10 Hz.
    slot_clearance_m: float = 0.004
    # The peg counts as inserted when its bottom is this far below the fixture top (the hole is 4 cm deep).
    insert_depth_m: float = 0.015
    # "hand": episodes start with the peg grasped (short: ~30-40 steps); "table": pick it up first.
    peg_start: Literal["hand", "table"] = "hand"
    # sim_lift_bar: solved when the bar is this high and tilted less than max_tilt_rad.
    lift_height_m: float = 0.08
    max_tilt_rad: float = 0.17
    # --- scripted operator (robot/sim/expert.py) ---
    # The operator takes over when the policy's translation differs from the expert's by more than this
    # (normalised units, 0..2√3) or its gripper command disagrees; each takeover lasts intervention_steps.
    intervention_drift: float = 0.8
    intervention_steps: int = 10
    # Fault injection (probability per step), so error paths run in sim.
    fault_reflex_p: float = 0.0
    fault_camera_drop_p: float = 0.0
    fault_stall_p: float = 0.0


@dataclass
class LockstepConfig:
    """The lockstep simulated robot (robot/sim/lockstep.py): a Cartesian impedance on the TCP in MuJoCo."""

    physics_dt: float = 0.001  # franky-sim's step
    # Stiff enough to follow franky's accelerations within ~1-2 mm (franky-sim's joint servo: ~0.1 mm), soft
    # enough for explicit 1-ms steps (the wrist's stiffness × dt² stays well below its inertia).
    stiffness_n_per_m: float = 20000.0
    stiffness_nm_per_rad: float = 1000.0
    damping_ratio: float = 1.0
    # The effective mass and inertia at the TCP that the damping is matched to (critical at damping_ratio 1).
    mass_kg: float = 3.0
    inertia: float = 0.02
    # Null-space posture: the home joints, held loosely (Nm/rad, Nm·s/rad).
    nullspace_stiffness: float = 10.0
    joint_damping: float = 2.0


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
    # "sim": franky-sim in real time behind the real driver; "lockstep": the same scenes stepped in process,
    # no wall clock (robot/sim/lockstep.py); "real": the hardware.
    kind: Literal["sim", "lockstep", "real"] = "sim"
    arms: list[ArmConfig] = field(default_factory=lambda: [ArmConfig()])
    cameras: list[CameraConfig] = field(
        default_factory=lambda: [CameraConfig(name="front"), CameraConfig(name="wrist")]
    )
    teleop: list[TeleopConfig] = field(default_factory=list)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    lockstep: LockstepConfig = field(default_factory=LockstepConfig)
    # Images handed to the policy are resized to this square size.
    image_size: int = 128
    # Recover reflex/collision errors right away (StepInfo.faults/recovered tell the actor); off: the actor
    # must call env.recover() itself.
    auto_recover: bool = True
    # Gripper: close when the command rises above close_at, open when it falls below open_at (hysteresis).
    gripper_close_at: float = 0.5
    gripper_open_at: float = -0.5
    keys: KeysConfig = field(default_factory=KeysConfig)
