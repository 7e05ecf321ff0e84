"""What the fleet's members answer (`LearnerStatus`, `ActorRunStatus`, `ActorTotals`; they cross Ray, so plain
dataclasses) and what a fleet run reports at its end (`FleetReport`, its table and its JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lastr1.actor.status import ActorStatus


@dataclass
class LearnerStatus:
    """`LearnerWorker.status()`: the learner's counters and who is connected."""

    state: str = "unknown"  # ready → running → done | failed; dead when its process is gone
    error: str = ""
    pid: int = 0
    received: int = 0
    updates: int = 0
    episodes: int = 0
    successes: int = 0
    interventions: int = 0
    version: int = 0
    learning: bool = False
    per_actor: dict[str, int] = field(default_factory=dict)  # transitions received by actor id
    connected: dict[str, bool] = field(default_factory=dict)


@dataclass
class ActorTotals:
    """What an actor did: `ActorWorker.run()`'s result, or the sum over an actor's incarnations."""

    episodes: int = 0
    successes: int = 0
    steps: int = 0
    sent: int = 0

    def __add__(self, other: ActorTotals) -> ActorTotals:
        return ActorTotals(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclass
class ActorRunStatus:
    """`ActorWorker.status()`: the worker's state and its control loop's latest status."""

    state: str = "ready"  # ready → running → done | failed
    error: str = ""
    pid: int = 0
    sim_pids: list[int] = field(default_factory=list)
    loop: ActorStatus = field(default_factory=ActorStatus)

    def totals(self) -> ActorTotals:
        """From the last status alone (an actor that died sent no result): about one transition per step."""
        s = self.loop
        return ActorTotals(s.episodes, s.successes, s.total_steps, sent=s.total_steps)


@dataclass
class ActorRow:
    state: str  # starting | running | done | dead | failed
    alive: bool
    episodes: int
    successes: int
    steps: int
    sent: int
    received_by_learner: int
    restarts: int
    error: str


@dataclass
class FleetReport:
    actors: dict[str, ActorRow]
    learner: LearnerStatus
    minutes: float

    def to_dict(self) -> dict:
        """For `fleet_report.json`: the learner's counters, state and error (not its connection details)."""
        keep = ("received", "updates", "episodes", "successes", "interventions", "version", "state", "error")
        return {"actors": {a: dataclasses.asdict(r) for a, r in self.actors.items()},
                "learner": {k: getattr(self.learner, k) for k in keep}, "minutes": self.minutes}


def format_report(rep: FleetReport) -> str:
    lines = [f"{'actor':<10} {'state':<8} {'episodes':>8} {'ok':>4} {'steps':>7} {'sent':>7} {'learner got':>11} "
             f"{'restarts':>8}  error"]
    for a, r in rep.actors.items():
        state = r.state if r.state in ("dead", "failed") else "alive"
        lines.append(f"{a:<10} {state:<8} {r.episodes:>8} {r.successes:>4} {r.steps:>7} {r.sent:>7} "
                     f"{r.received_by_learner:>11} {r.restarts:>8}  {r.error}")
    ln = rep.learner
    lines.append(f"learner: {ln.received} transitions from {len(rep.actors)} actor(s), {ln.episodes} episodes "
                 f"({ln.successes} ok), {ln.updates} updates, adapter v{ln.version}"
                 + (f"; {ln.error}" if ln.error else ""))
    return "\n".join(lines)
