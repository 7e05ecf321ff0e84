"""One line of `lastr1 doctor`'s table: what was checked, how it went, and what to do when it failed.

The checks themselves live beside what they check (policy/checks.py, robot/checks.py, transport/checks.py);
each is a small function that imports its hardware library only when it runs and never raises for a failed
check — it returns one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "FAIL", "warn", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"
