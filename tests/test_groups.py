"""Account groups (``accounts[].group``, `report performance --group NAME`) and the read
commands without the accounts' secrets, on SQLite and PostgreSQL.

The scenario is test_household's (joins, a carried session, a leave, a pay-in):
AA0001 and BB0002 are the group ``family``; CC0003 is a group of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.reports import performance as perf
from snapshotter.reports.query import Filters
from snapshotter.sessions import TradingCalendar
from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store import scoped
from snapshotter.store.models import Base
from tests.conftest import config_dict, run_cli, write_config
from tests.test_household import D1, D2, D3, D4, D5, D6, A, B, C, load_household
from tests.test_returns import xirr_by_bisection
from tests.test_views import query

CALENDAR = TradingCalendar()
NAV_ALL = "SELECT * FROM nav_daily_all ORDER BY snapshot_date"
CARRIED_ALL = ("SELECT account, snapshot_date FROM household_daily WHERE carried = 1 "
               "ORDER BY snapshot_date, account")


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrations.upgrade(database_url, engine)
    load_household(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cfg(engine: sa.Engine, database_url: str, tmp_path: Path) -> Path:
    """family = AA0001 + BB0002; CC0003 left the household on 11-05 (a leave, as
    test_household has it)."""
    path = write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": A, "auth": "manual", "group": "family", "label": "Asha"},
                     {"user_id": B, "auth": "manual", "group": "family"},
                     {"user_id": C, "auth": "manual"}],
    })
    left = run_cli("--config", str(path), "household", "leave", C, "--on", "2026-11-05")
    assert left.returncode == 0, left.stderr
    return path


def scoped_rows(engine: sa.Engine, accounts: list[str]) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        return ([tuple(r) for r in scoped.nav_rows(conn, accounts)],
                [tuple(r) for r in scoped.carried_rows(conn, accounts)])


def view_rows(engine: sa.Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        return ([tuple(r) for r in conn.execute(sa.text(NAV_ALL))],
                [tuple(r) for r in conn.execute(sa.text(CARRIED_ALL))])


def test_a_group_of_every_account_is_the_household(cfg: Path, engine: sa.Engine) -> None:
    """The composed query over every account gives the views' rows exactly: joins (BB0002
    on 11-03), a carried session (BB0002 on 11-05), a leave (CC0003) and a pay-in."""
    nav, carried = view_rows(engine)
    assert len(nav) == 6 and carried == [(B, carried[0][1])]
    assert [r[6:] for r in nav] == [(0, 0, 0), (0, 1, 0), (0, 0, 0), (1, 0, 1), (0, 0, 0),
                                    (0, 0, 0)]
    assert scoped_rows(engine, [A, B, C]) == (nav, carried)
    assert list(scoped.NAV_COLUMNS) == list(query(engine, NAV_ALL)[0])


def drop_account(engine: sa.Engine, account: str) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if "account" in table.c:
                conn.execute(table.delete().where(table.c.account == account))


@pytest.mark.parametrize("dropped", [C, B, A])
def test_a_group_is_the_household_of_its_accounts_alone(cfg: Path, engine: sa.Engine,
                                                        dropped: str) -> None:
    """A group's rows are those the views give when the database holds its accounts
    alone (the accounts left out are not read at all)."""
    members = sorted({A, B, C} - {dropped})
    before = scoped_rows(engine, members)
    drop_account(engine, dropped)
    assert before == view_rows(engine)
    assert scoped_rows(engine, [*members, "ZZ9999"]) == before  # not stored: no rows
    assert scoped_rows(engine, []) == ([], [])


def test_group_query_binds_the_accounts(engine: sa.Engine) -> None:
    """The accounts are bound parameters, never SQL text."""
    hostile = "AA0001') OR 1=1 --"
    assert scoped_rows(engine, [hostile]) == ([], [])
    assert "AA0001" not in str(scoped.NAV_QUERY)


# family: AA0001 from 11-02 (10000 ...), BB0002 joins on 11-03 with 5000 (a flow), is
# carried at 5000 on 11-05, back at 5500 on 11-06; AA0001's pay-in of 1000 on 11-06.
FAMILY_NAV5 = 17100 / 15
FAMILY_UNITS = 15 + 1000 / FAMILY_NAV5


def test_report_performance_group_through_the_command(cfg: Path) -> None:
    result = run_cli("--config", str(cfg), "report", "performance", "--group", "family",
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["account"], r["label"]) for r in rows] == [
        ("family", None), (A, "Asha"), (B, None)]
    family = rows[0]
    assert (family["from"], family["to"]) == ("2026-11-02", "2026-11-09")
    assert (family["start_value"], family["end_value"], family["net_flows"]) == (
        10000, 18810, 6000)
    assert family["market_pnl"] == 3410 - 600  # A's own and B's since it joined
    assert family["nav_return"] == pytest.approx(18810 / FAMILY_UNITS / 1000 - 1, abs=1e-9)
    assert family["twr"] == pytest.approx(
        1.1 * (16000 / 16000) * (17100 / 16000) * (17600 / 17100) * (18810 / 18600) - 1,
        abs=1e-9)
    assert family["xirr"] == pytest.approx(xirr_by_bisection(
        [(D1, -10000), (D2, -5000), (D5, -1000), (D6, 18810)]), rel=1e-7)
    # BB0002's missed 11-05 is a gap of its own, and the group's (as ALL's), carried
    assert (family["gaps"], family["carried"], rows[2]["gaps"]) == (1, 1, 1)
    assert "warning: family: 1 session(s) counted an account without a complete snapshot " \
           "at its last value (2026-11-05: BB0002)" in result.stderr
    # the members' rows are those of `--account`
    accounts = json.loads(run_cli("--config", str(cfg), "report", "performance",
                                  "--account", A, "--account", B, "--format", "json").stdout)
    assert rows[1:] == accounts

    table = run_cli("--config", str(cfg), "report", "performance", "--group", "FAMILY",
                    "--from", "2026-11-03", "--to", "2026-11-06")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["account", "label", "from"]
    assert [line.split()[:3] for line in lines[2:5]] == [
        ["family", "2026-11-03", "2026-11-06"], [A, "Asha", "2026-11-03"],
        [B, "2026-11-03", "2026-11-06"]]
    assert any(line.startswith("warning: family: 1 session(s) counted") for line in lines)
    csv = run_cli("--config", str(cfg), "report", "performance", "--group", "family",
                  "--format", "csv", "--benchmark", "NIFTY50")
    assert csv.returncode == 2 and "unknown benchmark 'NIFTY50'" in csv.stderr


def test_group_beside_a_benchmark(cfg: Path, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) "
                             "VALUES ('NIFTY50', :d, :c)"), [{"d": D2, "c": 100},
                                                            {"d": D6, "c": 110}])
    result = run_cli("--config", str(cfg), "report", "performance", "--group", "family",
                     "--benchmark", "nifty50", "--format", "csv", "--from", "2026-11-03")
    assert result.returncode == 0, result.stderr
    header, family, *members = result.stdout.splitlines()
    assert header.split(",")[-3:] == ["benchmark", "benchmark_return", "excess_return"]
    assert family.startswith("family,,2026-11-03,2026-11-09,")
    assert family.split(",")[-2] == "0.1" and len(members) == 2
    early = run_cli("--config", str(cfg), "report", "performance", "--group", "family",
                    "--benchmark", "NIFTY50")
    assert early.returncode == 0, early.stderr
    assert "note: family: benchmark_return is empty: NIFTY50 has no close on or before " \
           "2026-11-02" in early.stdout.splitlines()


def test_group_named_after_its_one_account(cfg: Path) -> None:
    """CC0003's own group: its row (a household of one) and the account's, each as the
    views give them (the group's stops where CC0003 left the household)."""
    result = run_cli("--config", str(cfg), "report", "performance", "--group", C,
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    group, account = json.loads(result.stdout)
    assert (group["account"], account["account"]) == (C, C)
    assert (group["from"], group["to"], account["to"]) == (
        "2026-11-02", "2026-11-04", "2026-11-09")
    assert group["end_value"] == 4400 and account["end_value"] == 9999


def test_group_usage_errors(cfg: Path) -> None:
    unknown = run_cli("--config", str(cfg), "report", "performance", "--group", "famly")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: no group 'famly' in {cfg} (accounts[].group; known: family, CC0003)"]
    both = run_cli("--config", str(cfg), "report", "performance", "--group", "family",
                   "--account", A)
    assert both.returncode == 2 and "not both" in both.stderr
    other = run_cli("--config", str(cfg), "report", "summary", "--group", "family")
    assert other.returncode == 2
    assert "report summary takes no --group: --group is for report performance" in other.stderr


def test_windows_computed_in_pandas_are_the_sql_windows(cfg: Path, engine: sa.Engine) -> None:
    """One read, many windows: each window's figures are those of nav_figures, which
    filters the views' dates in SQL, and those of a fresh performance() call."""
    data = perf.read_rows(engine, perf.Scope())
    days = [None, D1, D2, D3, D4, D5, D6, date(2026, 11, 7)]
    for start in days:
        for end in days:
            filters = Filters(start=start, end=end)
            got = perf.compute(data, CALENDAR, filters).frame
            assert got.equals(perf.performance(engine, CALENDAR, filters).frame)
            if got.empty:
                assert perf.nav_figures(engine, filters).empty
                continue
            sql = perf.nav_figures(engine, filters).reset_index()
            for column in ("account", "start_value", "end_value", "net_flows",
                           "market_pnl", "twr", "nav_return", "max_drawdown"):
                assert list(got[column].fillna(-9)) == list(sql[column].fillna(-9)), (
                    start, end, column)


# --- the read commands need no secrets ---------------------------------------------------


def shown(stdout: str) -> Any:
    """What a read command printed; of status, all but each account's next run (a time
    the clock can move past between two commands)."""
    if not stdout.startswith("{"):
        return stdout
    status = json.loads(stdout)
    for account in status["accounts"]:
        account.pop("next_run")
    return status


def test_read_commands_work_without_the_accounts_secrets(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """A run with the secrets; then report, export, chart and status with every password
    and TOTP variable unset and a secret file gone: the same answers (status's too).
    `run` still needs them."""
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    env: dict[str, str] = {}
    files = tmp_path / "secrets"
    files.mkdir()
    for i, (acc, account) in enumerate(zip(data["accounts"], sim_accounts, strict=True)):
        if i == 1:
            for key in ("password", "totp_secret"):
                (files / key).write_text(acc.pop(key), encoding="utf-8")
                (files / key).chmod(0o600)
                acc[f"{key}_file"] = str(files / key)
        else:
            env[f"GRP_PASSWORD_{i}"], env[f"GRP_TOTP_{i}"] = account.password, \
                account.totp_secret
            acc["password"], acc["totp_secret"] = f"${{GRP_PASSWORD_{i}}}", \
                f"${{GRP_TOTP_{i}}}"
        acc["group"] = "household-1" if i < 2 else "household-2"
    cfg = str(write_config(tmp_path / "config.yaml", data))
    assert not any(name in os.environ for name in env)
    ran = run_cli("--config", cfg, "run", env=env)
    assert ran.returncode == 0, ran.stderr

    reads = [["report", "holdings", "--format", "json"],
             ["report", "performance", "--format", "json"],
             ["report", "performance", "--group", "household-1", "--format", "json"],
             ["report", "summary", "--format", "csv"], ["status", "--format", "json"]]
    with_secrets = [run_cli("--config", cfg, *args, env=env) for args in reads]
    for key in ("password", "totp_secret"):
        (files / key).unlink()
    for args, before in zip(reads, with_secrets, strict=True):
        after = run_cli("--config", cfg, *args)
        assert "not set" not in after.stderr and "cannot read" not in after.stderr, args
        assert (after.returncode, shown(after.stdout)) == (
            before.returncode, shown(before.stdout)), args
    holdings = json.loads(with_secrets[0].stdout)
    assert {r["account"] for r in holdings} == {a.user_id for a in sim_accounts}
    group = json.loads(with_secrets[2].stdout)
    assert [r["account"] for r in group] == ["household-1", *(a.user_id for a in
                                                                sim_accounts[:2])]
    assert with_secrets[0].returncode == 0 and with_secrets[-1].stdout.strip()

    exported = run_cli("--config", cfg, "export", "--format", "csv", "--out",
                       str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "holdings.csv").read_text(encoding="utf-8").count("\n") > 1
    chart = run_cli("--config", cfg, "chart", "--out", str(tmp_path / "c.png"))
    assert chart.returncode == 0, chart.stderr
    assert (tmp_path / "c.png").stat().st_size > 0

    run = run_cli("--config", cfg, "run")
    assert run.returncode == 2
    assert "accounts[0]" in run.stderr and "GRP_PASSWORD_0" in run.stderr
    assert "accounts[1]" in run.stderr and "password_file: cannot read" in run.stderr
    for secret in (a.password for a in sim_accounts):
        assert secret not in run.stderr + run.stdout
