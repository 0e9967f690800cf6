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
def restored_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int, int]]:
    monkeypatch.setattr(heap, "_holding", False)
    threshold = gc.get_threshold()
    yield threshold
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.enable()


def test_held_off_until_loaded_then_frozen(restored_collector: tuple[int, int, int]) -> None:
    heap.hold_off()
    assert not gc.isenabled()
    heap.loaded()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *restored_collector[1:])


def test_loaded_without_hold_off_changes_nothing(
        restored_collector: tuple[int, int, int]) -> None:
    heap.loaded()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == restored_collector


def test_a_run_called_as_a_library_leaves_the_collector_alone(
        tmp_path: Path, sim: KiteSimulator, sim_accounts: list[SimAccount],
        restored_collector: tuple[int, int, int]) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path}/history.db", tmp_path / "state"))
    assert main(["--config", str(cfg), "run"]) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == restored_collector


# Written into the command's process (as sitecustomize): one line per collection, with
# whether SQLAlchemy had been loaded and how many objects were frozen by then; and, as
# the process ends, whether collection was on.
_WATCH = """
import gc, os, sys
_log = open({log!r}, "a", encoding="utf-8")
def _seen(phase, info):
    if phase == "start":
        _log.write(f"{{info['generation']}} {{'sqlalchemy' in sys.modules}} "
                   f"{{gc.get_freeze_count()}}\\n")
        _log.flush()
gc.callbacks.append(_seen)
_exit = os._exit
def _ending(code):
    _log.write(f"exit {{gc.isenabled()}} {{gc.get_freeze_count()}}\\n")
    _log.flush()
    _exit(code)
os._exit = _ending
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
    *collections, ending = [line.split() for line in
                            log.read_text(encoding="utf-8").splitlines()]
    assert collections, "the watch saw no collection at all (Python's start-up has some)"
    # Once SQLAlchemy is loading, no collection until the loaded heap is frozen...
    assert [c for c in collections if c[1] == "True" and c[2] == "0"] == []
    # ...and by the end it was frozen and collection was back on.
    assert ending[:2] == ["exit", "True"] and int(ending[2]) > 0, ending
