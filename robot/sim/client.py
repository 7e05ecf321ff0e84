"""Start, talk to, and stop the sim server process (robot/sim/server.py).

    with SimServer(cfg) as server:      # spawns `python -m lastr1.robot.sim.server`
        FrankyArm(..., host=server.hosts[0])   # the real driver, on the server's loopback address
        server.render(); server.scene(); server.reset(objects, fixtures); server.fault("reflex", arm=0)

No orphans: the server dies with SIGTERM from `close()`, from an atexit hook, from the kernel when this process
dies (PR_SET_PDEATHSIG), and on its own when the socket closes.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from typing import IO, TYPE_CHECKING

from lastr1.robot.errors import ConnectionLost, DeviceNotFound, RobotError
from lastr1.robot.sim import wire

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

_live: weakref.WeakSet[SimServer] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for server in list(_live):
        server.close()


def server_spec(cfg: Config) -> dict:
    """What the server needs from the run config (plain data: it crosses the process boundary)."""
    from lastr1.configs.loader import to_dict

    n = cfg.task.n_arms
    robot = cfg.robot
    if len(robot.arms) < n or len(robot.sim.hosts) < n:
        raise RobotError(
            f"task {cfg.task.name} uses {n} arm(s) but the config lists {len(robot.arms)} arm(s) and "
            f"{len(robot.sim.hosts)} sim server address(es)",
            hint="list one robot.arms entry and one robot.sim.hosts loopback address (127.0.0.x) per arm",
        )
    return {
        "task": cfg.task.name,
        "sim": to_dict(robot.sim),
        "hosts": list(robot.sim.hosts[:n]),
        "homes": [[list(a.home_xyz), list(a.home_rpy)] for a in robot.arms[:n]],
        "open_widths": [a.gripper_open_width for a in robot.arms[:n]],
        "cameras": [{"name": c.name, "width": robot.sim.render_width, "height": robot.sim.render_height}
                    for c in robot.cameras],
    }


class SimServer:
    def __init__(self, cfg: Config | None, spec: dict | None = None):
        if spec is None:
            if cfg is None:
                raise ValueError("SimServer needs a config or a ready spec")
            spec = server_spec(cfg)
        self.spec = spec
        self.timeout_s = cfg.robot.sim.startup_timeout_s if cfg is not None else 60.0
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.rsock: socket.socket | None = None
        self._lock = threading.Lock()
        self._rlock = threading.Lock()
        self._stderr: IO[bytes] | None = None
        self.info: dict = {}

    @property
    def hosts(self) -> list[str]:
        return self.info["hosts"]

    @property
    def home_q(self) -> list[list[float]]:
        return self.info["home_q"]

    def start(self) -> SimServer:
        mine, theirs = socket.socketpair()
        rmine, rtheirs = socket.socketpair()  # renders: a channel of their own (see server.main)
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", "egl")
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server must never block on it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lastr1.robot.sim.server", str(theirs.fileno()), str(rtheirs.fileno())],
            pass_fds=[theirs.fileno(), rtheirs.fileno()], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._stderr, start_new_session=True,  # the terminal's Ctrl-C goes to us, not the server
        )
        theirs.close()
        rtheirs.close()
        self.sock, self.rsock = mine, rmine
        self.rsock.settimeout(10.0)
        _live.add(self)
        try:
            self.sock.settimeout(self.timeout_s)
            wire.send(self.sock, self.spec)
            reply = wire.recv(self.sock)
        except (TimeoutError, OSError, wire.WireError) as e:
            tail = self._stderr_tail()
            self.close()
            raise DeviceNotFound(
                f"the sim server did not start ({type(e).__name__}: {e}){tail}",
                hint="check that mujoco and franky-sim==1.0.4 import (`python -c 'import franky_sim'`) and that "
                "EGL works (MUJOCO_GL=egl)",
            ) from None
        if not reply.get("ok"):
            self.close()
            error = reply.get("error", "")
            hint = ("another simulator (or a stale sim server) holds that address: pick other robot.sim.hosts "
                    "(any 127.x.y.z) or stop it" if "is taken" in error else
                    "see the message; the sim server's traceback follows it")
            raise DeviceNotFound(f"the sim server failed to start: {error}\n{reply.get('trace', '')}", hint=hint)
        self.info = reply
        self.sock.settimeout(10.0)
        return self

    def call(self, op: str, **kwargs) -> dict:
        sock, lock = (self.rsock, self._rlock) if op == "render" else (self.sock, self._lock)
        if sock is None:
            raise ConnectionLost("the sim server is not running", hint="start it (SimServer.start / make_env) first")
        with lock:
            try:
                wire.send(sock, {"op": op, **kwargs})
                reply = wire.recv(sock)
            except (TimeoutError, OSError, wire.WireError) as e:
                code = None if self.proc is None else self.proc.poll()
                state = "still running" if code is None else f"exited with {code}"
                raise ConnectionLost(
                    f"the sim server stopped answering ({type(e).__name__}: {e}; process {state})"
                    f"{self._stderr_tail()}",
                    hint="restart the environment (env.close(); make_env(cfg))",
                ) from None
        if not reply.pop("ok", False):
            raise RobotError(f"sim server: {op} failed: {reply.get('error')}")
        return reply

    # -------------------------------------------------------------- typed requests

    def render(self) -> dict:
        return self.call("render")

    def scene(self) -> dict:
        return self.call("scene")

    def reset(self, objects: dict, fixtures: dict) -> float:
        return self.call("reset", objects=objects, fixtures=fixtures)["time"]

    def condition(self, name: str) -> None:
        """The scene's look for an evaluation condition (robot/sim/conditions.py)."""
        self.call("condition", name=name)

    def pin(self, obj: str, arm: int) -> None:
        self.call("pin", obj=obj, arm=arm)

    def unpin(self) -> None:
        self.call("unpin")

    def fault(self, kind: str, **kwargs) -> None:
        """Inject a fault: fault("reflex", arm=0), fault("camera_drop", camera="wrist", seconds=0.5),
        fault("stall", seconds=0.3)."""
        self.call("fault", kind=kind, **kwargs)

    def probe(self, box_min, box_max, max_force_n: float) -> dict:
        """What the physics did since the last probe (robot/sim/server.py `_Probe`); then watch again."""
        return self.call("probe", box_min=list(box_min), box_max=list(box_max), max_force_n=float(max_force_n))

    # -------------------------------------------------------------- lifetime

    def _stderr_tail(self, n: int = 2000) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")[-n:].strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- sim server stderr ---\n{text}" if text else ""

    def close(self) -> None:
        proc, self.proc = self.proc, None
        for name in ("sock", "rsock"):
            sock = getattr(self, name)
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
                setattr(self, name, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: the server exits in ~30 ms
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        _live.discard(self)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
