"""The package's layout holds to its rules: imports only point down, no module circle, and the light side
(the CLI's start, the allocator, ``results/``, ``svqbench leaderboard`` and ``svqbench compare``) never loads torch.

Tiers, top first: ``cli`` -> ``flows`` and ``bench`` -> ``engine`` -> ``results`` -> ``config`` -> ``models``,
``metrics``, ``data`` -> the leaves. A module may import its own part and anything below it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svqbench"
LEAVES = {"errors", "fileio", "registry", "progress", "keyed", "render", "__init__"}
TIER = {
    "cli": 6,
    "api": 6,  # the Python API's facade (svqbench.load_run), beside the CLI
    "__main__": 6,
    "flows": 5,
    "bench": 5,
    "interop": 5,  # OpenSTL checkpoints -> run folders, on the engine's run folder
    "engine": 4,
    "results": 3,
    "config": 2,
    "models": 1,
    "metrics": 1,
    "data": 1,
}
SAME_TIER_APART = {
    ("flows", "bench"),
    ("bench", "flows"),
    ("flows", "interop"),
    ("interop", "flows"),
    ("bench", "interop"),
    ("interop", "bench"),
    ("models", "metrics"),
    ("models", "data"),
    ("metrics", "models"),
    ("metrics", "data"),
    ("data", "models"),
    ("data", "metrics"),
}
TOP_LEVEL_MODULES_AT_MOST = 12


def part(module: str) -> str:
    """'svqbench.engine.train' -> 'engine'; 'svqbench.errors' -> 'errors'; 'svqbench' -> '__init__'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def tier(name: str) -> int:
    return 0 if name in LEAVES else TIER[name]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    pieces = list(relative.parts)
    if pieces[-1] == "__init__":
        pieces.pop()
    return ".".join(pieces)


def imported_modules(path: Path, top_level_only: bool = False) -> list[str]:
    """Every svqbench module ``path`` imports (function-level imports too, unless ``top_level_only``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("svqbench")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if not base.startswith("svqbench"):
                continue
            for alias in node.names:  # `from svqbench import data` imports the module svqbench.data
                candidate = f"{base}.{alias.name}"
                found.append(
                    candidate
                    if (PACKAGE.parent / candidate.replace(".", "/")).exists()
                    or (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                    else base
                )
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "recipes" not in p.parts)


def test_top_level_is_small():
    modules = [p.name for p in PACKAGE.glob("*.py")]
    assert len(modules) <= TOP_LEVEL_MODULES_AT_MOST, sorted(modules)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    here = part(module_name(path)) if module_name(path) != "svqbench" else "__init__"
    wrong = []
    for target in imported_modules(path):
        there = part(target)
        if there == here or target == "svqbench":
            continue
        if (
            tier(there) > tier(here)
            or (there, here) in SAME_TIER_APART
            or (tier(there) == tier(here) and here in LEAVES and there not in LEAVES)
        ):
            wrong.append(f"{module_name(path)} ({here}) imports {target} ({there})")
    assert not wrong, "imports that climb the layout:\n" + "\n".join(wrong)


def test_no_module_circle():
    graph = {
        module_name(p): {m for m in imported_modules(p, top_level_only=True) if m != module_name(p)} for p in MODULES
    }
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node) :] + [node]
            # a package importing its own submodules, which import siblings, is not a circle back into it
            if not all(step.startswith(cycle[0] + ".") or step == cycle[0] for step in cycle[1:]):
                pytest.fail("import circle: " + " -> ".join(cycle))
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def _loads_torch(code: str, cwd: Path | None = None) -> bool:
    probe = code + "\nimport sys, json\nprint(json.dumps('torch' in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    ["svqbench.cli", "svqbench.engine.allocator", "svqbench.metrics"]
    + [module_name(p) for p in sorted((PACKAGE / "results").glob("*.py"))],
)
def test_light_modules_do_not_import_torch(module: str):
    assert not _loads_torch(f"import {module}"), f"importing {module} loads torch"


LIGHT_COMMANDS = """
import json, sys
import numpy as np
from pathlib import Path
from svqbench.results import per_window
from svqbench.results.views import publish

root = Path(sys.argv[1])
import os
os.environ["SVQBENCH_LEADERBOARDS"] = str(root / "boards")
for name, shift in (("a", 0.0), ("b", 0.004)):
    run = root / name
    run.mkdir()
    mse = np.linspace(0.01, 0.02, 8) + shift
    report = {"dataset": "digits", "split": "test", "convention": "standard"}
    per_window.write(run, {"mse": mse, "ssim": 1.0 - mse}, np.arange(8), "sequence", report)
    (run / "metrics.json").write_text(json.dumps(report))
    publish("digits", {"run_id": name * 12, "run": str(run), "recipe": "digits/" + name, "model": name,
                                   "dataset": "digits", "split": "test", "seed": 1, "convention": "standard",
                                   "protocol": "default",
                                   "mse": float(mse.mean()), "ssim": float(1 - mse.mean())}, root / "boards")
from svqbench.cli import app
for command in (["leaderboard", "digits"], ["compare", str(root / "a"), str(root / "b")]):
    try:
        app(command, standalone_mode=False)
    except SystemExit as stop:
        assert not stop.code, (command, stop.code)
print(json.dumps("torch" in sys.modules))
"""


def test_leaderboard_and_compare_commands_do_not_import_torch(tmp_path: Path):
    """`svqbench leaderboard` and `svqbench compare` run in a process that never loads torch."""
    done = subprocess.run([sys.executable, "-c", LIGHT_COMMANDS, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "better" in done.stdout or "mse" in done.stdout, done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) is False, "a light command loaded torch"
