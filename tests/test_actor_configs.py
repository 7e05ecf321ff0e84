"""Every shipped YAML loads; the paper's four real-robot tasks are complete and self-consistent."""

from __future__ import annotations

import pytest

from lastr1 import configs
from lastr1.configs.loader import CONFIG_DIR

SHIPPED = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
REAL_TASKS = {"insert_hex": 1, "open_bag_zipper": 2, "wipe_vase": 2, "open_bottle_cap": 2}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_yaml_loads(name):
    configs.load(name)


@pytest.mark.parametrize("task, n_arms", sorted(REAL_TASKS.items()))
def test_real_task_configs(task, n_arms):
    from lastr1.actor.evaluate import CONDITIONS, canonical
    from lastr1.robot.safety import Safety

    cfg = configs.load(f"real/{task}")
    assert cfg.task.name == task and cfg.task.n_arms == n_arms and cfg.robot.kind == "real"
    assert len(cfg.robot.arms) == n_arms == len(cfg.robot.teleop)
    assert len({a.host for a in cfg.robot.arms}) == n_arms and all(a.realtime == "enforce" for a in cfg.robot.arms)
    cams = {c.name for c in cfg.robot.cameras}
    assert set(cfg.policy.slow_cameras) | set(cfg.policy.fast_cameras) <= cams
    assert len(cfg.robot.cameras) == 1 + n_arms  # one third-person + a wrist camera per arm
    assert all(c.serial for c in cfg.robot.cameras) and len({c.serial for c in cfg.robot.cameras}) == len(cams)
    assert [canonical(c) for c in cfg.task.eval_conditions] == list(CONDITIONS)
    t = cfg.task
    assert t.instruction and t.max_episode_steps > 0 and t.success_reward > 0 > t.step_penalty
    assert cfg.robot.image_size == 256  # the paper's input resolution
    Safety(cfg.robot.safety, n_arms)  # the workspace box and step limits are valid
    assert cfg.actor.eval_rollouts == 20 and cfg.actor.eval_runs == 3
