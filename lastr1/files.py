"""Files that a crash leaves whole: the old version or the new one, never half of one.

Every small state file of the stack (the wire's spool and dedup state, the replay buffers' index, the learner's
published versions, the actor's episode counter, calibration results) is written through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, fsync: bool = True) -> Path:
    """Write to a temporary file beside `path` and rename it over `path`. With `fsync` the contents are on disk
    before the rename and the rename is on disk when this returns (a power cut keeps one whole version)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
    return path


def save_json(path: str | Path, obj, fsync: bool = True) -> Path:
    return write_atomic(path, json.dumps(obj), fsync)


def fsync_dir(path: str | Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(dirpath)
