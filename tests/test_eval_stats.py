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
