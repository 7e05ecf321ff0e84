"""On-policy trajectories for LAPO from lockstep simulated robots, in this process or in N worker processes.

    pool = Rollouts(cfg, policy)                      # cfg.learner.lapo.workers processes (1: in process)
    trajs = pool.collect(seeds, policy.export_adapter(v))
    pool.close()

A decision reasons (latents and exit sampled at policy.exit_temperature across the candidates), samples one
action chunk at lapo.temperature and executes it whole; the episode ends as `lastr1 eval` ends it: the scene's
success or failure key (the scripted judge), or task.max_episode_steps.
Reward: lapo.success_reward at the last decision of a successful trajectory, 0 elsewhere. With the lockstep
robot an episode costs CPU time only, and a seed gives the same initial state in any worker.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lastr1.learner.lapo import Decision, LapoError
from lastr1.robot.keys import Key

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


@dataclass
class Trajectory:
    seed: int
    decisions: list[Decision]
    rewards: list[float]
    success: bool
    steps: int  # control steps executed
    latent_lens: list[int]


def decide(policy, images: dict, proprio: np.ndarray, instruction: str, temperature: float):
    """One sampled decision: (Decision, ActOutput)."""
    prefix = policy.reason({c: images[c] for c in policy.cfg.slow_cameras}, instruction, explore=True)
    out = policy.act(prefix, {c: images[c] for c in policy.cfg.fast_cameras}, proprio, explore=True,
                     temperature=temperature)
    chain = np.zeros((policy.L_max, policy.d), np.float32)
    if prefix.chain is not None:
        chain[: len(prefix.chain)] = prefix.chain.detach().cpu().numpy()
    d = Decision(slow={c: images[c] for c in policy.cfg.slow_cameras},
                 fast={c: images[c] for c in policy.cfg.fast_cameras}, proprio=np.asarray(proprio, np.float32),
                 chain=chain, latent_len=int(prefix.latent_len), tokens=out.tokens.reshape(-1),
                 rollout_logprob=float(out.logprob), rollout_exit_logprob=float(prefix.exit_logprob))
    return d, out


def rollout(cfg: Config, policy, env, seed: int) -> Trajectory:
    lapo = cfg.learner.lapo
    obs = env.reset(seed=seed)
    ds: list[Decision] = []
    steps, success, ended = 0, False, False
    while not ended:
        d, out = decide(policy, obs.images, obs.proprio, cfg.task.instruction, lapo.temperature)
        ds.append(d)
        for a in out.action:
            obs, _ = env.step(a)
            steps += 1
            keys = env.keys.poll()
            success = Key.SUCCESS in keys
            ended = success or Key.FAILURE in keys or steps >= cfg.task.max_episode_steps
            if ended:
                break
    rewards = [0.0] * len(ds)
    rewards[-1] = lapo.success_reward * success
    return Trajectory(seed, ds, rewards, success, steps, [d.latent_len for d in ds])


class Rollouts:
    """Collects trajectories for given seeds with given adapter weights, split across `workers` processes."""

    def __init__(self, cfg: Config, policy, workers: int | None = None):
        self.cfg, self.policy = cfg, policy
        n = cfg.learner.lapo.workers if workers is None else workers
        if cfg.robot.kind != "lockstep":
            raise LapoError(f"LAPO needs robot.kind lockstep, not {cfg.robot.kind!r}",
                            hint="on-policy batches in real time would take hours: add --robot.kind lockstep")
        self._env = None
        self._procs: list = []
        self._pipes: list = []
        if n <= 1:
            from lastr1.robot.factory import make_env

            self._env = make_env(cfg)
            return
        from pathlib import Path

        from lastr1.policy.checkpoint import save_policy

        start = save_policy(policy, Path(cfg.run_dir) / "lapo" / "worker_policy")
        ctx = mp.get_context("spawn")  # torch and MuJoCo do not survive a fork
        for _ in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(cfg, str(start), b), daemon=True)
            p.start()
            self._procs.append(p)
            self._pipes.append(a)

    def collect(self, seeds: list[int], blob=None) -> list[Trajectory]:
        """Trajectories for `seeds`, in that order, under `blob` (the in-process policy as it is if None)."""
        if self._env is not None:
            return [rollout(self.cfg, self.policy, self._env, s) for s in seeds]
        blob = blob or self.policy.export_adapter(self.policy.version)
        parts = [seeds[i :: len(self._pipes)] for i in range(len(self._pipes))]
        for pipe, part in zip(self._pipes, parts):
            pipe.send((blob, part))
        got: dict[int, Trajectory] = {}
        for pipe in self._pipes:
            res = pipe.recv()
            if isinstance(res, BaseException):
                raise LapoError(f"a rollout worker failed: {res!r}", hint="run with learner.lapo.workers 1 to see "
                                "the error in this process")
            got.update({t.seed: t for t in res})
        return [got[s] for s in seeds]

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send(None)
        for p in self._procs:
            p.join(timeout=30)
        if self._env is not None:
            self._env.close()


def _worker(cfg: Config, start: str, pipe) -> None:
    import torch

    from lastr1.policy.checkpoint import load_policy
    from lastr1.robot.factory import make_env

    torch.set_num_threads(1)  # N workers share the cores
    policy = load_policy(start, device=cfg.policy.device)
    env = make_env(cfg)
    try:
        while (job := pipe.recv()) is not None:
            blob, seeds = job
            try:
                policy.load_adapter(blob)
                pipe.send([rollout(cfg, policy, env, s) for s in seeds])
            except Exception as e:  # reported to the parent, which raises it by name
                pipe.send(e)
    finally:
        env.close()
