"""`lastr1 eval`'s statistics by hand: success rate per run and condition, mean and sample std over runs, and
the "Average" row as the mean ± std of each run's average over its conditions (the paper's Table 2)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lastr1 import configs
from lastr1.actor.evaluate import format_table, summarise


def rows(table: dict[tuple[int, str], list[int]]) -> list[dict]:
    return [{"run": r, "condition": c, "success": bool(s)} for (r, c), got in table.items() for s in got]


def test_summary_by_hand():
    # success %:      run 0   run 1   run 2   mean   sample std
    #   original        75     100      50     75    sqrt((0 + 625 + 625) / 2) = 25
    #   unseen_light    25       0      50     25    25
    #   per-run avg     50      50      50     50    0  (not the mean of the two stds, 25)
    table = {
        (0, "original"): [1, 1, 1, 0], (0, "unseen_lighting"): [1, 0, 0, 0],
        (1, "original"): [1, 1, 1, 1], (1, "unseen_lighting"): [0, 0, 0, 0],
        (2, "original"): [1, 0, 1, 0], (2, "unseen_lighting"): [0, 1, 1, 0],
    }
    cfg = configs.load("sim_insert_hex")
    res = summarise(cfg, rows(table), ["original", "unseen_lighting"], runs=3, rollouts=4,
                    policy=SimpleNamespace(version=7), seconds=12.34)
    s = res["success_rate_pct"]
    assert s["original"] == {"mean": 75.0, "std": 25.0, "per_run": [75.0, 100.0, 50.0]}
    assert s["unseen_lighting"] == {"mean": 25.0, "std": 25.0, "per_run": [25.0, 0.0, 50.0]}
    assert s["average"] == {"mean": 50.0, "std": 0.0, "per_run": [50.0, 50.0, 50.0]}
    assert res["policy"]["version"] == 7 and res["n_rollouts"] == 24 and res["seconds"] == 12.3
    assert res["labels"] == {"original": "Original", "unseen_lighting": "Unseen-Lighting"}
    assert "75.00 ± 25.00" in format_table(res) and "50.00 ± 0.00" in format_table(res)


def test_one_run_has_no_spread_and_a_missing_condition_leaves_the_run_average_alone():
    # run 1 was interrupted before its unseen_lighting rollouts: its average is its original rate only.
    table = {(0, "original"): [1, 0], (0, "unseen_lighting"): [0, 0], (1, "original"): [1, 1]}
    cfg = configs.load("sim_insert_hex")
    res = summarise(cfg, rows(table), ["original", "unseen_lighting"], runs=2, rollouts=2,
                    policy=SimpleNamespace(version=0), seconds=0.0)
    s = res["success_rate_pct"]
    assert s["unseen_lighting"] == {"mean": 0.0, "std": 0.0, "per_run": [0.0]}  # one run: std 0, not NaN
    assert s["average"]["per_run"] == [25.0, 100.0]
    assert s["average"]["std"] == pytest.approx((2 * 37.5**2) ** 0.5)  # sample std of 25 and 100: 53.03
    assert s["original"]["mean"] == 75.0


def test_wilson_interval_against_published_values():
    """95 % Wilson score intervals (Newcombe 1998, table I: 0/20 → 0–16.1 %, 10/20 → 29.9–70.1 %); unlike the
    normal approximation they are not empty at 0 % or 100 %."""
    from lastr1.demo import wilson

    assert wilson(0, 20) == (0.0, 16.1)
    assert wilson(10, 20) == (29.9, 70.1)
    assert wilson(20, 20) == (83.9, 100.0)
    assert wilson(0, 0) == (0.0, 100.0)


def test_difference_interval_against_published_values():
    """Newcombe 1998, table II, method 10 (the hybrid score interval): 56/70 − 48/80 → 0.0524 to 0.3339; it is
    not symmetric about the difference, and it contains 0 when two small evaluations cannot be told apart."""
    from lastr1.demo import difference_interval

    assert difference_interval(56, 70, 48, 80) == (5.2, 33.4)
    assert difference_interval(48, 80, 56, 70) == (-33.4, -5.2)
    assert difference_interval(9, 10, 3, 10) == (17.1, 80.9)  # 0.1705 to 0.8090
    lo, hi = difference_interval(1, 5, 0, 5)
    assert lo < 0 < hi


def test_the_demo_prints_both_evaluations_and_the_change_with_its_interval(tmp_path):
    """`lastr1 demo`'s last line: warm-up and final success with Wilson intervals, and the change between them
    with Newcombe's, read from the two evaluations' results.json."""
    import json

    from lastr1.demo import difference_interval, eval_summary, summary_line

    for name, pct in (("warmup", 0.0), ("final", 20.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"n_rollouts": 5, "success_rate_pct": {"average": {"mean": pct}}}))
    s = eval_summary(tmp_path)
    assert s["warmup_ci95"] == [0.0, 43.4] and s["final_ci95"] == [3.6, 62.4]
    assert s["change_points"] == 20.0 and s["change_ci95"] == list(difference_interval(1, 5, 0, 5))
    line = summary_line(s)
    assert line.startswith("warmup_success: 0 % [0, 43] (95 %, Wilson)  final_success: 20 % [4, 62]")
    lo, hi = s["change_ci95"]
    assert f"change: +20 points [{lo:+.0f}, {hi:+.0f}] (95 %, Newcombe)" in line and lo < 0 < hi
    (tmp_path / "warmup" / "results.json").unlink()  # --skip-baseline: no change to state
    assert "change" not in summary_line(eval_summary(tmp_path))
