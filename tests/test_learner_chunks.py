"""Human steps' chunks assembled on the learner from the steps after them, in any arrival order."""

import json
import random

import numpy as np

from lastr1.learner.chunks import HumanChunks

H = 4
HUMAN = [np.full(2, 10.0 + i, np.float32) for i in range(16)]


def feed(hc: HumanChunks, steps, kinds, end=None):
    """`kinds[s]`: "h" a human step, "p" a policy step. Returns {row: (chunk[:, 0], final)} as last reported."""
    out = {}
    for s in steps:
        human = HUMAN[s] if kinds[s] == "h" else None
        for row, chunk, final in hc.add("a/1/0", s, 100 + s, human, s == end):
            out[row - 100] = (chunk[:, 0].tolist(), final)
    return out


def test_a_human_step_carries_the_next_human_actions_the_last_repeated():
    kinds = "phhpphhhhhhp"
    got = feed(HumanChunks(H), range(len(kinds)), kinds)
    assert got[1] == ([10 + 1, 10 + 2, 12, 12], True)  # the person let go after two steps
    assert got[2] == ([12, 12, 12, 12], True)
    assert got[5] == ([15, 16, 17, 18], True)  # a long takeover: its next H human actions
    assert got[9] == ([19, 20, 20, 20], True) and got[10] == ([20, 20, 20, 20], True)
    assert 0 not in got and 3 not in got  # policy steps keep the plan they were sent with


def test_any_arrival_order_gives_the_same_chunks_and_only_final_ones_are_final():
    kinds = "hhhhhph"
    want = feed(HumanChunks(H), range(7), kinds, end=6)
    rnd = random.Random(1)
    for _ in range(20):
        order = list(range(7))
        rnd.shuffle(order)
        hc = HumanChunks(H)
        got = feed(hc, order, kinds, end=6)
        assert {r: c for r, (c, f) in got.items() if f} == {r: c for r, (c, _) in want.items()}
        assert hc.streams == {}  # all final once every step is in: nothing left to remember


def test_an_open_chunk_survives_a_restart_and_closes_when_the_episode_is_abandoned():
    hc = HumanChunks(H)
    first = feed(hc, [0, 1], "hh")
    assert first[0] == ([10, 11, 11, 11], False) and first[1] == ([11, 11, 11, 11], False)
    again = HumanChunks(H, json.loads(json.dumps(hc.state())))  # committed with the buffer, reopened
    assert feed(again, [2], "hhh")[0] == ([10, 11, 12, 12], False)
    closed = {row - 100: (c[:, 0].tolist(), f) for row, c, f in again.close("a/1/0")}
    assert closed == {0: ([10, 11, 12, 12], True), 1: ([11, 12, 12, 12], True), 2: ([12, 12, 12, 12], True)}
    assert again.streams == {}


def test_what_is_remembered_stays_small_during_a_long_episode():
    hc = HumanChunks(H)
    for s in range(600):
        hc.add("a/1/0", s, s, HUMAN[s % 16] if s % 50 < 20 else None, False)
        assert len(hc.streams["a/1/0"]["acts"]) <= H
