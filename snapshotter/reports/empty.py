"""Why a report has no rows, in words (`(no rows: ...)`), when the question asked of it
cannot have any: a window that ends before it starts, a symbol never held."""

from __future__ import annotations

import difflib

import sqlalchemy as sa

from snapshotter.reports.query import Bind, Filters, connection


def why_empty(engine: Bind, filters: Filters, symbol: str | None) -> str | None:
    """The reason no row can match, or None (the window merely holds none)."""
    if filters.start and filters.end and filters.start > filters.end:
        return f"--from {filters.start} is after --to {filters.end}"
    if not symbol:
        return None
    wanted = symbol.strip().upper()
    where, params = "1 = 1", {}
    if filters.accounts:
        names = [f"account_{i}" for i in range(len(filters.accounts))]
        where = f"account IN ({', '.join(':' + n for n in names)})"
        params = dict(zip(names, filters.accounts, strict=True))
    with connection(engine) as conn:
        known = set(conn.scalars(sa.text(
            f"SELECT DISTINCT UPPER(tradingsymbol) FROM holdings WHERE {where}"), params))
    if wanted in known:
        return None
    whose = f"account {', '.join(filters.accounts)}" if filters.accounts else "any account"
    close = difflib.get_close_matches(wanted, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{wanted} was never held by {whose}{hint}"
