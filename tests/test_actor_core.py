"""The actor's pieces on the real tiny policy: slow/fast schedule, receding horizon,
hot reload staged off the loop thread and applied only at chunk boundaries."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from policy_helpers import INSTRUCTION, frames, perturb_trainables, tiny_policy

from lastr1.actor.agent import Agent
from lastr1.actor.reload import HotReloader
from lastr1.actor.timing import RateKeeper
from lastr1.policy.adapter import pack
from lastr1.policy.errors import AdapterError


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()


def _obs(seed):
    f = frames(seed)
    return {"front": f["front"], "wrist": f["wrist"]}, f["proprio"]


def test_schedule_reason_every_kappa_plan_every_n(policy):
    agent = Agent(policy, INSTRUCTION, kappa=4, replan_every=2, explore=True)
    log = []
    for t in range(12):
        d = agent.step(*_obs(t))
        log.append((d.reasoned, d.planned))
        assert d.action.shape == (policy.D,) and d.chunk.shape == (policy.H, policy.D)
        assert d.latents.dtype == np.float16 and d.latents.shape == (d.latent_len, policy.d)
    assert [r for r, _ in log] == [t % 4 == 0 for t in range(12)]
    assert [p for _, p in log] == [t % 2 == 0 for t in range(12)]


def test_each_decision_names_the_frame_its_prefix_was_reasoned_from(policy):
    """Defect 1 (actor side): with κ = 4 steps 1–3 act on the prefix of step 0's front frame; the decision
    carries that frame (it travels as Transition.slow_images) so the learner trains on the same context."""
    agent = Agent(policy, INSTRUCTION, kappa=4, replan_every=1, explore=False)
    for t in range(8):
        d = agent.step(*_obs(t))
        assert d.slow_images is not None
        assert np.array_equal(d.slow_images["front"], _obs(t - t % 4)[0]["front"])


def test_chunk_is_followed_between_replans(policy):
    agent = Agent(policy, INSTRUCTION, kappa=8, replan_every=4, explore=True)
    d0 = agent.step(*_obs(0))
    rest = [agent.step(*_obs(t)) for t in range(1, 4)]
    for k, d in enumerate(rest, start=1):
        assert not d.planned
        np.testing.assert_array_equal(d.action, d0.chunk[k])
        # the plan from here on is the chunk's rest with its last action repeated
        np.testing.assert_array_equal(d.chunk[: policy.H - k], d0.chunk[k:])
        np.testing.assert_array_equal(d.chunk[policy.H - k:], np.repeat(d0.chunk[-1:], k, 0))
    assert agent.step(*_obs(4)).planned


def test_interrupt_forces_replan_and_boundary(policy):
    agent = Agent(policy, INSTRUCTION, kappa=3, replan_every=4, explore=False)
    agent.step(*_obs(0))
    assert not agent.at_boundary
    agent.interrupt()
    d = agent.step(*_obs(1))
    assert d.planned and not d.reasoned  # a re-plan on the cached prefix, no new reasoning yet
    agent.step(*_obs(2))
    assert not agent.at_boundary  # 3 steps since reasoning, but the chunk is still being followed
    agent.interrupt()
    assert agent.at_boundary  # a re-plan is due and so is reasoning: new weights may go in now
    assert agent.step(*_obs(3)).reasoned


def test_hot_reload_stages_in_background_and_applies_at_boundary(policy):
    src = tiny_policy()
    perturb_trainables(src, seed=3)
    blob = src.export_adapter(7)

    class W:  # what ActorLink.latest_weights returns: version, sha256, adapter bytes
        version, sha256, adapter = blob.version, blob.sha256, blob.data

    box = {"w": None}
    before = {k: v.detach().clone() for k, v in policy.trainable_state().items()}
    v0 = policy.version
    with HotReloader(policy, lambda: box["w"], poll_s=0.01) as rl:
        time.sleep(0.05)
        assert rl.pending is None and policy.version == v0
        box["w"] = W
        deadline = time.monotonic() + 10
        while rl.pending is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rl.pending == 7
        # staged, not applied: the live weights are untouched until the loop says so
        for k, v in policy.trainable_state().items():
            assert torch.equal(v, before[k])
        assert rl.apply() == 7
    assert policy.version == 7 and rl.applied == 1
    want = src.trainable_state()
    for k, v in policy.trainable_state().items():
        assert torch.equal(v, want[k])
    assert rl.apply() is None  # nothing new


def test_hot_reload_rejects_bad_blob_and_keeps_weights(policy):
    good = policy.export_adapter(policy.version)
    state = {k: v.detach().clone() for k, v in policy.trainable_state().items()}

    class Bad:
        version = policy.version + 5
        adapter = good.data[:-10] + b"0123456789"
        sha256 = good.sha256  # hash no longer matches

    rl = HotReloader(policy, lambda: Bad)
    assert rl.poll() is None and rl.rejected == 1 and "sha256" in rl.last_error
    assert rl.apply() is None
    for k, v in policy.trainable_state().items():
        assert torch.equal(v, state[k])
    with pytest.raises(AdapterError):
        rl.stage(dataclasses.replace(good, version=good.version + 1))  # header says another version
    # the reloader's checks are `Policy.load_adapter`'s own (policy.adapter.verify): names, shapes, finite values
    with pytest.raises(AdapterError, match="shape"):
        rl.stage(tiny_policy(lora_rank=4).export_adapter(policy.version + 6))
    nan = {k: v.detach().clone() for k, v in policy.trainable_state().items()}
    next(iter(nan.values())).fill_(float("nan"))
    with pytest.raises(AdapterError, match="NaN"):
        rl.stage(pack(nan, policy.version + 7))
    assert policy.version == good.version


class ScriptedTime:
    """`time` for actor/timing.py on a clock the test moves: a loaded CI machine's wall clock measures the
    machine, not the rate keeper (this test failed there on a 15-ms scheduling delay)."""

    def __init__(self):
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_rate_keeper_keeps_absolute_schedule(monkeypatch):
    from lastr1.actor import timing

    clock = ScriptedTime()
    monkeypatch.setattr(timing, "time", clock)
    rk = RateKeeper(50.0)
    t = []
    for work in (0.005, 0.012, 0.001, 0.019, 0.0, 0.008, 0.015, 0.002, 0.0, 0.011, 0.004):
        t.append(rk.wait())
        clock.t += work  # the tick's own work: shorter than a period, it never shifts the schedule
    np.testing.assert_allclose(np.diff(t), 0.02, atol=1e-9)
    assert rk.overruns == 0
    clock.t += 0.1  # a stall: the missed ticks are dropped, not burst through
    late = rk.wait()
    t2 = [rk.wait() for _ in range(3)]
    assert rk.overruns == 1 and t2[0] == pytest.approx(late + 0.02)
    np.testing.assert_allclose(np.diff(t2), 0.02, atol=1e-9)


def test_status_line_rewrites_in_place_on_a_terminal_and_logs_otherwise(caplog):
    import io
    import logging

    from lastr1.actor.status import ActorStatus, StatusLine, format_status

    s = ActorStatus(episode=3, step=17, hz=9.87, policy_ms=12.3, version=5, intervention_rate=0.25, episodes=4,
                    successes=3, state="running", period_p99_ms=80.0)
    line = format_status(s)
    for part in ("ep 3", "step 17", "9.9 Hz", "policy 12 ms", "v5", "interv 25%", "success 3/4 (75%)"):
        assert part in line
    # what the actor reports to the learner beside the named figures (the learner's TensorBoard tags)
    assert s.stats_values() == {"period_p99_ms": 80.0, "policy_version": 5, "episodes": 4,
                                "success_rate": 0.75, "steps": 0}
    assert "–" in format_status(ActorStatus())  # nothing measured yet: dashes, not "nan"
    buf = io.StringIO()
    tty = StatusLine(every_s=0.0, stream=buf, tty=True)
    tty(s)
    tty(dataclasses.replace(s, step=18, state="paused"))
    tty.close()
    out = buf.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and "[paused]" in out
    with caplog.at_level(logging.INFO, logger="lastr1.actor.status"):
        log = StatusLine(every_s=0.0, log_every_s=3600, stream=io.StringIO(), tty=False)
        log(s)
        log(s)  # within log_every_s: not repeated
    assert len([r for r in caplog.records if "ep 3" in r.getMessage()]) == 1


def test_progress_status_counts_episodes_with_the_status_beside():
    import io

    from lastr1.actor.status import ActorStatus, ProgressStatus

    out = io.StringIO()
    bar = ProgressStatus(4, "eval rollouts", "episodes", every_s=0.0, stream=out, tty=True)
    bar(ActorStatus(state="running", episode=2, step=5, episodes=2, successes=1))
    bar.close()
    text = out.getvalue()
    assert "eval rollouts" in text and "2/4" in text and "success 1/2" in text
def test_hot_reload_never_goes_back_to_an_older_version(policy):
    """Fed v5 and then a valid v3 (a learner that restarted behind what it published): the policy stays on v5,
    whether v3 comes through the source or is staged directly."""
    src = tiny_policy()
    blobs = {}
    for v in (5, 3):
        perturb_trainables(src, seed=v)
        blobs[v] = src.export_adapter(policy.version + v)

    def weights(b):
        class W:
            version, sha256, adapter = b.version, b.sha256, b.data
        return W

    box = {"w": weights(blobs[5])}
    rl = HotReloader(policy, lambda: box["w"])
    assert rl.poll() is not None and rl.apply() == blobs[5].version
    v5 = {k: v.detach().clone() for k, v in policy.trainable_state().items()}
    box["w"] = weights(blobs[3])
    assert rl.poll() is None and rl.apply() is None
    rl._staged = rl.stage(blobs[3])  # even staged, an older version is never applied
    assert rl.apply() is None and policy.version == blobs[5].version
    for k, v in policy.trainable_state().items():
        assert torch.equal(v, v5[k])
