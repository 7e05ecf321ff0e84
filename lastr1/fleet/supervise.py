"""The fleet's supervisor: places the learner and N simulated actors on Ray, watches them, restarts a dead actor
up to `restarts` times, stops them in order, and reports (lastr1/fleet/__init__.py says what a fleet is).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastr1 import configs
from lastr1.errors import Lastr1Error, require
from lastr1.fleet.plan import FleetError, actor_config, ensure_keys, make_absolute
from lastr1.fleet.report import ActorRow, ActorRunStatus, ActorTotals, FleetReport, LearnerStatus

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)


@dataclass
class Member:
    actor_id: str
    cfg: Config
    handle: Any = None  # the Ray actor handle
    run_ref: Any = None  # its run() in flight
    state: str = "starting"  # starting | running | done | dead | failed
    pid: int | None = None
    sim_pids: list[int] = field(default_factory=list)
    restarts: int = 0
    budget: int | None = None
    last: ActorRunStatus = field(default_factory=ActorRunStatus)
    result: ActorTotals | None = None
    error: str = ""
    earlier: ActorTotals = field(default_factory=ActorTotals)  # the incarnations before a restart

    @property
    def live(self) -> bool:
        return self.state in ("starting", "running")


class Fleet:
    """The learner and N simulated actors on Ray. `start()`, then `poll()` as often as you like, `stop()`."""

    def __init__(self, cfg: Config, n_actors: int, *, address: str | None = None, restarts: int = 0,
                 actor_cpus: float = 1.0, learner_cpus: float = 1.0, learner_gpus: float = 0.0,
                 resume: bool = False, learner_nice: int = 10, worker_log_level: int = logging.WARNING,
                 log_to_driver: bool = True, say=print):
        if n_actors < 1:
            raise FleetError("--actors must be at least 1")
        if cfg.robot.kind not in ("sim", "lockstep"):
            raise FleetError(f"a fleet runs simulated actors; this config has robot.kind: {cfg.robot.kind}",
                             hint="real robots run `lastr1 actor` on their robot PCs against `lastr1 learner`")
        self.ray = require("ray", "scale", "lastr1 fleet (actors and learner on a Ray cluster)")
        self.cfg = copy.deepcopy(cfg)
        make_absolute(self.cfg)
        self.n, self.address, self.max_restarts = n_actors, address, restarts
        self.actor_cpus, self.learner_cpus, self.learner_gpus = actor_cpus, learner_cpus, learner_gpus
        self.resume, self.learner_nice = resume, learner_nice
        self.worker_log_level, self.log_to_driver, self.say = worker_log_level, log_to_driver, say
        self.members = {f"actor{i}": Member(f"actor{i}", actor_config(self.cfg, i)) for i in range(n_actors)}
        self.learner: Any = None  # the Ray actor handle
        self.learner_ref: Any = None  # its run() in flight
        self.learner_info: dict = {}
        self.learner_last = LearnerStatus()
        self.learner_error = ""
        self._own_ray = False
        self._keys: Path | None = None
        self._stopping = False
        self.t0 = time.monotonic()

    # -------------------------------------------------------------- start

    def _runtime_env(self, extra: dict | None = None) -> dict:
        # Workers import the installed `lastr1` (every node needs `pip install lastr1`), never a source tree.
        env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONUNBUFFERED": "1"}
        return {"env_vars": {**env, **(extra or {})}}

    def connect(self) -> None:
        """Join the Ray cluster at `address`, or start a local Ray instance (idempotent)."""
        ray = self.ray
        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=self.log_to_driver)
        else:
            # Sized for this fleet whatever the core count: the sim actors wait on their 10 Hz clock most of
            # the time, so oversubscribing a small machine is how a laptop runs several.
            cpus = max(os.cpu_count() or 1, int(self.n * self.actor_cpus + self.learner_cpus + 1))
            ray.init(num_cpus=cpus, num_gpus=None, object_store_memory=100 * 1024**2, include_dashboard=False,
                     log_to_driver=self.log_to_driver)
        self._own_ray = not self.address

    def start(self, max_steps: int | None = None, max_updates: int | None = None, timeout_s: float = 300.0) -> None:
        """Keys, Ray, the learner (waits until it listens), then every actor."""
        from lastr1.fleet.workers import LearnerWorker, key_files, learner_address

        t = self.cfg.transport
        ids = list(self.members)
        if not t.insecure:
            self._keys = Path(t.keys_dir)
            ensure_keys(self._keys, ids)
        self.connect()
        ray = self.ray
        lcfg = self.cfg
        if self.learner_gpus > 0:
            lcfg = copy.deepcopy(self.cfg)
            lcfg.policy.device = "cuda"
        keys = None
        if self._keys is not None:
            keys = key_files(self._keys, ["learner.key", "learner.key_secret",
                                          *(f"actors/{p.name}" for p in sorted((self._keys / "actors").glob("*.key")))])
        opts = dict(num_cpus=self.learner_cpus, max_concurrency=4, runtime_env=self._runtime_env())
        if self.learner_gpus > 0:
            opts["num_gpus"] = self.learner_gpus
        self.learner = ray.remote(LearnerWorker).options(**opts).remote(
            configs.to_dict(lcfg), keys, self.worker_log_level, self.resume, self.learner_nice)
        self.say(f"fleet: starting the learner and {self.n} actor(s) on "
                 f"{'Ray at ' + self.address if self.address else 'a local Ray instance'}")
        try:
            self.learner_info = self._get(self.learner.setup.remote(), timeout_s, "the learner to start")
        except FleetError:
            raise
        except Exception as e:
            raise FleetError(f"the learner did not start: {_why(e)}",
                             hint="see its error above; run `lastr1 learner` with the same config to debug") from None
        self.learner_ref = self.learner.run.remote(max_updates)
        where = learner_address(self.learner_info, self.learner_info["node_ip"])
        self.say(f"fleet: learner listening on {self.learner_info['node_ip']} (actors there reach it at {where}), "
                 f"port {self.learner_info['port']}, pid {self.learner_info['pid']}")
        for m in self.members.values():
            m.budget = max_steps
            self._launch(m)

    def _launch(self, m: Member) -> None:
        from lastr1.fleet.workers import ActorWorker, key_files

        keys = None
        if self._keys is not None:
            keys = key_files(self._keys, ["learner.key", f"actors/{m.actor_id}.key_secret"])
        worker = self.ray.remote(ActorWorker).options(
            num_cpus=self.actor_cpus, max_concurrency=4,
            # torch's intra-op threads would only contend with the sim server and the link threads
            runtime_env=self._runtime_env({"OMP_NUM_THREADS": "1"}))
        m.handle = worker.remote(configs.to_dict(m.cfg), keys, self.worker_log_level)
        m.run_ref = m.handle.run.remote(self.learner_info, m.budget)
        m.state, m.result = "starting", None  # m.error keeps why an earlier incarnation ended

    def _get(self, ref, timeout_s: float, what: str):
        ready, _ = self.ray.wait([ref], timeout=timeout_s)
        if not ready:
            raise FleetError(f"waited {timeout_s:.0f} s for {what}",
                             hint="the Ray cluster may lack free CPUs/GPUs for it (`ray status`); lower "
                                  "--actor-cpus / --learner-gpus or add nodes")
        return self.ray.get(ref)

    # -------------------------------------------------------------- watch

    def poll(self, timeout_s: float = 1.0) -> list[str]:
        """Wait up to `timeout_s` for an actor or the learner to end; handle it; refresh statuses. Returns
        the events (also said)."""
        ray = self.ray
        events: list[str] = []
        refs = {m.run_ref: m for m in self.members.values() if m.live and m.run_ref is not None}
        watch = list(refs) + ([self.learner_ref] if self.learner_ref is not None else [])
        if watch:
            ready, _ = ray.wait(watch, num_returns=len(watch), timeout=timeout_s)
            for ref in ready:
                if ref == self.learner_ref:
                    events.append(self._learner_ended())
                else:
                    events += self._actor_ended(refs[ref], ref)
        self.refresh()
        for e in events:
            self.say(e)
        return events

    def _actor_ended(self, m: Member, ref) -> list[str]:
        from ray.exceptions import RayActorError, RayTaskError

        m.run_ref = None
        try:
            r = m.result = self.ray.get(ref)
            m.state = "done"
            return [f"fleet: {m.actor_id} finished: {r.episodes} episodes ({r.successes} ok), "
                    f"{r.steps} steps, {r.sent} transitions sent"]
        except RayActorError as e:  # the process is gone: killed, crashed, out of memory, node lost
            m.state, m.error = "dead", _why(e)
            what = f"fleet: {m.actor_id} DIED (pid {m.pid}): {m.error}"
        except RayTaskError as e:  # run() raised: the actor's own error (sim server, link, policy ...)
            m.state, m.error = "failed", _why(e)
            what = f"fleet: {m.actor_id} FAILED: {m.error}"
            self._kill(m)
        others = [a for a, o in self.members.items() if o.live]
        events = [what + (f"; {', '.join(others)} and the learner go on" if others else "")]
        if not self._stopping and m.restarts < self.max_restarts:
            m.restarts += 1
            done = m.last.totals()
            if m.budget is not None:
                m.budget = max(m.budget - done.steps, 0)
            self._kill(m)
            m.earlier += done
            m.last = ActorRunStatus()
            self._launch(m)
            events.append(f"fleet: restarting {m.actor_id} ({m.restarts}/{self.max_restarts}); its spool resends "
                          "what the learner had not acknowledged")
        return events

    def _learner_ended(self) -> str:
        from ray.exceptions import RayActorError, RayTaskError

        ref, self.learner_ref = self.learner_ref, None
        try:
            self.learner_last = self.ray.get(ref)
            return "fleet: the learner stopped" + ("" if self._stopping else " (its update budget is spent)")
        except RayActorError as e:
            self.learner_error = f"died: {_why(e)}"
        except RayTaskError as e:
            self.learner_error = f"failed: {_why(e)}"
        self.learner_last = dataclasses.replace(self.learner_last, state="dead")
        return (f"fleet: the LEARNER {self.learner_error}; stopping the actors (their spools keep what it had not "
                "acknowledged: start again with --resume)")

    def _kill(self, m: Member) -> None:
        if m.handle is not None:
            try:
                self.ray.kill(m.handle)
            except Exception:
                pass

    def refresh(self) -> None:
        """The latest status of every live member (a member that cannot answer keeps its last one)."""
        ray = self.ray
        asks: dict[Any, Member | None] = {m.handle.status.remote(): m for m in self.members.values()
                                          if m.live and m.handle is not None}
        if self.learner is not None and self.learner_ref is not None:
            asks[self.learner.status.remote()] = None
        if not asks:
            return
        ready, _ = ray.wait(list(asks), num_returns=len(asks), timeout=2.0)
        for ref in ready:
            try:
                s = ray.get(ref)
            except Exception:
                continue  # it died in between: its run's end says so
            m = asks[ref]
            if m is None:
                self.learner_last = s
            else:
                m.last = s
                m.pid = s.pid
                m.sim_pids = s.sim_pids or m.sim_pids
                if m.state == "starting" and s.state == "running" and s.loop.total_steps > 0:
                    m.state = "running"

    def finished(self) -> bool:
        return self.learner_ref is None or not any(m.live for m in self.members.values())

    # -------------------------------------------------------------- report

    def status_line(self) -> str:
        s = self.learner_last
        elapsed = time.monotonic() - self.t0
        per = " ".join(f"{a}:{n}" for a, n in sorted(s.per_actor.items())) or "-"
        head = (f"fleet {int(elapsed // 60):02d}:{int(elapsed % 60):02d} | learner "
                f"{'learning' if s.learning else 'waiting'}, {s.received} received [{per}], "
                f"{s.updates} updates, v{s.version}")
        parts = []
        for m in self.members.values():
            if m.state == "starting":
                parts.append(f"{m.actor_id} starting")
            elif m.live:
                a = m.last.loop
                parts.append(f"{m.actor_id} ep {a.episodes} step {a.total_steps} v{a.version}")
            else:
                parts.append(f"{m.actor_id} {m.state.upper()}")
        return head + " | " + " | ".join(parts)

    def report(self) -> FleetReport:
        s = self.learner_last
        actors = {}
        for m in self.members.values():
            t = (m.result or m.last.totals()) + m.earlier
            actors[m.actor_id] = ActorRow(m.state, m.state not in ("dead", "failed"), t.episodes, t.successes, t.steps,
                                          t.sent, s.per_actor.get(m.actor_id, 0), m.restarts, m.error)
        return FleetReport(actors, dataclasses.replace(s, error=self.learner_error),
                           round((time.monotonic() - self.t0) / 60, 2))

    # -------------------------------------------------------------- stop

    def stop(self, timeout_s: float = 60.0) -> FleetReport:
        """Actors first (each closes its episode, flushes its link and closes its sim server), then the learner
        (it saves its checkpoint), then whatever did not stop in time is killed. Returns `report()`."""
        ray = self.ray
        self._stopping = True
        try:
            live = [m for m in self.members.values() if m.live and m.handle is not None]
            for m in live:
                try:
                    m.handle.stop.remote()
                except Exception:
                    pass
            refs = {m.run_ref: m for m in live if m.run_ref is not None}
            if refs:
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
                for ref in ready:
                    for e in self._actor_ended(refs[ref], ref):
                        self.say(e)
                for ref in set(refs) - set(ready):
                    m = refs[ref]
                    m.state, m.error, m.run_ref = "dead", f"did not stop within {timeout_s:.0f} s: killed", None
                    self.say(f"fleet: {m.actor_id} {m.error}")
            if self.learner_ref is not None:
                self.refresh()
                try:
                    self.learner.stop.remote()
                except Exception:
                    pass
                ready, _ = ray.wait([self.learner_ref], timeout=timeout_s)
                if ready:
                    e = self._learner_ended()
                    if self.learner_error:
                        self.say(e)
                else:
                    self.learner_error = f"did not stop within {timeout_s:.0f} s: killed (no final checkpoint)"
                    self.say(f"fleet: the learner {self.learner_error}")
                    self.learner_ref = None
        finally:
            for m in self.members.values():
                self._kill(m)
            if self.learner is not None:
                try:
                    ray.kill(self.learner)
                except Exception:
                    pass
            if self._own_ray:
                ray.shutdown()
                self._own_ray = False
        return self.report()

    def run(self, minutes: float | None = None, status_every_s: float = 10.0) -> FleetReport:
        """Poll until the budget is spent, every actor has ended, or the learner has; then stop. Ctrl-C (or
        SIGTERM, as the CLI maps it) stops cleanly too."""
        deadline = None if minutes is None else time.monotonic() + 60 * minutes
        last = time.monotonic()
        try:
            while not self.finished() and (deadline is None or time.monotonic() < deadline):
                self.poll(timeout_s=1.0)
                if time.monotonic() - last >= status_every_s:
                    last = time.monotonic()
                    self.say(self.status_line())
        except KeyboardInterrupt:
            self.say("fleet: interrupted: stopping the actors, then the learner")
        return self.stop()


def _why(e: BaseException, n: int = 240) -> str:
    """One line on why a worker ended: a task's own error (with its hint), or Ray's word on a dead process."""
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip()
    if isinstance(cause, Lastr1Error):
        return " ".join(text.split())[:n]
    if "The actor is dead because" in text:  # RayActorError: killed, crashed, OOM, node lost
        text = text.split("The actor is dead because", 1)[1].split(" Some common causes")[0]
        return "dead because " + " ".join(text.split())[:n]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:n]
