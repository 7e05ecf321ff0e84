"""Keeping the control rate and measuring it."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


class Window:
    """The last `n` samples of a quantity, for percentiles and means."""

    def __init__(self, n: int = 1000):
        self._d: deque[float] = deque(maxlen=n)

    def add(self, x: float) -> None:
        self._d.append(float(x))

    def __len__(self) -> int:
        return len(self._d)

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._d, float), q)) if self._d else float("nan")

    def mean(self) -> float:
        return float(np.mean(np.fromiter(self._d, float))) if self._d else float("nan")

    def values(self) -> np.ndarray:
        return np.fromiter(self._d, float)


class RateKeeper:
    """Ticks at `hz` on an absolute schedule (a late tick does not push every later one back), measures the
    period between tick starts, and warns — at most every `warn_every_s` — when the loop cannot keep up.

    `clock`: a simulated clock that the environment advances itself (the lockstep robot: one control period
    per action). Then nothing sleeps: a tick starts as soon as the last one ended, at the clock's time."""

    def __init__(self, hz: float, warn_every_s: float = 10.0, window: int = 1000,
                 clock: Callable[[], float] | None = None):
        if hz <= 0:
            raise ValueError(f"control rate must be positive, got {hz}")
        self.clock = clock
        self.period = 1.0 / hz
        self.periods_ms = Window(window)
        self.overruns = 0
        self._warn_every_s = warn_every_s
        self._last_warn = -1e9
        self._next: float | None = None
        self._last: float | None = None

    def restart(self) -> None:
        """After a pause or an episode reset: the next tick is now, and no period spans the gap."""
        self._next = None
        self._last = None

    def wait(self) -> float:
        """Sleep until the next tick; returns its time.monotonic(). On a simulated clock: no sleep, and the
        periods measured are the clock's."""
        if self.clock is not None:
            now = self.clock()
            if self._last is not None:
                self.periods_ms.add((now - self._last) * 1e3)
            self._last = now
            return time.monotonic()
        now = time.monotonic()
        if self._next is None:
            self._next = now
        elif now < self._next:
            time.sleep(self._next - now)
            now = time.monotonic()
        elif now - self._next > 0.5 * self.period:
            self.overruns += 1
            if now - self._last_warn > self._warn_every_s:
                self._last_warn = now
                log.warning("control loop cannot keep %.1f Hz: tick %.0f ms late (period p50 %.0f ms, p99 %.0f ms)",
                            1.0 / self.period, (now - self._next) * 1e3, self.periods_ms.percentile(50),
                            self.periods_ms.percentile(99))
            self._next = now  # drop the missed ticks rather than bursting to catch up
        if self._last is not None:
            self.periods_ms.add((now - self._last) * 1e3)
        self._last = now
        self._next += self.period
        return now

    @property
    def next_tick(self) -> float | None:
        """time.monotonic() of the next tick (None before the first, and on a simulated clock: no sleep ahead)."""
        return self._next

    @property
    def hz(self) -> float:
        p = self.periods_ms.percentile(50)
        return 1e3 / p if p == p and p > 0 else float("nan")
