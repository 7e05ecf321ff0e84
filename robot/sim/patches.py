"""Fixes and fault hooks for franky-sim 1.0.4, applied inside OUR sim server process only.

Each fix answers a bug reproduced in notes/drivers-and-sim.md:

1. `BaseRobot.kinematics` returns pinocchio's frame placement by reference; the next call overwrites it, so the
   reported end-effector pose was the *desired* one during motion (up to 94 mm off). We return a copy.
2. The default joint gains lag ~0.1 s (kv/kp = 1/10). The host passes `kp_scale`× the gains with kv = kp/50
   to `add_robot` (see host.py); nothing to patch here.
3. The hand stops short of the commanded width and never squeezes, so a grasped peg slides out. A grasp now
   closes with the commanded force until contact and then *holds* that force, like the Franka Hand.
4. No error emulation. We add reflex injection (state errors + robot mode Reflex + the running Move aborted
   with kReflexAborted, later Moves rejected until AutomaticErrorRecovery) and an estimate of the external
   wrench from MuJoCo contacts, reported as O_F_ext_hat_K (franky-sim leaves it zero).

The module only imports franky_sim when `apply()` runs, so importing it costs nothing elsewhere.
"""

from __future__ import annotations

import numpy as np

FRANKY_SIM_VERSION = "1.0.4"

# libfranka's franka::Errors order (errors.h); the FCI state packs 41 bools in this order.
ERROR_NAMES = (
    "joint_position_limits_violation", "cartesian_position_limits_violation", "self_collision_avoidance_violation",
    "joint_velocity_violation", "cartesian_velocity_violation", "force_control_safety_violation", "joint_reflex",
    "cartesian_reflex", "max_goal_pose_deviation_violation", "max_path_pose_deviation_violation",
    "cartesian_velocity_profile_safety_violation", "joint_position_motion_generator_start_pose_invalid",
    "joint_motion_generator_position_limits_violation", "joint_motion_generator_velocity_limits_violation",
    "joint_motion_generator_velocity_discontinuity", "joint_motion_generator_acceleration_discontinuity",
    "cartesian_position_motion_generator_start_pose_invalid", "cartesian_motion_generator_elbow_limit_violation",
    "cartesian_motion_generator_velocity_limits_violation", "cartesian_motion_generator_velocity_discontinuity",
    "cartesian_motion_generator_acceleration_discontinuity", "cartesian_motion_generator_elbow_sign_inconsistent",
    "cartesian_motion_generator_start_elbow_invalid", "cartesian_motion_generator_joint_position_limits_violation",
    "cartesian_motion_generator_joint_velocity_limits_violation",
    "cartesian_motion_generator_joint_velocity_discontinuity",
    "cartesian_motion_generator_joint_acceleration_discontinuity",
    "cartesian_position_motion_generator_invalid_frame", "force_controller_desired_force_tolerance_violation",
    "controller_torque_discontinuity", "start_elbow_sign_inconsistent", "communication_constraints_violation",
    "power_limit_violation", "joint_p2p_insufficient_torque_for_planning", "tau_j_range_violation",
    "instability_detected", "joint_move_in_wrong_direction", "cartesian_spline_motion_generator_violation",
    "joint_via_motion_generator_planning_joint_limit_violation", "base_acceleration_initialization_timeout",
    "base_acceleration_invalid_reading",
)
assert len(ERROR_NAMES) == 41

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from importlib.metadata import version

    import franky_sim
    from franky_sim import franka_gripper_server as fgs
    from franky_sim import franka_robot_protocol as frp
    from franky_sim import franka_robot_server as frs
    from franky_sim import mujoco_simulator as ms
    from franky_sim.base_simulator import BaseRobot

    have = version("franky-sim")
    if have != FRANKY_SIM_VERSION:
        # The fixes poke at 1.0.4's internals; a different version may have fixed (or moved) them.
        raise RuntimeError(f"robot.sim patches franky-sim {FRANKY_SIM_VERSION}, found {have}")
    del franky_sim

    # --- 1. kinematics by value ---
    kinematics = BaseRobot.kinematics
    BaseRobot.kinematics = lambda self, q: kinematics(self, q).copy()

    # --- 3. grasp = close with force until contact, then hold the force ---
    limit_force, limit_speed = ms.FRANKA_HAND_FORCE_LIMIT, ms.FRANKA_HAND_VELOCITY_LIMIT
    pd_pre_step = ms.FrankaMujocoRobot._pre_step

    def hand_pre_step(self):
        force = getattr(self, "_grasp_force", None)
        if force is None or self._data is None:
            return pd_pre_step(self)
        dq = np.array([self._data.qvel[a] for a in self._finger_dof_addrs])
        # Each finger pushes inwards (towards q = 0) with the grasp force, braking only above the speed limit.
        tau = np.full(2, -min(force, limit_force))
        fast = (np.abs(dq) > self._hand_goal_velocity) & (np.sign(dq) == np.sign(tau))
        tau[fast] = -self._kv_hand[fast] * dq[fast]
        for i, dof in enumerate(self._finger_dof_addrs):
            self._data.qfrc_applied[dof] = tau[i]

    ms.FrankaMujocoRobot._pre_step = hand_pre_step

    start_grasp = fgs.FrankaGripperServer.start_grasp

    def grasp(self, width, speed, force, epsilon_inner, epsilon_outer, command_id, tcp_socket):
        start_grasp(self, width, speed, force, epsilon_inner, epsilon_outer, command_id, tcp_socket)
        self._robot._hand_goal_velocity = min(float(speed), limit_speed)
        self._robot._grasp_force = float(force)

    fgs.FrankaGripperServer.start_grasp = grasp
    for name in ("start_move", "start_homing", "stop"):
        original = getattr(fgs.FrankaGripperServer, name)

        def released(self, *args, _original=original, **kwargs):
            self._robot._grasp_force = None
            return _original(self, *args, **kwargs)

        setattr(fgs.FrankaGripperServer, name, released)

    # A grasp that holds force never "settles" in the original sense when the object keeps moving a few µm;
    # settle on the width only, as before, but keep holding afterwards (the force stays on in hand_pre_step).

    # --- 4. faults and external wrench, overlaid on the state the server sends ---
    state_prop = frs.FrankaRobotServer.robot_state

    def robot_state(self):
        state = state_prop.fget(self)
        overlay = getattr(self, "lastr1_overlay", None)
        return state.replace(**overlay) if overlay else state

    frs.FrankaRobotServer.robot_state = property(robot_state)

    move_handle = frp.MoveCommand.handle

    def move(self, server):
        if getattr(server, "lastr1_reflex", None):
            # Like a robot in Reflex mode: no motion until the operator (or the driver) recovers.
            self.reply(frp.MoveStatus.kCommandNotPossibleRejected)
            return
        move_handle(self, server)

    frp.MoveCommand.handle = move

    def recover(self, server):
        clear_reflex(server)
        self.reply(frp.AutomaticErrorRecoveryStatus.kSuccess)

    frp.AutomaticErrorRecoveryCommand.handle = recover
    _applied = True


def inject_reflex(server, error: str = "cartesian_reflex") -> None:
    """Abort the running motion as a reflex would. Call from the simulation thread (a step callback)."""
    from franky_sim import franka_robot_protocol as frp
    from franky_sim.franka_server import BaseCommand

    if error not in ERROR_NAMES:
        raise ValueError(f"unknown franka error {error!r}; one of {', '.join(ERROR_NAMES)}")
    bits = tuple(name == error for name in ERROR_NAMES)
    server.lastr1_reflex = error
    overlay = dict(getattr(server, "lastr1_overlay", None) or {})
    overlay.update(errors=bits, reflex_reason=bits, robot_mode=frp.RobotMode.kReflex)
    server.lastr1_overlay = overlay
    motion_id = server.current_motion_id
    server.stop_motion(send_preemption_signal=False)
    if motion_id and server._tcp_socket is not None:
        BaseCommand.send_response(server._tcp_socket, frp.RobotCommand.kMove, motion_id, frp.MoveStatus.kReflexAborted)
    server.reset_current_motion_id()


def clear_reflex(server) -> None:
    server.lastr1_reflex = None
    overlay = dict(getattr(server, "lastr1_overlay", None) or {})
    for key in ("errors", "reflex_reason", "robot_mode"):
        overlay.pop(key, None)
    server.lastr1_overlay = overlay


def set_wrench(server, wrench: np.ndarray) -> None:
    """Report this external wrench (base frame, N and Nm) in O_F_ext_hat_K."""
    overlay = dict(getattr(server, "lastr1_overlay", None) or {})
    w = tuple(float(v) for v in wrench)
    if any(w):
        overlay["O_F_ext_hat_K"] = w
    else:
        overlay.pop("O_F_ext_hat_K", None)
    server.lastr1_overlay = overlay
