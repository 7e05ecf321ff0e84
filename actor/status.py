"""The live status line: one line rewritten in place on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import math
import sys
import time

log = logging.getLogger(__name__)


def _f(x, fmt: str, none: str = "–") -> str:
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_status(s: dict) -> str:
    ok, n = s.get("successes", 0), s.get("episodes", 0)
    parts = [
        f"ep {s.get('episode', 0)}", f"step {s.get('step', 0)}", f"{_f(s.get('hz'), '.1f')} Hz",
        f"policy {_f(s.get('policy_ms'), '.0f')} ms", f"v{s.get('version', 0)}",
        f"interv {_f(s.get('intervention_rate', float('nan')) * 100, '.0f')}%",
        f"success {ok}/{n}" + (f" ({ok / n:.0%})" if n else ""),
    ]
    if s.get("pending_weights"):
        parts.append(f"staged v{s['pending_weights']}")
    if s.get("link"):
        parts.append(s["link"])
    if s.get("state") not in (None, "running"):
        parts.append(f"[{s['state']}]")
    return " | ".join(parts)


class StatusLine:
    def __init__(self, every_s: float = 0.25, log_every_s: float = 10.0, stream=None, tty: bool | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s if self.tty else log_every_s
        self._last = -1e9
        self._width = 0

    def __call__(self, status: dict, force: bool = False) -> None:
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
