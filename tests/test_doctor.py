"""`lastr1 doctor`: each check against the real peer it checks (the franky-sim FCI, a pyrealsense2
software_device, the hidapi layer under pyspacemouse, a live LearnerLink, key files, model folders) — passing,
and failing with its fix."""

from __future__ import annotations

import shutil

import pytest
from pretrained_helpers import write_dinov3, write_qwen3_vl
from sim_helpers import loopback, overrides

from lastr1 import configs
from lastr1.cli import main
from lastr1.doctor import run_checks
from lastr1.policy import checks as policy_checks
from lastr1.robot import checks as robot_checks
from lastr1.transport import checks as transport_checks
from lastr1.transport import curve_keys


def real_cfg(tmp_path, **over):
    """real/insert_hex with its placeholders set (to values nothing answers on) and a random tower of the 4B
    sizes: only ever built on the meta device here."""
    return configs.load("real/insert_hex", {
        "run_dir": str(tmp_path), "policy": {"model": "tiny", "latent_teacher": "tiny", "device": "cpu"},
        "transport": {"learner_host": "127.0.0.1", "keys_dir": str(tmp_path / "keys")},
        "robot": {"arms": [{"name": "arm0", "host": loopback(40)[0], "realtime": "enforce"}],
                  "cameras": [{"name": "front", "serial": "D455-1"}, {"name": "wrist", "serial": "D435-2"}]},
        **over})


def by_name(checks):
    return {c.name: c for c in checks}


def test_unedited_real_config_fails_on_what_is_unset_and_dials_nothing(capsys):
    assert main(["doctor", "--config", "real/insert_hex"]) == 1
    out = capsys.readouterr().out
    assert "still SET-ME: robot.arms[0].host, robot.cameras[0].serial" in out and "transport.learner_host" in out
    assert "robot.arms[].host not set: not dialled" in out and "transport.learner_host not set: not dialled" in out
    assert main(["doctor", "--role", "learner", "--config", "real/insert_hex"]) == 1
    out = capsys.readouterr().out
    assert "no placeholders among what the learner reads" in out and "policy.latent_teacher" in out


def test_gpu_check_against_the_configured_device(tmp_path):
    cfg = real_cfg(tmp_path)
    assert by_name(policy_checks.torch_cuda(cfg, "actor"))["GPU"].status == "skip"
    if not __import__("torch").cuda.is_available():
        cfg.policy.device = "cuda"
        gpu = by_name(policy_checks.torch_cuda(cfg, "learner"))["GPU"]
        assert gpu.failed and "torch sees no CUDA device" in gpu.detail and "CUDA build of torch" in gpu.fix
    # the plan the GPU is held against: the 4B expert needs its 8.1 B parameters in bf16 before activations
    four_b = configs.load("policy/qwen3vl_4b", ["--policy.model", "tiny"])
    assert 15 < policy_checks.needed_gb(four_b, "actor") < policy_checks.needed_gb(four_b, "learner") < 18


def test_model_and_teacher_folders(tmp_path):
    cfg = real_cfg(tmp_path)
    cfg.policy.model = str(write_qwen3_vl(tmp_path / "qwen"))
    cfg.policy.latent_teacher = str(write_dinov3(tmp_path / "dino"))
    model, teacher = policy_checks.model_folder(cfg), policy_checks.teacher_folder(cfg)
    assert model.status == "ok" and "Qwen3VLForConditionalGeneration, bfloat16, 4 shard(s)" in model.detail
    assert teacher.status == "ok" and "96 wide" in teacher.detail
    (tmp_path / "qwen" / "tokenizer.json").unlink()
    model = policy_checks.model_folder(cfg)
    assert model.failed and "has no tokenizer.json" in model.detail and "hf download" in model.fix
    cfg.policy.latent_teacher = str(tmp_path / "qwen")
    teacher = policy_checks.teacher_folder(cfg)
    assert teacher.failed and "holds a 'qwen3_vl' model, not a DINOv3 ViT" in teacher.detail


def test_key_files_and_their_modes(tmp_path):
    cfg = real_cfg(tmp_path)
    assert transport_checks.key_files(cfg, "actor").failed
    curve_keys.generate(tmp_path / "keys", ["actor0"])
    assert transport_checks.key_files(cfg, "actor").status == "ok"
    assert transport_checks.key_files(cfg, "learner").status == "ok"
    secret = tmp_path / "keys" / "actors" / "actor0.key_secret"
    secret.chmod(0o644)
    c = transport_checks.key_files(cfg, "actor")
    assert c.failed and "readable by other users" in c.detail and c.fix == f"chmod 600 {secret}"


def test_learner_handshake_with_a_live_learner(tmp_path):
    from lastr1.transport.learner_link import LearnerLink

    cfg = real_cfg(tmp_path)
    curve_keys.generate(tmp_path / "keys", ["actor0"])
    cfg.transport.port, cfg.transport.bind_host = 0, "127.0.0.1"
    with LearnerLink(cfg.transport, keys_dir=tmp_path / "keys") as learner:
        cfg.transport.port = learner.port
        assert transport_checks.learner_handshake(cfg, timeout_s=10).status == "ok"
        # an actor whose key is not on the learner's allow-list
        stranger = tmp_path / "stranger"
        curve_keys.generate(stranger, ["actor0"])
        shutil.copy(tmp_path / "keys" / "learner.key", stranger / "learner.key")
        cfg.transport.keys_dir = str(stranger)
        c = transport_checks.learner_handshake(cfg, timeout_s=10)
        assert c.failed and "refused this actor's key" in c.detail
        port = learner.port
    cfg.transport.keys_dir = str(tmp_path / "keys")
    c = transport_checks.learner_handshake(cfg, timeout_s=1)  # nobody listens there now
    assert c.failed and "no answer in 1 s" in c.detail and "start `lastr1 learner`" in c.fix and port


def test_realtime_kernel_flag(tmp_path):
    cfg = real_cfg(tmp_path)
    flag = tmp_path / "realtime"
    flag.write_text("1\n")
    assert robot_checks.realtime_kernel(cfg, flag).status == "ok"
    flag.write_text("0\n")
    c = robot_checks.realtime_kernel(cfg, flag)
    assert c.failed and "PREEMPT_RT" in c.fix
    cfg.robot.arms[0].realtime = "ignore"
    assert robot_checks.realtime_kernel(cfg, flag).status == "skip"


def test_cameras_by_serial_on_a_software_device(tmp_path):
    pytest.importorskip("pyrealsense2")
    from test_realsense import SoftwareRealSense

    soft = SoftwareRealSense(serial="D455-1")
    c = by_name(robot_checks.cameras(real_cfg(tmp_path), soft.ctx))
    assert c["camera front"].status == "ok" and "D455-1" in c["camera front"].detail
    assert c["camera wrist"].failed and "serial D435-2 not connected (found: D455-1)" in c["camera wrist"].detail


def test_spacemouse_presence_and_permission(tmp_path, monkeypatch):
    easyhid = pytest.importorskip("easyhid.easyhid")
    pytest.importorskip("pyspacemouse")
    from test_spacemouse import COMPACT, FakeHidapi

    fake = FakeHidapi(easyhid.ffi)
    monkeypatch.setattr(easyhid, "hidapi", fake)
    cfg = real_cfg(tmp_path)
    c = robot_checks.spacemouse(cfg)
    assert c.failed and "0 SpaceMouse(s) found, 1 configured" in c.detail
    node = tmp_path / "hidraw3"
    node.touch()
    fake.add(str(node), COMPACT)
    node.chmod(0o600)  # as the kernel creates it without the udev rule: root only
    c = robot_checks.spacemouse(cfg)
    assert c.failed and "not readable and writable by a non-root user" in c.detail and "99-spacemouse.rules" in c.fix
    node.chmod(0o666)
    c = robot_checks.spacemouse(cfg)
    assert c.status == "ok" and str(node) in c.detail


def test_arm_fci_on_the_simulator_and_an_address_nobody_answers(tmp_path):
    from sim_helpers import require_sim

    require_sim()
    from lastr1.robot.sim.client import SimServer

    sim = configs.load("sim_insert_hex", overrides(41))
    with SimServer(sim) as server:
        c = robot_checks.arms(sim, server.hosts)
        assert [x.status for x in c] == ["ok"] and "FCI answers" in c[0].detail
    c = robot_checks.arms(real_cfg(tmp_path))  # loopback(40): nothing listens there
    assert c[0].failed and "activate FCI in Desk" in c[0].fix


def test_the_table_runs_local_checks_first(tmp_path):
    cfg = real_cfg(tmp_path)
    checks = run_checks(cfg, "actor", timeout_s=0.5, rt_flag=tmp_path / "absent")
    names = [c.name for c in checks]
    assert names.index("real-time kernel") < names.index("arm arm0 (FCI " + loopback(40)[0] + ")")
    assert names[-1].startswith("learner") and checks[-1].failed


def test_the_actor_checks_what_is_local_before_it_connects(tmp_path, capsys):
    """No RealSense on a test machine: the actor stops on it (and on the kernel) before dialling the learner."""
    import socket

    import yaml

    curve_keys.generate(tmp_path / "keys", ["actor0"])
    with socket.socket() as learner:
        learner.bind(("127.0.0.1", 0))
        learner.listen()
        learner.settimeout(0.5)
        mine = tmp_path / "mine.yaml"
        mine.write_text(yaml.safe_dump({
            "base": ["real/insert_hex", "policy/tiny_cpu"], "run_dir": str(tmp_path),  # the tiny tower's sizes
            "transport": {"learner_host": "127.0.0.1", "port": learner.getsockname()[1],
                          "keys_dir": str(tmp_path / "keys")},
            "robot": {"arms": [{"name": "arm0", "host": loopback(42)[0]}],
                      "cameras": [{"name": "front", "serial": "D455-1"}, {"name": "wrist", "serial": "D435-2"}]}}))
        assert main(["actor", "--config", str(mine)]) == 2
        err = capsys.readouterr().err
        assert "not started, nothing connected" in err and "camera front: serial D455-1 not connected" in err
        with pytest.raises(TimeoutError):
            learner.accept()  # nothing dialled the learner


def test_disk_space_for_the_spool_and_buffers(tmp_path):
    from lastr1.doctor import disk

    cfg = real_cfg(tmp_path)
    assert disk(cfg, "actor").status == "ok"
    cfg.transport.spool_max_bytes = 2**60  # an exabyte of spool: no disk holds it
    c = disk(cfg, "actor")
    assert c.failed and "the actor needs ≥" in c.detail and "transport.spool_max_bytes" in c.fix
