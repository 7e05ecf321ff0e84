"""Quaternion helpers in numpy, xyzw order (franky's and the dataset's order), for the safety layer and the sim.

Rotation deltas are rotation vectors (axis × angle, rad) in the base frame: `apply_rotvec(q, w)` rotates
about the base axes, and `rotvec_between(q0, q1)` is its inverse, so an expert can turn a target pose back
into a normalised action.
"""

from __future__ import annotations

import numpy as np


def normalize(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b (apply b first, then a)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def conjugate(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def from_rotvec(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    angle = np.linalg.norm(w, axis=-1, keepdims=True)
    # sin(θ/2)/θ → 1/2 as θ → 0; the series keeps small deltas exact instead of dividing by ~0.
    small = angle < 1e-8
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(angle / 2) / np.where(small, 1.0, angle))
    return np.concatenate([w * k, np.cos(angle / 2)], axis=-1)


def to_rotvec(q: np.ndarray) -> np.ndarray:
    q = normalize(q)
    q = np.where(q[..., 3:] < 0, -q, q)  # the short way round: angle in [0, π]
    s = np.linalg.norm(q[..., :3], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., 3:])
    small = s < 1e-8
    k = np.where(small, 2.0 / np.clip(q[..., 3:], 1e-12, None), angle / np.where(small, 1.0, s))
    return q[..., :3] * k


def angle_between(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """The rotation angle (rad, in [0, π]) that takes q0 to q1."""
    d = np.abs(np.sum(normalize(q0) * normalize(q1), axis=-1))
    return 2 * np.arccos(np.clip(d, 0.0, 1.0))


def apply_rotvec(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """q rotated by the base-frame rotation vector w."""
    return normalize(multiply(from_rotvec(w), q))


def rotvec_between(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """The base-frame rotation vector w with apply_rotvec(q0, w) == q1."""
    return to_rotvec(multiply(normalize(q1), conjugate(normalize(q0))))


def from_rpy(rpy: np.ndarray) -> np.ndarray:
    """Fixed-axis roll (x), pitch (y), yaw (z): R = Rz(yaw) Ry(pitch) Rx(roll), as franky/ROS use."""
    r, p, y = np.moveaxis(np.asarray(rpy, dtype=np.float64), -1, 0)
    cr, sr, cp, sp, cy, sy = np.cos(r / 2), np.sin(r / 2), np.cos(p / 2), np.sin(p / 2), np.cos(y / 2), np.sin(y / 2)
    return np.stack(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ],
        axis=-1,
    )
