"""Workspace bounds: the safety box on the end-effector target, from corners the operator guides the arm to.

Saved as a YAML the task config can list under `base:` (`robot: safety: {box_min, box_max}`; its timestamp and
the arm's host ride in the header comment, since a config file may only hold schema keys), or written into an
existing config YAML in place, keeping its other keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from lastr1.calibration.common import CalibrationError, save_yaml, timestamp

# A box thinner than this on any axis is almost surely a recording slip (two corners at the same height, say).
MIN_SIDE_M = 0.02


def box_from_points(points, margin_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box (base frame) spanned by the points, grown by `margin_m` on every side."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if len(pts) < 2:
        raise CalibrationError(f"need at least 2 corner points for a box, got {len(pts)}",
                               hint="record two opposite corners (low-front-left, high-back-right) or more")
    if not np.isfinite(pts).all():
        raise CalibrationError("a corner position is not finite")
    lo, hi = pts.min(0) - margin_m, pts.max(0) + margin_m
    thin = [a for a, s in zip("xyz", hi - lo) if s < MIN_SIDE_M]
    if thin:
        raise CalibrationError(
            f"the recorded box is thinner than {MIN_SIDE_M * 100:.0f} cm along {', '.join(thin)} "
            f"(sides {np.round(hi - lo, 3).tolist()} m)",
            hint="move the arm to corners that differ in x, y and z (e.g. low-front-left and high-back-right)",
        )
    return lo, hi


def record_corners(arm, arm_index: int = 0, ask: Callable[[str], str] = input,
                   say: Callable[[str], None] = print) -> list[np.ndarray]:
    """Operator guides the arm to each corner and presses Enter; q finishes (at least 2 corners)."""
    say("Guide the arm by hand to the corners of the space it may work in (at least two opposite corners: "
        "low-front-left and high-back-right; more are fine). Press Enter at each, q when done.")
    points: list[np.ndarray] = []
    while True:
        answer = ask(f"corner {len(points) + 1}: Enter = record, q = done > ").strip().lower()
        if answer == "q":
            if len(points) >= 2:
                return points
            say("  need at least 2 corners")
            continue
        p = np.asarray(arm.state()[arm_index].position, np.float64)
        points.append(p)
        say(f"  corner {len(points)}: x={p[0]:+.3f} y={p[1]:+.3f} z={p[2]:+.3f} m")


def describe(lo, hi, current=None) -> str:
    lo, hi = np.asarray(lo), np.asarray(hi)
    lines = [
        "safety box (base frame, m):",
        f"  x {lo[0]:+.3f} .. {hi[0]:+.3f}  ({(hi[0] - lo[0]) * 100:.1f} cm)",
        f"  y {lo[1]:+.3f} .. {hi[1]:+.3f}  ({(hi[1] - lo[1]) * 100:.1f} cm)",
        f"  z {lo[2]:+.3f} .. {hi[2]:+.3f}  ({(hi[2] - lo[2]) * 100:.1f} cm)",
    ]
    if current is not None:
        inside = bool(np.all(current >= lo) and np.all(current <= hi))
        lines.append(f"  the hand is now {'inside' if inside else 'OUTSIDE'} it at {np.round(current, 3).tolist()}")
    return "\n".join(lines)


def _box(lo, hi) -> dict:
    return dict(box_min=[round(float(v), 4) for v in lo], box_max=[round(float(v), 4) for v in hi])


def save_workspace(path: str | Path, lo, hi, arm: str = "", points=()) -> Path:
    """A config fragment: list it under `base:` in the task config."""
    header = "\n".join([
        f"lastr1 workspace bounds, recorded {timestamp()} on arm {arm or '?'}",
        "List this file under `base:` in the task config; the task file's own keys still win.",
        *[f"corner {i + 1}: {np.round(p, 4).tolist()}" for i, p in enumerate(points)],
    ])
    return save_yaml(path, {"robot": {"safety": _box(lo, hi)}}, header=header)


def write_into(config_yaml: str | Path, lo, hi) -> Path:
    """Set robot.safety.box_min/box_max in an existing config YAML, keeping every other key (comments are not
    kept: PyYAML does not round-trip them). The result is validated against the schema before it replaces the
    file."""
    from lastr1 import configs

    path = Path(config_yaml)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CalibrationError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CalibrationError(f"{path} is not a mapping of config sections")
    data.setdefault("robot", {}).setdefault("safety", {}).update(_box(lo, hi))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    try:
        configs.load(tmp)  # refuse to write a config that no longer loads
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
