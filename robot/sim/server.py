"""The sim server: a separate process that runs franky-sim (MuJoCo + the FCI protocol) for one task.

Why a process of its own: franky-sim steps physics and answers the FCI in a 1-kHz Python loop; any other
Python work in the same process (a policy, an env) cut it to 0.05× real time, alone it keeps ~0.9×.

It binds one simulated Franka per arm on the given loopback addresses (FCI port 1337, hand 1338), so the real
`franky` driver connects as to a robot, and serves over a socket pair (robot/sim/wire.py, request → reply):

  render                    → {"time", "images": {camera: HxWx3 uint8}} (dropped cameras are left out)
  scene                     → {"time", "objects": {name: pose7}, "fixtures": {...}, "widths": [...]}
  reset objects fixtures    → teleport the arms to their home joints, the objects/fixtures to the poses
  pin obj arm / unpin       → hold an object between an arm's fingers until the driver has grasped it
  fault kind ...            → "reflex" (an arm aborts its motion with a reflex error until the driver
                               recovers), "camera_drop" (a camera renders nothing for a while), "stall" (the
                               physics and the FCI state stream freeze for a while)
  probe box_min box_max max_force_n
                            → what the physics did since the last probe (per arm: worst TCP excursion outside
                               the box, longest time above the force, peak force, TCP pose now), then watch again
  close                     → exit

Every read or write of MuJoCo's live data happens in a post-step callback of the simulation thread; renders
use a private copy of the state (qpos, mocap), never the live data. It exits on SIGTERM, when its parent
dies (PR_SET_PDEATHSIG), and when the socket closes. Run by robot/sim/client.py, not by hand.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from types import SimpleNamespace

import numpy as np

from lastr1.robot.sim import conditions, patches, scene, wire
from lastr1.robot.sim.tasks import make_task


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Host:
    def __init__(self, spec: dict):
        self.spec = spec
        self.cfg = SimpleNamespace(**spec["sim"])
        self.task = make_task(spec["task"], self.cfg)
        self._jobs: list = []
        self._jobs_lock = threading.Lock()
        self._pins: dict[int, tuple[str, np.ndarray]] = {}
        self._dropped: dict[str, float] = {}
        self._tick = 0
        self._snapshot_job: tuple | None = None
        self._snapshot_lock = threading.Lock()
        self._probe: scene.Probe | None = None

    # ------------------------------------------------------------ building

    def start(self) -> dict:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco
        from franky_sim import FrankaRobotServer, SimulationServer
        from franky_sim.mujoco_simulator import MUJOCO_DEFAULT_KP

        patches.apply()
        self.mj = mujoco
        hosts = self.spec["hosts"]
        if len(hosts) < self.task.n_arms:
            raise ValueError(f"task {self.task.name} has {self.task.n_arms} arms but only {len(hosts)} sim hosts")
        kp = tuple(k * self.cfg.kp_scale for k in MUJOCO_DEFAULT_KP)
        sim, self.home_q, self.cameras = scene.build(self.task, self.spec, kp=kp,
                                                      kv=tuple(k / self.cfg.kv_ratio for k in kp))
        server = SimulationServer(sim, hostname_candidates=[])
        # One exact address per arm: SimulationServer would silently take the next free one, and the driver for
        # arm i would then talk to somebody else's simulator.
        for robot, host in zip(sim.robots, hosts):
            rs = FrankaRobotServer(robot, [host])
            try:
                rs.init()
            except OSError:
                for other in server.robot_servers:
                    other.cleanup()
                raise OSError(f"{host}:1337 is taken (another sim host or FCI server is bound there)") from None
            server.robot_servers.append(rs)
        sim.start()
        self.sim, self.server = sim, server
        self.model, self.data = sim.model, sim.data
        self.robots = list(sim.robots)
        self.ix = scene.index(mujoco, self.model, self.task, len(self.robots), self.cfg.render_collision_meshes)
        self._render_data = mujoco.MjData(self.model)
        self._renderers: dict = {}
        sim.register_post_step_callback(self._post_step)
        server.run_async()
        return {"hosts": hosts[: self.task.n_arms], "cameras": list(self.cameras),
                "home_q": [q.tolist() for q in self.home_q]}

    # ------------------------------------------------------------ the simulation thread

    def _post_step(self, sim) -> None:
        self._tick += 1
        if self._jobs:
            with self._jobs_lock:
                jobs, self._jobs = self._jobs, []
            for fn, done, box in jobs:
                try:
                    box.append(fn())
                except Exception as e:  # reported to the caller, never kills the physics thread
                    box.append(e)
                done.set()
        if self._pins:
            for arm, (name, offset) in self._pins.items():
                scene.place_in_hand(self.data, self.ix, arm, name, offset)
        if (self.cfg.wrench_from_contacts or self._probe is not None) and self._tick % 10 == 0:
            self._update_wrenches()
        if self._probe is not None:
            self._probe.step(self.data, self.ix, getattr(self, "contact_force", None))

    def in_sim(self, fn, wait: bool = True, timeout: float = 5.0):
        done, box = threading.Event(), list[object]()
        with self._jobs_lock:
            self._jobs.append((fn, done, box))
        if not wait:
            return done, box
        if not done.wait(timeout):
            raise TimeoutError(f"the simulation thread did not answer within {timeout} s")
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    def _update_wrenches(self) -> None:
        wrenches = scene.contact_wrenches(self.mj, self.model, self.data, self.ix, len(self.robots))
        self.contact_force = np.array([np.linalg.norm(w[:3]) for w in wrenches])
        if self.cfg.wrench_from_contacts:
            for robot, w in zip(self.robots, wrenches):
                patches.set_wrench(robot.server, w)

    # ------------------------------------------------------------ requests (main thread)

    def _snapshot(self, timeout: float):
        """qpos/mocap/time copied in the simulation thread; None while the physics is stalled. Callers on both
        channels share a pending copy (a stalled simulation must not pile up one job per request)."""
        with self._snapshot_lock:
            job = self._snapshot_job
            if job is None or (job[0].is_set() and time.monotonic() - job[2] > 0.0005):
                d = self.data
                done, box = self.in_sim(
                    lambda: (d.qpos.copy(), d.mocap_pos.copy(), d.mocap_quat.copy(), float(d.time),
                             [r.hand_width for r in self.robots]), wait=False)
                job = self._snapshot_job = (done, box, time.monotonic())
        done, box, _ = job
        if not done.wait(timeout):
            return None
        return box[0]

    def op_render(self) -> dict:
        snap = self._snapshot(timeout=0.05)
        if snap is None:
            return {"time": None, "images": {}}
        qpos, mpos, mquat, t, _ = snap
        mj, rd = self.mj, self._render_data
        rd.qpos[:], rd.mocap_pos[:], rd.mocap_quat[:] = qpos, mpos, mquat
        mj.mj_forward(self.model, rd)
        now = time.monotonic()
        images = {}
        for name, (w, h) in self.cameras.items():
            if self._dropped.get(name, 0.0) > now:
                continue
            if (w, h) not in self._renderers:
                self._renderers[(w, h)] = mj.Renderer(self.model, h, w)
            r = self._renderers[(w, h)]
            r.update_scene(rd, camera=name, scene_option=self.ix.render_option)
            images[name] = r.render()
        return {"time": t, "images": images}

    def op_scene(self) -> dict:
        snap = self._snapshot(timeout=5.0)
        if snap is None:
            raise TimeoutError("the simulation is stalled")
        qpos, mpos, mquat, t, widths = snap
        objects, fixtures = scene.object_poses(qpos, mpos, mquat, self.ix)
        return {"time": t, "objects": objects, "fixtures": fixtures, "widths": widths}

    def op_reset(self, objects: dict, fixtures: dict) -> dict:
        mj, m, d = self.mj, self.model, self.data

        def teleport():
            self._pins.clear()
            for i, robot in enumerate(self.robots):
                for addr, q in zip(robot._qpos_addrs, self.home_q[i]):
                    d.qpos[addr] = q
                width = self.spec["open_widths"][i]
                for addr in robot._finger_qpos_addrs:
                    d.qpos[addr] = width / 2
                for addr in (*robot._dof_addrs, *robot._finger_dof_addrs):
                    d.qvel[addr] = 0.0
                robot._hand_goal_width = width
                robot._grasp_force = None
                if robot.server.current_motion_id:
                    robot.server.stop_motion()  # the driver should have stopped; a teleport must not be fought
                # The idle controller holds this joint target: make it the teleported one.
                robot.server._FrankaRobotServer__holding_q = tuple(float(v) for v in self.home_q[i])
            scene.reset_objects(d, self.ix, objects, fixtures)
            d.qacc_warmstart[:] = 0.0
            mj.mj_forward(m, d)
            return float(d.time)

        return {"time": self.in_sim(teleport)}

    def op_condition(self, name: str) -> dict:
        """Switch the scene's look to an evaluation condition (robot/sim/conditions.py); physics unchanged."""
        if name not in conditions.CONDITIONS:
            raise ValueError(f"unknown condition {name!r}: one of {', '.join(conditions.CONDITIONS)}")
        self.in_sim(lambda: self.ix.appearance.apply(name))
        return {}

    def op_pin(self, obj: str, arm: int) -> dict:
        offset = np.asarray(self.task.hand_offset(obj), np.float64)
        self.in_sim(lambda: self._pins.__setitem__(int(arm), (obj, offset)))
        return {}

    def op_unpin(self) -> dict:
        self.in_sim(self._pins.clear)
        return {}

    def op_probe(self, box_min: list, box_max: list, max_force_n: float) -> dict:
        """Measured from MuJoCo's own state every physics tick, not from what the driver reports."""
        bases = [self.task.robot_positions[i] for i in range(len(self.robots))]
        new = scene.Probe(bases, box_min, box_max, max_force_n)

        def swap():
            old, self._probe = self._probe, new
            return old.report(self.data, self.ix) if old is not None else {}

        return self.in_sim(swap)

    def op_fault(self, kind: str, arm: int = 0, camera: str = "", seconds: float = 0.3,
                 error: str = "cartesian_reflex") -> dict:
        if kind == "reflex":
            server = self.robots[int(arm)].server
            self.in_sim(lambda: patches.inject_reflex(server, error))
        elif kind == "camera_drop":
            names = [camera] if camera else list(self.cameras)
            for n in names:
                if n not in self.cameras:
                    raise ValueError(f"no camera {n!r}")
                self._dropped[n] = time.monotonic() + seconds
        elif kind == "stall":
            self.in_sim(lambda: time.sleep(seconds), wait=False)  # freezes physics and the FCI state stream
        else:
            raise ValueError(f"unknown fault {kind!r}: reflex, camera_drop or stall")
        return {}


def _serve(sock: socket.socket, host: Host, ops: set[str] | None) -> None:
    """Answer requests on one socket until it closes; `ops` limits what this channel may ask."""
    while True:
        try:
            req = wire.recv(sock)
        except (wire.WireError, OSError):
            os._exit(0)  # the env went away: nobody to simulate for
        op = req.pop("op", "")
        if op == "close":
            wire.send(sock, {"ok": True})
            os._exit(0)
        fn = getattr(host, f"op_{op}", None) if ops is None or op in ops else None
        try:
            if fn is None:
                raise ValueError(f"unknown request {op!r} on this channel")
            reply = {"ok": True, **fn(**req)}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            wire.send(sock, reply)
        except OSError:
            os._exit(0)


def main(argv: list[str]) -> int:
    """argv: the control socket's fd, then the render socket's fd. Renders have a channel (and a thread, which
    owns the GL context) of their own, so a scene query or a reset never waits behind a 20-40 ms render."""
    _die_with_parent()
    # The 1-kHz physics thread is pure Python and never idles when behind real time; with the default 5-ms GIL
    # switch interval every request waited several such slices (p99 ~60 ms for a scene query).
    sys.setswitchinterval(0.0005)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is the parent's; it sends SIGTERM
    sock = socket.socket(fileno=int(argv[0]))
    try:
        spec = wire.recv(sock)
        host = Host(spec)
        info = host.start()
    except Exception as e:
        wire.send(sock, {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
        return 1
    if len(argv) > 1:
        render_sock = socket.socket(fileno=int(argv[1]))
        threading.Thread(target=_serve, args=(render_sock, host, {"render"}), name="render", daemon=True).start()
    wire.send(sock, {"ok": True, **info})
    _serve(sock, host, None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
