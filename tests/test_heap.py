"""The `snapshotter run` process keeps the garbage collector off what it loads (heap);
a program calling the library keeps Python's collector as it was."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshotter import heap
from snapshotter.cli import main
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, run_cli, write_config


@pytest.fixture
def restored_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(heap, "_holding", False)
    yield
    gc.unfreeze()
    gc.enable()


def test_held_off_until_loaded_then_frozen(restored_collector: None) -> None:
    heap.hold_off()
    assert not gc.isenabled()
    heap.loaded()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_loaded_without_hold_off_changes_nothing(restored_collector: None) -> None:
    heap.loaded()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_run_called_as_a_library_leaves_the_collector_alone(
        tmp_path: Path, sim: KiteSimulator, sim_accounts: list[SimAccount],
        restored_collector: None) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path}/history.db", tmp_path / "state"))
    assert main(["--config", str(cfg), "run"]) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


# Written into the command's process (as sitecustomize): one line per collection, with
# whether SQLAlchemy had been loaded and how many objects were frozen by then.
_WATCH = """
import gc, sys
_log = open({log!r}, "a", encoding="utf-8")
def _seen(phase, info):
    if phase == "start":
        _log.write(f"{{info['generation']}} {{'sqlalchemy' in sys.modules}} "
                   f"{{gc.get_freeze_count()}}\\n")
        _log.flush()
gc.callbacks.append(_seen)
"""


def test_the_command_collects_nothing_while_it_loads(
        tmp_path: Path, sim: KiteSimulator, sim_accounts: list[SimAccount]) -> None:
    log = tmp_path / "collections.log"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WATCH.format(log=str(log)), encoding="utf-8")
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path}/history.db", tmp_path / "state"))
    path = os.pathsep.join([str(site), *sys.path])
    result = run_cli("--config", str(cfg), "run", env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok, ") == len(sim_accounts)
    collections = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    assert collections, "the watch saw no collection at all"
    # Once SQLAlchemy is loading, no collection until the loaded heap is frozen.
    assert [c for c in collections if c[1] == "True" and c[2] == "0"] == []
    assert any(c[1] == "True" for c in collections), "no collection after the run loaded"
