"""Run a command beside CPU-bound busy loops: the real-time sim tests must pass on a starved machine.

    python3 .ci/stress.py [--loops 2] -- python3 -m pytest tests/test_arm_sim.py ...

Each loop is a process spinning in pure Python at normal priority, so on 2 cores the franky-sim 1-kHz links,
MuJoCo and the test share what is left. Exits with the command's status; the loops end with it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loops", type=int, default=2, help="busy-loop processes beside the command (default 2)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("give the command after --")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.loops)]
    try:
        return subprocess.call(cmd)
    finally:
        for proc in loops:
            proc.kill()
        for proc in loops:
            proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
