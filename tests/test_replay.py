import numpy as np
import pytest

from lastr1.learner.replay import ReplayBuffer, ReplayError


def row(v, terminated=False, truncated=False, intervention=False):
    return {
        "img/front": np.full((4, 4, 3), v % 256, np.uint8),
        "proprio": np.full(8, v, np.float32),
        "action": np.full((2, 7), v, np.float32),
        "latents": np.full((4, 3), v, np.float16),
        "latent_len": np.int64(v),
        "reward": np.float32(v),
        "terminated": np.bool_(terminated),
        "truncated": np.bool_(truncated),
        "intervention": np.bool_(intervention),
    }


def obs(v):
    return {"img/front": np.full((4, 4, 3), v % 256, np.uint8), "proprio": np.full(8, v, np.float32)}


def fill_episode(buf, stream, start, n, end="terminated"):
    for i in range(n):
        last = i == n - 1
        buf.add(
            row(start + i, terminated=last and end == "terminated", truncated=last and end == "truncated"),
            stream, i, final_obs=obs(start + n) if last and end == "truncated" else None,
        )


def test_next_state_links_and_terminal(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    fill_episode(buf, "a/0", 10, 4)
    buf.commit()
    b = buf.gather(buf.sampleable())
    # rows 10, 11, 12 link to 11, 12, 13; the terminated row 13 is ready and its "next" is itself (masked)
    np.testing.assert_array_equal(b.state.proprio[:, 0], [10, 11, 12, 13])
    np.testing.assert_array_equal(b.next_state.proprio[:, 0], [11, 12, 13, 13])
    np.testing.assert_array_equal(b.next_state.images["front"][:, 0, 0, 0], [11, 12, 13, 13])
    np.testing.assert_array_equal(b.next_state.latent_len, [11, 12, 13, 13])
    np.testing.assert_array_equal(b.terminated, [False, False, False, True])
    np.testing.assert_array_equal(b.action[:, 0, 0], [10, 11, 12, 13])


def test_truncated_final_observation_used_and_never_sampled(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    fill_episode(buf, "a/0", 0, 3, end="truncated")
    buf.commit()
    b = buf.gather(buf.sampleable())
    np.testing.assert_array_equal(b.state.proprio[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(b.next_state.proprio[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(b.truncated, [False, False, True])


def test_interleaved_streams_link_within_stream(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    for i in range(3):
        buf.add(row(100 + i, terminated=i == 2), "a/0", i)
        buf.add(row(200 + i, terminated=i == 2), "b/0", i)
    buf.commit()
    b = buf.gather(buf.sampleable())
    pairs = set(zip(b.state.proprio[:, 0].tolist(), b.next_state.proprio[:, 0].tolist()))
    assert pairs == {(100, 101), (101, 102), (102, 102), (200, 201), (201, 202), (202, 202)}


def test_latest_row_without_next_is_not_sampleable(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    buf.add(row(1), "a/0", 0)
    buf.add(row(2), "a/0", 1)
    buf.commit()
    assert len(buf) == 1  # step 0 knows its next; step 1 waits for step 2


def test_fifo_eviction_invalidates_links(tmp_path):
    buf = ReplayBuffer(tmp_path, 5)
    fill_episode(buf, "a/0", 0, 8)
    buf.commit()
    b = buf.gather(buf.sampleable())
    # only rows 3..7 remain; all their links point at live rows
    assert set(b.state.proprio[:, 0].tolist()) == {3, 4, 5, 6, 7}
    assert all(n == p + 1 or (p == 7 and n == 7) for p, n in zip(b.state.proprio[:, 0], b.next_state.proprio[:, 0]))


def test_uncommitted_rows_are_not_sampled_and_vanish_after_crash(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    fill_episode(buf, "a/0", 0, 3)
    buf.commit()
    fill_episode(buf, "a/1", 50, 3)  # not committed: the learner "crashes" here
    assert len(buf) == 3
    again = ReplayBuffer(tmp_path, 100)
    assert again.total == 3 and len(again) == 3
    fill_episode(again, "a/1", 50, 3)  # the actor resends the unacknowledged episode
    again.commit()
    assert len(again) == 6


def test_reopen_keeps_rows_and_stream_links(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    buf.add(row(1), "a/0", 0)
    buf.commit()
    again = ReplayBuffer(tmp_path, 100)
    again.add(row(2, terminated=True), "a/0", 1)
    again.commit()
    b = again.gather(again.sampleable())
    assert sorted(zip(b.state.proprio[:, 0], b.next_state.proprio[:, 0])) == [(1, 2), (2, 2)]


def test_wrong_shapes_and_capacity_refused(tmp_path):
    buf = ReplayBuffer(tmp_path, 10)
    buf.add(row(0), "a/0", 0)
    bad = row(1)
    bad["proprio"] = np.zeros(9, np.float32)
    with pytest.raises(ReplayError, match="proprio"):
        buf.add(bad, "a/0", 1)
    del bad["proprio"]
    with pytest.raises(ReplayError, match="missing"):
        buf.add(bad, "a/0", 1)
    buf.commit()
    with pytest.raises(ReplayError, match="capacity"):
        ReplayBuffer(tmp_path, 20)
    with pytest.raises(ReplayError, match="latents"):  # a row the learner could not train on
        ReplayBuffer(tmp_path / "other", 10).add({k: v for k, v in row(0).items() if k != "latents"}, "a/0", 0)


def test_sample_counts(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    for i in range(4):
        buf.add(row(i, terminated=True, intervention=i % 2 == 0), f"a/{i}", 0)
    buf.commit()
    assert buf.count("intervention") == 2
    b = buf.sample(np.random.default_rng(0), 16)
    assert len(b) == 16 and b.state.images["front"].shape == (16, 4, 4, 3)
    assert b.intervention.dtype == bool and b.intervention.sum() == (b.state.proprio[:, 0] % 2 == 0).sum()


def test_next_latents_fall_back_to_own_row_for_final_observation(tmp_path):
    buf = ReplayBuffer(tmp_path, 100)
    for i in range(3):
        r = row(i, truncated=i == 2)
        r["latent_len"] = np.int64(10 + i)
        buf.add(r, "a/0", i, final_obs=obs(3) if i == 2 else None)
    buf.commit()
    b = buf.gather(buf.sampleable())
    np.testing.assert_array_equal(b.next_state.latent_len, [11, 12, 12])
    np.testing.assert_array_equal(b.next_state.latents[:, 0, 0], [1, 2, 2])
    np.testing.assert_array_equal(b.next_state.proprio[:, 0], [1, 2, 3])


def test_concat_keeps_rows_in_order(tmp_path):
    from lastr1.learner.replay import concat

    buf = ReplayBuffer(tmp_path, 100)
    fill_episode(buf, "a/0", 0, 3)
    buf.commit()
    a, b = buf.gather(np.array([2])), buf.gather(np.array([0, 1]))
    both = concat([a, b])
    np.testing.assert_array_equal(both.state.proprio[:, 0], [2, 0, 1])
    np.testing.assert_array_equal(both.next_state.images["front"][:, 0, 0, 0], [2, 1, 2])
    np.testing.assert_array_equal(both.terminated, [True, False, False])
