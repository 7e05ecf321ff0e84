"""Defects 4 and 6 of issue 15: what the learner is fed (proprio z-scores, the failure reward)."""

import numpy as np
import torch
from policy_helpers import tiny_policy

from lastr1 import configs
from lastr1.actor.episode import Episode, Sink
from lastr1.policy import NormStats


def test_a_dimension_constant_in_the_demos_does_not_explode():
    """Defect 4: the sim demos hold the gripper width and a quaternion component constant; a 1 mm change of
    such a dimension must stay a small z-score, and no state (however far out) a huge proprio token."""
    rng = np.random.default_rng(0)
    proprio = rng.normal(0.3, 0.05, (200, 8)).astype(np.float32)
    proprio[:, 7] = 0.04  # gripper width, constant in every demo
    proprio[:, 3] = 0.0  # a quaternion component, constant
    stats = NormStats.from_arrays(rng.uniform(-1, 1, (200, 7)), proprio)
    state = proprio[:1].copy()
    state[0, 7] += 0.001
    z = stats.proprio_z(torch.as_tensor(state))
    assert abs(float(z[0, 7])) <= 0.2, z
    far = torch.as_tensor(state + 10.0)
    assert float(stats.proprio_z(far).abs().max()) <= 5.0
    # stats saved by the old code (std floored at 1e-6) are read with the floor too
    old = NormStats(stats.action_q01, stats.action_q99, stats.proprio_mean, [*stats.proprio_std[:7], 1e-6])
    assert abs(float(old.proprio_z(torch.as_tensor(state))[0, 7])) <= 0.2
    p = tiny_policy()
    p.set_stats(old)
    with torch.no_grad():
        tok = p.proprio_proj(p.stats.proprio_z(torch.as_tensor(state)))
        base = p.proprio_proj(p.stats.proprio_z(torch.as_tensor(proprio[:1])))
    assert float((tok - base).norm()) < 0.1 * float(base.norm()) + 1e-3


class _Keep(Sink):
    def __init__(self):
        self.steps = []

    def step(self, s) -> None:
        self.steps.append(s)


def _episode_return(n_steps: int, gamma: float) -> float:
    t = configs.load("sim_insert_hex").task
    sink = _Keep()
    ep = Episode(0, 0, "original", sink, step_penalty=t.step_penalty, success_reward=t.success_reward,
                 failure_reward=t.failure_reward)
    for _ in range(n_steps):
        ep.executed(None, 0.0, np.zeros(7, np.float32), False, None)
    ep.close("failure", None)
    assert sink.steps[-1].terminated and sink.steps[-1].reward == t.failure_reward
    return sum(gamma ** i * s.reward for i, s in enumerate(sink.steps))


def test_giving_up_early_does_not_pay():
    """Defect 6: with only the step penalty on a failure, quitting at once (≈ −0.05) beat a slow failure
    (≈ −1.4); the failure reward makes every early stop worth less than failing late."""
    gamma = configs.load("sim_insert_hex").learner.gamma
    n_max = configs.load("sim_insert_hex").task.max_episode_steps
    late = _episode_return(n_max, gamma)
    for n in (1, 5, n_max // 2, n_max - 1):
        assert _episode_return(n, gamma) < late, n
