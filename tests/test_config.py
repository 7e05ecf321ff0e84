import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from lastr1 import configs
from lastr1.cli import COMMANDS, resolve
from lastr1.cli import main as cli_main
from lastr1.configs.loader import parse_overrides, to_dict
from lastr1.configs.schema import Config
from lastr1.errors import ConfigError


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_shipped_config_loads_and_overrides_apply():
    cfg = configs.load("sim_insert_hex", ["--learner.gamma", "0.9", "--robot.safety.max_force_n=20"])
    assert cfg.learner.gamma == 0.9 and isinstance(cfg.learner.gamma, float)
    assert cfg.robot.safety.max_force_n == 20.0
    assert cfg.task.name == "sim_insert_hex"


def test_yaml_boolean_words_still_pick_the_option_so_spelled(tmp_path):
    """YAML 1.1 reads `off` as False; a Literal field with an option "off" takes it (file or command line)."""
    assert configs.load("learning", ["--policy.latent_mode", "off"]).policy.latent_mode == "off"
    f = tmp_path / "c.yaml"
    f.write_text("base: [learning.yaml]\npolicy:\n  latent_mode: off\n")
    assert configs.load(str(f)).policy.latent_mode == "off"
    with pytest.raises(configs.ConfigError, match="not one of"):
        configs.load("learning", ["--policy.latent_mode", "yes"])


def test_base_files_merge_and_own_keys_win(tmp_path):
    write(tmp_path / "base.yaml", "learner: {gamma: 0.5, tau: 0.1}\ntask: {name: a}\n")
    top = write(tmp_path / "top.yaml", "base: [base.yaml]\nlearner: {gamma: 0.7}\n")
    cfg = configs.load(top)
    assert (cfg.learner.gamma, cfg.learner.tau, cfg.task.name) == (0.7, 0.1, "a")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("learner: {gama: 1}\n", "'learner.gama'"),
        ("learner: {gamma: fast}\n", "expected a number"),
        ("robot: {kind: spaceship}\n", "not one of"),
        ("robot: {arms: [{host: x, colour: red}]}\n", "'robot.arms[0].colour'"),
        ("task: {max_episode_steps: 1.5}\n", "expected an integer"),
        ("[1, 2]\n", "must be a mapping"),
        ("learner: {gamma: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_key_and_the_file(tmp_path, text, needle):
    f = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        configs.load(f)
    assert needle in str(e.value)
    if "YAML" not in needle and "mapping" not in needle:
        assert str(f) in str(e.value)


def test_bad_override_names_command_line():
    with pytest.raises(ConfigError, match="command line"):
        configs.load("sim_insert_hex", ["--learner.batchsize", "4"])


def test_missing_file_lists_shipped_configs():
    with pytest.raises(ConfigError, match="sim_insert_hex"):
        configs.load("no_such_config")


def test_base_cycle_refused(tmp_path):
    write(tmp_path / "a.yaml", "base: [b.yaml]\n")
    write(tmp_path / "b.yaml", "base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="includes itself"):
        configs.load(tmp_path / "a.yaml")


def test_round_trip_through_plain_data():
    cfg = configs.load("sim_insert_hex")
    again = configs.build(type(cfg), to_dict(cfg))
    assert again == cfg


def test_exponent_without_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-4 as a string; a float field still takes it, from a file or the command line.
    f = write(tmp_path / "lr.yaml", "learner: {lr: 1e-4}\n")
    assert configs.load(f).learner.lr == 1e-4
    assert configs.load("sim_insert_hex", ["--learner.critic_lr", "3e-4"]).learner.critic_lr == 3e-4
    with pytest.raises(ConfigError, match="expected a number"):
        configs.load("sim_insert_hex", ["--learner.lr", "fast"])


def test_override_parsing_styles():
    assert parse_overrides(["--a.b", "4", "--a.c=[1, 2]", "--d", "x"]) == {"a": {"b": 4, "c": [1, 2]}, "d": "x"}
    with pytest.raises(ConfigError):
        parse_overrides(["--a.b"])


def test_every_shipped_yaml_loads():
    for path in sorted(configs.CONFIG_DIR.rglob("*.yaml")):
        raw, _ = configs.loader.read_raw(path)
        # Fragments (used only as `base:`) may hold a subset of sections; all must be valid.
        configs.build(Config, raw, origin={"": path})


def test_cli_reports_unknown_command_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "lastr1.cli", "frobnicate"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "invalid choice" in out.stderr


def test_load_config_applies_the_leftover_overrides():
    args = argparse.Namespace(config="sim_insert_hex", overrides=["--learner.gamma", "0.5"])
    assert configs.load_config(args).learner.gamma == 0.5
    parser = argparse.ArgumentParser()
    configs.add_config_argument(parser, default="demo")
    assert parser.parse_args([]).config == "demo"
    strict = argparse.ArgumentParser()
    configs.add_config_argument(strict)
    with pytest.raises(SystemExit):
        strict.parse_args([])  # without a default, --config is required


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_its_two_functions_and_a_help(name, capsys):
    add_arguments, run = resolve(COMMANDS[name])
    assert callable(run)
    with pytest.raises(SystemExit) as e:
        cli_main([name, "--help"])
    assert e.value.code == 0 and f"lastr1 {name}" in capsys.readouterr().out
    add_arguments(argparse.ArgumentParser())  # a fresh parser takes them again


def test_the_learner_command_imports_no_robot_code():
    """Commands load lazily: the GPU box's `lastr1 learner` must not import a camera or simulator driver."""
    code = ("import sys; from lastr1.cli import COMMANDS, resolve; resolve(COMMANDS['learner']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyrealsense2', 'mujoco', 'franky', 'torch')"
            " or m.startswith('lastr1.robot')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
