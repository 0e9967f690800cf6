"""What the overview, account and group pages show, computed from one snapshot of the
database through the report functions (no formula of their own): a window's
`report performance` figures, today's change, allocation, the NAV against a benchmark,
and an account's holdings, positions and cash."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

from snapshotter.reports import chart, daily, performance
from snapshotter.reports.performance import ALL, Performance
from snapshotter.reports.query import Filters, read_frame
from snapshotter.serve.windows import Window
from snapshotter.sessions import TradingCalendar

KINDS = {"holdings_value": "equity (holdings)", "mf_value": "mutual funds", "cash": "cash",
         "positions_m2m": "positions (M2M)"}


@dataclass
class Series:
    """The NAV (rebased to 100, its drawdown) and a benchmark's closes (rebased)."""

    nav: pd.DataFrame
    benchmark: str | None = None
    closes: pd.DataFrame | None = None


@dataclass
class Today:
    """The last session's change of the total value and its market P&L."""

    day: date | None = None
    previous: date | None = None
    value_change: float | None = None
    market_pnl: float | None = None


@dataclass
class ScopeFigures:
    """One scope (all accounts, or one account) over one window."""

    window: Window
    start: date | None
    end: date
    latest: date
    performance: Performance
    series: Series
    today: Today
    kinds: dict[str, float]  # allocation by kind on the latest session
    values: pd.DataFrame  # chart_data's rows within the window
    row: dict[str, Any] = field(default_factory=dict)  # the scope's performance row


@dataclass
class Overview:
    scope: ScopeFigures
    accounts: pd.DataFrame  # one row per account: value, share, today's change, window
    groups: pd.DataFrame | None  # one row per group of 2+ accounts (None: no groups)
    group_notes: list[str]


@dataclass
class AccountPage:
    account: str
    scope: ScopeFigures
    holdings: pd.DataFrame
    positions: pd.DataFrame
    cash: pd.DataFrame
    xirr_from_lots: bool


def latest_session(conn: sa.Connection, account: str | None = None) -> date | None:
    """The last complete snapshot's session (of one account, or of any)."""
    if account:
        found = conn.execute(sa.text(
            "SELECT MAX(snapshot_date) FROM snapshots WHERE status = 'ok' AND account = :a"),
            {"a": account}).scalar()
    else:
        found = conn.execute(sa.text(
            "SELECT MAX(snapshot_date) FROM snapshots WHERE status = 'ok'")).scalar()
    return _as_date(found)


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def benchmark_names(conn: sa.Connection) -> list[str]:
    return [str(n) for n in conn.execute(sa.text(
        "SELECT DISTINCT name FROM benchmark_daily ORDER BY name")).scalars()]


def _row(result: Performance, scope: str) -> dict[str, Any]:
    frame = result.frame
    if frame.empty or scope not in set(frame["account"]):
        return {}
    return frame[frame["account"] == scope].iloc[0].to_dict()


def _series(conn: sa.Connection, account: str | None, benchmark: str | None,
            start: date | None, end: date, read: performance.ScopeRows | None = None,
            ) -> Series:
    """The chart's NAV (and benchmark); ``read``: ALL's series already read (its nav is
    nav_daily_all's), so the household's NAV is not read again."""
    if read is not None and account is None:
        rows = performance.window_rows(read, Filters((ALL,), start, end))
        nav = chart.rebase(rows.rename(columns={"date": "snapshot_date"}))
        if not benchmark:
            return Series(nav)
        name, closes = performance.benchmark_closes(conn, benchmark)
        nav, rebased = chart.against(nav, closes)
        return Series(nav, name, rebased)
    if benchmark:
        name, nav, closes = chart.benchmark_chart_data(conn, benchmark, account, start, end)
        return Series(nav, name, closes)
    return Series(chart.nav_rebased(conn, account, start, end))


@dataclass
class Household:
    """What every window of the overview shares: the household's last sessions."""

    latest: date
    day: date  # the household's last session
    summed: pd.DataFrame  # chart_data's all-accounts rows
    today: Today
    kinds: dict[str, float]
    members: pd.DataFrame  # account, total_value, carried on ``day``
    pnl: pd.DataFrame  # report pnl's rows of ``day``


def household(conn: sa.Connection) -> Household | None:
    """The household's last sessions (None: nothing stored yet): today's change by
    chart_data's ALL formulas (those of report performance's ALL market P&L), the values
    on the last one, and each account's `report pnl` row of that day."""
    latest = latest_session(conn)
    if latest is None:
        return None
    summed = chart.chart_data(conn)
    today = Today()
    if not summed.empty:
        last = summed.iloc[-1]
        today.day = last["snapshot_date"].date()
        if len(summed) > 1:
            before = summed.iloc[-2]
            today.previous = before["snapshot_date"].date()
            today.value_change = float(last["total_value"] - before["total_value"])
            today.market_pnl = float(last["market_pnl"])
    day = today.day or latest
    kinds = read_frame(conn, f"""
        SELECT {", ".join(KINDS)}, total_value FROM portfolio_daily_all
        WHERE snapshot_date = :day""", {"day": day})
    members = read_frame(conn, """
        SELECT account, total_value, carried FROM household_daily
        WHERE snapshot_date = :day AND leaving = 0 ORDER BY account""", {"day": day})
    return Household(latest, day, summed, today, _kinds(kinds), members,
                     daily.pnl(conn, Filters(start=day, end=day)))


def all_accounts(conn: sa.Connection, calendar: TradingCalendar, window: Window,
                 benchmark: str | None, groups: dict[str, tuple[str, ...]],
                 base: Household | None,
                 series: performance.ScopeRows | None = None) -> Overview | None:
    """The overview's figures over ``window``, given the household's last sessions
    (``household``, read at the same data version) and, when given, every account's and
    ALL's whole series (``performance.read_rows(conn, Scope())`` at that version: read
    once for every window); None when nothing is stored yet."""
    if base is None:
        return None
    window = window.resolved(base.latest)
    start, end = window.dates(base.latest)
    if series is None:
        series = performance.read_rows(conn, performance.Scope())
    closes = performance.benchmark_closes(conn, benchmark) if benchmark else None
    # report performance's own steps: read_rows, then compute within the window
    result = performance.compute(series, calendar, Filters(start=start, end=end), closes)
    scope = ScopeFigures(
        window, start, end, base.latest, result,
        _series(conn, None, benchmark, start, end, series), base.today, base.kinds,
        _within(base.summed, start, end), _row(result, ALL))
    accounts = _accounts_table(result, base.members, base.pnl)
    group_rows, group_notes = _groups(conn, calendar, groups, start, end)
    return Overview(scope, accounts, group_rows, group_notes)


def _within(frame: pd.DataFrame, start: date | None, end: date) -> pd.DataFrame:
    days = frame["snapshot_date"]
    keep = days <= pd.Timestamp(end)
    if start is not None:
        keep &= days >= pd.Timestamp(start)
    return frame[keep].reset_index(drop=True)


def _kinds(frame: pd.DataFrame) -> dict[str, float]:
    if frame.empty:
        return {}
    row = frame.iloc[0]
    return {label: float(row[column]) for column, label in KINDS.items()
            if pd.notna(row[column])}


def _accounts_table(result: Performance, members: pd.DataFrame, pnl: pd.DataFrame,
                    ) -> pd.DataFrame:
    """Per account: its value counted on the household's last session (its last one,
    when carried), share of the total, that session's change (report pnl's), and the
    window's figures (report performance's)."""
    out = members.rename(columns={"total_value": "value"})
    total = float(out["value"].astype("float64").sum()) if not out.empty else 0.0
    out["share"] = out["value"].astype("float64") / total if total else None
    out = out.merge(pnl[["account", "value_change", "market_pnl"]].rename(
        columns={"market_pnl": "day_market_pnl", "value_change": "day_change"}),
        on="account", how="left")
    frame = result.frame
    window = frame[frame["account"] != ALL][
        ["account", "net_flows", "market_pnl", "xirr", "nav_return", "twr", "max_drawdown",
         "gaps"]] if not frame.empty else pd.DataFrame(columns=["account"])
    out = out.merge(window, on="account", how="outer")
    out["carried"] = out["carried"].fillna(0).astype(int)
    return out.sort_values("account", ignore_index=True)


def group_figures(conn: sa.Connection, calendar: TradingCalendar, name: str,
                  members: tuple[str, ...], start: date | None, end: date,
                  ) -> tuple[dict[str, Any], Performance]:
    """A group's row over the window (its accounts as a household, computed as ``ALL``
    is: `report performance --group NAME`'s first row) and that report's whole result
    (the group's row, then its members')."""
    result = performance.group_performance(conn, calendar, name, members,
                                           Filters(start=start, end=end))
    row: dict[str, Any] = {"members": len(members), **_row(result, name)}
    row.pop("account", None)
    return row, result


def _groups(conn: sa.Connection, calendar: TradingCalendar,
            groups: dict[str, tuple[str, ...]], start: date | None, end: date,
            ) -> tuple[pd.DataFrame | None, list[str]]:
    shown = {name: members for name, members in groups.items() if len(members) > 1}
    if not shown:
        return None, []
    rows, notes = [], []
    for name, members in sorted(shown.items()):
        row, result = group_figures(conn, calendar, name, members, start, end)
        rows.append({"group": name, **row})
        notes += result.notes + result.warnings
    return pd.DataFrame(rows), notes


def one_account(conn: sa.Connection, calendar: TradingCalendar, account: str,
                window: Window, benchmark: str | None) -> AccountPage | None:
    """An account's page; None when it has no complete snapshot."""
    latest = latest_session(conn, account)
    if latest is None:
        return None
    window = window.resolved(latest)
    start, end = window.dates(latest)
    result = performance.performance(conn, calendar, Filters((account,), start, end),
                                     benchmark)
    pnl = daily.pnl(conn, Filters((account,), latest, latest))
    today = Today(day=latest)
    if not pnl.empty:
        last = pnl.iloc[-1]
        today.previous = _as_date(last["previous_snapshot_date"])
        today.value_change = _number(last["value_change"])
        today.market_pnl = _number(last["market_pnl"])
    kinds = read_frame(conn, f"""
        SELECT {", ".join(KINDS)}, total_value, snapshot_id FROM portfolio_daily
        WHERE account = :a AND snapshot_date = :day""", {"a": account, "day": latest})
    scope = ScopeFigures(window, start, end, latest, result,
                         _series(conn, account, benchmark, start, end), today,
                         _kinds(kinds), _within(chart.chart_data(conn, account), start, end),
                         _row(result, account))
    holdings = daily.holdings(conn, Filters((account,), end=latest))
    lots = conn.execute(sa.text("SELECT COUNT(*) FROM open_lots WHERE account = :a"),
                        {"a": account}).scalar() or 0
    if lots:
        holdings = daily.with_xirr(conn, holdings)
    snapshot_id = int(kinds.iloc[0]["snapshot_id"]) if not kinds.empty else -1
    positions = read_frame(conn, """
        SELECT tradingsymbol, exchange, product, quantity, average_price, last_price, value,
               pnl, m2m
        FROM positions WHERE snapshot_id = :id AND position_type = 'net'
        ORDER BY tradingsymbol, exchange, product""", {"id": snapshot_id})
    cash = read_frame(conn, """
        SELECT segment, net, cash, opening_balance, live_balance, collateral,
               intraday_payin, payout, debits
        FROM funds WHERE snapshot_id = :id ORDER BY segment""", {"id": snapshot_id})
    return AccountPage(account, scope, holdings, positions, cash, bool(lots))


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
