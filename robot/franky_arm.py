"""`FrankyArm`: one Franka arm + Franka Hand through `franky` (franky-control); `MultiArm`: several as one.

    arm = FrankyArm(ArmConfig(host="172.16.0.2", realtime="enforce"))
    with arm:
        arm.reset()                                   # blocking: home (randomised as configured), hand open
        s = arm.state()[0]                            # pose, joints, hand width, external wrench, errors
        arm.move_to(p[None], q[None], np.array([1.0]))  # asynchronous, pre-empts the running motion

Motions are absolute Cartesian targets (the safety layer turned the normalised action into current pose +
base-frame delta, clipped to the workspace box); franky plans each with its jerk-limited generator and
`move(..., asynchronous=True)` replaces the running one without stopping, so a 10-Hz stream of targets moves
smoothly. The hand runs in a worker thread (its commands block for ~0.5-1 s) and is commanded only when the
gripper number crosses the hysteresis thresholds, never every step.

Errors: a reflex/collision aborts the running motion; `state().errors` then lists the franka::Errors names
(and the aborted motion's message), `move_to` raises `ArmFault`, and `recover()` runs franky's automatic
error recovery. A home motion (reset) that the planner refuses or a reflex aborts is recovered and started
again up to `motion_retries` times, each logged, before ArmFault.
Nothing listening at the host → `DeviceNotFound`; a connection that dies → `ConnectionLost`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lastr1.configs.robot import ArmConfig
from lastr1.errors import require
from lastr1.robot import rotations
from lastr1.robot.arm import Arm, ArmState
from lastr1.robot.errors import ArmFault, ConnectionLost, DeviceNotFound, RobotError

if TYPE_CHECKING:
    from lastr1.robot.safety import Safety

def _keep_alive(obj: Any) -> None:
    """One reference more than Python will ever release, so not even interpreter shutdown runs its destructor:
    franky's ~Robot joins a control thread that never ends with the GIL held (it would freeze the exit)."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))

log = logging.getLogger(__name__)


class FrankyArm(Arm):
    n_arms = 1

    def __init__(self, cfg: ArmConfig, host: str | None = None, gripper_close_at: float = 0.5,
                 gripper_open_at: float = -0.5):
        if not gripper_open_at < gripper_close_at:
            raise RobotError(
                f"gripper hysteresis needs open_at < close_at, got {gripper_open_at} and {gripper_close_at}",
                hint="set robot.gripper_open_at below robot.gripper_close_at (defaults -0.5 and 0.5)",
            )
        if cfg.motion_retries < 0:
            raise RobotError(f"{cfg.name}: motion_retries must be 0 or more, got {cfg.motion_retries}",
                             hint="set robot.arms[i].motion_retries to 0 (no retry) or more")
        self.cfg = cfg
        self.host = host or cfg.host
        self.close_at, self.open_at = gripper_close_at, gripper_open_at
        # franky's objects: the driver module is imported on connect(), so the learner box never needs it.
        self._robot: Any = None
        self._gripper: Any = None
        self._franky: Any = None
        self._faults: list[str] = []  # messages of aborted motions, until recover()
        # Hand worker: the wanted state (True closed / False open / None untouched) and the one reached.
        self._hand_cv = threading.Condition()
        self._hand_want: bool | None = None
        self._hand_have: bool | None = None
        self._hand_busy = False
        self._hand_error = ""
        self._hand_thread: threading.Thread | None = None
        self._closing = False
        self.safety: Safety | None = None  # set: the home motion passes it (use_safety)
        self._sent: tuple[np.ndarray, np.ndarray] | None = None  # the target of the motion last sent, and when
        self._sent_at = 0.0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # a target waiting for its turn
        self._home: tuple[np.ndarray, np.ndarray] = self.home_pose()  # the home pose of the running reset

    # ---------------------------------------------------------------- connection

    def connect(self) -> None:
        franky = self._franky = require("franky", "robot", "the Franka arm driver")
        rt = franky.RealtimeConfig.Enforce if self.cfg.realtime == "enforce" else franky.RealtimeConfig.Ignore
        try:
            self._robot = franky.Robot(self.host, realtime_config=rt)
        except franky.NetworkException as e:
            raise DeviceNotFound(
                f"{self.cfg.name}: no Franka FCI answers at {self.host} ({e})",
                hint="check the robot is on, FCI is activated in Desk, the brakes are open, and this PC reaches "
                f"{self.host} (ping); in sim, the sim host must be running on that address",
            ) from None
        except franky.RealtimeException as e:
            raise RobotError(
                f"{self.cfg.name}: franky needs a real-time kernel with realtime=enforce ({e})",
                hint="run on the PREEMPT_RT robot PC, or set robot.arms[i].realtime: ignore (off-robot only)",
            ) from None
        except franky.IncompatibleVersionException as e:
            raise RobotError(f"{self.cfg.name}: libfranka and the robot firmware disagree ({e})",
                             hint="install the franky-control build whose libfranka matches the robot's "
                             "system version") from None
        self._robot.relative_dynamics_factor = self.cfg.relative_dynamics_factor
        try:
            self._gripper = franky.Gripper(self.host)
        except franky.NetworkException as e:
            self._robot = None
            raise DeviceNotFound(f"{self.cfg.name}: no Franka Hand answers at {self.host} ({e})",
                                 hint="check the hand is mounted and enabled in Desk") from None
        self._closing = False
        self._hand_thread = threading.Thread(target=self._hand_loop, name=f"{self.cfg.name}-hand", daemon=True)
        self._hand_thread.start()

    def close(self) -> None:
        if self._robot is None:
            return
        self._closing = True
        with self._hand_cv:
            self._hand_cv.notify_all()
        ended = True
        try:
            self._robot.stop()
            ended = bool(self._robot.join_motion(timeout=self.cfg.close_timeout_s))
        except Exception:  # closing: the motion ended with an error, or the connection is already gone
            pass
        if self._hand_thread is not None:
            self._hand_thread.join(timeout=5)
        if not ended:
            log.error("%s: the running motion did not end within %.0f s of stop() (the robot or sim server does not "
                      "answer); its control thread and connection are left to end with the process", self.cfg.name,
                      self.cfg.close_timeout_s)
            _keep_alive(self._robot)
        self._robot = self._gripper = None

    def _need(self):
        if self._robot is None:
            raise RobotError(f"{self.cfg.name} is not connected", hint="call connect() (or use `with arm:`)")
        return self._robot

    def _lost(self, e) -> ConnectionLost:
        return ConnectionLost(f"{self.cfg.name}: lost the connection to {self.host} ({e})",
                              hint="check the network cable / the robot (or sim host) is still running, then "
                              "reconnect; the arm holds its last position")

    # ---------------------------------------------------------------- state

    def _check_motion(self) -> None:
        """Collect the exception of an aborted asynchronous motion (reflex, rejected command)."""
        f = self._franky
        try:
            self._robot.poll_motion()
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, f.InvalidOperationException, RuntimeError) as e:
            # RuntimeError: e.g. "Motion planner failed" near the edge of the reach
            if not _preempted(e):
                self._faults.append(_first_line(e))

    def errors(self) -> list[str]:
        """franka::Errors names set now, plus messages of motions aborted since the last recover()."""
        return self.state()[0].errors

    def state(self) -> list[ArmState]:
        robot = self._need()
        f = self._franky
        self._check_motion()
        if not self._faults:
            try:
                self._flush()
            except ArmFault:
                pass  # recorded in _faults: the state below reports it
        try:
            s = robot.state
            width = float(self._gripper.width)
        except f.NetworkException as e:
            raise self._lost(e) from None
        pose = s.O_T_EE
        errors = _error_names(s.current_errors)
        return [ArmState(
            position=np.array(pose.translation, dtype=np.float64),
            quaternion=np.array(pose.quaternion, dtype=np.float64),
            joints=np.array(s.q, dtype=np.float64),
            gripper_width=width,
            wrench=np.array(s.O_F_ext_hat_K, dtype=np.float64),
            errors=errors + [m for m in self._faults if m not in errors],
            # The robot's own clock (FCI message time; sim time in franky-sim): the safety layer's per-second
            # limits count in it, so a simulator running slower than real time is limited in its own seconds.
            timestamp=float(s.time.to_sec()),
        )]

    @property
    def has_errors(self) -> bool:
        robot = self._need()
        self._check_motion()
        return bool(self._faults) or bool(robot.has_errors)

    # ---------------------------------------------------------------- motion

    def move_to(self, positions: np.ndarray, quaternions: np.ndarray, grippers: np.ndarray) -> None:
        self._need()
        p = np.asarray(positions, dtype=np.float64).reshape(-1)[:3]
        q = np.asarray(quaternions, dtype=np.float64).reshape(-1)[:4]
        if self._faults:
            raise ArmFault(f"{self.cfg.name}: motion aborted earlier: {'; '.join(self._faults)}",
                           hint="call recover() before moving again")
        # Pre-empting a motion at speed carries the arm on past the new target (49 mm at 0.2 m/s in sim), so the
        # same target is sent once, and a new one at most every retarget_period_s: a faster caller's latest
        # target waits, and goes out with the next call, state() or join() after that.
        self._pending = (p, q / np.linalg.norm(q))
        self._flush()
        self.command_gripper(float(np.asarray(grippers).reshape(-1)[0]))

    def _flush(self, now: bool = False) -> None:
        """Send the pending target when it is new and its turn has come (or `now`)."""
        if self._pending is None:
            return
        p, q = self._pending
        t = time.monotonic()
        if self._sent is not None and not now and t - self._sent_at < self.cfg.retarget_period_s:
            return
        self._pending = None
        if self._sent is not None and _same_pose(self._sent, p, q):
            return
        f = self._franky
        motion = f.CartesianMotion(f.Affine(p, q), f.ReferenceType.Absolute)
        try:
            try:
                self._robot.move(motion, asynchronous=True)
            except (f.ControlException, RuntimeError) as e:
                if not _preempted(e):
                    raise
                self._robot.move(motion, asynchronous=True)
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, f.InvalidOperationException, RuntimeError) as e:
            self._faults.append(_first_line(e))
            raise ArmFault(f"{self.cfg.name}: motion refused: {e}", hint="call recover() before moving again") from None
        self._sent, self._sent_at = (p.copy(), q.copy()), t

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the running motion to reach its target; False on timeout. Raises ArmFault if it aborted."""
        robot = self._need()
        f = self._franky
        self._flush(now=True)
        try:
            return bool(robot.join_motion(timeout=timeout))
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, RuntimeError) as e:
            if _preempted(e):
                return True
            self._faults.append(_first_line(e))
            raise ArmFault(f"{self.cfg.name}: motion aborted: {e}", hint="call recover() before moving again") from None

    def stop(self) -> None:
        robot = self._need()
        f = self._franky
        self._sent = self._pending = None
        try:
            robot.stop()
            # The stopped motion ends with "preempted"; collect that here so the next move does not raise it.
            robot.join_motion(timeout=1.0)
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, RuntimeError) as e:
            if not _preempted(e):
                self._faults.append(_first_line(e))

    def recover(self) -> None:
        robot = self._need()
        f = self._franky
        self._check_motion()
        try:
            ok = robot.recover_from_errors()
        except f.NetworkException as e:
            raise self._lost(e) from None
        except f.CommandException as e:
            ok, why = False, str(e)
        else:
            why = "recover_from_errors() returned False"
            # franky answers from the state it read before the recovery went through; ask fresh states.
            deadline = time.monotonic() + 0.2
            while not ok and time.monotonic() < deadline:
                time.sleep(0.01)
                ok = not robot.has_errors
        if not ok:
            raise ArmFault(f"{self.cfg.name}: automatic error recovery failed: {why}",
                           hint="check the arm in Desk (user stop released? in the workspace?), then recover there")
        self._faults.clear()
        self._sent = self._pending = None

    def home_pose(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        p = np.array(self.cfg.home_xyz, dtype=np.float64)
        roll, pitch, yaw = self.cfg.home_rpy
        if rng is not None:
            p = p + rng.uniform(-1, 1, 3) * np.asarray(self.cfg.home_noise_xyz, dtype=np.float64)
            yaw = yaw + rng.uniform(-1, 1) * self.cfg.home_noise_yaw
        return p, rotations.from_rpy(np.array([roll, pitch, yaw]))

    def use_safety(self, safety: Safety) -> None:
        """Send the home motion through this filter (its slow speeds, the box, the contact rules), as every
        other motion; without one, reset() is a single franky motion straight home."""
        self.safety = safety

    def start_reset(self, rng: np.random.Generator | None = None) -> None:
        """Begin the home motion and open the hand; `finish_reset()` waits for both (MultiArm overlaps arms).
        A home motion the planner refuses or a reflex aborts is recovered and started again (_retrying)."""
        self._home = self.home_pose(rng)
        if self.has_errors:  # an error left from before (the last episode's reflex) is not a failed try
            self.recover()
        if self.safety is not None:
            self._sent = self._pending = None
            self.set_gripper(False, wait=False)
            p, q = self._home
            safety = self.safety
            _retrying([self], "the home move", lambda: safety.drive(self, p[None], q[None], self.cfg.reset_timeout_s))
            return
        _retrying([self], "the home motion", self._send_home)
        self.set_gripper(False, wait=False)

    def _send_home(self) -> None:
        robot = self._need()
        f = self._franky
        self._sent = self._pending = None  # (a teleport may have moved the arm away from it)
        p, q = self._home
        motion = f.CartesianMotion(f.Affine(p, q), f.ReferenceType.Absolute)
        try:
            try:
                robot.move(motion, asynchronous=True)
            except (f.ControlException, RuntimeError) as e:
                if not _preempted(e):  # a stale "preempted" from the last motion surfaces here: move again
                    raise
                robot.move(motion, asynchronous=True)
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, RuntimeError) as e:
            self._faults.append(_first_line(e))
            raise ArmFault(f"{self.cfg.name}: the home motion was refused: {e}",
                           hint="recover() and reset() again") from None

    def finish_reset(self) -> None:
        if self.safety is not None:  # start_reset has arrived already
            self.wait_gripper(self.cfg.reset_timeout_s)
            return
        deadline = time.monotonic() + self.cfg.reset_timeout_s
        _retrying([self], "the home motion", self._join_home, again=self._resend_home)
        self.wait_gripper(max(0.1, deadline - time.monotonic()))

    def _resend_home(self) -> None:
        self._send_home()
        self._join_home()

    def _join_home(self) -> None:
        robot = self._need()
        f = self._franky
        try:
            done = robot.join_motion(timeout=self.cfg.reset_timeout_s)
        except f.NetworkException as e:
            raise self._lost(e) from None
        except (f.ControlException, f.CommandException, RuntimeError) as e:
            self._faults.append(_first_line(e))
            raise ArmFault(f"{self.cfg.name}: the home motion was aborted: {e}",
                           hint="recover() and reset() again; check nothing blocks the path home") from None
        if not done:
            raise ArmFault(f"{self.cfg.name}: the home motion did not finish in {self.cfg.reset_timeout_s} s",
                           hint="check the arm is not blocked; raise robot.arms[i].reset_timeout_s if it is just slow")

    def reset(self, rng: np.random.Generator | None = None) -> None:
        self.start_reset(rng)
        self.finish_reset()

    # ---------------------------------------------------------------- hand

    def command_gripper(self, g: float) -> None:
        """Hysteresis: close above close_at, open below open_at, otherwise leave the hand as it is."""
        if not math.isfinite(g):
            return
        if g >= self.close_at:
            self.set_gripper(True)
        elif g <= self.open_at:
            self.set_gripper(False)

    def set_gripper(self, closed: bool, wait: bool = False, timeout: float = 5.0) -> None:
        with self._hand_cv:
            if self._hand_want != closed:
                self._hand_want = closed
                self._hand_cv.notify_all()
        if wait:
            self.wait_gripper(timeout)

    def wait_gripper(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._hand_cv:
            while self._hand_busy or self._hand_have != self._hand_want:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    raise ArmFault(f"{self.cfg.name}: the hand did not finish within {timeout:.1f} s"
                                   f"{' (' + self._hand_error + ')' if self._hand_error else ''}",
                                   hint="check the Franka Hand (homing in Desk), nothing jams the fingers")
                self._hand_cv.wait(left)

    @property
    def gripper_closed(self) -> bool | None:
        """What the hand was last told to be (None before any command)."""
        return self._hand_want

    def _hand_loop(self) -> None:
        while True:
            with self._hand_cv:
                while not self._closing and self._hand_want == self._hand_have:
                    self._hand_cv.wait()
                if self._closing:
                    return
                want = self._hand_want
                self._hand_busy = True
            try:
                if want:
                    # Width 0 with a wide outer tolerance: "close on whatever is there", as the hand cannot
                    # know the object's size; the fingers keep the force on after contact.
                    self._gripper.grasp(0.0, self.cfg.gripper_speed, self.cfg.gripper_force_n,
                                        epsilon_inner=0.005, epsilon_outer=self.cfg.gripper_open_width)
                else:
                    self._gripper.move(self.cfg.gripper_open_width, self.cfg.gripper_speed)
                error = ""
            except Exception as e:  # a failed hand command must not kill the worker; it is reported
                error = f"hand {'grasp' if want else 'open'} failed: {e}"
            with self._hand_cv:
                self._hand_have = want  # even on failure: retrying every step would hammer the hand
                self._hand_error = error
                self._hand_busy = False
                self._hand_cv.notify_all()


def _error_names(errors) -> list[str]:
    """Names of the set flags of a franky.Errors."""
    return [n for n in dir(errors) if not n.startswith("_") and getattr(errors, n) is True]


class MultiArm(Arm):
    """Several arms acting as one: actions, targets and states are the arms' ones, concatenated in order."""

    def __init__(self, arms: list[FrankyArm]):
        if not arms:
            raise RobotError("MultiArm needs at least one arm")
        self.arms = arms
        self.n_arms = sum(a.n_arms for a in arms)
        self.safety: Safety | None = None

    def use_safety(self, safety: Safety) -> None:
        """One filter for all arms: the home motion moves them together through it (FrankyArm.use_safety)."""
        self.safety = safety

    def connect(self) -> None:
        done = []
        try:
            for a in self.arms:
                a.connect()
                done.append(a)
        except Exception:
            for a in done:
                a.close()
            raise

    def close(self) -> None:
        for a in self.arms:
            a.close()

    def state(self) -> list[ArmState]:
        return [s for a in self.arms for s in a.state()]

    def _split(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x)
        out, i = [], 0
        for a in self.arms:
            out.append(x[i : i + a.n_arms])
            i += a.n_arms
        return out

    def move_to(self, positions: np.ndarray, quaternions: np.ndarray, grippers: np.ndarray) -> None:
        faults = []
        for a, p, q, g in zip(self.arms, self._split(positions), self._split(quaternions), self._split(grippers)):
            try:
                a.move_to(p, q, g)
            except ArmFault as e:  # the other arms still get their targets; the fault is re-raised after
                faults.append(e)
        if faults:
            raise faults[0]

    def stop(self) -> None:
        for a in self.arms:
            a.stop()

    def recover(self) -> None:
        for a in self.arms:
            a.recover()

    @property
    def has_errors(self) -> bool:
        return any(getattr(a, "has_errors", False) for a in self.arms)

    def set_gripper(self, closed: list[bool], wait: bool = False, timeout: float = 5.0) -> None:
        for a, c in zip(self.arms, closed):
            a.set_gripper(c)
        if wait:
            for a in self.arms:
                a.wait_gripper(timeout)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        if self.safety is not None:
            homes = [a.home_pose(rng) for a in self.arms]
            for a in self.arms:
                if a.has_errors:
                    a.recover()
                a.set_gripper(False, wait=False)
            safety = self.safety
            _retrying(self.arms, "the home move", lambda: safety.drive(
                self, np.stack([p for p, _ in homes]), np.stack([q for _, q in homes]),
                max(a.cfg.reset_timeout_s for a in self.arms)))
            for a in self.arms:
                a.wait_gripper(a.cfg.reset_timeout_s)
            return
        # All arms move home at once (a dual-arm reset takes one arm's time) when they can start a reset.
        overlapping = [a for a in self.arms if hasattr(a, "start_reset")]
        for a in overlapping:
            a.start_reset(rng)
        for a in self.arms:
            a.finish_reset() if a in overlapping else a.reset(rng)


def _retrying(arms: list[FrankyArm], what: str, attempt: Callable[[], object],
              again: Callable[[], object] | None = None) -> None:
    """Run `attempt`; when it raises ArmFault with an arm in error (a planner refusal, a reflex), recover every
    arm in error and run `again` (default: `attempt`), at most robot.arms[].motion_retries times, logging each.
    A fault with no arm error (a person's pause, a timeout) is raised at once: retrying would not change it."""
    retries = min(a.cfg.motion_retries for a in arms)
    for k in range(retries + 1):
        try:
            (attempt if k == 0 else again or attempt)()
            return
        except ArmFault as e:
            failed = [a for a in arms if a.has_errors]
            if not failed or k == retries:
                raise
            log.warning("%s failed (%s); recovering and trying again (retry %d of %d)", what, e, k + 1, retries)
            for a in failed:
                a.recover()
            # A starved planner gets a moment, twice as long each time (as franky's users do): refusals come in
            # bursts while the PC is starved (a fleet actor once failed 4 in 10 s with 0.1-0.3 s pauses).
            time.sleep(0.25 * 2**k)


def _same_pose(sent: tuple[np.ndarray, np.ndarray], p: np.ndarray, q: np.ndarray) -> bool:
    return bool(np.linalg.norm(sent[0] - p) < 1e-6 and abs(float(sent[1] @ q)) > 1 - 1e-12)


def _preempted(e: BaseException) -> bool:
    """A motion ended by our own stop()/new motion, not by the robot: not a fault."""
    return "preempted" in str(e).lower()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
