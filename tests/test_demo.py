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
         "--eval-rollouts", "1", "--skip-baseline", *overrides(7),
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
