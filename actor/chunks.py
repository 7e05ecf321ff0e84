"""The action chunk a transition carries, and holding transitions back until it is known.

A policy step carries the chunk the policy planned from that step on (H × D): what π(s) proposed, whose first
action was executed. A human step (intervention) carries the human's *next H actions*, as far as the human
kept control, the last one repeated after the human let go or the episode ended.

Why the future human actions and not the human action repeated H times: BC on chunks trains the acting tower
to output, at s_t, the actions of t … t+H−1. Demonstrations are chunked that way (`Episode.action_chunk`:
the recorded actions t … t+H−1, the last repeated past the end), so interventions must be too, or the
demo buffer would teach two different meanings of a chunk. A repeated single action would teach "keep doing
this for 0.8 s" — wrong whenever the human is turning a corner. The chunk still starts with the action that
was executed at t, so the critic's Q(s_t, a_t) sees what happened. Past the end of the intervention we repeat
the human's last action rather than append the policy's, so BC never clones the policy's own actions as if a
human had chosen them.

The cost: a human step can only be sent H−1 steps later. The learner links each transition to the next of
the same episode in arrival order, so every step waits behind an unfinished one (at most H−1 steps, 0.7 s at
10 Hz) and the stream stays in order.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class _Entry:
    __slots__ = ("item", "actions", "chunk")

    def __init__(self, item: Any, actions: list | None, chunk: np.ndarray | None):
        self.item, self.actions, self.chunk = item, actions, chunk

    @property
    def open_actions(self) -> list:
        assert self.actions is not None, "a closed entry takes no more actions"
        return self.actions


class ChunkAssembler:
    def __init__(self, horizon: int):
        self.H = int(horizon)
        self._q: deque[_Entry] = deque()
        self._open: list[_Entry] = []  # human steps whose chunk still grows

    def __len__(self) -> int:
        return len(self._q)

    def push(self, item: Any, *, chunk: np.ndarray | None = None, human: np.ndarray | None = None) -> None:
        """One control step, in order: a policy step with its planned `chunk` (H, D), or a human step with the
        executed human action `human` (D,)."""
        if (chunk is None) == (human is None):
            raise ValueError("a step has either the policy's chunk or the human's action")
        if human is not None:
            h = np.asarray(human, np.float32)
            for e in self._open:
                e.open_actions.append(h)
            e = _Entry(item, [h], None)
            self._q.append(e)
            self._open.append(e)
            self._close(lambda e: len(e.actions) >= self.H)
        else:
            self._close(lambda e: True)  # the human let go: every open chunk ends here
            chunk = np.asarray(chunk, np.float32)
            if chunk.shape[0] != self.H:
                raise ValueError(f"chunk has {chunk.shape[0]} steps, expected {self.H}")
            self._q.append(_Entry(item, None, chunk))

    def _close(self, done) -> None:
        keep = []
        for e in self._open:
            if done(e):
                a = e.open_actions[: self.H]
                e.chunk = np.stack(a + [a[-1]] * (self.H - len(a)))
                e.actions = None
            else:
                keep.append(e)
        self._open = keep

    def ready(self) -> list[tuple[Any, np.ndarray]]:
        """Steps whose chunk is known, oldest first, stopping at the first that is not."""
        out = []
        while self._q and self._q[0].chunk is not None:
            e = self._q.popleft()
            assert e.chunk is not None
            out.append((e.item, e.chunk))
        return out

    def flush(self) -> list[tuple[Any, np.ndarray]]:
        """The episode ended: finish every open chunk (last action repeated) and release everything."""
        self._close(lambda e: True)
        return self.ready()
