"""What runs inside the fleet's Ray workers (lastr1/fleet.py places them): one learner, N simulated actors.

Each is a thin shell around the existing pieces — `learner.service.Learner` and `actor.run.run_actor` with its
own `robot.factory.make_env` sim server — run on a thread of a threaded Ray actor, so `status()` and `stop()`
answer while `run()` works. Transitions and weights cross the CurveZMQ wire (ActorLink → LearnerLink) as with
`lastr1 learner` / `lastr1 actor`; Ray only places, watches and stops the processes. Nothing here imports
Ray: the same classes run in any process.

Keys travel as file contents (`key_files`: path inside the key folder → text) and are written to a private
0700 folder on the worker's node, as a lab copies `learner.key` and `actors/<id>.key_secret` to each robot
PC by hand (transport/curve_keys.py); the key folder need not be on a shared file system.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def key_files(keys_dir: Path, names: list[str]) -> dict[str, str]:
    """The named files of a `lastr1 keys` folder as {relative path: text}."""
    return {n: (keys_dir / n).read_text() for n in names}


def write_keys(files: dict[str, str]) -> Path:
    """`files` in a fresh private folder laid out as transport/curve_keys.py says; returns the folder."""
    root = Path(tempfile.mkdtemp(prefix="lastr1-keys-"))  # mkdtemp makes it 0700
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = name.endswith(".key_secret")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return root


def node_ip() -> str:
    try:
        import ray.util

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray: this host's name resolves to its address
        return socket.gethostbyname(socket.gethostname())


def _setup_logging(level: int, name: str) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname).1s {name} %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)


def _lower_priority(nice: int) -> None:
    """Every thread of this process to at least `nice` (Linux niceness is per thread; new threads inherit
    their creator's)."""
    if nice <= 0:
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            tid = int(tid)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (OSError, ValueError):
            pass


class _Worker:
    def __init__(self, cfg_dict: dict, keys: dict[str, str] | None, log_level: int):
        from lastr1 import configs
        from lastr1.configs.schema import Config

        self.cfg = configs.build(Config, cfg_dict)
        self._keys_dir = write_keys(keys) if keys else None
        if self._keys_dir is not None:
            self.cfg.transport.keys_dir = str(self._keys_dir)
        self.stop_event = threading.Event()
        self.state = "ready"  # ready → running → done | failed
        self.error = ""
        _setup_logging(log_level, repr(self))

    def info(self) -> dict:
        return {"pid": os.getpid(), "node_ip": node_ip()}

    def stop(self) -> None:
        self.stop_event.set()

    def _forget_keys(self) -> None:
        if self._keys_dir is not None:
            shutil.rmtree(self._keys_dir, ignore_errors=True)
            self._keys_dir = None


class LearnerWorker(_Worker):
    """`Learner` on its own thread; `setup()` binds the link and says where actors reach it."""

    def __init__(self, cfg_dict: dict, keys: dict[str, str] | None, log_level: int = logging.WARNING,
                 resume: bool = False, nice: int = 0):
        super().__init__(cfg_dict, keys, log_level)
        self.resume, self.nice = resume, nice
        self.learner = None

    def __repr__(self) -> str:  # Ray prefixes the worker's log lines with this
        return "fleet-learner"

    def setup(self) -> dict:
        from lastr1.learner.service import Learner

        _lower_priority(self.nice)
        self.learner = Learner(self.cfg, resume=self.resume)
        port = self.learner.link.port  # binds now: port 0 becomes a free port the actors are told
        return {**self.info(), "port": port, "bind_host": self.cfg.transport.bind_host}

    def run(self, max_updates: int | None = None) -> dict:
        self.state = "running"
        _lower_priority(self.nice)
        try:
            self.learner.run(self.stop_event, max_updates=max_updates)
            self.state = "done"
        except BaseException as e:
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("%r failed", self)
            raise
        finally:
            self._forget_keys()
        return self.status()

    def status(self) -> dict:
        out = {"state": self.state, "error": self.error, "pid": os.getpid()}
        lrn = self.learner
        if lrn is None:
            return out
        c = lrn.trainer.counters
        link = lrn._link
        out.update(received=c.received, updates=c.updates, episodes=c.episodes, successes=c.successes,
                   interventions=c.interventions, version=lrn.version, learning=lrn.trainer.ready(),
                   per_actor=dict(lrn.per_actor),
                   connected={a: i.alive for a, i in link.actors().items()} if link is not None else {})
        return out


class ActorWorker(_Worker):
    """One simulated actor: its own sim host (robot.sim.hosts of its own) and its own CurveZMQ identity."""

    def __init__(self, cfg_dict: dict, keys: dict[str, str] | None, log_level: int = logging.WARNING):
        super().__init__(cfg_dict, keys, log_level)
        self.last: dict = {}
        self.sim_pids: list[int] = []
        self.result: dict = {}

    def __repr__(self) -> str:
        return f"fleet-{self.cfg.actor.actor_id}"

    def run(self, learner: dict, max_steps: int | None = None) -> dict:
        """Run until stop() (or `max_steps`); `learner` is what LearnerWorker.setup returned."""
        from lastr1.actor.process import run_actor
        from lastr1.robot.factory import make_env

        self.state = "running"
        t = self.cfg.transport
        t.port = learner["port"]
        t.learner_host = learner_address(learner, node_ip())
        env = None
        try:
            env = make_env(self.cfg)  # on this thread: the sim server's PR_SET_PDEATHSIG follows it
            proc = getattr(getattr(env.scene, "server", None), "proc", None)  # none on a lockstep robot
            self.sim_pids = [proc.pid] if proc is not None else []
            res = run_actor(self.cfg, self.stop_event, env=env, max_steps=max_steps, on_status=self._on_status)
            self.result = {"episodes": len(res.episodes), "successes": sum(e.success for e in res.episodes),
                           "steps": res.steps, "sent": res.sent, "versions_applied": res.versions_applied}
            self.state = "done"
            return self.result
        except BaseException as e:
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("%r failed", self)
            raise
        finally:
            if env is not None:
                env.close()
            self._forget_keys()

    def _on_status(self, s: dict) -> None:
        self.last = s

    def status(self) -> dict:
        s = self.last
        return {"state": self.state, "error": self.error, "pid": os.getpid(), "sim_pids": list(self.sim_pids),
                "episodes": s.get("episodes", 0), "successes": s.get("successes", 0),
                "steps": s.get("total_steps", 0), "version": s.get("version", 0), "line": s and _line(s),
                "time": time.time()}


def learner_address(learner: dict, my_ip: str) -> str:
    """Where an actor reaches the learner: the address it binds, else loopback on its own node, else the
    learner node's IP."""
    bind = learner.get("bind_host", "0.0.0.0")
    if bind not in ("0.0.0.0", "*", "", "::"):
        return bind
    return "127.0.0.1" if learner["node_ip"] == my_ip else learner["node_ip"]


def _line(s: dict) -> str:
    from lastr1.actor.status import format_status

    return format_status(s)
