"""The lockstep simulated robot (`robot.kind: lockstep`): the sim server's scene, stepped in this process.

    env = make_env(cfg)           # cfg.robot.kind: lockstep
    obs = env.reset(seed=3)       # same tasks, randomisation, cameras, success, expert and operator as `sim`
    obs, info = env.step(action)  # exactly one control period (1 / task.control_hz) of simulated time

The same MuJoCo scene as the franky-sim robot (robot/sim/scene.py builds both), the same action semantics
(normalised deltas → the same `Safety` → absolute Cartesian targets), but no franky, no FCI, no server
process and no wall clock: `LockstepEnv.act` runs the physics for one control period before it returns. The
arm follows each target as franky's Cartesian motion would — a time-optimal reference with franky's velocity
and acceleration limits (× `relative_dynamics_factor`), pre-empted by the next target — tracked by a
Cartesian impedance controller on MuJoCo's Jacobian with gravity and Coriolis compensation. The hand closes
until contact and then holds its grasp force, as the patched franky-sim hand does (robot/sim/patches.py).

Differences from `sim`, by design: the reference has no jerk limit (franky's, scaled, is reached in ~2 ms);
a hand command takes effect at once (franky's hand worker finishes a running grasp first); the arm is an
impedance (20 kN/m: 1-3 mm behind the reference while it accelerates, 50 N at 2.5 mm of contact), not
franky-sim's stiff joint servo; `stall` freezes physics for whole control periods and reset/settling take
simulated time only. The expert's paths on the two differ by ≤ 2 cm (tests/test_sim_backends.py).
Deterministic: the same seed gives bit-identical observations, in one process or across processes.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from lastr1.robot import rotations
from lastr1.robot.arm import Arm, ArmState
from lastr1.robot.camera import Camera, Frame
from lastr1.robot.env import RobotEnv
from lastr1.robot.errors import ArmFault, DeviceNotFound, StaleFrameError
from lastr1.robot.interfaces import Observation
from lastr1.robot.sim.scene import TCP_OFFSET, Probe
from lastr1.robot.sim.world import SimScene

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.robot.safety import Safety
    from lastr1.robot.sim.tasks import SimTask

# FR3 Cartesian limits (franky's defaults), scaled by each arm's relative_dynamics_factor as franky does.
TRANSLATION_LIMITS = (3.0, 9.0)  # m/s, m/s²
ROTATION_LIMITS = (2.5, 17.0)  # rad/s, rad/s²
HAND_FORCE_LIMIT, HAND_SPEED_LIMIT = 70.0, 0.05  # N per finger, m/s (franky-sim's Franka Hand)
HAND_KP, HAND_KV = 1000.0, 50.0


class Reference:
    """Where franky's motion generator would have the TCP now: moves towards the latest target at the
    fastest speed that can still brake in time, within velocity and acceleration limits; a new target
    pre-empts the old one without a jump in velocity. Quaternions are MuJoCo's wxyz here; the angular
    velocity is in the reference's own frame (a rotation's axis is the same in both)."""

    def __init__(self, mj, p: np.ndarray, q_xyzw: np.ndarray, scale: float):
        self.mj = mj
        self.p, self.q = p.copy(), _wxyz(q_xyzw)
        self.v, self.w = np.zeros(3), np.zeros(3)
        self.target_p, self.target_q = self.p.copy(), self.q.copy()
        self.vmax, self.amax = (x * scale for x in TRANSLATION_LIMITS)
        self.wmax, self.alpha = (x * scale for x in ROTATION_LIMITS)
        self._e = np.zeros(3)

    def aim(self, p: np.ndarray, q_xyzw: np.ndarray) -> None:
        self.target_p, self.target_q = np.asarray(p, np.float64).copy(), _wxyz(q_xyzw)

    def stop(self) -> None:
        """Brake to rest on the current path, as franky's stop() does."""
        self.target_p = self.p + self.v * (_norm(self.v) / (2 * self.amax))
        self.target_q = self.q.copy()
        self.mj.mju_quatIntegrate(self.target_q, self.w, _norm(self.w) / (2 * self.alpha))

    def advance(self, dt: float) -> None:
        self.v = _approach(self.v, self.target_p - self.p, self.vmax, self.amax, dt)
        self.p = self.p + self.v * dt
        self.mj.mju_subQuat(self._e, self.target_q, self.q)
        self.w = _approach(self.w, self._e, self.wmax, self.alpha, dt)
        self.mj.mju_quatIntegrate(self.q, self.w, dt)

    def settled(self) -> bool:
        self.mj.mju_subQuat(self._e, self.target_q, self.q)
        return _norm(self.target_p - self.p) < 1e-4 and _norm(self.v) < 1e-3 and _norm(self._e) < 1e-3


def _norm(x: np.ndarray) -> float:
    return math.sqrt(float(x @ x))


def _wxyz(q) -> np.ndarray:
    q = np.asarray(q, np.float64)
    return np.array([q[3], q[0], q[1], q[2]]) / _norm(q)


def _approach(v: np.ndarray, e: np.ndarray, vmax: float, amax: float, dt: float) -> np.ndarray:
    d = _norm(e)
    want = e * (min(vmax, math.sqrt(2 * amax * d), d / dt) / d) if d > 1e-12 else np.zeros(3)
    dv = want - v
    n = _norm(dv)
    return v + (dv * (amax * dt / n) if n > amax * dt else dv)


class World:
    """The MuJoCo model and data of one task, its arms' controllers and what a sim server would answer
    (scene, reset, pin, fault, probe, ...), in process. `advance()` is the only thing that moves time."""

    proc = None  # no server process (what the fleet watches of a `sim` robot's SimServer)

    def __init__(self, cfg: Config, task: SimTask):
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco
        from franky_sim.mujoco_simulator import _get_finger_addresses, _get_joint_addresses

        from lastr1.robot.sim import scene

        self.mj, self.task, self.cfg = mujoco, task, cfg
        self.scene_mod = scene
        r = cfg.robot
        # What scene.build needs of the sim server's spec (robot/sim/client.py server_spec): no FCI hosts here.
        self.spec: dict = {
            "homes": [[list(a.home_xyz), list(a.home_rpy)] for a in r.arms[: task.n_arms]],
            "open_widths": [a.gripper_open_width for a in r.arms[: task.n_arms]],
            "cameras": [{"name": c.name, "width": r.sim.render_width, "height": r.sim.render_height}
                        for c in r.cameras],
        }
        sim, self.home_q, self.cameras = scene.build(task, self.spec)
        self.robots = list(sim.robots)
        m = self.model = mujoco.MjModel.from_xml_string(_xml(sim))
        m.opt.timestep = cfg.robot.lockstep.physics_dt
        self.data = mujoco.MjData(m)
        self.ix = scene.index(mujoco, m, task, task.n_arms, cfg.robot.sim.render_collision_meshes)
        self.n = task.n_arms
        # franky-sim's arm and finger addresses (it finds them when it starts, which this never does).
        arm, hand = zip(*[(_get_joint_addresses(m, f"robot{i}_"), _get_finger_addresses(m, f"robot{i}_"))
                          for i in range(self.n)])
        self.qadr, self.dadr = [np.array(a[0]) for a in arm], [np.array(a[1]) for a in arm]
        self.fq, self.fd = [np.array(h[0]) for h in hand], [np.array(h[1]) for h in hand]
        self.tau_lo = np.asarray(self.robots[0].torque_limit_low)
        self.tau_hi = np.asarray(self.robots[0].torque_limit_high)
        self.base = [np.asarray(p, float) for p in task.robot_positions]
        self.info = {"cameras": list(self.cameras)}
        self.substeps = max(1, round(1.0 / (cfg.task.control_hz * m.opt.timestep)))
        self.period = self.substeps * m.opt.timestep
        self.clock = 0.0  # control time (s): advances by one period per `advance`, even while stalled
        self.steps = 0  # physics steps taken: a frame rendered at this count is current
        self.refs: list[Reference] = []
        self.closed = [False] * self.n  # hand command: closing with force (True) or opening (False)
        self.errors: list[list[str]] = [[] for _ in range(self.n)]
        self.wrench = np.zeros((self.n, 6))
        self._pins: dict[int, tuple[str, np.ndarray]] = {}
        self._stalled_until = -1.0
        self.dropped: dict[str, float] = {}
        self._renderers: dict = {}
        self._probe: Probe | None = None
        lc = cfg.robot.lockstep
        kp, kr, z = lc.stiffness_n_per_m, lc.stiffness_nm_per_rad, lc.damping_ratio
        self._gains = (kp, kr, 2 * z * math.sqrt(kp * lc.mass_kg), 2 * z * math.sqrt(kr * lc.inertia))
        self._kn, self._dn = lc.nullspace_stiffness, lc.joint_damping
        self._jac, self._A = np.zeros((6, m.nv)), np.zeros((6, 6))
        self._e, self._tmp, self._w, self._x = np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(6)
        # Each arm's 7 joints are consecutive in franky-sim's MJCF: slices index them without copies.
        self._dofs = [slice(int(a[0]), int(a[0]) + 7) for a in self.dadr]
        self._qs = [slice(int(a[0]), int(a[0]) + 7) for a in self.qadr]
        assert all(np.array_equal(np.arange(7) + a[0], a) for a in (*self.dadr, *self.qadr))
        self._eye = 1e-4 * np.eye(6)  # damping of the null-space projection near singularities
        self.condition("original")
        self.reset({}, {})

    # ------------------------------------------------------------ what the sim server would answer

    def condition(self, name: str) -> None:
        from lastr1.robot.sim import conditions

        if name not in conditions.CONDITIONS:
            raise ValueError(f"unknown condition {name!r}: one of {', '.join(conditions.CONDITIONS)}")
        self.ix.appearance.apply(name)

    def scene(self) -> dict:
        d = self.data
        objects, fixtures = self.scene_mod.object_poses(d.qpos, d.mocap_pos, d.mocap_quat, self.ix)
        return {"time": float(d.time), "objects": objects, "fixtures": fixtures,
                "widths": [self.width(i) for i in range(self.n)]}

    def reset(self, objects: dict, fixtures: dict) -> None:
        """Arms at their home joints with open hands, objects and fixtures at their poses, all at rest."""
        mj, m, d = self.mj, self.model, self.data
        self._pins.clear()
        for i in range(self.n):
            d.qpos[self.qadr[i]] = self.home_q[i]
            d.qpos[self.fq[i]] = self.spec["open_widths"][i] / 2
            d.qvel[self.dadr[i]] = 0.0
            d.qvel[self.fd[i]] = 0.0
            self.closed[i] = False
        self.scene_mod.reset_objects(d, self.ix, objects, fixtures)
        d.qacc_warmstart[:] = 0.0
        d.qfrc_applied[:] = 0.0
        mj.mj_forward(m, d)
        scale = [a.relative_dynamics_factor for a in self.cfg.robot.arms[: self.n]]
        self.refs = [Reference(mj, *self.tcp(i), scale[i]) for i in range(self.n)]
        self.wrench[:] = 0.0
        self.steps += 1  # the scene changed: frames rendered before are old

    def pin(self, obj: str, arm: int) -> None:
        self._pins[int(arm)] = (obj, np.asarray(self.task.hand_offset(obj), np.float64))

    def unpin(self) -> None:
        self._pins.clear()

    def probe(self, box_min, box_max, max_force_n: float) -> dict:
        """What the physics did since the last probe (scene.Probe: every physics step, the TCP from MuJoCo's own
        state against the box, the contact force on each arm against the limit); then watch again. The sim
        server's `probe` request, answered here."""
        old, self._probe = self._probe, Probe(self.base, box_min, box_max, max_force_n)
        return old.report(self.data, self.ix) if old is not None else {}

    def fault(self, kind: str, arm: int = 0, camera: str = "", seconds: float = 0.3,
              error: str = "cartesian_reflex") -> None:
        if kind == "reflex":
            self.errors[int(arm)] = [error]
            self.refs[int(arm)].stop()
        elif kind == "camera_drop":
            for n in [camera] if camera else list(self.cameras):
                if n not in self.cameras:
                    raise ValueError(f"no camera {n!r}")
                self.dropped[n] = self.clock + seconds
        elif kind == "stall":
            self._stalled_until = self.clock + seconds
        else:
            raise ValueError(f"unknown fault {kind!r}: reflex, camera_drop or stall")

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()  # their GL contexts
        self._renderers.clear()

    # ------------------------------------------------------------ arms

    def tcp(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Arm i's TCP in its base frame (xyzw; the bases are not rotated)."""
        p, q = self.scene_mod.tcp(self.data, self.ix.hand_body[i])
        return p - self.base[i], q

    def width(self, i: int) -> float:
        return float(np.sum(self.data.qpos[self.fq[i]]))

    def state(self, i: int) -> ArmState:
        p, q = self.tcp(i)
        return ArmState(position=p, quaternion=q, joints=self.data.qpos[self.qadr[i]].copy(),
                        gripper_width=self.width(i), wrench=self.wrench[i].copy(), errors=list(self.errors[i]),
                        timestamp=self.clock)

    # ------------------------------------------------------------ time

    def advance(self, seconds: float | None = None) -> None:
        """Run the physics for one control period (or `seconds`, rounded to physics steps)."""
        n = self.substeps if seconds is None else max(1, round(seconds / self.model.opt.timestep))
        if seconds is None:
            self.clock += self.period
            if self.clock <= self._stalled_until + 1e-9:
                return  # an injected stall: no physics, so no new frame either
        for _ in range(n):
            self._control()
            self.mj.mj_step(self.model, self.data)
            for arm, (name, offset) in self._pins.items():
                self.scene_mod.place_in_hand(self.data, self.ix, arm, name, offset)
            if self._probe is not None:
                self._probe.step(self.data, self.ix,
                                 self.scene_mod.contact_forces(self.mj, self.model, self.data, self.ix, self.n))
        if self.cfg.robot.sim.wrench_from_contacts:
            # Once at the end: the safety layer reads the latest estimate once per control period anyway.
            self.wrench = self.scene_mod.contact_wrenches(self.mj, self.model, self.data, self.ix, self.n)
        self.steps += 1

    def _control(self) -> None:
        """Cartesian impedance per arm: F = K (x_ref - x) + D (v_ref - v) at the TCP, τ = Jᵀ F + the null-space
        posture + gravity and Coriolis (MuJoCo's bias forces), within the FR3's torque limits."""
        mj, m, d = self.mj, self.model, self.data
        dt = m.opt.timestep
        kp, kr, dp, dr = self._gains
        jac, e, tmp, w_ref, A, x = self._jac, self._e, self._tmp, self._w, self._A, self._x
        for i in range(self.n):
            ref, dofs, qs, b = self.refs[i], self._dofs[i], self._qs[i], self.ix.hand_body[i]
            ref.advance(dt)
            p = d.xpos[b] + d.xmat[b].reshape(3, 3)[:, 2] * TCP_OFFSET
            mj.mj_jac(m, d, jac[:3], jac[3:], p, b)
            J = jac[:, dofs]
            dq = d.qvel[dofs]
            v = J @ dq
            mj.mju_subQuat(tmp, ref.q, d.xquat[b])  # rotation error in the hand frame
            mj.mju_rotVecQuat(e, tmp, d.xquat[b])
            mj.mju_rotVecQuat(w_ref, ref.w, ref.q)
            f = np.concatenate([kp * (ref.p + self.base[i] - p) + dp * (ref.v - v[:3]), kr * e + dr * (w_ref - v[3:])])
            # The home posture, held loosely in the task's null space (τ - Jᵀ(JJᵀ)⁻¹Jτ): it keeps the elbow where it
            # was without pulling the TCP off its reference.
            posture = self._kn * (self.home_q[i] - d.qpos[qs]) - self._dn * dq
            np.matmul(J, J.T, out=A)
            A += self._eye
            mj.mju_cholFactor(A, 0.0)
            mj.mju_cholSolve(x, A, J @ posture)
            tau = J.T @ (f - x) + posture + d.qfrc_bias[dofs]
            d.qfrc_applied[dofs] = np.clip(tau, self.tau_lo, self.tau_hi)
            self._hand(i)

    def _hand(self, i: int) -> None:
        d, fd = self.data, self.fd[i]
        dq = d.qvel[fd]
        force = min(self.cfg.robot.arms[i].gripper_force_n, HAND_FORCE_LIMIT)
        speed = min(self.cfg.robot.arms[i].gripper_speed, HAND_SPEED_LIMIT)
        if self.closed[i]:
            tau = np.full(2, -force)  # squeeze towards q = 0 and keep squeezing after contact
        else:
            tau = HAND_KP * (self.spec["open_widths"][i] / 2 - d.qpos[self.fq[i]]) - HAND_KV * dq
            tau = np.clip(tau, -HAND_FORCE_LIMIT, HAND_FORCE_LIMIT)
        fast = (np.abs(dq) > speed) & (np.sign(dq) == np.sign(tau))
        tau[fast] = -HAND_KV * dq[fast]  # the hand's speed limit
        d.qfrc_applied[fd] = tau

    def hand_moving(self, i: int) -> bool:
        return bool(np.any(np.abs(self.data.qvel[self.fd[i]]) > 1e-3))

    # ------------------------------------------------------------ cameras

    def render(self, name: str) -> np.ndarray:
        size = self.cameras[name]  # one renderer (and GL context) per image size, as in the sim server
        if size not in self._renderers:
            self._renderers[size] = self.mj.Renderer(self.model, size[1], size[0])
        r = self._renderers[size]
        r.update_scene(self.data, camera=name, scene_option=self.ix.render_option)
        return r.render()


def _xml(sim) -> str:
    """The scene's MJCF with franky-sim's actuators switched off: the controller applies joint torques."""
    import xml.etree.ElementTree as ET

    root = sim.scene
    for a in root.iter("actuator"):
        for act in list(a):
            a.remove(act)
    return ET.tostring(root, encoding="unicode")


class LockstepArm(Arm):
    """Arms `idx` of a `World` as one `Arm` (the whole for the env, one each for the grasp a task starts
    with). Moves only while the world advances; blocking calls (reset, a waited-for grasp) advance it."""

    def __init__(self, world: World, idx: list[int], cfg: Config):
        self.world, self.idx, self.n_arms = world, idx, len(idx)
        self.arms_cfg = [cfg.robot.arms[i] for i in idx]
        self.close_at, self.open_at = cfg.robot.gripper_close_at, cfg.robot.gripper_open_at

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def state(self) -> list[ArmState]:
        return [self.world.state(i) for i in self.idx]

    def move_to(self, positions: np.ndarray, quaternions: np.ndarray, grippers: np.ndarray) -> None:
        w = self.world
        faults = [f"arm{i}: motion aborted earlier: {'; '.join(w.errors[i])}" for i in self.idx if w.errors[i]]
        p = np.asarray(positions, np.float64).reshape(-1, 3)
        q = np.asarray(quaternions, np.float64).reshape(-1, 4)
        g = np.asarray(grippers, np.float64).reshape(-1)
        for k, i in enumerate(self.idx):
            if w.errors[i]:
                continue  # the other arms still get their targets, as with franky's MultiArm
            w.refs[i].aim(p[k], q[k])
            if math.isfinite(g[k]) and g[k] >= self.close_at:
                w.closed[i] = True
            elif math.isfinite(g[k]) and g[k] <= self.open_at:
                w.closed[i] = False
        if faults:
            raise ArmFault(faults[0], hint="call recover() before moving again")

    def stop(self) -> None:
        for i in self.idx:
            self.world.refs[i].stop()

    def recover(self) -> None:
        for i in self.idx:
            self.world.errors[i] = []

    def set_gripper(self, closed: bool, wait: bool = False, timeout: float = 5.0) -> None:
        for i in self.idx:
            self.world.closed[i] = closed
        if wait:
            self.wait_gripper(timeout)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Home (randomised like FrankyArm.home_pose, arm by arm) with open hands, in simulated time."""
        w = self.world
        for a, i in zip(self.arms_cfg, self.idx):
            p = np.array(a.home_xyz, dtype=np.float64)
            roll, pitch, yaw = a.home_rpy
            if rng is not None:
                p = p + rng.uniform(-1, 1, 3) * np.asarray(a.home_noise_xyz, dtype=np.float64)
                yaw = yaw + rng.uniform(-1, 1) * a.home_noise_yaw
            w.refs[i].aim(p, rotations.from_rpy(np.array([roll, pitch, yaw])))
            w.closed[i] = False

        if not self._advance_until(self._at_rest, self.arms_cfg[0].reset_timeout_s):
            raise ArmFault(f"the home motion did not finish in {self.arms_cfg[0].reset_timeout_s} s of simulated time",
                           hint="check nothing blocks the arm (robot.lockstep gains, the scene)")

    def join(self, timeout: float | None = None) -> bool:
        """Run the simulation until the arms rest on their targets (FrankyArm.join); False after `timeout`
        simulated seconds."""
        return self._advance_until(self._at_rest, 10.0 if timeout is None else timeout)

    def wait_gripper(self, timeout: float = 5.0) -> None:
        if not self._advance_until(lambda: not any(self.world.hand_moving(i) for i in self.idx), timeout):
            raise ArmFault(f"the hand did not finish within {timeout:.1f} s of simulated time",
                           hint="check nothing jams the fingers")

    def _at_rest(self) -> bool:
        w = self.world
        return all(w.refs[i].settled() and np.linalg.norm(w.tcp(i)[0] - w.refs[i].p) < 1e-3
                   and not w.hand_moving(i) for i in self.idx)

    def _advance_until(self, done, timeout: float) -> bool:
        """Advance the world in 10-ms slices until `done()`; False after `timeout` simulated seconds."""
        for _ in range(max(1, int(timeout / 0.01))):
            self.world.advance(0.01)
            if done():
                return True
        return False


class LockstepCamera(Camera):
    """A camera rendered on demand from the live simulation: each physics state is rendered once."""

    def __init__(self, world: World, name: str, max_age_ms: float):
        self.world, self.name, self.max_age_ms = world, name, max_age_ms
        self._frame: Frame | None = None
        self._at = -1  # the world's step count the frame shows
        self._number = 0

    def connect(self) -> None:
        if self.name not in self.world.cameras:
            raise DeviceNotFound(f"the lockstep scene renders no camera {self.name!r}",
                                 hint=f"cameras of this scene: {', '.join(self.world.cameras)}")

    def close(self) -> None:
        pass

    def read_latest(self, max_age_ms: float | None = None) -> Frame:
        w = self.world
        if w.dropped.get(self.name, -1.0) < w.clock and self._at != w.steps:
            self._number += 1
            self._frame = Frame(color=w.render(self.name), timestamp_ms=w.clock * 1e3, frame_number=self._number,
                                received_s=time.monotonic())
            self._at = w.steps
        if self._frame is None:
            raise StaleFrameError(f"camera {self.name!r} has no frame yet", hint="the camera is dropped out")
        limit = self.max_age_ms if max_age_ms is None else max_age_ms
        age = w.clock * 1e3 - self._frame.timestamp_ms
        if age > limit:
            raise StaleFrameError(f"camera {self.name!r}: newest frame is {age:.0f} ms old (limit {limit:.0f} ms)",
                                  hint="pause the loop until frames are fresh again (dropout or stalled simulation)")
        return self._frame


class LockstepScene(SimScene):
    """`SimScene` on a `World`: settling takes simulated time, and the scene is read live (no cache)."""

    def __init__(self, cfg: Config, world: World, task: SimTask, expert, arm: Arm, arms: list):
        super().__init__(cfg, world, task, expert, arm, arms)  # type: ignore[arg-type]  # answers as a SimServer
        self.world = world

    def reset(self, rng: np.random.Generator, condition: str) -> None:
        condition = condition or "original"
        if condition != self.condition:
            self.world.condition(condition)
            self.condition = condition
        sample = self.task.sample(rng)
        self.params, self._grasped = sample["params"], sample["grasped"]
        self.world.reset(sample["objects"], sample["fixtures"])
        self.world.advance(self.cfg.robot.sim.settle_s)

    def state(self, max_age_s: float = 0.0) -> dict:
        return {**self.world.scene(), "params": self.params}


class LockstepEnv(RobotEnv):
    """`RobotEnv` whose `act` runs one control period of physics; `clock()` is the simulated control time,
    which the actor loop paces by instead of sleeping (actor/timing.py RateKeeper)."""

    def __init__(self, cfg: Config, world: World, arm: Arm, arms: list, cameras: list[Camera], scene: LockstepScene,
                 safety: Safety):
        super().__init__(cfg, arm, arms, cameras, scene.operator, scene.keys, safety, scene=scene)
        self.world = world

    def act(self, action: np.ndarray):
        info = super().act(action)
        self.world.advance()
        return info

    def clock(self) -> float:
        return self.world.clock

    def _fresh_observation(self, since: float, timeout: float = 3.0) -> Observation:
        return self.observe()  # frames are rendered on demand: always of the scene now


def make_lockstep_env(cfg: Config, task: SimTask, safety: Safety) -> LockstepEnv:
    from lastr1.robot.sim.expert import ScriptedExpert

    world = World(cfg, task)
    arm = LockstepArm(world, list(range(task.n_arms)), cfg)
    arms = [LockstepArm(world, [i], cfg) for i in range(task.n_arms)] if task.n_arms > 1 else [arm]
    cameras: list[Camera] = [LockstepCamera(world, c.name, c.max_age_ms) for c in cfg.robot.cameras]
    for c in cameras:
        c.connect()
    scene = LockstepScene(cfg, world, task, ScriptedExpert(task, safety), arm, arms)
    env = LockstepEnv(cfg, world, arm, arms, cameras, scene, safety)
    # Whatever the safety layer times (the time between two filtered actions, how long a contact lasts) it
    # reads from `Safety.clock`: here the simulated time, or a fast lockstep loop would look like a slow arm.
    safety.clock = env.clock
    return env
