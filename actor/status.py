"""Where an actor stands (`ActorStatus`, what `Runtime.status()` returns every tick) and the live status line:
one line rewritten in place on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_NAN = float("nan")


@dataclass
class ActorStatus:
    """One snapshot of the control loop; NaN where nothing was measured yet."""

    state: str = "starting"  # running, paused, resetting, waiting: ..., episode done, ...
    episode: int = 0  # the episode in progress (or the last one)
    step: int = 0  # its step
    total_steps: int = 0
    hz: float = _NAN  # loop rate (median period)
    period_p99_ms: float = _NAN
    policy_ms: float = _NAN  # median policy compute on the steps where it ran
    version: int = 0  # adapter version acting
    intervention_rate: float = _NAN  # over the recent steps
    episodes: int = 0  # finished
    successes: int = 0
    pending_weights: int | None = None  # a version staged by the hot reloader, not yet applied
    link: str = ""  # what is wrong with the learner link, if anything

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else _NAN

    def stats_values(self) -> dict[str, float]:
        """The figures the actor reports to the learner beside the named ones (loop rate, policy latency,
        intervention rate)."""
        return {"period_p99_ms": self.period_p99_ms, "policy_version": self.version, "episodes": self.episodes,
                "success_rate": self.success_rate, "steps": self.total_steps}


def _f(x, fmt: str, none: str = "–") -> str:
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_status(s: ActorStatus) -> str:
    ok, n = s.successes, s.episodes
    parts = [
        f"ep {s.episode}", f"step {s.step}", f"{_f(s.hz, '.1f')} Hz", f"policy {_f(s.policy_ms, '.0f')} ms",
        f"v{s.version}", f"interv {_f(s.intervention_rate * 100, '.0f')}%",
        f"success {ok}/{n}" + (f" ({ok / n:.0%})" if n else ""),
    ]
    if s.pending_weights:
        parts.append(f"staged v{s.pending_weights}")
    if s.link:
        parts.append(s.link)
    if s.state != "running":
        parts.append(f"[{s.state}]")
    return " | ".join(parts)


class StatusLine:
    def __init__(self, every_s: float = 0.25, log_every_s: float = 10.0, stream=None, tty: bool | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s if self.tty else log_every_s
        self._last = -1e9
        self._width = 0

    def __call__(self, status: ActorStatus, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        line = format_status(status)
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


class ProgressStatus(StatusLine):
    """A progress bar over a known number of episodes with the status line beside it (eval, record); off a
    terminal it logs the status line as StatusLine does. `count`: which ActorStatus count the bar follows."""

    def __init__(self, total: int, desc: str, count: str = "episodes", every_s: float = 0.25,
                 log_every_s: float = 10.0, stream=None, tty: bool | None = None):
        from tqdm import tqdm

        super().__init__(every_s, log_every_s, stream, tty)
        self.count = count
        self.bar = tqdm(total=total, desc=desc, unit="episode", file=self.stream, disable=not self.tty,
                        dynamic_ncols=True)

    def __call__(self, status: ActorStatus, force: bool = False) -> None:
        if not self.tty:
            return super().__call__(status, force)
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        self.bar.n = int(getattr(status, self.count))
        self.bar.set_postfix_str(format_status(status), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
