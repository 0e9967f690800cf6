"""Which accounts' FIFO lots a run must rebuild: read without loading the import code
(``store.imports``, ``pipeline.imports`` and pandas' Console parsing), so that a run of
accounts without imported trades never loads it."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from snapshotter.store.models import ConsoleFile, LotInstrument, Trade

_TRADES = Trade.metadata.tables[Trade.__tablename__]
_FILES = ConsoleFile.metadata.tables[ConsoleFile.__tablename__]
_LOT_INSTRUMENTS = LotInstrument.metadata.tables[LotInstrument.__tablename__]


def accounts_with_stale_lots(engine: sa.Engine, accounts: Sequence[str]) -> list[str]:
    """Those of ``accounts`` whose lots wait for a rebuild (an import or ``import forget``
    stored its files, and the rebuild after it failed or was cut off)."""
    table = _LOT_INSTRUMENTS
    with engine.connect() as conn:
        return sorted(conn.execute(
            sa.select(table.c.account).distinct()
            .where(table.c.account.in_(set(accounts)), table.c.stale)).scalars())


def accounts_with_trades(engine: sa.Engine, accounts: Sequence[str]) -> list[str]:
    """Those of ``accounts`` with a trade: looked for (one indexed probe each) only in
    the accounts that imported a tradebook (every trade row comes from one), so a run of
    accounts without imports costs one query over the few imported files."""
    table = _TRADES
    with engine.connect() as conn:
        imported = set(conn.execute(
            sa.select(_FILES.c.account).distinct()
            .where(_FILES.c.account.in_(set(accounts)), _FILES.c.kind == "tradebook"))
            .scalars())
        return sorted(a for a in imported if conn.execute(
            sa.select(sa.literal(1)).where(table.c.account == a).limit(1)).first())


def after_run(engine: sa.Engine, stored: Sequence[str], others: Sequence[str] = ()) -> list[str]:
    """The accounts whose lots a run rebuilds: those it ``stored`` a snapshot of that
    have trades (a new snapshot can show a split or bonus), and the ``others`` whose
    lots wait for a rebuild."""
    waiting = accounts_with_stale_lots(engine, others) if others else []
    with_trades = accounts_with_trades(engine, stored) if stored else []
    return sorted(set(with_trades) | set(waiting))
