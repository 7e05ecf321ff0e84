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


def test_placeholders_are_named_before_anything_connects(capsys):
    """The shipped real configs carry SET-ME values nothing can dial; each command names the ones it reads."""
    import time

    from lastr1.cli import main
    from lastr1.configs.loader import unset_keys

    cfg = configs.load("real/open_bag_zipper")
    assert unset_keys(cfg) == ["robot.arms[0].host", "robot.arms[1].host", "robot.cameras[0].serial",
                               "robot.cameras[1].serial", "robot.cameras[2].serial", "transport.learner_host"]
    assert unset_keys(cfg, skip=("robot",)) == ["transport.learner_host"]
    t0 = time.monotonic()
    assert main(["actor", "--config", "real/insert_hex"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 5  # no FCI session or learner connection was tried
    assert "robot.arms[0].host, robot.cameras[0].serial, robot.cameras[1].serial, transport.learner_host" in err
    assert "lastr1 doctor" in err
    # a key set on the command line is no longer named
    assert main(["actor", "--config", "real/insert_hex", "--transport.learner_host", "10.0.0.9"]) == 2
    assert "transport.learner_host" not in capsys.readouterr().err
    # the learner on the GPU box reads neither the arms, the cameras nor the learner's address
    assert main(["learner", "--config", "real/insert_hex"]) == 2
    err = capsys.readouterr().err
    assert "SET-ME" not in err and "Qwen3-VL" in err
