"""First-day rough edges (issue 17, sections 2 and 4), through the real `snapshotter`
command: a relative state_dir, Ctrl-C during logins, read-only databases, the simulator's
Kite Connect apps, command-line wording, systemd warnings and charts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, query_rows, run_cli, write_config


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# -- a relative state_dir is relative to the config file ---------------------------------


def test_relative_state_dir_is_read_against_the_config_directory(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """`simulate --write-config` writes `state_dir: state`: run from anywhere, one state
    directory, so no second login (each spends a 2FA code and ends the browser session)."""
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}", Path("state")))
    first = run_cli("--config", str(cfg), "run", cwd=work)
    assert first.returncode == 0, first.stdout + first.stderr
    again = run_cli("--config", "conf/config.yaml", "run", "--force", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    user = sim_accounts[0].user_id
    assert sim.login_count[user] == 1
    assert (conf / "state").is_dir()
    assert not list(work.iterdir()) and not (tmp_path / "state").exists()


def test_a_state_dir_left_in_the_working_directory_is_pointed_out(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    (work / "state").mkdir(parents=True)
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}", Path("state")))
    result = run_cli("--config", str(cfg), "run", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line.split(" WARNING ", 1)[1] for line in result.stderr.splitlines()
                if " WARNING " in line]
    assert warnings == [
        f"{cfg}: state_dir: a relative path is relative to this file's directory "
        f"({conf / 'state'}); the state directory at {work / 'state'} (the working "
        "directory) is not used: move it there, or give its absolute path"]
