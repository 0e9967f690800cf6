"""`snapshotter report performance`: what the money earned over a window, per account and
for all accounts: NAV return (Console's Performance Curve), time-weighted return, XIRR,
CAGR, drawdown, volatility, sessions missing, and a benchmark index beside them.

The window of an account runs from its first complete snapshot on or after ``--from``
(default: its first) to its last on or before ``--to``; ``ALL`` is the same over
``nav_daily_all``. Formulas (docs/returns.md, "Returns: report performance"):

- ``net_flows`` = sum of cash_flow on the snapshot dates after ``from`` (the flow of
  ``from`` itself is inside start_value); ``market_pnl`` = end_value - start_value -
  net_flows
- ``twr`` = product of (1 + daily_return) over the window's pnl_daily rows after
  ``from``, minus 1 (a NULL daily_return counts 1, as in pnl_daily's twr_index); for
  ``ALL`` pnl_daily's formula over nav_daily_all's value and flows
- ``nav_return`` = nav on ``to`` / nav on ``from`` - 1; NULL when the NAV series stops
  in the window (a total value of 0 or less) or has no NAV on ``from``
- ``xirr``: pyxirr's rate (ACT/365) of the flows from the investor's side: -start_value
  on ``from``, -cash_flow on each later snapshot date, +end_value on ``to``
- ``cagr`` = (1 + nav_return) ^ (365 / days from ``from`` to ``to``) - 1
- ``max_drawdown`` = min of nav / running max of nav - 1 within the window (the running
  max starts again where the series does)
- ``volatility`` = sample standard deviation of the daily NAV returns (nav / the
  previous row's nav - 1, within the window) * sqrt(252)
- ``gaps`` = NSE sessions in the window without a complete snapshot (for ALL: sessions
  on which some account lacks one within its own window). The table warns about those
  whose cash flows are unknown; a gap whose next snapshot takes its cash flow from the
  imported ledger (nav_daily's ``cash_flow_source`` 'ledger': the ledger covers the
  days from the snapshot before the gap to the one after it) lost no flow, and is only
  noted
- a group (``--group``: ``accounts[].group``) is a household of its accounts, its row
  computed as ``ALL`` is, from the same views' SQL over its accounts alone
  (``store/scoped.py``), followed by its members' rows
- ``carried`` (0 for an account): ALL's household sessions in the window on which some
  account had no complete snapshot and counted at its last value (``household_daily``);
  each is warned about with the accounts carried
- ``benchmark_return`` = close on the last benchmark date <= ``to`` / close on the last
  date <= ``from``, minus 1 (the same days as nav_return); ``excess_return`` =
  nav_return - benchmark_return
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

from snapshotter.errors import UsageError
from snapshotter.reports.query import Bind, Filters, connection
from snapshotter.reports.render import non_finite, rounded, safe_for_spreadsheets
from snapshotter.sessions import TradingCalendar

ALL = "ALL"
KEYS = ["account", "from", "to", "start_value", "end_value", "net_flows", "market_pnl",
        "twr", "nav_return", "xirr", "cagr", "max_drawdown", "volatility", "gaps", "carried"]
BENCHMARK_KEYS = ["benchmark", "benchmark_return", "excess_return"]
MONEY = ("start_value", "end_value", "net_flows", "market_pnl")
RATIOS = ("twr", "nav_return", "xirr", "cagr", "max_drawdown", "volatility",
          "benchmark_return", "excess_return")
TRADING_DAYS = 252
MAX_DATES_NAMED = 5


@dataclass
class Performance:
    """One row per account (and ``ALL``), the JSON keys as columns, and the sentences
    the table output adds: why a figure is empty, and which windows have gaps."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _query(engine: Bind, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with connection(engine) as conn:
        return _frame(conn.execute(sa.text(sql), params))


def _frame(result: sa.Result[Any]) -> pd.DataFrame:
    """A result's rows, typed: dates as datetime64, figures as float64."""
    # The driver's plain tuples: a frame built from SQLAlchemy's Row objects takes
    # several times as long (a report reads every account's history).
    assert isinstance(result, sa.CursorResult) and result.cursor is not None
    frame = pd.DataFrame.from_records(result.cursor.fetchall(), columns=list(result.keys()))
    if "snapshot_date" in frame.columns:
        frame = frame.rename(columns={"snapshot_date": "date"})
    if "date" in frame.columns:  # ISO text on SQLite, dates on PostgreSQL: one dtype
        frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[us]")
    for column in frame.columns.drop(["account", "date", "name"], errors="ignore"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


def _dates(filters: Filters) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if filters.start:
        clauses.append("snapshot_date >= :start")
        params["start"] = filters.start
    if filters.end:
        clauses.append("snapshot_date <= :end")
        params["end"] = filters.end
    return " AND ".join(clauses) or "1 = 1", params


def _account_rows(engine: Bind, filters: Filters, accounts: list[str] | None,
                  ) -> pd.DataFrame:
    """nav_daily within the dates (of ``accounts``, or every account)."""
    where, params = _dates(filters)
    if accounts is not None:
        names = {f"account_{i}": a for i, a in enumerate(accounts)}
        where += f" AND account IN ({', '.join(':' + n for n in names) or 'NULL'})"
        params.update(names)
    return _query(engine, f"""
        SELECT account, snapshot_date, total_value, cash_flow, nav,
               CASE WHEN cash_flow_source = 'ledger' THEN 1 ELSE 0 END AS from_ledger
        FROM nav_daily
        WHERE {where} ORDER BY account, snapshot_date""", params)


def _all_rows(engine: Bind, filters: Filters) -> pd.DataFrame:
    """nav_daily_all within the dates, as account ``ALL``."""
    where, params = _dates(filters)
    rows = _query(engine, f"""
        SELECT snapshot_date, total_value, cash_flow, nav FROM nav_daily_all
        WHERE {where} ORDER BY snapshot_date""", params)
    rows.insert(0, "account", ALL)
    return rows


def _carried_rows(engine: Bind, filters: Filters) -> pd.DataFrame:
    """household_daily's carried rows within the dates: (account, date)."""
    where, params = _dates(filters)
    return _query(engine, f"""
        SELECT account, snapshot_date FROM household_daily
        WHERE carried = 1 AND {where} ORDER BY snapshot_date, account""", params)


def _micro(values: pd.Series) -> pd.Series:
    """Rounded to 6 decimals as the views round money: round(x * 1e6) / 1e6."""
    return (values * 1_000_000).round() / 1_000_000


def daily_returns(rows: pd.DataFrame) -> pd.Series:
    """pnl_daily's daily_return, by its formula, from the rows' total_value and
    cash_flow (rows sorted by account and date; the previous row is the account's
    previous snapshot): market_pnl / previous total_value, NULL when that is 0 or less
    or the return would be -100% or worse. (Reading pnl_daily itself would run its window
    functions over every account: seconds over a long history.)"""
    previous = rows["total_value"].groupby(rows["account"]).shift()
    market = _micro(_micro(rows["total_value"] - previous) - rows["cash_flow"])
    return (market / previous.where(previous > 0)).where(market > -previous)


def _first_and_last(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    dates = rows.groupby("account")["date"]
    return rows["date"] == dates.transform("min"), rows["date"] == dates.transform("max")


def _figures(rows: pd.DataFrame) -> pd.DataFrame:
    """Every figure but xirr, gaps and the benchmark's, per account, column-wise."""
    first, last = _first_and_last(rows)
    by = rows["account"]
    out = rows[first].set_index("account")[["date", "total_value", "nav"]].rename(
        columns={"date": "from", "total_value": "start_value", "nav": "nav_from"})
    out = out.join(rows[last].set_index("account")[["date", "total_value", "nav"]].rename(
        columns={"date": "to", "total_value": "end_value", "nav": "nav_to"}))
    out["net_flows"] = rows["cash_flow"].where(~first, 0.0).groupby(by).sum().round(6)
    out["market_pnl"] = (out["end_value"] - out["start_value"] - out["net_flows"]).round(6)

    growth = (1 + daily_returns(rows).where(~first).fillna(0.0)).groupby(by).prod()
    out["twr"] = growth - 1

    stopped = rows["nav"].isna() & ~first
    out["stops"] = rows["date"].where(stopped).groupby(by).min()
    valid = out["stops"].isna() & out["nav_from"].notna()
    out["nav_return"] = (out["nav_to"] / out["nav_from"] - 1).where(valid)
    days = (out["to"] - out["from"]).dt.days
    out["cagr"] = ((1 + out["nav_return"]) ** (365 / days.where(days > 0)) - 1).where(days > 0)

    segment = rows["nav"].isna().groupby(by).cumsum()
    peak = rows["nav"].groupby([by, segment]).cummax()
    out["max_drawdown"] = (rows["nav"] / peak - 1).groupby(by).min()
    daily = rows["nav"] / rows["nav"].groupby(by).shift() - 1
    out["volatility"] = daily.groupby(by).std(ddof=1) * math.sqrt(TRADING_DAYS)
    return out


def nav_figures(engine: Bind, filters: Filters) -> pd.DataFrame:
    """Per account (``filters.accounts``, or every account) and, without an account
    filter, ``ALL``: the window's figures that need no calendar (``from``, ``to``,
    ``start_value``, ``end_value``, ``net_flows``, ``market_pnl``, ``twr``,
    ``nav_return``, ``cagr``, ``max_drawdown``, ``volatility``), indexed by account."""
    rows = _account_rows(engine, filters, list(filters.accounts) or None)
    if not filters.accounts:
        all_rows = _all_rows(engine, filters)
        if not all_rows.empty:
            rows = pd.concat([rows, all_rows], ignore_index=True)
    return _figures(rows) if not rows.empty else pd.DataFrame()


def _xirr(rows: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    """Per account, the XIRR of its window's flows (investor's side), and why not."""
    from pyxirr import DayCount, InvalidPaymentsError, xirr

    first, last = _first_and_last(rows)
    amounts = (-rows["cash_flow"]).where(~first, -rows["total_value"])
    amounts = amounts + rows["total_value"].where(last & ~first, 0.0)
    flows = pd.DataFrame({"account": rows["account"], "date": rows["date"].dt.date,
                          "amount": amounts})
    rates: dict[str, float] = {}
    why: dict[str, str] = {}
    for account, part in flows.groupby("account", sort=False):
        name = str(account)
        if len(part) < 2:
            why[name] = "xirr is empty: the window has one snapshot"
            continue
        try:
            rate = xirr(part["date"].tolist(), part["amount"].tolist(),
                        day_count=DayCount.ACT_365F)
        except InvalidPaymentsError:
            why[name] = ("xirr is empty: its flows are all of one sign (money has to go "
                         "both in and out)")
            continue
        if rate is None or not math.isfinite(rate):
            why[name] = "xirr is empty: no rate makes the flows' present value 0"
            continue
        rates[name] = rate
    return pd.Series(rates, dtype="float64"), why


def _sessions(calendar: TradingCalendar, start: date, end: date) -> pd.Series:
    days = pd.date_range(start, end, freq="D")
    return pd.Series(days[[calendar.is_session(d.date()) for d in days]], name="date")


def _gap_dates(rows: pd.DataFrame, windows: pd.DataFrame,
               calendar: TradingCalendar) -> pd.DataFrame:
    """(account, date, covered) of each session in an account's window without a
    snapshot; ``covered``: the account's next snapshot takes its cash flow from the
    ledger (which then covers the gap)."""
    if windows.empty:
        return pd.DataFrame({"account": pd.Series([], dtype=object),
                             "date": pd.to_datetime([]).astype("datetime64[us]"),
                             "covered": pd.Series([], dtype=bool)})
    sessions = _sessions(calendar, windows["from"].min().date(), windows["to"].max().date())
    cross = windows[["from", "to"]].reset_index().merge(sessions.to_frame(), how="cross")
    cross = cross[(cross["date"] >= cross["from"]) & (cross["date"] <= cross["to"])]
    found = cross.merge(rows[["account", "date"]], how="left", indicator=True)
    gaps = found.loc[found["_merge"] == "left_only", ["account", "date"]]
    gaps["date"] = gaps["date"].astype("datetime64[us]")
    # Within a window every gap has a next snapshot (the window ends on one).
    following = pd.merge_asof(
        gaps.sort_values("date"), rows[["account", "date", "from_ledger"]].sort_values("date"),
        on="date", by="account", direction="forward", allow_exact_matches=False)
    following["covered"] = following["from_ledger"] == 1
    return following[["account", "date", "covered"]].sort_values(
        ["account", "date"], ignore_index=True)


def benchmark_closes(engine: Bind, name: str) -> tuple[str, pd.DataFrame]:
    """The stored closes of ``name`` (as stored; else the one name equal ignoring case)."""
    name = name.strip()
    names = [n for (n,) in _query(engine, "SELECT DISTINCT name FROM benchmark_daily "
                                  "ORDER BY name", {}).itertuples(index=False)]
    matches = [n for n in names if n == name] or [n for n in names if n.upper() == name.upper()]
    if len(matches) != 1:
        known = ", ".join(names) if names else "none yet"
        raise UsageError(f"unknown benchmark {name!r} (benchmark_daily has: {known}; "
                         f"load one with `snapshotter benchmark import NAME FILE.csv`)")
    closes = _query(engine, "SELECT date, close FROM benchmark_daily WHERE name = :name "
                    "ORDER BY date", {"name": matches[0]})
    return matches[0], closes


def _close_on_or_before(days: pd.Series, closes: pd.DataFrame) -> pd.Series:
    left = pd.DataFrame({"day": days.to_numpy(), "key": days.index})
    left = left.sort_values("day")
    found = pd.merge_asof(left, closes, left_on="day", right_on="date", direction="backward")
    return pd.Series(found["close"].to_numpy(), index=found["key"].to_numpy())


def _add_benchmark(out: pd.DataFrame, name: str, closes: pd.DataFrame,
                   notes: list[str]) -> None:
    before = out["from"]
    start = _close_on_or_before(before, closes).reindex(out.index)
    end = _close_on_or_before(out["to"], closes).reindex(out.index)
    out["benchmark"] = name
    out["benchmark_return"] = end / start - 1
    out["excess_return"] = out["nav_return"] - out["benchmark_return"]
    for account in out.index[start.isna()]:
        notes.append(f"{account}: benchmark_return is empty: {name} has no close on or "
                     f"before {before[account].date().isoformat()}")


@dataclass(frozen=True)
class Scope:
    """What one report reads: the accounts' own series (``accounts``; None: every
    account) and a household row named ``household`` (None: none) over ``members``
    (None: every account, the views' ``ALL``; else those accounts, a config group)."""

    accounts: tuple[str, ...] | None = None
    household: str | None = ALL
    members: tuple[str, ...] | None = None

    @classmethod
    def group(cls, name: str, members: tuple[str, ...]) -> Scope:
        """A config group: its row, then its members'."""
        return cls(accounts=members, household=name, members=members)

    @property
    def key(self) -> str | None:
        """The household's name while it is computed: ``ALL``, or for a group one that
        no account has (a group may be named after its one member)."""
        if self.household is None:
            return None
        return ALL if self.members is None else GROUP_KEY


GROUP_KEY = " group"  # a user id has no spaces


@dataclass
class ScopeRows:
    """A scope's whole history, read once: ``rows`` (account, date, total_value,
    cash_flow, nav, from_ledger: nav_daily's, and the household's under ``scope.key``)
    and ``carried`` (account, date: household_daily's carried rows)."""

    scope: Scope
    rows: pd.DataFrame
    carried: pd.DataFrame


def read_rows(engine: Bind, scope: Scope) -> ScopeRows:
    """Every session of ``scope``'s series: what ``compute`` takes, for any window."""
    from snapshotter.store import scoped

    rows = _account_rows(engine, Filters(), None if scope.accounts is None
                         else list(scope.accounts))
    carried = pd.DataFrame({"account": pd.Series([], dtype=object),
                            "date": pd.to_datetime([]).astype("datetime64[us]")})
    if scope.key is not None:
        if scope.members is None:
            household = _all_rows(engine, Filters())
            carried = _carried_rows(engine, Filters())
        else:
            with connection(engine) as conn:
                household = _frame(scoped.nav_rows(conn, scope.members))[
                    ["date", "total_value", "cash_flow", "nav"]]
                carried = _frame(scoped.carried_rows(conn, scope.members))
            household.insert(0, "account", scope.key)
        if not household.empty:
            rows = pd.concat([rows, household], ignore_index=True)
    return ScopeRows(scope, rows, carried)


def _window(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows within ``filters``' dates (as the views' ``snapshot_date`` filter)."""
    chosen = pd.Series(True, index=frame.index)
    if filters.start:
        chosen &= frame["date"] >= pd.Timestamp(filters.start)
    if filters.end:
        chosen &= frame["date"] <= pd.Timestamp(filters.end)
    return frame[chosen].reset_index(drop=True)


def window_rows(data: ScopeRows, filters: Filters) -> pd.DataFrame:
    """``data``'s rows within ``filters``' dates, of ``filters.accounts`` (the household's
    under its name, e.g. ``ALL``) or all of them: date, total_value, cash_flow, nav."""
    rows = _window(data.rows, filters)
    if filters.accounts:
        names = {data.scope.key if a == data.scope.household else a for a in filters.accounts}
        rows = rows[rows["account"].isin(names)].reset_index(drop=True)
    return rows


def performance(engine: Bind, calendar: TradingCalendar, filters: Filters | None = None,
                benchmark: str | None = None) -> Performance:
    """The figures per account (``filters.accounts``, or every account and ``ALL``; the
    name ``ALL`` asks for that row), within ``filters``' dates; with ``benchmark``, its
    return beside them (an unknown name is a UsageError)."""
    filters = filters or Filters()
    wanted = set(filters.accounts)
    # Every account's rows when ALL is asked for: its gaps are theirs.
    scope = Scope() if not wanted or ALL in wanted else \
        Scope(accounts=tuple(sorted(wanted)), household=None)
    closes = benchmark_closes(engine, benchmark) if benchmark else None
    return compute(read_rows(engine, scope), calendar, filters, closes)


def group_performance(engine: Bind, calendar: TradingCalendar, name: str,
                      members: tuple[str, ...], filters: Filters | None = None,
                      benchmark: str | None = None) -> Performance:
    """A group's row (its accounts as a household, as ``ALL`` is every account's), then
    its members' rows, within ``filters``' dates (its accounts are not read)."""
    dates = Filters(start=filters.start, end=filters.end) if filters else Filters()
    closes = benchmark_closes(engine, benchmark) if benchmark else None
    return compute(read_rows(engine, Scope.group(name, members)), calendar, dates, closes)


def compute(data: ScopeRows, calendar: TradingCalendar, filters: Filters | None = None,
            benchmark: tuple[str, pd.DataFrame] | None = None) -> Performance:
    """The figures of ``data`` within ``filters``' dates (``filters.accounts``: only
    those rows), with a benchmark's name and closes (``benchmark_closes``) beside them."""
    filters = filters or Filters()
    wanted = set(filters.accounts)
    key = data.scope.key
    name, closes = benchmark if benchmark else (None, None)
    rows = _window(data.rows, filters)
    columns = KEYS + (BENCHMARK_KEYS if name else [])
    if rows.empty:
        return Performance(pd.DataFrame(columns=columns))

    out = _figures(rows)
    rates, xirr_notes = _xirr(rows)
    out["xirr"] = rates.reindex(out.index)
    household = key is not None and key in out.index
    gaps = _gap_dates(rows[rows["account"] != key], out.drop(index=key) if household else out,
                      calendar)
    if household:  # a session is covered for ALL when every account's gap is
        window = (gaps["date"] >= out.at[key, "from"]) & (gaps["date"] <= out.at[key, "to"])
        every = gaps[window].groupby("date", as_index=False)["covered"].all()
        gaps = pd.concat([gaps, every.assign(account=key)], ignore_index=True)
    out["gaps"] = gaps.groupby("account").size().reindex(out.index).fillna(0).astype(int)
    carried = _window(data.carried, filters) if household else pd.DataFrame()
    out["carried"] = 0  # an account's own figures carry nothing: its gaps are gaps
    if household:
        out.loc[key, "carried"] = carried["date"].nunique()
    if wanted:
        out = out[out.index.isin(wanted)]
        gaps = gaps[gaps["account"].isin(wanted)]
        xirr_notes = {k: v for k, v in xirr_notes.items() if k in wanted}
    if out.empty:
        return Performance(pd.DataFrame(columns=columns))

    if key == GROUP_KEY:  # the group's row first, then its members'
        out = pd.concat([out[out.index == key], out[out.index != key]])
    notes = _notes(out, xirr_notes)
    if name is not None and closes is not None:
        _add_benchmark(out, name, closes, notes)
    notes += _covered_gap_notes(gaps[gaps["covered"]])
    notes += _unexplained_empty_notes(out, notes)
    frame = out.reset_index()
    frame["from"] = frame["from"].dt.date.map(date.isoformat)
    frame["to"] = frame["to"].dt.date.map(date.isoformat)
    warnings = _gap_warnings(gaps[~gaps["covered"]])
    if household and not carried.empty:
        warnings.append(_carried_warning(carried, str(key)))
    if key == GROUP_KEY:
        shown = str(data.scope.household)
        frame["account"] = frame["account"].replace({key: shown})
        notes = [_named(note, key, shown) for note in notes]
        warnings = [_named(warning, key, shown) for warning in warnings]
    return Performance(frame[columns], notes, warnings)


def _named(line: str, key: str, name: str) -> str:
    """A note or warning about the row ``key``, about ``name`` instead."""
    return f"{name}{line.removeprefix(key)}" if line.startswith(f"{key}: ") else line


def _notes(out: pd.DataFrame, xirr_notes: dict[str, str]) -> list[str]:
    notes = []
    for account, row in out.iterrows():
        if account in xirr_notes:
            notes.append(f"{account}: {xirr_notes[str(account)]}")
        if pd.notna(row["stops"]):
            notes.append(f"{account}: nav_return and cagr are empty: the NAV series stops "
                         f"on {row['stops'].date().isoformat()} (total value 0 or less) "
                         f"and starts again at 1000")
        elif pd.isna(row["nav_from"]):
            notes.append(f"{account}: nav_return and cagr are empty: no NAV on "
                         f"{row['from'].date().isoformat()} (total value 0 or less)")
    return notes


def _unexplained_empty_notes(out: pd.DataFrame, notes: list[str]) -> list[str]:
    """A note for every empty figure no other note explains: an empty cell always says
    why."""
    figures = [c for c in RATIOS if c in out.columns]
    extra = []
    for account, row in out.iterrows():
        said = " ".join(n for n in notes if n.startswith(f"{account}: "))
        for column in figures:
            if pd.isna(row[column]) and column not in said:
                extra.append(f"{account}: {column} is empty: {_why_empty(column, row)}")
    return extra


def _why_empty(column: str, row: pd.Series) -> str:
    one_session = row["from"] == row["to"]
    if column == "volatility":
        return ("it needs two daily NAV returns (three sessions or more)"
                + ("; the window has one session" if one_session else ""))
    if column == "cagr" and one_session:
        return "the window has one session (no time to annualise over)"
    if column == "excess_return":
        return "benchmark_return is empty"
    return "no NAV at the window's start or end (total value 0 or less)"


def _named_days(part: pd.DataFrame) -> tuple[int, str]:
    days = [d.date().isoformat() for d in part["date"]]
    named = ", ".join(days[:MAX_DATES_NAMED])
    if len(days) > MAX_DATES_NAMED:
        named += f" and {len(days) - MAX_DATES_NAMED} more"
    return len(days), named


def _gap_warnings(gaps: pd.DataFrame) -> list[str]:
    """The gaps whose cash flows no ledger gives."""
    warnings = []
    for account, part in gaps.sort_values(["account", "date"]).groupby("account"):
        count, named = _named_days(part)
        warnings.append(f"{account}: {count} NSE session(s) in the window have no "
                        f"snapshot ({named}): a gap hides that day's cash flows (Kite shows "
                        f"pay-ins only intraday), which then count as market P&L")
    return warnings


def _carried_warning(carried: pd.DataFrame, household: str = ALL) -> str:
    """The household sessions that counted an account at its last value."""
    sessions = carried.groupby("date", sort=True)["account"].apply(", ".join)
    named = "; ".join(f"{day.date().isoformat()}: {accounts}"
                      for day, accounts in sessions.iloc[:MAX_DATES_NAMED].items())
    if len(sessions) > MAX_DATES_NAMED:
        named += f"; and {len(sessions) - MAX_DATES_NAMED} more"
    return (f"{household}: {len(sessions)} session(s) counted an account without a complete "
            f"snapshot at its last value ({named}): a missed login moves no household "
            "figure, the account's next snapshot brings its move; an account that has "
            "closed for good: `snapshotter household leave ACCOUNT`")


def _covered_gap_notes(gaps: pd.DataFrame) -> list[str]:
    """The gaps whose cash flows the imported ledger gives."""
    notes = []
    for account, part in gaps.sort_values(["account", "date"]).groupby("account"):
        count, named = _named_days(part)
        notes.append(f"{account}: {count} NSE session(s) in the window have no snapshot "
                     f"({named}); their cash flows come from the imported ledger")
    return notes


def _table_cell(value: Any, column: str) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if column in MONEY:
        return f"{value:,.2f}"
    if column in RATIOS:
        return f"{value * 100:.2f}%"
    return str(value)


def non_finite_notes(result: Performance) -> list[str]:
    """Why a figure is empty although its inputs are there: it is not a finite number."""
    return non_finite(result.frame)[1]


def render(result: Performance, fmt: str) -> str:
    """The report as text to print (no trailing newline); a figure that is not a finite
    number is empty (non_finite_notes says which)."""
    frame, infinite = non_finite(result.frame)
    if fmt == "csv":
        return safe_for_spreadsheets(rounded(frame)).to_csv(
            index=False, lineterminator="\n").removesuffix("\n")
    if fmt == "json":
        frame = rounded(frame)
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return json.dumps(records, indent=2, allow_nan=False)
    if frame.empty:
        return "(no rows)"
    columns = list(frame.columns)
    rows = [[_table_cell(v, c) for v, c in zip(row, columns, strict=True)]
            for row in frame.itertuples(index=False)]
    lines = [tabulate(rows, headers=columns, disable_numparse=True, stralign="right")]
    lines += [f"note: {note}" for note in result.notes + infinite]
    lines += [f"warning: {warning}" for warning in result.warnings]
    return "\n".join(lines)
