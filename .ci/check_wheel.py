"""The wheel holds `lastr1/...` and nothing else, and every source file of the mapped folders is in it.

    python .ci/check_wheel.py dist/lastr1-*.whl

Why a check of its own: the package list in pyproject.toml is explicit (the top-level folders map into the
namespace), so a new subpackage that is not listed would silently be missing from `pip install lastr1`.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def expected_files() -> set[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    out = set()
    for pkg, folder in cfg["package-dir"].items():
        for f in (ROOT / folder).rglob("*"):
            if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
                rel = f.relative_to(ROOT / folder).as_posix()
                out.add(f"{pkg.replace('.', '/')}/{rel}")
    return out


def main(wheel: str) -> int:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    extra = sorted(t for t in tops if t != "lastr1" and not t.endswith(".dist-info"))
    missing = sorted(expected_files() - names)
    if extra:
        print(f"check_wheel: top-level entries other than lastr1/: {extra}")
    if missing:
        print(f"check_wheel: source files missing from the wheel (add their package to pyproject.toml): {missing}")
    if extra or missing:
        return 1
    print(f"check_wheel: {wheel}: {len(names)} files, all under lastr1/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
