"""The simulated tasks: their objects, how a seed places them, when they are solved, and a scripted expert.

Pure numpy + ElementTree: the host builds the MuJoCo scene from `build()`, the env side (no MuJoCo needed)
uses the same class to judge success and to compute the expert's action from the scene state.

Frames: the world frame is the floor under robot0's base; arm `i`'s base sits at `robot_positions[i]` with no
rotation, so a world point is `base_position + position_in_base`. Quaternions are xyzw everywhere.

Tasks (configs/sim_insert_hex.yaml, configs/sim_lift_bar.yaml):

- `sim_insert_hex` — the paper's single-arm "insert hexagon block": a hexagonal peg (3.1 cm across flats)
  goes into a hexagonal hole in a fixture whose position is random per seed. Solved when the peg's bottom is
  `insert_depth_m` below the fixture top, inside the hole, and upright. Difficulty: `slot_range_m` (how far
  the fixture moves), `slot_clearance_m` (the play in the hole), `slot_yaw_range_rad`, `peg_start`
  ("hand": the episode starts with the peg grasped — short and learnable; "table": pick it up first).
- `sim_lift_bar` — a dual-arm task in the spirit of the paper's two-arm ones: two arms side by side grasp the
  two ends of a 48-cm bar and lift it together, level. Solved when the bar is `lift_height_m` up and tilted
  by less than `max_tilt_rad`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from lastr1.robot import rotations

# ---------------------------------------------------------------- geometry (xyzw quaternions, robot.rotations)


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    return rotations.from_rpy(np.array([roll, pitch, yaw]))


def rotate(q, v) -> np.ndarray:
    """Vector v rotated by quaternion q."""
    qv = np.array([v[0], v[1], v[2], 0.0])
    return rotations.multiply(rotations.multiply(q, qv), rotations.conjugate(q))[:3]


def tilt(q) -> float:
    """Angle (rad) between the body z axis and the world z axis."""
    return math.acos(float(np.clip(rotate(q, [0, 0, 1])[2], -1.0, 1.0)))


def yaw_of(q) -> float:
    x = rotate(q, [1, 0, 0])
    return math.atan2(x[1], x[0])


def wrap(a: float, period: float) -> float:
    """a wrapped to [-period/2, period/2)."""
    return (a + period / 2) % period - period / 2


# ---------------------------------------------------------------- helpers


def _pose(p, q=(0, 0, 0, 1)) -> list[float]:
    return [float(v) for v in (*p, *q)]


def _mj_quat(q) -> str:
    """xyzw → MuJoCo's wxyz attribute string."""
    return f"{q[3]} {q[0]} {q[1]} {q[2]}"


def _free_body(worldbody, name: str, rgba: str, geoms: list[dict], mass: float) -> ET.Element:
    body = ET.SubElement(worldbody, "body", name=name, pos="2 2 0.1")  # off the table until a reset
    ET.SubElement(body, "freejoint", name=f"{name}_joint")
    for g in geoms:
        ET.SubElement(body, "geom", rgba=rgba, mass=str(mass / len(geoms)), condim="4", friction="1.2 0.01 0.001",
                      solref="0.004 1", **g)
    return body


@dataclass
class ExpertTarget:
    """Where one arm should go next (base frame) and what its gripper should do (+1 close / -1 open)."""

    position: np.ndarray
    quaternion: np.ndarray
    gripper: float


# ---------------------------------------------------------------- the task base


class SimTask:
    name = ""
    n_arms = 1
    robot_positions: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
    # World cameras: name → (position, look-at point), world frame.
    world_cameras: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    objects: tuple[str, ...] = ()  # free bodies whose poses the host reports
    fixtures: tuple[str, ...] = ()  # mocap bodies the host teleports at reset

    def __init__(self, sim_cfg):
        self.cfg = sim_cfg

    def build(self, worldbody: ET.Element) -> None:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> dict:
        """{"objects": {name: pose7}, "fixtures": {name: pose7}, "params": {...}, "grasped": {arm: object}}."""
        raise NotImplementedError

    def success(self, scene: dict) -> bool:
        raise NotImplementedError

    def failure(self, scene: dict) -> bool:
        return False

    def expert_targets(self, scene: dict, states) -> list[ExpertTarget]:
        raise NotImplementedError

    def assets(self) -> list[tuple[str, dict]]:
        """MJCF <asset> children the task's bodies use (meshes, textures, materials)."""
        return []

    def hand_offset(self, obj: str) -> np.ndarray:
        """Where a grasped object's centre sits relative to the TCP, in the TCP frame (z points down)."""
        raise NotImplementedError(f"{self.name} places no object in the hand")

    def world(self, arm: int, p) -> np.ndarray:
        return np.asarray(p, float) + np.asarray(self.robot_positions[arm], float)

    def base(self, arm: int, p) -> np.ndarray:
        return np.asarray(p, float) - np.asarray(self.robot_positions[arm], float)


def _table(worldbody, center=(0.5, 0.0), half=(0.35, 0.6)) -> None:
    # A light table top flush with the floor, so the objects stand out in 128-px images.
    # Visual only (the floor plane does the contacts); 1.5 mm above the floor so the two never z-fight.
    ET.SubElement(worldbody, "geom", name="table", type="box", size=f"{half[0]} {half[1]} 0.005",
                  pos=f"{center[0]} {center[1]} -0.0035", rgba="0.78 0.72 0.62 1", contype="0", conaffinity="0")


# ---------------------------------------------------------------- insert hexagon block

PEG_R = 0.018  # circumradius (m): 3.1 cm across flats, a block a Franka Hand grasps easily
PEG_H = 0.07
PEG_MASS = 0.06
GRIP_BELOW_TOP = 0.02  # the fingertips hold the peg this far below its top
FIX_H = 0.04  # fixture height: the hole is this deep (through to the table)
FIX_WALL = 0.025


class InsertHex(SimTask):
    name = "sim_insert_hex"
    n_arms = 1
    robot_positions = [(0.0, 0.0, 0.0)]
    world_cameras = {"front": ((1.1, 0.30, 0.6), (0.45, 0.0, 0.1))}
    objects = ("peg",)
    fixtures = ("slot",)
    slot_center = (0.50, 0.0)

    @property
    def apothem(self) -> float:
        return PEG_R * math.cos(math.pi / 6)

    @property
    def hole_apothem(self) -> float:
        return self.apothem + self.cfg.slot_clearance_m

    def build(self, worldbody: ET.Element) -> None:
        _table(worldbody)
        # The peg is the convex mesh from assets(): flats face ±y, so fingers closing along y grip two flats.
        _free_body(worldbody, "peg", "0.95 0.45 0.1 1", [{"type": "mesh", "mesh": "hex_peg"}], PEG_MASS)
        # The fixture: six walls around a hexagonal hole, on a mocap body so a reset can move it.
        slot = ET.SubElement(worldbody, "body", name="slot", mocap="true", pos="0.5 0 0")
        a_h, t = self.hole_apothem, FIX_WALL
        half_len = (a_h + t) * math.tan(math.pi / 6)
        for k in range(6):
            n = math.pi / 6 + k * math.pi / 3  # outward normal of hole edge k
            c = (a_h + t / 2)
            q = quat_from_rpy(0, 0, n)
            ET.SubElement(slot, "geom", type="box", size=f"{t / 2} {half_len} {FIX_H / 2}",
                          pos=f"{c * math.cos(n)} {c * math.sin(n)} {FIX_H / 2}", quat=_mj_quat(q),
                          rgba="0.2 0.35 0.75 1", friction="0.6 0.01 0.001")

    def assets(self) -> list[tuple[str, dict]]:
        verts = []
        for z in (-PEG_H / 2, PEG_H / 2):
            for k in range(6):
                a = k * math.pi / 3
                verts += [PEG_R * math.cos(a), PEG_R * math.sin(a), z]
        return [("mesh", {"name": "hex_peg", "vertex": " ".join(f"{v:.6f}" for v in verts)})]

    def sample(self, rng: np.random.Generator) -> dict:
        rx, ry = self.cfg.slot_range_m
        slot_xy = np.array(self.slot_center) + rng.uniform([-rx, -ry], [rx, ry])
        slot_yaw = float(rng.uniform(-1, 1) * self.cfg.slot_yaw_range_rad)
        out: dict[str, Any] = {
            "fixtures": {"slot": _pose([*slot_xy, 0.0], quat_from_rpy(0, 0, slot_yaw))},
            "params": {"slot_xy": slot_xy.tolist(), "slot_yaw": slot_yaw},
            "grasped": {},
        }
        if self.cfg.peg_start == "hand":
            out["objects"] = {}  # placed in the hand by the host after the arm is home
            out["grasped"] = {0: "peg"}
        else:
            while True:
                peg_xy = rng.uniform([0.36, -0.16], [0.60, 0.16])
                if np.linalg.norm(peg_xy - slot_xy) > 0.14:
                    break
            out["objects"] = {"peg": _pose([*peg_xy, PEG_H / 2])}
        return out

    def hand_offset(self, obj: str) -> np.ndarray:
        """Where a grasped object's centre sits relative to the TCP, in the TCP frame (z points down)."""
        return np.array([0.0, 0.0, PEG_H / 2 - GRIP_BELOW_TOP])

    # -- judging

    def _peg(self, scene):
        pose = np.asarray(scene["objects"]["peg"], float)
        p, q = pose[:3], pose[3:]
        bottom = p - rotate(q, [0, 0, PEG_H / 2])
        return p, q, bottom

    def inserted_depth(self, scene) -> float:
        _, _, bottom = self._peg(scene)
        return FIX_H - float(bottom[2])

    def success(self, scene: dict) -> bool:
        p, q, bottom = self._peg(scene)
        slot_xy = np.asarray(scene["params"]["slot_xy"])
        inside = np.linalg.norm(bottom[:2] - slot_xy) <= self.hole_apothem
        deep = bottom[2] <= FIX_H - self.cfg.insert_depth_m
        return bool(inside and deep and tilt(q) <= 0.3)

    def failure(self, scene: dict) -> bool:
        p, q, _ = self._peg(scene)
        fell_over = tilt(q) > math.radians(50)
        gone = p[2] < -0.05 or np.linalg.norm(p[:2]) > 1.0
        return bool((fell_over or gone) and not self.success(scene))

    # -- the scripted expert

    def _held(self, scene, state) -> bool:
        p, q, _ = self._peg(scene)
        grip_point = p + rotate(q, [0, 0, PEG_H / 2 - GRIP_BELOW_TOP])
        near = np.linalg.norm(grip_point - self.world(0, state.position)) < 0.02
        width = state.gripper_width
        return bool(near and 2 * self.apothem - 0.006 < width < 2 * self.apothem + 0.004)

    def expert_targets(self, scene: dict, states) -> list[ExpertTarget]:
        s = states[0]
        tcp = self.world(0, s.position)
        p, q, bottom = self._peg(scene)
        slot_xy = np.asarray(scene["params"]["slot_xy"])
        # Keep the gripper pointing down; turn its yaw to the slot's (the hexagon repeats every 60°).
        slot_yaw = float(scene["params"].get("slot_yaw", 0.0))
        cur_yaw = yaw_of(s.quaternion)
        yaw = cur_yaw + wrap(slot_yaw - cur_yaw, math.pi / 3)
        down = quat_from_rpy(math.pi, 0, yaw)
        if self._held(scene, s):
            e = slot_xy - bottom[:2]
            dist = float(np.linalg.norm(e))
            safe_z = FIX_H + 0.02 + (PEG_H - GRIP_BELOW_TOP)  # peg bottom 2 cm above the fixture
            clear_z = FIX_H + 0.005 + (PEG_H - GRIP_BELOW_TOP)  # peg bottom 5 mm above the fixture top
            # Aligned well inside the play of the hole: go down (a looser hole lets the descent start sooner).
            aligned = dist <= max(0.003, 0.5 * self.cfg.slot_clearance_m)
            if not aligned and tcp[2] < safe_z - 0.01 and dist > 0.03:
                target = [tcp[0], tcp[1], safe_z]  # just picked up, far from the slot: straight up first
            elif not aligned and dist > 0.03:  # travel at the safe height (down to it or up to it)
                target = [tcp[0] + e[0], tcp[1] + e[1], safe_z]
            elif not aligned:
                # Close but off: slide over at the height it is at, only lifting the peg clear of the fixture
                # top, as a person nudges a peg that landed beside the hole (not back up to the travel height:
                # a policy that sees 16 tokens per camera cannot tell that from the nearly-aligned descent).
                target = [tcp[0] + e[0], tcp[1] + e[1], max(min(tcp[2], safe_z), clear_z)]
            else:
                target = [tcp[0] + e[0], tcp[1] + e[1], (PEG_H - GRIP_BELOW_TOP) + 0.008]  # bottom 8 mm up
            return [ExpertTarget(self.base(0, target), down, 1.0)]
        # Not holding it: open, hover above the peg, descend, close.
        grip_point = p + np.array([0, 0, PEG_H / 2 - GRIP_BELOW_TOP])
        above = grip_point + np.array([0, 0, 0.08])
        xy_err = np.linalg.norm(grip_point[:2] - tcp[:2])
        width = s.gripper_width
        closed_on_nothing = width < 2 * self.apothem - 0.006
        if closed_on_nothing:
            return [ExpertTarget(self.base(0, [tcp[0], tcp[1], max(tcp[2], above[2])]), down, -1.0)]
        if xy_err > 0.006:
            z = max(min(tcp[2], above[2]), grip_point[2] + 0.04) if xy_err < 0.03 else above[2]
            return [ExpertTarget(self.base(0, [grip_point[0], grip_point[1], z]), down, -1.0)]
        if tcp[2] - grip_point[2] > 0.006:
            return [ExpertTarget(self.base(0, grip_point), down, -1.0)]
        return [ExpertTarget(self.base(0, grip_point), down, 1.0)]


# ---------------------------------------------------------------- dual arm: lift a bar

BAR_HALF = (0.015, 0.24, 0.025)  # 3 cm wide (fits the hand), 48 cm long, 5 cm tall
BAR_GRIP_BELOW_TOP = 0.015  # fingertip pads (±8.5 mm about the TCP) stay clear of the table
BAR_MASS = 0.4
BAR_GRIP = 0.17  # grasp points at ±17 cm from the centre along the bar
# The last few cm above the grasp height at a crawl. At full steps (2 cm) the arm arrives fast, lags its targets
# and keeps going: when the sim runs near real time and the 10-Hz loop is late (two sim hosts on 2 cores), it
# overshot the grasp height (3.5 cm above the table) into the table at 200-300 N, and the force limit then held
# both arms for good. The crawl removes the overshoot at the grasp; an arm still fast when it enters the 3-cm
# zone on a starved machine can still carry through it (2 of 3 full-suite runs still failed that way).
BAR_APPROACH_SLOW = 0.03
BAR_APPROACH_STEP = 0.005


class LiftBar(SimTask):
    name = "sim_lift_bar"
    n_arms = 2
    robot_positions = [(0.0, -0.3, 0.0), (0.0, 0.3, 0.0)]
    world_cameras = {"front": ((1.25, 0.0, 0.6), (0.35, 0.0, 0.12))}
    objects = ("bar",)
    fixtures = ()

    def build(self, worldbody: ET.Element) -> None:
        _table(worldbody, center=(0.5, 0.0), half=(0.35, 0.7))
        _free_body(worldbody, "bar", "0.25 0.6 0.3 1",
                   [{"type": "box", "size": " ".join(str(v) for v in BAR_HALF)}], BAR_MASS)

    def sample(self, rng: np.random.Generator) -> dict:
        rx, ry = self.cfg.slot_range_m
        xy = np.array([0.45, 0.0]) + rng.uniform([-rx, -ry], [rx, ry]) * 0.5
        yaw = float(rng.uniform(-1, 1) * self.cfg.slot_yaw_range_rad)
        return {"objects": {"bar": _pose([*xy, BAR_HALF[2]], quat_from_rpy(0, 0, yaw))},
                "fixtures": {}, "params": {"bar_xy": xy.tolist(), "bar_yaw": yaw}, "grasped": {}}

    def _bar(self, scene):
        pose = np.asarray(scene["objects"]["bar"], float)
        return pose[:3], pose[3:]

    def grip_points(self, scene) -> list[np.ndarray]:
        p, q = self._bar(scene)
        axis = rotate(q, [0, 1, 0])
        up = rotate(q, [0, 0, BAR_HALF[2] - BAR_GRIP_BELOW_TOP])
        return [p - axis * BAR_GRIP + up, p + axis * BAR_GRIP + up]  # arm0 sits at -y, arm1 at +y

    def success(self, scene: dict) -> bool:
        p, q = self._bar(scene)
        axis = rotate(q, [0, 1, 0])
        level = math.asin(min(1.0, abs(axis[2]))) <= self.cfg.max_tilt_rad
        return bool(p[2] >= BAR_HALF[2] + self.cfg.lift_height_m and level)

    def failure(self, scene: dict) -> bool:
        p, q = self._bar(scene)
        axis = rotate(q, [0, 1, 0])
        return bool(math.asin(min(1.0, abs(axis[2]))) > math.radians(35) or p[2] < -0.05)

    def _held(self, scene, states, i) -> bool:
        gp = self.grip_points(scene)[i]
        near = np.linalg.norm(gp - self.world(i, states[i].position)) < 0.025
        w = states[i].gripper_width
        return bool(near and 2 * BAR_HALF[0] - 0.006 < w < 2 * BAR_HALF[0] + 0.004)

    def expert_targets(self, scene: dict, states) -> list[ExpertTarget]:
        p, q = self._bar(scene)
        bar_yaw = yaw_of(q)
        held = [self._held(scene, states, i) for i in range(2)]
        out = []
        for i, s in enumerate(states):
            tcp = self.world(i, s.position)
            cur_yaw = yaw_of(s.quaternion)
            # Fingers close along the hand's y axis: turn it across the bar (bar yaw + 90°, modulo 180°).
            yaw = cur_yaw + wrap(bar_yaw + math.pi / 2 - cur_yaw, math.pi)
            down = quat_from_rpy(math.pi, 0, yaw)
            gp = self.grip_points(scene)[i]
            if all(held):
                target = [tcp[0], tcp[1], BAR_HALF[2] + self.cfg.lift_height_m + 0.04]
                out.append(ExpertTarget(self.base(i, target), down, 1.0))
                continue
            if held[i]:  # wait for the other arm, gripping
                out.append(ExpertTarget(s.position, down, 1.0))
                continue
            above = gp + np.array([0, 0, 0.08])
            xy_err = np.linalg.norm(gp[:2] - tcp[:2])
            if s.gripper_width < 2 * BAR_HALF[0] - 0.006:  # closed on nothing
                out.append(ExpertTarget(self.base(i, [tcp[0], tcp[1], max(tcp[2], above[2])]), down, -1.0))
            elif xy_err > 0.006:
                z = max(min(tcp[2], above[2]), gp[2] + 0.04) if xy_err < 0.03 else above[2]
                out.append(ExpertTarget(self.base(i, [gp[0], gp[1], z]), down, -1.0))
            elif tcp[2] - gp[2] > 0.006:
                z = max(gp[2], min(tcp[2] - BAR_APPROACH_STEP, gp[2] + BAR_APPROACH_SLOW))
                out.append(ExpertTarget(self.base(i, [gp[0], gp[1], z]), down, -1.0))
            else:
                out.append(ExpertTarget(self.base(i, gp), down, 1.0))
        return out


TASKS: dict[str, type[SimTask]] = {t.name: t for t in (InsertHex, LiftBar)}


def make_task(name: str, sim_cfg) -> SimTask:
    from lastr1.robot.errors import RobotError

    if name not in TASKS:
        raise RobotError(f"no simulated task named {name!r}", hint=f"task.name must be one of {', '.join(TASKS)}")
    return TASKS[name](sim_cfg)
