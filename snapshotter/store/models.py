"""The database schema: the product's public SQL interface (documented in docs/schema.md).

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
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

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


# The ledger's ``{table}_count`` columns, one per route: how many rows a complete
# snapshot stored in each data table (data table -> column).
COUNT_COLUMNS: dict[str, str] = {route.table: route.count_column for route in ROUTES}


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
    # COUNT_COLUMNS, here in the table's column order (at class scope, locals() is the
    # namespace the class is built from).
    locals().update({column: mapped_column(sa.Integer, nullable=False, default=0)
                     for column in COUNT_COLUMNS.values()})
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

    def counts(self) -> dict[str, int]:
        """The rows it stored per data table (its ``{table}_count`` columns)."""
        return {table: getattr(self, column) for table, column in COUNT_COLUMNS.items()}


class RawPayload(Base):
    """Each snapshot's raw Kite answers (gzip JSON), for replay with ``run --from-raw``."""

    __tablename__ = "raw_payloads"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)

    __table_args__ = (sa.UniqueConstraint("snapshot_id", "name"),)


class TotpStep(Base):
    """Per account, the last 30 s TOTP step a 2FA code was made for, reserved here by
    the process about to send it (``store.totp``) before the code goes out: moved forward
    only by a conditional UPDATE, so no two processes or hosts ever send one step's code,
    whatever the run lock does. ``holder`` names the process (host and pid)."""

    __tablename__ = "totp_steps"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    step: Mapped[int] = mapped_column(sa.BigInteger)
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    holder: Mapped[str] = mapped_column(sa.Text)


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


class SqlFingerprint(Base):
    """The SQL the views and each derived table were last built with: ``name`` (``views``,
    or the derived table) and the SHA-256 of the text (``views.fingerprints``). After
    every migration ``views.refresh`` recreates the views and rebuilds a derived table
    whose fill SQL no longer matches."""

    __tablename__ = "sql_fingerprints"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.Text)


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


class LedgerFlow(Base):
    """Per complete snapshot whose cash flows the imported ledger covers, that flow (what
    ``portfolio_daily.cash_flow`` shows for it): the ledger's deposits and withdrawals
    posted from the previous snapshot's date (``previous_snapshot_date``) to the day
    before this one, minus what the previous snapshot showed of its own day, plus what
    this one shows of its own (see the ``portfolio_daily`` view).

    Derived data: ``store`` fills it with ``views.LEDGER_FLOWS`` for the account from a
    session onwards, in the transaction that writes a snapshot or imports a ledger file;
    a superseded snapshot's row goes with it. A snapshot without a row keeps its own
    flow (intraday_payin - payout).
    """

    __tablename__ = "ledger_flows"

    snapshot_id: Mapped[int] = mapped_column(
        sa.ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True,
        autoincrement=False)
    account: Mapped[str] = mapped_column(sa.Text)
    snapshot_date: Mapped[date] = mapped_column(sa.Date)
    previous_snapshot_date: Mapped[date] = mapped_column(sa.Date)
    cash_flow: Mapped[float] = mapped_column(sa.Double)

    __table_args__ = (
        sa.Index("ix_ledger_flows_account_date", "account", "snapshot_date"),
    )


class BenchmarkDaily(Base):
    """Daily closes of a benchmark index (``benchmark import`` / ``benchmark fetch``), one
    row per name and date, upserted."""

    __tablename__ = "benchmark_daily"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    close: Mapped[float] = mapped_column(sa.Double)


class HouseholdLeave(Base):
    """An account that left the household (`snapshotter household leave`): from the first
    household session on or after ``left_on`` its last value counted leaves the
    all-accounts figures as a withdrawal (``household_daily``)."""

    __tablename__ = "household_leaves"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    left_on: Mapped[date] = mapped_column(sa.Date)


# --- Console imports (``snapshotter import``; docs/console-imports.md) ----------------

LEDGER_KINDS = ("deposit", "withdrawal", "settlement", "charge", "other")


class ConsoleFile(Base):
    """One imported Console file: every row of ``trades``, ``ledger_entries``,
    ``dividends`` and ``corporate_action_entries`` names the file it came from. A ledger
    file's ``first_date``/``last_date`` (its first and last posting date; NULL for the
    other kinds) are the days whose cash flows it covers (``ledger_flows``)."""

    __tablename__ = "console_files"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    file_name: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.Text)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rows: Mapped[int] = mapped_column(sa.Integer)
    new_rows: Mapped[int] = mapped_column(sa.Integer)
    # A ledger file's first and last posting_date: the days its flows cover.
    first_date: Mapped[date | None] = mapped_column(sa.Date)
    last_date: Mapped[date | None] = mapped_column(sa.Date)

    __table_args__ = (
        sa.CheckConstraint("kind IN ('tradebook', 'ledger', 'dividends', 'actions')",
                           name="kind"),
    )


class FromConsoleFile:
    """What every imported row has: its id, account, and the file it came from."""

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, sort_order=-4)
    account: Mapped[str] = mapped_column(sa.Text, sort_order=-3)
    source_file: Mapped[str] = mapped_column(sa.Text, sort_order=-1)

    @declared_attr
    def file_id(cls) -> Mapped[int]:
        return mapped_column(sa.ForeignKey("console_files.id", ondelete="CASCADE"),
                             index=True, sort_order=-2)


class Trade(FromConsoleFile, Base):
    """One fill of Console's tradebook (``symbol`` is stored as ``tradingsymbol``, as in
    every other table); IDs kept as text."""

    __tablename__ = "trades"

    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    trade_date: Mapped[date] = mapped_column(sa.Date)
    exchange: Mapped[str] = mapped_column(sa.Text)
    segment: Mapped[str] = mapped_column(sa.Text)
    series: Mapped[str | None] = mapped_column(sa.Text)
    trade_type: Mapped[str] = mapped_column(sa.Text)
    auction: Mapped[bool | None] = mapped_column(sa.Boolean)
    quantity: Mapped[float] = mapped_column(sa.Double)
    price: Mapped[float] = mapped_column(sa.Double)
    trade_id: Mapped[str] = mapped_column(sa.Text)
    order_id: Mapped[str | None] = mapped_column(sa.Text)
    order_execution_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expiry_date: Mapped[date | None] = mapped_column(sa.Date)

    __table_args__ = (
        sa.UniqueConstraint("account", "exchange", "trade_id"),
        sa.CheckConstraint("trade_type IN ('buy', 'sell')", name="trade_type"),
        # An instrument's trades (by ISIN, or symbol where the ISIN is blank), for the
        # lots of the instruments an import touched.
        sa.Index("ix_trades_account_isin", "account", "isin"),
        sa.Index("ix_trades_account_tradingsymbol", "account", "tradingsymbol"),
    )


class LedgerEntry(FromConsoleFile, Base):
    """One line of Console's funds ledger (the Opening/Closing Balance rows are not
    stored). ``amount`` = credit - debit (money in is positive); ``occurrence`` numbers
    identical lines of one day (1, 2, ...) so that re-imports recognise each."""

    __tablename__ = "ledger_entries"

    posting_date: Mapped[date] = mapped_column(sa.Date)
    particulars: Mapped[str] = mapped_column(sa.Text)
    cost_center: Mapped[str | None] = mapped_column(sa.Text)
    voucher_type: Mapped[str] = mapped_column(sa.Text)
    debit: Mapped[float] = mapped_column(sa.Double)
    credit: Mapped[float] = mapped_column(sa.Double)
    net_balance: Mapped[float] = mapped_column(sa.Double)
    amount: Mapped[float] = mapped_column(sa.Double)
    kind: Mapped[str] = mapped_column(sa.Text)
    occurrence: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        sa.UniqueConstraint("account", "posting_date", "voucher_type", "particulars",
                            "debit", "credit", "occurrence"),
        sa.CheckConstraint(
            "kind IN ('deposit', 'withdrawal', 'settlement', 'charge', 'other')",
            name="kind"),
        sa.Index("ix_ledger_entries_account_kind", "account", "kind", "posting_date"),
    )


class Dividend(FromConsoleFile, Base):
    """One row of Console's equity dividends report."""

    __tablename__ = "dividends"

    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    ex_date: Mapped[date] = mapped_column(sa.Date)
    quantity: Mapped[float] = mapped_column(sa.Double)
    dividend_per_share: Mapped[float] = mapped_column(sa.Double)
    net_dividend_amount: Mapped[float] = mapped_column(sa.Double)
    occurrence: Mapped[int] = mapped_column(sa.Integer)

    __table_args__ = (
        sa.UniqueConstraint("account", "tradingsymbol", "ex_date", "dividend_per_share",
                            "occurrence"),
    )


class CorporateActionEntry(FromConsoleFile, Base):
    """A split or bonus listed by the user (``snapshotter import actions``), for the
    ones the snapshots missed or cannot tell apart (a split and a bonus look alike)."""

    __tablename__ = "corporate_action_entries"

    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    ex_date: Mapped[date] = mapped_column(sa.Date)
    action: Mapped[str] = mapped_column(sa.Text)
    new_shares: Mapped[float] = mapped_column(sa.Double)
    for_every: Mapped[float] = mapped_column(sa.Double)

    __table_args__ = (
        sa.UniqueConstraint("account", "tradingsymbol", "ex_date", "action"),
        sa.CheckConstraint("action IN ('split', 'bonus')", name="action"),
    )


class RealisedLot(Base):
    """FIFO lots: each piece of a sale matched with the buy it closed. Derived data,
    rebuilt per account from ``trades`` and the corporate actions by every import and
    by ``run`` (docs/console-imports.md "FIFO lots")."""

    __tablename__ = "realised_lots"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text)
    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    buy_date: Mapped[date | None] = mapped_column(sa.Date)
    sell_date: Mapped[date] = mapped_column(sa.Date)
    quantity: Mapped[float] = mapped_column(sa.Double)
    buy_price: Mapped[float | None] = mapped_column(sa.Double)
    sell_price: Mapped[float] = mapped_column(sa.Double)
    pnl: Mapped[float | None] = mapped_column(sa.Double)
    holding_days: Mapped[int | None] = mapped_column(sa.Integer)
    term: Mapped[str | None] = mapped_column(sa.Text)
    unmatched: Mapped[bool] = mapped_column(sa.Boolean)
    buy_trade_id: Mapped[str | None] = mapped_column(sa.Text)
    sell_trade_id: Mapped[str] = mapped_column(sa.Text)
    # What the lots are matched by: the ISIN, or the symbol where it is blank.
    instrument: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("term IN ('intraday', 'short', 'long')", name="term"),
        sa.Index("ix_realised_lots_account_sell_date", "account", "sell_date"),
        sa.Index("ix_realised_lots_account_instrument", "account", "instrument"),
    )


class OpenLot(Base):
    """What FIFO leaves open: each buy (or bonus) lot still held, after splits."""

    __tablename__ = "open_lots"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    account: Mapped[str] = mapped_column(sa.Text, index=True)
    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    buy_date: Mapped[date] = mapped_column(sa.Date)
    quantity: Mapped[float] = mapped_column(sa.Double)
    buy_price: Mapped[float] = mapped_column(sa.Double)
    buy_trade_id: Mapped[str | None] = mapped_column(sa.Text)
    instrument: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_open_lots_account_instrument", "account", "instrument"),
    )


class LotInstrument(Base):
    """One row per account and instrument the FIFO lots were built for: the corporate
    actions they were built with (``actions``: day, kind and ratio of each, in the order
    applied; '' for none) and how many lots they gave. ``stale``: its trades changed
    (an import, ``import forget``) and its lots are not rebuilt yet. A rebuild takes the
    stale instruments and those whose actions are no longer ``actions``; the others'
    lots stay as they are (docs/console-imports.md "FIFO lots")."""

    __tablename__ = "lot_instruments"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    instrument: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    actions: Mapped[str] = mapped_column(sa.Text)
    realised_lots: Mapped[int] = mapped_column(sa.Integer)
    unmatched_lots: Mapped[int] = mapped_column(sa.Integer)
    open_lots: Mapped[int] = mapped_column(sa.Integer)
    stale: Mapped[bool] = mapped_column(sa.Boolean)


class TradePosition(Base):
    """The quantity the trades imply per account and instrument (ISIN, or the symbol
    when the ISIN is blank) from ``from_date`` until the day before ``to_date`` (NULL:
    still); only non-zero quantities. ``trade_reconciliation`` compares it with the
    snapshots' holdings."""

    __tablename__ = "trade_positions"

    account: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    instrument: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    from_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    to_date: Mapped[date | None] = mapped_column(sa.Date)
    tradingsymbol: Mapped[str] = mapped_column(sa.Text)
    isin: Mapped[str | None] = mapped_column(sa.Text)
    quantity: Mapped[float] = mapped_column(sa.Double)


# The SQLAlchemy type of each kind of the route table (data tables; the views' typed columns).
SQL_TYPES: dict[str, Any] = {
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
        *(sa.Column(col, SQL_TYPES[kind]()) for col, kind in route.columns.items()),
        sa.Column("extra", sa.JSON),
        sa.UniqueConstraint("account", "snapshot_date", *route.natural_key),
    )


DATA_TABLES: dict[str, sa.Table] = {route.table: _data_table(route) for route in ROUTES}
holdings = DATA_TABLES["holdings"]
positions = DATA_TABLES["positions"]
funds = DATA_TABLES["funds"]
mf_holdings = DATA_TABLES["mf_holdings"]

# Indexes for the SQL views (snapshotter/store/sql/views; created by migration 0002): per-snapshot
# holdings sums read from the index alone, and one instrument's history.
sa.Index("ix_holdings_totals", holdings.c.account, holdings.c.snapshot_date,
         holdings.c.snapshot_id, holdings.c.quantity, holdings.c.t1_quantity,
         holdings.c.average_price, holdings.c.last_price, holdings.c.close_price)
sa.Index("ix_holdings_symbol", holdings.c.account, holdings.c.tradingsymbol,
         holdings.c.snapshot_date)
