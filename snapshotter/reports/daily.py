"""`report holdings`, `report pnl` and `report history`: the daily views
(``holding_daily``, ``pnl_daily``) over a window; holdings' XIRR from the imported lots."""

from __future__ import annotations

from datetime import date

import pandas as pd

from snapshotter.reports.query import Bind, Filters, connection, filter_sql, read_frame


def holdings(engine: Bind, filters: Filters = Filters()) -> pd.DataFrame:
    """Each account's holdings on the last session in range (its last complete snapshot
    with holdings)."""
    where, params = filter_sql(filters, alias="h")
    columns = """h.account, h.snapshot_date, h.exchange, h.tradingsymbol, h.quantity,
               h.average_price, h.price, h.value, h.unrealised_pnl, h.day_pnl, h.weight,
               h.quantity_change"""
    with connection(engine) as conn:
        # The last dates first, from the tables: holding_daily filtered on its dates reads
        # those sessions alone, where a join with its own MAX() reads every session.
        last = read_frame(conn, f"""
            SELECT h.account, MAX(h.snapshot_date) AS last FROM holdings h
            JOIN snapshots s ON s.id = h.snapshot_id AND s.status = 'ok'
            WHERE {where} GROUP BY h.account""", params)
        days = sorted({str(day) for day in last["last"]})
        if not days:
            return read_frame(conn, f"SELECT {columns} FROM holding_daily h WHERE 1 = 0", {})
        names = {f"day_{i}": day for i, day in enumerate(days)}
        found = read_frame(conn, f"""
            SELECT {columns} FROM holding_daily h
            WHERE {where} AND h.snapshot_date IN ({", ".join(":" + n for n in names)})""",
                           {**params, **{n: date.fromisoformat(d[:10])
                                         for n, d in names.items()}})
    wanted = {(str(a), str(d)[:10]) for a, d in zip(last["account"], last["last"],
                                                    strict=True)}
    keep = [(str(a), str(d)[:10]) in wanted for a, d in zip(found["account"],
                                                         found["snapshot_date"], strict=True)]
    out = found[keep]
    return out.sort_values(["account", "value"], ascending=[True, False],
                           ignore_index=True, kind="stable")


def pnl(engine: Bind, filters: Filters = Filters()) -> pd.DataFrame:
    where, params = filter_sql(filters)
    return read_frame(engine, f"""
        SELECT account, snapshot_date, previous_snapshot_date, total_value, value_change,
               cash_flow, market_pnl, daily_return, twr_index, drawdown
        FROM pnl_daily WHERE {where} ORDER BY snapshot_date, account""", params)


def history(engine: Bind, symbol: str, filters: Filters = Filters()) -> pd.DataFrame:
    where, params = filter_sql(filters)
    params["symbol"] = symbol.upper()
    return read_frame(engine, f"""
        SELECT account, snapshot_date, exchange, tradingsymbol, quantity, quantity_change,
               average_price, price, value, unrealised_pnl, day_pnl, weight
        FROM holding_daily WHERE UPPER(tradingsymbol) = :symbol AND {where}
        ORDER BY snapshot_date, account""", params)


def with_xirr(engine: Bind, holdings: pd.DataFrame) -> pd.DataFrame:
    """``holdings`` (report holdings' rows) with ``xirr``: the annualised return of the
    holding's open FIFO lots (each bought at its price on its date; a bonus lot at 0),
    valued at the holding's price on its snapshot date, as Console shows for holdings.
    A fraction (0.12 = 12% a year); NULL without open lots or when it has no answer."""
    from pyxirr import InvalidPaymentsError, xirr

    out = holdings.copy()
    if out.empty:
        out["xirr"] = pd.Series(dtype=float)
        return out
    accounts = tuple(sorted(set(out["account"])))
    where, params = filter_sql(Filters(accounts))
    lots = read_frame(engine, f"""
        SELECT account, COALESCE(isin, tradingsymbol) AS instrument, buy_date, quantity,
               buy_price
        FROM open_lots WHERE {where}""", params)
    held = read_frame(engine, f"""
        SELECT account, snapshot_date, exchange, tradingsymbol,
               COALESCE(NULLIF(isin, ''), tradingsymbol) AS instrument
        FROM holdings WHERE {where}""", params)
    held["snapshot_date"] = pd.to_datetime(held["snapshot_date"]).dt.date
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).dt.date
    keyed = out.merge(held, on=["account", "snapshot_date", "exchange", "tradingsymbol"],
                      how="left")
    lots["buy_date"] = pd.to_datetime(lots["buy_date"]).dt.date
    by_key = {key: group for key, group in lots.groupby(["account", "instrument"])}
    values: list[float | None] = []
    for row in keyed.itertuples(index=False):
        group = by_key.get((row.account, row.instrument))
        if group is None or row.price is None or pd.isna(row.price):
            values.append(None)
            continue
        quantity = float(group["quantity"].sum())
        dates = [*group["buy_date"], row.snapshot_date]
        amounts = [*(-group["quantity"] * group["buy_price"]), quantity * float(row.price)]
        try:
            rate = xirr(dates, amounts)
        except (InvalidPaymentsError, ValueError):
            rate = None
        values.append(round(rate, 6) if rate is not None and pd.notna(rate) else None)
    out["xirr"] = values
    return out
