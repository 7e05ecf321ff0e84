"""The synchronous actor–learner mode (actor/sync.py) on the lockstep robot: a fixed number of learner updates
per collected transition, new weights at episode ends, and a repeatable run."""

from __future__ import annotations

import pytest
import torch
from policy_helpers import tiny_cfg
from sim_helpers import require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.actor.sync import run_sync  # noqa: E402


def _cfg(run_dir):
    c = configs.load("sim_insert_hex", [
        "--robot.kind", "lockstep", "--run_dir", str(run_dir), "--actor.actor_id", "sync",
        "--task.max_episode_steps", "8", "--robot.sim.intervention_rate", "0.5", "--robot.sim.intervention_steps", "2",
        "--learner.start_after", "6", "--learner.grad_accum", "1", "--learner.checkpoint_every_updates", "1000",
    ])
    c.policy = tiny_cfg()
    return c


def _run(run_dir, utd):
    torch.manual_seed(0)  # the fresh tiny policy's initial weights
    cfg = _cfg(run_dir)
    return run_sync(cfg, steps=24, utd=utd)


def test_updates_per_transition_are_fixed_and_runs_repeat(tmp_path):
    ep_a, a = _run(tmp_path / "a", utd=0.5)
    ep_b, b = _run(tmp_path / "b", utd=0.5)
    assert a.received == b.received == sum(e.steps for e in ep_a) == 24
    # Updates start once start_after transitions are in; from then on one per two transitions.
    assert 0 < a.updates <= (a.received - 6) / 2 + 1 and a.updates >= (a.received - 6 - 8) / 2
    assert a.updates == b.updates and [e.ret for e in ep_a] == [e.ret for e in ep_b]
    assert max(e.versions[1] for e in ep_a) > 0  # the actor acted on learned weights in a later episode
    _, c = _run(tmp_path / "c", utd=2.0)
    assert c.updates == pytest.approx(4 * a.updates, abs=4)
