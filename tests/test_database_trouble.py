"""A database that is missing, read-only or locked by another run: the real command
stops before any login, says which database in one line, exits with its own code and
pings the failure URL."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store.lock import ADVISORY_KEY
from tests.conftest import LOCAL_ONLY, Recorder, config_dict, run_cli, write_config


def _run(sim: KiteSimulator, accounts: list[SimAccount], url: str, tmp_path: Path,
         recorder: Recorder, *args: str, **kite: object) -> tuple[int, str, str]:
    data = config_dict(sim, accounts, url, tmp_path / "state",
                       healthcheck_url=f"{recorder.base_url}/ping/abc")
    data["kite"].update(kite)
    cfg = write_config(tmp_path / "config.yaml", data)
    result = run_cli("--config", str(cfg), "run", *args, env=LOCAL_ONLY)
    return result.returncode, result.stdout, result.stderr


def _assert_one_line_no_login(sim: KiteSimulator, err: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert not [p for _, p, _ in sim.requests_log], "logged in although the run could not store"


def test_missing_postgres_database(postgres_server: str, sim: KiteSimulator,
                                   sim_accounts: list[SimAccount], tmp_path: Path,
                                   recorder: Recorder) -> None:
    url = postgres_server.rsplit("/", 1)[0].replace(
        "postgres@", "postgres:hunter2-db-pw@") + "/snapshotter_no_such_database"
    code, _out, err = _run(sim, sim_accounts, url, tmp_path, recorder)
    assert code == 75, err
    _assert_one_line_no_login(sim, err)
    assert "snapshotter_no_such_database" in err and "127.0.0.1" in err
    assert "hunter2-db-pw" not in err and "***" in err
    [(method, path, body)] = recorder.wait(1)
    assert (method, path) == ("POST", "/ping/abc/fail")
    assert "hunter2-db-pw" not in body


def test_sqlite_in_a_missing_directory(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                       tmp_path: Path, recorder: Recorder) -> None:
    path = tmp_path / "no" / "such" / "dir" / "snapshots.db"
    code, _out, err = _run(sim, sim_accounts, f"sqlite:///{path}", tmp_path, recorder)
    assert code == 75, err
    _assert_one_line_no_login(sim, err)
    assert str(path) in err
    assert recorder.wait(1)[0][1] == "/ping/abc/fail"


def test_read_only_sqlite_database(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                   tmp_path: Path, recorder: Recorder) -> None:
    path = tmp_path / "snapshots.db"
    code, _out, err = _run(sim, sim_accounts, f"sqlite:///{path}", tmp_path, recorder)
    assert code == 0, err
    before = len(sim.requests_log)
    sim.requests_log.clear()
    assert before > 0
    # A read-only open (root ignores file modes, so say it in the URL, as SQLite allows).
    code, _out, err = _run(sim, sim_accounts, f"sqlite:///file:{path}?mode=ro&uri=true",
                           tmp_path, recorder, "--force")
    assert code == 75, err
    _assert_one_line_no_login(sim, err)
    assert str(path) in err
    assert [p for _, p, _ in recorder.wait(2)] == ["/ping/abc", "/ping/abc/fail"]


@contextlib.contextmanager
def _hold_run_lock(url: str) -> Iterator[None]:
    """What another snapshotter run holding the lock looks like."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        fd = os.open(Path(str(parsed.database)).with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
    engine.dispose()


def test_waiting_for_another_runs_lock_ends_at_run_timeout(
        database_url: str, sim: KiteSimulator, sim_accounts: list[SimAccount],
        tmp_path: Path, recorder: Recorder) -> None:
    cfg = write_config(tmp_path / "migrate.yaml",
                       config_dict(sim, sim_accounts, database_url, tmp_path / "state"))
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    with _hold_run_lock(database_url):  # held until the run gives up: only its deadline ends it
        code, _out, err = _run(sim, sim_accounts, database_url, tmp_path, recorder,
                               run_timeout=3)
    assert code == 69, err
    _assert_one_line_no_login(sim, err)
    assert "another snapshotter run still holds the run lock" in err
    assert "giving up (kite.run_timeout)" in err
    assert recorder.wait(1)[0][1] == "/ping/abc/fail"


def test_describe_url_names_the_sqlite_file_of_a_uri(tmp_path: Path) -> None:
    from snapshotter.store.engine import describe_url

    path = tmp_path / "x.db"
    assert describe_url(f"sqlite:///file:{path}?mode=ro&uri=true") == f"SQLite database {path}"
    assert describe_url(f"sqlite:///{path}") == f"SQLite database {path}"
