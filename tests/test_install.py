"""The installed package works from any working directory, even one whose folders shadow the old flat names."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

SHADOWS = ("configs", "robot", "policy", "actor", "learner", "transport", "calibration")


@pytest.fixture
def hostile_cwd(tmp_path):
    """A folder like a user's project: its own `configs/`, `robot/`, ... packages that explode on import."""
    for name in SHADOWS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    (tmp_path / "configs" / "demo.yaml").write_text("not: [a, lastr1, config\n")
    return tmp_path


def lastr1_cmd() -> list[str]:
    exe = shutil.which("lastr1")
    return [exe] if exe else [sys.executable, "-m", "lastr1.cli"]


def test_commands_run_from_a_folder_that_has_its_own_configs(hostile_cwd):
    keys = subprocess.run([*lastr1_cmd(), "keys", "--dir", "k", "-n", "1"], cwd=hostile_cwd, capture_output=True,
                          text=True, timeout=60)
    assert keys.returncode == 0, keys.stderr
    assert (hostile_cwd / "k" / "actors" / "actor0.key").is_file()
    code = ("from lastr1 import configs\n"
            "cfg = configs.load('demo', [])\n"
            "import lastr1.robot.safety, lastr1.actor.loop, lastr1.learner.replay, lastr1.transport.codec\n"
            "print(cfg.task.name, configs.CONFIG_DIR)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=hostile_cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, config_dir = out.stdout.split()
    assert name == "sim_insert_hex" and str(hostile_cwd) not in config_dir


def test_no_flat_package_is_importable(hostile_cwd):
    """Only `lastr1` is installed: from a neutral folder, `import robot` finds nothing of ours."""
    neutral = hostile_cwd / "neutral"
    neutral.mkdir()
    code = ("import importlib.util\n"
            f"print([n for n in {SHADOWS!r} if importlib.util.find_spec(n) is not None])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=neutral, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
