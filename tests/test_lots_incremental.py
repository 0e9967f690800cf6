"""FIFO lots brought up to date, not rebuilt whole (issue 16, section 2): an import or a
run rebuilds the lots of the instruments whose trades or corporate actions changed and
leaves the others' rows as they are, with the lots a whole rebuild gives; absurd
corporate actions are refused; a failed rebuild never fails a run or an import;
`import forget` removes what a file added. Through the real command, on SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import engine as db
from tests.conftest import config_dict, run_cli, write_config
from tests.test_console import DATA, csv_file, realised, rows, still_open

ACTIONS_HEADER = "symbol,isin,ex_date,action,new_shares,for_every"
ACME = "INE00000ACME"
BETA = "INE00000BETA"
LOTS = ("SELECT id, tradingsymbol, isin, buy_date, sell_date, quantity, buy_price, "
        "sell_price, pnl, term, unmatched, buy_trade_id, sell_trade_id, instrument "
        "FROM realised_lots WHERE account = :a ORDER BY id")
OPEN = ("SELECT id, tradingsymbol, isin, buy_date, quantity, buy_price, buy_trade_id, "
        "instrument FROM open_lots WHERE account = :a ORDER BY id")
POSITIONS = ("SELECT instrument, from_date, to_date, tradingsymbol, isin, quantity "
             "FROM trade_positions WHERE account = :a ORDER BY instrument, from_date")


def trade(symbol: str, isin: str, day: str, side: str, quantity: int, price: float,
          trade_id: int) -> str:
    return (f"{symbol},{isin},{day},NSE,EQ,EQ,{side},false,{quantity},{price},{trade_id},"
            f"{trade_id},{day}T10:{trade_id % 60:02d}:00")


@pytest.fixture
def sim_cfg(sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
            tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))


def cli(cfg: Path, *args: str) -> Any:
    return run_cli("--config", str(cfg), *args)


def ok(cfg: Path, *args: str) -> Any:
    result = cli(cfg, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def rebuilt(stderr: str) -> tuple[int, int]:
    """The run's or import's "lots of N of M instruments rebuilt" log line."""
    found = re.findall(r"lots of (\d+) of (\d+) instruments rebuilt", stderr)
    assert len(found) == 1, stderr
    return int(found[0][0]), int(found[0][1])


def without_ids(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(v) for v in r[1:]) for r in found)


def test_only_the_instruments_that_changed_are_rebuilt(sim_cfg: Path,
                                                       tmp_path: Path) -> None:
    account = "DM0001"
    first = csv_file(tmp_path / "first.csv",
                     trade("ACME", ACME, "2025-01-06", "buy", 10, 100, 1),
                     trade("ACME", ACME, "2025-02-06", "sell", 4, 110, 2),
                     trade("BETA", BETA, "2025-01-07", "buy", 20, 50, 3),
                     trade("BETA", BETA, "2025-02-07", "sell", 5, 55, 4),
                     trade("GAMMA", "", "2025-01-08", "buy", 3, 10, 5))
    result = ok(sim_cfg, "import", "tradebook", str(first), "--account", account)
    assert rebuilt(result.stderr) == (3, 3)
    acme_before = [r for r in rows(sim_cfg, LOTS, a=account) if r[-1] == ACME]
    open_before = rows(sim_cfg, OPEN, a=account)

    # A later export touching BETA only, and GAMMA's ISIN (its first trade had none).
    second = csv_file(tmp_path / "second.csv",
                      trade("BETA", BETA, "2025-03-03", "sell", 10, 60, 6),
                      trade("GAMMA", "INE0000GAMMA", "2025-03-04", "buy", 2, 12, 7))
    result = ok(sim_cfg, "import", "tradebook", str(second), "--account", account)
    assert rebuilt(result.stderr) == (3, 3)  # BETA; GAMMA's trades moved to its ISIN
    assert result.stdout.splitlines()[-1] == \
        "DM0001: FIFO lots rebuilt: 3 realised (0 unmatched), 4 open"
    after = rows(sim_cfg, LOTS, a=account)
    assert [r for r in after if r[-1] == ACME] == acme_before  # the same rows, same ids
    assert [r for r in rows(sim_cfg, OPEN, a=account) if r[-1] == ACME] == \
        [r for r in open_before if r[-1] == ACME]
    assert rows(sim_cfg, "SELECT isin FROM trades WHERE trade_id = '5'") == \
        [("INE0000GAMMA",)]

    # A run whose snapshots show no split rebuilds nothing.
    result = ok(sim_cfg, "run")
    assert rebuilt(result.stderr) == (0, 3)
    lots, still, positions = (rows(sim_cfg, sql, a=account) for sql in (LOTS, OPEN,
                                                                          POSITIONS))
    assert lots == after

    # A listed split of BETA: BETA's lots only.
    actions = csv_file(tmp_path / "actions.csv", "BETA,,2025-02-10,split,2,1",
                       header=ACTIONS_HEADER)
    result = ok(sim_cfg, "import", "actions", str(actions), "--account", account)
    assert rebuilt(result.stderr) == (1, 3)
    assert [r for r in rows(sim_cfg, LOTS, a=account) if r[-1] != BETA] == \
        [r for r in lots if r[-1] != BETA]
    assert (BETA, "2025-01-07", 20.0, 25.0) in [
        (r[-1], r[3], r[4], r[5]) for r in rows(sim_cfg, OPEN, a=account)]
    lots, still, positions = (rows(sim_cfg, sql, a=account) for sql in (LOTS, OPEN,
                                                                          POSITIONS))

    # What a whole rebuild gives (stored lots that are not what lot_instruments counts
    # are rebuilt whole) is the same, row for row.
    engine = db.make_engine(_url(sim_cfg))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM realised_lots"))
    finally:
        engine.dispose()
    result = ok(sim_cfg, "run", "--force")
    assert rebuilt(result.stderr) == (3, 3)
    assert without_ids(rows(sim_cfg, LOTS, a=account)) == without_ids(lots)
    assert without_ids(rows(sim_cfg, OPEN, a=account)) == without_ids(still)
    assert rows(sim_cfg, POSITIONS, a=account) == positions


def _url(cfg: Path) -> str:
    import yaml

    return str(yaml.safe_load(cfg.read_text())["database"]["url"])


@pytest.mark.parametrize(("line", "error"), [
    ("WIPRO,,2024-12-03,bonus,1e308,1", "line 2: new_shares 1e+308 is not between 0.001 "
                                        "and 1,000,000"),
    ("X,,2024-12-03,split,1e300,1e-300", "line 2: new_shares 1e+300 is not between 0.001 "
                                         "and 1,000,000"),
    ("X,,2024-12-03,split,1,1e-300", "line 2: for_every 1e-300 is not between 0.001 "
                                     "and 1,000,000"),
    ("X,,2024-12-03,split,100000,1", "line 2: 100000 for 1 is a ratio beyond 10,000 to 1 "
                                     "either way"),
])
def test_absurd_actions_are_refused(database_url: str, tmp_path: Path, line: str,
                                    error: str) -> None:
    from tests.test_console import _config

    cfg = _config(tmp_path, database_url)
    ok(cfg, "import", "tradebook", str(DATA / "tradebook.csv"), "--account", "ZX1234")
    bad = csv_file(tmp_path / "bad.csv", line, header=ACTIONS_HEADER)
    result = cli(cfg, "import", "actions", str(bad), "--account", "ZX1234")
    assert (result.returncode, result.stderr.strip().splitlines()) == (
        2, [f"error: {bad}: {error}"])
    assert rows(cfg, "SELECT COUNT(*) FROM corporate_action_entries") == [(0,)]
    assert rows(cfg, "SELECT kind FROM console_files") == [("tradebook",)]
    assert ok(cfg, "report", "tax", "--fy", "2025-26").returncode == 0


def test_a_failed_rebuild_never_fails_a_run_or_an_import(sim_cfg: Path,
                                                          tmp_path: Path) -> None:
    """A bonus of 1e308 stored before actions were checked: every rebuild of its
    instrument fails. The run still exits 0 with its snapshots stored, one warning line;
    an import stores its file and says the lots were not rebuilt."""
    account = "DM0001"
    first = csv_file(tmp_path / "first.csv",
                     trade("ACME", ACME, "2025-01-06", "buy", 10, 100, 1))
    ok(sim_cfg, "import", "tradebook", str(first), "--account", account)
    engine = db.make_engine(_url(sim_cfg))
    try:
        with engine.begin() as conn:
            file_id = conn.execute(sa.text(
                "INSERT INTO console_files (account, kind, file_name, sha256, imported_at, "
                "rows, new_rows) VALUES (:a, 'actions', 'old.csv', 'x', :t, 1, 1) "
                "RETURNING id"), {"a": account, "t": "2025-01-01 00:00:00"}).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO corporate_action_entries (account, file_id, source_file, "
                "tradingsymbol, isin, ex_date, action, new_shares, for_every) VALUES "
                "(:a, :f, 'old.csv', 'ACME', :i, :d, 'bonus', 1e308, 1)"),
                {"a": account, "f": file_id, "i": ACME, "d": "2025-01-10"})
    finally:
        engine.dispose()
    result = cli(sim_cfg, "run")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warned = [line for line in result.stderr.splitlines() if "FIFO lots not rebuilt" in line]
    assert len(warned) == 1 and "WARNING DM0001: FIFO lots not rebuilt (LotError: ACME " \
        f"({ACME}): a bonus of ratio 1e+308 on 2025-01-10 makes an infinite quantity)" \
        in warned[0], result.stderr
    assert rows(sim_cfg, "SELECT COUNT(*) FROM snapshots WHERE status = 'ok'") == [(3,)]

    second = csv_file(tmp_path / "second.csv",
                      trade("ACME", ACME, "2025-02-06", "sell", 4, 110, 2))
    result = cli(sim_cfg, "import", "tradebook", str(second), "--account", account)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{second}: 1 new, 0 already known"]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "warning: DM0001: file stored; lots not rebuilt (LotError: ACME")
    assert rows(sim_cfg, "SELECT COUNT(*) FROM trades") == [(2,)]
    assert rows(sim_cfg, "SELECT stale FROM lot_instruments WHERE instrument = :i",
                i=ACME) in ([(True,)], [(1,)])

    # Once the bad row is forgotten, the next import rebuilds what was left stale.
    ok(sim_cfg, "import", "forget", "old.csv", "--account", account)
    assert rows(sim_cfg, "SELECT quantity, pnl FROM realised_lots") == [(4.0, 40.0)]


def test_forget_removes_what_a_file_added(cfg: Path, tmp_path: Path) -> None:
    account = "ZX1234"
    ok(cfg, "import", "tradebook", str(DATA / "tradebook.csv"), "--account", account)
    ok(cfg, "import", "actions", str(DATA / "actions.csv"), "--account", account)
    ok(cfg, "import", "ledger", str(DATA / "ledger.csv"), "--account", account)
    with_actions = realised(cfg), still_open(cfg)

    result = ok(cfg, "import", "forget", str(DATA / "actions.csv"), "--account", account)
    assert result.stdout.splitlines() == [
        f"{DATA / 'actions.csv'}: forgot 2 rows that 1 imported file (actions) added",
        "ZX1234: FIFO lots rebuilt: 14 realised (3 unmatched), 1 open"]
    assert rows(cfg, "SELECT COUNT(*) FROM corporate_action_entries") == [(0,)]
    # Imported again: the lots it gave, again.
    ok(cfg, "import", "actions", str(DATA / "actions.csv"), "--account", account)
    assert (realised(cfg), still_open(cfg)) == with_actions

    # By the name it was imported under, when the file is not here.
    result = ok(cfg, "import", "forget", "tradebook.csv", "--account", account)
    assert result.stdout.splitlines() == [
        "tradebook.csv: forgot 19 rows that 1 imported file (tradebook) added",
        "ZX1234: FIFO lots rebuilt: 0 realised (0 unmatched), 0 open"]
    assert rows(cfg, "SELECT COUNT(*) FROM trades") == [(0,)]
    assert rows(cfg, "SELECT COUNT(*) FROM open_lots") == [(0,)]
    assert rows(cfg, "SELECT kind FROM console_files ORDER BY id") == [("ledger",),
                                                                      ("actions",)]
    result = ok(cfg, "import", "forget", "ledger.csv", "--account", account)
    assert result.stdout.splitlines() == [
        "ledger.csv: forgot 8 rows that 1 imported file (ledger) added"]
    assert rows(cfg, "SELECT COUNT(*) FROM ledger_entries") == [(0,)]

    # What was never imported: one line each, exit 2, nothing else touched.
    stranger = csv_file(tmp_path / "stranger.csv", trade("X", "", "2025-01-06", "buy",
                                                         1, 1, 1))
    result = cli(cfg, "import", "forget", "nope.csv", str(stranger), "--account", account)
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [
        "error: nope.csv: not a file here, and no file imported for ZX1234 is named "
        "'nope.csv'",
        f"error: {stranger}: no file with these bytes was imported for ZX1234"])
    assert rows(cfg, "SELECT COUNT(*) FROM corporate_action_entries") == [(2,)]


@pytest.fixture
def cfg(database_url: str, tmp_path: Path) -> Path:
    from tests.test_console import _config

    return _config(tmp_path, database_url)
