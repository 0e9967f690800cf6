"""portfolio_daily_all: order-independent sums (whole micro-rupees)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen (a migration never imports the changing view module); downgrade takes 0002's
# (0003 left this view's text as it was).
PORTFOLIO_DAILY_ALL = """\
CREATE VIEW portfolio_daily_all AS
SELECT
    snapshot_date,
    COUNT(*) AS accounts,
    SUM(ROUND(holdings_invested * 1000000)) / 1000000 AS holdings_invested,
    SUM(ROUND(holdings_value * 1000000)) / 1000000 AS holdings_value,
    SUM(ROUND(holdings_unrealised_pnl * 1000000)) / 1000000 AS holdings_unrealised_pnl,
    SUM(ROUND(holdings_day_pnl * 1000000)) / 1000000 AS holdings_day_pnl,
    SUM(ROUND(mf_invested * 1000000)) / 1000000 AS mf_invested,
    SUM(ROUND(mf_value * 1000000)) / 1000000 AS mf_value,
    SUM(ROUND(positions_pnl * 1000000)) / 1000000 AS positions_pnl,
    SUM(ROUND(positions_m2m * 1000000)) / 1000000 AS positions_m2m,
    SUM(ROUND(cash * 1000000)) / 1000000 AS cash,
    SUM(ROUND(cash_flow * 1000000)) / 1000000 AS cash_flow,
    SUM(ROUND(total_value * 1000000)) / 1000000 AS total_value
FROM portfolio_daily
GROUP BY snapshot_date
"""

VIEWS: dict[str, str] = {"portfolio_daily_all": PORTFOLIO_DAILY_ALL}


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS portfolio_daily_all")
    op.execute(PORTFOLIO_DAILY_ALL)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS portfolio_daily_all")
    op.execute(context.script.get_revision("0002").module.VIEWS["portfolio_daily_all"])
