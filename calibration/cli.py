"""`lastr1 calibrate intrinsics|handeye|workspace|spacemouse|board --config CFG`.

Each routine prints what to do, shows progress, and writes one YAML (timestamp, device serials) where the config
points (`robot.cameras[].intrinsics_file`, `robot.teleop[].calibration_file`) or, when it points nowhere, under
`calibration.out_dir`, and then says which config key to set.

Hardware is reached through the robot layer's classes, imported only here and only when a live routine runs:
`robot.realsense.RealSenseCamera(camera_cfg)` for images, `robot.franky_arm.FrankyArm(cfg.robot)` for the
arm (`state()`, `move_to()`); the factory intrinsics use pyrealsense2 directly (no streaming) and the SpaceMouse
routine reads pyspacemouse directly (calibration.spacemouse).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import yaml

from lastr1.calibration.common import CalibrationError
from lastr1.configs import add_config_argument, load_config

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

ROUTINES = ("intrinsics", "handeye", "workspace", "spacemouse", "board")
# The robot layer's hardware classes (module, class): the only coupling to robot/ beyond its interfaces.
CAMERA_CLASS = ("lastr1.robot.realsense", "RealSenseCamera")
ARM_FACTORY = ("lastr1.robot.factory", "make_arm")


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="routine", metavar="ROUTINE", required=True)

    p = sub.add_parser("intrinsics", help="camera intrinsics: RealSense factory values, or ChArUco estimate")
    add_config_argument(p)
    p.add_argument("--camera", help="camera name (default: every camera in robot.cameras)")
    p.add_argument("--charuco", action="store_true", help="estimate from live ChArUco views instead of factory")
    p.add_argument("--images", help="estimate from the images in this folder (png/jpg) instead of factory")
    p.add_argument("--views", type=int, default=15, help="live ChArUco views to take")
    p.add_argument("--out", help="output YAML (default: the camera's intrinsics_file or calibration.out_dir)")

    p = sub.add_parser("handeye", help="wrist camera in the hand (eye-in-hand) or front camera in the base frame")
    add_config_argument(p)
    p.add_argument("--camera", required=True, help="camera name in robot.cameras")
    p.add_argument("--mount", choices=("hand", "world"),
                   help="hand: on the wrist (board fixed on the table); world: fixed (board held by the hand). "
                   "Default: hand for cameras named wrist*, else world")
    p.add_argument("--arm", type=int, default=0, help="which arm (index in robot.arms)")
    p.add_argument("--views-dir", help="solve offline from a folder written by a previous run (view_*.png + "
                   "poses.yaml) instead of moving the arm")
    p.add_argument("--out", help="output YAML (default: calibration.out_dir/handeye_<camera>.yaml)")

    p = sub.add_parser("workspace", help="the safety box, from corners the arm is guided to")
    add_config_argument(p)
    p.add_argument("--arm", type=int, default=0)
    p.add_argument("--points", help="corners instead of the arm: 'x,y,z; x,y,z; ...' (m, base frame)")
    p.add_argument("--into", help="also write box_min/box_max into this config YAML (other keys are kept)")
    p.add_argument("--out", help="output YAML (default: calibration.out_dir/workspace.yaml)")

    p = sub.add_parser("spacemouse", help="per-axis sign/scale and deadzone of each SpaceMouse")
    add_config_argument(p)
    p.add_argument("--device", type=int, help="only this device index (default: every robot.teleop entry, or "
                   "every connected SpaceMouse)")
    p.add_argument("--out", help="output YAML (with --device; default: its calibration_file or out_dir)")

    p = sub.add_parser("board", help="write the ChArUco board as a PNG to print at scale")
    add_config_argument(p)
    p.add_argument("--dpi", type=int, default=300)
    p.add_argument("--out", default="charuco_board.png")


def calibrate_main(args: argparse.Namespace) -> int:
    cfg = load_config(args, skip=("transport",))
    return {"intrinsics": _intrinsics, "handeye": _handeye, "workspace": _workspace,
            "spacemouse": _spacemouse, "board": _board}[args.routine](cfg, args)


# --- helpers -----------------------------------------------------------------------------------------------------


def _hardware(spec: tuple[str, str], purpose: str):
    module, name = spec
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CalibrationError(f"{purpose} needs {module}.{name}, which is not available here ({e})",
                               hint="install the robot layer: pip install 'lastr1[robot]'") from None


def _real_only(cfg: Config, what: str) -> None:
    if cfg.robot.kind != "real":
        raise CalibrationError(
            f"`calibrate {what}` measures real hardware, but this config has robot.kind: {cfg.robot.kind}",
            hint="use the lab's real-robot config (simulated cameras and poses are exact already)",
        )


def _camera_cfg(cfg: Config, name: str):
    for c in cfg.robot.cameras:
        if c.name == name:
            return c
    raise CalibrationError(f"no camera named {name!r} in robot.cameras",
                           hint="cameras here: " + ", ".join(c.name for c in cfg.robot.cameras))


def _default_out(cfg: Config, configured: str, name: str) -> tuple[Path, bool]:
    if configured:
        return Path(configured), True
    return Path(cfg.calibration.out_dir) / name, False


def _board(cfg: Config, args: argparse.Namespace) -> int:
    from lastr1.calibration.charuco import board_image, make_board
    from lastr1.calibration.common import cv2

    b = cfg.calibration.board
    px = int(round(b.square_m / 0.0254 * args.dpi))
    img = board_image(make_board(b), px_per_square=px)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2().imwrite(str(out), img)
    print(f"wrote {out}: {b.squares_x} x {b.squares_y} squares of {b.square_m * 1000:.1f} mm at {args.dpi} dpi "
          f"({img.shape[1] / args.dpi * 25.4:.0f} x {img.shape[0] / args.dpi * 25.4:.0f} mm). Print at 100 % "
          "(no 'fit to page'), glue it flat, measure a square and a marker, and put the measured sizes in "
          "calibration.board.square_m / marker_m.")
    return 0


# --- intrinsics ---------------------------------------------------------------------------------------------------


def _read_images(folder: str | Path) -> list[np.ndarray]:
    from lastr1.calibration.common import cv2

    cv = cv2()
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise CalibrationError(f"no .png/.jpg images in {folder}")
    return [cv.cvtColor(cv.imread(str(f)), cv.COLOR_BGR2RGB) for f in files]


def _live_views(camera, n: int, say=print, ask=input, max_age_ms: float = 500.0) -> list[np.ndarray]:
    say(f"Hold the board in front of the camera in {n} different poses: near and far, tilted up to ~45°, in "
        "every part of the image. Keep it still and sharp; press Enter for each view.")
    views: list[np.ndarray] = []
    while len(views) < n:
        ask(f"view {len(views) + 1}/{n}: Enter = capture > ")
        views.append(np.asarray(camera.read_latest(max_age_ms).color))
    return views


def _intrinsics(cfg: Config, args: argparse.Namespace) -> int:
    from lastr1.calibration.charuco import make_board
    from lastr1.calibration.intrinsics import calibrate_from_images, factory_intrinsics, save_intrinsics

    cams = [_camera_cfg(cfg, args.camera)] if args.camera else list(cfg.robot.cameras)
    if (args.out or args.images or args.charuco) and len(cams) > 1:
        raise CalibrationError("--out, --images and --charuco calibrate one camera: name it with --camera")
    for cam in cams:
        out, configured = (Path(args.out), True) if args.out else _default_out(
            cfg, cam.intrinsics_file, f"intrinsics_{cam.name}.yaml")
        if args.images:
            board = make_board(cfg.calibration.board)
            res = calibrate_from_images(_read_images(args.images), board, cfg.calibration.intrinsics_min_views,
                                        cfg.calibration.max_reprojection_px)
        elif args.charuco:
            _real_only(cfg, "intrinsics --charuco")
            board = make_board(cfg.calibration.board)
            with _hardware(CAMERA_CLASS, "live ChArUco capture")(cam) as camera:
                views = _live_views(camera, args.views)
            res = calibrate_from_images(views, board, cfg.calibration.intrinsics_min_views,
                                        cfg.calibration.max_reprojection_px)
        else:
            _real_only(cfg, "intrinsics")
            if not cam.serial:
                raise CalibrationError(f"camera {cam.name!r} has no serial in the config",
                                       hint="list connected RealSense serials with `rs-enumerate-devices -s`")
            print(f"{cam.name}: reading factory intrinsics of RealSense {cam.serial} "
                  f"({cam.width}x{cam.height}@{cam.fps})")
            res = factory_intrinsics(cam.serial, cam.width, cam.height, cam.fps)
        path = save_intrinsics(out, res, cam.name, cam.serial)
        K = np.asarray(res["K"])
        err = f", reprojection error {res['reprojection_error_px']:.3f} px" if "reprojection_error_px" in res else ""
        print(f"{cam.name}: fx={K[0, 0]:.1f} fy={K[1, 1]:.1f} cx={K[0, 2]:.1f} cy={K[1, 2]:.1f}{err} -> {path}")
        if not configured:
            print(f"  set robot.cameras[{cfg.robot.cameras.index(cam)}].intrinsics_file: {path}")
    return 0


# --- hand-eye -----------------------------------------------------------------------------------------------------


def _save_views(folder: Path, hand, images) -> None:
    from lastr1.calibration.common import cv2, matrix_to_quat

    cv = cv2()
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv.imwrite(str(folder / f"view_{i:03d}.png"), cv.cvtColor(img, cv.COLOR_RGB2BGR))
    poses = [[*map(float, g[:3, 3]), *map(float, matrix_to_quat(g[:3, :3]))] for g in hand]
    (folder / "poses.yaml").write_text(yaml.safe_dump({"poses": poses}, default_flow_style=None))


def _load_views(folder: Path):
    from lastr1.calibration.common import pose

    try:
        poses = yaml.safe_load((folder / "poses.yaml").read_text())["poses"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
        raise CalibrationError(f"{folder}/poses.yaml is missing or unreadable ({e})") from None
    images = _read_images(folder)
    return [pose(p[:3], p[3:]) for p in poses], images


def _handeye(cfg: Config, args: argparse.Namespace) -> int:
    from lastr1.calibration.charuco import make_board
    from lastr1.calibration.handeye import collect_views, save_hand_eye, solve_hand_eye
    from lastr1.calibration.intrinsics import load_intrinsics
    from lastr1.robot.safety import Safety

    cam = _camera_cfg(cfg, args.camera)
    mount: Literal["hand", "world"] = args.mount or ("hand" if cam.name.startswith("wrist") else "world")
    if not cam.intrinsics_file:
        raise CalibrationError(f"camera {cam.name!r} has no intrinsics_file",
                               hint=f"run `lastr1 calibrate intrinsics --camera {cam.name}` and set it")
    K, dist, _ = load_intrinsics(cam.intrinsics_file)
    c = cfg.calibration
    out = Path(args.out) if args.out else Path(c.out_dir) / f"handeye_{cam.name}.yaml"
    arm_cfg = cfg.robot.arms[args.arm] if args.arm < len(cfg.robot.arms) else None
    if arm_cfg is None:
        raise CalibrationError(f"--arm {args.arm}: the config has {len(cfg.robot.arms)} arm(s)")
    if args.views_dir:
        hand, images = _load_views(Path(args.views_dir))
    else:
        _real_only(cfg, "handeye")
        print("eye-in-hand: fix the board on the table; the wrist camera must see it at every pose." if mount == "hand"
              else "eye-to-hand: let the hand hold the board (closed gripper) facing the front camera.")
        with _hardware(ARM_FACTORY, "hand-eye calibration")(cfg) as arm, \
                _hardware(CAMERA_CLASS, "hand-eye calibration")(cam) as camera:
            hand, images = collect_views(arm, camera, c.handeye_poses, args.arm,
                                         gripper=1.0 if mount == "world" else -1.0, max_age_ms=cam.max_age_ms,
                                         safety=Safety(cfg.robot.safety, arm.n_arms))
        views = out.with_suffix("").with_name(out.stem + "_views")
        _save_views(views, hand, images)
        print(f"views saved in {views} (rerun offline with --views-dir {views})")
    res = solve_hand_eye(hand, images, K, dist, make_board(c.board), mount, c.handeye_min_views,
                         c.handeye_min_rotation_deg, c.handeye_max_residual_mm, c.handeye_max_residual_deg)
    path = save_hand_eye(out, res, cam.name, cam.serial, arm_cfg.host)
    t = res.T[:3, 3] * 1000
    print(f"{res.frame}: t = [{t[0]:.1f}, {t[1]:.1f}, {t[2]:.1f}] mm; residual {res.residual_mm:.2f} mm / "
          f"{res.residual_deg:.3f}° RMS over {res.views_used} views ({res.method}) -> {path}")
    if res.images_without_board:
        print(f"  (board not found in {len(res.images_without_board)} images, skipped)")
    return 0


# --- workspace ------------------------------------------------------------------------------------------------


def _parse_points(text: str) -> list[np.ndarray]:
    try:
        return [np.array([float(v) for v in p.replace(",", " ").split()]) for p in text.split(";") if p.strip()]
    except ValueError:
        raise CalibrationError(f"cannot read --points {text!r}", hint="write 'x,y,z; x,y,z' in metres") from None


def _workspace(cfg: Config, args: argparse.Namespace) -> int:
    from lastr1.calibration.workspace import box_from_points, describe, record_corners, save_workspace, write_into

    current, host = None, cfg.robot.arms[args.arm].host if args.arm < len(cfg.robot.arms) else ""
    if args.points:
        points = _parse_points(args.points)
    else:
        _real_only(cfg, "workspace")
        with _hardware(ARM_FACTORY, "workspace calibration")(cfg) as arm:
            points = record_corners(arm, args.arm)
            current = arm.state()[args.arm].position
    if any(p.shape != (3,) for p in points):
        raise CalibrationError("every corner needs 3 coordinates (x, y, z)")
    lo, hi = box_from_points(points, cfg.calibration.workspace_margin_m)
    print(describe(lo, hi, current))
    out = Path(args.out) if args.out else Path(cfg.calibration.out_dir) / "workspace.yaml"
    path = save_workspace(out, lo, hi, arm=host, points=points)
    print(f"saved {path}: list it under `base:` in the task config")
    if args.into:
        print(f"wrote robot.safety.box_min/box_max into {write_into(args.into, lo, hi)}")
    return 0


# --- SpaceMouse -------------------------------------------------------------------------------------------------


def _spacemouse(cfg: Config, args: argparse.Namespace) -> int:
    from lastr1.calibration.spacemouse import SpaceMouseReader, calibrate_axes, list_spacemice, save_spacemouse

    teleops = list(cfg.robot.teleop)
    if args.device is not None:
        chosen = [t for t in teleops if t.device_index == args.device]
        jobs = [(chosen[0].name if chosen else f"spacemouse{args.device}", args.device,
                 args.out or (chosen[0].calibration_file if chosen else ""))]
    elif teleops:
        jobs = [(t.name, t.device_index, t.calibration_file) for t in teleops]
    else:
        jobs = [(f"spacemouse{i}", i, "") for i in range(len(list_spacemice()))]
        if not jobs:
            raise CalibrationError("no SpaceMouse is connected",
                                   hint="plug one in; check `ls -l /dev/hidraw*` permissions (udev rule)")
    c = cfg.calibration
    for name, index, configured in jobs:
        out = Path(configured) if configured else Path(c.out_dir) / f"spacemouse_{name}.yaml"
        with SpaceMouseReader(index) as reader:
            print(f"== {name}: {reader.name} at {reader.path} (serial {reader.serial})")
            res = calibrate_axes(reader.read, rest_s=c.spacemouse_rest_s, hold_s=c.spacemouse_hold_s,
                                 timeout_s=c.spacemouse_timeout_s)
            device = dict(index=index, path=reader.path, model=reader.name, serial=reader.serial)
        path = save_spacemouse(out, res, name, device)
        print(f"{name}: axis_scale {res['axis_scale']}, deadzone {res['deadzone']} -> {path}")
        if not configured:
            print(f"  set calibration_file: {path} on the robot.teleop entry named {name!r}")
    return 0
