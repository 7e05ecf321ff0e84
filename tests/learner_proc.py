"""A real `lastr1 learner` process for the conformance and crash tests: its own config file, CURVE keys, run folder
and log, started and killed like an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sim_helpers import free_port
from wire_client import Client

from lastr1.transport import curve_keys


class LiveLearner:
    def __init__(self, root: Path, learner: dict | None = None, image_size: int = 32):
        self.root = root
        self.keys = root / "keys"
        if not self.keys.is_dir():
            curve_keys.generate(self.keys, ["actor0", "actor1"])
        self.port = free_port()
        self.config = root / "learner.yaml"
        self.config.write_text(yaml.safe_dump({
            "base": ["sim_insert_hex", "policy/tiny_cpu"],
            "run_dir": str(root / "run"),
            "robot": {"image_size": image_size},
            "transport": {"keys_dir": str(self.keys), "bind_host": "127.0.0.1", "port": self.port,
                          "heartbeat_s": 0.2, "liveness_timeout_s": 3.0, "weights_resend_s": 0.5},
            "learner": {"start_after": 10**9, **(learner or {})},
        }))
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    @property
    def run(self) -> Path:
        return self.root / "run"

    def start(self, *args: str, kill_at: str | None = None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "LASTR1_KILL_AT"}
        if kill_at:
            env["LASTR1_KILL_AT"] = kill_at
        log = self.root / f"learner{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "lastr1.cli", "learner", "--config", str(self.config),
                                          *args], env=env, stdout=f, stderr=subprocess.STDOUT)
        return self.proc

    def log(self) -> str:
        return "".join(p.read_text() for p in self.logs)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, client: Client, timeout_s: float = 120.0, or_exit: int | None = None) -> None:
        """Until the learner answers a heartbeat (torch and the policy load first). `or_exit`: the return code of
        the end this run is set up for (a LASTR1_KILL_AT kill, --max-updates). A learner resumed with enough
        rollouts in its buffer trains at once, and on a fast host it can reach that end before the client's
        reconnect and CURVE handshake get an answer; that counts as ready if its log says it was."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if or_exit is not None and self.proc is not None and self.proc.poll() == or_exit:
                assert "learner ready" in self.logs[-1].read_text(), f"ended before it was ready:\n{self.log()}"
                return
            assert self.alive(), f"the learner exited with {self.proc.returncode if self.proc else None}:\n{self.log()}"
            client.heartbeat()
            if any(m["type"] == "heartbeat" for m in client.poll(0.3)):
                return
        raise AssertionError(f"the learner did not answer within {timeout_s} s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def rollout_meta(self) -> dict:
        return json.loads((self.run / "learner" / "rollout_buffer" / "meta.json").read_text())
