"""The safety layer: every action (policy, SpaceMouse, scripted operator) passes here before it reaches an arm.

A normalised action is 7 numbers per arm in [-1, 1]. `Safety.filter` turns it into absolute targets:

- xyz: `a[0:3] × max_translation_m`, in the arm's BASE frame, then projected into the workspace box;
- rotation: `a[3:6] × max_rotation_rad` read as a base-frame rotation vector (roll, pitch, yaw about the base
  x, y, z axes) applied to the current orientation;
- gripper: `a[6]` (+1 close, -1 open; the arm applies hysteresis).

Guarantees, whatever the action (huge, NaN, inf), the reported state and the caller's rate:

- a target is never more than `max_translation_m` (Euclidean) from the current position, nor more than
  `max_rotation_rad` (angle) from the current orientation;
- per second: a target moves from the last command by at most `max_speed_m_s × dt`, or back towards the arm
  (`max_angular_speed_rad_s × dt` in angle, `max_gripper_rate × dt` for the gripper), dt the time since that
  command (held or not) on the arms' own clock, so a caller faster than the control rate gets proportionally
  smaller steps; only the first command, or one after the arm was moved from elsewhere (a reset, a hand),
  starts from the measured pose;
- when the arm is inside the box, the target is inside the box, and along each axis it leads the arm by at
  most `approach_lead` × the arm's gap to the face ahead, so an arm that lags its target is not carried past;
- when the arm is outside the box (pushed there by hand, a teleport, drift), the target is the limited move
  towards the box point the action asks for; its distance to the box shrinks every step, from d to at most
  d² / (d + max_translation_m) with a full step, and it lands inside once that point is within one step;
- contact: above `max_force_n` / `max_torque_nm` only motion along the measured wrench (away from the contact)
  passes, else the command holds; above them for `contact_hold_s`, the arm retreats `retreat_m` / `retreat_rad`
  along the wrench; above `retreat_force_n` / `retreat_torque_nm` it retreats at once and then pauses;
- NaN/inf in the action or in the state, an error reported by the arm, pause and e-stop all give `held=True`:
  the caller must call `Arm.stop()` and not move. The e-stop is latched until `reset_estop()`; `resume()` does
  not clear it.

`Safety.drive` moves an arm to absolute poses through the same rules at the slow speeds (`slow_*`): the home
motion of a reset and calibration moves use it instead of a bare `Arm.move_to`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lastr1.configs.robot import SafetyConfig
from lastr1.robot import rotations
from lastr1.robot.arm import Arm, ArmState
from lastr1.robot.errors import ArmFault, RobotError

ACTION_DIM = 7  # per arm: xyz, rotation vector, gripper


@dataclass
class SafeCommand:
    positions: np.ndarray  # (n, 3) absolute targets, base frame, m (the hold pose when held)
    quaternions: np.ndarray  # (n, 4) xyzw
    grippers: np.ndarray  # (n,) in [-1, 1]; 0 = leave the gripper as it is (inside the hysteresis band)
    held: bool  # True: stop the arm, do not move
    reasons: list[str] = field(default_factory=list)  # why it held, or what was clipped


_RETREAT_LEGS = 3  # at most 3 × retreat_m (or retreat_rad) away from a contact before a pause or carrying on


@dataclass
class _Retreat:
    positions: np.ndarray
    quaternions: np.ndarray
    until: float
    pause: str  # why to pause once it is done; "" = carry on
    legs: int = 1  # retreat_m steps taken so far (another while the force is still over the limit)


class Safety:
    def __init__(self, cfg: SafetyConfig, n_arms: int = 1, clock: Callable[[], float] | None = None):
        self.cfg = cfg
        self.n_arms = n_arms
        # Seconds for the per-second limits: by default the arms' own clock (ArmState.timestamp, the robot's
        # time; sim time in a simulator that may run slower than real time), else the wall clock; injectable so
        # tests can drive time.
        self.clock = clock
        self.box_min = np.asarray(cfg.box_min, dtype=np.float64)
        self.box_max = np.asarray(cfg.box_max, dtype=np.float64)
        if self.box_min.shape != (3,) or self.box_max.shape != (3,) or np.any(self.box_min >= self.box_max):
            raise RobotError(
                f"workspace box is invalid: box_min={cfg.box_min} box_max={cfg.box_max}",
                hint="robot.safety.box_min must be below box_max on every axis (x, y, z in metres)",
            )
        rates = (cfg.max_translation_m, cfg.max_rotation_rad, cfg.max_speed_m_s, cfg.max_angular_speed_rad_s,
                 cfg.max_gripper_rate, cfg.approach_lead, cfg.slow_speed_m_s, cfg.slow_angular_speed_rad_s,
                 cfg.slow_hz, cfg.runaway_m)
        if min(rates) <= 0:
            raise RobotError(
                "robot.safety step, speed, approach_lead, slow_* and runaway_m limits must be positive",
                hint="max_translation_m / max_rotation_rad scale a normalised action of ±1 per control step; "
                "the *_speed / *_rate keys bound the same per second",
            )
        self._paused = False
        self._pause_reason = ""
        self._estopped = False
        # What a hold falls back to when the reported state itself is unusable (NaN pose).
        centre = (self.box_min + self.box_max) / 2
        self._last_positions = np.tile(centre, (n_arms, 1))
        self._last_quaternions = np.tile([0.0, 0.0, 0.0, 1.0], (n_arms, 1))
        self._last_grippers = np.zeros(n_arms)  # 0: no gripper change until something commands one
        self._last_t: float | None = None  # when the last command (held or not) went out
        self._over_since: list[float | None] = [None] * n_arms  # when each arm's wrench went over the limit
        self._retreat: _Retreat | None = None
        self._outside: np.ndarray | None = None  # each arm's distance outside the box at the last command

    def new_episode(self) -> None:
        """Forget the last episode's command stream (its last target and time, its gripper command, a contact
        in progress): the arm was just reset, and what an episode may do must not depend on the one before.
        A pause the contact rules set ends here too (the reset moved the arm away from the contact, as `drive`
        does): a person's pause and an e-stop do not. Without this a lockstep reset, which does not pass
        `drive`, left every later episode held at 0 steps (a learning run stalled for 25 minutes)."""
        if self._pause_reason and not self._estopped:
            self.resume()
        self._last_t = None
        self._last_grippers = np.zeros(self.n_arms)
        self._over_since = [None] * self.n_arms
        self._retreat = None
        self._outside = None

    # ---- operator controls (safe to call from another thread: each is one attribute write) ----

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._pause_reason = ""

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
    def pause_reason(self) -> str:
        """Why the contact rules paused the arm ("" when not paused, or paused by a person's pause())."""
        return self._pause_reason if self._paused else ""

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
        bad = np.flatnonzero(~np.isfinite(flat))
        reasons = [f"action is not finite at index {bad.tolist()}: holding"] if bad.size else []
        if not bad.size and np.any(np.abs(a) > 1.0):
            reasons.append("action clipped to [-1, 1]")
        a = np.clip(np.nan_to_num(a), -1.0, 1.0)
        pos, quat = self._current(states)
        goal_p = pos + _limit_rows(a[:, 0:3] * self.cfg.max_translation_m, self.cfg.max_translation_m)
        goal_q = rotations.apply_rotvec(quat, _limit_rows(a[:, 3:6] * self.cfg.max_rotation_rad,
                                                          self.cfg.max_rotation_rad))
        return self._command(states, goal_p, goal_q, a[:, 6], reasons, bool(bad.size),
                             self.cfg.max_speed_m_s, self.cfg.max_angular_speed_rad_s)

    def _command(self, states: list[ArmState], goal_p: np.ndarray, goal_q: np.ndarray, grippers: np.ndarray | None,
                 reasons: list[str], hold_action: bool, speed: float, angular: float) -> SafeCommand:
        """The limited command towards goal poses (per arm); grippers None = leave the hands as they are."""
        now = self._now(states)
        pos, quat, wrench, hold = self._read_states(states)
        if self._estopped:
            hold.append("e-stop (latched: reset_estop() to move again)")
        if self._paused:
            hold.append(f"paused: {self._pause_reason}" if self._pause_reason else "paused")
        if hold_action:
            hold.append(reasons.pop(0))
        hold += self._runaway(pos)
        if hold:
            return self._hold(now, pos, quat, hold)

        retreat = self._contact(now, pos, quat, wrench, reasons)
        if retreat is not None:
            return retreat

        dt = self._elapsed(now, speed)
        target_p = np.empty_like(pos)
        target_q = np.empty_like(quat)
        for i in range(self.n_arms):
            base_p, base_q = self._base(i, pos[i], quat[i])
            target_p[i] = self._translate(i, pos[i], base_p, goal_p[i], speed * dt, reasons)
            target_q[i] = _turn(quat[i], base_q, goal_q[i], angular * dt, self.cfg.max_rotation_rad)
            if self._over_since[i] is not None:
                target_p[i], target_q[i] = self._away(i, pos[i], quat[i], target_p[i], target_q[i], wrench[i], reasons)
        if not self._moves(pos, quat, target_p, target_q) and any(t is not None for t in self._over_since):
            hold = [r for r in reasons if "external" in r] + ["only motion away from the contact is allowed: holding"]
            return self._hold(now, pos, quat, hold)
        out_g = np.zeros(self.n_arms)
        if grippers is not None:
            step = self.cfg.max_gripper_rate * dt
            out_g = self._last_grippers = np.clip(grippers, self._last_grippers - step, self._last_grippers + step)
        self._remember(now, target_p, target_q)
        return SafeCommand(target_p.copy(), target_q.copy(), out_g.copy(), False, reasons)

    def _now(self, states: list[ArmState] | None = None) -> float:
        if self.clock is not None:
            return self.clock()
        stamps = [float(s.timestamp) for s in states or [] if np.isfinite(s.timestamp) and s.timestamp > 0]
        return max(stamps) if stamps else time.monotonic()

    def _read_states(self, states: list[ArmState]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Current poses (the hold pose), wrenches and the reasons the state alone forces a hold."""
        pos = self._last_positions.copy()
        quat = self._last_quaternions.copy()
        wrench = np.zeros((self.n_arms, 6))
        hold: list[str] = []
        for i, s in enumerate(states):
            p = np.asarray(s.position, dtype=np.float64).reshape(-1)
            q = np.asarray(s.quaternion, dtype=np.float64).reshape(-1)
            w = np.asarray(s.wrench, dtype=np.float64).reshape(-1)
            qn = np.linalg.norm(q) if np.all(np.isfinite(q)) else np.nan
            if p.shape != (3,) or q.shape != (4,) or not np.all(np.isfinite(p)) or not (qn > 1e-6):
                hold.append(f"arm{i}: reported pose is not finite/valid ({p.tolist()}, {q.tolist()}): holding")
                continue
            pos[i], quat[i] = p, q / qn
            if w.shape != (6,) or not np.all(np.isfinite(w)):
                hold.append(f"arm{i}: external wrench reading is not finite: holding")
                continue
            wrench[i] = w
            if s.errors:
                hold.append(f"arm{i}: arm reports {', '.join(s.errors)}: recover before moving")
        return pos, quat, wrench, hold

    def _runaway(self, pos: np.ndarray) -> list[str]:
        """Arms further than runaway_m outside the box and further out than at the last command: held, which
        stops them (a hold is franky's stop()); the next commands lead them back."""
        out = np.array([self.distance_to_box(p) for p in pos])
        before, self._outside = self._outside, out
        if before is None:
            return []
        return [f"arm{i}: {out[i] * 1000:.1f} mm outside the workspace box and moving further out, against its "
                "commands: stopped" for i in range(self.n_arms)
                if out[i] > self.cfg.runaway_m and out[i] > before[i] + 1e-4]

    def _current(self, states: list[ArmState]) -> tuple[np.ndarray, np.ndarray]:
        pos, quat, _, _ = self._read_states(states)
        return pos, quat

    def _hold(self, now: float, pos: np.ndarray, quat: np.ndarray, reasons: list[str]) -> SafeCommand:
        # A hold is a command too: the next one is limited from it, so alternating junk and full steps at a
        # high rate gains nothing.
        self._remember(now, pos, quat)
        return SafeCommand(pos.copy(), quat.copy(), self._last_grippers.copy(), True, reasons)

    def _remember(self, now: float, positions: np.ndarray, quaternions: np.ndarray) -> None:
        self._last_t = now
        self._last_positions, self._last_quaternions = positions.copy(), quaternions.copy()

    def _elapsed(self, now: float, speed: float) -> float:
        """Seconds of motion this command may make: since the last command, at most one full step's worth."""
        full = self.cfg.max_translation_m / speed
        return full if self._last_t is None else float(np.clip(now - self._last_t, 0.0, full))

    def _base(self, i: int, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the command stream stands: the last target, unless the arm is farther from it than a lagging
        arm can be (moved by a reset, a teleport, a hand): then the measured pose."""
        lp, lq = self._last_positions[i], self._last_quaternions[i]
        if (self._last_t is None or np.linalg.norm(lp - p) > 2 * self.cfg.max_translation_m
                or rotations.angle_between(lq, q) > 2 * self.cfg.max_rotation_rad):
            return p, q
        return lp, lq

    def _translate(self, i: int, p: np.ndarray, base: np.ndarray, want: np.ndarray, budget: float,
                   reasons: list[str]) -> np.ndarray:
        lim = self.cfg.max_translation_m
        goal = np.clip(want, self.box_min, self.box_max)
        inside = self._inside(p)
        if not inside:
            reasons.append(f"arm{i}: {self.distance_to_box(p) * 1000:.1f} mm outside the workspace box: moving back")
        elif np.any(goal != want):
            reasons.append(f"arm{i}: target clipped to the workspace box")
        t = p + _limit(goal - p, lim)
        if inside and not self._inside(base):
            base = p
        t = base + _limit(t - base, budget)
        t = p + _limit(t - p, lim)
        if inside:
            # Near a face the target leads the arm by at most a fraction of the arm's own gap to it, so an arm
            # carried past its target (franky does, pre-empted at speed) still stops inside.
            k = self.cfg.approach_lead
            t = p + np.clip(t - p, -k * (p - self.box_min), k * (self.box_max - p))
        # Exactly inside without rounding (the projection keeps every limit above: p and base are inside).
        return np.clip(t, self.box_min, self.box_max) if inside else t

    def _inside(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= self.box_min) and np.all(p <= self.box_max))

    def distance_to_box(self, p: np.ndarray) -> float:
        p = np.asarray(p, dtype=np.float64)
        return float(np.linalg.norm(p - np.clip(p, self.box_min, self.box_max)))

    def _moves(self, pos, quat, target_p, target_q) -> bool:
        dp = np.linalg.norm(target_p - pos, axis=1)
        dq = rotations.angle_between(target_q, quat)
        return bool(np.any(dp > 1e-5) or np.any(dq > 1e-4))

    # ---- contact ----

    def _contact(self, now: float, pos: np.ndarray, quat: np.ndarray, wrench: np.ndarray,
                 reasons: list[str]) -> SafeCommand | None:
        """Track each arm's time over the wrench limit; start, continue or end a retreat."""
        c = self.cfg
        start: list[str] = []
        pause: list[str] = []
        for i in range(self.n_arms):
            f, tq = np.linalg.norm(wrench[i, :3]), np.linalg.norm(wrench[i, 3:])
            if f <= c.max_force_n and tq <= c.max_torque_nm:
                self._over_since[i] = None
                continue
            since = self._over_since[i]
            if since is None:
                since = self._over_since[i] = now
            what = (f"arm{i}: external force {f:.1f} N / torque {tq:.1f} Nm "
                    f"(limits {c.max_force_n} N, {c.max_torque_nm} Nm)")
            if f > c.retreat_force_n or tq > c.retreat_torque_nm:
                start.append(f"{what} over the retreat limits ({c.retreat_force_n} N, {c.retreat_torque_nm} Nm)")
                pause.append(start[-1])
            elif now - since >= c.contact_hold_s - 1e-9:  # (a 10-Hz clock's rounding must not add a period)
                start.append(f"{what} for {(now - since) * 1000:.0f} ms")
            else:
                reasons.append(what)
        if start and self._retreat is None:
            rp, rq = pos.copy(), quat.copy()
            for i in range(self.n_arms):
                if self._over_since[i] is not None:
                    rp[i], rq[i] = self._retreat_pose(pos[i], quat[i], wrench[i])
            why = "; ".join(pause)
            self._retreat = _Retreat(rp, rq, now + c.retreat_timeout_s,
                                     f"{why}: retreated {c.retreat_m * 1000:.0f} mm along the force; resume() "
                                     "(or a reset) to move again" if pause else "")
            reasons.extend(f"{s}: retreating {c.retreat_m * 1000:.0f} mm along it" for s in start)
        r = self._retreat
        if r is None:
            return None
        arrived = np.all(np.linalg.norm(pos - r.positions, axis=1) < 0.002)
        if arrived or now >= r.until:
            pressed = [i for i in range(self.n_arms) if np.linalg.norm(wrench[i, :3]) > c.max_force_n
                       or np.linalg.norm(wrench[i, 3:]) > c.max_torque_nm]
            if pressed and r.legs < _RETREAT_LEGS:
                # Still over the limit where the leg ended (pressed in deeper than retreat_m): another leg along
                # the force now, before any pause — a pause holds the arm where it is, so it must not hold it
                # pressed (a property test found 0.5 s over the limit that way).
                rp, rq = r.positions.copy(), r.quaternions.copy()
                for i in pressed:
                    rp[i], rq[i] = self._retreat_pose(pos[i], quat[i], wrench[i])
                self._retreat = r = _Retreat(rp, rq, now + c.retreat_timeout_s, r.pause, r.legs + 1)
                self._remember(now, r.positions, r.quaternions)
                return SafeCommand(r.positions.copy(), r.quaternions.copy(), self._last_grippers.copy(), False,
                                   reasons + [f"still over the limit: retreating {c.retreat_m * 1000:.0f} mm more"])
            self._retreat = None
            if r.pause:
                self._paused, self._pause_reason = True, r.pause
                return self._hold(now, pos, quat, [f"paused: {r.pause}"])
            return None
        self._remember(now, r.positions, r.quaternions)
        return SafeCommand(r.positions.copy(), r.quaternions.copy(), self._last_grippers.copy(), False,
                           reasons or ["retreating from a contact"])

    def _retreat_pose(self, p: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        f, tq = np.linalg.norm(w[:3]), np.linalg.norm(w[3:])
        if f > c.max_force_n:
            # Inside the box the retreat stays inside; from outside it may have to go further out first.
            p = np.clip(p + w[:3] / f * c.retreat_m, self.box_min, self.box_max) if self._inside(p) \
                else p + w[:3] / f * c.retreat_m
        if tq > c.max_torque_nm:
            q = rotations.apply_rotvec(q, w[3:] / tq * c.retreat_rad)
        return p, q

    def _away(self, i: int, p: np.ndarray, q: np.ndarray, tp: np.ndarray, tq: np.ndarray, w: np.ndarray,
              reasons: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Over the limit: keep only the part of the motion along the wrench (which lessens it)."""
        f, t = np.linalg.norm(w[:3]), np.linalg.norm(w[3:])
        d = tp - p
        if f > self.cfg.max_force_n:
            n = w[:3] / f
            d = max(0.0, float(d @ n)) * n
        rv = rotations.rotvec_between(q, tq)
        if t > self.cfg.max_torque_nm:
            n = w[3:] / t
            rv = max(0.0, float(rv @ n)) * n
        elif f > self.cfg.max_force_n:
            rv = np.zeros(3)  # a turn under load may press harder through the lever
        out = p + d
        if self._inside(p):
            out = np.clip(out, self.box_min, self.box_max)
        reasons.append(f"arm{i}: over the force/torque limit: only motion away from the contact")
        return out, rotations.apply_rotvec(q, rv)

    # ---- slow moves (home, calibration) through the same rules ----

    def drive(self, arm: Arm, positions: np.ndarray, quaternions: np.ndarray, timeout_s: float,
              tol_m: float = 0.002, tol_rad: float = 0.01, sleep: Callable[[float], None] = time.sleep) -> None:
        """Move every arm of `arm` to absolute poses (n, 3) / (n, 4) at the slow speeds, re-targeting at
        `slow_hz`, and wait until it is there. A target outside the box ends on the box. A contact the rules
        retreat from does not end it (three hard hits do). Raises ArmFault when the filter holds (a person's pause,
        e-stop, an arm error: FrankyArm recovers and retries planner refusals and reflexes of its home move) or
        after timeout_s.

        A deliberate slow move (a reset, a calibration view) ends a pause the contact rules set, not one a
        person set, nor an e-stop."""
        if self._pause_reason and not self._estopped:
            self.resume()
        self._retreat = None
        self._outside = None  # wherever the arm was put (a teleport, a hand), only moving further out counts
        # The hands may change meanwhile (a reset opens them, a grasp closes them): the next gripper command is
        # rate-limited from "leave as is", which crosses a hysteresis threshold only towards where it goes.
        self._last_grippers = np.zeros(self.n_arms)
        goal_p = np.clip(np.asarray(positions, np.float64).reshape(self.n_arms, 3), self.box_min, self.box_max)
        goal_q = rotations.normalize(np.asarray(quaternions, np.float64).reshape(self.n_arms, 4))
        wall = self.clock or time.monotonic  # (the deadline is a person's, in wall-clock seconds)
        deadline = wall() + timeout_s
        pauses = 0
        while True:
            states = arm.state()
            pos, quat = self._current(states)
            if (np.all(np.linalg.norm(pos - goal_p, axis=1) < tol_m)
                    and np.all(rotations.angle_between(quat, goal_q) < tol_rad)):
                return
            cmd = self._command(states, goal_p, goal_q, None, [], False,
                                self.cfg.slow_speed_m_s, self.cfg.slow_angular_speed_rad_s)
            errors = [e for st in states for e in st.errors]
            pressed = any(t is not None for t in self._over_since) and not self._paused and not errors
            if cmd.held and not self._estopped and ((self._pause_reason and pauses < 3) or pressed):
                # A hit the arm has retreated from (or a simulator's teleport transient), or a press the contact
                # rules will retreat from: go on (a press is bounded by the deadline, pauses by three).
                if self._pause_reason:
                    self.resume()
                    pauses += 1
                if wall() <= deadline:
                    sleep(1.0 / self.cfg.slow_hz)
                    continue
            if cmd.held:
                arm.stop()
                raise ArmFault(f"a slow move was held by the safety layer: {'; '.join(cmd.reasons)}",
                               hint="clear the cause (resume, reset the e-stop, free the arm), then retry")
            arm.move_to(cmd.positions, cmd.quaternions, cmd.grippers)
            if wall() > deadline:
                arm.stop()
                raise ArmFault(f"a slow move did not arrive within {timeout_s:.1f} s "
                               f"(at {np.round(pos, 3).tolist()}, going to {np.round(goal_p, 3).tolist()})",
                               hint="check nothing blocks the arm; raise the timeout if it is only slow")
            sleep(1.0 / self.cfg.slow_hz)

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


def _limit(v: np.ndarray, limit: float) -> np.ndarray:
    n = np.linalg.norm(v)
    return v * (limit / n) if n > limit else v


def _limit_rows(v: np.ndarray, limit: float) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v * np.minimum(1.0, limit / np.maximum(n, 1e-300))


def _turn(q: np.ndarray, base: np.ndarray, goal: np.ndarray, budget: float, lim: float) -> np.ndarray:
    """The goal orientation, at most `budget` rad from the last command's and `lim` rad from the arm's."""
    t = rotations.apply_rotvec(q, _limit(rotations.rotvec_between(q, goal), lim))
    t = rotations.apply_rotvec(base, _limit(rotations.rotvec_between(base, t), budget))
    return rotations.apply_rotvec(q, _limit(rotations.rotvec_between(q, t), lim))
