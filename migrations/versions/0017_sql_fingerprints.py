"""Views and fill SQL become application code: sql_fingerprints

Revision ID: 0017
Revises: 0016

Up to 0016 every migration that changed a view or a derived table's formula held the
whole text, frozen. From here on the texts live in ``snapshotter/store/sql/`` and
migrations change tables only: after every migration (``migrations/env.py``) the views
are dropped and recreated from those files, and a derived table whose fill SQL changed
is rebuilt (``snapshotter.store.views.refresh``). ``sql_fingerprints`` records what
they were built with.

Upgrade: the table, holding the fingerprints of the fill SQL the derived tables were
built with (0016's newest texts, so an unchanged text rebuilds nothing), and the views
dropped: while migrations run there are none, so a later migration may change the
tables they read. Downgrade: 0016's views back, from the frozen texts of 0016 and
before.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import context, op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

VIEWS_AT_0016 = (
    "portfolio_daily", "household_daily", "portfolio_daily_all", "pnl_daily",
    "holding_daily", "realised_estimate", "corporate_actions", "reconciliation",
    "nav_daily", "nav_daily_all", "trade_reconciliation",
)
"""The views at 0016, in dependency order."""

FILLS_AT_0016 = {"snapshot_totals": "SNAPSHOT_TOTALS", "ledger_flows": "LEDGER_FLOWS",
                 "snapshot_nav": "SNAPSHOT_NAV"}
"""Derived table -> the name of its fill SQL in the migrations up to 0016."""


def _frozen_at_0016() -> tuple[dict[str, str], dict[str, str]]:
    """The newest view texts and fill SQL of 0016 and before (name -> text)."""
    views: dict[str, str] = {}
    fills: dict[str, str] = {}
    chain = list(context.script.walk_revisions(base="base", head="0016"))
    for script in reversed(chain):  # oldest first
        views.update(getattr(script.module, "VIEWS", {}))
        for table, name in FILLS_AT_0016.items():
            if hasattr(script.module, name):
                fills[table] = getattr(script.module, name)
    return views, fills


def _drop_views() -> None:
    for name in reversed(VIEWS_AT_0016):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    table = op.create_table(
        "sql_fingerprints",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sql_fingerprints")),
    )
    _, fills = _frozen_at_0016()
    op.bulk_insert(table, [
        {"name": name, "sha256": hashlib.sha256(sql.encode("utf-8")).hexdigest()}
        for name, sql in fills.items()])
    _drop_views()


def downgrade() -> None:
    views, _ = _frozen_at_0016()
    _drop_views()
    for name in VIEWS_AT_0016:
        op.execute(views[name])
    op.drop_table("sql_fingerprints")
