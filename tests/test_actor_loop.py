"""The actor loop's rules, deterministically: `Runtime` against an in-memory robot (`robot.interfaces.Env`) at
1 kHz, with the operator's keys scripted per control tick (keys polled in the loop, `key_poll_hz: 0`).

Which key wins, where the reward lands, held steps, interventions in evaluation, the e-stop latch and pause —
without the real-time simulator (tests/test_actor_sim.py runs the same loop on it)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lastr1.actor.agent import Decision
from lastr1.actor.episode import Sink, outcome
from lastr1.actor.loop import Runtime
from lastr1.configs.robot import SafetyConfig
from lastr1.configs.schema import Config
from lastr1.robot.arm import ArmState
from lastr1.robot.errors import ArmFault, RobotError, StaleFrameError
from lastr1.robot.interfaces import Observation, StepInfo
from lastr1.robot.keys import Key, KeySource
from lastr1.robot.safety import Safety
from lastr1.robot.teleop import Teleop, TeleopCommand

POLICY = np.full(7, 0.5, np.float32)  # every policy action; its gripper (0.5) is what a person's 0 keeps
PERSON = np.array([0.2, 0, 0, 0, 0, 0, 0.0], np.float32)  # gripper 0: "leave it as it is"


class ScriptedKeys(KeySource):
    """Keys by poll number; the loop polls once per tick, so poll n comes after n ticks of the episode."""

    def __init__(self, script: dict[int, list[Key]], log: list):
        self.script, self.log, self.polls = script, log, 0

    def poll(self) -> list[Key]:
        keys = self.script.get(self.polls, [])
        self.log.append(f"poll{self.polls}")
        self.polls += 1
        return keys


class Hand(Teleop):
    """A person who takes over on the given reads (one read per tick)."""

    def __init__(self, at: set[int]):
        self.at, self.reads, self.synced = at, 0, []

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self) -> TeleopCommand:
        self.reads += 1
        return TeleopCommand(PERSON.copy(), intervening=self.reads - 1 in self.at)

    def sync_gripper(self, g) -> None:
        self.synced.append(g)


class MemoryEnv:
    """A robot in memory: each observation is numbered (proprio = its number); the arm holds the attempts in
    `hold` (1-based) and whatever safety stops; `log` is what happened, in order."""

    camera_names = ["front"]

    def __init__(self, keys: dict[int, list[Key]] | None = None, teleop: Teleop | None = None,
                 hold: set[int] = frozenset(), stale: set[int] = frozenset(), reset_faults: int = 0,
                 hit: int = 0):
        self.log: list[str] = []
        self.keys = ScriptedKeys(keys or {}, self.log)
        self.teleop = teleop
        self.safety = Safety(SafetyConfig(), 1)
        self.hold, self.stale, self.reset_faults, self.hit = hold, stale, reset_faults, hit
        self.views = self.attempts = self.observes = 0
        self.executed: list[np.ndarray] = []

    def reset(self, seed=None, condition: str = "") -> Observation:
        if self.reset_faults:
            self.reset_faults -= 1
            self.log.append("reset refused")
            raise ArmFault("arm0: the home motion was refused")
        self.log.append("reset")
        return self._view()

    def observe(self) -> Observation:
        self.observes += 1
        if self.observes in self.stale:
            raise StaleFrameError("front: frame too old")
        return self._view()

    def _view(self) -> Observation:
        self.views += 1
        return Observation({"front": np.zeros((4, 4, 3), np.uint8)}, np.full(8, self.views, np.float32), 0.0)

    def act(self, action: np.ndarray) -> StepInfo:
        self.attempts += 1
        if self.attempts == self.hit:  # 100 N on the hand: the contact rules retreat, and where it ends, pause
            def arm(p, f, t):
                return ArmState(np.asarray(p, float), np.array([0, 0, 0, 1.0]), np.zeros(7), 0.04,
                                np.array([f, 0, 0, 0, 0, 0.0]), timestamp=t)

            back = self.safety.filter([arm([0.5, 0, 0.3], -100.0, 1.0)], np.zeros(7))
            self.safety.filter([arm(back.positions[0], 0.0, 1.1)], np.zeros(7))
        if self.safety.stopped or self.attempts in self.hold:
            self.log.append("held")
            return StepInfo(held=True, reasons=["held"])
        self.log.append("act")
        self.executed.append(np.asarray(action).copy())
        return StepInfo()

    def stop(self) -> None:
        self.log.append("stop")

    def recover(self) -> None:
        self.log.append("recover")

    def pause(self) -> None:
        self.safety.pause()
        self.log.append("pause")

    def resume(self) -> None:
        self.safety.resume()
        self.log.append("resume")

    def estop(self) -> None:
        self.safety.estop()
        self.log.append("estop")

    def close(self) -> None:
        pass


class PolicyStub:
    """The agent's surface the loop uses: one fixed action per step, counted resets and interrupts."""

    at_boundary = False
    version = 3

    def __init__(self):
        self.steps = self.resets = self.interrupts = 0

    def reset(self) -> None:
        self.resets += 1

    def interrupt(self) -> None:
        self.interrupts += 1

    def step(self, images, proprio) -> Decision:
        self.steps += 1
        return Decision(action=POLICY.copy(), chunk=POLICY[None].copy(), latents=np.zeros((1, 2), np.float16),
                        latent_len=1, version=self.version, reasoned=False, planned=False, latency_ms=0.0,
                        value=0.0, logprob=0.0)


class Collect(Sink):
    def __init__(self):
        self.steps, self.ends = [], []

    def step(self, s) -> None:
        self.steps.append(s)

    def episode_end(self, summary) -> None:
        self.ends.append(summary)


def _runtime(tmp_path, env, *, mode="rl", max_steps=50, agent=None):
    cfg = Config(run_dir=str(tmp_path))
    cfg.task.control_hz = 1000.0
    cfg.task.max_episode_steps = max_steps
    cfg.actor.key_poll_hz = 0  # keys polled on the loop thread, once per tick: the script is exact
    sink = Collect()
    agent = agent or (PolicyStub() if mode != "record" else None)
    return Runtime(cfg, env, agent=agent, sink=sink, mode=mode, confirm_reset=False), sink


def _episode(rt, stop=None):
    t0 = time.monotonic()
    s = rt.run_episode(0, stop or threading.Event())
    assert time.monotonic() - t0 < 1.0
    return s


@pytest.mark.parametrize("keys, stepped, estopped, stopping, out_of_time, want", [
    ([Key.RESET, Key.FAILURE, Key.SUCCESS], True, True, True, True, "success"),
    ([Key.RESET, Key.FAILURE], True, True, True, True, "failure"),
    ([Key.SUCCESS, Key.FAILURE, Key.RESET], False, True, True, True, "reset"),  # no step to judge yet
    ([Key.SUCCESS], False, False, False, False, None),
    ([], True, True, True, True, "estop"),
    ([Key.PAUSE], True, False, True, True, "stopped"),
    ([], True, False, False, True, "time_limit"),
    ([], True, False, False, False, None),
])
def test_outcome_precedence(keys, stepped, estopped, stopping, out_of_time, want):
    assert outcome(keys, stepped=stepped, estopped=estopped, stopping=stopping, out_of_time=out_of_time) == want


def test_success_rewards_the_last_executed_step_and_chains_next_obs(tmp_path):
    env = MemoryEnv(keys={3: [Key.SUCCESS]})
    rt, sink = _runtime(tmp_path, env)
    s = _episode(rt)
    assert (s.outcome, s.success, s.steps, s.versions) == ("success", True, 3, (3, 3))
    assert [t.reward for t in sink.steps] == [-0.05, -0.05, 10.0]
    assert [(t.terminated, t.truncated) for t in sink.steps] == [(False, False)] * 2 + [(True, False)]
    assert s.ret == pytest.approx(10.0 - 0.1)
    for a, b in zip(sink.steps, sink.steps[1:]):
        assert a.next_obs is b.obs
    assert sink.steps[-1].next_obs.proprio[0] == env.views  # the final view, read after the key
    assert env.log[-1] == "stop"  # the arm holds still between episodes, through the env's public stop
    assert "pause" not in env.log and sink.ends == [s]


def test_failure_terminates_with_the_failure_reward(tmp_path):
    rt, sink = _runtime(tmp_path, MemoryEnv(keys={2: [Key.RESET, Key.FAILURE]}))
    s = _episode(rt)
    assert (s.outcome, s.success, s.steps) == ("failure", False, 2)
    assert [t.reward for t in sink.steps] == [-0.05, rt.cfg.task.failure_reward]
    assert sink.steps[-1].terminated and not sink.steps[-1].truncated


def test_success_key_before_the_first_step_is_ignored(tmp_path):
    rt, sink = _runtime(tmp_path, MemoryEnv(keys={0: [Key.SUCCESS]}), max_steps=2)
    s = _episode(rt)
    assert (s.outcome, s.steps) == ("time_limit", 2)
    assert sink.steps[-1].truncated and not sink.steps[-1].terminated and sink.steps[-1].reward == -0.05


def test_reset_key_truncates(tmp_path):
    rt, sink = _runtime(tmp_path, MemoryEnv(keys={2: [Key.RESET]}))
    s = _episode(rt)
    assert (s.outcome, s.steps) == ("reset", 2)
    assert sink.steps[-1].truncated and not sink.steps[-1].terminated


def test_a_stop_request_truncates_and_one_before_the_start_runs_nothing(tmp_path):
    stop = threading.Event()
    env = MemoryEnv()
    env.keys.poll = lambda: stop.set() or [] if env.attempts == 2 else []
    rt, sink = _runtime(tmp_path, env)
    s = _episode(rt, stop)
    assert (s.outcome, s.steps) == ("stopped", 2) and sink.steps[-1].truncated
    assert rt.run_episode(0, stop) is None and env.attempts == 2


def test_held_steps_make_no_transition_but_count_toward_the_time_limit(tmp_path):
    env = MemoryEnv(hold={2, 3})  # the 2nd and 3rd actions do not reach the arm
    agent = PolicyStub()
    rt, sink = _runtime(tmp_path, env, max_steps=5, agent=agent)
    s = _episode(rt)
    assert (s.outcome, s.steps, env.attempts) == ("time_limit", 3, 5)
    assert [t.step for t in sink.steps] == [0, 1, 2]
    assert sink.steps[0].next_obs is sink.steps[1].obs  # s′ is the view after the held ticks
    assert agent.interrupts == 2  # a held step makes the policy plan afresh


def test_a_hold_is_said_once_while_it_lasts_and_again_when_it_comes_back(tmp_path, caplog):
    env = MemoryEnv(hold={2, 3, 4, 6})  # three ticks held, one step, held again
    rt, _ = _runtime(tmp_path, env, max_steps=7, agent=PolicyStub())
    with caplog.at_level("WARNING", logger="lastr1.actor.loop"):
        s = _episode(rt)
    assert (s.steps, env.attempts) == (3, 7)
    assert [r.getMessage() for r in caplog.records if "step held" in r.getMessage()] == ["step held: held"] * 2


@pytest.mark.parametrize("policy, want", [("hold", ("time_limit", 2, 6)), ("fail", ("failure", 2, 3))])
def test_a_contact_pause_waits_for_a_person_or_fails_the_episode_as_configured(tmp_path, policy, want):
    env = MemoryEnv(hit=3)  # the 3rd action meets a hard contact: retreat, then the arm is paused
    rt, sink = _runtime(tmp_path, env, max_steps=6, agent=PolicyStub())
    rt.cfg.actor.safety_pause = policy
    s = _episode(rt)
    assert (s.outcome, s.steps, env.attempts) == want
    last = sink.steps[-1]
    if policy == "fail":  # the push that ended it is the failing step, and pays the failure reward
        assert last.terminated and last.reward == rt.cfg.task.failure_reward
    else:
        assert last.truncated and not last.terminated


def test_a_persons_pause_is_no_contact_pause():
    safety = Safety(SafetyConfig(), 1)
    safety.pause()
    assert safety.stopped and safety.pause_reason == ""


def test_stale_frame_stops_the_arm_and_is_no_step(tmp_path):
    env = MemoryEnv(stale={2})  # the reset's view is not an observe(): tick 2's read fails
    rt, sink = _runtime(tmp_path, env, max_steps=3)
    s = _episode(rt)
    assert (s.outcome, s.steps, env.attempts) == ("time_limit", 2, 2)
    assert env.log[env.log.index("poll1") + 1] == "stop"


@pytest.mark.parametrize("mode, success", [("rl", True), ("eval", False)])
def test_an_intervention_turns_an_evaluation_success_into_a_failure(tmp_path, mode, success):
    hand = Hand(at={1})
    agent = PolicyStub()
    rt, sink = _runtime(tmp_path, MemoryEnv(keys={3: [Key.SUCCESS]}, teleop=hand), mode=mode, agent=agent)
    s = _episode(rt)
    assert (s.outcome, s.success, s.intervention_steps) == ("success", success, 1)
    assert [t.human for t in sink.steps] == [False, True, False]
    # The person's "leave the gripper" (0) is recorded as what the gripper does: the last command, 0.5.
    np.testing.assert_array_equal(sink.steps[1].action, np.float32([0.2, 0, 0, 0, 0, 0, 0.5]))
    assert hand.synced == [0.5] and agent.interrupts == 1
    assert sink.steps[-1].reward == 10.0  # the reward is the same; only the evaluation's verdict differs


def test_record_mode_takes_the_experts_actions(tmp_path):
    env = MemoryEnv(keys={2: [Key.SUCCESS]})
    cfg = Config(run_dir=str(tmp_path))
    cfg.task.control_hz, cfg.actor.key_poll_hz = 1000.0, 0
    sink = Collect()
    rt = Runtime(cfg, env, sink=sink, mode="record", confirm_reset=False, expert=lambda: np.ones(7))
    s = _episode(rt)
    assert s.success and all(t.human and t.decision is None for t in sink.steps)
    np.testing.assert_array_equal(env.executed, np.ones((2, 7)))


def test_estop_latch_nothing_moves_until_the_reset_key(tmp_path):
    env = MemoryEnv(keys={2: [Key.ESTOP], 5: [Key.RESET]})
    rt, sink = _runtime(tmp_path, env, max_steps=2)
    first = _episode(rt)
    assert (first.outcome, first.steps) == ("estop", 2) and sink.steps[-1].truncated
    assert env.safety.estopped and env.log[-1] == "estop"  # no stop() after it: the e-stop already stopped
    second = _episode(rt)  # waits for the reset key (polls 3, 4, 5), then homes
    log = env.log[env.log.index("estop"):]
    assert log[:5] == ["estop", "poll3", "poll4", "poll5", "reset"]
    assert not env.safety.estopped and second.outcome == "time_limit" and second.steps == 2


def test_pause_runs_no_policy_and_the_time_limit_waits(tmp_path):
    env = MemoryEnv(keys={1: [Key.PAUSE], 3: [Key.PAUSE]})
    agent = PolicyStub()
    rt, sink = _runtime(tmp_path, env, max_steps=3, agent=agent)
    s = _episode(rt)
    assert (s.outcome, s.steps, agent.steps) == ("time_limit", 3, 3)
    paused = env.log[env.log.index("pause"):env.log.index("resume")]
    assert paused == ["pause", "poll2", "poll3"]  # nothing observed, decided or sent while paused
    assert agent.interrupts == 1 and not env.safety.paused  # resuming re-plans from what is seen now


def test_a_refused_reset_is_recovered_and_tried_again(tmp_path):
    env = MemoryEnv(keys={1: [Key.RESET]}, reset_faults=1)
    rt, _ = _runtime(tmp_path, env)
    s = _episode(rt)
    assert env.log[:3] == ["reset refused", "recover", "reset"] and s.outcome == "reset"


def test_a_reset_cut_short_by_the_stop_ends_the_run_without_an_error(tmp_path):
    """A fleet stopped an actor while its home move, slowed by a starved simulator, was still under way; the move
    then timed out. That is the stop taking effect, not the actor failing (a fleet test once saw it fail)."""
    env = MemoryEnv(reset_faults=5)
    rt, _ = _runtime(tmp_path, env)
    stop = threading.Event()
    refuse = env.reset

    def reset(seed=None, condition=""):
        stop.set()
        return refuse(seed, condition)

    env.reset = reset
    assert rt.run_episode(0, stop) is None and env.log == ["reset refused"]
    env.reset, stop = refuse, threading.Event()
    with pytest.raises(ArmFault):  # without a stop, the last of three refusals is still the run's error
        rt.run_episode(0, stop)
    assert env.log.count("reset refused") == 4


def test_episode_numbers_continue_across_runtimes(tmp_path):
    rt, _ = _runtime(tmp_path, MemoryEnv(), max_steps=1)
    assert [s.episode for s in rt.run(max_episodes=2)] == [0, 1]
    rt, _ = _runtime(tmp_path, MemoryEnv(), max_steps=1)
    assert rt.run(max_episodes=1)[0].episode == 2


def test_an_arm_held_for_whole_episodes_stops_the_run_with_the_reason(tmp_path):
    """Episodes that all run out of time without one executed step (a pause nothing clears) end the run with
    the last hold's reason, instead of spinning: a learning run once spun for 25 minutes that way."""
    env = MemoryEnv(hold=set(range(1, 10_000)))
    rt, sink = _runtime(tmp_path, env, max_steps=3)
    with pytest.raises(RobotError, match="5 episodes in a row.*last hold: held"):
        rt.run(max_episodes=20)
    assert len(rt.episodes) == Runtime.STUCK_EPISODES and not sink.steps


def test_a_held_episode_between_working_ones_is_no_reason_to_stop(tmp_path):
    env = MemoryEnv(hold=set(range(1, 13)))  # the first four episodes (3 attempts each) are held throughout
    rt, sink = _runtime(tmp_path, env, max_steps=3)
    assert len(rt.run(max_episodes=7)) == 7 and sink.steps
