"""LAPO's rollout workers as Ray actors, for a cluster (learner/rollouts.py picks them when
`learner.lapo.ray_address` is set; nothing else imports this module, and it imports Ray only when built).

    lastr1 lapo --config … --robot.kind lockstep --learner.lapo.workers 16 --address auto   # a running cluster
    lastr1 lapo --config … --robot.kind lockstep --learner.lapo.workers 2 --address local   # a Ray started here

One actor per worker, each holding its own policy and lockstep env and reserving one CPU (torch on one
thread); the workers roll out on CPU whatever `policy.device` says, and the PPO update stays in the driver.
Nothing assumes a file system shared with the driver: the starting checkpoint's files go into Ray's object
store once as bytes and each actor writes them to a private temporary folder on its own node; each job's
adapter blob goes through the object store too, and the trajectories come back as objects. What every node
does need: lastr1 installed (`pip install 'lastr1[ray,sim]'`), and for a policy built on a pretrained model
(`policy.model` a folder, not `tiny`) that folder at the same path.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastr1.errors import require
from lastr1.learner.lapo import LapoError
from lastr1.learner.trajectory import Trajectory, work

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.policy.adapter import AdapterBlob

log = logging.getLogger(__name__)


def pack_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` as {relative path: bytes}."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def unpack_folder(files: dict[str, bytes], folder: Path) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


class RolloutActor:
    """What runs inside one Ray actor (plain Python: RayWorkers wraps it with `ray.remote`)."""

    def __init__(self, cfg_dict: dict, policy_files: dict[str, bytes]):
        import torch

        from lastr1 import configs
        from lastr1.configs.schema import Config
        from lastr1.policy.checkpoint import load_policy
        from lastr1.robot.factory import make_env

        torch.set_num_threads(1)  # the one CPU this actor reserved
        self.cfg = configs.build(Config, cfg_dict)
        folder = Path(tempfile.mkdtemp(prefix="lastr1-lapo-policy-"))
        try:
            self.policy = load_policy(unpack_folder(policy_files, folder), device="cpu")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.env = make_env(self.cfg)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def collect(self, blob: AdapterBlob, seeds: list[int]) -> list[Trajectory]:
        return work(self.cfg, self.policy, self.env, blob, seeds)

    def close(self) -> None:
        self.env.close()


class RayWorkers:
    """`n` RolloutActors on the Ray cluster at `address` ("local": a Ray instance started here and shut down by
    `close`); a Ray already initialised in this process is used as it is."""

    hint = ("the worker's traceback is in the Ray log above; run with learner.lapo.ray_address '' and "
            "learner.lapo.workers 1 to see the error in this process")

    def __init__(self, cfg: Config, policy, n: int, address: str, start_timeout_s: float = 300.0):
        self.ray = require("ray", "ray", "lastr1 lapo --address (rollout workers on Ray)")
        self.n, self.address = n, address
        self.where = f"{n} Ray actors at {address}"
        self._actors: list[Any] = []
        self.info: list[dict] = []  # per actor: pid and host, once started
        self._own = self._connect(address, n)
        try:
            self._start(cfg, policy, start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _connect(self, address: str, n: int) -> bool:
        """Join or start Ray; True if this process called ray.init (so close() disconnects)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        try:
            if address == "local":
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, n), include_dashboard=False)
            else:
                ray.init(address=address)
        except Exception as e:
            raise LapoError(f"could not reach Ray at {address!r}: {type(e).__name__}: {e}",
                            hint="start a cluster first (`ray start --head` on one machine, `ray start --address "
                                 "HEAD:6379` on the others; `ray status` shows it), or try --address local") from None
        return True

    def _start(self, cfg: Config, policy, timeout_s: float) -> None:
        from lastr1 import configs
        from lastr1.policy.checkpoint import save_policy

        ray = self.ray
        with tempfile.TemporaryDirectory(prefix="lastr1-lapo-") as d:
            start = ray.put(pack_folder(save_policy(policy, Path(d) / "policy")))
        remote = ray.remote(RolloutActor).options(
            num_cpus=1, runtime_env={"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
                                                  "OMP_NUM_THREADS": "1"}})
        cfg_dict = configs.to_dict(cfg)
        self._actors = [remote.remote(cfg_dict, start) for _ in range(self.n)]
        refs = [a.ready.remote() for a in self._actors]
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if pending:
            raise LapoError(f"waited {timeout_s:.0f} s for {len(pending)} of {self.n} Ray rollout workers to start",
                            hint=f"the cluster may lack {self.n} free CPUs (`ray status`): lower "
                                 "learner.lapo.workers or add nodes")
        for ref in refs:
            try:
                self.info.append(ray.get(ref))
            except Exception as e:
                raise LapoError(f"a rollout worker ({self.where}) did not start: {_cause(e)}",
                                hint=self.hint) from None
        hosts = sorted({i["host"] for i in self.info})
        log.info("lapo: %d rollout workers on Ray (%s), on %s", self.n, self.address, ", ".join(hosts))

    def run(self, blob: AdapterBlob | None, parts: list[list[int]]) -> list[list[Trajectory] | BaseException]:
        ray = self.ray
        ref = ray.put(blob)  # once into the object store, whatever the number of workers
        refs = [a.collect.remote(ref, part) for a, part in zip(self._actors, parts)]
        res: list[list[Trajectory] | BaseException] = []
        for r in refs:  # every answer is awaited, so no job is still running when the next one starts
            try:
                res.append(ray.get(r))
            except Exception as e:
                res.append(_cause(e))
        return res

    def close(self) -> None:
        ray = self.ray
        actors, self._actors = self._actors, []
        if actors:
            try:  # each closes its env, then is killed whatever it answered
                ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=30)
            except Exception:
                pass
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:
                    pass
        if self._own:
            ray.shutdown()
            self._own = False


def _cause(e: BaseException) -> BaseException:
    """The worker's own exception inside Ray's wrapper (a task's error), else Ray's word in one line (a dead
    actor: killed, out of memory, node lost)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    text = " ".join(str(e).split())
    if "The actor is dead because" in text:
        text = "the actor is dead because" + text.split("The actor is dead because", 1)[1].split(" Some common")[0]
    return RuntimeError(f"{type(e).__name__}: {text[:400]}")
