"""The control loop: observe → policy (or a person) → safety → arm, at `task.control_hz`.

    rt = Runtime(cfg, env, agent=agent, sink=TransitionSink(link, H), reloader=reloader)
    summary = rt.run(stop_event, max_episodes=10)

One tick (the env is `robot.env.RobotEnv`, the same for the real and the simulated robot):

    wait for the tick ─► operator keys ─► observe ─► hot reload if at a chunk boundary ─► agent.step
        ─► the person's command replaces the policy's when intervening ─► env.act (safety → arm)

Keys pressed after a tick's action are the outcome of that action: success/failure mark the step before
them, so the reward and `terminated` land on the step that finished the task. Every step is handed to the
sink one step late (after the next action went out), once s′ and whether the episode ended are known. A
step the safety layer held is no step: nothing moved, so the previous step's s′ is simply the next view; it
still counts toward the time limit, which is measured in control periods.

Episodes end by the success key (terminated, `task.success_reward`), the failure key (terminated: the
operator judged the attempt over, nothing further is earned in it), the time limit (`truncated`: the state
was not terminal, the learner bootstraps from the final observation), the reset key mid-episode, an e-stop,
or a stop request (all `truncated`). Every other step earns `task.step_penalty`.

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
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lastr1.actor.status import ActorStatus
from lastr1.actor.timing import RateKeeper, Window
from lastr1.errors import Lastr1Error
from lastr1.robot.errors import ArmFault, StaleFrameError
from lastr1.robot.keys import Key

log = logging.getLogger(__name__)

Mode = Literal["rl", "eval", "record"]


class ActorError(Lastr1Error):
    pass


@dataclass
class StepRecord:
    """One executed control step, as the sinks receive it."""

    episode: int
    step: int
    obs: object  # robot.env.Observation (images, proprio) the action was chosen from
    t_obs: float  # time.time() of that observation
    action: np.ndarray  # (D,) executed, robot units in [-1, 1]
    human: bool  # the person (or the scripted expert) produced `action`
    decision: object | None  # actor.agent.Decision of the policy at this step (None in record mode)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    next_obs: object | None = None  # s′ (set on every step before it reaches the sink; None if unknown)


@dataclass
class EpisodeSummary:
    episode: int
    seed: int | None
    steps: int
    ret: float  # undiscounted return
    outcome: str  # success | failure | time_limit | reset | estop | stopped
    success: bool  # success key (sim: the scene), and — in eval — no intervention
    intervention_steps: int
    duration_s: float
    versions: tuple[int, int] = (0, 0)  # policy versions seen (first, last)
    condition: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def terminated(self) -> bool:
        return self.outcome in ("success", "failure")


class Sink:
    """Where steps go: the learner link (rl), a dataset (record), videos and counts (eval)."""

    def episode_start(self, episode: int, seed: int | None, obs) -> None:
        pass

    def step(self, s: StepRecord) -> None:
        pass

    def episode_end(self, summary: EpisodeSummary) -> None:
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
    def __init__(self, cfg, env, *, agent=None, sink: Sink | None = None, reloader=None, mode: Mode = "rl",
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
        self.rate = RateKeeper(cfg.task.control_hz, cfg.actor.warn_every_s)
        self.work_ms = Window()  # a tick's own work: tick start → the action sent (the rest is sleep)
        self.latency_ms = Window()  # policy compute on the steps where it ran
        self.reason_ms = Window()
        self.act_ms = Window()
        self.episodes: list[EpisodeSummary] = []
        self.episode = self._first_episode()
        self.total_steps = 0
        self.paused = False
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
        import json
        import os

        f = self._state_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_episode": self.episode}))
        os.replace(tmp, f)

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
        return done

    @contextlib.contextmanager
    def session(self):
        """The key watcher runs while episodes do (`run` opens one; callers of `run_episode` may too)."""
        hz = self.cfg.actor.key_poll_hz
        if self.env.keys is not None and hz > 0 and self._watcher is None:
            self._watcher = _KeyWatcher(self.env.keys, self._urgent, hz)
            try:
                yield self
            finally:
                self._watcher.close()
                self._watcher = None
        else:
            yield self

    RESET_TRIES = 3

    def _reset(self, seed, condition: str, stop: threading.Event):
        """Home and a new scene. A refused or unfinished home motion (a reflex, a blocked path, a slow
        simulation) is recovered and tried again before the actor gives up with the arm's own error."""
        for attempt in range(1, self.RESET_TRIES + 1):
            try:
                with self._env_lock:
                    return self.env.reset(seed=seed, condition=condition)
            except ArmFault as e:
                if attempt == self.RESET_TRIES or stop.is_set():
                    raise
                log.warning("reset failed (try %d of %d): %s; recovering and trying again",
                            attempt, self.RESET_TRIES, str(e).splitlines()[0])
                with self._env_lock:
                    self.env.arm.stop()
                    self.env.arm.recover()
        return None

    def run_episode(self, seed: int | None, stop: threading.Event, budget: int | None = None,
                    condition: str = "") -> EpisodeSummary | None:
        """One episode from reset to its end; None if stopped before it began."""
        env = self.env
        if self.estopped:
            # Nothing moves after an e-stop until a person says so (the reset key), not even the home motion.
            log.warning("e-stopped: press the reset key once the robot and the scene are safe")
            if not self._await_reset_key(stop):
                return None
            env.safety.reset_estop()
            self.estopped = False
        if self.paused:
            self.paused = False
            env.resume()
        self._status = "resetting"
        obs = self._reset(seed, condition, stop)
        if obs is None:
            return None
        if self.confirm_reset:
            if not self._await_reset_key(stop, condition):
                return None
            with self._env_lock:
                obs = env.observe()
        if stop.is_set():
            return None
        if self.agent is not None:
            self.agent.reset()
        ep = self.episode
        self.episode += 1
        self._save_episode_counter()
        self.sink.episode_start(ep, seed, obs)
        self._status = "running"
        t_start = time.monotonic()
        t_obs_wall = time.time()
        prev: StepRecord | None = None
        step = 0
        ret = 0.0
        n_human = 0
        versions: list[int] = []
        outcome = None
        gripper = None  # the last executed gripper command per arm (a person's "unchanged" 0 means this)
        human_before = False
        ticks = 0  # control periods not paused by the operator: the time limit counts these, so an arm the
        # safety layer keeps holding (jammed against a surface, stale cameras) still ends its episode
        self.rate.restart()
        while True:
            if self.reloader is not None:
                self.reloader.loop_idle(self.rate.next_tick)
            t_tick = self.rate.wait()
            if self.reloader is not None:
                self.reloader.loop_busy()
            keys = self._keys()
            if Key.SUCCESS in keys and prev is not None:
                outcome = "success"
            elif Key.FAILURE in keys and prev is not None:
                outcome = "failure"
            elif Key.RESET in keys:
                outcome = "reset"
            elif self.estopped:
                outcome = "estop"
            elif stop.is_set():
                outcome = "stopped"
            elif ticks >= self.max_steps or (budget is not None and step >= budget):
                outcome = "time_limit"
            if outcome is not None:
                break
            if self.paused:
                self._status = "paused"
                self._emit(ep, step)
                continue
            ticks += 1
            if self._status == "paused":
                self._status = "running"
                if self.agent is not None:
                    self.agent.interrupt()
            try:
                with self._env_lock:
                    obs = env.observe()
                t_obs_wall = time.time()
            except StaleFrameError as e:
                self._status = "stale camera"
                log.warning("%s: holding until the cameras deliver again", e)
                self._halt()
                continue
            if prev is not None:
                prev.next_obs = obs  # s′ of the last step; it is handed on once the next step exists

            decision = None
            if self.agent is not None:
                if self.reloader is not None and self.agent.at_boundary:
                    self.reloader.apply()
                decision = self.agent.step(obs.images, obs.proprio)
                if decision.planned:
                    self.latency_ms.add(decision.latency_ms)
                    (self.reason_ms if decision.reasoned else self.act_ms).add(decision.latency_ms)
                versions.append(decision.version)
            action, human = self._choose(decision, gripper, human_before)
            human_before = human
            with self._env_lock:
                if self.paused or self.estopped:
                    continue  # pressed while the policy was thinking: do not move
                info = env.act(action)
            if info.held:
                # Not executed (safety hold, arm fault): no transition; the next one starts from what is seen.
                if self.agent is not None:
                    self.agent.interrupt()
                if info.reasons or info.faults:
                    log.warning("step held: %s", "; ".join(info.reasons + info.faults))
                self._emit(ep, step)
                continue
            self.work_ms.add((time.monotonic() - t_tick) * 1e3)
            if prev is not None:  # after the action went out: bookkeeping never delays the arm
                ret += prev.reward
                self.sink.step(prev)
            gripper = action.reshape(-1, 7)[:, 6].copy()
            n_human += int(human)
            self._interventions_window.add(float(human))
            prev = StepRecord(ep, step, obs, t_obs_wall, action.astype(np.float32), human, decision,
                              reward=self.cfg.task.step_penalty)
            step += 1
            self.total_steps += 1
            self._step = step
            self._emit(ep, step)

        if self.reloader is not None:
            self.reloader.loop_idle()  # resets and waits are no ticks: staging may go ahead
        # The episode ended: the last step gets its outcome and the final observation.
        if prev is not None:
            if outcome in ("success", "failure"):
                prev.terminated = True
                if outcome == "success":
                    prev.reward = self.cfg.task.success_reward
            else:
                prev.truncated = True
            try:
                with self._env_lock:
                    prev.next_obs = env.observe()
            except StaleFrameError:
                prev.next_obs = None
            ret += prev.reward
            self.sink.step(prev)
        self._halt()  # hold still between episodes
        if outcome == "success" and self.mode == "eval" and n_human:
            log.info("episode %d: success after an intervention counts as a failure in evaluation", ep)
        summary = EpisodeSummary(
            episode=ep, seed=seed, steps=step, ret=ret, outcome=outcome,
            success=outcome == "success" and not (self.mode == "eval" and n_human),
            intervention_steps=n_human, duration_s=time.monotonic() - t_start,
            versions=(versions[0], versions[-1]) if versions else (0, 0), condition=condition,
        )
        self.episodes.append(summary)
        self.sink.episode_end(summary)
        log.info("episode %d: %s after %d steps, return %.2f, %d intervention steps%s", ep, outcome, step, ret,
                 n_human, f", policy v{summary.versions[0]}..v{summary.versions[1]}" if versions else "")
        self._status = "episode done"
        return summary

    def _choose(self, decision, gripper, human_before: bool) -> tuple[np.ndarray, bool]:
        """The action for this tick and whether a person (or the scripted expert) chose it."""
        if self.mode == "record":
            if self.expert is not None:
                return np.asarray(self.expert(), np.float32), True
            cmd = self.env.teleop.read()
            return self._human_action(cmd.action, gripper), True
        teleop = self.env.teleop
        if teleop is not None and self.cfg.actor.interventions:
            cmd = teleop.read()
            if cmd.intervening:
                if not human_before and gripper is not None and hasattr(teleop, "sync_gripper"):
                    # Taking over starts from the gripper as it is, not from the device's last latch.
                    teleop.sync_gripper(gripper if len(gripper) > 1 else float(gripper[0]))
                if self.agent is not None:
                    self.agent.interrupt()
                return self._human_action(cmd.action, gripper), True
        return np.asarray(decision.action, np.float32), False

    @staticmethod
    def _human_action(a, gripper) -> np.ndarray:
        a = np.asarray(a, np.float32).copy()
        g = a.reshape(-1, 7)[:, 6]
        if gripper is not None:
            # 0 from a SpaceMouse means "leave the gripper as it is": record what the gripper then does, so a
            # BC target is never the meaningless mid-bin 0.
            g[:] = np.where(g == 0.0, gripper, g)
        return a

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
        """Stop the arm's motion in progress (pause + resume: the env's public stop)."""
        with self._env_lock:
            if not self.paused and not self.estopped:
                self.env.pause()
                self.env.resume()

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
