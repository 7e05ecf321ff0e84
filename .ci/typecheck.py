"""mypy over the package as it installs: `lastr1/` with the top-level folders mapped in by symlinks.

    python .ci/typecheck.py

Why a link tree: the folders install as `lastr1.robot`, `lastr1.policy`, ... (pyproject's package-dir), a
mapping that mypy cannot see through an editable install's import hook; the tree gives it the real layout
while every reported path still names the file you edit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"


def link_tree() -> Path:
    shutil.rmtree(TREE, ignore_errors=True)
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    pkg_root = TREE / "lastr1"
    pkg_root.mkdir(parents=True)
    for f in (ROOT / mapping["lastr1"]).iterdir():
        if f.name != "__pycache__":
            (pkg_root / f.name).symlink_to(f)
    for pkg, folder in mapping.items():
        if pkg != "lastr1":
            (pkg_root / pkg.split(".", 1)[1]).symlink_to(ROOT / folder)
    return TREE


def main() -> int:
    tree = link_tree()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "lastr1"]
    return subprocess.run(cmd, cwd=tree, env={**os.environ, "MYPYPATH": str(tree)}).returncode


if __name__ == "__main__":
    sys.exit(main())
