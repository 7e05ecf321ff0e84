"""`lastr1 actor --config CONFIG [--section.key value ...]`: the robot-side RL process.

Robot (real or simulated, `robot.kind`), policy (`policy.checkpoint`, or a fresh one with a warning), and the
link to the learner (`transport.*`). A status line shows episode, step, loop rate, policy latency and
version, intervention rate and successes. Ctrl-C (or SIGTERM, or the end of --minutes) stops after the current
tick; unacknowledged transitions stay in the spool and are resent at the next start.
"""

from __future__ import annotations

import signal
import threading


def add_arguments(parser) -> None:
    from lastr1.cli import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--episodes", type=int, default=None, help="stop after this many episodes")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many control steps")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this much wall-clock time (resets and held ticks included)")


def run(args) -> int:
    from lastr1.actor.process import run_actor
    from lastr1.actor.status import StatusLine
    from lastr1.cli import load_config

    cfg = load_config(args)
    stop = threading.Event()
    status = StatusLine(cfg.actor.status_every_s, cfg.actor.log_every_s)

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()  # first Ctrl-C: finish the tick, close the episode, flush the link

    old = signal.signal(signal.SIGINT, on_sigint)
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # a supervisor's stop: the same
    timer = None
    if args.minutes is not None:
        timer = threading.Timer(args.minutes * 60, stop.set)
        timer.daemon = True
        timer.start()
    try:
        result = run_actor(cfg, stop, max_episodes=args.episodes, max_steps=args.steps, on_status=status)
    finally:
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        status.close()
    ok = sum(e.success for e in result.episodes)
    print(f"lastr1 actor: {len(result.episodes)} episodes, {ok} successes, {result.steps} steps, "
          f"{result.sent} transitions sent, {result.versions_applied} weight updates applied")
    return 0
