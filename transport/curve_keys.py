"""CurveZMQ key pairs for the learner and its actors (`lastr1 keys`, transport/cli.py, makes them).

Layout (files in ZeroMQ's certificate format, readable by `zmq.auth.load_certificate`):

    keys/                        0700
      learner.key                learner public key   → copy to every actor host
      learner.key_secret         learner key pair     0600, stays on the learner host
      actors/                    0700
        <actor_id>.key           actor public key     → the learner's allow-list is every *.key here
        <actor_id>.key_secret    actor key pair       0600, copy to that actor's host only

The learner needs learner.key_secret + actors/*.key; actor <id> needs learner.key + actors/<id>.key_secret.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from lastr1.transport.errors import KeyFileMissing
from lastr1.transport.messages import NAME

log = logging.getLogger(__name__)
LEARNER = "learner"


def _hint(keys_dir: Path) -> str:
    return (f"run `lastr1 keys --dir {keys_dir} --actors <actor ids>` and copy the files as the layout in "
            "transport/curve_keys.py (docs/wire.md §7) says")


def _write(path: Path, public: bytes, secret: bytes | None) -> None:
    kind = "secret" if secret else "public"
    lines = [
        f"#   ****  lastr1 CURVE {kind} key, made by `lastr1 keys`  ****",
        "#   ZeroMQ CURVE certificate format." + (" DO NOT SHARE: this file holds a secret key." if secret else ""),
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    # Created with its final mode so the secret is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600 if secret else 0o644)


def generate(keys_dir: str | Path, actor_ids: list[str], force: bool = False, add: bool = False) -> list[Path]:
    """Write a learner key pair (unless `add`) and one per actor. Existing files are never overwritten
    without `force` (their holders would stop working). Returns the files written."""
    import zmq

    keys_dir = Path(keys_dir)
    for a in actor_ids:
        if not NAME.match(a):
            raise ValueError(f"actor id {a!r} must match {NAME.pattern}")
    if add and not (keys_dir / f"{LEARNER}.key_secret").is_file():
        raise KeyFileMissing(f"--add needs an existing learner key in {keys_dir}", hint=_hint(keys_dir))
    names = ([] if add else [LEARNER]) + [f"actors/{a}" for a in actor_ids]
    targets = [keys_dir / f"{n}{ext}" for n in names for ext in (".key", ".key_secret")]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"refusing to overwrite existing keys: {', '.join(map(str, existing))}. Pass --force to replace them "
            "(their holders then need the new files), or --add to only add new actor keys."
        )
    for d in (keys_dir, keys_dir / "actors"):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    written = []
    for n in names:
        public, secret = zmq.curve_keypair()
        _write(keys_dir / f"{n}.key", public, None)
        _write(keys_dir / f"{n}.key_secret", public, secret)
        written += [keys_dir / f"{n}.key", keys_dir / f"{n}.key_secret"]
    return written


def _load(path: Path, secret: bool, keys_dir: Path) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise KeyFileMissing(f"no CURVE key file {path}", hint=_hint(keys_dir))
    if secret and stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s is readable by other users; `chmod 600 %s`", path, path)
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise KeyFileMissing(f"unreadable CURVE key file {path}: {e}", hint=_hint(keys_dir)) from None
    if secret and not sec:
        raise KeyFileMissing(f"{path} holds no secret key", hint=_hint(keys_dir))
    return public, sec


def learner_public(keys_dir: str | Path) -> bytes:
    return _load(Path(keys_dir) / f"{LEARNER}.key", False, Path(keys_dir))[0]


def learner_pair(keys_dir: str | Path) -> tuple[bytes, bytes]:
    return _load(Path(keys_dir) / f"{LEARNER}.key_secret", True, Path(keys_dir))  # type: ignore[return-value]


def actor_pair(keys_dir: str | Path, actor_id: str) -> tuple[bytes, bytes]:
    return _load(Path(keys_dir) / "actors" / f"{actor_id}.key_secret", True, Path(keys_dir))  # type: ignore


def allowed_actors(keys_dir: str | Path) -> dict[bytes, str]:
    """The learner's allow-list: z85 public key → actor id, from keys/actors/*.key."""
    keys_dir = Path(keys_dir)
    files = sorted((keys_dir / "actors").glob("*.key"))
    if not files:
        raise KeyFileMissing(f"no actor public keys in {keys_dir / 'actors'}: no actor could connect",
                             hint=_hint(keys_dir))
    return {_load(f, False, keys_dir)[0]: f.stem for f in files}
