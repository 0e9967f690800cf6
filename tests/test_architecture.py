"""The walls between stages (import-linter contracts in pyproject.toml) hold, and a
broken wall is caught: a copy of the package with one forbidden import fails."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)}, timeout=300)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "snapshotter", tmp_path / "snapshotter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("normalize/__init__.py", "import snapshotter.store.writes", "normalize is pure"),
    ("store/writes.py", "import snapshotter.kite.client", "the store never imports the Kite"),
    ("console/lots.py", "import snapshotter.store.models", "console is pure"),
    ("kite/http.py", "import pandas", "the Kite client imports neither pandas"),
    ("ops/status.py", "import snapshotter.kite.client",
     "operations reach Kite only through the pipeline"),
    ("simulator/market.py", "import snapshotter.config", "the simulator imports nothing"),
    ("store/engine.py", "import snapshotter.store.migrate", "no import cycles"),
])
def test_a_broken_wall_fails(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / "snapshotter" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def _private_imports(path: Path) -> list[tuple[str, str, str]]:
    """(file, module, name) of each ``from <our module> import _name`` in the file (an
    ``as _alias`` of a public name is no private name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        ours = node.module.split(".")[0] in {"snapshotter", "bench_fetch", "bench_run"}
        for alias in node.names:
            if ours and alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append((path.relative_to(ROOT).as_posix(), node.module, alias.name))
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    files = sorted([*(ROOT / "snapshotter").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])
    found = {hit for path in files for hit in _private_imports(path)}
    assert sorted(found) == []
