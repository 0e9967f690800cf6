"""The dashboard's overview, account pages and windows through the real `snapshotter
serve`: every figure equals what the matching `report` command prints, in a real browser
at phone and laptop widths, and a run writing while it serves is seen, one data version
per page."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapshotter.simulator import KiteSimulator, demo_accounts
from snapshotter.simulator.market import DemoMarket
from tests.conftest import (
    LOCAL_ONLY,
    Served,
    ShiftedClock,
    _offset_to,
    config_dict,
    local_get,
    query_rows,
    run_cli,
    serving,
    wait_until,
    write_config,
)

KPI = re.compile(r'id="kpi-(\w+)"><span class="label">[^<]*</span>'
                 r'<span class="value[^"]*">([^<]*)</span>')
SPAN = re.compile(r'<span id="(window-from|window-to)">([^<]*)</span>')
PERCENT_KPIS = ("xirr", "nav_return", "twr", "max_drawdown", "benchmark_return")
MONEY_KPIS = {"total_value": "end_value", "market_pnl": "market_pnl",
              "net_flows": "net_flows"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A database `snapshotter demo` filled (2 accounts, 40 sessions, NIFTY50's closes)
    and a config for it: (config, database)."""
    out = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--out", str(out), "--accounts", "2", "--days", "40", timeout=600)
    assert done.returncode == 0, done.stderr
    config = write_config(out / "config.yaml", {
        "database": {"url": f"sqlite:///{out / 'demo.db'}"},
        "accounts": [{"user_id": f"DM000{i}", "password": "pw",
                      "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DP",
                      **({"label": "Second"} if i == 2 else {})} for i in (1, 2)]})
    return config, out / "demo.db"


def indian(text: str) -> float | None:
    """'-₹12,34,567.89' -> -1234567.89; '12.34%' -> 0.1234; '—' (empty) -> None."""
    text = text.strip()
    if text in ("", "—"):
        return None
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text.replace("₹", "").replace(",", ""))


def figures(html: str) -> dict[str, Any]:
    found: dict[str, Any] = {k: indian(v) for k, v in KPI.findall(html)}
    found.update(dict(SPAN.findall(html)))
    return found


def computed(served: Served, path: str) -> str:
    """The page once its figures are computed (a "computing" page reloads itself)."""
    answers: list[str] = []
    url = served.url + path

    def ready() -> bool:
        answer = local_get(url)
        assert answer.status_code == 200, f"{path}: {answer.status_code}\n{served.output()}"
        answers.append(answer.text)
        return 'id="computing"' not in answer.text
    wait_until(ready, f"{url} to be computed")
    return answers[-1]


def command_json(config: Path, *args: str) -> list[dict[str, Any]]:
    done = run_cli("--config", str(config), "report", *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def months_back(day: date, months: int) -> date:
    """The same day ``months`` earlier (the month's last day when it has none)."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError(day)


def window_dates(window: str, latest: date) -> tuple[date | None, date]:
    """What docs/dashboard.md says a window means as --from/--to."""
    months = {"1M": 1, "3M": 3, "6M": 6, "1Y": 12, "3Y": 36}
    if window in months:
        return months_back(latest, months[window]), latest
    if window == "all":
        return None, latest
    start = latest.year if latest.month >= 4 else latest.year - 1
    return date(start, 4, 1), date(start + 1, 3, 31)


def assert_same(page: dict[str, Any], row: dict[str, Any]) -> None:
    """The page's headline figures are the command's row (as the page rounds them)."""
    for kpi, key in MONEY_KPIS.items():
        assert page[kpi] == pytest.approx(row[key], abs=0.006), (kpi, page, row)
    for key in PERCENT_KPIS:
        if key not in page:
            continue
        if row[key] is None:
            assert page[key] is None, (key, page, row)
        else:
            assert page[key] == pytest.approx(row[key], abs=0.00006), (key, page, row)
    assert page["window-from"] == row["from"] and page["window-to"] == row["to"]


def _sessions(db: Path) -> list[date]:
    rows = query_rows(f"sqlite:///{db}", "SELECT DISTINCT snapshot_date AS d FROM snapshots "
                      "WHERE status = 'ok' ORDER BY snapshot_date")
    return [date.fromisoformat(str(r["d"])) for r in rows]


def test_every_window_equals_report_performance(tmp_path: Path,
                                                demo: tuple[Path, Path]) -> None:
    config, db = demo
    sessions = _sessions(db)
    latest, previous = sessions[-1], sessions[-2]
    with serving(config) as served:
        for window in ("1Y", "1M", "3M", "all", "FY"):
            start, end = window_dates(window, latest)
            dates = (["--from", start.isoformat()] if start else []) + ["--to", end.isoformat()]
            rows = command_json(config, "performance", *dates, "--benchmark", "NIFTY50")
            expected = {r["account"]: r for r in rows}
            page = figures(computed(served, f"/?window={window}"))
            assert_same(page, expected["ALL"])
            account = figures(computed(served, f"/account/DM0002?window={window}"))
            assert_same(account, expected["DM0002"])
        # 1M is shorter than the demo's history: the window really cuts
        assert sessions[0] < months_back(latest, 1)

        # Today's change: the household's last session, and an account's (report pnl)
        [pnl] = command_json(config, "pnl", "--account", "DM0001", "--from",
                             latest.isoformat(), "--to", latest.isoformat())
        page = figures(computed(served, "/account/DM0001"))
        assert page["today_change"] == pytest.approx(pnl["value_change"], abs=0.006)
        assert page["today_market_pnl"] == pytest.approx(pnl["market_pnl"], abs=0.006)
        household = {r["account"]: r for r in command_json(
            config, "performance", "--from", previous.isoformat(), "--to",
            latest.isoformat())}["ALL"]
        page = figures(computed(served, "/"))
        assert page["today_change"] == pytest.approx(
            household["end_value"] - household["start_value"], abs=0.011)
        assert page["today_market_pnl"] == pytest.approx(household["market_pnl"], abs=0.011)

        # A past financial year without snapshots: said so, not an error
        empty = computed(served, "/?window=FY&fy=2019-20")
        assert "no snapshot in it" in empty
        # a financial year links to the one before it and the one after
        assert 'href="?window=FY&amp;fy=2018-19"' in empty
        assert 'href="?window=FY&amp;fy=2020-21"' in empty

        # The tables' CSV: report performance's rows, and report holdings'
        csv = local_get(f"{served.url}/account/DM0001?window=all&csv=holdings")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        holdings = command_json(config, "holdings", "--account", "DM0001")
        lines = csv.text.splitlines()
        header = lines[0].split(",")
        values = sorted(round(float(line.split(",")[header.index("value")]), 2)
                        for line in lines[1:])
        assert values == sorted(round(h["value"], 2) for h in holdings)
        assert len(lines) - 1 == len(holdings) > 0


def test_wrong_addresses_are_one_line_404s(tmp_path: Path, demo: tuple[Path, Path]) -> None:
    config, _ = demo
    with serving(config) as served:
        for path in ("/account/NOPE1", "/?window=5Y", "/?window=FY&fy=2026-28",
                     "/?window=FY&fy=26-27", "/?window=FY&fy=9999-00",
                     "/?window=1M&fy=2025-26",
                     "/?benchmark=NOT%20AN%20INDEX", "/account/DM0001?csv=nope",
                     "/group/nobody", "/account/DM0001?window=%27%3B--"):
            answer = local_get(served.url + path)
            assert answer.status_code == 404, path
            assert "Traceback" not in answer.text and "<h1>Not found</h1>" in answer.text


@pytest.mark.parametrize("viewport", [(390, 844), (1366, 768)])
def test_the_pages_in_a_browser(tmp_path: Path, demo: tuple[Path, Path], chromium: Any,
                                viewport: tuple[int, int]) -> None:
    config, db = demo
    url = f"sqlite:///{db}"
    with serving(config) as served:
        computed(served, "/")
        computed(served, "/account/DM0001?window=1M")
        page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)

        page.goto(served.url + "/")
        page.wait_for_function("document.getElementById('chart-nav').data !== undefined")
        shown = figures(page.content())
        household = query_rows(url, "SELECT COUNT(*) AS n FROM nav_daily_all WHERE "
                               "snapshot_date BETWEEN :a AND :b", a=shown["window-from"],
                               b=shown["window-to"])[0]["n"]
        points = page.evaluate("['chart-nav', 'chart-value', 'chart-drawdown']"
                               ".map(id => document.getElementById(id).data[0].x.length)")
        assert points == [household] * 3
        assert page.evaluate("document.getElementById('chart-accounts').data[0].y") == \
            ["DM0001", "DM0002"]
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert "Second" in page.inner_text("#table-accounts")  # accounts[].label

        page.click("#table-accounts a[href^='/account/DM0002']")
        page.wait_for_function("document.getElementById('chart-nav').data !== undefined")
        assert page.inner_text("h1").startswith("DM0002")

        page.goto(served.url + "/account/DM0001?window=1M")
        page.wait_for_function("document.getElementById('chart-nav').data !== undefined")
        shown = figures(page.content())
        own = query_rows(url, "SELECT COUNT(*) AS n FROM nav_daily WHERE account = 'DM0001' "
                         "AND snapshot_date BETWEEN :a AND :b", a=shown["window-from"],
                         b=shown["window-to"])[0]["n"]
        assert page.evaluate("document.getElementById('chart-nav').data[0].x.length") == own
        assert page.evaluate("document.getElementById('chart-nav').data.length") == 2
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.click("#table-holdings th[data-column=value]")
        page.click("#table-holdings th[data-column=value]")  # descending
        cells = page.eval_on_selector_all(
            "#table-holdings tbody tr td:nth-child(6)", "cells => cells.map(c => c.dataset.sort)")
        values = [float(v) for v in cells]
        assert values == sorted(values, reverse=True) and len(values) > 1
        assert problems == []
        page.close()


def _run_on(config: Path, day: date, sim: KiteSimulator, clock: ShiftedClock,
            markets: dict[str, DemoMarket], lib: str) -> None:
    clock.offset = _offset_to(datetime.combine(day, time(11, 30), UTC))
    for user_id, market in markets.items():
        market.step(sim.portfolio(user_id), day)
    sim.expire_tokens()  # a Kite session lasts a day
    done = run_cli("--config", str(config), "run", env={
        **LOCAL_ONLY, "LD_PRELOAD": lib, "FAKETIME": f"{clock.offset:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "0"})
    assert done.returncode == 0, done.stderr


def test_a_run_while_serving_is_seen_and_no_page_mixes_versions(
        tmp_path: Path, database_url: str, faketime_lib: str) -> None:
    """`snapshotter run` stores a new session while serve runs: the overview shows it
    once computed, and every page fetched meanwhile is one version's figures."""
    accounts = demo_accounts(2, seed=7)
    markets = {a.user_id: DemoMarket(seed=i) for i, a in enumerate(accounts, 1)}
    clock = ShiftedClock(0)
    days = [date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)]
    with KiteSimulator(accounts, clock=clock) as sim:
        config = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts, database_url, tmp_path / "state"))
        for day in days[:2]:
            _run_on(config, day, sim, clock, markets, faketime_lib)
        before = {r["account"]: r for r in command_json(config, "performance", "--to",
                                                        days[1].isoformat())}
        with serving(config) as served:
            first = figures(computed(served, "/?window=all"))
            assert_same(first, before["ALL"])
            user = accounts[0].user_id
            assert_same(figures(computed(served, f"/account/{user}?window=all")),
                        before[user])
            _run_on(config, days[2], sim, clock, markets, faketime_lib)
            after = {r["account"]: r for r in command_json(config, "performance", "--to",
                                                           days[2].isoformat())}
            seen: list[dict[str, Any]] = []

            def new_session_shown() -> bool:
                answer = local_get(served.url + "/?window=all")
                if 'id="computing"' in answer.text:
                    return False
                page = figures(answer.text)
                seen.append(page)
                return page["window-to"] == days[2].isoformat()

            wait_until(new_session_shown, "the overview to show the new session")
            for page in seen:  # each page is one version's: the figures and their dates
                assert_same(page, after["ALL"] if page["window-to"] == days[2].isoformat()
                            else before["ALL"])
            assert_same(figures(computed(served, f"/account/{user}?window=all")),
                        after[user])


TRADEBOOK_HEADER = ("symbol,isin,trade_date,exchange,segment,series,trade_type,auction,"
                    "quantity,price,trade_id,order_id,order_execution_time")


def test_holdings_xirr_from_an_imported_tradebook(tmp_path: Path,
                                                  demo: tuple[Path, Path]) -> None:
    """With a tradebook imported, an account's holdings show XIRR from its FIFO lots:
    `report holdings --xirr`'s."""
    _, source = demo
    db = tmp_path / "demo.db"
    db.write_bytes(source.read_bytes())
    url = f"sqlite:///{db}"
    config = write_config(tmp_path / "config.yaml", {
        "database": {"url": url},
        "accounts": [{"user_id": f"DM000{i}", "password": "pw",
                      "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DP"} for i in (1, 2)]})
    first = _sessions(db)[0]
    held = query_rows(url, """
        SELECT tradingsymbol, isin, exchange, quantity, average_price FROM holdings
        WHERE account = 'DM0001' AND snapshot_date = :day ORDER BY tradingsymbol""",
                      day=first)[:2]
    trades = tmp_path / "tradebook.csv"
    trades.write_text("\n".join([TRADEBOOK_HEADER, *(
        f"{h['tradingsymbol']},{h['isin']},{first.isoformat()},{h['exchange']},EQ,EQ,buy,"
        f"false,{h['quantity']},{h['average_price']},{30000001 + i},{i + 1},"
        f"{first.isoformat()}T10:00:00" for i, h in enumerate(held))]) + "\n", encoding="utf-8")
    done = run_cli("--config", str(config), "import", "tradebook", str(trades), "--account",
                   "DM0001")
    assert done.returncode == 0, done.stderr
    expected = {r["tradingsymbol"]: r["xirr"] for r in command_json(
        config, "holdings", "--account", "DM0001", "--xirr")}
    assert sum(v is not None for v in expected.values()) >= 1
    with serving(config) as served:
        computed(served, "/")
        page = computed(served, "/account/DM0001")
        assert "import the account's tradebook" not in page
        csv = local_get(served.url + "/account/DM0001?csv=holdings").text.splitlines()
    header = csv[0].split(",")
    shown = {line.split(",")[header.index("tradingsymbol")]:
             line.split(",")[header.index("xirr")] for line in csv[1:]}
    assert shown.keys() == expected.keys()
    for symbol, rate in expected.items():
        if rate is None:
            assert shown[symbol] == ""
        else:
            assert float(shown[symbol]) == pytest.approx(rate, abs=1e-9)


def test_a_group_equals_report_performance_group(tmp_path: Path,
                                                 demo: tuple[Path, Path]) -> None:
    """accounts[].group: the overview's groups table and the group's page show `report
    performance --group NAME`'s figures (the group computed as a household, as ALL is);
    here the group holds every account, so they also equal ALL's."""
    config, db = demo
    grouped = yaml.safe_load(config.read_text())
    for account in grouped["accounts"]:
        account["group"] = "family"
    config = write_config(tmp_path / "grouped.yaml", grouped)
    latest = _sessions(db)[-1]
    with serving(config) as served:
        for window in ("all", "1M"):
            start, end = window_dates(window, latest)
            dates = (["--from", start.isoformat()] if start else []) + ["--to", end.isoformat()]
            rows = command_json(config, "performance", "--group", "family", *dates)
            assert [r["account"] for r in rows] == ["family", "DM0001", "DM0002"]
            group = rows[0]
            everyone = {r["account"]: r for r in command_json(config, "performance", *dates)}
            for key in ("start_value", "end_value", "net_flows", "market_pnl", "xirr",
                        "nav_return"):
                assert group[key] == pytest.approx(everyone["ALL"][key], abs=1e-6), key

            page = computed(served, f"/group/family?window={window}")
            shown = {k: indian(v) for k, v in KPI.findall(page)}
            for key in ("start_value", "end_value", "net_flows", "market_pnl"):
                assert shown[key] == pytest.approx(group[key], abs=0.006), key
            for key in ("xirr", "nav_return"):
                assert shown[key] == pytest.approx(group[key], abs=0.00006), key
            members = local_get(f"{served.url}/group/family?window={window}&csv=members")
            assert [line.split(",")[0] for line in members.text.splitlines()[1:]] == \
                ["family", "DM0001", "DM0002"]

            computed(served, f"/?window={window}")
            table = local_get(f"{served.url}/?window={window}&csv=groups").text.splitlines()
            header = table[0].split(",")
            [row] = [dict(zip(header, line.split(","), strict=True)) for line in table[1:]]
            assert row["group"] == "family" and row["members"] == "2"
            assert float(row["end_value"]) == pytest.approx(group["end_value"], abs=0.006)
            assert float(row["xirr"]) == pytest.approx(group["xirr"], abs=1e-6)


def test_the_overview_chart_from_the_read_series_is_nav_daily_all(
        demo: tuple[Path, Path]) -> None:
    """The overview draws ALL's NAV from the series report performance read (not from
    nav_daily_all again): the same rebased points and drawdown, whole and windowed."""
    import pandas as pd
    import sqlalchemy as sa

    from snapshotter.reports import chart, performance
    from snapshotter.reports.query import Filters

    _, db = demo
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        data = performance.read_rows(engine, performance.Scope())
        sessions = _sessions(db)
        for start, end in ((None, None), (sessions[5], sessions[-3])):
            expected = chart.nav_rebased(engine, None, start, end)
            rows = performance.window_rows(data, Filters((performance.ALL,), start, end))
            drawn = chart.rebase(rows.rename(columns={"date": "snapshot_date"}))
            assert len(drawn) > 1
            pd.testing.assert_frame_equal(drawn, expected, check_dtype=False)
    finally:
        engine.dispose()
