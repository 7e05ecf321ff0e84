"""`lastr1 fleet` on a local Ray instance: two simulated actors (own sim servers, own CurveZMQ identities) and the
learner as Ray actors; one actor's process is SIGKILLed mid-run and the rest go on, then it is restarted."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from sim_helpers import loopback, overrides, require_sim

from lastr1 import configs


def _running(pid: int) -> bool:
    """A live process (a zombie awaiting its parent's wait counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _until(fleet, cond, timeout_s: float, what: str):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            why = "; ".join(f"{a}: {m.error}" for a, m in fleet.members.items() if m.error)
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; {fleet.status_line()}"
                                 + (f" ({why})" if why else ""))
        fleet.poll(timeout_s=0.5)


def test_each_actor_gets_its_own_sim_hosts_and_identity(monkeypatch):
    from lastr1.errors import MissingDependency
    from lastr1.fleet import Fleet, FleetError, actor_config, actor_hosts

    assert actor_hosts(["127.0.0.2"], 3, 1) == ["127.0.0.5"]
    # two arms per actor: actor 1 takes the two addresses after actor 0's pair
    assert actor_hosts(["127.0.3.2", "127.0.3.3"], 1, 2) == ["127.0.3.4", "127.0.3.5"]
    with pytest.raises(FleetError, match="last octet"):
        actor_hosts(["127.0.0.250"], 5, 1)
    with pytest.raises(FleetError, match="IPv4"):
        actor_hosts(["localhost"], 1, 1)
    cfg = configs.load("demo")
    c = actor_config(cfg, 2)
    assert (c.actor.actor_id, c.robot.sim.seed) == ("actor2", cfg.robot.sim.seed + 2)
    assert cfg.actor.actor_id == "actor0" and cfg.robot.sim.hosts == ["127.0.0.2"]  # the base is untouched
    monkeypatch.setitem(sys.modules, "ray", None)  # a machine without the [scale] extra
    with pytest.raises(MissingDependency, match=r"lastr1\[scale\]"):
        Fleet(cfg, 2)


def test_report_adds_up_an_actors_incarnations_and_formats_a_table():
    from lastr1.actor.status import ActorStatus
    from lastr1.fleet.report import ActorRow, ActorRunStatus, ActorTotals, FleetReport, LearnerStatus, format_report

    # a dead incarnation counts from its last status (about one transition per step), a finished one from its result
    died = ActorRunStatus(state="running", loop=ActorStatus(episodes=2, successes=1, total_steps=30))
    assert died.totals() == ActorTotals(episodes=2, successes=1, steps=30, sent=30)
    assert ActorTotals(3, 2, 40, 38) + died.totals() == ActorTotals(5, 3, 70, 68)
    rep = FleetReport({"actor0": ActorRow("done", True, 5, 3, 70, 68, 60, 1, "")},
                      LearnerStatus(state="done", received=60, updates=7, episodes=5, successes=3, version=4,
                                    per_actor={"actor0": 60}), minutes=1.5)
    table = format_report(rep)
    assert "actor0     alive" in table and "learner: 60 transitions from 1 actor(s), 5 episodes (3 ok), 7 updates, " \
        "adapter v4" in table
    d = rep.to_dict()
    assert d["actors"]["actor0"]["received_by_learner"] == 60 and d["learner"]["updates"] == 7
    assert "per_actor" not in d["learner"] and d["minutes"] == 1.5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fleet_survives_a_killed_actor_and_restarts_it(tmp_path):
    require_sim()
    pytest.importorskip("ray", reason="ray is not installed (pip install 'lastr1[scale]')")
    from lastr1.fleet import Fleet, actor_hosts

    run = tmp_path / "fleet"
    cfg = configs.load("demo", overrides(8, 1,
        "--run_dir", str(run), "--transport.port", "0", "--transport.bind_host", "127.0.0.1",
        "--transport.heartbeat_s", "0.2", "--transport.liveness_timeout_s", "2.0",
        "--task.max_episode_steps", "15", "--robot.sim.intervention_rate", "1.0",
        "--learner.start_after", "10", "--learner.grad_accum", "1", "--learner.broadcast_every_updates", "2",
        "--learner.checkpoint_every_updates", "1000"))
    base = loopback(8)[0]
    assert actor_hosts([base], 1, 1) == [base.rsplit(".", 1)[0] + ".3"]  # actor1's own sim server address
    said: list[str] = []
    # Two 1-kHz sim servers, two policies and a learner on CI's 2 cores starve each other: an arm may time out
    # on its own (a home motion past its limit, libfranka's UDP receive timeout) and the fleet restarts it, which
    # is what its restart budget is for. Beyond the kill, every restart must name its cause (asserted below).
    fleet = Fleet(cfg, 2, restarts=3, log_to_driver=False, say=said.append)
    rep = None
    sim_pids: set[int] = set()
    try:
        fleet.start()
        lrn = lambda: fleet.learner_last  # noqa: E731
        per = lambda: lrn().per_actor  # noqa: E731
        # Both identities land at the learner: the ids come from the CurveZMQ keys the fleet made.
        _until(fleet, lambda: min(per().get("actor0", 0), per().get("actor1", 0)) >= 5, 180, "both actors")
        keys = Path(fleet.cfg.transport.keys_dir)
        assert sorted(p.name for p in (keys / "actors").glob("*.key_secret")) == ["actor0.key_secret",
                                                                                 "actor1.key_secret"]
        a0, a1 = fleet.members["actor0"], fleet.members["actor1"]
        assert a0.pid and a1.pid and a0.pid != a1.pid and a0.sim_pids and a1.sim_pids
        assert set(a0.sim_pids).isdisjoint(a1.sim_pids)
        sim_pids |= set(a0.sim_pids) | set(a1.sim_pids)
        killed_pid, killed_sims = a1.pid, list(a1.sim_pids)

        before = a1.restarts
        os.kill(killed_pid, signal.SIGKILL)
        _until(fleet, lambda: a1.restarts == before + 1, 30, "the fleet to notice actor1's death")
        assert any("actor1 DIED" in line and "actor0 and the learner go on" in line for line in said), said
        # Its sim server went with it (PR_SET_PDEATHSIG), the fleet kept everything else.
        _until(fleet, lambda: not any(map(_running, killed_sims)), 10, "the dead actor's sim server to exit")
        assert _running(a0.pid) and a0.live and fleet.learner_ref is not None

        # The other actor keeps sending and the learner keeps ingesting and updating.
        got0, updates = per()["actor0"], lrn().updates
        _until(fleet, lambda: per()["actor0"] >= got0 + 10 and lrn().updates > updates, 90,
               "actor0 to keep sending and the learner to keep updating")

        # The restarted actor1 (same identity, a new process, its own sim server again) sends again.
        got1 = per()["actor1"]
        _until(fleet, lambda: per()["actor1"] >= got1 + 5 and a1.pid != killed_pid, 120, "actor1's restart")
        sim_pids |= set(a1.sim_pids)
    finally:
        rep = fleet.stop(timeout_s=60)
    actors, learner = rep.actors, rep.learner
    assert actors["actor0"].state == "done" and actors["actor1"].state == "done", (
        actors["actor0"].error, actors["actor1"].error)
    # actor1 came back after the kill; any other restart (of either actor) followed a failure of its own that
    # the fleet named: one restart per named failure, nothing restarted silently.
    for a in ("actor0", "actor1"):
        own = [e for e in said if re.match(rf"fleet: {a} (FAILED|DIED \(pid \d+\)): \S", e)
               and f"(pid {killed_pid})" not in e]
        assert actors[a].restarts == (a == "actor1") + len(own), (a, said)
    assert learner.error == "" and learner.updates > updates
    assert learner.received == actors["actor0"].received_by_learner + actors["actor1"].received_by_learner
    # what lands in fleet_report.json: the same keys as before the records were typed
    assert set(rep.to_dict()["learner"]) == {"received", "updates", "episodes", "successes", "interventions",
                                             "version", "state", "error"}
    # The learner saved its checkpoint on the clean stop.
    assert (run / "learner" / "checkpoint").is_dir()
    # Nothing left behind: every sim server and every worker process is gone.
    deadline = time.monotonic() + 15
    while any(map(_running, sim_pids | {killed_pid, a0.pid, a1.pid})) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in sim_pids | {a0.pid, a1.pid} if _running(p)]
    assert not left, f"processes left behind: {left}"
