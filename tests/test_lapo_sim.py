"""LAPO on the lockstep robot: trajectories from worker processes, the PPO iterations, the held-out evaluations
in `lastr1 eval`'s formats, and the Action-Only baseline."""

from __future__ import annotations

import json

import numpy as np
import torch
from policy_helpers import tiny_cfg
from sim_helpers import require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.learner.lapo_run import run_lapo  # noqa: E402
from lastr1.learner.rollouts import Rollouts  # noqa: E402


def _cfg(run_dir, **policy):
    c = configs.load("sim_insert_hex", [
        "--robot.kind", "lockstep", "--run_dir", str(run_dir), "--task.max_episode_steps", "12",
        "--learner.lapo.trajectories", "2", "--learner.lapo.mini_batch", "2", "--learner.lapo.eval_rollouts", "2",
        "--learner.lapo.eval_every", "0",
    ])
    c.policy = tiny_cfg(**policy)
    return c


def test_iterations_from_two_workers_write_the_eval_formats(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.learner.lapo.workers = 2
    res = run_lapo(cfg, tmp_path / "lapo", iterations=2)
    rows = [json.loads(x) for x in (tmp_path / "lapo" / "curve.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    # Two trajectories of ≤ 12 steps, ≤ 2 chunks of 8 each.
    assert all(2 <= r["decisions"] <= 4 for r in rows) and rows[-1]["steps"] <= 48
    assert set(res["evals"]) == {0, 2} and "held_out_pct" in rows[-1]
    for it in ("iter0000", "iter0002"):
        ev = tmp_path / "lapo" / "eval" / it
        got = json.loads((ev / "results.json").read_text())
        assert got["n_rollouts"] == 2 and (ev / "summary.csv").is_file()
        assert len(list((ev / "videos").glob("*.mp4"))) == 2
    lens = json.loads((tmp_path / "lapo" / "latent_lengths.json").read_text())
    candidates = {str(n) for n in range(cfg.policy.latent_group, cfg.policy.latent_max + 1, cfg.policy.latent_group)}
    assert set(lens) == {"first", "last"} and set(lens["first"]) <= candidates
    assert (tmp_path / "lapo" / "policy").is_dir()


def test_action_only_rollouts_have_no_latents_and_pay_reward_at_the_end(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, latent_mode="off")
    from lastr1.policy.checkpoint import open_policy

    pool = Rollouts(cfg, open_policy(cfg), workers=1)
    try:
        trajs = pool.collect([7, 8])
    finally:
        pool.close()
    assert [t.seed for t in trajs] == [7, 8]
    for t in trajs:
        assert t.latent_lens == [0] * len(t.decisions)
        assert all(not d.chain.any() for d in t.decisions)
        assert t.rewards[:-1] == [0.0] * (len(t.rewards) - 1) and t.rewards[-1] == 5.0 * t.success
        assert 1 <= t.steps <= 12 and len(t.decisions) == int(np.ceil(t.steps / 8))
