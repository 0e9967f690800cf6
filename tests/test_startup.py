"""Commands import only what they use: `--help`, `--version`, usage errors, `status` and
`systemd` start without pandas, Alembic, APScheduler and the other heavy libraries (each
costs tenths of a second, a second for the lot), as `python -X importtime` reports them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, run_cli, write_config

HEAVY = {"pandas", "numpy", "alembic", "apscheduler", "pandas_market_calendars",
         "matplotlib", "pyarrow"}
# Not even the database or HTTP libraries for these: they only print.
PRINTING = HEAVY | {"sqlalchemy", "requests", "yaml", "pyotp", "tabulate"}


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The real command, and the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "snapshotter", *args],
                            capture_output=True, text=True, timeout=120, env=os.environ,
                            stdin=subprocess.DEVNULL)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0]
               for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "snapshotter" in modules, result.stderr[-2000:]
    return result, modules - {"import time"}


@pytest.mark.parametrize(("args", "code"), [
    (("--help",), 0),
    (("--version",), 0),
    (("run", "--help"), 0),
    (("no-such-command",), 2),
    (("report", "no-such-kind"), 2),
    (("run", "--no-such-option"), 2),
    (("benchmark", "import", "--help"), 0),
    (("import", "tradebok"), 2),
    (("report", "performance", "--benchmarc", "NIFTY50"), 2),
])
def test_printing_commands_import_no_library(args: tuple[str, ...], code: int) -> None:
    result, modules = imported(*args)
    assert result.returncode == code, result.stdout + result.stderr[-2000:]
    assert not modules & PRINTING, sorted(modules & PRINTING)


def test_systemd_imports_no_heavy_library(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                          tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "state"))
    result, modules = imported("--config", str(cfg), "systemd", "--mode", "daemon")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[Service]" in result.stdout
    assert not modules & HEAVY, sorted(modules & HEAVY)


def test_status_imports_no_heavy_library(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                         database_url: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    result, modules = imported("--config", str(cfg), "status")
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]  # nothing stored
    assert "never" in result.stdout
    assert not modules & HEAVY, sorted(modules & HEAVY)


def test_status_on_a_new_database_migrates_it(sim: KiteSimulator,
                                              sim_accounts: list[SimAccount],
                                              database_url: str, tmp_path: Path) -> None:
    """An empty database that exists (PostgreSQL's CREATE DATABASE, an empty SQLite file):
    status creates none (tests/test_cli_conventions.py) but migrates one."""
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).touch()
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))
    result, modules = imported("--config", str(cfg), "status")
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert "alembic" in modules
    assert "database migrated to" in result.stderr
    again, modules = imported("--config", str(cfg), "status")
    assert again.stdout == result.stdout
    assert "alembic" not in modules and "migrated" not in again.stderr


def test_benchmark_import_loads_no_login_code(tmp_path: Path) -> None:
    """`benchmark import` reads a file and writes a table: the Kite client and the
    snapshot job stay unloaded (the pipeline package loads its names lazily)."""
    cfg = write_config(tmp_path / "config.yaml", {
        "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
        "accounts": [{"user_id": "AB1234", "auth": "manual"}]})
    csv = tmp_path / "nifty.csv"
    csv.write_text("Date,Close\n01 Dec 2026,24000\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snapshotter", "--config", str(cfg),
         "benchmark", "import", "NIFTY50", str(csv)],
        capture_output=True, text=True, timeout=120, env=os.environ, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
              if line.startswith("import time:")}
    unwanted = {"snapshotter.kite.client", "snapshotter.pipeline.run",
                "snapshotter.pipeline.logins", "snapshotter.pipeline.storing",
                "apscheduler"}
    assert not loaded & unwanted, sorted(loaded & unwanted)
