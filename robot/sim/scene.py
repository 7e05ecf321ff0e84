"""The MuJoCo scene of a simulated task, the same for both simulated robots: franky-sim's Panda (FR3 MJCF and
meshes from the franky_sim package) at the task's base positions, the task's objects, the evaluation
conditions' looks and the cameras. The sim server (server.py, real time behind the FCI) and the lockstep
robot (robot/sim/lockstep.py, stepped in process) both build it here, so they differ only in who drives the arm.

Imports MuJoCo, franky_sim and pinocchio: only the processes that simulate import this module.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from lastr1.robot.sim import conditions
from lastr1.robot.sim.tasks import SimTask, quat_from_rpy

TCP_OFFSET = 0.1034  # franky-sim's TCP: 10.34 cm along the hand's z from the flange (RobotParameters)


def xyzw(wxyz) -> list[float]:
    return [float(wxyz[1]), float(wxyz[2]), float(wxyz[3]), float(wxyz[0])]


def wxyz(q) -> list[float]:
    return [float(q[3]), float(q[0]), float(q[1]), float(q[2])]


def _xyaxes(pos, target, up) -> str:
    """MuJoCo camera axes looking from pos at target (the camera looks along its -z, image up is +y)."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    x = np.cross(f, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, f)
    return " ".join(f"{v:.5f}" for v in (*x, *y))


def build(task: SimTask, spec: dict, kp=None, kv=None):
    """franky-sim's `MujocoSimulator` holding the whole scene, not started, and the arms' home joints.
    `spec`: the sim server's spec (robot/sim/client.py `server_spec`); kp/kv: franky-sim's joint gains."""
    from franky_sim.mujoco_simulator import MujocoSimulator

    from lastr1.robot.sim import patches

    patches.apply()  # the home IK needs kinematics by value (fix 1)
    sim = MujocoSimulator()
    sim.init()
    gains = {} if kp is None else {"kp": kp, "kv": kv}
    home_q = []
    for i in range(task.n_arms):
        robot = sim.add_robot(position=task.robot_positions[i], initial_hand_width=spec["open_widths"][i], **gains)
        xyz, rpy = spec["homes"][i]
        q = ik(robot, np.asarray(xyz, float), quat_from_rpy(*rpy), np.array(robot.initial_q))
        robot._initial_q = tuple(float(v) for v in q)  # start at home: no motion needed before the first reset
        home_q.append(q)
    cameras = _extend(sim, task, spec["cameras"])
    return sim, home_q, cameras


def ik(robot, p, q_xyzw, q_default, iters: int = 300) -> np.ndarray:
    """Joint angles for a TCP pose (base frame): damped least squares within the joint limits, started from
    franky-sim's default posture turned towards the target, so the arm takes the usual elbow-up branch."""
    import pinocchio as pin

    model = robot._BaseRobot__model  # franky-sim keeps its pinocchio model private
    lo, hi = model.lowerPositionLimit + 1e-3, model.upperPositionLimit - 1e-3
    R = pin.Quaternion(q_xyzw[3], *q_xyzw[:3]).toRotationMatrix()
    target = pin.SE3(R, p)
    yaw = math.atan2(R[1, 0], R[0, 0]) if abs(R[2, 2]) > 0.9 else 0.0
    q = np.array(q_default, float)
    q[0] = math.atan2(p[1], p[0])
    q[6] = q_default[6] + q[0] - yaw  # the TCP's yaw is q1 - (q7 - q7_default) when pointing down
    q = np.clip(q, lo, hi)
    err = np.full(6, np.inf)
    for _ in range(iters):
        cur = robot.kinematics(q)
        err = pin.log6(cur.inverse() * target).vector
        if np.linalg.norm(err) < 1e-7:
            return q
        J = np.empty((6, 7))
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = 1e-6
            J[:, j] = pin.log6(cur.inverse() * robot.kinematics(q + dq)).vector / 1e-6
        step = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), err)
        step *= min(1.0, 0.2 / (float(np.linalg.norm(step)) + 1e-12))
        q = np.clip(q + step, lo, hi)
    raise ValueError(f"home pose {p.tolist()} is out of the arm's reach (IK error {np.linalg.norm(err):.3g})")


def _extend(sim, task: SimTask, cameras: list[dict]) -> dict[str, tuple[int, int]]:
    """The task's objects, the conditions' looks and the cameras added to franky-sim's scene tree."""
    scene = sim.scene
    for light in scene.iter("light"):
        light.set("castshadow", "false")  # shadows cost more than the whole rest of a software render
    quality = scene.find("visual/quality")
    quality.set("shadowsize", "0")
    quality.set("offsamples", "2")
    # Several contact points per convex pair (not one): a peg pinched between two flat pads then resists
    # turning about the pads' normal, as a real one does, instead of pivoting on a single point.
    option = scene.find("option")
    if option is None:
        option = ET.SubElement(scene, "option")
    ET.SubElement(option, "flag", multiccd="enable")
    asset = scene.find("asset")
    for tag, attrs in task.assets():
        ET.SubElement(asset, tag, **attrs)
    task.build(sim.worldbody)
    conditions.build(asset, sim.worldbody, task.objects)  # evaluation conditions (Table 2)
    sizes = {}
    for cam in cameras:
        name = cam["name"]
        if name.startswith("wrist"):
            digits = "".join(ch for ch in name if ch.isdigit())
            arm = int(digits) if digits else 0
            if arm >= task.n_arms:
                raise ValueError(f"camera {name!r} names arm {arm}, the task has {task.n_arms}")
            hand = next(b for b in scene.iter("body") if b.get("name") == f"robot{arm}_hand")
            # Behind the fingers on the hand, looking down past the fingertips like a wrist-mounted D435.
            pos, target = (-0.075, 0.0, 0.03), (0.0, 0.0, TCP_OFFSET + 0.12)
            ET.SubElement(hand, "camera", name=name, pos=" ".join(map(str, pos)), fovy="75",
                          xyaxes=_xyaxes(pos, target, up=(-1.0, 0.0, 0.0)))
        elif name in task.world_cameras:
            pos, target = task.world_cameras[name]
            ET.SubElement(sim.worldbody, "camera", name=name, pos=" ".join(map(str, pos)), fovy="50",
                          xyaxes=_xyaxes(pos, target, up=(0.0, 0.0, 1.0)))
        else:
            raise ValueError(f"the simulated {task.name} has no camera {name!r}; "
                             f"use 'wrist', 'wrist<arm>' or one of {sorted(task.world_cameras)}")
        sizes[name] = (int(cam["width"]), int(cam["height"]))
    return sizes


def index(mj, m, task: SimTask, n_robots: int, collision_meshes: bool) -> SimpleNamespace:
    """Where the model keeps what both simulators address: each body's arm, the hands, the objects' free joints,
    the fixtures' mocap slots, the conditions' looks, and the render options (arm tinted when drawn with its
    collision meshes)."""
    robot_of_body = np.full(m.nbody, -1)
    for b in range(m.nbody):
        name = mj.mj_id2name(m, mj.mjtObj.mjOBJ_BODY, b) or ""
        for i in range(n_robots):
            if name.startswith(f"robot{i}_"):
                robot_of_body[b] = i
    hand_body = [mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, f"robot{i}_hand") for i in range(n_robots)]
    free = {}
    for name in task.objects:
        j = mj.mj_name2id(m, mj.mjtObj.mjOBJ_JOINT, f"{name}_joint")
        free[name] = (int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j]))
    mocap = {name: int(m.body_mocapid[mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, name)]) for name in task.fixtures}
    option = mj.MjvOption()
    if collision_meshes:
        # Collision meshes are drawn grey by default: tint the arm like the real one, the fingers dark.
        for g in range(m.ngeom):
            if m.geom_group[g] == 3 and robot_of_body[m.geom_bodyid[g]] >= 0:
                body = mj.mj_id2name(m, mj.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]) or ""
                m.geom_rgba[g] = (0.25, 0.25, 0.27, 1) if "finger" in body else (0.92, 0.92, 0.9, 1)
        option.geomgroup[:] = [1, 1, 0, 1, 0, 0]
    return SimpleNamespace(robot_of_body=robot_of_body, hand_body=hand_body, free=free, mocap=mocap,
                           appearance=conditions.Appearance(mj, m, task.objects), render_option=option)


def tcp(d, hand_body: int) -> tuple[np.ndarray, np.ndarray]:
    """The TCP's world position and xyzw orientation (the hand body is turned like franky-sim's TCP frame)."""
    R = d.xmat[hand_body].reshape(3, 3)
    return d.xpos[hand_body] + R[:, 2] * TCP_OFFSET, np.array(xyzw(d.xquat[hand_body]))


def place_in_hand(d, ix: SimpleNamespace, arm: int, name: str, offset: np.ndarray) -> None:
    """Hold object `name` between arm's fingers at `offset` (TCP frame), still."""
    from lastr1.robot import rotations

    p, q = tcp(d, ix.hand_body[arm])
    qa, da = ix.free[name]
    d.qpos[qa : qa + 3] = p + d.xmat[ix.hand_body[arm]].reshape(3, 3) @ offset
    # The peg stands upright (its z = the TCP's -z) with its flats facing the fingers.
    d.qpos[qa + 3 : qa + 7] = wxyz(rotations.multiply(q, np.array([1.0, 0.0, 0.0, 0.0])))
    d.qvel[da : da + 6] = 0.0


def contact_wrenches(mj, m, d, ix: SimpleNamespace, n: int) -> np.ndarray:
    """(n, 6) external force and torque (world frame, about each TCP) from contacts between each arm and
    anything that is not itself: what the FCI's O_F_ext_hat_K estimates on the real arm."""
    out = np.zeros((n, 6))
    tcps = [tcp(d, ix.hand_body[i])[0] for i in range(n)]
    buf = np.zeros(6)
    for k in range(d.ncon):
        c = d.contact[k]
        r1, r2 = ix.robot_of_body[m.geom_bodyid[c.geom1]], ix.robot_of_body[m.geom_bodyid[c.geom2]]
        if r1 == r2:
            continue
        mj.mj_contactForce(m, d, k, buf)
        f = c.frame.reshape(3, 3).T @ buf[:3]  # world frame, the force geom1 exerts on geom2
        for r, sign in ((r1, -1.0), (r2, 1.0)):
            if r >= 0:
                out[r, :3] += sign * f
                out[r, 3:] += np.cross(c.pos - tcps[r], sign * f)
    return out


def contact_forces(mj, m, d, ix: SimpleNamespace, n: int) -> np.ndarray:
    """(n,) the norm of the contact force on each arm: `contact_wrenches`' force, without its torques and
    vectorised (~8× faster with a grasped peg's ~30 contacts), for measuring every physics step."""
    out = np.zeros((n, 3))
    if d.ncon == 0:
        return np.zeros(n)
    con = d.contact
    r1, r2 = ix.robot_of_body[m.geom_bodyid[con.geom1]], ix.robot_of_body[m.geom_bodyid[con.geom2]]
    keep = np.flatnonzero(r1 != r2)
    local, buf = np.zeros((keep.size, 3)), np.zeros(6)
    for j, k in enumerate(keep):
        mj.mj_contactForce(m, d, int(k), buf)
        local[j] = buf[:3]
    f = np.einsum("kji,kj->ki", con.frame[keep].reshape(-1, 3, 3), local)  # world frame, geom1 on geom2
    for r, sign in ((r1[keep], -1.0), (r2[keep], 1.0)):
        mine = r >= 0
        np.add.at(out, r[mine], sign * f[mine])
    return np.linalg.norm(out, axis=1)


def reset_objects(d, ix: SimpleNamespace, objects: dict, fixtures: dict) -> None:
    """Objects and fixtures teleported to their poses (xyzw); unused objects wait off the table."""
    for k, name in enumerate(ix.free):
        qa, da = ix.free[name]
        pose = objects.get(name, [2.0 + 0.2 * k, 2.0, 0.05, 0, 0, 0, 1])
        d.qpos[qa : qa + 3] = pose[:3]
        d.qpos[qa + 3 : qa + 7] = wxyz(pose[3:])
        d.qvel[da : da + 6] = 0.0
    for name, i in ix.mocap.items():
        if name in fixtures:
            d.mocap_pos[i] = fixtures[name][:3]
            d.mocap_quat[i] = wxyz(fixtures[name][3:])


def object_poses(qpos, mpos, mquat, ix: SimpleNamespace) -> tuple[dict, dict]:
    """{name: pose7 xyzw} of the free objects and of the fixtures."""
    objects = {n: [*qpos[qa : qa + 3].tolist(), *xyzw(qpos[qa + 3 : qa + 7])] for n, (qa, _) in ix.free.items()}
    fixtures = {n: [*mpos[i].tolist(), *xyzw(mquat[i])] for n, i in ix.mocap.items()}
    return objects, fixtures


class Probe:
    """What the physics did, per arm, since it started (both simulated robots measure with it, every physics
    step, from MuJoCo's own state and not from what a driver reports): the TCP's worst distance outside a box
    (base frame), the peak contact force on the arm, and the longest run of simulated time above a force limit.
    The force is the norm of `contact_wrenches`' force on each arm: the sim server refreshes it every 10 physics
    ticks, the lockstep robot every step (`contact_forces`)."""

    def __init__(self, bases: Sequence, lo, hi, max_force_n: float):
        n = len(bases)
        self.bases = [np.asarray(b, np.float64) for b in bases]
        self.lo, self.hi, self.limit = np.asarray(lo, np.float64), np.asarray(hi, np.float64), float(max_force_n)
        self.excursion = np.zeros(n)
        self.peak_force = np.zeros(n)
        self.longest = np.zeros(n)
        self.since: list[float | None] = [None] * n
        self.ticks = 0

    def step(self, d, ix: SimpleNamespace, force: np.ndarray | None) -> None:
        """One physics step: `force` (n,) the contact force on each arm now (None: no estimate, taken as 0)."""
        self.ticks += 1
        t = float(d.time)
        for i, base in enumerate(self.bases):
            p = tcp(d, ix.hand_body[i])[0] - base
            self.excursion[i] = max(self.excursion[i], float(np.linalg.norm(p - np.clip(p, self.lo, self.hi))))
            f = float(force[i]) if force is not None else 0.0
            self.peak_force[i] = max(self.peak_force[i], f)
            if f > self.limit:
                since = self.since[i]
                if since is None:
                    since = self.since[i] = t
                self.longest[i] = max(self.longest[i], t - since)
            else:
                self.since[i] = None

    def report(self, d, ix: SimpleNamespace) -> dict:
        """{"excursion_m", "force_hold_s", "peak_force_n": per arm; "ticks"; "tcp": per arm xyz + xyzw now}."""
        poses = [tcp(d, ix.hand_body[i]) for i in range(len(self.bases))]
        return {"excursion_m": self.excursion.tolist(), "force_hold_s": self.longest.tolist(),
                "peak_force_n": self.peak_force.tolist(), "ticks": self.ticks,
                "tcp": [[*(p - b).tolist(), *q.tolist()] for (p, q), b in zip(poses, self.bases)]}
