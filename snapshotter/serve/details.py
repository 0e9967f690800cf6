"""The instrument, tax and status pages: `report history SYMBOL` with the instrument's
trades, open lots and corporate actions; `report tax --fy`; `snapshotter status` with
the spool."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from snapshotter.reports import daily, instrument, tax
from snapshotter.reports.query import Filters, read_frame
from snapshotter.reports.render import with_labels
from snapshotter.serve import formatting
from snapshotter.serve.database import snapshot
from snapshotter.serve.tables import Table, answer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from snapshotter.serve.app import Dashboard


def account_link(row: pd.Series) -> str | None:
    return f"/account/{quote(str(row['account']), safe='')}"


def instrument_link(symbol: str, account: str | None = None) -> str:
    link = f"/instrument/{quote(symbol, safe='')}"
    return f"{link}?account={quote(account, safe='')}" if account else link


#: the account column links to the account's page
ACCOUNT_LINKS: dict[str, Callable[[pd.Series], str | None]] = {"account": account_link}


def _labels(dashboard: Dashboard) -> dict[str, str]:
    return {a.user_id: a.label for a in dashboard.config.accounts if a.label}


def _known_account(dashboard: Dashboard, conn: sa.Connection, text: str | None,
                   ) -> str | None:
    """The ``account`` query parameter: None when absent; a 404 when neither configured
    nor stored."""
    if text is None or not text.strip():
        return None
    account = text.strip().upper()
    if any(a.user_id == account for a in dashboard.config.accounts):
        return account
    stored = read_frame(conn, "SELECT 1 AS found FROM snapshots WHERE account = :account LIMIT 1",
                        {"account": account})
    if stored.empty:
        raise HTTPException(404, f"no account {account!r}")
    return account


def _day(request: Request, name: str) -> date | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(404, f"{name}={text!r} is not a date like 2026-04-01") from None


def axis_ticks(values: list[float], count: int = 5) -> dict[str, list[Any]]:
    """Round tick values that frame ``values`` (the axis' range: first to last tick) and
    their labels in lakh/crore (short_rupees)."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - max(abs(low) * 0.05, 1), high + max(abs(high) * 0.05, 1)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    index = math.floor(low / step)
    ticks = [round(index * step, 6)]
    while ticks[-1] < high:
        index += 1
        ticks.append(round(index * step, 6))
    decimals = 0 if float(step).is_integer() else 2
    labels = [formatting.short_rupees(t) if abs(t) >= formatting.LAKH
              else formatting.rupees(t, decimals) for t in ticks]
    return {"tickvals": ticks, "ticktext": labels,
            "range": [ticks[0], ticks[-1]]}


def chart_json(history: pd.DataFrame) -> str:
    """The instrument chart's data, escaped for HTML: per account its value (left axis),
    then per account its price (right axis: each account's own quote and splits)."""
    traces: list[dict[str, Any]] = []
    for column, axis in (("value", "y"), ("price", "y2")):
        for account, rows in history.groupby("account", sort=True):
            values = [float(v) for v in rows[column].fillna(0.0)]
            traces.append({"name": f"{column} {account}", "axis": axis,
                           "x": [str(d)[:10] for d in rows["snapshot_date"]], "y": values,
                           "text": [formatting.rupees(v) for v in values]})
    data = {"traces": traces,
            "value_axis": axis_ticks([v for t in traces if t["axis"] == "y" for v in t["y"]]),
            "price_axis": axis_ticks([v for t in traces if t["axis"] == "y2" for v in t["y"]])}
    return json.dumps(data).replace("<", "\\u003c")


def _instrument(dashboard: Dashboard, request: Request) -> Response:
    symbol = request.path_params["symbol"].strip().upper()
    with snapshot(dashboard.engine) as conn:
        account = _known_account(dashboard, conn, request.query_params.get("account"))
        accounts = (account,) if account else ()
        window = Filters(accounts, _day(request, "from"), _day(request, "to"))
        history = daily.history(conn, symbol, window)
        trades = instrument.trades(conn, symbol, window)
        lots = instrument.open_lots(conn, symbol, accounts)
        actions = instrument.corporate_actions(conn, symbol, window)
        if history.empty and trades.empty and lots.empty and actions.empty:
            whose = f" for account {account}" if account else ""
            raise HTTPException(404, f"no instrument {symbol!r}{whose}")
    labels = _labels(dashboard)
    tables = [
        Table("history", with_labels(history, labels), caption="Session by session",
              money=["average_price", "price", "value", "unrealised_pnl", "day_pnl"],
              numbers=["quantity", "quantity_change"], percents=["weight"],
              signed=["unrealised_pnl", "day_pnl", "quantity_change"], links=ACCOUNT_LINKS),
        Table("trades", with_labels(trades, labels), caption="Imported trades",
              money=["price", "value"], numbers=["quantity"], links=ACCOUNT_LINKS),
        Table("open_lots", with_labels(lots, labels), caption="Open FIFO lots",
              money=["buy_price", "cost"], numbers=["quantity"], links=ACCOUNT_LINKS),
        Table("corporate_actions", with_labels(actions, labels), caption="Corporate actions",
              money=["old_average_price", "new_average_price"],
              numbers=["ratio", "old_quantity", "new_quantity"], links=ACCOUNT_LINKS),
    ]
    latest = history.groupby("account", sort=True).tail(1)
    return answer(dashboard, request, "instrument.html", tables, title=symbol,
                  symbol=symbol, account=account,
                  latest=latest.to_dict("records"),
                  chart=chart_json(history) if not history.empty else None,
                  accounts=sorted(set(history["account"]) | set(trades["account"])
                                  | set(lots["account"])),
                  link=instrument_link)


def _tax(dashboard: Dashboard, request: Request) -> Response:
    from snapshotter.sessions import IST, utc_now

    current = tax.fiscal_year_of(utc_now().astimezone(IST).date())
    fy = request.query_params.get("fy") or current
    try:
        start, end = tax.fiscal_year(fy)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None
    with snapshot(dashboard.engine) as conn:
        frame = tax.tax(conn, fy)
        span = read_frame(conn, """
            SELECT MIN(sell_date) AS first, MAX(sell_date) AS last FROM realised_lots
            UNION ALL SELECT MIN(ex_date), MAX(ex_date) FROM dividends""", {})
    days = [date.fromisoformat(str(d)[:10]) for d in [*span["first"], *span["last"]]
            if d is not None and not pd.isna(d)]
    years = {current, fy}
    if days:
        first, last = min(days), max(days)
        for year in range(first.year - 1, last.year + 1):
            name = tax.fiscal_year_of(date(year, 4, 1))
            fy_start, fy_end = tax.fiscal_year(name)
            if fy_end >= first and fy_start <= last:
                years.add(name)
    figures = [c for c in tax.TAX_COLUMNS if c not in ("account", "unmatched")]
    headers = {f"{term}_{suffix}": f"{term} {suffix.replace('_', ' ', 1).replace('_', '-')}"
               for term in tax.TERMS.values() for suffix in tax.SUFFIXES}
    table = Table("tax", with_labels(frame, _labels(dashboard)), money=figures,
                  numbers=["unmatched"], signed=figures, links=ACCOUNT_LINKS, headers=headers,
                  caption=f"FY {fy}: {start} to {end}")
    return answer(dashboard, request, "tax.html", [table], title=f"Tax FY {fy}", fy=fy,
                  years=sorted(years, reverse=True), note=tax.tax_note(fy))


def _status(dashboard: Dashboard, request: Request) -> Response:
    from snapshotter.ops import status
    from snapshotter.sessions import utc_now
    from snapshotter.store import spool

    with snapshot(dashboard.engine) as conn:
        report = status.build_status(dashboard.config, conn, utc_now())
    rows = []
    for a in report.accounts:
        c, f = a.last_complete, a.last_failure
        rows.append({
            "account": a.account,
            "last_complete": c.snapshot_date.isoformat() if c else None,
            "kind": status.snapshot_kind(a) if c else None,
            "taken_at": formatting.ist(c.taken_at) if c else None,
            "warnings": len(a.warnings),
            "last_failure": f.snapshot_date.isoformat() if f else None,
            "error": (f.error or "") if f else None,
            "has_latest_session": "yes" if a.has_latest else "NO",
            "next_run": status.next_run_text(a.next_run)})
    accounts = pd.DataFrame(rows, columns=[
        "account", "last_complete", "kind", "taken_at", "warnings", "last_failure", "error",
        "has_latest_session", "next_run"])
    # Read only: a spooled snapshot is stored (and removed) by the next run, never here.
    waiting = spool.pending(dashboard.config.state_dir)
    spooled = pd.DataFrame(
        [{"account": s.account, "snapshot_date": s.snapshot_date.isoformat(),
          "taken_at": formatting.ist(s.taken_at), "final": "yes" if s.final else "no",
          "routes": len(s.payloads)} for s in waiting],
        columns=["account", "snapshot_date", "taken_at", "final", "routes"])
    tables = [Table("accounts", with_labels(accounts, _labels(dashboard)), numbers=["warnings"],
                    links=ACCOUNT_LINKS, caption="Accounts"),
              Table("spool", spooled, numbers=["routes"], links=ACCOUNT_LINKS,
                    caption="Waiting in the spool")]
    return answer(dashboard, request, "status.html", tables, title="Status", report=report,
                  warnings=status.warning_lines(report),
                  missing=[a.account for a in report.accounts if not a.has_latest])


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    # Plain functions: Starlette runs them in its thread pool, off the event loop.
    def instrument_page(request: Request) -> Response:
        return _instrument(dashboard, request)

    def tax_page(request: Request) -> Response:
        return _tax(dashboard, request)

    def status_page(request: Request) -> Response:
        return _status(dashboard, request)

    return [Route("/instrument/{symbol}", instrument_page, name="instrument"),
            Route("/tax", tax_page, name="tax"),
            Route("/status", status_page, name="status")]
