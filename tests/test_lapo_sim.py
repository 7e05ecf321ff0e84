"""LAPO on the lockstep robot: trajectories from worker processes and from Ray actors, the PPO iterations, the
held-out evaluations in `lastr1 eval`'s formats, and the Action-Only baseline."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_helpers import perturb_trainables, tiny_cfg
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


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _same_trajectory(a, b) -> None:
    """What the lockstep robot did is identical; the policy's floats agree to 1e-5 (another process)."""
    assert (a.seed, a.steps, a.success, a.rewards, a.latent_lens) == (b.seed, b.steps, b.success, b.rewards,
                                                                      b.latent_lens)
    assert len(a.decisions) == len(b.decisions)
    for x, y in zip(a.decisions, b.decisions):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        for cam in {**x.slow, **x.fast}:
            np.testing.assert_array_equal({**x.slow, **x.fast}[cam], {**y.slow, **y.fast}[cam])
        np.testing.assert_array_equal(x.proprio, y.proprio)
        np.testing.assert_allclose(x.chain, y.chain, atol=1e-5)
        np.testing.assert_allclose([x.rollout_logprob, x.rollout_exit_logprob],
                                   [y.rollout_logprob, y.rollout_exit_logprob], atol=1e-5)


def test_a_trajectory_renders_frames_only_where_a_chunk_is_decided(tmp_path, monkeypatch):
    """Each chunk runs whole, so the cameras render once per decision; the trajectory is the one a loop that
    observed every step would have produced (frames of the scene as it is when the chunk is decided)."""
    from lastr1.learner.trajectory import rollout
    from lastr1.policy.checkpoint import open_policy
    from lastr1.robot.factory import make_env

    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.task.max_episode_steps = 20
    policy = open_policy(cfg)
    with make_env(cfg) as env:
        renders: list[str] = []
        real_render = env.world.render
        monkeypatch.setattr(env.world, "render", lambda name: renders.append(name) or real_render(name))
        lean = rollout(cfg, policy, env, 5)
        assert lean.steps == 20 and len(lean.decisions) == 3
        assert len(renders) == len(lean.decisions) * len(env.cameras)
        real_act = env.act
        monkeypatch.setattr(env, "act", lambda a: (real_act(a), env.observe())[0])  # every step observed
        _same_trajectory(lean, rollout(cfg, policy, env, 5))
        assert len(renders) > 20 * len(env.cameras)


def test_a_trajectory_ends_as_a_failure_where_the_safety_layer_pauses_the_arm(tmp_path, monkeypatch):
    """A hard contact pauses the arm until the next reset; the decisions after it would act on nothing."""
    from lastr1.learner.trajectory import rollout
    from lastr1.policy.checkpoint import open_policy
    from lastr1.robot.factory import make_env

    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.task.max_episode_steps = 20
    policy = open_policy(cfg)
    with make_env(cfg) as env:
        real_act, acts = env.act, []

        def act(a):  # the 11th step meets the pause, as the contact rules would set it
            acts.append(a)
            if len(acts) == 11:
                env.safety.pause()
            return real_act(a)

        monkeypatch.setattr(env, "act", act)
        t = rollout(cfg, policy, env, 5)
    assert (t.steps, len(acts), t.success, len(t.decisions)) == (11, 11, False, 2)
    assert t.rewards == [0.0, 0.0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_workers_give_the_in_process_trajectories_and_name_a_worker_error(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'lastr1[ray]')")
    from lastr1.learner.lapo import LapoError
    from lastr1.policy.checkpoint import open_policy

    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    policy = open_policy(cfg)
    rcfg = copy.deepcopy(cfg)
    rcfg.learner.lapo.ray_address, rcfg.learner.lapo.workers = "local", 2  # `lastr1 lapo --address local`
    assert not ray.is_initialized()
    pool = Rollouts(rcfg, policy)  # the starting weights go to the actors now ...
    try:
        assert ray.is_initialized() and len({i["pid"] for i in pool.workers.info}) == 2
        perturb_trainables(policy, seed=1)  # ... so these reach them only through the blob
        blob = policy.export_adapter(1)
        seeds = [3, 4, 5]  # worker 0 rolls out 3 and 5, worker 1 rolls out 4
        remote = pool.collect(seeds, blob)
        local_pool = Rollouts(cfg, policy, workers=1)
        try:
            local = local_pool.collect(seeds)
        finally:
            local_pool.close()
        assert [t.seed for t in remote] == seeds
        for a, b in zip(remote, local):
            _same_trajectory(a, b)
        # A worker's error is raised here by name, with the worker's own message.
        with pytest.raises(LapoError, match=r"2 Ray actors at local\) failed: AdapterError: .*sha256") as e:
            pool.collect([6], dataclasses.replace(blob, sha256="0" * 64))
        assert "learner.lapo.workers 1" in str(e.value)
        pids = [i["pid"] for i in pool.workers.info]
    finally:
        pool.close()
    # close() ended the actors and the Ray instance it had started.
    assert not ray.is_initialized()
    deadline = time.monotonic() + 20
    while any(map(_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, pids)), pids
