"""`snapshotter chart`: total value and cumulative market P&L over time, with drawdown."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt
import pandas as pd
import sqlalchemy as sa


def chart_data(engine: sa.Engine, account: str | None = None) -> pd.DataFrame:
    """Per session: total_value, cumulative market P&L and drawdown (one account or all).

    For all accounts, values and flows are summed per session and the drawdown is that
    of the summed daily returns' index (market P&L / previous total value).
    """
    with engine.connect() as conn:
        if account:
            frame = pd.read_sql(sa.text(
                "SELECT snapshot_date, total_value, market_pnl, drawdown FROM pnl_daily "
                "WHERE account = :a ORDER BY snapshot_date"), conn, params={"a": account})
        else:
            frame = pd.read_sql(sa.text(
                "SELECT snapshot_date, SUM(total_value) AS total_value, "
                "SUM(market_pnl) AS market_pnl, "
                "SUM(total_value - COALESCE(value_change, total_value)) AS previous_value "
                "FROM pnl_daily GROUP BY snapshot_date ORDER BY snapshot_date"), conn)
            returns = frame["market_pnl"] / frame["previous_value"].where(
                frame["previous_value"] > 0)
            index = (1 + returns.fillna(0)).cumprod()
            frame["drawdown"] = index / index.cummax() - 1
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"])
    frame["cumulative_market_pnl"] = frame["market_pnl"].fillna(0).cumsum()
    return frame


def write_chart(engine: sa.Engine, path: Path, account: str | None = None) -> Path:
    frame = chart_data(engine, account)
    if frame.empty:
        raise ValueError("no snapshots to chart yet")
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    who = account or "all accounts"
    top.plot(frame["snapshot_date"], frame["total_value"] / 1e5, label="total value",
             color="tab:blue")
    top.set_ylabel("total value (lakh INR)")
    top.set_title(f"Kite Snapshotter: {who}")
    pnl_axis = top.twinx()
    pnl_axis.plot(frame["snapshot_date"], frame["cumulative_market_pnl"] / 1e5,
                  label="cumulative market P&L", color="tab:green")
    pnl_axis.set_ylabel("cumulative market P&L (lakh INR)")
    lines = top.get_lines() + pnl_axis.get_lines()
    top.legend(lines, [str(line.get_label()) for line in lines], loc="upper left")
    bottom.fill_between(frame["snapshot_date"], frame["drawdown"].fillna(0) * 100, 0,
                        color="tab:red", alpha=0.4)
    bottom.set_ylabel("drawdown (%)")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def benchmark_chart_data(engine: sa.Engine, benchmark: str, account: str | None = None,
                         ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The benchmark's stored name, the NAV (one account's ``nav_daily``, or
    ``nav_daily_all``) and the benchmark's closes, each rebased to 100: the NAV on its
    first session (where the series stops and starts again, the days between count 0%),
    the index at its last close on or before that session."""
    from snapshotter.reports.performance import benchmark_closes

    name, closes = benchmark_closes(engine, benchmark)
    with engine.connect() as conn:
        if account:
            nav = pd.read_sql(sa.text(
                "SELECT snapshot_date, nav FROM nav_daily WHERE account = :a "
                "ORDER BY snapshot_date"), conn, params={"a": account})
        else:
            nav = pd.read_sql(sa.text(
                "SELECT snapshot_date, nav FROM nav_daily_all ORDER BY snapshot_date"), conn)
    nav["snapshot_date"] = pd.to_datetime(nav["snapshot_date"])
    nav["rebased"] = 100 * (nav["nav"] / nav["nav"].shift()).fillna(1.0).cumprod()
    if nav.empty:
        return name, nav, closes.iloc[0:0]
    first, last = nav["snapshot_date"].iloc[0], nav["snapshot_date"].iloc[-1]
    before = closes[closes["date"] <= first]
    start = before.index[-1] if not before.empty else 0
    shown = closes.loc[start:]
    shown = shown[shown["date"] <= last].copy()
    shown["rebased"] = 100 * shown["close"] / shown["close"].iloc[0] if not shown.empty \
        else shown["close"]
    return name, nav, shown


def write_benchmark_chart(engine: sa.Engine, path: Path, benchmark: str,
                          account: str | None = None) -> Path:
    """`chart --benchmark NAME`: the NAV against the benchmark, both rebased to 100."""
    name, nav, closes = benchmark_chart_data(engine, benchmark, account)
    if nav.empty:
        raise ValueError("no snapshots to chart yet")
    fig, axis = plt.subplots(figsize=(10, 5))
    who = account or "all accounts"
    axis.plot(nav["snapshot_date"], nav["rebased"], label=f"NAV, {who}", color="tab:blue")
    axis.plot(closes["date"], closes["rebased"], label=name, color="tab:gray")
    axis.axhline(100, color="black", linewidth=0.5)
    axis.set_ylabel("rebased to 100")
    axis.set_title(f"Kite Snapshotter: {who} against {name}")
    axis.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
