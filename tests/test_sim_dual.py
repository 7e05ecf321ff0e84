"""Two arms at once (sim_lift_bar) through the actor's facade, on the lockstep robot and (slow: the driver path,
franky's MultiArm) on franky-sim. Its own module: on franky-sim two simulators on a 2-core machine starve each
other's 1 kHz arm link (the arms then overshoot and the force limit holds them)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sim_helpers import overrides, require_sim

require_sim()

from test_sim_env import run_expert  # noqa: E402

from lastr1 import configs  # noqa: E402
from lastr1.robot.factory import make_env  # noqa: E402
from lastr1.robot.keys import Key  # noqa: E402


@pytest.mark.parametrize("kind", ["lockstep", pytest.param("sim", marks=pytest.mark.slow)])
def test_two_arms_lift_the_bar_together(kind):
    cfg = configs.load("sim_lift_bar", ["--robot.kind", kind, *overrides(4, 2)])
    with make_env(cfg) as env:
        obs = env.reset(seed=0)
        assert env.n_arms == 2 and env.action_dim == 14 and obs.proprio.shape == (16,)
        assert set(obs.images) == {"front", "wrist0", "wrist1"}
        # Two arms at once through MultiArm: each gets its own slice of the targets, at the same time.
        states = env.arm.state()
        start = np.array([s.position for s in states])
        targets = start + [[0.02, 0.0, 0.04], [-0.01, -0.03, 0.02]]
        env.arm.move_to(targets, np.array([s.quaternion for s in states]), np.array([-1.0, -1.0]))
        t0 = time.monotonic()
        assert all(a.join(timeout=10) for a in env.arms)
        assert time.monotonic() - t0 < 5
        if kind == "sim":
            time.sleep(0.1)
        reached = np.array([s.position for s in env.arm.state()])
        assert np.all(np.linalg.norm(reached - targets, axis=1) < 0.002), reached - targets
        env.reset(seed=0)
        # ~5 s of simulated time on a quiet machine (lockstep: 6); the point is that the two arms succeed
        # together, not how fast.
        keys, said = run_expert(env, sim_s=30.0)
        assert keys == [Key.SUCCESS], f"no success in {said}"
        bar = env.scene.state(max_age_s=0)["objects"]["bar"]
        assert bar[2] > 0.025 + cfg.robot.sim.lift_height_m
