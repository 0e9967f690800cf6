"""The database schema: the product's public SQL interface (documented in README.md).

The ledger, raw payloads and per-snapshot totals are typed ORM models; the data tables
are built from the route table (``snapshotter.routes``), which normalize reads too, so
that what normalize produces and what the database holds cannot drift apart. Alembic
migrations create all of it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import types
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from snapshotter.routes import ROUTES, Route


class UTCDateTime(types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as UTC on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None,
                             dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


SNAPSHOT_OK = "ok"
SNAPSHOT_FAILED = "failed"
SNAPSHOT_SUPERSEDED = "superseded"
# A warned answer seen again this much later (same warnings) is taken as what Kite means
# (store.writes); the daemon fetches a warned snapshot again after it (ops.daemon, status).
WARNING_CONFIRM_AFTER = timedelta(minutes=30)


class Snapshot(Base):
    """The ledger: one row per attempt to snapshot one account for one session."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    snapshot_date: Mapped[date] = mapped_column(sa.Date)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.Text)
    final: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    error: Mapped[str | None] = mapped_column(sa.Text)
    holdings_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    positions_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    funds_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    mf_holdings_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    source: Mapped[str] = mapped_column(sa.Text, default="kite")
    # Set when Kite rejected the credentials: a digest of them (user id, password, TOTP
    # secret, app key/secret; the high-entropy TOTP secret makes it useless to guess
    # from), so every replica refuses to try the same credentials again.
    rejected_credentials: Mapped[str | None] = mapped_column(sa.Text)
    # Answers that parse but look wrong (normalize.normalize_snapshot, store): one plain
    # sentence per line, naming the account, route and record. NULL when none.
    warnings: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("status IN ('ok', 'failed', 'superseded')", name="status"),
        # At most one complete snapshot per account and session.
        sa.Index("uq_snapshots_ok_account_date", "account", "snapshot_date", unique=True,
                 sqlite_where=sa.text("status = 'ok'"),
                 postgresql_where=sa.text("status = 'ok'")),
        sa.Index("ix_snapshots_account_date", "account", "snapshot_date"),
    )


class RawPayload(Base):
    """Each snapshot's raw Kite answers (gzip JSON), for replay with ``run --from-raw``."""

    __tablename__ = "raw_payloads"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)

    __table_args__ = (sa.UniqueConstraint("snapshot_id", "name"),)


class SnapshotTotals(Base):
    """Per complete snapshot, the sums ``portfolio_daily`` shows (and ``holding_daily``'s
    weight divides by), so that the views do not re-sum every holding row at query time.

    Derived data: ``store`` fills a snapshot's row with ``views.SNAPSHOT_TOTALS`` in the
    transaction that writes or re-derives its rows, and deletes it with them when the
    snapshot is superseded; only complete (status ok) snapshots have one. Money rounded to
    6 decimals; a part without rows is 0.
    """

    __tablename__ = "snapshot_totals"

    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    account: Mapped[str] = mapped_column(sa.Text)
    snapshot_date: Mapped[date] = mapped_column(sa.Date)
    holdings_invested: Mapped[float] = mapped_column(sa.Double)
    holdings_value: Mapped[float] = mapped_column(sa.Double)
    holdings_day_pnl: Mapped[float] = mapped_column(sa.Double)
    mf_invested: Mapped[float] = mapped_column(sa.Double)
    mf_value: Mapped[float] = mapped_column(sa.Double)
    positions_pnl: Mapped[float] = mapped_column(sa.Double)
    positions_m2m: Mapped[float] = mapped_column(sa.Double)
    cash: Mapped[float] = mapped_column(sa.Double)
    cash_flow: Mapped[float] = mapped_column(sa.Double)

    __table_args__ = (
        sa.Index("ix_snapshot_totals_account_date", "account", "snapshot_date"),
    )


class SnapshotNav(Base):
    """Per complete snapshot, the account's NAV ``units`` and ``nav`` after that session
    (base 1000; see the ``nav_daily`` view, which shows them), so that no query runs the
    recursion over every account's history.

    Derived data: ``store`` fills it with ``views.SNAPSHOT_NAV`` in the transaction that
    writes or re-derives a snapshot, for the account from that session onwards (a NAV
    depends on the previous one); a superseded snapshot's row goes with it. ``units`` and
    ``nav`` are NULL where the series stops (total value 0 or less).
    """

    __tablename__ = "snapshot_nav"

    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    account: Mapped[str] = mapped_column(sa.Text)
    snapshot_date: Mapped[date] = mapped_column(sa.Date)
    units: Mapped[float | None] = mapped_column(sa.Double)
    nav: Mapped[float | None] = mapped_column(sa.Double)

    __table_args__ = (
        sa.Index("ix_snapshot_nav_account_date", "account", "snapshot_date"),
    )


class BenchmarkDaily(Base):
    """Daily closes of a benchmark index (``benchmark import`` / ``benchmark fetch``), one
    row per name and date, upserted."""

    __tablename__ = "benchmark_daily"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    close: Mapped[float] = mapped_column(sa.Double)


_SQL_TYPES: dict[str, Any] = {
    "str": sa.Text, "int": sa.BigInteger, "float": sa.Double, "bool": sa.Boolean,
    "datetime": UTCDateTime, "date": sa.Date,
}


def _data_table(route: Route) -> sa.Table:
    return sa.Table(
        route.table,
        Base.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("snapshot_id", sa.ForeignKey("snapshots.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("snapshot_date", sa.Date, nullable=False),
        *(sa.Column(col, _SQL_TYPES[kind]()) for col, kind in route.columns.items()),
        sa.Column("extra", sa.JSON),
        sa.UniqueConstraint("account", "snapshot_date", *route.natural_key),
    )


DATA_TABLES: dict[str, sa.Table] = {route.table: _data_table(route) for route in ROUTES}
holdings = DATA_TABLES["holdings"]
positions = DATA_TABLES["positions"]
funds = DATA_TABLES["funds"]
mf_holdings = DATA_TABLES["mf_holdings"]

# Indexes for the SQL views (snapshotter/views.py; created by migration 0002): per-snapshot
# holdings sums read from the index alone, and one instrument's history.
sa.Index("ix_holdings_totals", holdings.c.account, holdings.c.snapshot_date,
         holdings.c.snapshot_id, holdings.c.quantity, holdings.c.t1_quantity,
         holdings.c.average_price, holdings.c.last_price, holdings.c.close_price)
sa.Index("ix_holdings_symbol", holdings.c.account, holdings.c.tradingsymbol,
         holdings.c.snapshot_date)
