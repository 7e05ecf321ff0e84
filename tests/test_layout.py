"""The package's shape, read from its source with `ast` (nothing is imported):

- every import of our packages goes through `lastr1.` (a flat `import robot` would load a second copy of the
  module, and `except ArmFault` would silently stop catching the other copy's errors);
- only the `cli.py` files sit above the CLI: no other module imports `lastr1.cli`;
- no import cycle between files, counting every import a module runs: module-level ones and those inside
  functions (the lazy imports of optional or heavy dependencies), but not `if TYPE_CHECKING:` blocks;
- `lastr1.robot` outside `robot/sim/` does not load the simulator when it is imported, i.e. through the
  module-level statements (class bodies and `try`/`if` blocks included) of it and of what they import in turn;
  an import inside a function runs only when that function is called.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The repository's top-level folders install as lastr1.<folder> (pyproject.toml, package-dir).
FOLDERS = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "lastr1")
SIM = ("mujoco", "franky_sim", "lastr1.robot.sim")



def python_files() -> list[Path]:
    skip = {"runs", "build", "dist"}
    return sorted(p for p in ROOT.rglob("*.py")
                  if not any(part.startswith(".") or part in skip or part.endswith(".egg-info")
                             for part in p.relative_to(ROOT).parts[:-1]))


def module_name(path: Path) -> str | None:
    """`robot/sim/world.py` -> `lastr1.robot.sim.world`; None for files outside the package (tests, ...)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] != "lastr1" and parts[0] not in FOLDERS:
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "lastr1" else ["lastr1", *parts])


MODULES = {name: path for path in python_files() if (name := module_name(path))}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def imported(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement (or `__import__` / `importlib.import_module` of a literal) loads;
    for `from x import y`, `x.y` as well as `x`, since y may be a module."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            up = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*up, base] if base else up)
        return [base, *(f"{base}.{a.name}" for a in node.names)]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                 or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
        return [node.args[0].value]
    return []


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def statements(body: list[ast.stmt], functions: bool):
    """Every statement that may run (at import time only, without `functions`), TYPE_CHECKING blocks left out."""
    for node in body:
        if is_type_checking(node) or (not functions and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from statements(getattr(node, field, []) or [], functions)


def imports(path: Path, package: str, functions: bool = False) -> set[str]:
    """What the module imports at import time; with `functions`, also what its functions import when called."""
    names = set()
    for stmt in statements(tree(path).body, functions):
        # a compound statement's body comes on its own from statements(); a simple one may hide __import__("x")
        for node in [stmt] if hasattr(stmt, "body") else ast.walk(stmt):
            names.update(imported(node, package))
    return names


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def graph(functions: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (at import time; with `functions`, at any time)."""
    return {name: {n for n in imports(path, package_of(name, path), functions) if n in MODULES and n != name}
            for name, path in MODULES.items()}


def test_the_scan_sees_the_package():
    assert {"lastr1.cli", "lastr1.robot.env", "lastr1.robot.sim.world", "lastr1.configs"} <= set(MODULES)
    assert set(FOLDERS) == {"actor", "calibration", "configs", "learner", "policy", "robot", "transport"}
    assert "lastr1.configs.loader" in graph()["lastr1.configs"]


def test_no_flat_import_of_our_packages():
    """`import robot`, `from policy.model import ...` and `__import__("policy")` load a second copy."""
    bad = []
    for path in python_files():
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            for name in imported(node, ""):
                if name.split(".")[0] in FOLDERS:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, "import these as lastr1.<package>:\n" + "\n".join(bad)


def test_only_the_cli_files_import_lastr1_cli():
    """The `--config` helpers live in lastr1.configs; nothing below the command layer imports it back."""
    bad = []
    for name, path in MODULES.items():
        if path.name == "cli.py":
            continue
        for node in ast.walk(tree(path)):
            if any(n == "lastr1.cli" or n.startswith("lastr1.cli.") for n in imported(node, package_of(name, path))):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "modules below the CLI import lastr1.cli:\n" + "\n".join(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_files():
    edges = graph(functions=True)
    assert not cycles(edges), "import cycles:\n" + "\n".join(
        " <-> ".join(c) for c in cycles(edges))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("lastr1.robot")
                                        and not n.startswith("lastr1.robot.sim")))
def test_robot_does_not_load_the_simulator_at_import(name):
    """Importing the robot layer (on a lab's robot PC) must not load MuJoCo, franky-sim or robot/sim/."""
    edges = graph()
    seen, todo, via = {name}, [name], {name: name}
    while todo:
        v = todo.pop()
        for n in imports(MODULES[v], package_of(v, MODULES[v])):
            if any(n == s or n.startswith(s + ".") for s in SIM):
                chain = [v]
                while chain[-1] != name:
                    chain.append(via[chain[-1]])
                pytest.fail(f"{' <- '.join(chain)} imports {n} at import time")
        for w in edges[v] - seen:
            seen.add(w)
            via[w] = v
            todo.append(w)
