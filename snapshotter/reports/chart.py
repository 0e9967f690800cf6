"""`snapshotter chart`: total value over time with the money put in apart from market
moves, cumulative market P&L beside cumulative net deposits, and drawdown. Every panel
has one y-axis: two scales on one panel draw crossings that mean nothing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
import sqlalchemy as sa
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no display, no global figures
from matplotlib.lines import Line2D

from snapshotter.errors import SnapshotterError, UsageError
from snapshotter.reports.query import Bind, connection

NUMBERS = ("total_value", "market_pnl", "drawdown", "cash_flow")
# Up to this many sessions, each one is marked on the lines.
MARKED_SESSIONS = 40
# With one session, the date axis spans this much on either side of it.
ONE_SESSION_SPAN = timedelta(days=3)


def _floats(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as float64, NULL as NaN: a column that is NULL on every row (market P&L
    and drawdown after the first session) comes back from the database untyped."""
    for name in NUMBERS:
        if name in frame.columns:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"])
    return frame


def chart_data(engine: Bind, account: str | None = None,
               per_account: bool = False) -> pd.DataFrame:
    """Per session: total_value, cumulative market P&L and drawdown (one account, all
    accounts summed, or with ``per_account`` every account's own rows, with an
    ``account`` column).

    For all accounts summed, the household's value and flows (``portfolio_daily_all``: an
    account missing a session counts at its last value, one joining or leaving is a flow),
    with pnl_daily's formulas over them: market P&L = value change - flows, and the
    drawdown of the index of daily returns (market P&L / previous total value), as
    `report performance`'s ALL twr.
    """
    with connection(engine) as conn:
        if account or per_account:
            where = "WHERE account = :a " if account else ""
            frame = pd.read_sql(sa.text(
                "SELECT account, snapshot_date, total_value, market_pnl, drawdown, cash_flow "
                f"FROM pnl_daily {where}ORDER BY account, snapshot_date"), conn,
                params={"a": account} if account else None)
            frame = _floats(frame)
        else:
            frame = pd.read_sql(sa.text(
                "SELECT snapshot_date, total_value, cash_flow FROM portfolio_daily_all "
                "ORDER BY snapshot_date"), conn)
            frame = _floats(frame)
            previous = frame["total_value"].shift()
            change = ((frame["total_value"] - previous) * 1_000_000).round() / 1_000_000
            frame["market_pnl"] = ((change - frame["cash_flow"]) * 1_000_000).round() \
                / 1_000_000
            returns = (frame["market_pnl"] / previous.where(previous > 0)).where(
                frame["market_pnl"] > -previous)
            index = (1 + returns.fillna(0)).cumprod()
            frame["drawdown"] = index / index.cummax() - 1
    pnl, flows = frame["market_pnl"].fillna(0), frame["cash_flow"].fillna(0)
    if "account" in frame.columns:
        by_account = frame["account"]
        frame["cumulative_market_pnl"] = pnl.groupby(by_account).cumsum()
        frame["net_deposits"] = flows.groupby(by_account).cumsum()
        first = frame.groupby(by_account)["total_value"].transform("first")
    else:
        frame["cumulative_market_pnl"] = pnl.cumsum()
        frame["net_deposits"] = flows.cumsum()
        first = frame["total_value"].iloc[0] if not frame.empty else 0.0
    # What the value would be had the market not moved: the first value plus the money
    # put in since (the gap to the total value is the cumulative market P&L).
    frame["without_market_moves"] = first + frame["net_deposits"]
    return frame


def output_path(out: str, account: str | None = None, per_account: bool = False,
                benchmark: str | None = None) -> Path:
    """`chart --out`: a file, or inside a directory (one that exists, or a path ending in
    /) a file named after what it shows: portfolio.png, portfolio-ACCOUNT.png,
    portfolio-per-account.png, or with a benchmark portfolio[-ACCOUNT]-vs-NAME.png."""
    if not out.strip():
        raise UsageError("--out is empty; give a file or a directory")
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        name = ("portfolio-per-account" if per_account
                else f"portfolio-{account}" if account else "portfolio")
        if benchmark:
            name += "-vs-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", benchmark.strip().upper())
        path = path / f"{name}.png"
    return path


@dataclass(frozen=True)
class Chart:
    figure: Figure
    sessions: int
    note: str | None  # said on the chart and by the command (one session so far)


def _nothing_to_chart(account: str | None) -> SnapshotterError:
    if account:
        return UsageError(f"no snapshots of account {account} to chart")
    return SnapshotterError("no snapshots to chart yet (run `snapshotter run` first)")


def _date_axis(axis: Axes, days: pd.Series) -> str | None:
    """Short date labels; for one session alone, a few days around it (without limits,
    matplotlib spans years around a single date) and the note saying so."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(days) != 1:
        return None
    day = days.iloc[0]
    axis.set_xlim(day - ONE_SESSION_SPAN, day + ONE_SESSION_SPAN)
    return (f"one session so far ({day:%Y-%m-%d}): the lines start with the next "
            "session's snapshot")


def build(engine: Bind, account: str | None = None, per_account: bool = False) -> Chart:
    """The chart of one account, all accounts summed, or (``per_account``) each account."""
    if account and per_account:
        raise UsageError("--per-account draws every account; leave out --account")
    frame = chart_data(engine, account, per_account)
    if frame.empty:
        raise _nothing_to_chart(account)
    days = frame["snapshot_date"].drop_duplicates().sort_values()
    fig = Figure(figsize=(10, 6))
    top, pnl_axis, bottom = fig.subplots(3, 1, sharex=True,
                                         gridspec_kw={"height_ratios": [5, 3, 2]})
    marker = "o" if len(days) <= MARKED_SESSIONS else None
    pnl_axis.axhline(0, color="black", linewidth=0.5)
    if per_account:
        _per_account_lines(frame, top, pnl_axis, bottom, marker)
    else:
        _total_lines(frame, top, pnl_axis, bottom, marker)
    top.set_ylabel("total value (lakh INR)", fontsize=9)
    pnl_axis.set_ylabel("since start (lakh)", fontsize=9)
    bottom.set_ylabel("drawdown (%)", fontsize=9)
    who = account or ("each account" if per_account else "all accounts")
    top.set_title(f"Kite Snapshotter: {who}")
    for axis in (top, pnl_axis, bottom):
        axis.grid(True, alpha=0.35)
    note = _date_axis(bottom, days)
    if note:
        top.set_title(f"Kite Snapshotter: {who}\n{note}", fontsize=11)
        for value in frame["total_value"]:  # a point alone says little: its value too
            top.annotate(f"{value / 1e5:,.2f} lakh", (days.iloc[0], value / 1e5),
                         xytext=(8, 0), textcoords="offset points", va="center",
                         fontsize=9)
    fig.tight_layout()
    return Chart(fig, len(days), note)


def save(chart: Chart, path: Path) -> Path:
    """Write the chart to ``path`` (in the format its suffix names, PNG without one) and
    return its absolute path."""
    suffix = path.suffix.lstrip(".").lower()
    supported = chart.figure.canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        raise UsageError(f"--out {path}: cannot draw a .{suffix} file; "
                         "use .png (or .svg, .pdf)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        chart.figure.savefig(path, dpi=110, format=suffix or "png")
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--out {path}: a parent of it is a file, not a directory") \
            from None
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write the chart there "
                         f"({exc.strerror or type(exc).__name__})") from None
    return path.resolve()


def _total_lines(frame: pd.DataFrame, top: Axes, pnl_axis: Axes, bottom: Axes,
                 marker: str | None) -> None:
    dates = frame["snapshot_date"]
    top.plot(dates, frame["total_value"] / 1e5, label="total value", color="tab:blue",
             marker=marker, markersize=4)
    top.plot(dates, frame["without_market_moves"] / 1e5,
             label="first value + net deposits (no market moves)", color="tab:gray",
             linestyle="--", marker=marker, markersize=3)
    top.legend(loc="upper left")
    pnl_axis.plot(dates, frame["cumulative_market_pnl"] / 1e5,
                  label="cumulative market P&L", color="tab:green", marker=marker,
                  markersize=3)
    pnl_axis.plot(dates, frame["net_deposits"] / 1e5, label="net deposits",
                  color="tab:gray", linestyle="--", marker=marker, markersize=3)
    pnl_axis.legend(loc="upper left")
    drawdown = frame["drawdown"].fillna(0) * 100
    bottom.fill_between(dates, drawdown, 0, color="tab:red", alpha=0.4)
    bottom.plot(dates, drawdown, color="tab:red", marker=marker, markersize=3,
                linewidth=0.8)


def _per_account_lines(frame: pd.DataFrame, top: Axes, pnl_axis: Axes, bottom: Axes,
                       marker: str | None) -> None:
    """One colour per account: total value, cumulative market P&L solid; what the value
    would be without market moves, and net deposits, dashed."""
    handles = []
    for i, (name, rows) in enumerate(frame.groupby("account", sort=True)):
        colour = f"C{i % 10}"
        dates = rows["snapshot_date"]
        top.plot(dates, rows["total_value"] / 1e5, color=colour, marker=marker,
                 markersize=4)
        top.plot(dates, rows["without_market_moves"] / 1e5, color=colour, linestyle="--",
                 alpha=0.6)
        pnl_axis.plot(dates, rows["cumulative_market_pnl"] / 1e5, color=colour,
                      marker=marker, markersize=3)
        pnl_axis.plot(dates, rows["net_deposits"] / 1e5, color=colour, linestyle="--",
                      alpha=0.6)
        bottom.plot(dates, rows["drawdown"].fillna(0) * 100, color=colour, marker=marker,
                    markersize=3, linewidth=1)
        handles.append(Line2D([], [], color=colour, label=str(name)))
    handles += [Line2D([], [], color="0.3", label="value; below: market P&L"),
                Line2D([], [], color="0.3", linestyle="--",
                       label="no market moves; below: net deposits")]
    top.legend(handles=handles, loc="upper left", fontsize=8,
               ncol=2 if len(handles) > 8 else 1)


def write_chart(engine: Bind, path: Path, account: str | None = None) -> Path:
    """The chart of one account or all accounts summed, written to ``path``."""
    return save(build(engine, account), path)


def nav_rebased(engine: Bind, account: str | None = None, start: date | None = None,
                end: date | None = None) -> pd.DataFrame:
    """The NAV (one account's ``nav_daily``, or ``nav_daily_all``) of the sessions from
    ``start`` to ``end`` (None: unbounded), ``rebased`` to 100 on the first of them (where
    the series stops and starts again, the days between count 0%), and its ``drawdown``:
    rebased / its running maximum - 1."""
    clauses = ["1 = 1"]
    params: dict[str, Any] = {}
    if account:
        clauses.append("account = :a")
        params["a"] = account
    if start:
        clauses.append("snapshot_date >= :start")
        params["start"] = start
    if end:
        clauses.append("snapshot_date <= :end")
        params["end"] = end
    view = "nav_daily" if account else "nav_daily_all"
    with connection(engine) as conn:
        nav = pd.read_sql(sa.text(
            f"SELECT snapshot_date, nav FROM {view} WHERE {' AND '.join(clauses)} "
            "ORDER BY snapshot_date"), conn, params=params)
    return rebase(nav)


def rebase(nav: pd.DataFrame) -> pd.DataFrame:
    """``nav`` (snapshot_date, nav; in date order) with ``rebased`` (100 on the first
    session; where the series stops and starts again, the days between count 0%) and
    ``drawdown`` (rebased / its running maximum - 1)."""
    nav = nav[["snapshot_date", "nav"]].reset_index(drop=True)
    nav["snapshot_date"] = pd.to_datetime(nav["snapshot_date"])
    nav["nav"] = pd.to_numeric(nav["nav"], errors="coerce").astype("float64")
    nav["rebased"] = 100 * (nav["nav"] / nav["nav"].shift()).fillna(1.0).cumprod()
    nav["drawdown"] = nav["rebased"] / nav["rebased"].cummax() - 1
    return nav


def rebased_closes(closes: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp,
                   ) -> pd.DataFrame:
    """A benchmark's closes from its last close on or before ``first`` to ``last``,
    ``rebased`` to 100 on that first close."""
    before = closes[closes["date"] <= first]
    start = before.index[-1] if not before.empty else 0
    shown = closes.loc[start:]
    shown = shown[shown["date"] <= last].copy()
    shown["rebased"] = 100 * shown["close"] / shown["close"].iloc[0] if not shown.empty \
        else shown["close"]
    return shown


def benchmark_chart_data(engine: Bind, benchmark: str, account: str | None = None,
                         start: date | None = None, end: date | None = None,
                         ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The benchmark's stored name, the NAV (one account's ``nav_daily``, or
    ``nav_daily_all``; the sessions from ``start`` to ``end``, None: all) and the
    benchmark's closes, each rebased to 100: the NAV on its first session (nav_rebased),
    the index at its last close on or before that session."""
    from snapshotter.reports.performance import benchmark_closes

    name, closes = benchmark_closes(engine, benchmark)
    return name, *against(nav_rebased(engine, account, start, end), closes)


def against(nav: pd.DataFrame, closes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``nav`` (rebased) and a benchmark's ``closes`` rebased at its first session."""
    if nav.empty:
        return nav, closes.iloc[0:0]
    first, last = nav["snapshot_date"].iloc[0], nav["snapshot_date"].iloc[-1]
    return nav, rebased_closes(closes, first, last)


def build_benchmark(engine: Bind, benchmark: str, account: str | None = None) -> Chart:
    """`chart --benchmark NAME`: the NAV against the benchmark, both rebased to 100."""
    name, nav, closes = benchmark_chart_data(engine, benchmark, account)
    if nav.empty:
        raise _nothing_to_chart(account)
    sessions = len(nav)
    marker = "o" if sessions <= MARKED_SESSIONS else None
    fig = Figure(figsize=(10, 5))
    axis = fig.subplots()
    who = account or "all accounts"
    axis.plot(nav["snapshot_date"], nav["rebased"], label=f"NAV, {who}", color="tab:blue",
              marker=marker, markersize=4)
    axis.plot(closes["date"], closes["rebased"], label=name, color="tab:gray",
              marker=marker, markersize=3)
    axis.axhline(100, color="black", linewidth=0.5)
    axis.set_ylabel("rebased to 100")
    axis.set_title(f"Kite Snapshotter: {who} against {name}")
    axis.legend(loc="upper left")
    axis.grid(True, alpha=0.35)
    note = _date_axis(axis, nav["snapshot_date"])
    if note:
        axis.set_title(f"Kite Snapshotter: {who} against {name}\n{note}", fontsize=11)
    fig.tight_layout()
    return Chart(fig, sessions, note)
