"""The dashboard's instrument, tax and status pages, `demo --serve` and the screenshots:
through the real `snapshotter serve` (and `demo`), read in a real browser, every figure
compared with what the matching command prints (`report history`, `report tax`,
`status`), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import spool
from tests.conftest import (
    HANG_GUARD,
    Served,
    config_dict,
    local_get,
    page_problems,
    query_rows,
    run_cli,
    serving,
    wait_until,
    write_config,
)

IST = ZoneInfo("Asia/Kolkata")
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
#: what the README's screenshots show (the overview, "/", once h/overview's page lands)
SCREENSHOT_PAGE = "/"


def tradebook(path: Path, symbol: str, isin: str) -> Path:
    """Console's tradebook: 10 bought 2024-05-02 at 2800, 5 on 2025-05-06 at 3000, 12
    sold 2025-06-10 at 3500. FIFO: 10 held 404 days (long: 10 x 700 = 7000) and 2 of the
    second buy (short: 2 x 500 = 1000), both in FY 2025-26; 3 still open."""
    head = ("symbol,isin,trade_date,exchange,segment,series,trade_type,auction,quantity,"
            "price,trade_id,order_id,order_execution_time\n")
    rows = [("2024-05-02", "buy", 10, 2800, "T1"), ("2025-05-06", "buy", 5, 3000, "T2"),
            ("2025-06-10", "sell", 12, 3500, "T3")]
    path.write_text(head + "".join(
        f"{symbol},{isin},{day},NSE,EQ,EQ,{kind},false,{qty},{price},{tid},O{tid},"
        f"{day}T10:00:00\n" for day, kind, qty, price, tid in rows), encoding="utf-8")
    return path


def import_trades(config: Path, tmp_path: Path, account: str, symbol: str) -> None:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    [found] = query_rows(data["database"]["url"], """
        SELECT DISTINCT isin FROM holdings WHERE account = :account AND tradingsymbol = :s""",
        account=account, s=symbol)
    book = tradebook(tmp_path / "tradebook.csv", symbol, found["isin"])
    done = run_cli("--config", str(config), "import", "tradebook", str(book), "--account",
                   account)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`snapshotter demo` (2 accounts, 12 sessions; DM0001's TCS split), TCS trades
    imported for DM0001. Returns the config the demo wrote."""
    out = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--out", str(out), "--accounts", "2", "--days", "12",
                   timeout=HANG_GUARD)
    assert done.returncode == 0, done.stdout + done.stderr
    config = out / "config.yaml"
    # The last line: the command that opens the dashboard over the demo's database.
    assert done.stdout.strip().splitlines()[-1] == f"dashboard: snapshotter --config {config} serve"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert yaml.safe_load(config.read_text(encoding="utf-8"))["database"]["url"] == \
        f"sqlite:///{out / 'demo.db'}"
    import_trades(config, tmp_path_factory.mktemp("trades"), "DM0001", "TCS")
    return config


# --- reading a page ----------------------------------------------------------------------

def figure(text: str) -> float | None:
    """A figure as the page shows it ('-₹12,34,567.89', '268', '30.08%') as a number
    (a percentage as its fraction); None for an empty cell."""
    text = text.strip()
    if not text:
        return None
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text.replace("₹", "").replace(",", ""))


def same(shown: str, printed: Any, decimals: int = 2) -> bool:
    """The page's text equals the command's number, as the page rounds it."""
    if printed is None:
        return shown.strip() == ""
    value = figure(shown)
    return value is not None and abs(value - round(float(printed), decimals)) < 10 ** -decimals / 2


@contextmanager
def browser_page(chromium: Any, viewport: dict[str, int] = LAPTOP) -> Iterator[Any]:
    """A page that fails the test on a console error, a failed request or an answer
    >= 400."""
    page = chromium.new_page(viewport=viewport)
    page.set_default_timeout(HANG_GUARD * 1000)  # a hang guard, not Playwright's 30 s
    errors = page_problems(page)
    try:
        yield page
        assert errors == []
    finally:
        page.close()


def table_rows(page: Any, name: str) -> list[dict[str, str]]:
    """The rows of the page's table ``name``, each a dict column -> text shown."""
    return page.evaluate("""(name) => {
        const table = document.querySelector(`#table-${name} table`);
        const columns = Array.from(table.tHead.rows[0].cells).map((c) => c.dataset.column);
        return Array.from(table.tBodies[0].rows)
          .filter((r) => !r.querySelector("td.empty"))
          .map((r) => Object.fromEntries(Array.from(r.cells).map(
            (c, i) => [columns[i], c.innerText.trim()])));
    }""", name)


def rendered(page: Any) -> None:
    """Wait until the page's chart (if any) has been drawn by Plotly."""
    if page.query_selector(".plot"):
        page.wait_for_function("document.querySelector('.plot').data !== undefined")


def fits(page: Any, size: dict[str, int]) -> bool:
    """The page, loaded at ``size``, has no horizontal scrolling."""
    page.set_viewport_size(size)
    page.reload()
    rendered(page)
    return bool(page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth"))


def command(config: Path, *args: str) -> str:
    done = run_cli("--config", str(config), *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # status: 1 = unhealthy
    return done.stdout


# --- the checks, on any database ------------------------------------------------------------

HISTORY_MONEY = ("average_price", "price", "value", "unrealised_pnl", "day_pnl")


def check_instrument(served: Served, chromium: Any, config: Path, symbol: str,
                     account: str) -> None:
    """/instrument/SYMBOL?account=ID against `report history SYMBOL --account ID`: each
    session's figures, the chart's points, the CSV (byte for byte), the open lots."""
    printed = json.loads(command(config, "report", "history", symbol, "--account", account,
                                 "--format", "json"))
    assert printed
    url = f"{served.url}/instrument/{symbol}?account={account}"
    with browser_page(chromium) as page:
        assert page.goto(url).status == 200
        page.wait_for_function(
            "document.getElementById('instrument-chart').data !== undefined")
        points = page.evaluate(
            "document.getElementById('instrument-chart').data.map((t) => t.x.length)")
        assert points == [len(printed), len(printed)]  # value, price
        # Hover values Indian-style, the report's figures; the value axis in lakh/crore.
        hover = page.evaluate("document.getElementById('instrument-chart').data[0].text")
        assert all(same(text, want["value"]) for text, want in zip(hover, printed, strict=True))
        ticks = page.evaluate(
            "document.getElementById('instrument-chart').layout.yaxis.ticktext")
        assert ticks and all(t.lstrip("-").startswith("₹") for t in ticks)
        if max(w["value"] for w in printed) >= 100_000:
            assert any(t.endswith((" L", " Cr")) for t in ticks), ticks
        shown = table_rows(page, "history")
        assert len(shown) == len(printed)
        for row, want in zip(shown, printed, strict=True):
            assert row["snapshot_date"] == want["snapshot_date"]
            assert same(row["quantity"], want["quantity"])
            for column in HISTORY_MONEY:
                assert same(row[column], want[column]), (column, row, want)
            assert same(row["weight"], want["weight"], decimals=4)
        trades = table_rows(page, "trades")
        assert [(t["trade_date"], t["trade_type"], figure(t["quantity"]), figure(t["price"]))
                for t in trades] == [("2024-05-02", "buy", 10, 2800),
                                     ("2025-05-06", "buy", 5, 3000),
                                     ("2025-06-10", "sell", 12, 3500)]
        lots = table_rows(page, "open_lots")
        stored = query_rows(yaml.safe_load(config.read_text())["database"]["url"], """
            SELECT buy_date, quantity, buy_price FROM open_lots
            WHERE account = :a AND tradingsymbol = :s ORDER BY buy_date, id""",
            a=account, s=symbol)
        assert [(x["buy_date"], figure(x["quantity"]), figure(x["buy_price"])) for x in lots] \
            == [(str(r["buy_date"])[:10], r["quantity"], r["buy_price"]) for r in stored]
        assert stored
        assert fits(page, PHONE) and fits(page, LAPTOP)
    csv = local_get(url + "&csv=history")
    assert csv.status_code == 200
    assert csv.headers["content-disposition"] == 'attachment; filename="history.csv"'
    assert csv.text == command(config, "report", "history", symbol, "--account", account,
                               "--format", "csv")


def check_tax(served: Served, chromium: Any, config: Path, account: str) -> None:
    """/tax?fy=2025-26 against `report tax --fy 2025-26`: every figure, and the CSV."""
    printed = json.loads(command(config, "report", "tax", "--fy", "2025-26", "--format",
                                 "json"))
    mine = next(r for r in printed if r["account"] == account)
    assert (mine["ltcg"], mine["stcg"], mine["intraday"]) == (7000, 1000, 0)
    with browser_page(chromium, PHONE) as page:
        assert page.goto(f"{served.url}/tax?fy=2025-26").status == 200
        assert page.inner_text("h1") == "Tax, FY 2025-26"
        shown = table_rows(page, "tax")
        assert [r["account"] for r in shown] == [r["account"] for r in printed]
        for row, want in zip(shown, printed, strict=True):
            for column, value in want.items():
                if column != "account":
                    assert same(row[column], value), (column, row, want)
        assert fits(page, PHONE) and fits(page, LAPTOP)
    csv = local_get(f"{served.url}/tax?fy=2025-26&csv=tax")
    assert csv.text == command(config, "report", "tax", "--fy", "2025-26", "--format", "csv")


def _ist(text: str | None) -> str:
    if text is None:
        return ""
    return datetime.fromisoformat(text).astimezone(IST).strftime("%Y-%m-%d %H:%M IST")


def _next_run(run: dict[str, Any]) -> str:
    if run["at"] is None:
        return f"none ({run['note']})"
    if run["overdue"]:
        return f"overdue since {_ist(run['at'])}"
    return f"{_ist(run['at'])} ({run['note']})" if run["note"] else _ist(run["at"])


def check_status(served: Served, chromium: Any, config: Path) -> dict[str, Any]:
    """/status against `status --json`: per account its last complete snapshot (date,
    kind, time, warnings), last failure, the latest session, the next run."""
    printed = json.loads(command(config, "status", "--json"))
    with browser_page(chromium, PHONE) as page:
        assert page.goto(f"{served.url}/status").status == 200
        assert f"Latest session: {printed['latest_session']}" in page.inner_text("main")
        assert page.get_attribute("a[href='/kite']", "href") == "/kite"
        shown = table_rows(page, "accounts")
        assert [r["account"] for r in shown] == [a["account"] for a in printed["accounts"]]
        for row, want in zip(shown, printed["accounts"], strict=True):
            complete, failure = want["last_complete"] or {}, want["last_failure"] or {}
            assert row["last_complete"] == complete.get("snapshot_date", "")
            assert row["kind"] == complete.get("kind", "")
            assert row["taken_at"] == _ist(complete.get("taken_at"))
            assert row["warnings"] == str(len(complete.get("warnings", [])))
            assert row["last_failure"] == failure.get("snapshot_date", "")
            assert row["error"] == failure.get("error", "")
            assert row["has_latest_session"] == ("yes" if want["has_latest_session"] else "NO")
            assert row["next_run"] == _next_run(want["next_run"])
        spooled = table_rows(page, "spool")
        assert fits(page, PHONE) and fits(page, LAPTOP)
    return {"status": printed, "spool": spooled}


# --- SQLite: the demo's database -----------------------------------------------------------

def test_instrument_page_equals_report_history(demo: Path, chromium: Any,
                                               tmp_path: Path) -> None:
    with serving(demo) as served:
        check_instrument(served, chromium, demo, "TCS", "DM0001")
        # All accounts holding it: a value and a price line per account; the split.
        with browser_page(chromium) as page:
            assert page.goto(f"{served.url}/instrument/tcs").status == 200
            assert page.inner_text("h1") == "TCS"
            page.wait_for_function(
                "document.getElementById('instrument-chart').data !== undefined")
            names = page.evaluate(
                "document.getElementById('instrument-chart').data.map((t) => t.name)")
            assert names == ["value DM0001", "value DM0002", "price DM0001", "price DM0002"]
            [split] = table_rows(page, "corporate_actions")
            assert (split["account"], figure(split["ratio"])) == ("DM0001", 2)
            # Sorting by a header (static/dashboard.js): the largest value first.
            page.click("#table-history th[data-column=value]")
            page.click("#table-history th[data-column=value]")
            values = [figure(r["value"]) for r in table_rows(page, "history")]
            assert values == sorted(values, reverse=True)
        # A window of sessions, as --from/--to give the report.
        days = [r["snapshot_date"] for r in json.loads(command(
            demo, "report", "history", "TCS", "--account", "DM0001", "--format", "json"))]
        window = local_get(f"{served.url}/instrument/TCS?account=DM0001&from={days[2]}"
                           f"&to={days[5]}&csv=history")
        assert window.text == command(demo, "report", "history", "TCS", "--account", "DM0001",
                                      "--from", days[2], "--to", days[5], "--format", "csv")
        assert len(window.text.splitlines()) == 1 + 4


def test_unknown_instrument_account_date_or_table_is_a_404(demo: Path) -> None:
    with serving(demo) as served:
        for path, says in [
                ("/instrument/NOSUCH", "no instrument &#39;NOSUCH&#39;"),
                ("/instrument/TCS?account=ZZ9999", "no account &#39;ZZ9999&#39;"),
                ("/instrument/TCS?from=2026-13-01", "from=&#39;2026-13-01&#39; is not a date"),
                ("/instrument/TCS?csv=nothing", "no table &#39;nothing&#39; on this page"),
                ("/tax?fy=2025-27", "&#39;2025-27&#39; is not a financial year like 2025-26"),
                ("/tax?fy=2025-26%3Cscript%3E", "is not a financial year"),
                ("/status?csv=accounts%27", "no table")]:
            answer = local_get(served.url + path)
            assert answer.status_code == 404, path
            assert says in answer.text, (path, answer.text)
            assert "Traceback" not in answer.text and "<script>" not in answer.text
        # An account stored but not configured any more is still known.
        assert local_get(served.url + "/instrument/TCS?account=dm0002").status_code == 200


def test_tax_page_equals_report_tax(demo: Path, chromium: Any) -> None:
    with serving(demo) as served:
        check_tax(served, chromium, demo, "DM0001")
        # Without ?fy: the current financial year, and links to the years with sales.
        with browser_page(chromium) as page:
            assert page.goto(f"{served.url}/tax").status == 200
            today = datetime.now(UTC).astimezone(IST).date()
            start = today.year if today.month >= 4 else today.year - 1
            assert page.inner_text("h1") == f"Tax, FY {start}-{(start + 1) % 100:02d}"
            years = page.eval_on_selector_all(".choices a", "as => as.map(a => a.innerText)")
            assert "2025-26" in years


def test_status_page_equals_status_and_lists_the_spool(demo: Path, chromium: Any,
                                                       tmp_path: Path) -> None:
    data = yaml.safe_load(demo.read_text(encoding="utf-8"))
    data["state_dir"] = str(tmp_path / "state")
    config = write_config(tmp_path / "config.yaml", data)
    taken = datetime(2026, 12, 4, 11, 5, tzinfo=UTC)
    kept = spool.save(tmp_path / "state", account="DM0002", snapshot_date=date(2026, 12, 4),
                      taken_at=taken, final=False, payloads={"holdings": [], "funds": {}},
                      duration_ms=12)
    with serving(config) as served:
        seen = check_status(served, chromium, config)
        csv = local_get(f"{served.url}/status?csv=spool").text
    assert seen["spool"] == [{"account": "DM0002", "snapshot_date": "2026-12-04",
                              "taken_at": "2026-12-04 16:35 IST", "final": "no",
                              "routes": "2"}]
    assert csv.splitlines() == ["account,snapshot_date,taken_at,final,routes",
                                "DM0002,2026-12-04,2026-12-04 16:35 IST,no,2"]
    assert kept.exists()  # read, never stored nor removed by the dashboard


# --- PostgreSQL: a run against the simulator -------------------------------------------------

@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_pages_on_postgresql(database_url: str, sim: KiteSimulator,
                                 sim_accounts: list[SimAccount], chromium: Any,
                                 tmp_path: Path) -> None:
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    data["accounts"][1]["password"] = "not-the-password"  # Kite refuses it: a failure
    config = write_config(tmp_path / "config.yaml", data)
    done = run_cli("--config", str(config), "run")
    assert done.returncode != 0 and "error: " in done.stderr, done.stdout + done.stderr
    account = sim_accounts[0].user_id
    [held] = query_rows(database_url, """SELECT tradingsymbol FROM holdings
        WHERE account = :a ORDER BY tradingsymbol LIMIT 1""", a=account)
    symbol = held["tradingsymbol"]
    import_trades(config, tmp_path, account, symbol)
    with serving(config) as served:
        check_instrument(served, chromium, config, symbol, account)
        check_tax(served, chromium, config, account)
        seen = check_status(served, chromium, config)
        pages = "".join(local_get(served.url + path).text for path in (
            "/status", "/status?csv=accounts", "/tax", f"/instrument/{symbol}"))
    for secret in ["not-the-password", *(a.totp_secret for a in sim_accounts),
                   *(a.password for a in sim_accounts)]:
        assert secret not in pages
    assert seen["spool"] == []
    accounts = {a["account"]: a for a in seen["status"]["accounts"]}
    assert set(accounts) == {a.user_id for a in sim_accounts}
    refused = accounts[sim_accounts[1].user_id]
    assert refused["last_failure"]["error"] and refused["next_run"]["note"] == "login rejected"


# --- demo --serve, and the screenshots -------------------------------------------------------

def test_demo_serve_opens_the_dashboard_over_the_demo_database(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "demo", "--serve", "--port", "0", "--days", "2",
         "--accounts", "1", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("dashboard on ") for line in lines),
                   "the dashboard to start", alive=process)
        url = next(line for line in lines if line.startswith("dashboard on ")).split()[2]
        assert url.startswith("http://127.0.0.1:")
        page = local_get(url + "status")
        assert page.status_code == 200 and "DM0001" in page.text
        # The accounts' simulated passwords are in the demo's 0600 config, never shown.
        data = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
        assert data["accounts"][0]["password"] not in page.text
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=HANG_GUARD)
        reader.join(HANG_GUARD)
    # As `serve` ends on Ctrl-C: "interrupted", exit 130.
    assert process.returncode == 130, "".join(lines)
    assert not any(line.startswith("dashboard: snapshotter") for line in lines)


def test_demo_port_needs_serve(tmp_path: Path) -> None:
    done = run_cli("demo", "--port", "8001", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: demo: --port is for --serve"
    assert not (tmp_path / "demo.db").exists()


def test_screenshots(demo: Path, chromium: Any, tmp_path: Path) -> None:
    """The README's two screenshots, phone and laptop; with SNAPSHOTTER_SCREENSHOTS=DIR
    they are written there (docs/images refreshes them), else to a scratch directory."""
    out = Path(os.environ.get("SNAPSHOTTER_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    with serving(demo) as served:
        # the overview's figures are computed in the background (a page says so till then)
        wait_until(lambda: 'id="computing"' not in local_get(served.url + SCREENSHOT_PAGE).text,
                   "the overview's figures")
        for name, size in (("dashboard-phone.png", PHONE), ("dashboard-laptop.png", LAPTOP)):
            with browser_page(chromium, size) as page:
                assert page.goto(served.url + SCREENSHOT_PAGE).status == 200
                page.wait_for_selector(".js-plotly-plot .main-svg")  # a chart drawn
                assert fits(page, size)
                page.screenshot(path=str(out / name))
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
