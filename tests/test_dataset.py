import json

import numpy as np
import pytest

from lastr1.transport.demo_store import DatasetError, EpisodeWriter, load_dataset, load_episode, save_latent_targets


def record(root, n_steps, success, seed=0):
    rng = np.random.default_rng(seed)
    w = EpisodeWriter(root, task="t", instruction="do it", fps=10)
    for t in range(n_steps):
        w.add(
            {"front": rng.integers(0, 255, (8, 8, 3)), "wrist": rng.integers(0, 255, (8, 8, 3))},
            proprio=rng.normal(size=8), action=rng.uniform(-1, 1, 7), reward=-0.05, intervention=t % 2 == 0,
        )
    if success is None:
        w.discard()
        return None
    return w.finish(success)


def test_write_then_read_back(tmp_path):
    p = record(tmp_path, 5, True)
    ep = load_episode(p)
    assert len(ep) == 5 and ep.images["front"].shape == (5, 8, 8, 3) and ep.images["front"].dtype == np.uint8
    assert ep.action.shape == (5, 7) and ep.intervention.tolist() == [True, False, True, False, True]
    chunk = ep.action_chunk(3, 8)
    assert chunk.shape == (8, 7)
    np.testing.assert_array_equal(chunk[2:], np.repeat(ep.action[-1:], 6, 0))
    assert json.loads((p / "meta.json").read_text())["cameras"] == ["front", "wrist"]


def test_failed_and_discarded_episodes_filtered(tmp_path):
    record(tmp_path, 3, True, 0)
    record(tmp_path, 3, False, 1)
    record(tmp_path, 3, None, 2)
    assert len(load_dataset(tmp_path)) == 1
    assert len(load_dataset(tmp_path, only_success=False)) == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_latent_targets_saved_beside(tmp_path):
    p = record(tmp_path, 4, True)
    save_latent_targets(p, np.ones((4, 8, 16)))
    assert load_episode(p).latent_targets.dtype == np.float16


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="lastr1 record"):
        load_dataset(tmp_path / "nothing")


def test_inconsistent_streams_refused(tmp_path):
    w = EpisodeWriter(tmp_path, "t", "i", 10)
    w.add({"front": np.zeros((2, 2, 3))}, np.zeros(8), np.zeros(7))
    with pytest.raises(DatasetError):
        w.add({"wrist": np.zeros((2, 2, 3))}, np.zeros(8), np.zeros(7))
