"""LeRobot datasets both ways: our demonstrations exported as v3.0 (and v2.1 behind a flag), and a v3.0 folder
read back as demonstrations (the warm-up's and the demo buffer's input). LeRobot's own reader and writer run in
an isolated environment (LeRobot pins another torch) through benchmarks/lerobot_check.py: .ci/run makes it and
names its Python in LASTR1_LEROBOT_PYTHON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lastr1.transport.demo_store import DatasetError, EpisodeWriter, load_dataset

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("imageio_ffmpeg")


def demos(root, lengths=(5, 7), size=16):
    rng = np.random.default_rng(0)
    for n, T in enumerate(lengths):
        w = EpisodeWriter(root, task="t", instruction=f"insert the hex peg {n % 2}", fps=10)
        for t in range(T):
            # Smooth images: H.264 keeps them close, so a frame mix-up shows as a large error.
            base = np.full((size, size, 3), 20 + 30 * n + 10 * t, np.uint8)
            w.add({"front": base, "wrist": 255 - base}, proprio=rng.normal(size=8), action=rng.uniform(-1, 1, 7),
                  reward=-0.05 if t < T - 1 else 10.0, intervention=t % 3 == 0)
        w.finish(True)
    return load_dataset(root)


def test_v30_export_layout_and_round_trip(tmp_path):
    from lastr1.actor.lerobot_export import export_lerobot
    from lastr1.transport.lerobot_store import load_demos

    ours = demos(tmp_path / "demos")
    out = export_lerobot(tmp_path / "demos", tmp_path / "lr")
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2 and info["total_frames"] == 12
    data = pq.read_table(out / info["data_path"].format(chunk_index=0, file_index=0))
    assert data.column("index").to_pylist() == list(range(12))
    assert data.column("episode_index").to_pylist() == [0] * 5 + [1] * 7
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 5), (5, 12)]
    assert eps[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(0.5)
    tasks = pq.read_table(out / "meta/tasks.parquet")
    index = json.loads(tasks.schema.metadata[b"pandas"])["index_columns"]  # LeRobot looks a task up by its text
    assert dict(zip(tasks.column(index[0]).to_pylist(), tasks.column("task_index").to_pylist())) == {
        "insert the hex peg 0": 0, "insert the hex peg 1": 1}
    assert not (out / "meta/episodes.jsonl").exists()

    back = load_demos(out)
    assert [len(e) for e in back] == [5, 7]
    for a, b in zip(ours, back):
        np.testing.assert_array_equal(b.action, a.action)
        np.testing.assert_array_equal(b.proprio, a.proprio)
        np.testing.assert_array_equal(b.intervention, a.intervention)
        np.testing.assert_array_equal(b.reward, a.reward)
        assert b.instruction == a.instruction and b.meta["cameras"] == ["front", "wrist"]
        for c in ("front", "wrist"):
            assert b.images[c].shape == a.images[c].shape
            assert np.abs(b.images[c].astype(int) - a.images[c].astype(int)).mean() < 3  # H.264 at crf 18


def test_v21_kept_behind_the_flag_and_refused_as_input(tmp_path):
    from lastr1.actor.lerobot_export import export_lerobot
    from lastr1.transport.lerobot_store import load_demos

    demos(tmp_path / "demos", lengths=(4,))
    out = export_lerobot(tmp_path / "demos", tmp_path / "lr21", version="v2.1")
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and (out / "meta/episodes.jsonl").is_file()
    assert (out / "data/chunk-000/episode_000000.parquet").is_file()
    with pytest.raises(DatasetError, match="convert"):
        load_demos(out)


def test_field_map_names_a_missing_feature(tmp_path):
    from lastr1.actor.lerobot_export import export_lerobot
    from lastr1.configs.learner import LeRobotFields
    from lastr1.transport.lerobot_store import load_demos

    demos(tmp_path / "demos", lengths=(3,))
    out = export_lerobot(tmp_path / "demos", tmp_path / "lr")
    with pytest.raises(DatasetError, match="learner.lerobot"):
        load_demos(out, LeRobotFields(state="observation.joints"))
    only_front = load_demos(out, LeRobotFields(cameras={"cam": "observation.images.front"}))
    assert list(only_front[0].images) == ["cam"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LASTR1_LEROBOT_PYTHON"),
                    reason="set LASTR1_LEROBOT_PYTHON to a Python with lerobot 0.4 (benchmarks/lerobot_check.py "
                           "--setup-only makes one; .ci/run does)")
def test_lerobot_reads_our_export_and_its_recording_warms_up_a_policy():
    script = Path(__file__).parents[1] / "benchmarks" / "lerobot_check.py"
    r = subprocess.run([sys.executable, str(script), "--python", os.environ["LASTR1_LEROBOT_PYTHON"]],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["lerobot_action"] and got["lerobot_state"] and got["lerobot_flags"]  # frame-exact in LeRobot
    assert got["lerobot_bounds"] == [[0, 6], [6, 15]] and got["lerobot_tasks"] == ["task 0", "task 1"]
    assert got["lastr1_warmup_on_lerobot_recording"] and got["warmup_samples"] == 24
