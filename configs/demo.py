"""`lastr1 demo`: how much of each stage the one-command demonstration runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoConfig:
    demos: int = 5
    minutes: float = 3.0
    eval_rollouts: int = 5
