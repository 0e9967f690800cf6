"""The all-accounts (household) figures of a set of accounts, such as a config group.

``household_daily`` -> ``portfolio_daily_all`` -> ``nav_daily_all`` answer for every
account. For a set of them, the same three views' SQL (their files, as ``views.VIEWS``
holds them) is composed into one query, each view a common table expression under its
own name, with the one change that household_daily reads ``portfolio_daily`` of the
set's accounts only (a bound, expanding parameter). So a group's joins, carried sessions,
leaves and flows are the household's, by the same formulas, and an edit of a view's file
changes both (``tests/test_groups.py`` compares the two on both databases).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from snapshotter.store.views import VIEWS

CHAIN = ("household_daily", "portfolio_daily_all", "nav_daily_all")
"""The views composed, in order (each reads the one before)."""

SCOPED_SOURCE = "portfolio_daily"
"""What household_daily reads the accounts' sessions from: the one name replaced."""

NAV_COLUMNS = ("snapshot_date", "accounts", "total_value", "cash_flow", "units", "nav",
               "accounts_carried", "accounts_joined", "accounts_left")
"""nav_daily_all's columns: those of ``nav_query``'s rows."""


def _body(name: str) -> str:
    """The SELECT of a view's ``CREATE VIEW name AS SELECT ...`` file."""
    head = re.match(rf"\s*CREATE VIEW {name} AS\s", VIEWS[name])
    if head is None:
        raise RuntimeError(f"sql/views/{name}.sql does not start with CREATE VIEW {name} AS")
    return VIEWS[name][head.end():].strip().removesuffix(";")


def _scoped_household() -> str:
    body = _body(CHAIN[0])
    reads = re.findall(rf"\b{SCOPED_SOURCE}\b", body)
    if len(reads) != 1:
        raise RuntimeError(f"sql/views/{CHAIN[0]}.sql reads {SCOPED_SOURCE} "
                           f"{len(reads)} times: the scope needs the one place it does")
    scoped = f"(SELECT * FROM {SCOPED_SOURCE} WHERE account IN :accounts)"
    return re.sub(rf"\b{SCOPED_SOURCE}\b", scoped, body)


def _with() -> str:
    bodies = {CHAIN[0]: _scoped_household(), **{name: _body(name) for name in CHAIN[1:]}}
    ctes = ",\n".join(f"{name} AS (\n{body}\n)" for name, body in bodies.items())
    return f"WITH RECURSIVE\n{ctes}\n"


WITH = _with()
"""The three views as common table expressions, household_daily's source scoped."""


def scoped_query(select: str) -> sa.TextClause:
    """``select`` (reading household_daily, portfolio_daily_all or nav_daily_all) over
    the accounts bound as ``accounts`` (a list)."""
    accounts = sa.bindparam("accounts", expanding=True, type_=sa.String())
    return sa.text(WITH + select).bindparams(accounts)


NAV_QUERY = scoped_query(f"SELECT {', '.join(NAV_COLUMNS)} FROM nav_daily_all "
                         "ORDER BY snapshot_date")
CARRIED_QUERY = scoped_query("SELECT account, snapshot_date FROM household_daily "
                             "WHERE carried = 1 ORDER BY snapshot_date, account")


def nav_rows(conn: sa.Connection, accounts: Sequence[str]) -> sa.CursorResult[Any]:
    """nav_daily_all's rows, as if the database held ``accounts`` alone."""
    return conn.execute(NAV_QUERY, {"accounts": list(accounts)})


def carried_rows(conn: sa.Connection, accounts: Sequence[str]) -> sa.CursorResult[Any]:
    """household_daily's carried (account, snapshot_date) rows of ``accounts``' household."""
    return conn.execute(CARRIED_QUERY, {"accounts": list(accounts)})
