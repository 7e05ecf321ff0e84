"""The control loop: observe → policy (or a person) → safety → arm, at `task.control_hz`.

    rt = Runtime(cfg, env, agent=agent, sink=TransitionSink(link, H), reloader=reloader)
    summary = rt.run(stop_event, max_episodes=10)

One tick (the env is a `robot.interfaces.Env`: `robot.env.RobotEnv` for the real and the simulated robot):

    wait for the tick ─► operator keys ─► observe ─► hot reload if at a chunk boundary ─► agent.step
        ─► the person's command replaces the policy's when intervening ─► env.act (safety → arm)

Keys pressed after a tick's action are the outcome of that action: success/failure mark the step before
them, so the reward and `terminated` land on the step that finished the task. Every step is handed to the
sink one step late (after the next action went out), once s′ and whether the episode ended are known. A
step the safety layer held is no step: nothing moved, so the previous step's s′ is simply the next view; it
still counts toward the time limit, which is measured in control periods.

Episodes end by the success key (terminated, `task.success_reward`), the failure key (terminated,
`task.failure_reward`: the operator judged the attempt over, nothing further is earned in it), the time
limit (`truncated`: the state was not terminal, the learner bootstraps from the final observation), the
reset key mid-episode, an e-stop, or a stop request (all `truncated`). Every other step earns
`task.step_penalty`. These rules are actor/episode.py (`outcome`, `Episode`); this module times them and
talks to the robot.

Pause and e-stop act at once from the key watcher thread (`env.pause()` / `env.estop()` stop the arm and
latch the safety layer), not at the next tick. Paused ticks run no policy and record nothing.

Modes: "rl" (policy acts, the person may take over: those steps are flagged and carry the person's action),
"eval" (no learning; an intervention still moves the robot — the person must always be able to — but the
rollout then counts as a failure), "record" (the person, or the scripted expert in sim, drives every step).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from lastr1.actor.episode import Episode, EpisodeSummary, Outcome, Sink, outcome
from lastr1.actor.status import ActorStatus
from lastr1.actor.timing import RateKeeper, Window
from lastr1.errors import Lastr1Error
from lastr1.files import save_json
from lastr1.robot.errors import ArmFault, RobotError, StaleFrameError
from lastr1.robot.keys import Key

if TYPE_CHECKING:
    from lastr1.actor.agent import Decision
    from lastr1.configs.schema import Config
    from lastr1.robot.interfaces import Env, Observation
    from lastr1.robot.teleop import Teleop

log = logging.getLogger(__name__)

Mode = Literal["rl", "eval", "record"]


class ActorError(Lastr1Error):
    pass


class _KeyWatcher:
    """Polls the operator keys off the control thread so pause/e-stop stop the arm within one poll period
    whatever the loop is doing (e.g. waiting on the reasoning tower); other keys are queued for the loop."""

    def __init__(self, keys, on_urgent: Callable[[Key], None], hz: float):
        self.keys, self.on_urgent, self.period = keys, on_urgent, 1.0 / hz
        self.q: queue.Queue[Key] = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="operator-keys", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                for k in self.keys.poll():
                    if k in (Key.PAUSE, Key.ESTOP):
                        self.on_urgent(k)
                    self.q.put(k)
            except BaseException as e:  # noqa: BLE001 — re-raised in the loop: the e-stop key is gone
                self.error = e
                return

    def drain(self) -> list[Key]:
        if self.error is not None:
            raise self.error
        out = []
        while True:
            try:
                out.append(self.q.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=2.0)


class Runtime:
    def __init__(self, cfg: Config, env: Env, *, agent=None, sink: Sink | None = None, reloader=None, mode: Mode = "rl",
                 seed: int = 0, conditions: list[str] | None = None,
                 on_tick: Callable[[ActorStatus], None] | None = None, confirm_reset: bool | None = None,
                 expert: Callable[[], np.ndarray] | None = None):
        if mode != "record" and agent is None:
            raise ActorError(f"mode {mode!r} needs a policy agent")
        self.cfg, self.env, self.agent, self.mode = cfg, env, agent, mode
        self.sink = sink or Sink()
        self.reloader = reloader
        self.seed = seed
        self.conditions = conditions
        self.on_tick = on_tick
        self.expert = expert
        self.max_steps = cfg.task.max_episode_steps
        self.confirm_reset = (cfg.robot.kind == "real" and cfg.actor.confirm_reset) if confirm_reset is None \
            else confirm_reset
        # A simulated robot that keeps its own time (robot.kind: lockstep) is stepped, not waited for: no sleep
        # between ticks, and the keys are read on this thread so every run sees them at the same step.
        self.clock: Callable[[], float] | None = getattr(env, "clock", None)
        self.rate = RateKeeper(cfg.task.control_hz, cfg.actor.warn_every_s, clock=self.clock)
        self.work_ms = Window()  # a tick's own work: tick start → the action sent (the rest is sleep)
        self.latency_ms = Window()  # policy compute on the steps where it ran
        self.reason_ms = Window()
        self.act_ms = Window()
        self.episodes: list[EpisodeSummary] = []
        self.episode = self._first_episode()
        self.total_steps = 0
        self.paused = False
        self._last_hold = self._said_hold = ""  # the last hold reported; the one said since the last step
        self.estopped = False
        self._env_lock = threading.RLock()  # the key watcher's stop vs the loop's act/observe
        self._watcher: _KeyWatcher | None = None
        self._status = "starting"
        self._step = 0
        self._interventions_window = Window(200)

    # --- episode numbering: unique per actor across restarts, so the learner never joins two episodes ----

    def _state_file(self):
        from pathlib import Path

        return Path(self.cfg.run_dir) / "actor" / f"{self.cfg.actor.actor_id}.{self.mode}.json"

    def _first_episode(self) -> int:
        import json

        f = self._state_file()
        try:
            return int(json.loads(f.read_text())["next_episode"])
        except (OSError, ValueError, KeyError):
            return 0

    def _save_episode_counter(self) -> None:
        f = self._state_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        save_json(f, {"next_episode": self.episode})

    # --- operator keys ----------------------------------------------------------------------------------

    def _urgent(self, k: Key) -> None:
        with self._env_lock:
            if k is Key.ESTOP:
                self.estopped = True
                self.env.estop()
                log.warning("E-STOP: arm stopped. Press the reset key to clear it and start a new episode.")
            elif k is Key.PAUSE:
                self.paused = not self.paused
                if self.paused:
                    self.env.pause()
                    log.info("paused (press the pause key again to resume)")
                else:
                    self.env.resume()
                    log.info("resumed")

    def _keys(self) -> list[Key]:
        if self.env.keys is None:
            return []
        if self._watcher is not None:
            return self._watcher.drain()
        keys = self.env.keys.poll()
        for k in keys:
            if k in (Key.PAUSE, Key.ESTOP):
                self._urgent(k)
        return keys

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, max_episodes: int | None = None,
            max_steps: int | None = None, seeds: list[int] | None = None) -> list[EpisodeSummary]:
        """Run episodes until `stop` is set, `max_episodes` end or `max_steps` (total) are taken."""
        stop = stop or threading.Event()
        done: list[EpisodeSummary] = []
        with self.session():
            while not stop.is_set():
                if max_episodes is not None and len(done) >= max_episodes:
                    break
                if max_steps is not None and self.total_steps >= max_steps:
                    break
                seed = seeds[len(done)] if seeds is not None and len(done) < len(seeds) else \
                    self.seed * 1_000_003 + self.episode
                budget = None if max_steps is None else max_steps - self.total_steps
                s = self.run_episode(seed, stop, budget)
                if s is None:
                    break
                done.append(s)
                self._check_progress(done)
        return done

    STUCK_EPISODES = 5

    def _check_progress(self, done: list[EpisodeSummary]) -> None:
        """Episodes that all ran out of time without one executed step mean an arm held throughout (a pause or
        fault nothing clears): stop and say why rather than spin (a learning run once did for 25 minutes)."""
        last = done[-self.STUCK_EPISODES:]
        if len(last) == self.STUCK_EPISODES and all(s.steps == 0 and s.outcome == "time_limit" for s in last):
            raise RobotError(
                f"{self.STUCK_EPISODES} episodes in a row ran out of time without one executed step; the last "
                f"hold: {self._last_hold or 'none reported'}",
                hint="clear the cause (resume after a hard hit, reset the e-stop, recover the arm) and start again")

    @contextlib.contextmanager
    def session(self):
        """The key watcher runs while episodes do (`run` opens one; callers of `run_episode` may too)."""
        hz = self.cfg.actor.key_poll_hz
        if self.env.keys is not None and hz > 0 and self._watcher is None and self.clock is None:
            self._watcher = _KeyWatcher(self.env.keys, self._urgent, hz)
            try:
                yield self
            finally:
                self._watcher.close()
                self._watcher = None
        else:
            yield self

    RESET_TRIES = 3
    RESET_BACKOFF_PERIODS = 10

    def _reset(self, seed, condition: str, stop: threading.Event):
        """Home and a new scene. A refused or unfinished home motion (a reflex, a blocked path, a slow
        simulation) is recovered and tried again before the actor gives up with the arm's own error."""
        for attempt in range(1, self.RESET_TRIES + 1):
            try:
                with self._env_lock:
                    return self.env.reset(seed=seed, condition=condition)
            except ArmFault as e:
                if stop.is_set():
                    # Asked to stop while the arm was still on its way home (a fleet's stop came while a starved
                    # simulator made the move slow): the stop takes effect, the run does not fail.
                    log.warning("reset not finished when the stop came (%s); stopping", str(e).splitlines()[0])
                    return None
                if attempt == self.RESET_TRIES:
                    raise
                log.warning("reset failed (try %d of %d): %s; recovering and trying again",
                            attempt, self.RESET_TRIES, str(e).splitlines()[0])
                with self._env_lock:
                    self.env.recover()
                if self.clock is None:
                    # A starved PC refuses plans in bursts (franky's planner, Ruckig -110/-111, when the arm's state
                    # comes late): give the burst time to pass, 10 control periods more each try.
                    stop.wait(attempt * self.RESET_BACKOFF_PERIODS / self.cfg.task.control_hz)
        return None

    def run_episode(self, seed: int | None, stop: threading.Event, budget: int | None = None,
                    condition: str = "") -> EpisodeSummary | None:
        """One episode from reset to its end; None if stopped before it began."""
        obs = self._begin(seed, stop, condition)
        if obs is None:
            return None
        t = self.cfg.task
        ep = Episode(self.episode, seed, condition, self.sink, step_penalty=t.step_penalty,
                     success_reward=t.success_reward, failure_reward=t.failure_reward)
        self.episode += 1
        self._save_episode_counter()
        self.sink.episode_start(ep.number, seed, obs)
        self._status = "running"
        self.rate.restart()
        while True:
            t_tick = self._next_tick()
            ended = outcome(self._keys(), stepped=ep.prev is not None, estopped=self.estopped,
                            stopping=stop.is_set(),
                            out_of_time=ep.ticks >= self.max_steps or (budget is not None and ep.steps >= budget),
                            contact_paused=self.cfg.actor.safety_pause == "fail" and bool(self.env.safety.pause_reason))
            if ended is not None:
                break
            if self.paused:
                self._status = "paused"  # paused ticks run no policy and record nothing
                self._emit(ep.number, ep.steps)
            else:
                self._tick(ep, t_tick)
        return self._end(ep, ended)

    def _begin(self, seed: int | None, stop: threading.Event, condition: str) -> Observation | None:
        """Clear what the last episode left (e-stop, pause), reset, and the first observation; None if stopped."""
        if self.estopped:
            # Nothing moves after an e-stop until a person says so (the reset key), not even the home motion.
            log.warning("e-stopped: press the reset key once the robot and the scene are safe")
            if not self._await_reset_key(stop):
                return None
            self.env.safety.reset_estop()
            self.estopped = False
        if self.paused:
            self.paused = False
            self.env.resume()
        self._status = "resetting"
        obs = self._reset(seed, condition, stop)
        if obs is None:
            return None
        if self.confirm_reset:
            if not self._await_reset_key(stop, condition):
                return None
            with self._env_lock:
                obs = self.env.observe()
        if stop.is_set():
            return None
        if self.agent is not None:
            self.agent.reset()
        return obs

    def _next_tick(self) -> float:
        if self.reloader is not None:
            self.reloader.loop_idle(self.rate.next_tick)
        t_tick = self.rate.wait()
        if self.reloader is not None:
            self.reloader.loop_busy()
        return t_tick

    def _tick(self, ep: Episode, t_tick: float) -> None:
        """One control period: observe, decide, act. An action that did not reach the arm is no step."""
        ep.ticks += 1
        if self._status == "paused":
            self._status = "running"
            if self.agent is not None:
                self.agent.interrupt()
        try:
            with self._env_lock:
                obs = self.env.observe()
            t_obs = time.time()
        except StaleFrameError as e:
            self._status = "stale camera"
            log.warning("%s: holding until the cameras deliver again", e)
            self._halt()
            return
        ep.observed(obs)
        decision = self._decide(obs)
        if decision is not None:
            ep.versions.append(decision.version)
        action, human = choose(self.mode, decision, self.env.teleop, ep.gripper, ep.took_over,
                               interventions=self.cfg.actor.interventions, expert=self.expert)
        if human and self.mode != "record" and self.agent is not None:
            self.agent.interrupt()  # the person took over: the policy's plan is stale
        ep.took_over = human
        with self._env_lock:
            if self.paused or self.estopped:
                return  # pressed while the policy was thinking: do not move
            info = self.env.act(action)
        if info.held:
            # Not executed (safety hold, arm fault): no transition; the next one starts from what is seen.
            if self.agent is not None:
                self.agent.interrupt()
            if info.reasons or info.faults:
                hold = "; ".join(info.reasons + info.faults)
                if hold != self._said_hold:  # a pause holds every tick until cleared: say it once, not every tick
                    log.warning("step held: %s", hold)
                self._last_hold = self._said_hold = hold
            self._emit(ep.number, ep.steps)
            return
        self._said_hold = ""
        self.work_ms.add((time.monotonic() - t_tick) * 1e3)
        ep.executed(obs, t_obs, action, human, decision)  # after the action went out: never delays the arm
        self._interventions_window.add(float(human))
        self.total_steps += 1
        self._step = ep.steps
        self._emit(ep.number, ep.steps)

    def _decide(self, obs: Observation) -> Decision | None:
        """The policy's decision for this view (None in record mode); new weights go in at chunk boundaries."""
        if self.agent is None:
            return None
        if self.reloader is not None and self.agent.at_boundary:
            self.reloader.apply()
        decision = self.agent.step(obs.images, obs.proprio)
        if decision.planned:
            self.latency_ms.add(decision.latency_ms)
            (self.reason_ms if decision.reasoned else self.act_ms).add(decision.latency_ms)
        return decision

    def _end(self, ep: Episode, ended: Outcome) -> EpisodeSummary:
        if self.reloader is not None:
            self.reloader.loop_idle()  # resets and waits are no ticks: staging may go ahead
        final = None
        if ep.prev is not None:
            try:
                with self._env_lock:
                    final = self.env.observe()
            except StaleFrameError:
                pass
        ep.close(ended, final)
        self._halt()  # hold still between episodes
        summary = ep.summary(ended, strict=self.mode == "eval")
        if ended == "success" and not summary.success:
            log.info("episode %d: success after an intervention counts as a failure in evaluation", ep.number)
        self.episodes.append(summary)
        self.sink.episode_end(summary)
        log.info("episode %d: %s after %d steps, return %.2f, %d intervention steps%s", ep.number, ended, ep.steps,
                 ep.ret, ep.interventions,
                 f", policy v{summary.versions[0]}..v{summary.versions[1]}" if ep.versions else "")
        self._status = "episode done"
        return summary

    def _await_reset_key(self, stop: threading.Event, condition: str = "") -> bool:
        what = f"set up the scene for condition {condition!r}" if condition else "reset the scene"
        self._status = f"waiting: {what}, then press the reset key"
        log.info("%s, then press the reset key to start the next episode", what)
        while not stop.is_set():
            keys = self._keys()
            if Key.RESET in keys and not self.paused:
                return True
            self._emit(self.episode, 0)
            time.sleep(0.05)
        return False

    def _halt(self) -> None:
        """Stop the arm's motion in progress (paused or e-stopped, it is stopped already)."""
        with self._env_lock:
            if not self.paused and not self.estopped:
                self.env.stop()

    # --- status -----------------------------------------------------------------------------------------

    def status(self) -> ActorStatus:
        ok = sum(e.success for e in self.episodes)
        return ActorStatus(
            state=self._status, episode=self.episode - (1 if self._status == "running" else 0), step=self._step,
            total_steps=self.total_steps, hz=self.rate.hz, period_p99_ms=self.rate.periods_ms.percentile(99),
            policy_ms=self.latency_ms.percentile(50),
            version=int(self.agent.version) if self.agent is not None else 0,
            intervention_rate=self._interventions_window.mean(), episodes=len(self.episodes), successes=ok,
            pending_weights=self.reloader.pending if self.reloader is not None else None,
        )

    def _emit(self, ep: int, step: int) -> None:
        if self.on_tick is not None:
            self._step = step
            self.on_tick(self.status())


def choose(mode: Mode, decision: Decision | None, teleop: Teleop | None, gripper: np.ndarray | None,
           took_over: bool, *, interventions: bool, expert: Callable[[], np.ndarray] | None = None,
           ) -> tuple[np.ndarray, bool]:
    """The action for this tick and whether a person (or the scripted expert) chose it. `gripper`: the last
    executed gripper command per arm; `took_over`: a person chose the last action."""
    if mode == "record":
        if expert is not None:
            return np.asarray(expert(), np.float32), True
        assert teleop is not None  # record() refuses a robot without one
        return human_action(teleop.read().action, gripper), True
    if teleop is not None and interventions:
        cmd = teleop.read()
        if cmd.intervening:
            if not took_over and gripper is not None and hasattr(teleop, "sync_gripper"):
                # Taking over starts from the gripper as it is, not from the device's last latch.
                teleop.sync_gripper(gripper if len(gripper) > 1 else float(gripper[0]))
            return human_action(cmd.action, gripper), True
    assert decision is not None  # rl and eval run a policy
    return np.asarray(decision.action, np.float32), False


def human_action(a: np.ndarray, gripper: np.ndarray | None) -> np.ndarray:
    a = np.asarray(a, np.float32).copy()
    g = a.reshape(-1, 7)[:, 6]
    if gripper is not None:
        # 0 from a SpaceMouse means "leave the gripper as it is": record what the gripper then does, so a
        # BC target is never the meaningless mid-bin 0.
        g[:] = np.where(g == 0.0, gripper, g)
    return a
