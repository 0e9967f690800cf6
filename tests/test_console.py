"""Console imports through the real command (`snapshotter import ...`, `snapshotter report
tax`, `report holdings --xirr`, `run`), on SQLite and PostgreSQL, against the synthetic
exports in tests/data/console/ and lots computed by hand.

The tradebook (account ZX1234), and what FIFO makes of it (with actions.csv: WIPRO 1:1
bonus ex 2024-12-03, NESTLEIND split 10 for 1 ex 2024-01-05):

  INFY   2023-05-10 buy 10 @ 1200 in two fills of one order (6 + 4)
         2024-03-01 buy 10 @ 1500 on BSE (19-digit order id)
         2024-06-20 sell 12 @ 1600: 6 + 4 of 2023-05-10 (long, 407 days), 2 of 03-01
                    (short): a sale across two buy lots, bought on BSE and sold on NSE
         2024-09-10 sell 3 @ 1800: short (after 2024-07-23); 2025-05-05 sell 5 @ 1450: long
  NESTLEIND 2023-11-01 buy 2 @ 24000 -> split -> 20 @ 2400 dated 2023-11-01;
         2025-04-10 sell 5 @ 2500: long, 500
  HINDUNILVR 2025-04-15 sell 3 @ 2400 with no buy and no ISIN: unmatched
  SBIN   2025-06-02 buy 20 @ 800, sell 20 @ 810: an intraday round trip (200);
         2025-06-03 buy 10 @ 790 (stays open); 2025-07-01 sell 5 @ 805 at 09:30 (blank
         ISIN, filled from SBIN's other rows), buy 5 @ 800 at 11:00: intraday (25), the
         older lot stays open
  TCS    2024-08-14 buy 5 @ 3500; 2025-08-14 sell 2 @ 3100: exactly 12 months, short;
         2025-08-18 sell 3 @ 3200: long
  WIPRO  2024-01-10 buy 10 @ 400; bonus 10 @ 0 dated 2024-12-03; 2025-09-01 sell 15 @ 260:
         10 of 2024-01-10 (long, -1400), 5 bonus shares (short, 1300)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from snapshotter.console import lots
from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import engine as db
from snapshotter.store import migrate
from tests.conftest import config_dict, run_cli, write_config
from tests.data.console import make_samples
from tests.test_views import holding, margins, snapshot

DATA = Path(__file__).resolve().parent / "data" / "console"
ACCOUNT = "ZX1234"
OTHER = "YY0002"
INFY, NESTLE, SBIN, TCS, WIPRO = ("INE009A01021", "INE239A01024", "INE062A01020",
                                  "INE467B01029", "INE075A01022")
TRADEBOOK_HEADER = ("symbol,isin,trade_date,exchange,segment,series,trade_type,auction,"
                    "quantity,price,trade_id,order_id,order_execution_time")

# tradingsymbol, isin, buy_date, sell_date, quantity, buy_price, sell_price, pnl,
# holding_days, term, unmatched, buy_trade_id, sell_trade_id
EXPECTED_LOTS = [
    ("INFY", INFY, "2023-05-10", "2024-06-20", 6, 1200, 1600, 2400, 407, "long", False,
     "10000001", "10000005"),
    ("INFY", INFY, "2023-05-10", "2024-06-20", 4, 1200, 1600, 1600, 407, "long", False,
     "10000002", "10000005"),
    ("INFY", INFY, "2024-03-01", "2024-06-20", 2, 1500, 1600, 200, 111, "short", False,
     "557001", "10000005"),
    ("INFY", INFY, "2024-03-01", "2024-09-10", 3, 1500, 1800, 900, 193, "short", False,
     "557001", "10000007"),
    ("NESTLEIND", NESTLE, "2023-11-01", "2025-04-10", 5, 2400, 2500, 500, 526, "long", False,
     "10000003", "10000008"),
    ("HINDUNILVR", None, None, "2025-04-15", 3, None, 2400, None, None, None, True,
     None, "10000009"),
    ("INFY", INFY, "2024-03-01", "2025-05-05", 5, 1500, 1450, -250, 430, "long", False,
     "557001", "10000010"),
    ("SBIN", SBIN, "2025-06-02", "2025-06-02", 20, 800, 810, 200, 0, "intraday", False,
     "10000011", "10000012"),
    ("SBIN", SBIN, "2025-07-01", "2025-07-01", 5, 800, 805, 25, 0, "intraday", False,
     "10000015", "10000014"),
    ("TCS", TCS, "2024-08-14", "2025-08-14", 2, 3500, 3100, -800, 365, "short", False,
     "10000006", "10000016"),
    ("TCS", TCS, "2024-08-14", "2025-08-18", 3, 3500, 3200, -900, 369, "long", False,
     "10000006", "10000017"),
    ("WIPRO", WIPRO, "2024-01-10", "2025-09-01", 10, 400, 260, -1400, 600, "long", False,
     "10000004", "10000018"),
    ("WIPRO", WIPRO, "2024-12-03", "2025-09-01", 5, 0, 260, 1300, 272, "short", False,
     None, "10000018"),
]
# tradingsymbol, isin, buy_date, quantity, buy_price, buy_trade_id
EXPECTED_OPEN = [
    ("NESTLEIND", NESTLE, "2023-11-01", 15, 2400, "10000003"),
    ("SBIN", SBIN, "2025-06-03", 10, 790, "10000013"),
    ("WIPRO", WIPRO, "2024-12-03", 5, 0, None),
]
LOT_COLUMNS = ("tradingsymbol, isin, buy_date, sell_date, quantity, buy_price, sell_price, "
               "pnl, holding_days, term, unmatched, buy_trade_id, sell_trade_id")
TAX_KEYS = ["account", "intraday", "intraday_before_2024_07_23", "intraday_from_2024_07_23",
            "stcg", "stcg_before_2024_07_23", "stcg_from_2024_07_23",
            "ltcg", "ltcg_before_2024_07_23", "ltcg_from_2024_07_23",
            "unmatched", "dividends"]


def _config(path: Path, database_url: str) -> Path:
    return write_config(path / "config.yaml", {
        "database": {"url": database_url},
        "state_dir": str(path / "state"),
        "accounts": [{"user_id": ACCOUNT, "auth": "manual"},
                     {"user_id": OTHER, "auth": "manual"}],
    })


@pytest.fixture
def cfg(database_url: str, tmp_path: Path) -> Path:
    return _config(tmp_path, database_url)


@pytest.fixture
def lite_cfg(tmp_path: Path) -> Path:
    """SQLite only: for what does not depend on the database (bad files)."""
    return _config(tmp_path, f"sqlite:///{tmp_path / 'snapshots.db'}")


def cli(cfg: Path, *args: str) -> Any:
    return run_cli("--config", str(cfg), *args)


def ok(cfg: Path, *args: str) -> str:
    result = cli(cfg, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(result.stdout)


def url_of(cfg: Path) -> str:
    import yaml

    return str(yaml.safe_load(cfg.read_text())["database"]["url"])


def plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def rows(cfg: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = db.make_engine(url_of(cfg))
    try:
        with engine.connect() as conn:
            return [tuple(plain(v) for v in row) for row in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def realised(cfg: Path, account: str = ACCOUNT) -> list[tuple[Any, ...]]:
    found = [(*r[:10], bool(r[10]), *r[11:]) for r in rows(
        cfg, f"SELECT {LOT_COLUMNS} FROM realised_lots WHERE account = :a", a=account)]
    return sorted(found, key=lambda r: (r[3], r[0], r[2] or "", r[11] or ""))


def still_open(cfg: Path, account: str = ACCOUNT) -> list[tuple[Any, ...]]:
    return sorted(rows(cfg, "SELECT tradingsymbol, isin, buy_date, quantity, buy_price, "
                            "buy_trade_id FROM open_lots WHERE account = :a", a=account))


def csv_file(path: Path, *lines: str, header: str = TRADEBOOK_HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def sample_lines(name: str = "tradebook.csv") -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()[1:]


# --- tradebook -> FIFO lots ---------------------------------------------------------------

def test_tradebook_and_actions_give_the_hand_computed_lots(cfg: Path) -> None:
    out = ok(cfg, "import", "tradebook", str(DATA / "tradebook.csv"), "--account", "zx1234")
    assert out.splitlines() == [
        f"{DATA / 'tradebook.csv'}: 19 new, 0 already known",
        # Without the actions: NESTLEIND sells 5 of 2 (3 unmatched), WIPRO 15 of 10 (5).
        "ZX1234: FIFO lots rebuilt: 14 realised (3 unmatched), 1 open"]
    out = ok(cfg, "import", "actions", str(DATA / "actions.csv"), "--account", ACCOUNT)
    assert out.splitlines()[-1] == "ZX1234: FIFO lots rebuilt: 13 realised (1 unmatched), 3 open"
    assert realised(cfg) == EXPECTED_LOTS
    assert still_open(cfg) == EXPECTED_OPEN

    # The trades as Console gave them: IDs as text, the blank ISIN of a symbol filled from
    # its other rows (the symbol without any ISIN keeps none), IST times stored as UTC.
    trades = {r[0]: r[1:] for r in rows(
        cfg, "SELECT trade_id, exchange, order_id, isin, order_execution_time, source_file, "
             "quantity FROM trades WHERE account = :a", a=ACCOUNT)}
    assert len(trades) == 19
    assert trades["557001"][:2] == ("BSE", "1200000000012345678")
    assert trades["10000014"][2] == SBIN and trades["10000009"][2] is None
    executed = trades["10000001"][3]
    executed = datetime.fromisoformat(executed) if isinstance(executed, str) else executed
    assert executed.replace(tzinfo=executed.tzinfo or UTC) == datetime(2023, 5, 10, 4, 31, 12,
                                                                       tzinfo=UTC)
    assert trades["10000001"][4:] == ("tradebook.csv", 6.0)
    files = rows(cfg, "SELECT kind, file_name, sha256, rows, new_rows FROM console_files "
                      "ORDER BY id")
    assert files == [
        ("tradebook", "tradebook.csv",
         hashlib.sha256((DATA / "tradebook.csv").read_bytes()).hexdigest(), 19, 19),
        ("actions", "actions.csv",
         hashlib.sha256((DATA / "actions.csv").read_bytes()).hexdigest(), 2, 2)]


def test_reimport_adds_nothing_twice(cfg: Path, tmp_path: Path) -> None:
    ok(cfg, "import", "tradebook", str(DATA / "tradebook.csv"), "--account", ACCOUNT)
    # The XLSX variant of the same export: Title Case, a preamble, dates as cells.
    out = ok(cfg, "import", "tradebook", str(DATA / "tradebook.xlsx"), "--account", ACCOUNT)
    assert out.splitlines()[0] == f"{DATA / 'tradebook.xlsx'}: 0 new, 19 already known"
    # A later export overlapping the first: 3 of its trades, one new sale of SBIN, and
    # trade 10000018 with another price (the stored one is kept, with a warning).
    later = csv_file(
        tmp_path / "later.csv", *sample_lines()[-4:-1],
        "SBIN,INE062A01020,2025-10-01,NSE,EQ,EQ,sell,false,10.000000,850.000000,10000019,"
        "1300000000000118,2025-10-01T10:00:00",
        "WIPRO,INE075A01022,2025-09-01,NSE,EQ,EQ,sell,false,15.000000,261.000000,10000018,"
        "1300000000000117,2025-09-01T15:00:00")
    result = cli(cfg, "import", "tradebook", str(later), "--account", ACCOUNT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{later}: 1 new, 4 already known"
    assert f"warning: {later}: line 6: trade 10000018 is already stored with other values; " \
           "the stored one is kept" in result.stderr
    [(count, price)] = rows(cfg, "SELECT COUNT(*), MAX(CASE WHEN trade_id = '10000018' "
                                 "THEN price END) FROM trades")
    assert (count, price) == (20, 260.0)
    sbin = [lot for lot in realised(cfg) if lot[0] == "SBIN"]
    assert sbin[-1] == ("SBIN", SBIN, "2025-06-03", "2025-10-01", 10, 790, 850, 600, 120,
                        "short", False, "10000013", "10000019")
    assert rows(cfg, "SELECT kind, rows, new_rows FROM console_files ORDER BY id") == [
        ("tradebook", 19, 19), ("tradebook", 19, 0), ("tradebook", 5, 1)]


def test_a_bad_line_stores_nothing_of_its_file(cfg: Path, tmp_path: Path) -> None:
    lines = sample_lines()
    lines[5] = lines[5].replace(",12.000000,", ",twelve,")  # file line 7
    bad = csv_file(tmp_path / "bad.csv", *lines)
    result = cli(cfg, "import", "tradebook", str(bad), str(DATA / "tradebook-fo.csv"),
                 "--account", ACCOUNT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {bad}: line 7: quantity 'twelve' is not a number"
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == f"{DATA / 'tradebook-fo.csv'}: 2 new, 0 already known"
    assert rows(cfg, "SELECT COUNT(*) FROM trades WHERE segment = 'EQ'") == [(0,)]
    assert rows(cfg, "SELECT file_name FROM console_files") == [("tradebook-fo.csv",)]


@pytest.mark.parametrize(("line", "change", "error"), [
    (3, (",buy,", ",hold,"), "line 3: trade_type 'hold' is not one of buy, sell"),
    (4, (",2023-11-01,", ",2023-13-01,"),
     "line 4: trade_date '2023-13-01' is not a date (YYYY-MM-DD)"),
    (5, (",10000004,", ",,"), "line 5: trade_id is blank"),
    (6, (",10.000000,", ",-10,"), "line 6: quantity -10 is not more than 0"),
    (8, (",EQ,EQ,", ",EQ,EQ,extra,"), "line 8: 14 fields where the header has 13"),
    (9, ("T10:30:00", "T25:30:00"),
     "line 9: order_execution_time '2024-09-10T25:30:00' is not a date and time "
     "(YYYY-MM-DDTHH:MM:SS)"),
])
def test_bad_tradebook_lines(lite_cfg: Path, tmp_path: Path, line: int,
                             change: tuple[str, str], error: str) -> None:
    lines = sample_lines()
    assert change[0] in lines[line - 2]
    lines[line - 2] = lines[line - 2].replace(*change, 1)
    bad = csv_file(tmp_path / "bad.csv", *lines)
    result = cli(lite_cfg, "import", "tradebook", str(bad), "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, f"error: {bad}: {error}")
    assert rows(lite_cfg, "SELECT COUNT(*) FROM trades") == [(0,)]


def test_execution_times_with_and_without_offsets_in_one_file(lite_cfg: Path,
                                                              tmp_path: Path) -> None:
    """Rows that give an offset (different ones) beside rows that give none (India's
    time) are each read as they say, not refused whole."""
    lines = sample_lines()[:3]
    lines[1] = lines[1].replace("T10:01:12", "T04:31:12Z")
    lines[2] = lines[2].replace("T11:20:00", "T11:20:00+05:30")
    mixed = csv_file(tmp_path / "mixed.csv", *lines)
    ok(lite_cfg, "import", "tradebook", str(mixed), "--account", ACCOUNT)
    times = [datetime.fromisoformat(str(t)).replace(tzinfo=UTC) for (t,) in rows(
        lite_cfg, "SELECT order_execution_time FROM trades ORDER BY trade_id")]
    assert times == [datetime(2023, 5, 10, 4, 31, 12, tzinfo=UTC)] * 2 + [
        datetime(2023, 11, 1, 5, 50, tzinfo=UTC)]


def test_a_workbook_whose_sheet_is_cut_short(lite_cfg: Path, tmp_path: Path) -> None:
    """A sheet whose XML breaks off (a download cut short) is one line naming the file;
    the files after it are still imported."""
    import zipfile

    cut = tmp_path / "cut.xlsx"
    with zipfile.ZipFile(DATA / "tradebook.xlsx") as book, zipfile.ZipFile(cut, "w") as out:
        for member in book.infolist():
            data = book.read(member.filename)
            if member.filename.startswith("xl/worksheets/"):
                data = data[:len(data) // 2]
            out.writestr(member, data)
    result = cli(lite_cfg, "import", "tradebook", str(cut), str(DATA / "tradebook-fo.csv"),
                 "--account", ACCOUNT)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        2, f"error: {cut}: not a readable XLSX workbook (ParseError)")
    assert rows(lite_cfg, "SELECT file_name FROM console_files") == [("tradebook-fo.csv",)]


def test_files_that_are_not_what_they_claim(lite_cfg: Path, tmp_path: Path) -> None:
    import openpyxl

    ledger_as_trades = cli(lite_cfg, "import", "tradebook", str(DATA / "ledger.csv"),
                           "--account", ACCOUNT)
    assert ledger_as_trades.returncode == 2
    assert ledger_as_trades.stderr.strip().endswith(
        f"{DATA / 'ledger.csv'}: not a Console tradebook: no header row with the columns "
        "symbol, isin, trade_date, exchange, segment, series, trade_type, auction, quantity, "
        "price, trade_id, order_id, order_execution_time")
    # The XLSX's preamble names its client: another account's file is refused.
    other = cli(lite_cfg, "import", "tradebook", str(DATA / "tradebook.xlsx"),
                "--account", OTHER)
    assert (other.returncode, other.stderr.strip().splitlines()[-1]) == (
        2, f"error: {DATA / 'tradebook.xlsx'}: the file is for client ZX1234, not YY0002")
    # A bad cell of a spreadsheet is named by its row.
    book = openpyxl.load_workbook(DATA / "tradebook.xlsx")
    book.active.cell(row=17, column=11, value="abc")  # Price of the second trade
    book.save(tmp_path / "bad.xlsx")
    cell = cli(lite_cfg, "import", "tradebook", str(tmp_path / "bad.xlsx"), "--account", ACCOUNT)
    assert (cell.returncode, cell.stderr.strip().splitlines()[-1]) == (
        2, f"error: {tmp_path / 'bad.xlsx'}: row 17: price 'abc' is not a number")
    missing = cli(lite_cfg, "import", "ledger", str(tmp_path / "nope.csv"), "--account", ACCOUNT)
    assert missing.returncode == 2
    assert f"error: {tmp_path / 'nope.csv'}: cannot read: No such file or directory" \
        in missing.stderr
    assert rows(lite_cfg, "SELECT COUNT(*) FROM console_files") == [(0,)]
    # nothing imported, nothing rebuilt (and not said to be)
    gone = cli(lite_cfg, "import", "tradebook", str(tmp_path / "nope.csv"), "--account", ACCOUNT)
    assert gone.returncode == 2 and "FIFO lots rebuilt" not in gone.stdout + gone.stderr


def test_unknown_account_is_a_config_error(lite_cfg: Path) -> None:
    result = cli(lite_cfg, "import", "tradebook", str(DATA / "tradebook.csv"),
                 "--account", "NOPE99")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {lite_cfg}: no account 'NOPE99' in "
                                            "accounts (")


def test_fo_trades_are_stored_but_make_no_lots(lite_cfg: Path) -> None:
    out = ok(lite_cfg, "import", "tradebook", str(DATA / "tradebook-fo.csv"),
             "--account", ACCOUNT)
    assert out.splitlines()[-1] == "ZX1234: FIFO lots rebuilt: 0 realised (0 unmatched), 0 open"
    assert rows(lite_cfg, "SELECT tradingsymbol, segment, expiry_date, isin FROM trades") == [
        ("NIFTY25JUL24500CE", "FO", "2025-07-31", None)] * 2


# --- ledger and dividends -----------------------------------------------------------------

def test_ledger_kinds_balance_and_reimport(cfg: Path, tmp_path: Path) -> None:
    path = DATA / "ledger.csv"
    out = ok(cfg, "import", "ledger", str(path), "--account", ACCOUNT)
    assert out.splitlines() == [f"{path}: 8 new, 0 already known (deposit 3, withdrawal "
                                "1, settlement 1, charge 2, other 1)"]  # no lots to rebuild
    assert rows(cfg, "SELECT posting_date, voucher_type, kind, amount, debit, credit, "
                     "net_balance, occurrence FROM ledger_entries ORDER BY id") == [
        ("2025-04-02", "Bank Receipts", "deposit", 50000.0, 0.0, 50000.0, 51000.0, 1),
        ("2025-04-11", "Book Voucher", "settlement", 12500.0, 0.0, 12500.0, 63500.0, 1),
        ("2025-04-11", "Journal Entry", "charge", -15.93, 15.93, 0.0, 63484.07, 1),
        ("2025-05-02", "Bank Payments", "withdrawal", -20000.0, 20000.0, 0.0, 43484.07, 1),
        ("2025-06-30", "Journal Entry", "charge", -88.5, 88.5, 0.0, 43395.57, 1),
        ("2025-06-30", "Journal Entry", "other", -1.0, 1.0, 0.0, 43394.57, 1),
        # Two identical deposits of one day: both kept, numbered.
        ("2025-06-30", "Bank Receipts", "deposit", 5000.0, 0.0, 5000.0, 48394.57, 1),
        ("2025-06-30", "Bank Receipts", "deposit", 5000.0, 0.0, 5000.0, 53394.57, 2),
    ]
    again = ok(cfg, "import", "ledger", str(path), "--account", ACCOUNT)
    assert again.splitlines()[0].startswith(f"{path}: 0 new, 8 already known")

    # A running balance that does not add up: the line is named, nothing stored.
    text = path.read_text().replace(",20000.00,0.00,43484.07", ",20000.00,0.00,43448.07", 1)
    bad = tmp_path / "ledger-bad.csv"
    bad.write_text(text)
    result = cli(cfg, "import", "ledger", str(bad), "--account", OTHER)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, (
        f"error: {bad}: line 6: net_balance 43448.07 does not follow from the balance above "
        "(63484.07 + credit - debit = 43484.07)"))
    # So does a closing balance that is not the last running balance.
    text = path.read_text().replace("Closing Balance,,,,,,53394.57", "Closing Balance,,,,,,5339.57")
    bad.write_text(text)
    result = cli(cfg, "import", "ledger", str(bad), "--account", OTHER)
    assert result.returncode == 2 and f"{bad}: line 11: net_balance 5339.57" in result.stderr
    assert rows(cfg, "SELECT COUNT(*) FROM ledger_entries WHERE account = :a", a=OTHER) == [(0,)]


def test_ledger_with_the_other_sign_convention(lite_cfg: Path, tmp_path: Path) -> None:
    """A ledger whose balance counts what the client owes (debits raise it) adds up too."""
    other = csv_file(
        tmp_path / "ledger.csv",
        "Opening Balance,,,,,,-100.00",
        "Funds added,2025-04-02,NSE-EQ - Z,Bank Receipts,0.00,500.00,-600.00",
        "DP Charges for Sale of X,2025-04-03,NSE-EQ - Z,Journal Entry,13.50,0.00,-586.50",
        "Closing Balance,,,,,,-586.50",
        header="particulars,posting_date,cost_center,voucher_type,debit,credit,net_balance")
    out = ok(lite_cfg, "import", "ledger", str(other), "--account", ACCOUNT)
    assert out.splitlines()[0] == f"{other}: 2 new, 0 already known (deposit 1, charge 1)"


def test_dividends(cfg: Path) -> None:
    path = DATA / "dividends.xlsx"
    out = ok(cfg, "import", "dividends", str(path), "--account", ACCOUNT)
    assert out.splitlines()[0] == f"{path}: 3 new, 0 already known"
    assert rows(cfg, "SELECT tradingsymbol, isin, ex_date, quantity, dividend_per_share, "
                     "net_dividend_amount, source_file FROM dividends ORDER BY ex_date") == [
        ("INFY", INFY, "2024-05-31", 20.0, 20.0, 400.0, "dividends.xlsx"),
        ("TCS", TCS, "2025-06-15", 5.0, 30.0, 150.0, "dividends.xlsx"),
        ("SBIN", SBIN, "2025-06-16", 10.0, 15.9, 159.0, "dividends.xlsx")]
    again = ok(cfg, "import", "dividends", str(path), "--account", ACCOUNT)
    assert again.splitlines()[0] == f"{path}: 0 new, 3 already known"


# --- report tax ---------------------------------------------------------------------------

def test_report_tax(cfg: Path) -> None:
    for kind, name in (("tradebook", "tradebook.csv"), ("actions", "actions.csv"),
                       ("dividends", "dividends.xlsx")):
        ok(cfg, "import", kind, str(DATA / name), "--account", ACCOUNT)
    result = cli(cfg, "report", "tax", "--fy", "2025-26", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [list(r) for r in report] == [TAX_KEYS]
    # intraday: SBIN 200 + 25; stcg: TCS -800, WIPRO's bonus shares 1300; ltcg: NESTLEIND
    # 500, INFY -250, TCS -900, WIPRO -1400; HINDUNILVR unmatched; dividends TCS + SBIN.
    assert report == [{
        "account": ACCOUNT, "intraday": 225.0, "intraday_before_2024_07_23": 0.0,
        "intraday_from_2024_07_23": 225.0, "stcg": 500.0, "stcg_before_2024_07_23": 0.0,
        "stcg_from_2024_07_23": 500.0, "ltcg": -2050.0, "ltcg_before_2024_07_23": 0.0,
        "ltcg_from_2024_07_23": -2050.0, "unmatched": 1, "dividends": 309.0}]
    assert "ESTIMATE" in result.stderr and "not a tax computation" in result.stderr
    # FY 2024-25 straddles the rate change: INFY's sale of 2024-06-20 before it
    # (long 2400 + 1600, short 200), its sale of 2024-09-10 after it (short 900).
    earlier = json.loads(ok(cfg, "report", "tax", "--fy", "2024-25", "--account", "zx1234",
                            "--format", "json"))
    assert earlier == [{
        "account": ACCOUNT, "intraday": 0.0, "intraday_before_2024_07_23": 0.0,
        "intraday_from_2024_07_23": 0.0, "stcg": 1100.0, "stcg_before_2024_07_23": 200.0,
        "stcg_from_2024_07_23": 900.0, "ltcg": 4000.0, "ltcg_before_2024_07_23": 4000.0,
        "ltcg_from_2024_07_23": 0.0, "unmatched": 0, "dividends": 400.0}]
    table = ok(cfg, "report", "tax", "--fy", "2025-26", "--account", OTHER)
    assert table.startswith("FY 2025-26 (2025-04-01 to 2026-03-31): an ESTIMATE")
    assert "not a tax computation: no grandfathering" in table and "no charges" in table
    assert " YY0002 " in table and "-2,050.00" not in table
    missing = cli(cfg, "report", "tax")
    assert missing.returncode == 2 and "report tax needs --fy" in missing.stderr
    wrong = cli(cfg, "report", "tax", "--fy", "2025-2026")
    assert wrong.returncode == 2 and "is not a financial year like 2025-26" in wrong.stderr


# --- snapshots: corporate_actions, trade_reconciliation, XIRR -------------------------------

def test_snapshots_split_reconciliation_and_xirr(cfg: Path, tmp_path: Path) -> None:
    """ACME splits 2:1 on 2026-01-07: no actions file, the corporate_actions view has it.
    BETA is held but never traded; DELTA is bought but never shows in the holdings;
    GAMMA is bought on 01-07 and shows as T+1 that evening."""
    url = url_of(cfg)
    engine = db.make_engine(url)
    try:
        migrate.upgrade(url, engine)
        days = [date(2026, 1, d) for d in (5, 6, 7, 8)]
        beta = holding("BETA", 7, 50, 52, 51)
        snapshot(engine, ACCOUNT, days[0], holdings=[holding("ACME", 10, 100, 110, 108), beta],
                 funds=margins(0))
        snapshot(engine, ACCOUNT, days[1], holdings=[holding("ACME", 10, 100, 112, 110), beta],
                 funds=margins(0))
        snapshot(engine, ACCOUNT, days[2], holdings=[
            holding("ACME", 20, 50, 56, 55), beta, holding("GAMMA", 0, 10, 10, 10, t1=4)],
            funds=margins(0))
        snapshot(engine, ACCOUNT, days[3], holdings=[
            holding("ACME", 15, 50, 62, 56), beta, holding("GAMMA", 4, 10, 10, 10)],
            funds=margins(0))
    finally:
        engine.dispose()
    trades = csv_file(
        tmp_path / "trades.csv",
        "ACME,INE00000ACME,2025-01-06,NSE,EQ,EQ,buy,false,10,100,20000001,1,2025-01-06T10:00:00",
        "DELTA,INE0000DELTA,2026-01-06,NSE,EQ,EQ,buy,false,3,20,20000002,2,2026-01-06T10:00:00",
        "GAMMA,INE0000GAMMA,2026-01-07,NSE,EQ,EQ,buy,false,4,10,20000003,3,2026-01-07T10:00:00",
        "ACME,INE00000ACME,2026-01-08,BSE,EQ,A,sell,false,5,60,20000004,4,2026-01-08T10:00:00")
    ok(cfg, "import", "tradebook", str(trades), "--account", ACCOUNT)
    # The split applies from the day after the last snapshot before it: 10 @ 100 became
    # 20 @ 50 dated 2025-01-06, of which the sale took 5 (held 367 days: long).
    assert realised(cfg) == [("ACME", "INE00000ACME", "2025-01-06", "2026-01-08", 5, 50, 60,
                              50, 367, "long", False, "20000001", "20000004")]
    assert still_open(cfg) == [
        ("ACME", "INE00000ACME", "2025-01-06", 15, 50, "20000001"),
        ("DELTA", "INE0000DELTA", "2026-01-06", 3, 20, "20000002"),
        ("GAMMA", "INE0000GAMMA", "2026-01-07", 4, 10, "20000003")]
    assert rows(cfg, """
        SELECT snapshot_date, tradingsymbol, instrument, trades_quantity, holdings_quantity,
               difference FROM trade_reconciliation ORDER BY snapshot_date, tradingsymbol""") == [
        ("2026-01-05", "BETA", "INE00000BETA", 0.0, 7.0, 7.0),
        ("2026-01-06", "BETA", "INE00000BETA", 0.0, 7.0, 7.0),
        ("2026-01-06", "DELTA", "INE0000DELTA", 3.0, 0.0, -3.0),
        ("2026-01-07", "BETA", "INE00000BETA", 0.0, 7.0, 7.0),
        ("2026-01-07", "DELTA", "INE0000DELTA", 3.0, 0.0, -3.0),
        ("2026-01-08", "BETA", "INE00000BETA", 0.0, 7.0, 7.0),
        ("2026-01-08", "DELTA", "INE0000DELTA", 3.0, 0.0, -3.0)]

    report = json.loads(ok(cfg, "report", "holdings", "--xirr", "--account", ACCOUNT,
                           "--format", "json"))
    xirr = {r["tradingsymbol"]: r["xirr"] for r in report}
    # ACME: 750 paid on 2025-01-06 (15 @ 50) is 15 x 62 = 930 on 2026-01-08.
    assert xirr["ACME"] == pytest.approx((930 / 750) ** (365 / 367) - 1, abs=1e-6)
    assert xirr["GAMMA"] == pytest.approx(0.0, abs=1e-6)  # 40 paid, 40 worth
    assert xirr["BETA"] is None  # no lots
    assert "xirr" in ok(cfg, "report", "holdings", "--xirr")
    assert "xirr" not in ok(cfg, "report", "holdings")


def test_a_listed_action_replaces_the_snapshots_one() -> None:
    """The same split, seen by the snapshots and listed by the user: applied once, as
    listed; a listed bonus floors fractions; an observed action of another instrument or
    further away stays."""
    trades = pd.DataFrame({
        "tradingsymbol": ["ACME", "BETA"], "isin": ["INE00000ACME", None],
        "trade_date": [date(2025, 1, 6)] * 2, "segment": ["EQ", "EQ"],
        "trade_type": ["buy", "buy"], "quantity": [15.0, 10.0], "price": [100.0, 30.0],
        "trade_id": ["1", "2"], "order_execution_time": [None, None]})
    observed = pd.DataFrame({
        "tradingsymbol": ["ACME", "ACME", "BETA"], "isin": ["INE00000ACME"] * 2 + [None],
        "previous_snapshot_date": [date(2025, 3, 3), date(2025, 9, 1), date(2025, 3, 3)],
        "snapshot_date": [date(2025, 3, 5), date(2025, 9, 2), date(2025, 3, 4)],
        "ratio": [1.5, 2.0, 2.0]})
    listed = pd.DataFrame({
        "tradingsymbol": ["ACME"], "isin": [None], "ex_date": [date(2025, 3, 3)],
        "action": ["bonus"], "new_shares": [1.0], "for_every": [2.0]})
    found = lots.actions(trades, observed, listed)
    assert sorted(map(tuple, found.astype(str).to_numpy())) == [
        ("BETA", "2025-03-04", "split", "2.0"),
        ("INE00000ACME", "2025-03-03", "bonus", "0.5"),
        ("INE00000ACME", "2025-09-02", "split", "2.0")]
    book = lots.build(trades, found)
    assert sorted(map(tuple, book.open[["tradingsymbol", "buy_date", "quantity",
                                        "buy_price"]].astype(str).to_numpy())) == [
        ("ACME", "2025-01-06", "30.0", "50.0"),  # 15 @ 100, split 2:1
        ("ACME", "2025-03-03", "14.0", "0.0"),  # floor(15 x 1/2) = 7 bonus, split 2:1
        ("BETA", "2025-01-06", "20.0", "15.0")]


def test_twelve_months_across_a_leap_day() -> None:
    """Long means sold more than 12 months after the purchase: 2024-02-29 + 12 months is
    2025-02-28 (short), the day after is long."""
    trades = pd.DataFrame({
        "tradingsymbol": ["X"] * 3, "isin": ["INE00000000X"] * 3,
        "trade_date": [date(2024, 2, 29), date(2025, 2, 28), date(2025, 3, 1)],
        "segment": ["EQ"] * 3, "trade_type": ["buy", "sell", "sell"],
        "quantity": [2.0, 1.0, 1.0], "price": [10.0, 11.0, 12.0], "trade_id": ["1", "2", "3"],
        "order_execution_time": [None] * 3})
    book = lots.build(trades, pd.DataFrame(columns=lots.ACTION_COLUMNS))
    assert book.realised[["holding_days", "term"]].values.tolist() == [[365, "short"],
                                                                         [366, "long"]]


# --- run rebuilds the lots ------------------------------------------------------------------

def test_run_rebuilds_the_lots_of_accounts_with_trades(sim: KiteSimulator,
                                                        sim_accounts: list[SimAccount],
                                                        database_url: str,
                                                        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))
    trades = csv_file(
        tmp_path / "trades.csv",
        "ACME,INE00000ACME,2025-01-06,NSE,EQ,EQ,buy,false,10,100,1,1,2025-01-06T10:00:00",
        "ACME,INE00000ACME,2025-02-06,NSE,EQ,EQ,sell,false,4,110,2,2,2025-02-06T10:00:00")
    ok(cfg, "import", "tradebook", str(trades), "--account", "DM0001")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:  # as if the lots were stale
            conn.execute(sa.text("DELETE FROM realised_lots"))
            conn.execute(sa.text("DELETE FROM open_lots"))
    finally:
        engine.dispose()
    result = cli(cfg, "run", "--force")
    assert result.returncode == 0, result.stderr
    assert rows(cfg, "SELECT account, quantity, pnl FROM realised_lots") == [
        ("DM0001", 4.0, 40.0)]
    assert rows(cfg, "SELECT account, quantity FROM open_lots") == [("DM0001", 6.0)]


def test_accounts_with_trades_are_those_with_a_stored_trade(cfg: Path, tmp_path: Path,
                                                            database_url: str) -> None:
    """After a run, only accounts with a trade get their lots rebuilt: a ledger-only
    account does not, nor does one whose tradebook file stored no trade any more."""
    from snapshotter.store import lots_due

    trades = csv_file(
        tmp_path / "trades.csv",
        "ACME,INE00000ACME,2025-01-06,NSE,EQ,EQ,buy,false,10,100,1,1,2025-01-06T10:00:00")
    ok(cfg, "import", "tradebook", str(trades), "--account", ACCOUNT)
    ok(cfg, "import", "ledger", str(DATA / "ledger.csv"), "--account", OTHER)
    engine = db.make_engine(database_url)
    try:
        assert lots_due.accounts_with_trades(engine, [ACCOUNT, OTHER, "NOFILES"]) == [ACCOUNT]
        assert lots_due.after_run(engine, [OTHER, "NOFILES"]) == []
        with engine.begin() as conn:  # the tradebook file stays, its trade is gone
            conn.execute(sa.text("DELETE FROM trades"))
        assert lots_due.accounts_with_trades(engine, [ACCOUNT, OTHER]) == []
    finally:
        engine.dispose()


# --- the samples ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tradebook.xlsx", "dividends.xlsx"])
def test_the_xlsx_samples_are_what_the_script_writes(tmp_path: Path, name: str) -> None:
    import openpyxl

    write = {"tradebook.xlsx": make_samples.write_tradebook,
             "dividends.xlsx": make_samples.write_dividends}[name]
    fresh = write(tmp_path / name)

    def cells(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            return {s: list(book[s].iter_rows(values_only=True)) for s in book.sheetnames}
        finally:
            book.close()

    assert cells(DATA / name) == cells(fresh)
    shutil.copy(DATA / name, tmp_path / "copy.xlsx")  # the committed file still opens
