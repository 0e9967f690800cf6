"""`snapshotter benchmark import|fetch`: index closes into benchmark_daily, through the real
command, on SQLite and PostgreSQL; the simulator's historical route and index series."""

from __future__ import annotations

import itertools
import shutil
import statistics
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests

from snapshotter.kite.client import date_chunks
from snapshotter.kite.token_cache import TokenCache
from snapshotter.normalize.benchmark import BenchmarkFileError, parse_index_csv
from snapshotter.sessions import IST
from snapshotter.simulator import KiteSimulator, SimAccount, SimApp, make_portfolio
from snapshotter.simulator.market import NIFTY50, DemoMarket
from tests.conftest import config_dict, run_cli, write_config
from tests.conftest import query_rows as _rows

DATA = Path(__file__).resolve().parent / "data"
NSE_EXPORT = DATA / "nifty50_nse_export.csv"  # nseindia.com's layout: BOM, CRLF, "Date "
API_KEY, API_SECRET = "benchapp4x9", "bench-app-secret-5e6f7a8b9c"


def _closes(url: str, name: str = "NIFTY50") -> dict[date, float]:
    rows = _rows(url, "SELECT date, close FROM benchmark_daily WHERE name = :n", n=name)
    return {date.fromisoformat(str(r["date"])): r["close"] for r in rows}


def _benchmark_rows(url: str) -> int:
    return int(_rows(url, "SELECT COUNT(*) AS n FROM benchmark_daily")[0]["n"])


def _config(sim: KiteSimulator, accounts: list[SimAccount], url: str, tmp_path: Path,
            entries: list[dict[str, Any]] | None = None) -> str:
    data = config_dict(sim, accounts, url, tmp_path / "state")
    if entries is not None:
        data["accounts"] = entries
    return str(write_config(tmp_path / "config.yaml", data))


def _one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def _weekdays(start: date, end: date) -> list[date]:
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [d for d in days if d.weekday() < 5]


# -- benchmark import ----------------------------------------------------------------------


def test_import_an_nse_export_then_again_then_a_correction(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    first = run_cli("--config", cfg, "benchmark", "import", " nifty50 ", str(NSE_EXPORT))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == \
        "NIFTY50: 5 closes imported (2025-12-01 .. 2025-12-05), 5 new"
    expected = {date(2025, 12, 1): 26175.75, date(2025, 12, 2): 26032.20,
                date(2025, 12, 3): 25986.00, date(2025, 12, 4): 26033.75,
                date(2025, 12, 5): 26186.45}
    assert _closes(database_url) == expected

    again = run_cli("--config", cfg, "benchmark", "import", "NIFTY50", str(NSE_EXPORT))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == \
        "NIFTY50: 5 closes imported (2025-12-01 .. 2025-12-05), 0 new"
    assert _closes(database_url) == expected and _benchmark_rows(database_url) == 5

    # niftyindices.com's layout: "Index Name" first, dates "05 Dec 2025", plain numbers;
    # overlapping the first file, one close revised, two new dates, an ISO date.
    revised = tmp_path / "NIFTY 50_Historical_PR.csv"
    revised.write_text('"Index Name","Date","Open","High","Low","Close"\n'
                       '"NIFTY 50","04 Dec 2025","25981.40","26098.25","25891.05","26033.75"\n'
                       '"NIFTY 50","05 Dec 2025","26033.75","26202.60","25985.20","26190.10"\n'
                       '"NIFTY 50","08 dec 2025","26190.10","26250.00","26101.35","26201.30"\n'
                       '"NIFTY 50","2025-12-09","26201.30","26240.70","26000.05","26044.00"\n',
                       encoding="utf-8")
    third = run_cli("--config", cfg, "benchmark", "import", "Nifty50", str(revised))
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == \
        "NIFTY50: 4 closes imported (2025-12-04 .. 2025-12-09), 2 new, 1 changed"
    assert _closes(database_url) == {**expected, date(2025, 12, 5): 26190.10,
                                     date(2025, 12, 8): 26201.30, date(2025, 12, 9): 26044.00}

    other = run_cli("--config", cfg, "benchmark", "import", "NIFTYBANK", str(revised))
    assert other.returncode == 0, other.stderr
    assert len(_closes(database_url, "NIFTYBANK")) == 4 and len(_closes(database_url)) == 7


HEADER = '"Date ","Open ","High ","Low ","Close ","Shares Traded ","Turnover (₹ Cr)"\n'
GOOD = '"01-DEC-2025","26,325.80","26,325.80","26,048.25","26,175.75","27,48,49,396","2"\n'


BAD_FILES = [
    ("missing.csv", None, "missing.csv: no such file"),
    ("empty.csv", "", "empty.csv: empty file"),
    ("blank.csv", "\ufeff\n \n", "blank.csv: empty file"),
    ("header_only.csv", HEADER, "header_only.csv: no rows after the header (line 1)"),
    ("no_close.csv", '"Date","Open"\n"01 Dec 2025","1"\n',
     "no_close.csv: line 1: no Close column (columns: 'Date', 'Open')"),
    ("no_date.csv", '"Day","Close"\n"01 Dec 2025","1"\n', "no_date.csv: line 1: no Date column"),
    ("bad_date.csv", HEADER + GOOD + GOOD.replace("01-DEC", "31-FEB"),
     "bad_date.csv: line 3, column 'Date': '31-FEB-2025' is not a date"),
    ("us_date.csv", HEADER + GOOD.replace("01-DEC-2025", "12/01/2025"),
     "us_date.csv: line 2, column 'Date': '12/01/2025' is not a date"),
    ("text_close.csv", HEADER + GOOD + GOOD.replace("01-DEC", "02-DEC")
     .replace('"26,175.75"', '"26,1x5.75"'),
     "text_close.csv: line 3, column 'Close': '26,1x5.75' is not a number"),
    ("no_close_value.csv", HEADER + GOOD.replace('"26,175.75"', '" "'),
     "no_close_value.csv: line 2, column 'Close': empty (no close)"),
    ("zero_close.csv", HEADER + GOOD + GOOD.replace("01-DEC", "02-DEC")
     .replace('"26,175.75"', '"0.00"'),
     "zero_close.csv: line 3, column 'Close': '0.00' is not a positive close"),
    # Issue 16: both were stored, and `report performance` wrote "benchmark_return":
    # Infinity.
    ("tiny_close.csv", HEADER + GOOD + GOOD.replace("01-DEC", "02-DEC")
     .replace('"26,175.75"', '"1e-300"'),
     "tiny_close.csv: line 3, column 'Close': '1e-300' is not a plausible close (expected "
     "0.01 to 1,000,000,000)"),
    ("huge_close.csv", HEADER + GOOD.replace('"26,175.75"', '"1e300"'),
     "huge_close.csv: line 2, column 'Close': '1e300' is not a plausible close"),
    ("inf_close.csv", HEADER + GOOD.replace('"26,175.75"', '"inf"'),
     "inf_close.csv: line 2, column 'Close': 'inf' is not a number"),
    ("clash.csv", HEADER + GOOD + GOOD.replace("01-DEC", "02-DEC")
     + GOOD.replace('"26,175.75"', '"26,200.00"'),
     "clash.csv: lines 2 and 4: two different closes for 2025-12-01 (26,175.75 and "
     "26,200.00)"),
]


def test_a_bad_file_is_one_line_exit_2_and_stores_nothing(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    assert run_cli("--config", cfg, "benchmark", "import", "NIFTY50",
                   str(NSE_EXPORT)).returncode == 0
    before = _closes(database_url)
    for name, content, message in BAD_FILES:
        path = tmp_path / name
        if content is not None:
            path.write_text(content, encoding="utf-8")
        result = run_cli("--config", cfg, "benchmark", "import", "NIFTY50", str(path))
        assert result.returncode == 2, (name, result.stderr)
        assert _one_error_line(result).startswith(f"error: {tmp_path / message}"), name
        assert result.stdout == "", name
        assert _closes(database_url) == before, name


def test_repeated_dates_with_the_same_close_are_one_row(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    path = tmp_path / "twice.csv"
    path.write_text(HEADER + GOOD + GOOD + "\n", encoding="utf-8")
    result = run_cli("--config", cfg, "benchmark", "import", "NIFTY50", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "NIFTY50: 1 close imported (2025-12-01 .. 2025-12-01), 1 new"
    assert _closes(database_url) == {date(2025, 12, 1): 26175.75}


# -- benchmark fetch -----------------------------------------------------------------------


def test_fetch_reads_the_simulated_nifty50_and_reuses_the_session(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    first = run_cli("--config", cfg, "benchmark", "fetch", "nifty50",
                    "--from", "2025-11-03", "--to", "2025-11-28")
    assert first.returncode == 0, first.stderr
    days = _weekdays(date(2025, 11, 3), date(2025, 11, 28))
    assert first.stdout.strip() == (
        f"NIFTY50: {len(days)} closes fetched from Kite with account DM0001 "
        f"(2025-11-03 .. 2025-11-28), {len(days)} new")
    # The market's own series, not what normalize made of the candles.
    assert _closes(database_url) == {d: NIFTY50.close(d) for d in days}
    assert dict(sim.login_count) == {"DM0001": 1}
    fetched = [(m, p, u) for m, p, u in sim.requests_log if "historical" in p]
    assert fetched == [("GET", "/oms/instruments/historical/256265/day", "DM0001")]

    # Without --from: again from the latest close stored; the cached session serves.
    again = run_cli("--config", cfg, "benchmark", "fetch", "NIFTY50", "--to", "2025-12-05")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ("NIFTY50: 6 closes fetched from Kite with account "
                                    "DM0001 (2025-11-28 .. 2025-12-05), 5 new")
    assert dict(sim.login_count) == {"DM0001": 1}
    assert len(_closes(database_url)) == len(days) + 5


def test_fetch_logs_in_again_once_when_the_cached_session_is_dead(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    TokenCache(tmp_path / "state").update("DM0002", mode="web", token="Zq8" * 11,
                                          created_at=datetime.now(UTC).isoformat())
    result = run_cli("--config", cfg, "benchmark", "fetch", "NIFTYBANK", "--account", "dm0002",
                     "--from", "2025-12-01", "--to", "2025-12-05")
    assert result.returncode == 0, result.stderr
    assert "5 closes fetched from Kite with account DM0002" in result.stdout
    assert dict(sim.login_count) == {"DM0002": 1}
    assert len(_closes(database_url, "NIFTYBANK")) == 5


def test_fetch_over_more_than_2000_days_goes_in_chunks(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    start, end = date(2014, 1, 1), date(2025, 11, 28)  # 4,350 days: 3 requests
    result = run_cli("--config", cfg, "benchmark", "fetch", "NIFTY50",
                     "--from", start.isoformat(), "--to", end.isoformat())
    assert result.returncode == 0, result.stderr
    days = _weekdays(start, end)
    assert f"NIFTY50: {len(days)} closes fetched" in result.stdout
    assert len([p for _m, p, _u in sim.requests_log if "historical" in p]) == 3
    stored = _closes(database_url)
    assert sorted(stored) == days
    assert all(stored[d] == NIFTY50.close(d) for d in days[::97] + days[-3:])


def test_one_request_is_never_longer_than_2000_days() -> None:
    assert date_chunks(date(2020, 1, 1), date(2020, 1, 1), 2000) == \
        [(date(2020, 1, 1), date(2020, 1, 1))]
    assert date_chunks(date(2020, 1, 2), date(2020, 1, 1), 2000) == []
    exact = date(2020, 1, 1) + timedelta(days=1999)
    assert date_chunks(date(2020, 1, 1), exact, 2000) == [(date(2020, 1, 1), exact)]
    chunks = date_chunks(date(2010, 3, 5), date(2025, 11, 28), 2000)
    assert chunks[0][0] == date(2010, 3, 5) and chunks[-1][1] == date(2025, 11, 28)
    assert all((hi - lo).days + 1 <= 2000 for lo, hi in chunks)
    assert all(b[0] == a[1] + timedelta(days=1) for a, b in itertools.pairwise(chunks))
    assert len(chunks) == 3


def test_the_simulator_refuses_what_kite_refuses(sim: KiteSimulator,
                                                 sim_accounts: list[SimAccount]) -> None:
    session = requests.Session()
    acc = sim_accounts[0]
    r = session.post(f"{sim.base_url}/api/login",
                     data={"user_id": acc.user_id, "password": acc.password})
    r = session.post(f"{sim.base_url}/api/twofa", data={
        "user_id": acc.user_id, "request_id": r.json()["data"]["request_id"],
        "twofa_value": pyotp.TOTP(acc.totp_secret).now(),
        "twofa_type": r.json()["data"]["twofa_type"]})
    assert r.status_code == 200, r.text
    enctoken = session.cookies["enctoken"]
    headers = {"Authorization": f"enctoken {enctoken}"}
    url = f"{sim.base_url}/oms/instruments/historical/%s/%s"

    def get(token: str, interval: str, start: str, end: str) -> tuple[int, Any]:
        r = session.get(url % (token, interval), params={"from": start, "to": end},
                        headers=headers)
        return r.status_code, r.json()

    status, body = get("256265", "day", "2020-01-01", "2025-06-22")  # 2,000 days
    assert status == 200 and len(body["data"]["candles"]) == len(
        _weekdays(date(2020, 1, 1), date(2025, 6, 22)))
    assert get("256265", "day", "2020-01-01", "2025-06-23") == (400, {
        "status": "error", "message": "interval exceeds max limit: 2000 days",
        "error_type": "InputException", "data": None})
    assert get("999", "day", "2020-01-01", "2020-01-31")[1]["message"] == "invalid token"
    assert get("256265", "week", "2020-01-01", "2020-01-31")[1]["message"] == \
        "invalid interval"
    assert get("256265", "day", "soon", "2020-01-31")[1]["message"] == "invalid from date"
    r = session.get(url % ("256265", "day"), params={"from": "2020-01-01", "to": "2020-01-31"})
    assert r.status_code == 403 and r.json()["error_type"] == "TokenException"
    candle = get("256265", "day", "2025-12-01", "2025-12-01")[1]["data"]["candles"][0]
    assert candle[0] == "2025-12-01T00:00:00+0530" and candle[4] == NIFTY50.close(
        date(2025, 12, 1)) and candle[3] <= min(candle[1], candle[4]) and candle[5] == 0
    today = datetime.now(IST).date()
    candles = get("256265", "day", (today - timedelta(days=20)).isoformat(),
                  (today + timedelta(days=10)).isoformat())[1]["data"]["candles"]
    assert candles and candles[-1][0][:10] <= today.isoformat()  # nothing from the future


@pytest.fixture
def connect_sim(sim_accounts: list[SimAccount]) -> Any:
    with KiteSimulator(sim_accounts, apps=[
            SimApp(API_KEY, API_SECRET), SimApp("paidapp7z", API_SECRET, market_data=True)],
            ) as server:
        yield server


def _connect_entry(acc: SimAccount, api_key: str = API_KEY) -> dict[str, Any]:
    return {"user_id": acc.user_id, "password": acc.password, "totp_secret": acc.totp_secret,
            "auth": "connect", "api_key": api_key, "api_secret": API_SECRET}


def test_a_personal_connect_app_has_no_market_data_so_import_is_the_way(
        connect_sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    personal, paid = sim_accounts[0], sim_accounts[1]
    cfg = _config(connect_sim, sim_accounts, database_url, tmp_path,
                  [_connect_entry(personal), _connect_entry(paid, "paidapp7z")])
    result = run_cli("--config", cfg, "benchmark", "fetch", "NIFTY50",
                     "--from", "2025-12-01", "--to", "2025-12-05")  # the first account
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result)
    assert line == (
        f"error: account {personal.user_id}: Kite refused historical data (Insufficient "
        "permission for that call.): Kite Connect's Personal plan has no market data; "
        "import the closes instead with `snapshotter benchmark import NAME FILE.csv` "
        "(NSE's index page exports them)")
    assert [p for _m, p, _u in connect_sim.requests_log if "historical" in p] == \
        ["/instruments/historical/256265/day"]
    assert _benchmark_rows(database_url) == 0
    assert API_SECRET not in result.stdout + result.stderr

    # An app whose plan includes market data reads it through Kite Connect.
    paid_run = run_cli("--config", cfg, "benchmark", "fetch", "NIFTY50", "--account",
                       paid.user_id, "--from", "2025-12-01", "--to", "2025-12-05")
    assert paid_run.returncode == 0, paid_run.stderr
    assert len(_closes(database_url)) == 5


def test_fetch_never_retries_credentials_kite_rejected(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    acc = sim_accounts[0]
    entry = {"user_id": acc.user_id, "password": "not-the-password",
             "totp_secret": acc.totp_secret}
    cfg = _config(sim, sim_accounts, database_url, tmp_path, [entry])
    args = ("--config", cfg, "benchmark", "fetch", "NIFTY50", "--from", "2025-12-01",
            "--to", "2025-12-05")
    first = run_cli(*args)
    assert first.returncode == 78, first.stderr
    assert "Invalid `password`" in _one_error_line(first)
    logins = [e for e in sim.requests_log if e[1] == "/api/login"]
    assert len(logins) == 1
    ledger = _rows(database_url, "SELECT status, rejected_credentials, error FROM snapshots")
    assert len(ledger) == 1 and ledger[0]["status"] == "failed"
    assert ledger[0]["rejected_credentials"] and \
        ledger[0]["error"].startswith("benchmark fetch: ")
    assert "not-the-password" not in first.stderr + str(ledger)

    # Another host (no session cache here) sees the ledger's copy: neither a fetch nor
    # a run tries these credentials again.
    shutil.rmtree(tmp_path / "state")
    again = run_cli(*args)
    assert again.returncode == 78, again.stderr
    assert "not trying again to avoid locking the account" in _one_error_line(again)
    run = run_cli("--config", cfg, "run")
    assert run.returncode == 78, run.stderr
    assert [e for e in sim.requests_log if e[1] == "/api/login"] == logins
    assert _benchmark_rows(database_url) == 0


def test_an_unknown_index_is_one_line(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                      database_url: str, tmp_path: Path) -> None:
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    result = run_cli("--config", cfg, "benchmark", "fetch", "SENSEX")
    assert result.returncode == 2
    assert _one_error_line(result) == (
        "error: benchmark fetch knows NIFTY50, NIFTYBANK, not SENSEX; import its closes "
        "with `snapshotter benchmark import SENSEX FILE.csv`")
    assert not sim.login_count


# -- the simulator's market --------------------------------------------------------------------


def test_the_index_is_deterministic_and_the_portfolio_moves_with_it() -> None:
    days = _weekdays(date(2025, 6, 2), date(2025, 11, 28))
    assert [NIFTY50.close(d) for d in days] == [NIFTY50.close(d) for d in days]
    assert NIFTY50.close(date(2025, 11, 29)) == NIFTY50.close(date(2025, 11, 28))  # Saturday
    assert 10_000 < NIFTY50.close(days[0]) < 50_000
    market = DemoMarket(seed=3)
    portfolio = make_portfolio(11)
    stock_moves, index_moves = [], []
    previous: dict[str, float] = {}
    for day in days:
        market.step(portfolio, day)
        prices = {h["tradingsymbol"]: h["last_price"] for h in portfolio["holdings"]}
        common = [prices[s] / previous[s] - 1 for s in prices if s in previous]
        if common:
            stock_moves.append(statistics.fmean(common))
            index_moves.append(NIFTY50.change(None, day))
        previous = prices
    assert len(index_moves) > 100
    assert statistics.correlation(stock_moves, index_moves) > 0.6


def test_what_the_csv_reader_accepts() -> None:
    """Encodings and spellings NSE's pages (or a spreadsheet re-saving them) produce."""
    expected = {date(2025, 12, 1): 26175.75, date(2025, 12, 2): 261757.5}
    text = ('"INDEX NAME","DATE","CLOSE","Turnover (₹ Cr)"\r\n'
            '"NIFTY 50","1 December 2025","26175.75","1"\r\n'
            '"NIFTY 50","02-dec-2025"," 2,61,757.50 ","1"\r\n')
    for data in (text.encode("utf-8"), text.encode("utf-8-sig"), text.encode("utf-16"),
                 text.replace("₹", "Rs").encode("cp1252"), text.encode("cp1252", "replace")):
        frame = parse_index_csv(data, "x.csv")
        assert dict(zip(frame["date"], frame["close"], strict=True)) == expected
        assert list(frame["date"]) == sorted(expected)
    with pytest.raises(BenchmarkFileError, match="more than one Close column"):
        parse_index_csv(b"Date,Close,close\n2025-12-01,1,2\n", "x.csv")
    with pytest.raises(BenchmarkFileError, match="'inf' is not a number"):
        parse_index_csv(b"Date,Close\n2025-12-01,inf\n", "x.csv")


def test_global_options_before_and_after_the_action(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """`benchmark` takes --config, -v and --json-logs where `db` does: before its action
    too (was "invalid choice: 'CFG'"), and lists them in its help."""
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    before = run_cli("benchmark", "--config", cfg, "import", "NIFTY50", str(NSE_EXPORT))
    assert (before.returncode, before.stdout.strip()) == (
        0, "NIFTY50: 5 closes imported (2025-12-01 .. 2025-12-05), 5 new"), before.stderr
    after = run_cli("benchmark", "import", "NIFTY50", str(NSE_EXPORT), "--config", cfg)
    assert after.returncode == 0 and after.stdout.strip().endswith(", 0 new"), after.stderr
    usage = run_cli("benchmark", "--help")
    assert usage.returncode == 0 and "--config PATH" in usage.stdout, usage.stdout


_DAY1, _DAY2 = "2025-12-01T00:00:00+0530", "2025-12-02T00:00:00+0530"


@pytest.mark.parametrize(("candles", "problem"), [
    ([[_DAY1, 1, 1, 1, True, 0]], "field close: not a number: True"),
    ([[_DAY1, 1, 1, 1, 10**400, 0]], "field close: number too large"),
    ([[_DAY1, 1, 1, 1, 24000.5, 0], [_DAY1, 1, 1, 1, 24100.5, 0]],
     "two different closes for 2025-12-01 (24,000.50 and 24,100.50)"),
    ([[_DAY1, 1, 1, 1, 24000.5, 0], ["2025-12-02garbage", 1, 1, 1, 24100.5, 0]],
     "field timestamp: not a timestamp"),
    ([[_DAY1, 1, 1, 1, 24000.5, 0], [_DAY2, 1, 1, 1, 1e300, 0]],
     "candle 1 has a close of 1e+300, not a plausible one (expected 0.01 to 1,000,000,000)"),
    ([[_DAY1, 1, 1, 1, 1e-300, 0]], "candle 0 has no date or no positive close"),
    ([[_DAY1, 1, 1, 1, 0.001, 0]], "candle 0 has a close of 0.001, not a plausible one"),
    ([[_DAY1, 1, 1, 1, 24000.5, 0], ["2099-12-02T00:00:00+0530", 1, 1, 1, 24100.5, 0]],
     "a candle of 2099-12-02, outside the dates asked"),
])
def test_hostile_candles_are_one_line_and_store_nothing(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, candles: list[Any],
        problem: str) -> None:
    from snapshotter.simulator._http import ok

    monkeypatch.setattr(sim, "_historical", lambda req: ok({"candles": candles}))
    cfg = _config(sim, sim_accounts, database_url, tmp_path)
    result = run_cli("--config", cfg, "benchmark", "fetch", "NIFTY50",
                     "--from", "2025-12-01", "--to", "2025-12-02")
    assert result.returncode != 0
    line = _one_error_line(result)
    assert "account DM0001: historical 256265" in line and problem in line, line
    assert _benchmark_rows(database_url) == 0
