"""Hand-eye calibration from arm poses and ChArUco views.

Two mounts, one equation. With G_i = T_base_hand (from `Arm.state()`) and C_i = T_cam_board (from the image):

- eye-in-hand (wrist camera): X = T_hand_cam, and the board is fixed in the world, so G_i · X · C_i is the same
  T_base_board for every view;
- eye-to-hand (front camera): X = T_base_cam, and the board is held by the hand, so G_i⁻¹ · X · C_i is the
  same T_hand_board for every view.

Both are H_i · X · C_i = const with H_i = G_i or G_i⁻¹ — OpenCV's own trick for eye-to-hand — i.e. AX = XB on
pairs of views. We solve with `cv2.calibrateHandEye` (every method, keeping the one with the smallest residual)
when the OpenCV build exposes it; the opencv-contrib 5.0.0.93 wheel does not (opencv/opencv#29565, fixed by
#29584), and then the same Park–Martin closed form (CALIB_HAND_EYE_PARK) runs here in numpy.

The residual is how much the "constant" disagrees across views once mapped through X (RMS mm / deg); a result
is refused — with the reason — when it is over the config's limits, when the board was missing from too many
images, or when the hand barely rotated (translations of X are then unobservable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from lastr1.calibration.charuco import board_pose, detect
from lastr1.calibration.common import (
    CalibrationError,
    angle_deg,
    cv2,
    from_rt,
    inv,
    load_yaml,
    matrix_to_quat,
    mean_pose,
    pose,
    rotvec,
    save_yaml,
    timestamp,
)

if TYPE_CHECKING:
    from lastr1.robot.safety import Safety

Mount = Literal["hand", "world"]


@dataclass
class HandEyeResult:
    mount: Mount
    T: np.ndarray  # X: T_hand_cam (mount "hand") or T_base_cam (mount "world")
    residual_mm: float  # RMS over views of the disagreement of the constant transform, translation
    residual_deg: float  # ... and rotation
    max_residual_mm: float
    max_residual_deg: float
    views_used: int
    images_without_board: list[int] = field(default_factory=list)
    method: str = ""
    rotation_span_deg: float = 0.0

    @property
    def frame(self) -> str:
        return "T_hand_cam" if self.mount == "hand" else "T_base_cam"


def _skew_spread(axes: np.ndarray) -> float:
    """Ratio of the second to the first singular value of the stacked rotation axes (0 = all parallel)."""
    s = np.linalg.svd(axes, compute_uv=False)
    return float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else 0.0


def check_motion(hand: list[np.ndarray], min_rotation_deg: float) -> float:
    """Refuse hand poses whose rotations cannot determine X; returns the largest rotation between two views."""
    Rs = [T[:3, :3] for T in hand]
    rel = [rotvec(Rs[i].T @ Rs[j]) for i in range(len(Rs)) for j in range(i + 1, len(Rs))]
    angles = np.degrees([np.linalg.norm(r) for r in rel])
    span = float(angles.max(initial=0.0))
    if span < min_rotation_deg:
        raise CalibrationError(
            f"too little rotation: the hand turned at most {span:.1f}° between views, at least "
            f"{min_rotation_deg:.0f}° is needed (with pure translations the camera offset is unobservable)",
            hint="tilt the hand by 20–40° about two different axes between views",
        )
    big = np.array([r / np.linalg.norm(r) for r, a in zip(rel, angles) if a > min_rotation_deg / 3])
    if len(big) < 2 or _skew_spread(big) < 0.15:
        raise CalibrationError(
            "too little rotation: every rotation between views is about the same axis, which leaves the "
            "camera's offset along that axis undetermined",
            hint="tilt the hand about a second, different axis in some of the views",
        )
    return span


def park_martin(H: list[np.ndarray], C: list[np.ndarray]) -> np.ndarray:
    """X with H_i X C_i = const (Park & Martin 1994): AX = XB on all pairs, A = H_j⁻¹H_i, B = C_j C_i⁻¹.
    Rotation: log(R_A) = R_X log(R_B), solved as orthogonal Procrustes; translation by linear least squares."""
    A, B = [], []
    for i in range(len(H)):
        for j in range(i + 1, len(H)):
            A.append(inv(H[j]) @ H[i])
            B.append(C[j] @ inv(C[i]))
    alpha = np.array([rotvec(a[:3, :3]) for a in A])
    beta = np.array([rotvec(b[:3, :3]) for b in B])
    M = beta.T @ alpha  # Σ β αᵀ
    U, _, Vt = np.linalg.svd(M)
    R = Vt.T @ np.diag([1.0, 1.0, np.linalg.det(Vt.T @ U.T)]) @ U.T
    lhs = np.concatenate([a[:3, :3] - np.eye(3) for a in A])
    rhs = np.concatenate([R @ b[:3, 3] - a[:3, 3] for a, b in zip(A, B)])
    t = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return from_rt(R, t)


def residual(H, X, C) -> tuple[float, float, float, float]:
    """RMS and max disagreement (mm, deg) of H_i X C_i from their mean."""
    Z = np.array([h @ X @ c for h, c in zip(H, C)])
    Zm = mean_pose(Z)
    dt = np.linalg.norm(Z[:, :3, 3] - Zm[:3, 3], axis=1) * 1000
    dr = np.array([angle_deg(Zm[:3, :3].T @ z[:3, :3]) for z in Z])
    return float(np.sqrt(np.mean(dt**2))), float(np.sqrt(np.mean(dr**2))), float(dt.max()), float(dr.max())


def _opencv_solutions(H, C):
    """Every OpenCV hand-eye method, when this OpenCV build exposes `calibrateHandEye`."""
    cv = cv2()
    if not hasattr(cv, "calibrateHandEye"):
        return {}
    out = {}
    for name in ("TSAI", "PARK", "HORAUD", "ANDREFF", "DANIILIDIS"):
        try:
            R, t = cv.calibrateHandEye([h[:3, :3] for h in H], [h[:3, 3] for h in H],
                                       [c[:3, :3] for c in C], [c[:3, 3] for c in C],
                                       method=getattr(cv, f"CALIB_HAND_EYE_{name}"))
        except cv.error:
            continue
        if np.all(np.isfinite(R)) and np.all(np.isfinite(t)):
            out[f"opencv-{name.lower()}"] = from_rt(R, t)
    return out


def solve_hand_eye(
    hand_poses: list[np.ndarray],
    images: list[np.ndarray],
    K: np.ndarray,
    dist: np.ndarray | None,
    board,
    mount: Mount,
    min_views: int = 8,
    min_rotation_deg: float = 15.0,
    max_residual_mm: float = 5.0,
    max_residual_deg: float = 1.0,
) -> HandEyeResult:
    """X from base←hand poses (4 × 4, one per image) and the images of the board; refuses bad inputs/results."""
    if len(hand_poses) != len(images):
        raise CalibrationError(f"{len(hand_poses)} arm poses but {len(images)} images")
    G, C, missing = [], [], []
    for i, (g, img) in enumerate(zip(hand_poses, images)):
        d = detect(img, board)
        if d is None:
            missing.append(i)
            continue
        G.append(np.asarray(g, np.float64))
        C.append(board_pose(d, K, dist)[0])
    if len(C) < min_views:
        why = (f"board not found in {len(missing)} of {len(images)} images "
               f"({', '.join(f'#{i}' for i in missing[:10])}); ") if missing else ""
        raise CalibrationError(
            f"too few views: {why}{len(C)} usable, at least {min_views} needed",
            hint="keep the whole board in the camera's view at every pose, well lit and in focus",
        )
    span = check_motion(G, min_rotation_deg)
    H = G if mount == "hand" else [inv(g) for g in G]
    candidates = {"park-martin": park_martin(H, C), **_opencv_solutions(H, C)}
    scored = {k: residual(H, X, C) for k, X in candidates.items()}
    best = min(scored, key=lambda k: scored[k][0] / max_residual_mm + scored[k][1] / max_residual_deg)
    rms_mm, rms_deg, max_mm, max_deg = scored[best]
    result = HandEyeResult(mount, candidates[best], rms_mm, rms_deg, max_mm, max_deg, len(C), missing, best, span)
    if rms_mm > max_residual_mm or rms_deg > max_residual_deg:
        raise CalibrationError(
            f"hand-eye residual {rms_mm:.1f} mm / {rms_deg:.2f}° RMS is over the limit ({max_residual_mm} mm / "
            f"{max_residual_deg}°); not saved",
            hint="the board or camera moved during capture, the arm poses lag the images (wait for the arm to "
            "settle), the intrinsics are wrong, or calibration.board does not match the printed board",
        )
    return result


# --- collecting views -------------------------------------------------------------------------------------------


def wait_settled(arm, target_xyz: np.ndarray, index: int = 0, tol_m: float = 0.002, timeout_s: float = 20.0,
                 still_s: float = 0.3, sleep=time.sleep) -> None:
    """Wait until the hand is at the target and has stopped moving, so the image and the pose agree."""
    t0, last, still_since = time.monotonic(), None, None
    while True:
        p = arm.state()[index].position
        moving = last is not None and np.linalg.norm(p - last) > 2e-4
        at = np.linalg.norm(p - target_xyz) < tol_m
        now = time.monotonic()
        still_since = (still_since or now) if at and not moving else None
        if still_since is not None and now - still_since >= still_s:
            return
        if now - t0 > timeout_s:
            raise CalibrationError(
                f"the arm did not reach {np.round(target_xyz, 3).tolist()} within {timeout_s:.0f} s "
                f"(it is at {np.round(p, 3).tolist()})",
                hint="check the pose is reachable and inside the safety box, and that the arm is not in a reflex",
            )
        last = p
        sleep(0.05)


def collect_views(
    arm,
    camera,
    poses: list[list[float]] | None = None,
    arm_index: int = 0,
    gripper: float = -1.0,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    max_age_ms: float = 200.0,
    settle=wait_settled,
    safety: Safety | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Visit `poses` (x y z qx qy qz qw, base frame) with `arm.move_to`, or — without poses — let the operator
    guide the arm by hand and press Enter at each view; returns (base←hand poses, RGB images). With `safety`
    (as `lastr1 calibrate handeye` does) every move goes through it at its slow speeds: the poses must then lie
    inside the workspace box."""
    from tqdm import tqdm

    def grab():
        st = arm.state()[arm_index]
        frame = camera.read_latest(max_age_ms)
        return pose(st.position, st.quaternion), np.asarray(frame.color)

    hand, images = [], []
    if poses:
        say(f"Moving the arm through {len(poses)} poses; keep clear of the arm. The board must stay in view.")
        if safety is not None:  # the hand first (a filtered command that stays put), then slow filtered moves
            cmd = safety.filter(arm.state(), np.tile([0, 0, 0, 0, 0, 0, gripper], arm.n_arms))
            if not cmd.held:
                arm.move_to(cmd.positions, cmd.quaternions, cmd.grippers)
        for p in tqdm(poses, desc="hand-eye: views", unit="pose"):
            p = np.asarray(p, np.float64)
            if p.shape != (7,):
                raise CalibrationError(f"a hand-eye pose must be 7 numbers (x y z qx qy qz qw), got {p.tolist()}")
            n = arm.n_arms
            xyz = np.stack([s.position for s in arm.state()])
            quat = np.stack([s.quaternion for s in arm.state()])
            xyz[arm_index], quat[arm_index] = p[:3], p[3:]
            if safety is not None:
                safety.drive(arm, xyz, quat, timeout_s=30.0)
            else:
                arm.move_to(xyz, quat, np.full(n, gripper))
            settle(arm, p[:3], arm_index)
            g, img = grab()
            hand.append(g)
            images.append(img)
        return hand, images
    say("Guide the arm by hand (press the pilot's guiding button). At each pose, let go so the arm is still, "
        "then press Enter to take a view; type q and Enter to finish. Vary the tilt by 20–40° about two axes.")
    while True:
        answer = ask(f"view {len(hand) + 1}: Enter = capture, q = done > ").strip().lower()
        if answer == "q":
            return hand, images
        g, img = grab()
        hand.append(g)
        images.append(img)
        say(f"  captured view {len(hand)} at {np.round(g[:3, 3], 3).tolist()}")


def save_hand_eye(path: str | Path, result: HandEyeResult, camera: str, serial: str = "", arm: str = "") -> Path:
    T = result.T
    data = dict(
        kind="handeye", camera=camera, serial=serial, arm=arm, mount=result.mount, frame=result.frame,
        created=timestamp(), T=T, translation=T[:3, 3], quaternion_xyzw=matrix_to_quat(T[:3, :3]),
        residual_mm=result.residual_mm, residual_deg=result.residual_deg, max_residual_mm=result.max_residual_mm,
        max_residual_deg=result.max_residual_deg, views_used=result.views_used,
        images_without_board=result.images_without_board, rotation_span_deg=result.rotation_span_deg,
        method=result.method,
    )
    what = "eye-in-hand (T_hand_cam)" if result.mount == "hand" else "eye-to-hand (T_base_cam)"
    return save_yaml(path, data, header=f"lastr1 hand-eye calibration of {camera!r}, {what}")


def load_hand_eye(path: str | Path) -> tuple[str, np.ndarray]:
    d = load_yaml(path, "handeye")
    return d["mount"], np.asarray(d["T"], np.float64)
