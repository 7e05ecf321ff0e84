"""The README's main command, `lastr1 demo`, end to end in miniature: every stage as its own process."""

import json
import subprocess
import sys

import pytest
from sim_helpers import free_port, overrides

pytest.importorskip("franky_sim")
pytest.importorskip("mujoco")


@pytest.mark.timeout(900)
def test_demo_runs_every_stage_and_says_where_its_files_are(tmp_path):
    run = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lastr1.cli", "demo", "--run-dir", str(run), "--demos", "1", "--minutes", "0.6",
         "--eval-rollouts", "1", "--skip-baseline", "--seed", "3", *overrides(7),
         "--transport.port", str(free_port()),
         "--policy.warmup.steps", "20", "--learner.start_after", "30", "--learner.grad_accum", "1",
         "--learner.broadcast_every_updates", "1", "--task.max_episode_steps", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the demo stops its running stage (and that stage's simulator) on SIGTERM
        stdout, stderr = proc.communicate(timeout=60)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for stage in ("keys", "record", "latents", "warmup", "actor", "eval-final"):
        assert f"  {stage}" in out.stdout
    assert (run / "keys" / "learner.key_secret").is_file()
    assert list((run / "demos").glob("episode_*/latent_targets.npy"))
    assert (run / "checkpoints" / "warmup" / "policy.json").is_file()
    # the learner learned and published: its checkpoint is newer than the warm-up
    learner = json.loads((run / "learner" / "checkpoint" / "learner.json").read_text())
    assert learner["counters"]["updates"] >= 1 and learner["counters"]["received"] >= 30
    results = json.loads((run / "eval" / "final" / "results.json").read_text())
    assert results["n_rollouts"] == 1 and results["policy"]["version"] >= 2
    summary = json.loads((run / "demo_summary.json").read_text())
    assert "final_success" in summary and str(run) in out.stdout
    lo, hi = summary["final_ci95"]  # one rollout: the Wilson interval is wide, and printed beside the rate
    assert 0 <= lo <= summary["final_success"] <= hi <= 100 and hi - lo > 50
    assert "(95 %, Wilson)" in out.stdout


@pytest.mark.timeout(900)
def test_every_stage_runs_on_folders_in_the_published_layout(tmp_path):
    """latents → warm-up → learner ↔ actor → eval with policy.model and policy.latent_teacher naming local
    folders laid out as Qwen/Qwen3-VL-4B-Instruct and facebook/dinov3-* ship them (tiny and random)."""
    from pretrained_helpers import write_dinov3, write_qwen3_vl

    qwen, dino = write_qwen3_vl(tmp_path / "models" / "qwen"), write_dinov3(tmp_path / "models" / "dino")
    run = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "lastr1.cli", "demo", "--run-dir", str(run), "--demos", "1", "--minutes", "0.5",
         "--eval-rollouts", "1", "--skip-baseline", *overrides(9),
         "--policy.model", str(qwen), "--policy.latent_teacher", str(dino), "--transport.port", str(free_port()),
         "--policy.warmup.steps", "10", "--learner.start_after", "20", "--learner.grad_accum", "1",
         "--learner.broadcast_every_updates", "1", "--task.max_episode_steps", "30"],
        capture_output=True, text=True, timeout=840,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    meta = json.loads((run / "demos" / "latent_channels.json").read_text())
    assert meta["teacher"] == str(dino.resolve()) and meta["k"] == 64 and meta["teacher_width"] == 96
    warm = json.loads((run / "checkpoints" / "warmup" / "policy.json").read_text())
    assert warm["source"] == str(qwen) and not (run / "checkpoints" / "warmup" / "base.safetensors").exists()
    learner = json.loads((run / "learner" / "checkpoint" / "learner.json").read_text())
    assert learner["counters"]["updates"] >= 1
    results = json.loads((run / "eval" / "final" / "results.json").read_text())
    assert results["n_rollouts"] == 1 and results["policy"]["version"] >= 2
