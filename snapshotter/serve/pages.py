"""The dashboard's first page until the overview lands: the accounts stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from snapshotter.reports.query import read_frame
from snapshotter.serve.database import snapshot
from snapshotter.serve.tables import Table, answer

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        with snapshot(dashboard.engine) as conn:
            accounts = read_frame(conn, """
                SELECT account, MAX(snapshot_date) AS last_snapshot, COUNT(*) AS sessions
                FROM portfolio_daily GROUP BY account ORDER BY account""", {})
        table = Table("accounts", accounts, numbers=["sessions"])
        return answer(dashboard, request, "overview.html", [table], title="Overview")

    return [Route("/", overview, name="overview")]
