"""`lastr1 warmup` on a handful of synthetic demonstrations written with the real dataset writer."""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import INSTRUCTION

from lastr1 import configs


def _demos(root, n_episodes=2, steps=3, latents=True, seed=0):
    from lastr1.transport.demo_store import EpisodeWriter, save_latent_targets

    rng = np.random.default_rng(seed)
    for _ in range(n_episodes):
        w = EpisodeWriter(root, "sim_insert_hex", INSTRUCTION, fps=10)
        for _ in range(steps):
            w.add({c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in ("front", "wrist")},
                  proprio=rng.normal(size=8), action=rng.uniform(-1, 1, 7))
        path = w.finish(success=True)
        if latents:
            save_latent_targets(path, rng.normal(size=(steps, 8, 64)))


def test_warmup_fits_the_demonstrations_and_writes_a_loadable_checkpoint(tmp_path):
    from lastr1.policy import load_policy
    from lastr1.policy.warmup import warmup

    _demos(tmp_path / "demos")
    cfg = configs.load("policy/tiny_cpu", ["--run_dir", str(tmp_path), "--policy.warmup.steps", "150",
                                           "--policy.warmup.lr", "0.003", "--policy.warmup.log_every", "20"])
    res = warmup(cfg, progress=False)
    assert res.token_accuracy >= 0.95, res
    assert (tmp_path / "checkpoints" / "warmup.tb").is_dir()  # TensorBoard curves beside the checkpoint
    p = load_policy(res.checkpoint)
    # the statistics travel with the checkpoint (the bins span the robot's whole action range by default)
    from lastr1.transport.demo_store import load_dataset

    eps = load_dataset(tmp_path / "demos")
    assert p.stats.action_q01 == [-1.0] * 7 and p.stats.action_q99 == [1.0] * 7
    assert np.allclose(p.stats.proprio_mean, np.concatenate([e.proprio for e in eps]).mean(0), atol=1e-5)
    ep = eps[0]
    pre = p.reason({"front": ep.images["front"][0]}, INSTRUCTION)
    out = p.act(pre, {"wrist": ep.images["wrist"][0]}, ep.proprio[0])
    assert out.action.shape == (8, 7) and np.isfinite(out.action).all()
    # free-running (its own latents, not the teacher-forced targets) it reproduces most of the demonstrated chunk
    close = np.abs(out.action - ep.action_chunk(0, 8)) <= 1.0 / 256 + 1e-5
    assert close.mean() >= 0.75, close.mean()  # chance: ~1/256
    # the exit was supervised at the fixed length 8 (appendix D.2, single-task): teacher-forced with the
    # targets, the tower now says "continue" at 2, 4, 6 and "exit" at 8
    import torch

    from lastr1.policy.warmup import DemoSet

    data = DemoSet(eps, p, 8, True, INSTRUCTION)
    batch, _, _, _ = data.batch(np.arange(len(data)), np.random.default_rng(0))
    with torch.no_grad():
        e = p.forward_train(batch).exit_logits
    assert (e[:, :3] < 0).all() and (e[:, 3] > 0).all(), e


def test_warmup_needs_latent_targets_or_says_how_to_skip_them(tmp_path):
    from lastr1.cli import main
    from lastr1.policy import PolicyError
    from lastr1.policy.warmup import warmup

    _demos(tmp_path / "demos", n_episodes=1, steps=2, latents=False)
    cfg = configs.load("policy/tiny_cpu", ["--run_dir", str(tmp_path)])
    with pytest.raises(PolicyError, match="lastr1 latents"):
        warmup(cfg, progress=False)
    rc = main(["warmup", "--config", "policy/tiny_cpu", "--no-latent-loss", "--run_dir", str(tmp_path),
               "--policy.warmup.steps", "2", "--policy.warmup.batch_size", "2"])
    assert rc == 0 and (tmp_path / "checkpoints" / "warmup" / "trainable.safetensors").is_file()


def test_warmup_trains_stale_prefix_pairs(tmp_path):
    """Defect 1 (warm-up): with κ = 4 the robot acts three steps in four on a prefix reasoned from an older
    front frame; the warm-up's pairs show the slow cameras (and latent targets) 0 … κ−1 steps older than
    the fast cameras and the action, never newer, and κ = 1 keeps them together."""
    from policy_helpers import tiny_policy

    from lastr1.policy.warmup import DemoSet
    from lastr1.transport.demo_store import load_dataset

    _demos(tmp_path / "demos", n_episodes=1, steps=8)
    eps = load_dataset(tmp_path / "demos")
    ep = eps[0]
    p = tiny_policy()
    rows = np.repeat(np.arange(8), 20)
    for kappa, allowed in ((4, range(4)), (1, range(1))):
        batch, _, z, _ = DemoSet(eps, p, 8, True, INSTRUCTION, kappa=kappa).batch(rows, np.random.default_rng(0))
        offsets = []
        for i, t in enumerate(rows):
            (ts,) = [s for s in range(8) if np.array_equal(ep.images["front"][s], batch.slow_images["front"][i])]
            assert np.array_equal(batch.fast_images["wrist"][i], ep.images["wrist"][t])
            assert np.allclose(z[i].cpu().numpy(), ep.latent_targets[ts][:8], atol=1e-2)
            offsets.append(t - ts)
        assert set(offsets) <= set(allowed)
        assert set(offsets) == ({0} if kappa == 1 else {0, 1, 2, 3})
