"""One LAPO trajectory on a lockstep simulated robot: how a decision is sampled, how an episode runs and ends, and
what a rollout worker does with a job. learner/rollouts.py runs these in this process, in local processes or
(learner/rollouts_ray.py) on Ray.

A decision reasons (latents and exit sampled at policy.exit_temperature across the candidates), samples one
action chunk at lapo.temperature and executes it whole; the episode ends as `lastr1 eval` ends it: the scene's
success or failure key (the scripted judge), or task.max_episode_steps; an arm the safety layer paused (a hard
contact) ends it as a failure, as `lastr1 eval` does with actor.safety_pause: fail (LAPO's held-out states).
Reward: lapo.success_reward at the last decision of a successful trajectory, 0 elsewhere. With the lockstep
robot an episode costs CPU time only, and a seed gives the same trajectory in any worker on any backend: the
initial state is drawn from it, and so is the sampling (torch's generator is seeded with it for the episode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from lastr1.learner.lapo import Decision
from lastr1.robot.keys import Key

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.policy.adapter import AdapterBlob


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
    """One episode from `seed`'s initial state, its sampling seeded by `seed` too (the caller's torch
    generator is left as it was)."""
    lapo = cfg.learner.lapo
    cuda = [policy.device] if policy.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        obs = env.reset(seed=seed)
        ds: list[Decision] = []
        steps, success, ended = 0, False, False
        while not ended:
            d, out = decide(policy, obs.images, obs.proprio, cfg.task.instruction, lapo.temperature)
            ds.append(d)
            for a in out.action:
                env.act(a)  # the chunk runs whole: frames are rendered only where the next one is decided
                steps += 1
                keys = env.keys.poll()
                success = Key.SUCCESS in keys
                # A safety pause (a hard contact retreats and pauses the arm) holds every later step until a
                # reset: the rest of the episode would be decisions without effect, so it fails here.
                ended = (success or Key.FAILURE in keys or steps >= cfg.task.max_episode_steps
                         or env.safety.stopped)
                if ended:
                    break
            if not ended:
                obs = env.observe()
    rewards = [0.0] * len(ds)
    rewards[-1] = lapo.success_reward * success
    return Trajectory(seed, ds, rewards, success, steps, [d.latent_len for d in ds])


def work(cfg: Config, policy, env, blob: AdapterBlob, seeds: list[int]) -> list[Trajectory]:
    """What a worker does with one job: take the adapter, roll out each seed."""
    policy.load_adapter(blob)
    return [rollout(cfg, policy, env, s) for s in seeds]
