"""The overview (all accounts, each group, the household), one page per account and
per group: a window's figures, the NAV against a benchmark, drawdown, allocation, gaps
and warnings (docs/dashboard.md).

The all-accounts figures take seconds over years of history, so the pages read them from
a ``cache.Cache`` keyed by the data version: computed by a background thread (warmed at
start, recomputed when a run writes), a page showing the newest version computed in
full. An account's or a group's page is computed in the page's own snapshot the first
time it is asked for at a version, then read from the cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pandas as pd
import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from snapshotter.reports import performance
from snapshotter.reports.performance import ALL, Performance
from snapshotter.serve import charts, figures, kite_login, windows
from snapshotter.serve.cache import Cache, Computed, data_version
from snapshotter.serve.database import snapshot
from snapshotter.serve.figures import AccountPage, Overview, ScopeFigures
from snapshotter.serve.tables import Table, answer
from snapshotter.serve.windows import Window
from snapshotter.sessions import TradingCalendar, calendar_for

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard

#: seconds between two looks at the data version (a run's new session is seen then)
POLL_SECONDS = 3.0
#: seconds before a "computing" page reloads itself
RELOAD_SECONDS = 2

Key = tuple[Any, ...]
PERFORMANCE_MONEY = ["start_value", "end_value", "net_flows", "market_pnl"]
PERFORMANCE_PERCENTS = ["twr", "nav_return", "xirr", "cagr", "max_drawdown", "volatility",
                        "benchmark_return", "excess_return"]


class Pages:
    """The three page families over one cache."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.config = dashboard.config
        self.calendar: TradingCalendar = calendar_for(dashboard.config)
        self.groups = dashboard.config.groups()
        self.labels = {a.user_id: a.label for a in dashboard.config.accounts if a.label}
        self.cache: Cache[Key, Any] = Cache(dashboard.engine, self.compute, POLL_SECONDS)
        # what every window shares, read once per data version (by the worker alone)
        self.household: tuple[tuple[str, ...], figures.Household | None] | None = None
        self.series: tuple[tuple[str, ...], performance.ScopeRows] | None = None

    def compute(self, conn: sa.Connection, key: Key) -> Any:
        kind = key[0]
        if kind == "overview":
            _, window, benchmark = key
            version = data_version(conn)
            if self.household is None or self.household[0] != version:
                self.household = (version, figures.household(conn))
                self.series = (version, performance.read_rows(conn, performance.Scope()))
            assert self.series is not None and self.series[0] == version
            return figures.all_accounts(conn, self.calendar, window, benchmark, self.groups,
                                        self.household[1], self.series[1])
        if kind == "account":
            _, account, window, benchmark = key
            return figures.one_account(conn, self.calendar, account, window, benchmark)
        _, name, window = key
        return group_page(conn, self.calendar, name, self.groups[name], window)

    def start(self) -> None:
        """Warm the overview's default window, then every other window, then each
        account's default page (in this order)."""
        with snapshot(self.dashboard.engine) as conn:
            names = figures.benchmark_names(conn)
            accounts = [str(a) for a in conn.execute(sa.text(
                "SELECT DISTINCT account FROM snapshots WHERE status = 'ok' "
                "ORDER BY account")).scalars()]
        benchmark = names[0] if names else None
        warm: list[Key] = [("overview", Window(), benchmark)]
        warm += [("overview", Window(name), benchmark) for name in windows.WINDOWS
                 if name != windows.DEFAULT]
        warm += [("account", account, Window(), benchmark) for account in accounts]
        self.cache.start(warm)

    # -- helpers -----------------------------------------------------------------

    def benchmark(self, conn: sa.Connection, request: Request) -> str | None:
        names = figures.benchmark_names(conn)
        asked = request.query_params.get("benchmark")
        if asked is None:
            return names[0] if names else None
        if asked not in names:
            raise HTTPException(404, f"no benchmark {asked!r} stored "
                                     f"(known: {', '.join(names) or 'none'})")
        return asked

    def cached(self, key: Key, version: tuple[str, ...],
               now: Callable[[], Any] | None = None) -> Computed[Any] | None:
        """The newest result of ``key``; with ``now``, computed in the caller's snapshot
        when none is at ``version``."""
        found = self.cache.get(key, version)
        if now is not None and (found is None or found.version != version):
            found = self.cache.put(key, version, now())
        if found is None and self.cache.failed(key, version):
            raise RuntimeError(f"computing {key[0]} failed")
        return found

    def context(self, request: Request, window: Window, latest: date | None,
                benchmark: str | None, computed: Computed[Any],
                version: tuple[str, ...]) -> dict[str, Any]:
        """What every page of the family shows: the window links (keeping the other
        query parameters), the benchmark, whether newer data is being computed."""
        query = {k: v for k, v in request.query_params.items()
                 if k not in ("window", "fy", "csv")}
        extra = f"&{urlencode(query)}" if query else ""
        links = [(label, f"?{q}{extra}", chosen)
                 for label, q, chosen in windows.choices(window, latest)]
        return {"window_links": links, "benchmark": benchmark,
                "stale": computed.version != version, "labels": self.labels}

    def computing(self, request: Request, title: str) -> Response:
        return self.dashboard.page(request, "computing.html", title=title,
                                   reload=RELOAD_SECONDS)

    # -- the pages ---------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        window = windows.parse(request)
        with snapshot(self.dashboard.engine) as conn:
            version = data_version(conn)
            benchmark = self.benchmark(conn, request)
            # "Log in to Kite" for each account that needs a person's login today
            logins = kite_login.pending_logins(self.dashboard, conn)
        key = ("overview", window, benchmark)
        computed = self.cached(key, version)
        if computed is None:
            return self.computing(request, "Overview")
        data: Overview | None = computed.value
        latest = data.scope.latest if data is not None else None
        context = self.context(request, window, latest, benchmark, computed, version)
        if data is None:
            return answer(self.dashboard, request, "overview.html", [], title="Overview",
                          data=None, logins=logins, **context)
        scope = data.scope
        tables = [self.accounts_table(data, window), *scope_tables(scope, "performance")]
        if data.groups is not None:
            tables.append(groups_table(data.groups, window))
        return answer(self.dashboard, request, "overview.html", tables, title="Overview",
                      data=data, scope=scope, kpis=kpis(scope),
                      charts=charts.as_json(scope_charts(scope, by_account(data))),
                      logins=logins, **context)

    def account(self, request: Request) -> Response:
        account = request.path_params["account"]
        window = windows.parse(request)
        with snapshot(self.dashboard.engine) as conn:
            version = data_version(conn)
            known = conn.execute(sa.text(
                "SELECT 1 FROM snapshots WHERE account = :a AND status = 'ok' LIMIT 1"),
                {"a": account}).first()
            if known is None:
                raise HTTPException(404, f"no snapshots of account {account!r}")
            benchmark = self.benchmark(conn, request)
            key = ("account", account, window, benchmark)
            computed = self.cached(key, version, lambda: figures.one_account(
                conn, self.calendar, account, window, benchmark))
        assert computed is not None
        page: AccountPage = computed.value
        scope = page.scope
        context = self.context(request, window, scope.latest, benchmark, computed, version)
        tables = [*scope_tables(scope, "performance"), *account_tables(page)]
        label = self.labels.get(account)
        return answer(self.dashboard, request, "account.html", tables,
                      title=f"{account}" + (f" ({label})" if label else ""),
                      page=page, scope=scope, kpis=kpis(scope), label=label,
                      charts=charts.as_json(scope_charts(scope, None)), **context)

    def group(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.groups or len(self.groups[name]) < 2:
            raise HTTPException(404, f"no group {name!r} of two or more accounts")
        window = windows.parse(request)
        with snapshot(self.dashboard.engine) as conn:
            version = data_version(conn)
            latest = figures.latest_session(conn)
            computed = self.cached(("group", name, window), version, lambda: group_page(
                conn, self.calendar, name, self.groups[name], window))
        assert computed is not None
        result: GroupPage | None = computed.value
        context = self.context(request, window, latest, None, computed, version)
        tables = [performance_table(result.performance, window, "members")] if result \
            else []
        return answer(self.dashboard, request, "group.html", tables, title=f"Group {name}",
                      name=name, group=result, **context)

    def accounts_table(self, data: Overview, window: Window) -> Table:
        frame = data.accounts.copy()
        if self.labels:
            frame.insert(1, "label", [self.labels.get(str(a)) for a in frame["account"]])
        return Table(
            "accounts", frame,
            money=["value", "day_change", "day_market_pnl", "net_flows", "market_pnl"],
            percents=["share", "xirr", "nav_return", "twr", "max_drawdown"],
            numbers=["gaps", "carried"],
            signed=["day_change", "day_market_pnl", "market_pnl", "xirr", "nav_return",
                    "twr"],
            links={"account": account_link(window)},
            headers={"day_change": "today's change", "day_market_pnl": "today's market P&L",
                     "market_pnl": "market P&L", "nav_return": "NAV return",
                     "twr": "TWR", "xirr": "XIRR", "max_drawdown": "max drawdown"},
            caption="Accounts")


def account_link(window: Window) -> Callable[[pd.Series], str | None]:
    return lambda row: f"/account/{quote(str(row['account']), safe='')}?{window.query()}"


def groups_table(frame: pd.DataFrame, window: Window) -> Table:
    return Table("groups", frame, money=PERFORMANCE_MONEY, percents=PERFORMANCE_PERCENTS,
                 numbers=["members", "gaps", "carried"],
                 signed=["market_pnl"], links={"group": lambda row: (
                     f"/group/{quote(str(row['group']), safe='')}?{window.query()}")},
                 headers={"market_pnl": "market P&L"}, caption="Groups")


def performance_table(result: Performance, window: Window, name: str) -> Table:
    """`report performance`'s rows for the window, as its JSON has them."""
    frame = result.frame
    links: dict[str, Callable[[pd.Series], str | None]] = {
        "account": lambda row: None if row["account"] == ALL else account_link(window)(row)}
    return Table(name, frame, money=PERFORMANCE_MONEY, percents=PERFORMANCE_PERCENTS,
                 numbers=["gaps", "carried"], signed=["market_pnl", "twr", "nav_return",
                                                      "xirr", "cagr"],
                 links=links, caption="report performance")


def scope_tables(scope: ScopeFigures, name: str) -> list[Table]:
    total = sum(scope.kinds.values())
    kinds = pd.DataFrame({"kind": list(scope.kinds),
                          "value": list(scope.kinds.values()),
                          "share": [v / total if total else None for v in scope.kinds.values()]})
    return [performance_table(scope.performance, scope.window, name),
            Table("allocation", kinds, money=["value"], percents=["share"],
                  caption=f"Allocation on {scope.today.day or scope.latest}")]


def account_tables(page: AccountPage) -> list[Table]:
    holdings = page.holdings.drop(columns=["account", "snapshot_date"], errors="ignore")
    return [
        Table("holdings", holdings,
              money=["average_price", "price", "value", "unrealised_pnl", "day_pnl"],
              percents=["weight", "xirr"], numbers=["quantity", "quantity_change"],
              signed=["unrealised_pnl", "day_pnl", "xirr"],
              headers={"unrealised_pnl": "unrealised P&L", "day_pnl": "day P&L",
                       "xirr": "XIRR"}, caption="Holdings"),
        Table("positions", page.positions,
              money=["average_price", "last_price", "value", "pnl", "m2m"],
              numbers=["quantity"], signed=["pnl", "m2m"], caption="Positions (net)"),
        Table("cash", page.cash,
              money=["net", "cash", "opening_balance", "live_balance", "collateral",
                     "intraday_payin", "payout", "debits"], caption="Cash (funds)"),
    ]


def kpis(scope: ScopeFigures) -> list[tuple[str, str, str, str]]:
    """(id, label, text, css) of the headline figures."""
    from snapshotter.serve import formatting

    row, today = scope.row, scope.today

    def css(value: Any) -> str:
        if value is None or pd.isna(value) or value == 0:
            return ""
        return "up" if value > 0 else "down"

    def get(name: str) -> Any:
        value = row.get(name)
        return None if value is None or pd.isna(value) else value

    out = [
        ("total_value", f"Total value ({row.get('to', scope.latest)})",
         formatting.rupees(get("end_value")), ""),
        ("today_change", "Today's change" + (f" ({today.day})" if today.day else ""),
         formatting.rupees(today.value_change), css(today.value_change)),
        ("today_market_pnl", "Today's market P&L", formatting.rupees(today.market_pnl),
         css(today.market_pnl)),
        ("market_pnl", "Market P&L", formatting.rupees(get("market_pnl")),
         css(get("market_pnl"))),
        ("net_flows", "Net flows", formatting.rupees(get("net_flows")), ""),
        ("xirr", "XIRR", formatting.percent(get("xirr")), css(get("xirr"))),
        ("nav_return", "NAV return", formatting.percent(get("nav_return")),
         css(get("nav_return"))),
        ("twr", "TWR", formatting.percent(get("twr")), css(get("twr"))),
        ("max_drawdown", "Max drawdown", formatting.percent(get("max_drawdown")), ""),
    ]
    if "benchmark_return" in row:
        out.append(("benchmark_return", f"{row.get('benchmark')} return",
                    formatting.percent(get("benchmark_return")), css(get("benchmark_return"))))
    return out


def by_account(data: Overview) -> dict[str, float]:
    frame = data.accounts.dropna(subset=["value"])
    return {str(a): float(v) for a, v in zip(frame["account"], frame["value"], strict=True)}


def scope_charts(scope: ScopeFigures, accounts: dict[str, float] | None,
                 ) -> dict[str, dict[str, Any]]:
    out = {"chart-value": charts.value_chart(scope.values),
           "chart-nav": charts.nav_chart(scope.series.nav, scope.series.benchmark,
                                         scope.series.closes),
           "chart-drawdown": charts.drawdown_chart(scope.series.nav),
           "chart-kinds": charts.bar_chart(list(scope.kinds), list(scope.kinds.values()))}
    if accounts is not None:
        out["chart-accounts"] = charts.bar_chart(list(accounts), list(accounts.values()))
    return out


@dataclass
class GroupPage:
    members: tuple[str, ...]
    row: dict[str, Any]  # group_figures' row
    notes: list[str]
    performance: Performance  # the members' rows


def group_page(conn: sa.Connection, calendar: TradingCalendar, name: str,
               members: tuple[str, ...], window: Window) -> GroupPage | None:
    latest = figures.latest_session(conn)
    if latest is None:
        return None
    window = window.resolved(latest)
    start, end = window.dates(latest)
    row, result = figures.group_figures(conn, calendar, name, members, start, end)
    return GroupPage(members, row, result.notes + result.warnings, result)


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    pages = Pages(dashboard)
    pages.start()
    return [Route("/", pages.overview, name="overview"),
            Route("/account/{account}", pages.account, name="account"),
            Route("/group/{name}", pages.group, name="group")]
