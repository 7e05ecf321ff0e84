"""Operator keys from the terminal: a background thread reads single keystrokes (cbreak mode, no echo, Ctrl-C
still interrupts) and queues them; `poll()` never blocks the control loop. The terminal's settings are restored
on `close()` (also after an exception, through the context manager).

Default keys: s = success, f = failure, r = reset, space = pause/resume, e or Esc = e-stop
(`robot.keys` in the config). Arrow and function keys send escape sequences; they are skipped, not read as Esc.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
from collections import deque

from lastr1.configs.robot import KeysConfig
from lastr1.errors import ConfigError
from lastr1.robot.errors import ConnectionLost, DeviceNotFound
from lastr1.robot.keys import Key, KeySource

log = logging.getLogger(__name__)

ESC = 0x1B
_NAMED = {"space": b" ", "esc": b"\x1b", "enter": b"\r", "tab": b"\t"}
# How long a lone ESC waits for the rest of an escape sequence before it counts as the Esc key.
_ESC_WAIT_S = 0.03


def bindings_from(cfg: KeysConfig) -> dict[int, Key]:
    """Byte → Key; letters bound in both cases (caps lock must not disable the e-stop)."""
    out: dict[int, Key] = {}
    for key in Key:
        for name in getattr(cfg, key.value):
            raw = _NAMED.get(name.lower(), name.encode() if len(name) == 1 and name.isascii() else None)
            if raw is None:
                raise ConfigError(
                    f"robot.keys.{key.value}: {name!r} is not a key",
                    hint="use one ASCII character, or one of: " + ", ".join(_NAMED),
                )
            chars = {raw[0]}
            if raw.isalpha():
                chars |= {raw.lower()[0], raw.upper()[0]}
            if raw == b"\r":
                chars.add(ord("\n"))
            for c in chars:
                if out.get(c, key) != key:
                    raise ConfigError(f"robot.keys: {name!r} is bound to both {out[c].value} and {key.value}")
                out[c] = key
    return out


class TerminalKeys(KeySource):
    def __init__(self, cfg: KeysConfig | None = None, *, fd: int | None = None):
        """Reads `fd` when given (not closed here), else `cfg.tty`, else /dev/tty, else stdin if a terminal."""
        import termios
        import tty

        cfg = cfg or KeysConfig()
        self._bindings = bindings_from(cfg)
        self._own_fd = fd is None
        self.fd = fd if fd is not None else self._open(cfg.tty)
        try:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        except termios.error as e:
            self._close_fd()
            raise DeviceNotFound(f"cannot put the terminal into single-key mode: {e}", hint=_HINT) from None
        self._queue: deque[Key] = deque()
        self._error: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="terminal-keys", daemon=True)
        self._thread.start()

    @staticmethod
    def _open(path: str) -> int:
        candidates = [path] if path else ["/dev/tty"]
        for p in candidates:
            try:
                fd = os.open(p, os.O_RDONLY | os.O_NOCTTY)
            except OSError as e:
                last = f"{p}: {e.strerror}"
                continue
            if os.isatty(fd):
                return fd
            os.close(fd)
            last = f"{p} is not a terminal"
        if not path and sys.stdin is not None and sys.stdin.isatty():
            return os.dup(sys.stdin.fileno())
        raise DeviceNotFound(f"no terminal to read operator keys from ({last})", hint=_HINT)

    def poll(self) -> list[Key]:
        keys = []
        while self._queue:
            keys.append(self._queue.popleft())
        if not keys and self._error is not None:
            raise ConnectionLost(
                f"operator keys: {self._error}", hint="the e-stop key is gone: stop and restart in a terminal"
            )
        return keys

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import termios

        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        except termios.error as e:  # the terminal is already gone
            log.debug("terminal keys: restoring settings: %s", e)
        self._close_fd()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _close_fd(self) -> None:
        if self._own_fd:
            os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                ready, _, _ = select.select([self.fd, self._wake_r], [], [], None if not pending else _ESC_WAIT_S)
                if self._wake_r in ready:
                    return
                if ready:
                    chunk = os.read(self.fd, 64)
                    if not chunk:
                        self._error = "the terminal closed"
                        return
                    pending += chunk
                    if pending.endswith(b"\x1b"):
                        continue  # maybe the start of an arrow key's sequence: wait a moment for the rest
                pending = self._feed(pending)
            except OSError as e:  # EIO: the terminal hung up
                self._error = f"reading the terminal failed: {e}"
                return

    def _feed(self, data: bytes) -> bytes:
        i = 0
        while i < len(data):
            c = data[i]
            if c == ESC and i + 1 < len(data) and data[i + 1] in b"[O":
                # CSI (ESC [ params final) or SS3 (ESC O x): a cursor or function key, not the Esc key.
                j = i + 2
                if data[i + 1] == ord("["):
                    while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                        j += 1
                i = j + 1
                continue
            key = self._bindings.get(c)
            if key is not None:
                self._queue.append(key)
            i += 1
        return b""


_HINT = (
    "run in a terminal (operator keys are read from it), or use the simulated robot's scripted keys "
    "(robot.kind: sim); under ssh use `ssh -t`"
)
