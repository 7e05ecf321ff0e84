"""The safety layer: every action (policy, SpaceMouse, scripted operator) passes here before it reaches an arm.

A normalised action is 7 numbers per arm in [-1, 1]. `Safety.filter` turns it into absolute targets:

- xyz: `a[0:3] × max_translation_m`, in the arm's BASE frame, then projected into the workspace box;
- rotation: `a[3:6] × max_rotation_rad` read as a base-frame rotation vector (roll, pitch, yaw about the base
  x, y, z axes) applied to the current orientation;
- gripper: `a[6]` (+1 close, -1 open; the arm applies hysteresis).

Guarantees, whatever the action (huge, NaN, inf) and whatever the reported state:

- a target is never more than `max_translation_m` (Euclidean) from the current position, nor more than
  `max_rotation_rad` (angle) from the current orientation;
- when the arm is inside the box, the target is inside the box;
- when the arm is outside the box (pushed there by hand, a teleport, drift), the target is the step-limited move
  towards the box point the action asks for; its distance to the box shrinks every step, from d to at most
  d² / (d + max_translation_m), and it lands inside once that point is within one step;
- NaN/inf in the action or in the state, an external force or torque over the limit, an error reported by the
  arm, pause and e-stop all give `held=True`: the caller must call `Arm.stop()` and not move. The e-stop is
  latched until `reset_estop()`; `resume()` does not clear it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lastr1.configs.robot import SafetyConfig
from lastr1.robot import rotations
from lastr1.robot.arm import ArmState
from lastr1.robot.errors import RobotError

ACTION_DIM = 7  # per arm: xyz, rotation vector, gripper


@dataclass
class SafeCommand:
    positions: np.ndarray  # (n, 3) absolute targets, base frame, m (the hold pose when held)
    quaternions: np.ndarray  # (n, 4) xyzw
    grippers: np.ndarray  # (n,) in [-1, 1]; 0 = leave the gripper as it is (inside the hysteresis band)
    held: bool  # True: stop the arm, do not move
    reasons: list[str] = field(default_factory=list)  # why it held, or what was clipped


class Safety:
    def __init__(self, cfg: SafetyConfig, n_arms: int = 1):
        self.cfg = cfg
        self.n_arms = n_arms
        self.box_min = np.asarray(cfg.box_min, dtype=np.float64)
        self.box_max = np.asarray(cfg.box_max, dtype=np.float64)
        if self.box_min.shape != (3,) or self.box_max.shape != (3,) or np.any(self.box_min >= self.box_max):
            raise RobotError(
                f"workspace box is invalid: box_min={cfg.box_min} box_max={cfg.box_max}",
                hint="robot.safety.box_min must be below box_max on every axis (x, y, z in metres)",
            )
        if cfg.max_translation_m <= 0 or cfg.max_rotation_rad <= 0:
            raise RobotError(
                "robot.safety.max_translation_m and max_rotation_rad must be positive",
                hint="they scale a normalised action of ±1 to metres / radians per control step",
            )
        self._paused = False
        self._estopped = False
        # What a hold falls back to when the reported state itself is unusable (NaN pose).
        centre = (self.box_min + self.box_max) / 2
        self._last_positions = np.tile(centre, (n_arms, 1))
        self._last_quaternions = np.tile([0.0, 0.0, 0.0, 1.0], (n_arms, 1))
        self._last_grippers = np.zeros(n_arms)  # 0: no gripper change until something commands one

    # ---- operator controls (safe to call from another thread: each is one attribute write) ----

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def estop(self) -> None:
        self._estopped = True

    def reset_estop(self) -> None:
        self._estopped = False

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def estopped(self) -> bool:
        return self._estopped

    @property
    def stopped(self) -> bool:
        """Paused or e-stopped: the arm must not move whatever the action."""
        return self._paused or self._estopped

    # ---- the filter ----

    def filter(self, states: list[ArmState], action: np.ndarray) -> SafeCommand:
        if len(states) != self.n_arms:
            raise RobotError(f"safety was built for {self.n_arms} arm(s) but got {len(states)} state(s)")
        flat = np.asarray(action, dtype=np.float64).reshape(-1)
        if flat.size != ACTION_DIM * self.n_arms:
            raise RobotError(
                f"action has {flat.size} numbers, expected {ACTION_DIM * self.n_arms} "
                f"({ACTION_DIM} per arm × {self.n_arms} arm(s))",
                hint="per arm: x y z, roll pitch yaw, gripper — all normalised to [-1, 1]",
            )
        a = flat.reshape(self.n_arms, ACTION_DIM)

        pos, quat, hold = self._read_states(states)
        if self._estopped:
            hold.append("e-stop (latched: reset_estop() to move again)")
        if self._paused:
            hold.append("paused")
        bad = np.flatnonzero(~np.isfinite(a.reshape(-1)))
        if bad.size:
            hold.append(f"action is not finite at index {bad.tolist()}: holding")
        if hold:
            return SafeCommand(pos, quat, self._last_grippers.copy(), True, hold)

        reasons: list[str] = []
        if np.any(np.abs(a) > 1.0):
            reasons.append("action clipped to [-1, 1]")
        a = np.clip(a, -1.0, 1.0)
        target_p = np.empty_like(pos)
        target_q = np.empty_like(quat)
        for i in range(self.n_arms):
            target_p[i] = self._translate(i, pos[i], a[i, 0:3], reasons)
            w = _limit_norm(a[i, 3:6] * self.cfg.max_rotation_rad, self.cfg.max_rotation_rad)
            target_q[i] = rotations.apply_rotvec(quat[i], w)
        grippers = a[:, 6].copy()
        self._last_positions, self._last_quaternions, self._last_grippers = target_p, target_q, grippers
        return SafeCommand(target_p.copy(), target_q.copy(), grippers.copy(), False, reasons)

    def _read_states(self, states: list[ArmState]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Current poses (the hold pose) and the reasons the state alone forces a hold."""
        pos = self._last_positions.copy()
        quat = self._last_quaternions.copy()
        hold: list[str] = []
        for i, s in enumerate(states):
            p = np.asarray(s.position, dtype=np.float64).reshape(-1)
            q = np.asarray(s.quaternion, dtype=np.float64).reshape(-1)
            wrench = np.asarray(s.wrench, dtype=np.float64).reshape(-1)
            qn = np.linalg.norm(q) if np.all(np.isfinite(q)) else np.nan
            if p.shape != (3,) or q.shape != (4,) or not np.all(np.isfinite(p)) or not (qn > 1e-6):
                hold.append(f"arm{i}: reported pose is not finite/valid ({p.tolist()}, {q.tolist()}): holding")
                continue
            pos[i], quat[i] = p, q / qn
            if wrench.shape != (6,) or not np.all(np.isfinite(wrench)):
                hold.append(f"arm{i}: external wrench reading is not finite: holding")
                continue
            force, torque = np.linalg.norm(wrench[:3]), np.linalg.norm(wrench[3:])
            if force > self.cfg.max_force_n:
                hold.append(f"arm{i}: external force {force:.1f} N > {self.cfg.max_force_n} N: stopped")
            if torque > self.cfg.max_torque_nm:
                hold.append(f"arm{i}: external torque {torque:.1f} Nm > {self.cfg.max_torque_nm} Nm: stopped")
            if s.errors:
                hold.append(f"arm{i}: arm reports {', '.join(s.errors)}: recover before moving")
        return pos, quat, hold

    def _translate(self, i: int, p: np.ndarray, a_xyz: np.ndarray, reasons: list[str]) -> np.ndarray:
        want = p + a_xyz * self.cfg.max_translation_m
        in_box = np.clip(want, self.box_min, self.box_max)
        step = in_box - p
        n = np.linalg.norm(step)
        outside = self.distance_to_box(p)
        if outside > 0:
            reasons.append(f"arm{i}: {outside * 1000:.1f} mm outside the workspace box: moving back")
        elif np.any(in_box != want):
            reasons.append(f"arm{i}: target clipped to the workspace box")
        if n <= self.cfg.max_translation_m:
            return in_box  # exactly the projected point, so "inside" holds without rounding
        # Only reachable from outside the box (the projection is non-expansive inside it).
        return p + step * (self.cfg.max_translation_m / n)

    def distance_to_box(self, p: np.ndarray) -> float:
        p = np.asarray(p, dtype=np.float64)
        return float(np.linalg.norm(p - np.clip(p, self.box_min, self.box_max)))

    # ---- the inverse, for experts and recorders that think in target poses ----

    def to_action(
        self,
        states: list[ArmState],
        positions: np.ndarray,
        quaternions: np.ndarray,
        grippers: np.ndarray,
    ) -> np.ndarray:
        """The normalised action (n·7,) that `filter` turns into these targets when they are within one step."""
        positions = np.asarray(positions, dtype=np.float64).reshape(self.n_arms, 3)
        quaternions = np.asarray(quaternions, dtype=np.float64).reshape(self.n_arms, 4)
        grippers = np.asarray(grippers, dtype=np.float64).reshape(self.n_arms)
        out = np.zeros((self.n_arms, ACTION_DIM))
        for i, s in enumerate(states):
            dp = (positions[i] - np.asarray(s.position)) / self.cfg.max_translation_m
            dw = rotations.rotvec_between(s.quaternion, quaternions[i]) / self.cfg.max_rotation_rad
            # A target beyond one step becomes a full step in its direction.
            out[i, 0:3] = dp / max(1.0, float(np.max(np.abs(dp))))
            out[i, 3:6] = dw / max(1.0, float(np.max(np.abs(dw))))
            out[i, 6] = grippers[i]
        return np.clip(out, -1.0, 1.0).reshape(-1).astype(np.float32)


def _limit_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = np.linalg.norm(v)
    return v * (limit / n) if n > limit else v
