"""Calibration routines (`lastr1 calibrate ...`): the board, where files go, and when a result is refused."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CharucoConfig:
    """The printed ChArUco board (`lastr1 calibrate board` writes it to scale): 7 × 5 squares of 30 mm plus a
    quiet margin fit an A4 sheet inside printer margins. Measure the printed square and marker sides and put the
    measured numbers here."""

    squares_x: int = 7
    squares_y: int = 5
    square_m: float = 0.030
    marker_m: float = 0.022
    dictionary: str = "DICT_5X5_100"


@dataclass
class CalibrationConfig:
    # Where calibration files go when the config does not name one (relative to the working directory, not to
    # run_dir: calibration belongs to the lab setup, not to one run).
    out_dir: str = "calibration"
    board: CharucoConfig = field(default_factory=CharucoConfig)
    # Fewer than ~10 well-spread views leave focal length and distortion poorly determined (Zhang 2000).
    intrinsics_min_views: int = 10
    # A good ChArUco calibration reprojects to a few tenths of a pixel; 1 px means blur or a bent board.
    max_reprojection_px: float = 1.0
    # AX = XB needs ≥ 2 motions with non-parallel rotation axes; 8 views give enough redundancy to see outliers.
    handeye_min_views: int = 8
    # Rotations smaller than this between views leave the translation of X unobservable (Tsai & Lenz 1989).
    handeye_min_rotation_deg: float = 15.0
    # Refuse a hand-eye result whose board poses, mapped through it, disagree by more than this (RMS).
    handeye_max_residual_mm: float = 5.0
    handeye_max_residual_deg: float = 1.0
    # Arm poses visited by `calibrate handeye` (base frame: x y z qx qy qz qw); empty = guide the arm by hand.
    handeye_poses: list[list[float]] = field(default_factory=list)
    # Extra room (m) added on every side of the box spanned by the recorded workspace corners.
    workspace_margin_m: float = 0.0
    # SpaceMouse routine: hands-off time for the noise floor, hold time per push, time allowed to start a push.
    spacemouse_rest_s: float = 2.0
    spacemouse_hold_s: float = 1.5
    spacemouse_timeout_s: float = 20.0
