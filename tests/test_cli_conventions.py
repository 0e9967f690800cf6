"""Command-line conventions, through the real command: global options before or after the
command, "did you mean" for a mistyped command or option with that command's usage, one
exit-code table; read commands never create a database; a relative SQLite path is read
against the config file's directory; an unusable SQLite path is named before any login."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from snapshotter.errors import ExitCode
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, run_cli, write_config

OPERATIONS = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()

READ_COMMANDS = [("status",), ("report", "summary"), ("report", "performance"),
                 ("report", "tax", "--fy", "2025-26"), ("export", "--out", "EXPORT"),
                 ("chart", "--out", "CHART.png")]


def _read_command(args: tuple[str, ...], tmp_path: Path) -> list[str]:
    return [str(tmp_path / a) if a in ("EXPORT", "CHART.png") else a for a in args]


def _no_traceback(result: object) -> None:
    assert "Traceback" not in getattr(result, "stderr", ""), getattr(result, "stderr", "")


# -- global options, before and after the command ----------------------------------------


def test_global_options_work_before_and_after_the_command(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(
        sim, sim_accounts[:1], database_url, tmp_path / "state"))
    account = sim_accounts[0].user_id

    after = run_cli("run", "--config", str(cfg), "--json-logs", "-v")
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"{account} " in after.stdout and ": ok, " in after.stdout
    logs = [json.loads(line) for line in after.stderr.splitlines()]  # --json-logs after run
    used = f"SQLite database {tmp_path / 'snapshots.db'}" \
        if database_url.startswith("sqlite") else database_url  # no password to hide
    assert {"level": "DEBUG", "logger": "snapshotter",  # -v after run
            "message": f"config {cfg}; {used}"} in [
        {k: e[k] for k in ("level", "logger", "message")} for e in logs]

    # Before the command: the command's own defaults must not reset them.
    before = run_cli("--config", str(cfg), "--json-logs", "status")
    assert before.returncode == 0, before.stdout + before.stderr
    assert account in before.stdout
    for line in before.stderr.splitlines():
        json.loads(line)

    # Mixed: the config after the command, a log option before it.
    mixed = run_cli("--json-logs", "status", "--config", str(cfg))
    assert mixed.returncode == 0, mixed.stdout + mixed.stderr
    assert mixed.stdout == before.stdout

    # After a sub-subcommand, and the last --config given wins.
    upgrade = run_cli("--config", str(tmp_path / "nope.yaml"), "db", "upgrade",
                      "--config", str(cfg))
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.strip() == "database already at head"
    report = run_cli("report", "summary", "--format", "json", "--config", str(cfg))
    assert report.returncode == 0, report.stderr
    assert [row["account"] for row in json.loads(report.stdout)] == [account]


def test_help_of_a_command_lists_the_global_options() -> None:
    result = run_cli("status", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: snapshotter status ")
    for option in ("--config PATH", "--verbose", "--json-logs"):
        assert option in result.stdout


# -- a mistyped command or option --------------------------------------------------------


@pytest.mark.parametrize(("args", "usage", "hint"), [
    (("rnu",), "usage: snapshotter [", "did you mean 'run'?"),
    (("report", "sumary"), "usage: snapshotter report ", "did you mean 'summary'?"),
    (("report", "summary", "--format", "jsn"), "usage: snapshotter report ",
     "did you mean 'json'?"),
    (("db", "upgrde"), "usage: snapshotter db ", "did you mean 'upgrade'?"),
    (("run", "--accout", "AB1234"), "usage: snapshotter run ", "did you mean --account?"),
    (("run", "--fromraw"), "usage: snapshotter run ", "did you mean --from-raw?"),
    (("status", "--confg=x.yaml"), "usage: snapshotter status ", "did you mean --config?"),
    (("db", "upgrade", "--jsonlogs"), "usage: snapshotter db upgrade ",
     "did you mean --json-logs?"),
])
def test_a_mistyped_command_or_option_suggests_the_closest(
        args: tuple[str, ...], usage: str, hint: str) -> None:
    result = run_cli(*args)
    assert result.returncode == ExitCode.USAGE == 2, result.stderr
    _no_traceback(result)
    assert result.stderr.startswith(usage), result.stderr
    [error] = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert hint in error, result.stderr
    assert result.stdout == ""


def test_nothing_close_suggests_nothing() -> None:
    result = run_cli("xyzzy")
    assert result.returncode == 2
    assert "did you mean" not in result.stderr
    assert "invalid choice: 'xyzzy'" in result.stderr


# -- one exit-code table -----------------------------------------------------------------


def test_one_exit_code_table_in_help_and_docs() -> None:
    expected = {0, 1, 2, 69, 75, 78}
    assert expected <= {int(code) for code in ExitCode}
    help_text = run_cli("--help").stdout
    listed = help_text.split("exit codes", 1)[1]
    section = OPERATIONS.split("\n## Exit codes\n", 1)[1].split("\n#", 1)[0]
    doc_codes = {int(m) for m in re.findall(r"^\| (\d+) ", section, re.MULTILINE)}
    assert doc_codes == {int(code) for code in ExitCode}, section
    for code in ExitCode:
        assert re.search(rf"^  {code.value}\s", listed, re.MULTILINE), listed
    # What can go wrong uses only codes of the table.
    trouble = OPERATIONS.split("\n## What can go wrong\n", 1)[1].split("\n## ", 1)[0]
    used = {int(n) for row in trouble.splitlines() if row.startswith("|")
            for n in re.findall(r"\b(\d+)\b", row.rsplit("|", 2)[1])}
    assert used and used <= doc_codes, used


@pytest.fixture
def stored(sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
           tmp_path: Path) -> Path:
    """A config whose database holds one run of every simulated account."""
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))
    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return cfg


def test_report_usage_errors_exit_2(stored: Path, sim_accounts: list[SimAccount],
                                    tmp_path: Path) -> None:
    history = run_cli("--config", str(stored), "report", "history")
    assert history.returncode == 2, history.stderr
    assert history.stderr.strip() == (
        "error: report history needs a SYMBOL, e.g. `snapshotter report history INFY`")

    known = sim_accounts[0].user_id
    typo = known[:-1] + ("9" if known[-1] != "9" else "8")
    for args in (("report", "summary", "--account", typo),
                 ("report", "pnl", "--account", known, "--account", typo),
                 ("chart", "--out", str(tmp_path / "c.png"), "--account", typo)):
        result = run_cli("--config", str(stored), *args)
        assert result.returncode == 2, result.stdout + result.stderr
        _no_traceback(result)
        assert result.stderr.startswith(f"error: no account '{typo}' in {stored} or the "
                                        "database (did you mean "), result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "c.png").exists()
    nothing = run_cli("--config", str(stored), "report", "summary", "--account", "ZZ0000")
    assert nothing.returncode == 2
    assert "(known: " in nothing.stderr and known in nothing.stderr

    # An account removed from the config still has its history in the database.
    data = config_dict_without(stored, known)
    slim = write_config(tmp_path / "slim.yaml", data)
    kept = run_cli("--config", str(slim), "report", "summary", "--account", known.lower(),
                   "--format", "json")
    assert kept.returncode == 0, kept.stderr
    assert [row["account"] for row in json.loads(kept.stdout)] == [known]


def config_dict_without(cfg: Path, account: str) -> dict[str, object]:
    import yaml

    data = yaml.safe_load(cfg.read_text())
    data["accounts"] = [a for a in data["accounts"] if a["user_id"] != account]
    return data


def test_a_missing_postgres_database_is_75_for_every_command(
        postgres_server: str, sim: KiteSimulator, sim_accounts: list[SimAccount],
        tmp_path: Path) -> None:
    url = postgres_server.rsplit("/", 1)[0].replace(
        "postgres@", "postgres:hunter2-db-pw@") + "/does_not_exist"
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(
        sim, sim_accounts, url, tmp_path / "state"))
    hidden = url.replace("hunter2-db-pw", "***")
    for args in (("run",), ("db", "upgrade"), *READ_COMMANDS):
        result = run_cli(*_read_command(args, tmp_path), "--config", str(cfg))
        assert result.returncode == ExitCode.DATABASE_UNAVAILABLE == 75, \
            (args, result.stdout + result.stderr)
        assert result.stderr == (f"error: database unreachable or not writable: {hidden}: "
                                 'database "does_not_exist" does not exist\n'), args
        assert "hunter2-db-pw" not in result.stdout + result.stderr
    assert not sim.requests_log  # no login
    assert not (tmp_path / "EXPORT").exists() and not (tmp_path / "CHART.png").exists()


def test_verbose_names_the_database_without_its_password(
        postgres_server: str, sim: KiteSimulator, sim_accounts: list[SimAccount],
        tmp_path: Path) -> None:
    """`-v` logs which database a command uses: the password hidden even when it is too
    short for the redaction filter (which masks secrets of 4 characters or more)."""
    url = postgres_server.rsplit("/", 1)[0].replace("postgres@", "postgres:pw9@") \
        + "/does_not_exist"
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(
        sim, sim_accounts, url, tmp_path / "state"))
    result = run_cli("-v", "db", "upgrade", "--config", str(cfg))
    assert result.returncode == ExitCode.DATABASE_UNAVAILABLE, result.stderr
    logged = [line for line in result.stderr.splitlines() if f"config {cfg}; " in line]
    assert logged and logged[0].endswith(url.replace(":pw9@", ":***@")), result.stderr
    assert ":pw9@" not in result.stdout + result.stderr


# -- read commands never invent a database -----------------------------------------------


@pytest.mark.parametrize("args", READ_COMMANDS,
                         ids=lambda a: "-".join(w for w in a[:2] if not w.startswith("-")))
def test_read_commands_never_create_a_sqlite_database(
        args: tuple[str, ...], sim: KiteSimulator, sim_accounts: list[SimAccount],
        tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    for path in (tmp_path / "snapshots.db", tmp_path / "no" / "dir" / "snapshots.db"):
        cfg = write_config(tmp_path / "cfg.yaml", config_dict(
            sim, sim_accounts, f"sqlite:///{path}", tmp_path / "state"))
        before = sorted(p.name for p in tmp_path.iterdir())
        result = run_cli(*_read_command(args, tmp_path), "--config", str(cfg), cwd=work)
        assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
        assert result.stderr == (f"error: no database at {path} "
                                 "(run `snapshotter run` first)\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        assert not list(work.iterdir())


def test_read_commands_on_an_existing_database_still_migrate_it(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """An existing but empty SQLite file is a database: brought to the current schema."""
    path = tmp_path / "snapshots.db"
    path.touch()
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{path}", tmp_path / "state"))
    result = run_cli("--config", str(cfg), "report", "summary", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "database migrated to" in result.stderr


# -- a relative SQLite path is relative to the config file -------------------------------


def test_relative_sqlite_path_is_read_against_the_config_directory(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], "sqlite:///data/snapshots.db", tmp_path / "state"))

    missing = run_cli("--config", str(cfg), "run", cwd=work)
    assert missing.returncode == 75, missing.stdout + missing.stderr
    assert missing.stderr == (
        f"error: database unreachable or not writable: SQLite database "
        f"{conf / 'data' / 'snapshots.db'}: directory {conf / 'data'} does not exist\n")
    assert not sim.requests_log  # before any login

    (conf / "data").mkdir()
    run = run_cli("--config", str(cfg), "run", cwd=work)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (conf / "data" / "snapshots.db").exists()
    assert not list(work.iterdir())
    # From another directory, with the config's own relative name: the same database.
    status = run_cli("--config", "conf/config.yaml", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert sim_accounts[0].user_id in status.stdout


def test_a_database_left_in_the_working_directory_is_pointed_out(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """Before, a relative path was read against the working directory."""
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], "sqlite:///snapshots.db", tmp_path / "state"))
    (work / "snapshots.db").touch()
    result = run_cli("--config", str(cfg), "status", cwd=work)
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert warning.split(" WARNING ", 1)[1] == (
        f"{cfg}: database.url: a relative SQLite path is relative to this file's directory "
        f"({conf / 'snapshots.db'}); the database at {work / 'snapshots.db'} (the working "
        "directory) is not used: move it there, or give its absolute path (sqlite:////...)")
    assert error == f"error: no database at {conf / 'snapshots.db'} (run `snapshotter run` first)"


# -- run: an unusable SQLite path, named before any login --------------------------------


def _run_against(sim: KiteSimulator, accounts: list[SimAccount], url: str,
                 tmp_path: Path) -> tuple[int, str]:
    cfg = write_config(tmp_path / "cfg.yaml", config_dict(
        sim, accounts, url, tmp_path / "state"))
    result = run_cli("--config", str(cfg), "run")
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


def test_run_names_a_sqlite_path_it_cannot_use(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    adir = tmp_path / "a-dir"
    adir.mkdir()
    cases = {
        tmp_path / "no" / "such" / "snapshots.db": f"directory {tmp_path / 'no' / 'such'} "
                                                   "does not exist",
        afile / "snapshots.db": f"{afile} is not a directory",
        adir: "it is a directory, not a database file",
    }
    for path, problem in cases.items():
        code, err = _run_against(sim, sim_accounts, f"sqlite:///{path}", tmp_path)
        assert code == 75, err
        assert err == (f"error: database unreachable or not writable: SQLite database "
                       f"{path}: {problem}\n")
    assert not sim.requests_log


def test_run_names_a_read_only_sqlite_database(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    path = tmp_path / "snapshots.db"
    code, err = _run_against(sim, sim_accounts[:1], f"sqlite:///{path}", tmp_path)
    assert code == 0, err
    sim.requests_log.clear()
    # Opened read-only (root writes any file, whatever its mode: this works as root too).
    code, err = _run_against(sim, sim_accounts[:1],
                             f"sqlite:///file:{path}?mode=ro&uri=true", tmp_path)
    assert code == 75, err
    assert err.startswith(f"error: database unreachable or not writable: SQLite database "
                          f"{path}: read-only (SQLite: attempt to write a readonly database")
    assert len(err.splitlines()) == 1
    assert not sim.requests_log


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files and directories")
def test_run_names_a_read_only_file_or_directory(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    path = tmp_path / "db" / "snapshots.db"
    path.parent.mkdir()
    code, err = _run_against(sim, sim_accounts[:1], f"sqlite:///{path}", tmp_path)
    assert code == 0, err
    sim.requests_log.clear()
    path.chmod(0o400)
    try:
        code, err = _run_against(sim, sim_accounts[:1], f"sqlite:///{path}", tmp_path)
    finally:
        path.chmod(0o600)
    assert code == 75, err
    assert err == (f"error: database unreachable or not writable: SQLite database {path}: "
                   "the file is read-only\n")
    other = path.with_name("other.db")
    path.parent.chmod(0o500)
    try:
        code, err = _run_against(sim, sim_accounts[:1], f"sqlite:///{other}", tmp_path)
    finally:
        path.parent.chmod(0o700)
    assert code == 75, err
    assert err == (f"error: database unreachable or not writable: SQLite database {other}: "
                   f"directory {path.parent} is read-only (the file cannot be created)\n")
    assert not sim.requests_log
