"""The action chunk of a human step, assembled on the learner from the steps after it.

A policy step carries the chunk the policy planned from that step on (H × D): what π(s) proposed, whose first
action was executed. A human step (intervention) stands for the human's *next H actions*, as far as the human
kept control, the last one repeated after the human let go or the episode ended.

Why the future human actions and not the human action repeated H times: BC on chunks trains the acting tower
to output, at s_t, the actions of t … t+H−1. Demonstrations are chunked that way (`Episode.action_chunk`:
the recorded actions t … t+H−1, the last repeated past the end), so interventions must be too, or the
demo buffer would teach two different meanings of a chunk. A repeated single action would teach "keep doing
this for 0.8 s" — wrong whenever the human is turning a corner. The chunk still starts with the action that
was executed at t, so the critic's Q(s_t, a_t) sees what happened. Past the end of the intervention we repeat
the human's last action rather than append the policy's, so BC never clones the policy's own actions as if a
human had chosen them.

Why here and not on the actor: a chunk is known only H−1 steps after its step was executed. An actor that
held the step back until then lost it when it crashed (up to H steps executed on the robot, never spooled).
The actor now sends every step the moment it is executed, a human one with its executed action alone (1 × D);
this class fills each human row's chunk as the steps after it arrive, in any order, and says when it is final
(the replay buffer holds the row out of sampling until then). Its state is small and is committed with the
buffer, so a learner restart continues where it stopped.
"""

from __future__ import annotations

import numpy as np

MAX_STREAMS = 256  # episodes followed at once; the oldest beyond it is closed as it stands


class HumanChunks:
    def __init__(self, horizon: int, state: dict | None = None):
        self.H = int(horizon)
        # stream -> {"acts": {step: human action | None (a policy step)}, "end": last step or -1,
        #            "next": every step below it has arrived, "open": {step: row}} (keys as str: JSON)
        self.streams: dict[str, dict] = state or {}

    def state(self) -> dict:
        return self.streams

    def add(self, stream: str, step: int, row: int, human: np.ndarray | None, last: bool) -> list:
        """Step `step` of `stream` arrived as buffer row `row` (`human`: its executed human action, else None).
        Returns (row, chunk, final) for every human row whose chunk this step changed, its own included."""
        st = self.streams.pop(stream, None) or {"acts": {}, "end": -1, "next": 0, "open": {}}
        self.streams[stream] = st  # most recently used last
        st["acts"][str(step)] = None if human is None else np.asarray(human, np.float32).tolist()
        if last:
            st["end"] = step
        if human is not None:
            st["open"][str(step)] = row
        out = self._update(st)
        self._forget(st)
        if 0 <= st["end"] < st["next"] and not st["open"]:
            del self.streams[stream]  # every step arrived and every chunk is final
        while len(self.streams) > MAX_STREAMS:
            out += self.close(next(iter(self.streams)))
        return out

    def close(self, stream: str) -> list:
        """`stream` will get no more steps (its actor stopped mid-episode): its open chunks end as they stand."""
        st = self.streams.pop(stream, None)
        if st is None:
            return []
        st["end"] = max([int(s) for s in st["acts"]], default=st["next"] - 1)
        return self._update(st)

    def _update(self, st: dict) -> list:
        out = []
        for s, row in list(st["open"].items()):
            chunk, final = self._chunk(st, int(s))
            out.append((row, chunk, final))
            if final:
                del st["open"][s]
        return out

    def _chunk(self, st: dict, t: int) -> tuple[np.ndarray, bool]:
        acts, final = [st["acts"][str(t)]], True
        for j in range(t + 1, t + self.H):
            if 0 <= st["end"] < j:
                break  # the episode ended
            a = st["acts"].get(str(j), "?")
            if a == "?":
                final = False  # not arrived yet
                break
            if a is None:
                break  # the policy took over again
            acts.append(a)
        chunk = np.asarray(acts + [acts[-1]] * (self.H - len(acts)), np.float32)
        return chunk, final

    def _forget(self, st: dict) -> None:
        """Keep only the steps an open chunk, or a step still to arrive, can need: any step yet to come is at
        or above `next`, and needs only the steps after it."""
        while str(st["next"]) in st["acts"]:
            st["next"] += 1
        keep = min([int(s) for s in st["open"]] + [st["next"]])
        st["acts"] = {s: a for s, a in st["acts"].items() if int(s) >= keep}
