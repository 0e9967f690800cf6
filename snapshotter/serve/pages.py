"""The dashboard's pages: overview (all accounts, groups), account, instrument, tax,
status; each reads one consistent snapshot through the views and report functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from snapshotter.serve.database import snapshot

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        with snapshot(dashboard.engine) as conn:
            rows = conn.execute(sa.text(
                "SELECT account, MAX(snapshot_date) AS last, COUNT(*) AS sessions "
                "FROM portfolio_daily GROUP BY account ORDER BY account")).all()
        return dashboard.page(request, "overview.html", title="Overview", accounts=rows)

    return [Route("/", overview, name="overview")]
