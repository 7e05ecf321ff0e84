"""`lastr1 lapo`: LAPO iterations on the lockstep simulated robot, with held-out evaluations.

    lastr1 lapo --config sim_insert_hex --robot.kind lockstep --policy.checkpoint runs/x/warmup --iterations 50

Per iteration: `learner.lapo.trajectories` on-policy trajectories (fresh training seeds) from
`learner.lapo.workers` workers (local processes; Ray actors with `--address`: learner/rollouts_ray.py), then
one PPO update (learner/lapo.py). Every `eval_every` iterations, and at the start and the end, `lastr1 eval`'s
evaluation of the current weights on the same fixed held-out initial states (greedy decoding, an MP4 per
episode, results.json / rollouts.csv / summary.csv) under <out>/eval/iter<NNNN>/. Writes <out>/curve.jsonl
(one line per iteration), <out>/latent_lengths.json (the sampled latent lengths of the first and the last
iteration: the paper's Fig. 9) and <out>/policy.
`policy.latent_mode: off` runs the Action-Only + PPO baseline.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 50_000_000  # training initial states; `lastr1 eval`'s held-out seeds lie far below


def held_out(cfg: Config, policy, out: Path, video: bool) -> float:
    """Success % on the fixed held-out initial states (`lastr1 eval`, one run, condition original)."""
    from lastr1.actor.evaluate import evaluate

    ecfg = copy.deepcopy(cfg)
    ecfg.actor.replan_every = policy.H  # as in training: each chunk is executed whole
    ecfg.policy.kappa = policy.H
    ecfg.actor.safety_pause = "fail"  # as a training trajectory ends: nobody resumes an arm paused by a hard hit
    res = evaluate(ecfg, rollouts=cfg.learner.lapo.eval_rollouts, runs=1, conditions=["original"], out=out,
                   policy=policy, video=video)
    return float(res["success_rate_pct"]["original"]["mean"])


def run_lapo(cfg: Config, out: Path, iterations: int | None = None, video: bool = True) -> dict:
    from lastr1.learner import lapo
    from lastr1.learner.rollouts import Rollouts
    from lastr1.policy.checkpoint import open_policy, save_policy

    c = cfg.learner.lapo
    n_it = c.iterations if iterations is None else iterations
    torch.manual_seed(c.seed)
    out.mkdir(parents=True, exist_ok=True)
    policy = open_policy(cfg)
    opt = lapo.make_optimizer(policy, c)
    gen = torch.Generator().manual_seed(c.seed)
    curve: list[dict] = []
    lengths: dict[str, dict[int, int]] = {}
    pool = Rollouts(cfg, policy)  # first: a missing ray or an unreachable cluster fails before any evaluation
    steps = 0
    t_roll = 0.0
    try:
        evals = {0: held_out(cfg, policy, out / "eval" / "iter0000", video)}
        t0 = time.process_time()
        for it in range(1, n_it + 1):
            seeds = [TRAIN_SEED_BASE + c.seed * 1_000_000 + (it - 1) * c.trajectories + k
                     for k in range(c.trajectories)]
            t = time.perf_counter()
            trajs = pool.collect(seeds, policy.export_adapter(it - 1))
            t_roll += time.perf_counter() - t
            steps += sum(tr.steps for tr in trajs)
            stats = lapo.ppo_iteration(policy, opt, [tr.decisions for tr in trajs], [tr.rewards for tr in trajs], c,
                                       cfg.task.instruction, gen)
            hist = Counter(n for tr in trajs for n in tr.latent_lens)
            for name, at in (("first", 1), ("last", n_it)):
                if it == at:
                    lengths[name] = dict(sorted(hist.items()))
            row = {"iteration": it, "train_success_pct": 100.0 * sum(tr.success for tr in trajs) / len(trajs),
                   "decisions": sum(len(tr.decisions) for tr in trajs), "steps": steps,
                   "cpu_s": round(time.process_time() - t0, 1), **{k: round(v, 5) for k, v in stats.items()}}
            if it == n_it or (c.eval_every and it % c.eval_every == 0):
                evals[it] = row["held_out_pct"] = held_out(cfg, policy, out / "eval" / f"iter{it:04d}", video)
            curve.append(row)
            with open(out / "curve.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            log.info("lapo iteration %d/%d: %s", it, n_it, row)
    finally:
        pool.close()
    save_policy(policy, out / "policy")
    (out / "latent_lengths.json").write_text(json.dumps(lengths, indent=1))
    return {"evals": evals, "curve": curve, "latent_lengths": lengths, "steps": steps,
            "steps_per_s": steps / t_roll if t_roll else 0.0}
