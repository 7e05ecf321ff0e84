"""What every calibration routine shares: its error, rigid-transform helpers, YAML files with a timestamp."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import yaml

from lastr1.errors import Lastr1Error, require
from lastr1.files import write_atomic


class CalibrationError(Lastr1Error):
    """A calibration that cannot be trusted (too few views, too little motion, a large residual...)."""


def cv2():
    return require("cv2", "calib", "calibration (ChArUco detection, camera calibration)")


def timestamp() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def save_yaml(path: str | Path, data: dict, header: str = "") -> Path:
    """Write atomically (a crash never leaves half a calibration file that a config points to)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + yaml.safe_dump(
        _plain(data), sort_keys=False, default_flow_style=None, width=120
    )
    return write_atomic(path, text)


def load_yaml(path: str | Path, kind: str) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise CalibrationError(f"cannot read {kind} calibration {path}: {e}",
                               hint=f"run `lastr1 calibrate {kind}` first") from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise CalibrationError(f"{path} is not a {kind} calibration file")
    return data


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float):
        return round(x, 9)
    return x


# --- rigid transforms (4 × 4, "T_a_b" maps points in frame b to frame a) --------------------------------------


def quat_to_matrix(q_xyzw) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(R) -> np.ndarray:
    """xyzw, w ≥ 0."""
    R = np.asarray(R, np.float64)
    w = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2
    y = np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2
    z = np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2
    x = np.copysign(x, R[2, 1] - R[1, 2])
    y = np.copysign(y, R[0, 2] - R[2, 0])
    z = np.copysign(z, R[1, 0] - R[0, 1])
    q = np.array([x, y, z, w])
    return q / np.linalg.norm(q)


def pose(position, quat_xyzw) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(quat_xyzw)
    T[:3, 3] = position
    return T


def from_rt(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.ravel(t)
    return T


def inv(T) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def rotvec(R) -> np.ndarray:
    """Axis × angle (rad) of a rotation matrix (the matrix log), stable near 0 and π."""
    R = np.asarray(R, np.float64)
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-4:
        # Near π the skew part vanishes: R ≈ 2aaᵀ − I, so read the axis a from the largest column of (R + I)/2.
        S = (R + np.eye(3)) / 2
        i = int(np.argmax(np.diag(S)))
        return S[:, i] / np.sqrt(S[i, i]) * angle
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return v / (2 * np.sin(angle)) * angle


def angle_deg(R) -> float:
    return float(np.degrees(np.linalg.norm(rotvec(R))))


def project_to_rotation(M) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def mean_pose(Ts) -> np.ndarray:
    """Chordal mean: arithmetic mean of translations, mean rotation projected back onto SO(3)."""
    Ts = np.asarray(Ts)
    return from_rt(project_to_rotation(Ts[:, :3, :3].sum(0)), Ts[:, :3, 3].mean(0))
