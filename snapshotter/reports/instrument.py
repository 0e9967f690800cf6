"""One instrument's rows beside `report history SYMBOL`: its imported trades (Console's
tradebook), the FIFO lots still open, and the corporate actions the snapshots show
(the dashboard's instrument page)."""

from __future__ import annotations

import pandas as pd

from snapshotter.reports.query import Bind, Filters, filter_sql, read_frame


def trades(bind: Bind, symbol: str, filters: Filters = Filters()) -> pd.DataFrame:
    """The imported fills of ``symbol`` (trade_date within the window), oldest first;
    ``value`` = quantity x price."""
    where, params = filter_sql(filters, date_column="trade_date")
    params["symbol"] = symbol.upper()
    return read_frame(bind, f"""
        SELECT account, trade_date, exchange, segment, trade_type, quantity, price,
               quantity * price AS value, trade_id, order_id, order_execution_time
        FROM trades WHERE UPPER(tradingsymbol) = :symbol AND {where}
        ORDER BY trade_date, order_execution_time, trade_id, account""", params)


def open_lots(bind: Bind, symbol: str, accounts: tuple[str, ...] = ()) -> pd.DataFrame:
    """The FIFO lots of ``symbol`` still held (a bonus lot at price 0), oldest first;
    ``cost`` = quantity x buy_price."""
    where, params = filter_sql(Filters(accounts))
    params["symbol"] = symbol.upper()
    return read_frame(bind, f"""
        SELECT account, buy_date, quantity, buy_price, quantity * buy_price AS cost,
               buy_trade_id
        FROM open_lots WHERE UPPER(tradingsymbol) = :symbol AND {where}
        ORDER BY buy_date, account, id""", params)


def corporate_actions(bind: Bind, symbol: str, filters: Filters = Filters()) -> pd.DataFrame:
    """The splits and bonuses of ``symbol`` the snapshots show (view corporate_actions)."""
    where, params = filter_sql(filters)
    params["symbol"] = symbol.upper()
    return read_frame(bind, f"""
        SELECT account, snapshot_date, previous_snapshot_date, exchange, ratio,
               old_quantity, new_quantity, old_average_price, new_average_price
        FROM corporate_actions WHERE UPPER(tradingsymbol) = :symbol AND {where}
        ORDER BY snapshot_date, account""", params)
