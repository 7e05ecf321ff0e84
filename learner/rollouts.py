"""On-policy trajectories for LAPO from lockstep simulated robots: in this process, in N local worker
processes, or in N Ray actors on a cluster.

    pool = Rollouts(cfg, policy)                      # cfg.learner.lapo.workers workers (1: in process)
    trajs = pool.collect(seeds, policy.export_adapter(v))
    pool.close()

Where the workers run is picked in one place, `start_workers`: `learner.lapo.ray_address` "" keeps them local
(processes, or this process for one worker), anything else puts them on Ray (learner/rollouts_ray.py, imported
only then). Every backend takes the same job, an adapter blob and a list of seeds per worker, and answers a
list of trajectories or the exception its worker raised; `Rollouts` raises that as one named LapoError.

One trajectory (sampling, episode end, reward) is learner/trajectory.py's.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import TYPE_CHECKING, Protocol

import torch

from lastr1.learner.lapo import LapoError
from lastr1.learner.trajectory import Trajectory, decide, rollout, work

__all__ = ["Rollouts", "Trajectory", "Workers", "decide", "rollout", "start_workers", "work"]

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.policy.adapter import AdapterBlob


# --- where the workers run --------------------------------------------------------------------------------------


class Workers(Protocol):
    """`n` rollout workers. `run` hands worker i the seeds `parts[i]` with the adapter `blob` (None only in
    process) and returns, per worker, its trajectories or the exception it raised; `close` ends them."""

    n: int
    where: str  # what the workers are, for the error a failure raises
    hint: str  # how to see a failure up close

    def run(self, blob: AdapterBlob | None, parts: list[list[int]]) -> list[list[Trajectory] | BaseException]: ...

    def close(self) -> None: ...


def start_workers(cfg: Config, policy, n: int) -> Workers:
    """The one place a backend is picked: Ray actors when `learner.lapo.ray_address` is set, else local
    processes (this process itself for one worker)."""
    address = cfg.learner.lapo.ray_address
    if address:
        from lastr1.learner.rollouts_ray import RayWorkers  # imports Ray only now

        return RayWorkers(cfg, policy, max(n, 1), address)
    if n <= 1:
        return InProcess(cfg, policy)
    return LocalProcesses(cfg, policy, n)


class InProcess:
    """One worker: this process, with the policy as it is (the blob is its own export, so it is not loaded).
    A failure raises here as itself."""

    n, where, hint = 1, "this process", ""

    def __init__(self, cfg: Config, policy):
        from lastr1.robot.factory import make_env

        self.cfg, self.policy = cfg, policy
        self.env = make_env(cfg)

    def run(self, blob: AdapterBlob | None, parts: list[list[int]]) -> list[list[Trajectory] | BaseException]:
        return [[rollout(self.cfg, self.policy, self.env, s) for s in part] for part in parts]

    def close(self) -> None:
        self.env.close()


class LocalProcesses:
    """`n` spawned processes on this machine, each with the starting policy (a checkpoint under run_dir) and
    its own lockstep env; jobs and results cross a pipe."""

    hint = "run with learner.lapo.workers 1 to see the error in this process"

    def __init__(self, cfg: Config, policy, n: int):
        from pathlib import Path

        from lastr1.policy.checkpoint import save_policy

        self.n, self.where = n, f"{n} local processes"
        start = save_policy(policy, Path(cfg.run_dir) / "lapo" / "worker_policy")
        ctx = mp.get_context("spawn")  # torch and MuJoCo do not survive a fork
        self._procs: list = []
        self._pipes: list = []
        for _ in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(cfg, str(start), b), daemon=True)
            p.start()
            self._procs.append(p)
            self._pipes.append(a)

    def run(self, blob: AdapterBlob | None, parts: list[list[int]]) -> list[list[Trajectory] | BaseException]:
        for pipe, part in zip(self._pipes, parts):
            pipe.send((blob, part))
        res: list[list[Trajectory] | BaseException] = []
        for pipe, p in zip(self._pipes, self._procs):  # every answer is read, so none is left for the next job
            try:
                res.append(pipe.recv())
            except (EOFError, OSError):
                res.append(RuntimeError(f"worker process {p.pid} exited (code {p.exitcode})"))
        return res

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:  # that worker is gone already
                pass
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def _worker(cfg: Config, start: str, pipe) -> None:
    torch.set_num_threads(1)  # N workers share the cores
    env = None
    try:
        from lastr1.policy.checkpoint import load_policy
        from lastr1.robot.factory import make_env

        policy = load_policy(start, device=cfg.policy.device)
        env = make_env(cfg)
        broken: Exception | None = None
    except Exception as e:  # answered to every job, so the parent names it
        broken = e
    try:
        while (job := pipe.recv()) is not None:
            blob, seeds = job
            try:
                if broken is not None:
                    raise broken
                pipe.send(work(cfg, policy, env, blob, seeds))
            except Exception as e:  # reported to the parent, which raises it by name
                pipe.send(e)
    finally:
        if env is not None:
            env.close()


# --- the pool -----------------------------------------------------------------------------------------------------


class Rollouts:
    """Collects trajectories for given seeds with given adapter weights, split across `workers` workers
    (`start_workers` picks where they run)."""

    def __init__(self, cfg: Config, policy, workers: int | None = None):
        self.cfg, self.policy = cfg, policy
        n = cfg.learner.lapo.workers if workers is None else workers
        if cfg.robot.kind != "lockstep":
            raise LapoError(f"LAPO needs robot.kind lockstep, not {cfg.robot.kind!r}",
                            hint="on-policy batches in real time would take hours: add --robot.kind lockstep")
        self.workers = start_workers(cfg, policy, n)

    def collect(self, seeds: list[int], blob: AdapterBlob | None = None) -> list[Trajectory]:
        """Trajectories for `seeds`, in that order, under `blob` (the in-process policy as it is if None)."""
        if blob is None and not isinstance(self.workers, InProcess):
            blob = self.policy.export_adapter(self.policy.version)
        n = self.workers.n
        parts = [seeds[i::n] for i in range(n)]
        got: dict[int, Trajectory] = {}
        for res in self.workers.run(blob, parts):
            if isinstance(res, BaseException):
                raise LapoError(f"a rollout worker ({self.workers.where}) failed: {type(res).__name__}: {res}",
                                hint=self.workers.hint)
            got.update({t.seed: t for t in res})
        return [got[s] for s in seeds]

    def close(self) -> None:
        self.workers.close()
