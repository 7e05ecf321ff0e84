"""The learner in the rerun view (`lastr1 learner --view`, or `learner.view` in the config).

Every scalar the learner writes to TensorBoard also goes to rerun as `learner/<tag>` on the `update` timeline
(losses, Q statistics, grad norms, the actors' stats, episode curves), and with each update's scalars the view
adds the buffers' sizes (`learner/buffer/demo`, `learner/buffer/rollout`), updates per second
(`learner/updates_per_s`) and the published adapter version (`learner/published_version`, with a line in
`learner/publish` at each new one). Learning is not real-time work, so it logs inline, not on a thread.
"""

from __future__ import annotations

import time
from typing import Any

WEB_PORT = 9091  # beside an actor's view on the same machine (9090 / 9876)
GRPC_PORT = 9877


class ViewedWriter:
    """A SummaryWriter whose scalars also go to a rerun recording; everything else is the writer's."""

    def __init__(self, writer, rec, learner):
        import rerun as rr

        self.rr, self.writer, self.rec, self.learner = rr, writer, rec, learner
        self._t0: tuple[float, int] | None = None
        self._version = -1

    def add_scalar(self, tag: str, value, step: int | None = None, *args, **kwargs) -> None:
        self.writer.add_scalar(tag, value, step, *args, **kwargs)
        rr, rec = self.rr, self.rec
        timeline = "update" if tag.startswith("learner/") else "received"
        rec.set_time(timeline, sequence=int(step or 0))
        rec.log(tag, rr.Scalars([float(value)]))
        if timeline == "update":
            self._learner_state(int(step or 0))

    def _learner_state(self, u: int) -> None:
        rr, rec, lrn = self.rr, self.rec, self.learner
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = (now, u)
        elif now > self._t0[0] and u > self._t0[1]:
            rec.log("learner/updates_per_s", rr.Scalars([(u - self._t0[1]) / (now - self._t0[0])]))
        rec.log("learner/buffer/demo", rr.Scalars([float(lrn.demo.committed)]))
        rec.log("learner/buffer/rollout", rr.Scalars([float(lrn.rollout.committed)]))
        rec.log("learner/published_version", rr.Scalars([float(lrn.version)]))
        if lrn.version != self._version:
            if self._version >= 0:
                rec.log("learner/publish", rr.TextLog(f"published adapter v{lrn.version}", level="INFO"))
            self._version = lrn.version

    def close(self) -> None:
        self.writer.close()
        self.rec.flush()
        self.rec.disconnect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def scalar_view(writer, learner):
    """`writer`, mirrored into rerun when the learner's config asks for a view (`learner.view`)."""
    target = learner.cfg.learner.view
    if not target:
        return writer
    from lastr1.actor.view import recording

    return ViewedWriter(writer, recording(target, app="lastr1-learner", web_port=WEB_PORT, grpc_port=GRPC_PORT),
                        learner)
