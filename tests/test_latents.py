import json

import numpy as np
import pytest

from lastr1 import configs
from lastr1.cli import main
from lastr1.configs.policy import PolicyConfig
from lastr1.policy.errors import PolicyError
from lastr1.policy.latent_targets import (
    CHANNELS_FILE,
    LatentTargetError,
    build_teacher,
    compute_latent_targets,
    preprocess,
    select_channels,
)
from lastr1.transport.demo_store import EpisodeWriter, load_episode

HW = 24


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HW, HW, 3), dtype=np.uint8)


def record(root, frame_seeds, success=True):
    w = EpisodeWriter(root, task="t", instruction="do it", fps=10)
    for t, s in enumerate(frame_seeds):
        w.add({"front": frame(s), "wrist": frame(1000 + t)}, np.zeros(8), np.zeros(7))
    return w.finish(success)


@pytest.fixture(scope="module")
def teacher():
    return build_teacher(PolicyConfig())


class Counting:
    """The real teacher, counting the frames it is asked to embed."""

    def __init__(self, teacher):
        self.t, self.frames = teacher, 0
        self.name, self.width = teacher.name, teacher.width

    def cls(self, frames, batch_size=32):
        self.frames += len(frames)
        return self.t.cls(frames, batch_size)


def test_targets_are_future_cls_on_a_fixed_topk_channel_set(tmp_path, teacher):
    cfg = PolicyConfig(latent_max=4, latent_stride=2)
    # Episode 0: frames 1 2 3 2 5 (frame 1 and 3 show the same picture); episode 1: three frames.
    e0 = record(tmp_path, [11, 12, 13, 12, 15])
    e1 = record(tmp_path, [21, 22, 23])
    summary = compute_latent_targets(tmp_path, cfg, teacher=teacher, progress=False)
    assert summary["computed"] == 2 and summary["k"] == 64 and summary["teacher_width"] == 96

    a0, a1 = load_episode(e0).latent_targets, load_episode(e1).latent_targets
    assert a0.shape == (5, 4, 64) and a1.shape == (3, 4, 64) and a0.dtype == np.float16

    # Independent recomputation of what the targets must be.
    frames0 = np.stack([frame(s) for s in [11, 12, 13, 12, 15]])
    frames1 = np.stack([frame(s) for s in [21, 22, 23]])
    cls0, cls1 = teacher.cls(frames0), teacher.cls(frames1)
    mean_abs = np.abs(np.concatenate([cls0, cls1])).mean(0)
    top = sorted(np.argsort(mean_abs)[::-1][:64].tolist())
    channels = np.load(tmp_path / CHANNELS_FILE)
    assert channels.tolist() == top
    assert min(mean_abs[top]) >= max(np.delete(mean_abs, top))  # the kept channels are the largest ones
    for t in range(5):
        for i in range(4):
            j = min(t + 2 * (i + 1), 4)
            np.testing.assert_allclose(a0[t, i], cls0[j, top], rtol=2e-3, atol=2e-3)
    # Step 1's first target is frame 3, the same picture as frame 1 (no step targets frame 1 at stride 2).
    np.testing.assert_allclose(a0[1, 0], cls0[1, top], rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(a0[-1], np.repeat(a0[-1, :1], 4, 0))  # last step: final frame repeated
    np.testing.assert_array_equal(a0[2, 0], a0[2, 1])  # both past the end: the final frame
    np.testing.assert_array_equal(a1[0, 0], a1[2, 3])  # episode 1 is 3 long: every future is frame 2
    # Different pictures give different targets (the test above could not pass by constant output).
    assert not np.allclose(a0[0, 0], a0[0, 1])
    meta = json.loads((tmp_path / "latent_channels.json").read_text())
    assert meta["camera"] == "front" and meta["k"] == 64 and meta["frames"] == 8
    assert not (tmp_path / ".latent_cache").exists()


def test_repeated_picture_gives_the_same_target(tmp_path, teacher):
    cfg = PolicyConfig(latent_max=2, latent_stride=1)
    e = record(tmp_path, [5, 6, 7, 6, 8])  # frames 1 and 3 are the same picture
    compute_latent_targets(tmp_path, cfg, teacher=teacher, progress=False)
    a = load_episode(e).latent_targets
    np.testing.assert_array_equal(a[0, 0], a[2, 0])  # target of step 0 = frame 1, of step 2 = frame 3
    np.testing.assert_array_equal(a[0, 0], a[1, 1])  # frame 1 ... frame 3 again via i = 1
    assert not np.array_equal(a[0, 0], a[0, 1])


def test_select_channels_by_magnitude_not_sign():
    assert select_channels(np.array([5.0, 1.0, 3.0, 0.5, 2.0]), 3).tolist() == [0, 2, 4]
    # Magnitude, not value: channel 0 is large and negative, channel 1 flips sign and averages to little.
    feats = np.array([[-5.0, 1.0, 3.0, -0.5, 2.0], [-4.0, -1.0, -3.0, 0.5, 0.0]])
    assert select_channels(np.abs(feats).mean(0), 2).tolist() == [0, 2]


def test_narrow_teacher_refused(tmp_path):
    record(tmp_path, [1, 2])
    cfg = PolicyConfig()
    cfg.tiny_teacher.hidden_size = 48  # the tower is 64 wide
    with pytest.raises(LatentTargetError, match="48 channels but the reasoning tower's hidden size is 64"):
        compute_latent_targets(tmp_path, cfg, progress=False)


def test_resume_skips_done_episodes_and_keeps_channels(tmp_path, teacher):
    cfg = PolicyConfig(latent_max=2)
    e0, e1 = record(tmp_path, [1, 2, 3]), record(tmp_path, [4, 5])
    compute_latent_targets(tmp_path, cfg, teacher=teacher, progress=False)
    channels = np.load(tmp_path / CHANNELS_FILE)
    before = load_episode(e0).latent_targets.copy()

    (e1 / "latent_targets.npy").unlink()
    e2 = record(tmp_path, [6, 7, 8, 9])
    spy = Counting(teacher)
    s = compute_latent_targets(tmp_path, cfg, teacher=spy, progress=False)
    assert (s["computed"], s["skipped"]) == (2, 1)
    assert spy.frames == 2 + 4  # only e1 and e2 went through the teacher
    np.testing.assert_array_equal(np.load(tmp_path / CHANNELS_FILE), channels)
    np.testing.assert_array_equal(load_episode(e0).latent_targets, before)
    assert load_episode(e2).latent_targets.shape == (4, 2, 64)

    spy = Counting(teacher)
    assert compute_latent_targets(tmp_path, cfg, teacher=spy, progress=False)["computed"] == 0
    assert spy.frames == 0


def test_interrupted_statistics_pass_resumes_from_cache(tmp_path, teacher):
    cfg = PolicyConfig(latent_max=2)
    record(tmp_path, [1, 2, 3])
    record(tmp_path, [4, 5])

    class Dies(Counting):
        def cls(self, frames, batch_size=32):
            if self.frames:
                raise KeyboardInterrupt
            return super().cls(frames, batch_size)

    with pytest.raises(KeyboardInterrupt):
        compute_latent_targets(tmp_path, cfg, teacher=Dies(teacher), progress=False)
    spy = Counting(teacher)
    compute_latent_targets(tmp_path, cfg, teacher=spy, progress=False)
    assert spy.frames == 2  # the first episode's features came from the cache


def test_changed_settings_need_force(tmp_path, teacher):
    record(tmp_path, [1, 2, 3])
    compute_latent_targets(tmp_path, PolicyConfig(latent_max=2), teacher=teacher, progress=False)
    with pytest.raises(LatentTargetError, match="camera 'front' \\(saved\\) vs 'wrist'"):
        compute_latent_targets(tmp_path, PolicyConfig(latent_max=2), camera="wrist", teacher=teacher,
                               progress=False)
    s = compute_latent_targets(tmp_path, PolicyConfig(latent_max=2), camera="wrist", teacher=teacher,
                               force=True, progress=False)
    assert s["computed"] == 1 and json.loads((tmp_path / "latent_channels.json").read_text())["camera"] == "wrist"
    with pytest.raises(LatentTargetError, match="no camera 'side'"):
        compute_latent_targets(tmp_path, PolicyConfig(latent_max=2), camera="side", teacher=teacher,
                               force=True, progress=False)


def test_preprocess_matches_imagenet_normalisation():
    img = np.full((1, 10, 20, 3), 255, np.uint8)
    x = preprocess(img, (8, 8), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert x.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(x[0, :, 0, 0], [2.0, 1.0, 0.5], rtol=1e-6)


def test_cli(tmp_path, capsys):
    demo = tmp_path / "run" / "demos"
    e = record(demo, [1, 2, 3, 4])
    rc = main(["latents", "--config", "sim_insert_hex", "--run_dir", str(tmp_path / "run"),
               "--policy.latent_max", "4"])
    assert rc == 0 and "1 episodes computed" in capsys.readouterr().out
    assert load_episode(e).latent_targets.shape == (4, 4, 64)
    assert main(["latents", "--config", "sim_insert_hex", "--run_dir", str(tmp_path / "nothing")]) == 2
    assert "no dataset folder" in capsys.readouterr().err
    assert configs.load("sim_insert_hex").learner.demo_dir == "demos"


def test_pretrained_teacher_and_tower_folders(tmp_path, teacher):
    """The local-folder path: a saved DINOv3 (its preprocessor size honoured) and k from a tower's config.json."""
    folder = tmp_path / "dino"
    teacher.model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 112, "width": 112}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    tower = tmp_path / "tower"
    tower.mkdir()
    (tower / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "text_config": {"hidden_size": 80}}))
    cfg = PolicyConfig(model=str(tower), latent_teacher=str(folder), latent_max=2)
    loaded = build_teacher(cfg)
    assert loaded.size == (112, 112) and loaded.mean == (0.5, 0.5, 0.5) and loaded.width == 96
    e = record(tmp_path / "demos", [1, 2, 3])
    s = compute_latent_targets(tmp_path / "demos", cfg, progress=False)
    assert s["k"] == 80 and s["teacher"] == str(folder.resolve())
    frames = np.stack([frame(x) for x in [1, 2, 3]])
    x = preprocess(frames, (112, 112), (0.5,) * 3, (0.5,) * 3)
    import torch

    with torch.inference_mode():
        cls = teacher.model(pixel_values=torch.from_numpy(x)).last_hidden_state[:, 0].numpy()
    ch = np.load(tmp_path / "demos" / CHANNELS_FILE)
    np.testing.assert_allclose(load_episode(e).latent_targets[0, 0], cls[1, ch], rtol=2e-3, atol=2e-3)
    (tower / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    with pytest.raises(PolicyError, match="no text_config.hidden_size"):
        compute_latent_targets(tmp_path / "demos", cfg, force=True, progress=False)
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov3_convnext"}))
    with pytest.raises(LatentTargetError, match="latent targets need a DINOv3 ViT"):
        build_teacher(cfg)
